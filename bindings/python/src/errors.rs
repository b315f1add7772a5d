//! ingest-core's errors as the package's exception classes (`ingest_core/_errors.py`).

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyType};

use ingest_core::{Error, ErrorKind, ValidationError};

/// The exception class `name` of `ingest_core._errors`.
fn class<'py>(py: Python<'py>, name: &'static str) -> PyResult<Bound<'py, PyType>> {
    static MODULE: PyOnceLock<Py<PyModule>> = PyOnceLock::new();
    let module = MODULE.get_or_try_init(py, || {
        Ok::<_, PyErr>(py.import("ingest_core._errors")?.unbind())
    })?;
    Ok(module.bind(py).getattr(name)?.cast_into::<PyType>()?)
}

/// An instance of class `name` with `message` and the attributes in `details`.
fn raise(
    py: Python<'_>,
    name: &'static str,
    message: &str,
    details: &[(&str, Py<PyAny>)],
) -> PyErr {
    let built = (|| {
        let kwargs = PyDict::new(py);
        for (key, value) in details {
            kwargs.set_item(key, value)?;
        }
        let error = class(py, name)?.call((message,), Some(&kwargs))?;
        Ok::<_, PyErr>(PyErr::from_value(error))
    })();
    built.unwrap_or_else(|failure| failure)
}

/// The exception for `error`.
pub(crate) fn to_py(py: Python<'_>, error: Error) -> PyErr {
    let kind = error.code();
    let mut details: Vec<(&str, Py<PyAny>)> = vec![
        ("kind", text(py, kind.as_str())),
        ("kind_number", number(py, u64::from(kind.number()))),
    ];
    let message = error.to_string();
    let name = match &error {
        Error::Invalid(invalid) => {
            details.extend(validation_details(py, invalid));
            "ValidationError"
        }
        Error::QueueFull { .. } => "QueueFullError",
        Error::ShuttingDown => {
            return raise(
                py,
                "ClosedError",
                "the client is closed (or closing) and takes no more calls",
                &details,
            )
        }
        Error::Config(config) => {
            details.push(("key", text(py, config.key())));
            "ConfigError"
        }
        Error::Delivery {
            failed,
            total,
            retryable,
            ..
        } => {
            details.push(("failed", number(py, *failed as u64)));
            details.push(("total", number(py, *total as u64)));
            details.push((
                "retryable",
                pyo3::types::PyBool::new(py, *retryable)
                    .to_owned()
                    .into_any()
                    .unbind(),
            ));
            "DeliveryError"
        }
        Error::Timeout(_) => "IngestTimeoutError",
        Error::Kafka { .. } => "KafkaError",
        Error::Buffer { .. } => "DiskBufferError",
        _ if kind == ErrorKind::Io => "IngestIOError",
        _ => "IngestError",
    };
    raise(py, name, &message, &details)
}

/// The attributes of a `ValidationError`.
fn validation_details(py: Python<'_>, invalid: &ValidationError) -> Vec<(&'static str, Py<PyAny>)> {
    vec![
        // `str(error)` is the whole line; `.message` only what is wrong.
        ("message", text(py, invalid.message())),
        ("code", number(py, u64::from(invalid.code().number()))),
        ("code_name", text(py, invalid.code().as_str())),
        (
            "field",
            invalid
                .field_path()
                .map_or_else(|| py.None(), |f| text(py, f)),
        ),
        (
            "event_type",
            invalid
                .event_kind()
                .map_or_else(|| py.None(), |k| text(py, k.as_str())),
        ),
    ]
}

/// A `ConfigError` for a problem found before ingest-core saw the configuration.
pub(crate) fn config_error(py: Python<'_>, key: &str, message: &str) -> PyErr {
    raise(
        py,
        "ConfigError",
        message,
        &[
            ("kind", text(py, ErrorKind::Config.as_str())),
            (
                "kind_number",
                number(py, u64::from(ErrorKind::Config.number())),
            ),
            ("key", text(py, key)),
        ],
    )
}

/// A plain `ValueError` (a bad argument, not an ingest-core error).
pub(crate) fn bad_argument(message: impl Into<String>) -> PyErr {
    PyValueError::new_err(message.into())
}

fn text(py: Python<'_>, value: &str) -> Py<PyAny> {
    pyo3::types::PyString::new(py, value).into_any().unbind()
}

fn number(py: Python<'_>, value: u64) -> Py<PyAny> {
    value
        .into_pyobject(py)
        .map_or_else(|_| py.None(), |n| n.into_any().unbind())
}
