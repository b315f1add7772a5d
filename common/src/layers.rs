//! Configuration layering: defaults → file (or a TOML/JSON string) → environment → flags.
//!
//! Every binary and `ingest-core`'s `IngestConfig` load through [`Layers`], built on
//! [figment](https://docs.rs/figment) (decisions.md, 22). Each layer is one figment
//! provider with its own [`Metadata`], so the value of every key keeps where it came
//! from ([`Origin`]); [`Loaded`] carries the typed value, the origin of each key and the
//! deprecated environment names that were used.
//!
//! # Environment convention
//!
//! `PREFIX_SECTION__KEY`: the prefix, then the key's path in upper case with `__`
//! between the parts (`EDGE_AGENT_SERVER__LISTEN`, `PROCESSOR_KAFKA__TOPICS__CART`);
//! top-level keys have no `__` (`PROCESSOR_LISTEN`). A value is read as the type the key
//! has in the defaults: integers, floats and booleans are parsed, a list is either a
//! TOML array (`["a", "b"]`) or comma-separated (`a, b`), a table is a TOML inline table
//! (`{ "sasl.password" = "…" }`); anything else, and keys the defaults leave out (an
//! unset optional path, an entry of a free-form table), is the string itself.
//!
//! [`EnvNames::with_legacy_single_underscore`] also accepts the older single-underscore
//! names (`EDGE_AGENT_SERVER_LISTEN`), matched against the shape of the defaults (the
//! longest key at each level that prefixes the rest); each use is reported as a
//! [`Deprecation`] naming the new name.
//!
//! # Rules the layers keep
//!
//! - Unknown keys are errors in every layer (the configuration types use
//!   `deny_unknown_fields`); the error names the key and where it was set.
//! - A file that cannot be read or parsed, and a variable whose value does not parse as
//!   its key's type, are errors too. No layer is silently skipped.
//! - Validation is not done here: the raw value goes on to the type's own `validate`,
//!   whose [`ConfigError`] [`Loaded::explain`] completes with the key's origin.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use figment::value::{Dict, Map, Num, Value};
use figment::{Figment, Metadata, Profile, Provider};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Where the value of a key came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The built-in default.
    Default,
    /// A configuration file.
    File(PathBuf),
    /// A configuration given as text (`"TOML"` or `"JSON"`), as the bindings pass it.
    Text(&'static str),
    /// An environment variable (its name).
    Env(String),
    /// A command-line flag (its name, with the dashes).
    Flag(String),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Default => f.write_str("default"),
            Origin::File(path) => write!(f, "file {}", path.display()),
            Origin::Text(format) => write!(f, "{format} text"),
            Origin::Env(name) => write!(f, "environment variable {name}"),
            Origin::Flag(name) => write!(f, "flag {name}"),
        }
    }
}

impl Origin {
    /// The short form used in `--check-config` output: `default`, `file PATH`,
    /// `env NAME`, `flag --NAME`, `TOML text`.
    pub fn short(&self) -> String {
        match self {
            Origin::Env(name) => format!("env {name}"),
            other => other.to_string(),
        }
    }

    fn metadata(&self) -> Metadata {
        match self {
            Origin::Default => Metadata::named("default"),
            Origin::File(path) => {
                Metadata::named("file").source(figment::Source::File(path.clone()))
            }
            Origin::Text(format) => Metadata::named(format!("{format} text")),
            Origin::Env(name) => Metadata::named("environment variable")
                .source(figment::Source::Custom(name.clone())),
            Origin::Flag(name) => {
                Metadata::named("flag").source(figment::Source::Custom(name.clone()))
            }
        }
    }
}

/// A configuration that cannot be loaded or is invalid: the key (a dotted path), where
/// its value came from when known, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    key: String,
    origin: Option<Origin>,
    reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.origin, self.key.is_empty()) {
            (Some(origin), true) => write!(f, "{origin}: {}", self.reason),
            (None, true) => f.write_str(&self.reason),
            (Some(origin), false) => write!(
                f,
                "invalid configuration `{}` (from {origin}): {}",
                self.key, self.reason
            ),
            (None, false) => write!(f, "invalid configuration `{}`: {}", self.key, self.reason),
        }
    }
}

impl ConfigError {
    /// An error for configuration key `key` (dotted path, e.g. `kafka.linger_ms`).
    pub fn new(key: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigError {
            key: key.into(),
            origin: None,
            reason: reason.into(),
        }
    }

    /// The same error, saying where the key's value came from.
    #[must_use]
    pub fn with_origin(mut self, origin: Origin) -> Self {
        self.origin = Some(origin);
        self
    }

    /// The dotted path of the offending key; empty when the error is about a whole
    /// source (a file that cannot be read or parsed).
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Where the offending value came from, when known.
    pub fn origin(&self) -> Option<&Origin> {
        self.origin.as_ref()
    }

    /// Why the value is refused.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

/// A deprecated environment variable name that was used, and the name to use instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deprecation {
    /// The variable as set.
    pub variable: String,
    /// The name under the current convention.
    pub replacement: String,
    /// The key it sets.
    pub key: String,
}

impl fmt::Display for Deprecation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "environment variable {} is deprecated: set {} instead (key `{}`)",
            self.variable, self.replacement, self.key
        )
    }
}

/// How a binary's environment variables are named.
#[derive(Debug, Clone, Copy)]
pub struct EnvNames<'a> {
    prefix: &'a str,
    legacy: bool,
}

impl<'a> EnvNames<'a> {
    /// `PREFIX_SECTION__KEY` with this prefix (`"PROCESSOR_"`).
    pub const fn new(prefix: &'a str) -> Self {
        EnvNames {
            prefix,
            legacy: false,
        }
    }

    /// Also accepts `PREFIX_SECTION_KEY` (single underscores, matched against the shape
    /// of the defaults), reporting each use as a [`Deprecation`].
    #[must_use]
    pub const fn with_legacy_single_underscore(mut self) -> Self {
        self.legacy = true;
        self
    }

    /// The prefix.
    pub fn prefix(&self) -> &str {
        self.prefix
    }

    /// The variable that sets `key` (a dotted path): `kafka.linger_ms` →
    /// `PREFIX_KAFKA__LINGER_MS`.
    pub fn name_of(&self, key: &str) -> String {
        format!(
            "{}{}",
            self.prefix,
            key.split('.')
                .map(str::to_ascii_uppercase)
                .collect::<Vec<_>>()
                .join("__")
        )
    }
}

/// A key path: section names, then the key.
type KeyPath = Vec<String>;

/// The layers of one configuration of type `T`, lowest first.
pub struct Layers<T> {
    figment: Figment,
    shape: Dict,
    origins: BTreeMap<KeyPath, Origin>,
    deprecations: Vec<Deprecation>,
    _type: std::marker::PhantomData<fn() -> T>,
}

/// One provider: a tree of values and where they came from.
struct Layer {
    dict: Dict,
    origin: Origin,
}

impl Provider for Layer {
    fn metadata(&self) -> Metadata {
        self.origin.metadata()
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Ok(Profile::Default.collect(self.dict.clone()))
    }
}

impl<T: Serialize + DeserializeOwned + Default> Layers<T> {
    /// Starts from `T::default()`.
    ///
    /// # Errors
    ///
    /// When the defaults do not serialize as a table (a bug of `T`).
    pub fn new() -> Result<Self, ConfigError> {
        let shape = match Value::serialize(T::default()) {
            Ok(Value::Dict(_, dict)) => dict,
            Ok(_) => return Err(ConfigError::new("", "the defaults are not a table")),
            Err(e) => return Err(ConfigError::new("", format!("the defaults: {e}"))),
        };
        let mut layers = Layers {
            figment: Figment::new(),
            shape: shape.clone(),
            origins: BTreeMap::new(),
            deprecations: Vec::new(),
            _type: std::marker::PhantomData,
        };
        layers.push(shape, Origin::Default);
        Ok(layers)
    }

    fn push(&mut self, dict: Dict, origin: Origin) {
        let mut leaves = Vec::new();
        collect_leaves(&dict, &mut Vec::new(), &mut leaves);
        for path in leaves {
            self.origins.insert(path, origin.clone());
        }
        let figment = std::mem::take(&mut self.figment);
        self.figment = figment.merge(Layer { dict, origin });
    }

    /// Adds a configuration file: JSON when its name ends in `.json`, else TOML.
    ///
    /// # Errors
    ///
    /// When the file cannot be read or does not parse.
    pub fn file(self, path: &Path) -> Result<Self, ConfigError> {
        let origin = Origin::File(path.to_owned());
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::new("", format!("cannot be read: {e}")).with_origin(origin.clone())
        })?;
        let json = path.extension().is_some_and(|e| e == "json");
        self.text(&text, json, origin)
    }

    /// Adds a configuration given as TOML text.
    ///
    /// # Errors
    ///
    /// When the text does not parse as TOML.
    pub fn toml(self, text: &str) -> Result<Self, ConfigError> {
        self.text(text, false, Origin::Text("TOML"))
    }

    /// Adds a configuration given as JSON text (an object).
    ///
    /// # Errors
    ///
    /// When the text does not parse as a JSON object.
    pub fn json(self, text: &str) -> Result<Self, ConfigError> {
        self.text(text, true, Origin::Text("JSON"))
    }

    fn text(mut self, text: &str, json: bool, origin: Origin) -> Result<Self, ConfigError> {
        let parsed = if json {
            serde_json::from_str::<serde_json::Value>(text)
                .map_err(|e| e.to_string())
                .and_then(|v| Value::serialize(v).map_err(|e| e.to_string()))
        } else {
            toml::from_str::<toml::Table>(text)
                .map_err(|e| toml_error(text, &e))
                .and_then(|v| Value::serialize(v).map_err(|e| e.to_string()))
        };
        let dict = match parsed {
            Ok(Value::Dict(_, dict)) => dict,
            Ok(_) => return Err(ConfigError::new("", "is not a table of keys").with_origin(origin)),
            Err(reason) => return Err(ConfigError::new("", reason).with_origin(origin)),
        };
        self.push(dict, origin);
        Ok(self)
    }

    /// Adds the variables of `vars` (usually `std::env::vars()`) named by `names`, in
    /// the order of their names.
    ///
    /// # Errors
    ///
    /// A variable that names no key, or whose value does not parse as its key's type.
    pub fn env(
        mut self,
        names: EnvNames<'_>,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut vars: Vec<(String, String)> = vars
            .into_iter()
            .filter(|(name, _)| name.starts_with(names.prefix) && name.len() > names.prefix.len())
            .collect();
        vars.sort();
        for (name, raw) in vars {
            let origin = Origin::Env(name.clone());
            let rest = &name[names.prefix.len()..];
            let unknown =
                || ConfigError::new("", "names no configuration key").with_origin(origin.clone());
            let path: KeyPath = if rest.contains("__") {
                let path: KeyPath = rest.split("__").map(str::to_ascii_lowercase).collect();
                if path.iter().any(String::is_empty) {
                    return Err(unknown());
                }
                path
            } else {
                let key = rest.to_ascii_lowercase();
                match self.shape.get(&key) {
                    Some(value) if !matches!(value, Value::Dict(..)) => vec![key],
                    _ if names.legacy => {
                        let path = legacy_path(&self.shape, &key).ok_or_else(unknown)?;
                        let dotted = path.join(".");
                        self.deprecations.push(Deprecation {
                            variable: name.clone(),
                            replacement: names.name_of(&dotted),
                            key: dotted,
                        });
                        path
                    }
                    // Serde names the unknown key.
                    _ => vec![key],
                }
            };
            let value = typed(&raw, shape_at(&self.shape, &path)).map_err(|expected| {
                ConfigError::new(path.join("."), format!("{raw:?} is not a valid {expected}"))
                    .with_origin(origin.clone())
            })?;
            self.push(nest(&path, value), origin);
        }
        Ok(self)
    }

    /// Sets `key` (a dotted path) from the command-line flag `flag` (`"--listen"`).
    ///
    /// # Errors
    ///
    /// When `value` does not serialize (a bug of the caller).
    pub fn flag(
        mut self,
        key: &str,
        flag: &str,
        value: impl Serialize,
    ) -> Result<Self, ConfigError> {
        let origin = Origin::Flag(flag.to_owned());
        let value = Value::serialize(value)
            .map_err(|e| ConfigError::new(key, e.to_string()).with_origin(origin.clone()))?;
        let path: KeyPath = key.split('.').map(str::to_owned).collect();
        self.push(nest(&path, value), origin);
        Ok(self)
    }

    /// The value `key` (a dotted path) has in the layers so far, if it has one of type
    /// `V`: for flags whose effect depends on other keys.
    pub fn current<V: DeserializeOwned>(&self, key: &str) -> Option<V> {
        self.figment.extract_inner(key).ok()
    }

    /// Merges the layers into a `T`.
    ///
    /// # Errors
    ///
    /// An unknown key, a missing required key or a value of the wrong type, with the
    /// key and its origin.
    pub fn load(self) -> Result<Loaded<T>, ConfigError> {
        match self.figment.extract::<T>() {
            Ok(config) => Ok(Loaded {
                config,
                origins: self.origins,
                deprecations: self.deprecations,
            }),
            Err(error) => {
                let first = error.into_iter().next();
                let Some(error) = first else {
                    return Err(ConfigError::new("", "cannot be read"));
                };
                let mut path = error.path.clone();
                let reason = match &error.kind {
                    figment::error::Kind::UnknownField(field, expected) => {
                        if path.last() != Some(field) {
                            path.push(field.clone());
                        }
                        if expected.is_empty() {
                            "is not a configuration key".to_owned()
                        } else {
                            format!(
                                "is not a configuration key (unknown field `{field}`; expected one of {})",
                                expected
                                    .iter()
                                    .map(|k| format!("`{k}`"))
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            )
                        }
                    }
                    figment::error::Kind::MissingField(field) => {
                        if path.last().map(String::as_str) != Some(field) {
                            path.push(field.to_string());
                        }
                        format!("missing field `{field}`: this table needs it")
                    }
                    kind => kind.to_string(),
                };
                let origin = origin_in(&self.origins, &path);
                Err(ConfigError::new(path.join("."), reason).with_origin(origin))
            }
        }
    }
}

/// A configuration with where each value came from.
#[derive(Debug, Clone)]
pub struct Loaded<T> {
    /// The merged configuration.
    pub config: T,
    origins: BTreeMap<KeyPath, Origin>,
    deprecations: Vec<Deprecation>,
}

impl<T> Loaded<T> {
    /// Deprecated environment names that were used, in the order of their names.
    pub fn deprecations(&self) -> &[Deprecation] {
        &self.deprecations
    }

    /// Where `key` (a dotted path; `[i]` indexes are ignored) got its value: the layer
    /// that set it, or that set the table or list holding it.
    pub fn origin(&self, key: &str) -> Origin {
        // Keys may hold dots themselves (`kafka.properties."sasl.password"`): match the
        // dotted text against the recorded paths rather than splitting it.
        let key: String = dotted_path(key).join(".");
        let mut best: Option<(usize, &Origin)> = None;
        for (path, origin) in &self.origins {
            let joined = path.join(".");
            if joined == key {
                return origin.clone();
            }
            if key.starts_with(&format!("{joined}."))
                && *origin != Origin::Default
                && best.is_none_or(|(len, _)| joined.len() > len)
            {
                best = Some((joined.len(), origin));
            }
        }
        if let Some((_, origin)) = best {
            return origin.clone();
        }
        self.origins
            .iter()
            .filter(|(path, _)| path.join(".").starts_with(&format!("{key}.")))
            .map(|(_, origin)| origin)
            .find(|origin| **origin != Origin::Default)
            .cloned()
            .unwrap_or(Origin::Default)
    }

    /// `error` completed with the origin of its key (unless it has one already).
    pub fn explain(&self, error: ConfigError) -> ConfigError {
        if error.origin.is_some() || error.key.is_empty() {
            return error;
        }
        let origin = self.origin(&error.key);
        error.with_origin(origin)
    }

    /// The `--check-config` output shared by every binary: a header naming `program`,
    /// then one line per key of `masked` (the configuration with its secrets masked):
    /// `dotted.key = value  # origin`. The lines are TOML (dotted keys, inline values),
    /// so the output read back as a file gives the same configuration.
    ///
    /// # Errors
    ///
    /// When `masked` does not serialize as a TOML table (a bug of its type).
    pub fn check_config_report(
        &self,
        program: &str,
        masked: &impl Serialize,
    ) -> Result<String, ConfigError> {
        let table = toml::Table::try_from(masked)
            .map_err(|e| ConfigError::new("", format!("printing the configuration: {e}")))?;
        let mut lines = Vec::new();
        toml_leaves(&table, &mut Vec::new(), &mut lines);
        let rows: Vec<(String, String)> = lines
            .into_iter()
            .map(|(path, value)| {
                let key = path
                    .iter()
                    .map(|p| toml_key(p))
                    .collect::<Vec<_>>()
                    .join(".");
                let origin = origin_in(&self.origins, &path).short();
                (format!("{key} = {value}"), origin)
            })
            .collect();
        let width = rows
            .iter()
            .map(|(line, _)| line.chars().count())
            .filter(|&w| w <= 60)
            .max()
            .unwrap_or(0);
        let mut out = format!(
            "# {program}: effective configuration (valid; secrets masked)\n\
             # key = value  # where it was set: default, file PATH, env VARIABLE or flag --FLAG\n"
        );
        for (line, origin) in rows {
            let pad = width.saturating_sub(line.chars().count());
            out.push_str(&format!("{line}{}  # {origin}\n", " ".repeat(pad)));
        }
        for deprecation in &self.deprecations {
            out.push_str(&format!("# warning: {deprecation}\n"));
        }
        Ok(out)
    }
}

/// Every leaf key of `value` (a serializable configuration) as a dotted path: tables
/// are descended into, lists and empty tables are leaves, unset options are left out.
/// For tests that compare a configuration type with its documentation.
pub fn leaf_keys(value: &impl Serialize) -> Vec<String> {
    let Ok(Value::Dict(_, dict)) = Value::serialize(value) else {
        return Vec::new();
    };
    let mut leaves = Vec::new();
    collect_leaves(&dict, &mut Vec::new(), &mut leaves);
    leaves.into_iter().map(|p| p.join(".")).collect()
}

/// The part of `markdown` after the line that starts with `heading` up to the next
/// line that starts with `until` (or the end). For tests that check a reference page.
pub fn markdown_section<'a>(markdown: &'a str, heading: &str, until: &str) -> Option<&'a str> {
    let rest = markdown.split(&format!("\n{heading}")).nth(1)?;
    rest.split(&format!("\n{until}")).next()
}

/// Compares the keys documented in `section` of the page `page` ([`documented_keys`])
/// with the keys the code has (`in_code`, e.g. from [`leaf_keys`]).
///
/// # Errors
///
/// A message naming the page, the undocumented keys and the documented keys the code
/// does not have.
pub fn check_documented(
    page: &str,
    section: &str,
    in_code: impl IntoIterator<Item = String>,
) -> Result<(), String> {
    let documented: std::collections::BTreeSet<String> =
        documented_keys(section).into_iter().collect();
    let in_code: std::collections::BTreeSet<String> = in_code.into_iter().collect();
    let undocumented: Vec<_> = in_code.difference(&documented).collect();
    let unknown: Vec<_> = documented.difference(&in_code).collect();
    if undocumented.is_empty() && unknown.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{page}: undocumented keys {undocumented:?}, documented keys the code does not have {unknown:?}"
        ))
    }
}

/// The keys listed in the Markdown tables of `markdown` whose header's first column is
/// `key`: the first cell's backticked name, prefixed with the section named by the
/// nearest heading that holds a backticked section name in brackets
/// (`` ### `[server]` ``); a heading without one resets the prefix. For tests that check a reference page against the
/// code.
pub fn documented_keys(markdown: &str) -> Vec<String> {
    let mut keys = Vec::new();
    let mut prefix = String::new();
    let mut in_key_table = false;
    for line in markdown.lines() {
        let line = line.trim();
        if line.starts_with('#') {
            prefix = match (line.find("`["), line.find("]`")) {
                (Some(start), Some(end)) if end > start => format!("{}.", &line[start + 2..end]),
                _ => String::new(),
            };
            in_key_table = false;
            continue;
        }
        if !line.starts_with('|') {
            in_key_table = false;
            continue;
        }
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        if cells.first() == Some(&"key") {
            in_key_table = true;
            continue;
        }
        if !in_key_table || cells.first().is_some_and(|c| c.starts_with("---")) {
            continue;
        }
        if let Some(cell) = cells.first() {
            for name in cell.split(", ") {
                let name = name.trim().trim_matches('`');
                if !name.is_empty() {
                    keys.push(format!("{prefix}{name}"));
                }
            }
        }
    }
    keys
}

/// The single-underscore name `rest` (lower case, without the prefix) matched against
/// `shape`: at each level the longest key that prefixes the rest (`kafka_linger_ms` →
/// `kafka.linger_ms`, `topics_product_view_name` → `topics.product_view.name`). Inside
/// a table, a rest the shape does not know (an unset optional key such as `buffer.dir`)
/// is taken as the key.
fn legacy_path(shape: &Dict, rest: &str) -> Option<KeyPath> {
    let mut path = Vec::new();
    let mut rest = rest;
    let mut shape = Some(shape);
    loop {
        let known = shape.and_then(|s| {
            s.iter()
                .filter(|(k, _)| rest == k.as_str() || rest.starts_with(&format!("{k}_")))
                .max_by_key(|(k, _)| k.len())
        });
        match known {
            Some((key, Value::Dict(_, sub))) if rest != key => {
                rest = &rest[key.len() + 1..];
                path.push(key.clone());
                shape = Some(sub);
            }
            Some((key, _)) if rest == key => {
                path.push(key.clone());
                return Some(path);
            }
            None if !path.is_empty() && !rest.is_empty() => {
                path.push(rest.to_owned());
                return Some(path);
            }
            _ => return None,
        }
    }
}

fn shape_at<'a>(shape: &'a Dict, path: &[String]) -> Option<&'a Value> {
    let (first, rest) = path.split_first()?;
    let value = shape.get(first)?;
    if rest.is_empty() {
        return Some(value);
    }
    match value {
        Value::Dict(_, dict) => shape_at(dict, rest),
        _ => None,
    }
}

/// `raw` read as the type of `like`; `Err` names the type expected.
fn typed(raw: &str, like: Option<&Value>) -> Result<Value, &'static str> {
    let trimmed = raw.trim();
    let toml_value = |expected| {
        toml::from_str::<toml::Table>(&format!("v = {trimmed}"))
            .ok()
            .and_then(|mut t| t.remove("v"))
            .and_then(|v| Value::serialize(v).ok())
            .ok_or(expected)
    };
    match like {
        Some(Value::Num(_, Num::F32(_) | Num::F64(_))) => trimmed
            .parse::<f64>()
            .map(Value::from)
            .map_err(|_| "number"),
        Some(Value::Num(..)) => match trimmed.parse::<i64>() {
            Ok(n) => Ok(Value::from(n)),
            Err(_) => trimmed
                .parse::<u64>()
                .map(Value::from)
                .map_err(|_| "integer"),
        },
        Some(Value::Bool(..)) => trimmed
            .parse::<bool>()
            .map(Value::from)
            .map_err(|_| "boolean"),
        Some(Value::Array(..)) if trimmed.starts_with('[') => toml_value("TOML array"),
        Some(Value::Array(..)) => Ok(Value::from(
            trimmed
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(Value::from)
                .collect::<Vec<Value>>(),
        )),
        Some(Value::Dict(..)) => toml_value("TOML inline table ({ key = \"value\" })"),
        _ if trimmed.starts_with('{') || trimmed.starts_with('[') => {
            Ok(toml_value("").unwrap_or_else(|_| Value::from(raw)))
        }
        _ => Ok(Value::from(raw)),
    }
}

fn nest(path: &[String], value: Value) -> Dict {
    let mut value = value;
    for key in path.iter().skip(1).rev() {
        let mut dict = Dict::new();
        dict.insert(key.clone(), value);
        value = Value::from(dict);
    }
    let mut dict = Dict::new();
    if let Some(first) = path.first() {
        dict.insert(first.clone(), value);
    }
    dict
}

fn collect_leaves(dict: &Dict, at: &mut KeyPath, out: &mut Vec<KeyPath>) {
    for (key, value) in dict {
        at.push(key.clone());
        match value {
            Value::Dict(_, sub) if !sub.is_empty() => collect_leaves(sub, at, out),
            Value::Empty(..) => {}
            _ => out.push(at.clone()),
        }
        at.pop();
    }
}

/// A TOML syntax error in one line: toml's message and where in `text` it is (its own
/// rendering quotes the source over several lines).
fn toml_error(text: &str, error: &toml::de::Error) -> String {
    let message = error.message().trim_end();
    let Some(mut at) = error.span().map(|span| span.start.min(text.len())) else {
        return message.to_owned();
    };
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    let before = &text[..at];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    format!("{message} at line {line}, column {column}")
}

fn toml_leaves(table: &toml::Table, at: &mut KeyPath, out: &mut Vec<(KeyPath, String)>) {
    for (key, value) in table {
        at.push(key.clone());
        match value {
            toml::Value::Table(sub) if !sub.is_empty() => toml_leaves(sub, at, out),
            other => out.push((at.clone(), other.to_string())),
        }
        at.pop();
    }
}

fn toml_key(key: &str) -> String {
    if !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        key.to_owned()
    } else {
        toml::Value::String(key.to_owned()).to_string()
    }
}

/// `auth.keys[0].key` → `["auth", "keys", "key"]`.
fn dotted_path(key: &str) -> KeyPath {
    key.split('.')
        .map(|part| part.split('[').next().unwrap_or(part).to_owned())
        .filter(|part| !part.is_empty())
        .collect()
}

/// The origin of `path`: its own, else its nearest ancestor's (a list or table set as a
/// whole), else the first non-default origin among its descendants (a table some of
/// whose keys a layer set), else the default.
fn origin_in(origins: &BTreeMap<KeyPath, Origin>, path: &[String]) -> Origin {
    for len in (1..=path.len()).rev() {
        if let Some(origin) = origins.get(&path[..len]) {
            if len == path.len() || *origin != Origin::Default {
                return origin.clone();
            }
        }
    }
    origins
        .iter()
        .filter(|(p, _)| p.starts_with(path))
        .map(|(_, o)| o)
        .find(|o| **o != Origin::Default)
        .cloned()
        .unwrap_or(Origin::Default)
}

#[cfg(test)]
mod tests;
