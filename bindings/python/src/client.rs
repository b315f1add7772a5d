//! `ingest_core.Client`: create, submit, wait, flush, close, health, stats.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString};

use ingest_core::bytes::Bytes;
use ingest_core::{Ack, BreakerState, EventKind, Ingestor, Receipt};

use crate::aio::{self, Wait};
use crate::config::{type_name, ClientArgs};
use crate::errors::{bad_argument, to_py};
use crate::payload::payload;

/// The event kinds `submit` takes.
pub(crate) const EVENT_KINDS: [&str; 4] = ["product_view", "cart", "purchase", "search"];
/// The acknowledgement levels, weakest first.
pub(crate) const ACKS: [&str; 3] = ["accepted", "persisted", "delivered"];

/// How long closing takes at most when a `with` block ends or a client never closed is
/// garbage-collected.
const DEFAULT_CLOSE_TIMEOUT: Duration = Duration::from_secs(30);

/// Payloads larger than this are validated with the GIL released (smaller ones take
/// less time to validate than releasing and retaking the GIL).
const RELEASE_GIL_ABOVE: usize = 64 * 1024;

/// A client of ingest-core: validates events and delivers them to Kafka. Thread-safe.
#[pyclass(frozen, module = "ingest_core")]
pub(crate) struct Client {
    ingestor: Ingestor,
}

/// The outcome of `submit_batch`.
#[pyclass(frozen, get_all, module = "ingest_core")]
pub(crate) struct BatchResult {
    /// How many events were accepted.
    accepted: usize,
    /// The accepted events' ids, in batch order.
    event_ids: Py<PyList>,
    /// The rejected events (`Rejection`), in batch order.
    rejections: Py<PyList>,
}

#[pymethods]
impl BatchResult {
    fn __repr__(&self, py: Python<'_>) -> String {
        format!(
            "BatchResult(accepted={}, rejected={})",
            self.accepted,
            self.rejections.bind(py).len()
        )
    }
}

/// One event of a batch that failed validation.
#[pyclass(frozen, get_all, module = "ingest_core")]
pub(crate) struct Rejection {
    /// Position of the event in the batch (0-based).
    index: usize,
    /// The validation code's fixed number.
    code: u16,
    /// The validation code's name (`missing_field`, ...).
    code_name: &'static str,
    /// Path of the field at fault, or None.
    field: Option<String>,
    /// What is wrong.
    message: String,
}

#[pymethods]
impl Rejection {
    fn __repr__(&self) -> String {
        format!(
            "Rejection(index={}, code_name={:?}, field={:?}, message={:?})",
            self.index, self.code_name, self.field, self.message
        )
    }
}

fn kind(name: &str) -> PyResult<EventKind> {
    EventKind::from_name(name).ok_or_else(|| {
        bad_argument(format!(
            "unknown event kind {name:?}: one of {}",
            EVENT_KINDS.join(", ")
        ))
    })
}

fn ack(name: &str) -> PyResult<Ack> {
    Ack::from_str(name).map_err(|_| {
        bad_argument(format!(
            "unknown acknowledgement level {name:?}: one of {}",
            ACKS.join(", ")
        ))
    })
}

/// A timeout in seconds (None: no limit).
fn timeout(seconds: Option<f64>) -> PyResult<Option<Duration>> {
    seconds
        .map(|s| {
            Duration::try_from_secs_f64(s).map_err(|_| {
                bad_argument(format!(
                    "timeout must be a finite number of seconds >= 0 or None, not {s}"
                ))
            })
        })
        .transpose()
}

fn event_id(receipt: &Receipt) -> String {
    receipt
        .event_id()
        .map(|id| id.hyphenated().to_string())
        .unwrap_or_default()
}

impl Client {
    fn submit_receipt(&self, py: Python<'_>, kind: EventKind, body: Bytes) -> PyResult<Receipt> {
        let submitted = if body.len() > RELEASE_GIL_ABOVE {
            py.detach(|| self.ingestor.submit(kind, body))
        } else {
            self.ingestor.submit(kind, body)
        };
        submitted.map_err(|e| to_py(py, e))
    }

    fn batch(
        &self,
        py: Python<'_>,
        payload: &Bound<'_, PyAny>,
    ) -> PyResult<(Receipt, BatchResult)> {
        let body = self::payload(payload)?;
        let receipt = py
            .detach(|| self.ingestor.submit_batch(body))
            .map_err(|e| to_py(py, e))?;
        let ids = PyList::empty(py);
        for id in &receipt.event_ids {
            ids.append(PyString::new(py, &id.hyphenated().to_string()))?;
        }
        let rejections = PyList::empty(py);
        for rejected in &receipt.rejected {
            let error = &rejected.error;
            let rejection = Rejection {
                index: rejected.index,
                code: error.code().number(),
                code_name: error.code().as_str(),
                field: error.field_path().map(str::to_owned),
                message: error.message().to_owned(),
            };
            rejections.append(Py::new(py, rejection)?)?;
        }
        let result = BatchResult {
            accepted: receipt.accepted,
            event_ids: ids.unbind(),
            rejections: rejections.unbind(),
        };
        Ok((receipt.receipt, result))
    }

    fn wait(
        &self,
        py: Python<'_>,
        receipt: &Receipt,
        ack: Ack,
        limit: Option<Duration>,
    ) -> PyResult<()> {
        if ack == Ack::Accepted {
            return Ok(());
        }
        py.detach(|| receipt.wait_blocking(ack, limit))
            .map_err(|e| to_py(py, e))
    }
}

#[pymethods]
impl Client {
    /// Client(brokers=None, buffer_dir=None, *, config=None, **options)
    #[new]
    #[pyo3(signature = (brokers=None, buffer_dir=None, *, config=None, **options))]
    fn new(
        py: Python<'_>,
        brokers: Option<&Bound<'_, PyAny>>,
        buffer_dir: Option<&Bound<'_, PyAny>>,
        config: Option<Bound<'_, PyAny>>,
        options: Option<Bound<'_, PyDict>>,
    ) -> PyResult<Self> {
        let brokers = match brokers {
            Some(b) if !b.is_none() => Some(b.extract::<String>().map_err(|_| {
                PyTypeError::new_err(format!(
                    "brokers must be a str (\"host:port,host:port\"), not {}",
                    type_name(b)
                ))
            })?),
            _ => None,
        };
        let buffer_dir = match buffer_dir {
            Some(d) if !d.is_none() => Some(d.extract::<PathBuf>().map_err(|_| {
                PyTypeError::new_err(format!(
                    "buffer_dir must be a str or os.PathLike, not {}",
                    type_name(d)
                ))
            })?),
            _ => None,
        };
        let config = ClientArgs {
            brokers,
            buffer_dir,
            config: config.filter(|c| !c.is_none()),
            options,
        }
        .config(py)?;
        crate::logs::read_level(py)?;
        let ingestor = py
            .detach(|| Ingestor::builder().config(config).build())
            .map_err(|e| to_py(py, e))?;
        Ok(Client { ingestor })
    }

    /// Validates one event and queues it; returns its id once it reached `ack`.
    #[pyo3(signature = (kind, payload, ack="accepted", timeout=None))]
    fn submit(
        &self,
        py: Python<'_>,
        kind: &str,
        payload: &Bound<'_, PyAny>,
        ack: &str,
        timeout: Option<f64>,
    ) -> PyResult<String> {
        let (kind, level, limit) = (self::kind(kind)?, self::ack(ack)?, self::timeout(timeout)?);
        let receipt = self.submit_receipt(py, kind, self::payload(payload)?)?;
        self.wait(py, &receipt, level, limit)?;
        Ok(event_id(&receipt))
    }

    /// Validates a batch (NDJSON or a JSON array, each event naming its `type`) and
    /// queues its valid events; returns a `BatchResult` once they reached `ack`.
    #[pyo3(signature = (payload, ack="accepted", timeout=None))]
    fn submit_batch(
        &self,
        py: Python<'_>,
        payload: &Bound<'_, PyAny>,
        ack: &str,
        timeout: Option<f64>,
    ) -> PyResult<BatchResult> {
        let (level, limit) = (self::ack(ack)?, self::timeout(timeout)?);
        let (receipt, result) = self.batch(py, payload)?;
        self.wait(py, &receipt, level, limit)?;
        Ok(result)
    }

    /// `submit` for asyncio: returns a future resolving to the event id at `ack`.
    #[pyo3(signature = (kind, payload, ack="delivered", timeout=None))]
    fn submit_async<'py>(
        &self,
        py: Python<'py>,
        kind: &str,
        payload: &Bound<'py, PyAny>,
        ack: &str,
        timeout: Option<f64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let (kind, level, limit) = (self::kind(kind)?, self::ack(ack)?, self::timeout(timeout)?);
        let receipt = self.submit_receipt(py, kind, self::payload(payload)?)?;
        let id = PyString::new(py, &event_id(&receipt)).into_any().unbind();
        aio::future(py, Wait::Receipt(&receipt, level, limit), id)
    }

    /// `submit_batch` for asyncio: returns a future resolving to the `BatchResult`.
    #[pyo3(signature = (payload, ack="delivered", timeout=None))]
    fn submit_batch_async<'py>(
        &self,
        py: Python<'py>,
        payload: &Bound<'py, PyAny>,
        ack: &str,
        timeout: Option<f64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let (level, limit) = (self::ack(ack)?, self::timeout(timeout)?);
        let (receipt, result) = self.batch(py, payload)?;
        let result = Py::new(py, result)?.into_any();
        aio::future(py, Wait::Receipt(&receipt, level, limit), result)
    }

    /// Waits until every event submitted before the call is delivered or failed.
    #[pyo3(signature = (timeout=None))]
    fn flush(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<()> {
        let limit = self::timeout(timeout)?.unwrap_or(Duration::MAX);
        py.detach(|| self.ingestor.flush_blocking(limit))
            .map_err(|e| to_py(py, e))
    }

    /// `flush` for asyncio.
    #[pyo3(signature = (timeout=None))]
    fn flush_async<'py>(
        &self,
        py: Python<'py>,
        timeout: Option<f64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let limit = self::timeout(timeout)?.unwrap_or(Duration::from_secs(u64::from(u32::MAX)));
        if self.ingestor.health().shutting_down {
            return Err(to_py(py, ingest_core::Error::ShuttingDown));
        }
        aio::future(py, Wait::Flush(&self.ingestor, limit), py.None())
    }

    /// Closes the client: stops taking events, delivers what it holds within
    /// `timeout` seconds, and returns what it achieved.
    #[pyo3(signature = (timeout=30.0))]
    fn close<'py>(&self, py: Python<'py>, timeout: Option<f64>) -> PyResult<Bound<'py, PyDict>> {
        let limit = self::timeout(timeout)?.unwrap_or(Duration::from_secs(u64::from(u32::MAX)));
        let report = py
            .detach(|| self.ingestor.shutdown_blocking(limit))
            .map_err(|e| to_py(py, e))?;
        let out = PyDict::new(py);
        out.set_item("undelivered", report.undelivered)?;
        out.set_item("kept_in_buffer", report.kept_in_buffer)?;
        out.set_item("lost", report.lost())?;
        out.set_item("elapsed", report.elapsed.as_secs_f64())?;
        Ok(out)
    }

    /// Whether `close` has begun.
    #[getter]
    fn closed(&self) -> bool {
        self.ingestor.health().shutting_down
    }

    /// A readiness snapshot.
    fn health<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let health = self.ingestor.health();
        let out = PyDict::new(py);
        out.set_item("ready", health.is_ready())?;
        out.set_item("kafka_reachable", health.kafka_reachable())?;
        out.set_item("shutting_down", health.shutting_down)?;
        out.set_item(
            "breaker",
            match health.breaker {
                BreakerState::Closed => "closed",
                BreakerState::HalfOpen => "half_open",
                _ => "open",
            },
        )?;
        out.set_item("dead_threads", health.dead_threads.clone())?;
        out.set_item("queue_events", health.queue_events)?;
        out.set_item("queue_bytes", health.queue_bytes)?;
        out.set_item("buffer", buffer(py, health.buffer)?)?;
        Ok(out)
    }

    /// The running totals since the client was created.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let stats = self.ingestor.stats();
        let out = PyDict::new(py);
        out.set_item("accepted", stats.accepted)?;
        out.set_item("rejected", stats.rejected)?;
        out.set_item("delivered", stats.delivered)?;
        out.set_item("failed", stats.failed)?;
        out.set_item("dead_letters_dropped", stats.dead_letters_dropped)?;
        out.set_item("queue_events", stats.queue_events)?;
        out.set_item("queue_bytes", stats.queue_bytes)?;
        out.set_item("buffer", buffer(py, stats.buffer)?)?;
        Ok(out)
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, py: Python<'_>, _exc: &Bound<'_, pyo3::types::PyTuple>) -> PyResult<bool> {
        if !self.ingestor.health().shutting_down {
            self.close(py, Some(DEFAULT_CLOSE_TIMEOUT.as_secs_f64()))?;
        }
        Ok(false)
    }

    fn __repr__(&self) -> String {
        let settings = self.ingestor.settings().config();
        format!(
            "Client(brokers={:?}, buffer={}, closed={})",
            settings.kafka.brokers,
            settings.buffer.dir.as_ref().map_or_else(
                || "memory".to_owned(),
                |d| format!("{:?}", d.display().to_string())
            ),
            self.ingestor.health().shutting_down
        )
    }
}

fn buffer<'py>(
    py: Python<'py>,
    buffer: Option<ingest_core::BufferHealth>,
) -> PyResult<Option<Bound<'py, PyDict>>> {
    buffer
        .map(|b| {
            let out = PyDict::new(py);
            out.set_item("entries", b.entries)?;
            out.set_item("bytes", b.bytes)?;
            out.set_item("max_bytes", b.max_bytes)?;
            Ok(out)
        })
        .transpose()
}

impl Drop for Client {
    /// A client garbage-collected without `close` delivers what it holds first, within
    /// `DEFAULT_CLOSE_TIMEOUT`, with the GIL released.
    fn drop(&mut self) {
        if self.ingestor.health().shutting_down {
            return;
        }
        let ingestor = &self.ingestor;
        // Without an interpreter to release (it is finalizing), close all the same.
        let closed = Python::try_attach(|py| {
            py.detach(|| ingestor.shutdown_blocking(DEFAULT_CLOSE_TIMEOUT))
        });
        if closed.is_none() {
            let _ = ingestor.shutdown_blocking(DEFAULT_CLOSE_TIMEOUT);
        }
    }
}
