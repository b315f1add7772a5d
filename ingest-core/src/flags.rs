//! Feature flags for gradual rollouts: each flag splits users into variants by
//! percentage, and a user's variant is a pure function of the flag and the user's
//! identity, so every agent, every binding and every restart gives the same answer with
//! no shared state.
//!
//! **Assignment.** A user's bucket for a flag is
//! `xxh3_64(salt ‖ 0x00 ‖ user) mod 10,000` (XXH3 64-bit with seed 0, over the UTF-8
//! bytes; `salt` defaults to the flag's name). The variants, in declared order, own
//! consecutive ranges of buckets as wide as their percentage (in hundredths of a
//! percent): the first variant whose range holds the bucket is the user's.
//!
//! **Changing percentages.** Ranges stay in declared order, so moving a boundary between
//! two neighbouring variants moves exactly the users between the old and the new
//! boundary; nobody else changes variant. (Growing one variant at the expense of one
//! that is not its neighbour also shifts the ranges in between: declare the variants
//! that trade users next to each other.) Changing a flag's `salt` reshuffles all its
//! users.
//!
//! **Flags files.** [`FlagSet::from_toml`] and [`FlagSet::from_json`] read the text of a
//! flags file (`[[flags]]` tables, or `{"flags": [...]}`), and [`FlagSet::read`] a file
//! by its extension (JSON when it ends in `.json`, else TOML), as the edge agent and the
//! language bindings do: unknown keys are refused, and every fault is a [`FlagsError`]
//! naming where it is.

use std::path::Path;

use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_64;

/// The Kafka record header carrying the assignments made for an event that named no
/// experiments of its own: `flag=variant` pairs joined by `,`, in flag-name order
/// (`checkout_v2=control,search_ranking=learned`).
pub const EXPERIMENTS_HEADER: &str = "experiments";

/// Buckets per flag: percentages have a resolution of 0.01.
pub const BUCKETS: u32 = 10_000;
/// Longest flag or variant name, in bytes.
pub const MAX_NAME_BYTES: usize = 64;

/// A flag as written in a flags file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlagDef {
    /// The flag's name: 1 to 64 of `A-Z a-z 0-9 _ - .` (it becomes a key of
    /// `context.experiments`).
    pub name: String,
    /// Hashed with the user; defaults to `name`. A new salt reshuffles every user.
    #[serde(default)]
    pub salt: Option<String>,
    /// The variants, in order; their percentages add up to 100.
    pub variants: Vec<VariantDef>,
}

/// A variant as written in a flags file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VariantDef {
    /// The variant's name (same rules as a flag's).
    pub name: String,
    /// Its share of users, 0 to 100, in steps of 0.01.
    pub percent: f64,
}

/// A flags file as written: `[[flags]]` tables (TOML) or `{"flags": [...]}` (JSON).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FlagsFile {
    #[serde(default)]
    flags: Vec<FlagDef>,
}

/// Where a fault of the file as a whole is reported: text that does not parse, an
/// unknown key, a file that cannot be read.
pub const FILE_PATH: &str = "flags file";

/// Why a set of flags was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct FlagsError {
    /// Where: `flags[2].variants[1].percent`, or [`FILE_PATH`] when the text does not
    /// parse (the message then gives the line and column).
    pub path: String,
    /// Why.
    pub message: String,
}

#[derive(Debug, Clone, PartialEq)]
struct Flag {
    name: String,
    salt: String,
    /// Each variant's name and the first bucket past its range.
    variants: Vec<(String, u32)>,
}

/// A checked set of flags, ready to assign users.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FlagSet {
    flags: Vec<Flag>,
}

impl FlagSet {
    /// Checks `defs` and builds the set.
    ///
    /// # Errors
    ///
    /// A [`FlagsError`] naming the first fault: a name empty, too long or with other
    /// characters; two flags, or two variants of a flag, with one name; a flag without
    /// variants; a percentage that is negative, not a multiple of 0.01, or a sum other
    /// than 100.
    pub fn new(defs: Vec<FlagDef>) -> Result<FlagSet, FlagsError> {
        let mut flags: Vec<Flag> = Vec::with_capacity(defs.len());
        for (i, def) in defs.into_iter().enumerate() {
            let at = |field: &str| format!("flags[{i}].{field}");
            check_name(&def.name, || at("name"))?;
            if flags.iter().any(|f| f.name == def.name) {
                return Err(error(
                    at("name"),
                    format!("{:?} is declared twice", def.name),
                ));
            }
            if def.variants.is_empty() {
                return Err(error(at("variants"), "a flag needs at least one variant"));
            }
            let mut variants: Vec<(String, u32)> = Vec::with_capacity(def.variants.len());
            let mut end = 0u32;
            for (j, variant) in def.variants.into_iter().enumerate() {
                let at = |field: &str| format!("flags[{i}].variants[{j}].{field}");
                check_name(&variant.name, || at("name"))?;
                if variants.iter().any(|(name, _)| *name == variant.name) {
                    return Err(error(
                        at("name"),
                        format!("{:?} is declared twice in this flag", variant.name),
                    ));
                }
                let hundredths = variant.percent * 100.0;
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                let width = hundredths.round() as u32;
                if !(0.0..=100.0).contains(&variant.percent)
                    || (hundredths - hundredths.round()).abs() > 1e-6
                {
                    return Err(error(
                        at("percent"),
                        format!(
                            "{} is not a percentage from 0 to 100 in steps of 0.01",
                            variant.percent
                        ),
                    ));
                }
                end += width;
                variants.push((variant.name, end));
            }
            if end != BUCKETS {
                return Err(error(
                    at("variants"),
                    format!(
                        "the percentages add up to {}, not 100",
                        f64::from(end) / 100.0
                    ),
                ));
            }
            let salt = def.salt.unwrap_or_else(|| def.name.clone());
            flags.push(Flag {
                name: def.name,
                salt,
                variants,
            });
        }
        flags.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(FlagSet { flags })
    }

    /// Reads the text of a TOML flags file (`[[flags]]` tables) and checks it as
    /// [`new`](Self::new) does.
    ///
    /// # Errors
    ///
    /// A [`FlagsError`] at [`FILE_PATH`] when the text is not TOML or holds an unknown
    /// key or a value of the wrong type (the message gives the line and column);
    /// otherwise as [`new`](Self::new).
    ///
    /// # Examples
    ///
    /// ```
    /// use ingest_core::flags::FlagSet;
    ///
    /// let flags = FlagSet::from_toml(
    ///     r#"
    /// [[flags]]
    /// name = "checkout_v2"
    /// variants = [{ name = "control", percent = 90 }, { name = "treatment", percent = 10 }]
    /// "#,
    /// )?;
    /// assert_eq!(flags.variant("checkout_v2", "user-1"), Some("control"));
    /// # Ok::<(), ingest_core::flags::FlagsError>(())
    /// ```
    pub fn from_toml(text: &str) -> Result<FlagSet, FlagsError> {
        let file: FlagsFile = toml::from_str(text).map_err(|e| {
            let at = e
                .span()
                .map(|span| format!(" at {}", line_and_column(text, span.start)))
                .unwrap_or_default();
            error(
                FILE_PATH.to_owned(),
                format!("{}{at}", e.message().trim_end()),
            )
        })?;
        FlagSet::new(file.flags)
    }

    /// Reads the text of a JSON flags file (`{"flags": [...]}`) and checks it as
    /// [`new`](Self::new) does.
    ///
    /// # Errors
    ///
    /// A [`FlagsError`] at [`FILE_PATH`] when the text is not JSON or holds an unknown
    /// key or a value of the wrong type (the message gives the line and column);
    /// otherwise as [`new`](Self::new).
    pub fn from_json(text: &str) -> Result<FlagSet, FlagsError> {
        let file: FlagsFile =
            serde_json::from_str(text).map_err(|e| error(FILE_PATH.to_owned(), e.to_string()))?;
        FlagSet::new(file.flags)
    }

    /// Reads the flags file at `path`: JSON ([`from_json`](Self::from_json)) when its
    /// name ends in `.json`, TOML ([`from_toml`](Self::from_toml)) otherwise.
    ///
    /// # Errors
    ///
    /// A [`FlagsError`] at [`FILE_PATH`] when the file cannot be read; otherwise as the
    /// function of its format. The error does not name the file: the edge agent and
    /// the bindings put its path in front (`flags.toml: flags file: cannot be read: ...`).
    pub fn read(path: &Path) -> Result<FlagSet, FlagsError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| error(FILE_PATH.to_owned(), format!("cannot be read: {e}")))?;
        if path.extension().is_some_and(|e| e == "json") {
            FlagSet::from_json(&text)
        } else {
            FlagSet::from_toml(&text)
        }
    }

    /// How many flags the set holds.
    pub fn len(&self) -> usize {
        self.flags.len()
    }

    /// Whether the set holds no flag.
    pub fn is_empty(&self) -> bool {
        self.flags.is_empty()
    }

    /// The user's variant of every flag, by flag name (in name order).
    pub fn assign<'a>(&'a self, user: &str) -> Vec<(&'a str, &'a str)> {
        self.flags
            .iter()
            .map(|flag| (flag.name.as_str(), flag.variant(user)))
            .collect()
    }

    /// The [`EXPERIMENTS_HEADER`] value of `user`'s assignments; `None` when the set
    /// holds no flag.
    pub fn header_value(&self, user: &str) -> Option<String> {
        if self.flags.is_empty() {
            return None;
        }
        let mut value = String::with_capacity(self.flags.len() * 24);
        for (i, flag) in self.flags.iter().enumerate() {
            if i > 0 {
                value.push(',');
            }
            value.push_str(&flag.name);
            value.push('=');
            value.push_str(flag.variant(user));
        }
        Some(value)
    }

    /// The user's variant of one flag; `None` when there is no such flag.
    pub fn variant(&self, flag: &str, user: &str) -> Option<&str> {
        self.flags
            .binary_search_by(|f| f.name.as_str().cmp(flag))
            .ok()
            .map(|i| self.flags[i].variant(user))
    }
}

impl Flag {
    fn variant(&self, user: &str) -> &str {
        let b = bucket(&self.salt, user);
        self.variants
            .iter()
            .find(|(_, end)| b < *end)
            .or(self.variants.last())
            .map_or("", |(name, _)| name.as_str())
    }
}

/// Reads an [`EXPERIMENTS_HEADER`] value back into `(flag, variant)` pairs.
///
/// # Errors
///
/// Why the value is not one this module writes: a pair without `=`, a name breaking
/// the naming rules, a flag named twice, or more than
/// [`crate::contract::MAX_EXPERIMENTS`] pairs (any producer may write the header).
pub fn parse_header_value(value: &str) -> Result<Vec<(&str, &str)>, String> {
    let mut pairs: Vec<(&str, &str)> = Vec::new();
    for (i, part) in value.split(',').enumerate() {
        if i == crate::contract::MAX_EXPERIMENTS {
            return Err(format!(
                "more than {} flags",
                crate::contract::MAX_EXPERIMENTS
            ));
        }
        let (flag, variant) = part
            .split_once('=')
            .ok_or_else(|| format!("pair {} has no '='", i + 1))?;
        for name in [flag, variant] {
            check_name(name, || format!("pair {}", i + 1)).map_err(|e| e.to_string())?;
        }
        if pairs.iter().any(|(f, _)| *f == flag) {
            return Err(format!("flag {flag:?} is named twice"));
        }
        pairs.push((flag, variant));
    }
    Ok(pairs)
}

/// The user's bucket, `0..BUCKETS`, for a flag with `salt` (see the module's docs).
pub fn bucket(salt: &str, user: &str) -> u32 {
    let mut input = Vec::with_capacity(salt.len() + 1 + user.len());
    input.extend_from_slice(salt.as_bytes());
    input.push(0);
    input.extend_from_slice(user.as_bytes());
    // The remainder is below BUCKETS, so it fits.
    #[allow(clippy::cast_possible_truncation)]
    let b = (xxh3_64(&input) % u64::from(BUCKETS)) as u32;
    b
}

fn check_name(name: &str, path: impl Fn() -> String) -> Result<(), FlagsError> {
    if name.is_empty() || name.len() > MAX_NAME_BYTES {
        return Err(error(
            path(),
            format!("must hold 1 to {MAX_NAME_BYTES} characters"),
        ));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
    {
        return Err(error(
            path(),
            format!("{name:?} may hold only A-Z, a-z, 0-9, '_', '-' and '.'"),
        ));
    }
    Ok(())
}

/// `line L column C` (both from 1, the column in characters) of byte `offset` in `text`,
/// worded as `serde_json`'s errors are.
fn line_and_column(text: &str, offset: usize) -> String {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    format!("line {line} column {column}")
}

fn error(path: String, message: impl Into<String>) -> FlagsError {
    FlagsError {
        path,
        message: message.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flag(name: &str, variants: &[(&str, f64)]) -> FlagDef {
        FlagDef {
            name: name.to_owned(),
            salt: None,
            variants: variants
                .iter()
                .map(|(name, percent)| VariantDef {
                    name: (*name).to_owned(),
                    percent: *percent,
                })
                .collect(),
        }
    }

    #[test]
    fn buckets_are_fixed_values_every_implementation_must_reproduce() {
        // Test vectors of the documented algorithm, computed independently with
        // Python's `xxhash` package: `xxh3_64_intdigest(salt + b"\0" + user) % 10000`.
        // A change of hash or input layout would reassign every user of every running
        // experiment.
        let vectors = [
            ("checkout_v2", "user-1", 6666),
            ("checkout_v2", "user-2", 4270),
            ("search_ranking", "user-1", 9624),
            ("", "", 1883),
        ];
        for (salt, user, expected) in vectors {
            assert_eq!(bucket(salt, user), expected, "{salt:?} {user:?}");
        }
    }

    #[test]
    fn every_user_gets_a_variant_in_proportion() {
        let set = FlagSet::new(vec![flag(
            "checkout_v2",
            &[("control", 80.0), ("treatment", 20.0)],
        )])
        .expect("valid");
        let treated = (0..20_000)
            .filter(|i| set.variant("checkout_v2", &format!("user-{i}")) == Some("treatment"))
            .count();
        assert!((3_600..=4_400).contains(&treated), "{treated} of 20,000");
        assert_eq!(set.variant("other", "user-1"), None);
        let all = set.assign("user-7");
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].0, "checkout_v2");
    }

    #[test]
    fn a_change_of_percentages_moves_only_the_users_it_must() {
        let before =
            FlagSet::new(vec![flag("f", &[("a", 70.0), ("b", 20.0), ("c", 10.0)])]).expect("valid");
        // b grows by 10 points, taken from its neighbour c.
        let after =
            FlagSet::new(vec![flag("f", &[("a", 70.0), ("b", 30.0), ("c", 0.0)])]).expect("valid");
        let users: Vec<String> = (0..20_000).map(|i| format!("u{i}")).collect();
        let mut moved = 0;
        for user in &users {
            let (was, is) = (before.variant("f", user), after.variant("f", user));
            if was != is {
                moved += 1;
                assert_eq!((was, is), (Some("c"), Some("b")), "{user}");
            }
        }
        let in_c = users
            .iter()
            .filter(|u| before.variant("f", u) == Some("c"))
            .count();
        assert_eq!(moved, in_c, "exactly c's users moved, all to b");
        // A new salt reshuffles.
        let mut salted = flag("f", &[("a", 70.0), ("b", 20.0), ("c", 10.0)]);
        salted.salt = Some("f-2".to_owned());
        let salted = FlagSet::new(vec![salted]).expect("valid");
        let changed = users
            .iter()
            .filter(|u| before.variant("f", u) != salted.variant("f", u))
            .count();
        assert!(changed > 5_000, "{changed}");
    }

    #[test]
    fn the_experiments_header_lists_every_flag_and_reads_back() {
        let set = FlagSet::new(vec![
            flag("search_ranking", &[("bm25", 50.0), ("learned", 50.0)]),
            flag("checkout_v2", &[("control", 90.0), ("treatment", 10.0)]),
        ])
        .expect("valid");
        let value = set.header_value("user-1").expect("two flags");
        // The documented vectors: buckets 6666 and 9624.
        assert_eq!(value, "checkout_v2=control,search_ranking=learned");
        assert_eq!(
            parse_header_value(&value),
            Ok(vec![
                ("checkout_v2", "control"),
                ("search_ranking", "learned")
            ])
        );
        assert_eq!(FlagSet::default().header_value("user-1"), None);
        for bad in [
            "",
            "checkout_v2",
            "a=b=c",
            "a=b,,c=d",
            "a=b,a=c",
            "a b=c",
            "a=\u{0}",
        ] {
            assert!(parse_header_value(bad).is_err(), "{bad:?}");
        }
        let many: Vec<String> = (0..=crate::contract::MAX_EXPERIMENTS)
            .map(|i| format!("f{i}=v"))
            .collect();
        assert!(parse_header_value(&many.join(",")).is_err());
        assert!(parse_header_value(&many[1..].join(",")).is_ok());
    }

    #[test]
    fn bad_flags_are_refused_with_the_path_and_why() {
        let refused = |defs: Vec<FlagDef>| FlagSet::new(defs).expect_err("refused").path;
        assert_eq!(refused(vec![flag("", &[("a", 100.0)])]), "flags[0].name");
        assert_eq!(refused(vec![flag("a=b", &[("a", 100.0)])]), "flags[0].name");
        assert_eq!(
            refused(vec![flag("f", &[("a", 100.0)]), flag("f", &[("a", 100.0)])]),
            "flags[1].name"
        );
        assert_eq!(refused(vec![flag("f", &[])]), "flags[0].variants");
        assert_eq!(
            refused(vec![flag("f", &[("a", 50.0), ("a", 50.0)])]),
            "flags[0].variants[1].name"
        );
        assert_eq!(
            refused(vec![flag("f", &[("a", 60.0), ("b", 30.0)])]),
            "flags[0].variants"
        );
        assert_eq!(
            refused(vec![flag("f", &[("a", -10.0), ("b", 110.0)])]),
            "flags[0].variants[0].percent"
        );
        assert_eq!(
            refused(vec![flag("f", &[("a", 33.333), ("b", 66.667)])]),
            "flags[0].variants[0].percent"
        );
        let error = FlagSet::new(vec![flag("f", &[("a", 60.0), ("b", 30.0)])]).expect_err("sum");
        assert_eq!(
            error.to_string(),
            "flags[0].variants: the percentages add up to 90, not 100"
        );
        assert!(FlagSet::new(vec![flag("f", &[("a", 33.33), ("b", 66.67)])]).is_ok());
    }

    /// The flags of the documented test vectors (docs/edge-agent.md, "Feature flags"),
    /// as every binding's tests write them.
    const FLAGS_TOML: &str = r#"
[[flags]]
name = "checkout_v2"
variants = [{ name = "control", percent = 90 }, { name = "treatment", percent = 10 }]

[[flags]]
name = "search_ranking"
variants = [{ name = "bm25", percent = 50 }, { name = "learned", percent = 50 }]
"#;

    #[test]
    fn a_toml_or_json_file_assigns_the_documented_test_vectors() {
        let from_toml = FlagSet::from_toml(FLAGS_TOML).expect("valid");
        let from_json = FlagSet::from_json(
            r#"{"flags": [
                {"name": "checkout_v2", "variants": [
                    {"name": "control", "percent": 90}, {"name": "treatment", "percent": 10}]},
                {"name": "search_ranking", "variants": [
                    {"name": "bm25", "percent": 50}, {"name": "learned", "percent": 50}]}
            ]}"#,
        )
        .expect("valid");
        assert_eq!(from_toml, from_json);
        assert_eq!(from_toml.len(), 2);
        // Buckets 6666 and 4270 of 0..9000 (control); 9624 of 5000..10000 (learned).
        assert_eq!(from_toml.variant("checkout_v2", "user-1"), Some("control"));
        assert_eq!(from_toml.variant("checkout_v2", "user-2"), Some("control"));
        assert_eq!(
            from_toml.assign("user-1"),
            vec![("checkout_v2", "control"), ("search_ranking", "learned")]
        );
        assert_eq!(from_toml.variant("unknown", "user-1"), None);
        // 90/10 to 60/40: buckets 6000 to 8999 move to treatment, user-1's 6666 with them.
        let grown = FlagSet::from_toml(&FLAGS_TOML.replace("90", "60").replace("10 }", "40 }"))
            .expect("valid");
        assert_eq!(grown.variant("checkout_v2", "user-1"), Some("treatment"));
        assert_eq!(grown.variant("checkout_v2", "user-2"), Some("control"));
        // An empty file holds no flags.
        assert!(FlagSet::from_toml("").expect("empty").is_empty());
        assert!(FlagSet::from_json("{}").expect("empty").is_empty());
    }

    #[test]
    fn a_bad_file_is_refused_with_where_and_why() {
        let error = FlagSet::from_toml(&FLAGS_TOML.replace("90", "80")).expect_err("sum");
        assert_eq!(
            error.to_string(),
            "flags[0].variants: the percentages add up to 90, not 100"
        );
        let error = FlagSet::from_toml("[[flags]]\nnme = \"f\"\n").expect_err("unknown key");
        assert_eq!(error.path, FILE_PATH);
        assert!(error.message.contains("unknown field `nme`"), "{error}");
        assert!(error.message.ends_with("at line 2 column 1"), "{error}");
        let error = FlagSet::from_toml(
            "[[flags]]\nname = \"f\"\nvariants = [{ name = \"a\", percent = \"all\" }]\n",
        )
        .expect_err("a string for a number");
        assert_eq!(error.path, FILE_PATH);
        assert!(error.message.ends_with("at line 3 column 37"), "{error}");
        let error = FlagSet::from_json("{\"flags\": [{\"name\": \"f\",\n \"variant\": []}]}")
            .expect_err("unknown key");
        assert_eq!(error.path, FILE_PATH);
        assert!(error.message.contains("unknown field `variant`"), "{error}");
        assert!(error.message.contains("line 2 column"), "{error}");
        let error = FlagSet::from_json("[").expect_err("not JSON");
        assert_eq!(error.path, FILE_PATH);
    }

    #[test]
    fn a_file_is_read_by_its_extension() {
        let dir = tempfile::tempdir().expect("dir");
        let toml_path = dir.path().join("flags.toml");
        std::fs::write(&toml_path, FLAGS_TOML).expect("write");
        assert_eq!(FlagSet::read(&toml_path).expect("toml").len(), 2);
        let json_path = dir.path().join("flags.json");
        std::fs::write(
            &json_path,
            r#"{"flags":[{"name":"f","variants":[{"name":"a","percent":100}]}]}"#,
        )
        .expect("write");
        assert_eq!(
            FlagSet::read(&json_path).expect("json").variant("f", "u"),
            Some("a")
        );
        // JSON text in a file not named .json is read as TOML, and refused.
        let misnamed = dir.path().join("flags.txt");
        std::fs::copy(&json_path, &misnamed).expect("copy");
        assert_eq!(FlagSet::read(&misnamed).expect_err("toml").path, FILE_PATH);
        let error = FlagSet::read(&dir.path().join("missing.toml")).expect_err("missing");
        assert_eq!(error.path, FILE_PATH);
        assert!(error.message.starts_with("cannot be read: "), "{error}");
    }
}
