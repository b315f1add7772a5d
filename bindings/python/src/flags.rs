//! `ingest_core.Flags`: feature-flag assignment, the same as the edge agent's
//! (`ingest_core::flags`): a flags file in, each user's variants out.

use std::path::PathBuf;

use pyo3::prelude::*;
use pyo3::types::PyDict;

use ingest_core::flags::{FlagSet, FlagsError};

use crate::errors::config_error;

/// A checked set of feature flags. Immutable and thread-safe.
#[pyclass(frozen, module = "ingest_core")]
pub(crate) struct Flags {
    set: FlagSet,
}

#[pymethods]
impl Flags {
    /// Flags from the text of a TOML flags file (`[[flags]]` tables).
    #[staticmethod]
    fn from_toml(py: Python<'_>, text: &str) -> PyResult<Flags> {
        checked(py, FlagSet::from_toml(text), None)
    }

    /// Flags from the text of a JSON flags file (`{"flags": [...]}`).
    #[staticmethod]
    fn from_json(py: Python<'_>, text: &str) -> PyResult<Flags> {
        checked(py, FlagSet::from_json(text), None)
    }

    /// Flags from the file at `path`: JSON when its name ends in `.json`, else TOML, as
    /// the edge agent reads `flags.file`.
    #[staticmethod]
    fn from_file(py: Python<'_>, path: PathBuf) -> PyResult<Flags> {
        let read = py.detach(|| FlagSet::read(&path));
        checked(py, read, Some(&path))
    }

    /// The user's variant of every flag, by flag name (in name order).
    fn assign<'py>(&self, py: Python<'py>, user: &str) -> PyResult<Bound<'py, PyDict>> {
        let assigned = PyDict::new(py);
        for (flag, variant) in self.set.assign(user) {
            assigned.set_item(flag, variant)?;
        }
        Ok(assigned)
    }

    /// The user's variant of one flag; None when there is no such flag.
    fn variant(&self, flag: &str, user: &str) -> Option<String> {
        self.set.variant(flag, user).map(str::to_owned)
    }

    fn __len__(&self) -> usize {
        self.set.len()
    }

    fn __repr__(&self) -> String {
        format!("Flags(len={})", self.set.len())
    }
}

/// The flags, or a `ConfigError` whose `key` is where the fault is (`flags[0].variants`),
/// its message prefixed with the file's path when there is one, as the agent logs it.
fn checked(
    py: Python<'_>,
    parsed: Result<FlagSet, FlagsError>,
    file: Option<&PathBuf>,
) -> PyResult<Flags> {
    parsed.map(|set| Flags { set }).map_err(|error| {
        let message = match file {
            Some(path) => format!("{}: {error}", path.display()),
            None => error.to_string(),
        };
        config_error(py, &error.path, &message)
    })
}
