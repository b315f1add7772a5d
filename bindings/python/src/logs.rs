//! The library's `tracing` events as records of Python's `logging`, logger
//! `ingest_core` (the record's `name` is `ingest_core.<target>`, e.g.
//! `ingest_core.ingest_core::delivery`).
//!
//! Events arrive on any thread, including library threads that hold locks a Python
//! thread may be waiting on; calling into Python there could deadlock. So they are
//! formatted where they happen, put on a bounded channel (dropped when it is full,
//! counted, and the count logged later), and one thread of this module, `ingest-log`,
//! takes them off and calls `logging.getLogger(name).log(level, message)` with the GIL.
//!
//! Only events at or above the `ingest_core` logger's effective level are formatted:
//! the level is read when the module loads, when a `Client` is created and by
//! `ingest_core.refresh_log_level()` after the application changes it.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::OnceLock;

use pyo3::prelude::*;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::prelude::*;

/// Records waiting for the `ingest-log` thread at most.
const CAPACITY: usize = 4096;

/// The most verbose `tracing` level forwarded: 0 none, 1 error ... 5 trace.
static MAX_LEVEL: AtomicU8 = AtomicU8::new(0);
static STOPPED: AtomicBool = AtomicBool::new(false);
static DROPPED: AtomicU64 = AtomicU64::new(0);
static SENDER: OnceLock<SyncSender<Record>> = OnceLock::new();

struct Record {
    level: Level,
    target: String,
    message: String,
}

fn rank(level: Level) -> u8 {
    match level {
        Level::ERROR => 1,
        Level::WARN => 2,
        Level::INFO => 3,
        Level::DEBUG => 4,
        Level::TRACE => 5,
    }
}

/// Python's numeric level for a `tracing` level.
fn python_level(level: Level) -> u32 {
    match level {
        Level::ERROR => 40,
        Level::WARN => 30,
        Level::INFO => 20,
        Level::DEBUG => 10,
        Level::TRACE => 5,
    }
}

struct ToPython;

impl<S: Subscriber> Layer<S> for ToPython {
    fn enabled(&self, metadata: &tracing::Metadata<'_>, _: Context<'_, S>) -> bool {
        rank(*metadata.level()) <= MAX_LEVEL.load(Ordering::Relaxed)
    }

    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let Some(sender) = SENDER.get() else { return };
        let mut text = Text::default();
        event.record(&mut text);
        let record = Record {
            level: *event.metadata().level(),
            target: event.metadata().target().to_owned(),
            message: text.line,
        };
        if let Err(TrySendError::Full(_)) = sender.try_send(record) {
            DROPPED.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// An event's message followed by its fields as `name=value`.
#[derive(Default)]
struct Text {
    line: String,
}

impl Visit for Text {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.line.insert_str(0, value);
        } else if !field.name().starts_with("log.") {
            let _ = write!(self.line, " {}={value}", field.name());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.line.insert_str(0, &format!("{value:?}"));
        } else if !field.name().starts_with("log.") {
            let _ = write!(self.line, " {}={value:?}", field.name());
        }
    }
}

/// Installs the forwarding subscriber (once per process; if the process already has
/// a global `tracing` subscriber, that one keeps the records) and reads the level.
pub(crate) fn install(py: Python<'_>) -> PyResult<()> {
    if SENDER.get().is_none() {
        let (sender, receiver) = sync_channel(CAPACITY);
        if SENDER.set(sender).is_ok() {
            std::thread::Builder::new()
                .name("ingest-log".to_owned())
                .spawn(move || forward(receiver))?;
            let _ = tracing_subscriber::registry().with(ToPython).try_init();
        }
    }
    read_level(py)
}

/// Reads the `ingest_core` logger's effective level again, after the application
/// changed it (records below it are not even formatted). `Client()` does this too.
#[pyfunction]
pub(crate) fn refresh_log_level(py: Python<'_>) -> PyResult<()> {
    read_level(py)
}

pub(crate) fn read_level(py: Python<'_>) -> PyResult<()> {
    let level: u32 = py
        .import("logging")?
        .call_method1("getLogger", ("ingest_core",))?
        .call_method0("getEffectiveLevel")?
        .extract()?;
    let max = match level {
        0..=5 => 5,
        6..=10 => 4,
        11..=20 => 3,
        21..=30 => 2,
        31..=40 => 1,
        _ => 0,
    };
    MAX_LEVEL.store(max, Ordering::Relaxed);
    tracing::callsite::rebuild_interest_cache();
    Ok(())
}

/// Stops calling into Python (the interpreter is exiting).
pub(crate) fn stop() {
    STOPPED.store(true, Ordering::Release);
    MAX_LEVEL.store(0, Ordering::Relaxed);
}

/// The `ingest-log` thread: records to Python, several per GIL acquisition.
fn forward(receiver: Receiver<Record>) {
    while let Ok(first) = receiver.recv() {
        let mut records = vec![first];
        records.extend(receiver.try_iter().take(255));
        if STOPPED.load(Ordering::Acquire) {
            continue;
        }
        let dropped = DROPPED.swap(0, Ordering::Relaxed);
        let _ = Python::try_attach(|py| {
            let logging = py.import("logging")?;
            for record in &records {
                let logger = logging
                    .call_method1("getLogger", (format!("ingest_core.{}", record.target),))?;
                logger.call_method1("log", (python_level(record.level), "%s", &record.message))?;
            }
            if dropped > 0 {
                logging
                    .call_method1("getLogger", ("ingest_core",))?
                    .call_method1(
                        "warning",
                        (
                            "%d log records dropped: they came faster than logging took them",
                            dropped,
                        ),
                    )?;
            }
            Ok::<_, PyErr>(())
        });
    }
}
