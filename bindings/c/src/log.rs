//! Logs to the host: a callback the host registers receives the library's log records
//! (its own `tracing` events and the Kafka client's `log` records).

#![allow(non_camel_case_types)]

use std::ffi::{c_char, c_void};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Once, RwLock};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::prelude::*;

use crate::boundary::{boundary, c_string, fail};
use crate::types::ingest_status;

/// The host's log function: `user_data` as registered, the level
/// (`INGEST_LOG_ERROR` .. `INGEST_LOG_TRACE`), the target (the emitting module, e.g.
/// `ingest_core::delivery`) and the message, both NUL-terminated and valid only during
/// the call.
///
/// It is called on whichever thread logs (the library's background threads, the
/// Kafka client's threads, or a thread inside an `ingest_*` call), possibly on several
/// at once: it must be thread-safe, return promptly, and not call `ingest_*` functions.
pub type ingest_log_fn = Option<
    unsafe extern "C" fn(
        user_data: *mut c_void,
        level: u32,
        target: *const c_char,
        message: *const c_char,
    ),
>;

#[derive(Clone, Copy)]
struct Sink {
    log: unsafe extern "C" fn(*mut c_void, u32, *const c_char, *const c_char),
    /// The host's pointer, passed back untouched (as an address: the library never
    /// dereferences it).
    user_data: usize,
}

static SINK: RwLock<Option<Sink>> = RwLock::new(None);
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

/// The `tracing` layer that forwards to the registered sink.
struct HostLog;

impl<S: Subscriber> Layer<S> for HostLog {
    fn enabled(&self, metadata: &tracing::Metadata<'_>, _: Context<'_, S>) -> bool {
        number(*metadata.level()) <= MAX_LEVEL.load(Ordering::Relaxed)
    }

    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let sink = *SINK
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(sink) = sink else { return };
        let mut text = Text::default();
        event.record(&mut text);
        let metadata = event.metadata();
        // `log` records bridged into `tracing` carry their own target.
        let target = text
            .log_target
            .take()
            .unwrap_or_else(|| metadata.target().to_owned());
        let target = c_string(&target);
        let message = c_string(&text.line);
        // SAFETY: the host registered `log` for exactly this call shape; the strings
        // live until it returns; `user_data` is the host's own pointer, passed back.
        unsafe {
            (sink.log)(
                sink.user_data as *mut c_void,
                number(*metadata.level()),
                target.as_ptr(),
                message.as_ptr(),
            );
        }
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

/// Registers `log` to receive the library's log records up to `max_level`
/// (`INGEST_LOG_ERROR` .. `INGEST_LOG_TRACE`; `INGEST_LOG_OFF` or a NULL `log` turns
/// logging off). Replaces an earlier registration. Call it before creating clients to
/// see their start-up.
///
/// The first registration installs the process's global `tracing` subscriber (and the
/// bridge from the `log` crate); when the process already has one (another Rust library
/// installed it) this fails with `INGEST_ERR_IO` and logs go there instead.
///
/// # Safety
///
/// `log` must stay callable, and `user_data` valid for it, until logging is turned off
/// or the process ends; see [`ingest_log_fn`] for what `log` may do.
#[no_mangle]
pub unsafe extern "C" fn ingest_set_log_callback(
    log: ingest_log_fn,
    user_data: *mut c_void,
    max_level: u32,
) -> ingest_status {
    boundary(|| {
        if max_level > 5 {
            return fail(
                ingest_status::INGEST_ERR_INVALID_ARGUMENT,
                &format!("unknown log level {max_level}"),
            );
        }
        let mut installed = Ok(());
        INSTALL.call_once(|| {
            installed = tracing_subscriber::registry().with(HostLog).try_init();
        });
        if let Err(error) = installed {
            return fail(
                ingest_status::INGEST_ERR_IO,
                &format!("the process already has a log subscriber: {error}"),
            );
        }
        let sink = log.map(|log| Sink {
            log,
            user_data: user_data as usize,
        });
        *SINK
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = sink;
        MAX_LEVEL.store(
            if sink.is_some() { max_level } else { 0 },
            Ordering::Relaxed,
        );
        tracing::callsite::rebuild_interest_cache();
        ingest_status::INGEST_OK
    })
}
