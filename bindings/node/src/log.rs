//! Logs to JavaScript: the library's `tracing` events (and the Kafka client's `log`
//! records bridged into them) delivered to a JavaScript function through a
//! thread-safe function. It is weak (it does not keep the event loop alive) and
//! non-blocking: a logging thread never waits for JavaScript; when its queue is
//! full, records are dropped rather than stall delivery.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Once, PoisonError, RwLock};

use napi::bindgen_prelude::Function;
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi::Status;
use napi_derive::napi;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::prelude::*;

use crate::error::invalid_argument;
use crate::types::LogRecord;

/// Records waiting for the JavaScript thread before new ones are dropped.
const QUEUE: usize = 10_000;

type Sink = ThreadsafeFunction<LogRecord, (), LogRecord, Status, false, true, QUEUE>;

static SINK: RwLock<Option<Arc<Sink>>> = RwLock::new(None);
static MAX_LEVEL: AtomicU32 = AtomicU32::new(0);
static INSTALL: Once = Once::new();

fn number(level: Level) -> u32 {
    match level {
        Level::ERROR => 1,
        Level::WARN => 2,
        Level::INFO => 3,
        Level::DEBUG => 4,
        Level::TRACE => 5,
    }
}

fn level_number(name: &str) -> Option<u32> {
    Some(match name {
        "off" => 0,
        "error" => 1,
        "warn" => 2,
        "info" => 3,
        "debug" => 4,
        "trace" => 5,
        _ => return None,
    })
}

/// Sends each log record up to `level` (`error`, `warn`, `info`, `debug`, `trace`;
/// `off` or no handler turns logging off) to `handler`, called on the JavaScript
/// thread. Replaces an earlier handler. The first call installs the process's
/// global `tracing` subscriber; it fails when another library installed one first.
#[napi(
    catch_unwind,
    ts_args_type = "handler: ((record: LogRecord) => void) | null, level: string"
)]
pub fn set_log_handler(
    handler: Option<Function<LogRecord, ()>>,
    level: String,
) -> napi::Result<()> {
    let Some(max) = level_number(&level) else {
        return Err(invalid_argument(format!(
            "unknown log level {level:?}: expected off, error, warn, info, debug or trace"
        )));
    };
    let mut installed = Ok(());
    INSTALL.call_once(|| {
        installed = tracing_subscriber::registry().with(JsLog).try_init();
    });
    if let Err(error) = installed {
        return Err(invalid_argument(format!(
            "the process already has a log subscriber: {error}"
        )));
    }
    let sink = match handler {
        Some(handler) => Some(Arc::new(
            handler
                .build_threadsafe_function::<LogRecord>()
                .callee_handled::<false>()
                .weak::<true>()
                .max_queue_size::<QUEUE>()
                .build()?,
        )),
        None => None,
    };
    let max = if sink.is_some() { max } else { 0 };
    *SINK.write().unwrap_or_else(PoisonError::into_inner) = sink;
    MAX_LEVEL.store(max, Ordering::Relaxed);
    tracing::callsite::rebuild_interest_cache();
    Ok(())
}

/// The `tracing` layer that forwards to the registered function.
struct JsLog;

impl<S: Subscriber> Layer<S> for JsLog {
    fn enabled(&self, metadata: &tracing::Metadata<'_>, _: Context<'_, S>) -> bool {
        number(*metadata.level()) <= MAX_LEVEL.load(Ordering::Relaxed)
    }

    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let sink = SINK.read().unwrap_or_else(PoisonError::into_inner).clone();
        let Some(sink) = sink else { return };
        let mut text = Text::default();
        event.record(&mut text);
        let metadata = event.metadata();
        let record = LogRecord {
            level: metadata.level().as_str().to_ascii_lowercase(),
            target: text
                .log_target
                .take()
                .unwrap_or_else(|| metadata.target().to_owned()),
            message: text.line,
        };
        // Non-blocking: when JavaScript lags behind, the record is dropped.
        let _ = sink.call(record, ThreadsafeFunctionCallMode::NonBlocking);
    }
}

/// An event's message followed by its other fields as `key=value`.
#[derive(Default)]
struct Text {
    line: String,
    log_target: Option<String>,
}

impl Visit for Text {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "message" => self.line.insert_str(0, value),
            "log.target" => self.log_target = Some(value.to_owned()),
            name if name.starts_with("log.") => {}
            name => {
                let _ = write!(self.line, " {name}={value}");
            }
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        match field.name() {
            "message" => self.line.insert_str(0, &format!("{value:?}")),
            name if name.starts_with("log.") => {}
            name => {
                let _ = write!(self.line, " {name}={value:?}");
            }
        }
    }
}
