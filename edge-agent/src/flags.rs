//! Feature flags served by the agent: the flags file read at start, watched and read
//! again when it changes (a file that does not parse or check is refused, logged with
//! why, and the flags in force stay), and each user's variants for `GET /api/flags`.
//! Reading the file and the assignment are `ingest_core::flags`: the same on every agent
//! and binding.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use ingest_core::flags::FlagSet;

/// The flags in force, shared by every request; replaced whole on a reload.
#[derive(Clone, Default)]
pub struct Flags {
    current: Arc<RwLock<Arc<FlagSet>>>,
}

impl Flags {
    /// Flags read from `path`.
    ///
    /// # Errors
    ///
    /// Why the file cannot be read, parsed or checked (with the flag and field at
    /// fault).
    pub fn load(path: &Path) -> Result<Flags, String> {
        let set = read(path)?;
        Ok(Flags {
            current: Arc::new(RwLock::new(Arc::new(set))),
        })
    }

    /// The flags in force.
    pub fn get(&self) -> Arc<FlagSet> {
        self.current
            .read()
            .map_or_else(|poisoned| poisoned.into_inner().clone(), |set| set.clone())
    }

    fn replace(&self, set: FlagSet) {
        let mut current = self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *current = Arc::new(set);
    }

    /// Looks at `path` every `interval` and reads it again when its modification time
    /// or size changed. Runs until the runtime stops.
    pub fn watch(&self, path: PathBuf, interval: Duration) {
        let flags = self.clone();
        let mut seen = stamp(&path);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let now = stamp(&path);
                if now == seen {
                    continue;
                }
                seen = now;
                let file = path.clone();
                match tokio::task::spawn_blocking(move || read(&file)).await {
                    Ok(Ok(set)) => {
                        tracing::info!(path = %path.display(), flags = set.len(), "feature flags reloaded");
                        metrics::counter!("edge_flags_reloads_total", "result" => "loaded")
                            .increment(1);
                        metrics::gauge!("edge_flags").set(set.len() as f64);
                        flags.replace(set);
                    }
                    Ok(Err(why)) => {
                        tracing::error!(path = %path.display(), error = %why, "feature flags file refused; the flags in force stay");
                        metrics::counter!("edge_flags_reloads_total", "result" => "refused")
                            .increment(1);
                    }
                    Err(error) => tracing::error!(%error, "reading the feature flags failed"),
                }
            }
        });
    }
}

/// What identifies a version of the file: its modification time and size.
fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

/// The file at `path` (TOML, or JSON when it ends in `.json`), or why not, naming it.
fn read(path: &Path) -> Result<FlagSet, String> {
    FlagSet::read(path).map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Reading and checking the file is ingest_core::flags's (tested there); the agent
    // names the file in what it logs.
    #[test]
    fn a_refused_file_is_named_with_its_fault() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("flags.toml");
        let file = |percent: u32| {
            format!(
                "[[flags]]\nname = \"f\"\nvariants = [{{ name = \"a\", percent = {percent} }}]\n"
            )
        };
        std::fs::write(&path, file(100)).expect("write");
        let flags = Flags::load(&path).expect("loads");
        assert_eq!(flags.get().variant("f", "u"), Some("a"));
        std::fs::write(&path, file(60)).expect("write");
        let why = Flags::load(&path).err().expect("refused");
        assert!(
            why.starts_with(&path.display().to_string())
                && why.contains("flags[0].variants: the percentages add up to 60"),
            "{why}"
        );
        let missing = dir.path().join("missing.toml");
        let why = Flags::load(&missing).err().expect("refused");
        assert!(why.starts_with(&missing.display().to_string()), "{why}");
    }
}
