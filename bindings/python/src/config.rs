//! `Client(...)` arguments as an [`IngestConfig`].
//!
//! Layers, each over the previous one: the defaults; `config` (TOML or JSON text, or a
//! dict, with the keys of docs/configuration.md); `brokers` and `buffer_dir`; then the
//! keyword options, named after the configuration keys with `__` for the dots
//! (`kafka__linger_ms=20` sets `kafka.linger_ms`, `topics__cart__name="carts"` sets
//! `topics.cart.name`; `source` is the top-level key). An option that names no key is a
//! `ConfigError` naming it; so is a value of the wrong type (ingest-core's own check).

use std::path::PathBuf;

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};
use serde_json::{Map, Value};

use ingest_core::IngestConfig;

use crate::errors::{config_error, to_py};

/// Everything `Client(...)` was given about its configuration.
pub(crate) struct ClientArgs<'py> {
    pub(crate) brokers: Option<String>,
    pub(crate) buffer_dir: Option<PathBuf>,
    pub(crate) config: Option<Bound<'py, PyAny>>,
    pub(crate) options: Option<Bound<'py, PyDict>>,
}

impl ClientArgs<'_> {
    /// The configuration these arguments describe.
    pub(crate) fn config(&self, py: Python<'_>) -> PyResult<IngestConfig> {
        let mut tree = match &self.config {
            None => Value::Object(Map::new()),
            Some(config) => base(py, config)?,
        };
        if let Some(brokers) = &self.brokers {
            set(
                &mut tree,
                &["kafka", "brokers"],
                Value::String(brokers.clone()),
            );
        }
        if let Some(dir) = &self.buffer_dir {
            set(
                &mut tree,
                &["buffer", "type"],
                Value::String("log".to_owned()),
            );
            set(
                &mut tree,
                &["buffer", "dir"],
                Value::String(dir.to_string_lossy().into_owned()),
            );
        }
        if let Some(options) = &self.options {
            let known = serde_json::to_value(IngestConfig::default())
                .map_err(|e| config_error(py, "", &format!("the default configuration: {e}")))?;
            for (name, value) in options.iter() {
                let name: String = name.extract()?;
                if value.is_none() {
                    continue; // None: not set, the layers below decide
                }
                let path: Vec<&str> = name.split("__").collect();
                check_known(py, &known, &name, &path)?;
                set(&mut tree, &path, to_json(&value, &name)?);
            }
        }
        IngestConfig::from_json(&tree.to_string()).map_err(|e| to_py(py, e.into()))
    }
}

/// The `config` argument as a JSON tree.
fn base(py: Python<'_>, config: &Bound<'_, PyAny>) -> PyResult<Value> {
    if let Ok(text) = config.cast::<PyString>() {
        let text = text.to_cow()?;
        let text: &str = &text;
        // Parsed here only to merge the other arguments into it; ingest-core reads the
        // merged tree and names any bad key.
        return if text.trim_start().starts_with('{') {
            serde_json::from_str(text)
                .map_err(|e| config_error(py, "", &format!("config is not valid JSON: {e}")))
        } else {
            let table: toml::Table = toml::from_str(text)
                .map_err(|e| config_error(py, "", &format!("config is not valid TOML: {e}")))?;
            serde_json::to_value(table).map_err(|e| config_error(py, "", &format!("config: {e}")))
        };
    }
    if config.is_instance_of::<PyDict>() {
        return to_json(config, "config");
    }
    Err(PyTypeError::new_err(format!(
        "config must be TOML or JSON text or a dict, not {}",
        type_name(config)
    )))
}

/// Refuses an option that names no configuration key. Maps (`kafka.properties`) take
/// any key.
fn check_known(py: Python<'_>, known: &Value, name: &str, path: &[&str]) -> PyResult<()> {
    let mut node = known;
    for (depth, key) in path.iter().enumerate() {
        match node {
            Value::Object(map) if map.is_empty() => return Ok(()),
            Value::Object(map) if map.contains_key(*key) => node = &map[*key],
            _ => {
                let dotted = path[..=depth].join(".");
                return Err(config_error(
                    py,
                    &dotted,
                    &format!(
                        "unknown option `{name}`: there is no configuration key `{dotted}` \
                         (options are configuration keys with `__` for the dots, e.g. \
                         kafka__linger_ms=20; see docs/configuration.md)"
                    ),
                ));
            }
        }
    }
    // The option names a whole section or a key: either way it exists.
    Ok(())
}

/// Sets `path` in `tree` to `value`, creating tables on the way.
fn set(tree: &mut Value, path: &[&str], value: Value) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut node = tree;
    for key in parents {
        if !node.is_object() {
            *node = Value::Object(Map::new());
        }
        let Value::Object(map) = node else { return };
        node = map
            .entry((*key).to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
    }
    if !node.is_object() {
        *node = Value::Object(Map::new());
    }
    if let Value::Object(map) = node {
        map.insert((*last).to_owned(), value);
    }
}

/// A Python value (str, int, float, bool, None, dict, list or tuple, os.PathLike) as
/// JSON; `name` says where it came from in an error.
fn to_json(value: &Bound<'_, PyAny>, name: &str) -> PyResult<Value> {
    if value.is_none() {
        return Ok(Value::Null);
    }
    if let Ok(flag) = value.cast::<PyBool>() {
        return Ok(Value::Bool(flag.is_true()));
    }
    if value.is_instance_of::<PyInt>() {
        if let Ok(n) = value.extract::<i64>() {
            return Ok(Value::from(n));
        }
        return Ok(Value::from(value.extract::<u64>()?));
    }
    if let Ok(n) = value.cast::<PyFloat>() {
        return Ok(serde_json::Number::from_f64(n.value()).map_or(Value::Null, Value::Number));
    }
    if let Ok(text) = value.cast::<PyString>() {
        return Ok(Value::String(text.to_cow()?.into_owned()));
    }
    if let Ok(dict) = value.cast::<PyDict>() {
        let mut map = Map::new();
        for (key, item) in dict.iter() {
            let key: String = key
                .extract()
                .map_err(|_| PyTypeError::new_err(format!("{name}: dict keys must be str")))?;
            let inner = to_json(&item, &format!("{name}.{key}"))?;
            map.insert(key, inner);
        }
        return Ok(Value::Object(map));
    }
    if value.is_instance_of::<PyList>() || value.is_instance_of::<PyTuple>() {
        let mut items = Vec::new();
        for item in value.try_iter()? {
            items.push(to_json(&item?, name)?);
        }
        return Ok(Value::Array(items));
    }
    if let Ok(path) = value.extract::<PathBuf>() {
        return Ok(Value::String(path.to_string_lossy().into_owned()));
    }
    Err(PyTypeError::new_err(format!(
        "option {name}: a {} cannot be a configuration value (str, int, float, bool, dict, list or path)",
        type_name(value)
    )))
}

pub(crate) fn type_name(value: &Bound<'_, PyAny>) -> String {
    value
        .get_type()
        .name()
        .map_or_else(|_| "value of unknown type".to_owned(), |n| n.to_string())
}
