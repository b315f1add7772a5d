//! The values that cross the ABI: status codes, enumerations and plain structs.

#![allow(non_camel_case_types)]

use std::time::Duration;

use ingest_core::{Ack, Error, ErrorKind, EventKind};

/// The ABI's version: raised whenever a function, struct or constant changes in a way
/// that breaks programs built against an older header.
pub const INGEST_ABI_VERSION: u32 = 1;

/// A timeout that never expires.
pub const INGEST_NO_TIMEOUT: u64 = u64::MAX;

/// What a call achieved. The values are fixed: new codes may be added, existing ones
/// never change. 1–9 are the library's error kinds (`ingest_core::ErrorKind` numbers).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ingest_status {
    /// Success.
    INGEST_OK = 0,
    /// The event (or batch body) failed validation; see `ingest_last_rejection`.
    INGEST_ERR_INVALID_EVENT = 1,
    /// Back-pressure: the in-memory queue is at its bound. Retry later.
    INGEST_ERR_QUEUE_FULL = 2,
    /// The client is closed or closing; it takes no more events.
    INGEST_ERR_SHUTTING_DOWN = 3,
    /// The configuration is invalid (the message names the key).
    INGEST_ERR_CONFIG = 4,
    /// The Kafka client could not be created or an administrative request failed.
    INGEST_ERR_KAFKA = 5,
    /// Some events did not reach the acknowledgement level asked for.
    INGEST_ERR_DELIVERY = 6,
    /// A thread or file could not be set up or used.
    INGEST_ERR_IO = 7,
    /// The disk buffer could not be opened or used.
    INGEST_ERR_BUFFER = 8,
    /// The wait ended at its timeout; what it waited for may still happen.
    INGEST_ERR_TIMEOUT = 9,
    /// Not an error: a non-blocking check found the events still on their way.
    INGEST_PENDING = 64,
    /// A NULL pointer, an impossible length, text that is not UTF-8 or an unknown
    /// enumeration value was passed.
    INGEST_ERR_INVALID_ARGUMENT = 100,
    /// A bug inside the library was caught at the boundary; the message says where.
    INGEST_ERR_PANIC = 101,
    /// An error of a kind this version of the ABI has no code for yet.
    INGEST_ERR_UNKNOWN = 199,
}

impl ingest_status {
    /// The status for a library error.
    pub(crate) fn of(error: &Error) -> ingest_status {
        use ingest_status::*;
        match error.code() {
            ErrorKind::Invalid => INGEST_ERR_INVALID_EVENT,
            ErrorKind::QueueFull => INGEST_ERR_QUEUE_FULL,
            ErrorKind::ShuttingDown => INGEST_ERR_SHUTTING_DOWN,
            ErrorKind::Config => INGEST_ERR_CONFIG,
            ErrorKind::Kafka => INGEST_ERR_KAFKA,
            ErrorKind::Delivery => INGEST_ERR_DELIVERY,
            ErrorKind::Io => INGEST_ERR_IO,
            ErrorKind::Buffer => INGEST_ERR_BUFFER,
            ErrorKind::Timeout => INGEST_ERR_TIMEOUT,
            _ => INGEST_ERR_UNKNOWN,
        }
    }

    /// A snake_case name (`queue_full`), as `ingest_status_name` returns.
    pub(crate) const fn name(self) -> &'static std::ffi::CStr {
        use ingest_status::*;
        match self {
            INGEST_OK => c"ok",
            INGEST_ERR_INVALID_EVENT => c"invalid_event",
            INGEST_ERR_QUEUE_FULL => c"queue_full",
            INGEST_ERR_SHUTTING_DOWN => c"shutting_down",
            INGEST_ERR_CONFIG => c"config",
            INGEST_ERR_KAFKA => c"kafka",
            INGEST_ERR_DELIVERY => c"delivery",
            INGEST_ERR_IO => c"io",
            INGEST_ERR_BUFFER => c"buffer",
            INGEST_ERR_TIMEOUT => c"timeout",
            INGEST_PENDING => c"pending",
            INGEST_ERR_INVALID_ARGUMENT => c"invalid_argument",
            INGEST_ERR_PANIC => c"panic",
            INGEST_ERR_UNKNOWN => c"unknown",
        }
    }
}

/// The event types, passed as `uint32_t kind`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ingest_event_kind {
    /// `product_view`.
    INGEST_PRODUCT_VIEW = 0,
    /// `cart`.
    INGEST_CART = 1,
    /// `purchase`.
    INGEST_PURCHASE = 2,
    /// `search`.
    INGEST_SEARCH = 3,
}

/// The acknowledgement levels, passed as `uint32_t ack`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ingest_ack {
    /// Validated and queued in memory (resolves at once).
    INGEST_ACK_ACCEPTED = 0,
    /// Written to the disk buffer (without one: delivered to Kafka).
    INGEST_ACK_PERSISTED = 1,
    /// Acknowledged by Kafka with `acks=all`.
    INGEST_ACK_DELIVERED = 2,
}

/// The format of a configuration's or a flags file's text, passed as `uint32_t format`
/// (`ingest_client_new`, `ingest_flags_new`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ingest_config_format {
    /// TOML, as the edge agent's `[ingest]` section or flags file.
    INGEST_CONFIG_TOML = 0,
    /// JSON: an object with the same keys.
    INGEST_CONFIG_JSON = 1,
}

/// A checked `uint32_t kind`.
pub(crate) fn event_kind(kind: u32) -> Option<EventKind> {
    EventKind::ALL.get(usize::try_from(kind).ok()?).copied()
}

/// A checked `uint32_t ack`.
pub(crate) fn ack(ack: u32) -> Option<Ack> {
    match ack {
        0 => Some(Ack::Accepted),
        1 => Some(Ack::Persisted),
        2 => Some(Ack::Delivered),
        _ => None,
    }
}

/// A timeout in milliseconds; [`INGEST_NO_TIMEOUT`] is none.
pub(crate) fn timeout(ms: u64) -> Option<Duration> {
    (ms != INGEST_NO_TIMEOUT).then(|| Duration::from_millis(ms))
}

/// An event id: a UUID's 16 bytes (RFC 9562 order). `ingest_event_id_format` writes
/// its text form.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ingest_event_id {
    /// The UUID's bytes.
    pub bytes: [u8; 16],
}

/// One rejected event: its fixed validation code (see the table in the README), the
/// code's name, the field at fault (NULL for whole-document problems) and a message.
/// The strings are borrowed from the object that filled the struct.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ingest_rejection {
    /// The event's position in its batch (0 for a single submission).
    pub index: usize,
    /// The validation code's number (`ingest_core::ErrorCode::number`).
    pub code: u16,
    /// The code's name (`missing_field`).
    pub code_name: *const std::ffi::c_char,
    /// The field's path (`items[0].price`), or NULL.
    pub field: *const std::ffi::c_char,
    /// A human-readable explanation.
    pub message: *const std::ffi::c_char,
}

/// What closing achieved.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct ingest_shutdown_report {
    /// Records Kafka had not acknowledged by the deadline.
    pub undelivered: u64,
    /// Of those, the records kept in the disk buffer for the next start.
    pub kept_in_buffer: u64,
    /// Records neither delivered nor kept: lost.
    pub lost: u64,
    /// How long closing took, in milliseconds.
    pub elapsed_ms: u64,
}

/// A readiness snapshot.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct ingest_health {
    /// 1 when new events can be taken now (not closing, threads alive, Kafka
    /// reachable or the disk buffer has room).
    pub ready: u8,
    /// 1 unless the circuit breaker is open.
    pub kafka_reachable: u8,
    /// 1 once closing began.
    pub shutting_down: u8,
    /// 1 when a disk buffer is configured (the `buffer_*` fields are then set).
    pub has_buffer: u8,
    /// The circuit breaker: 0 closed, 1 half-open, 2 open.
    pub breaker: u32,
    /// Background threads that died (a restart is needed).
    pub dead_threads: u32,
    /// Events waiting in the in-memory queue.
    pub queue_events: u64,
    /// Bytes waiting in the in-memory queue.
    pub queue_bytes: u64,
    /// Unacknowledged events in the disk buffer.
    pub buffer_entries: u64,
    /// Bytes the disk buffer holds.
    pub buffer_bytes: u64,
    /// The disk buffer's bound.
    pub buffer_max_bytes: u64,
}

/// Running totals since the client was created.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct ingest_stats {
    /// Events validated and queued.
    pub accepted: u64,
    /// Events that failed validation.
    pub rejected: u64,
    /// Records acknowledged by Kafka (dead letters included).
    pub delivered: u64,
    /// Records Kafka did not take.
    pub failed: u64,
    /// Dead-letter records not queued.
    pub dead_letters_dropped: u64,
    /// Events waiting in the in-memory queue.
    pub queue_events: u64,
    /// Bytes waiting in the in-memory queue.
    pub queue_bytes: u64,
}

/// One finished registration of a completion queue.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ingest_completion {
    /// The tag given when it was registered.
    pub tag: u64,
    /// `INGEST_OK`, or why not (`INGEST_ERR_DELIVERY`, `INGEST_ERR_TIMEOUT`, ...).
    pub status: ingest_status,
}

/// The log levels of `ingest_set_log_callback`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ingest_log_level {
    /// Logging off (as a maximum level).
    INGEST_LOG_OFF = 0,
    /// Errors.
    INGEST_LOG_ERROR = 1,
    /// Warnings.
    INGEST_LOG_WARN = 2,
    /// Information.
    INGEST_LOG_INFO = 3,
    /// Debugging detail.
    INGEST_LOG_DEBUG = 4,
    /// Tracing detail.
    INGEST_LOG_TRACE = 5,
}
