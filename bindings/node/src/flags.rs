//! The `Flags` class: feature-flag assignment, the same as the edge agent's
//! (`ingest_core::flags`): a flags file's text in, each user's variants out.

use std::collections::BTreeMap;

use ingest_core::flags::FlagSet;
use napi_derive::napi;

use crate::error::{flags_refused, invalid_argument};

/// A checked set of feature flags. Immutable; every method may be called from the
/// JavaScript thread only (Node.js calls them there).
#[napi]
pub struct Flags {
    set: FlagSet,
}

#[napi]
impl Flags {
    /// Reads a flags file's text in `format`: `toml` (`[[flags]]` tables) or `json`
    /// (`{"flags": [...]}`), as the edge agent reads `flags.file`.
    #[napi(constructor, catch_unwind)]
    pub fn new(text: String, format: String) -> napi::Result<Self> {
        let parsed = match format.as_str() {
            "toml" => FlagSet::from_toml(&text),
            "json" => FlagSet::from_json(&text),
            other => {
                return Err(invalid_argument(format!(
                    "unknown flags format {other:?}: expected \"toml\" or \"json\""
                )))
            }
        };
        parsed
            .map(|set| Flags { set })
            .map_err(|error| flags_refused(&error))
    }

    /// The user's variant of every flag, by flag name.
    #[napi(catch_unwind)]
    pub fn assign(&self, user: String) -> BTreeMap<String, String> {
        self.set
            .assign(&user)
            .into_iter()
            .map(|(flag, variant)| (flag.to_owned(), variant.to_owned()))
            .collect()
    }

    /// The user's variant of one flag; null when there is no such flag.
    #[napi(catch_unwind)]
    pub fn variant(&self, flag: String, user: String) -> Option<String> {
        self.set.variant(&flag, &user).map(str::to_owned)
    }

    /// How many flags the set holds.
    #[napi(getter)]
    pub fn size(&self) -> u32 {
        u32::try_from(self.set.len()).unwrap_or(u32::MAX)
    }
}
