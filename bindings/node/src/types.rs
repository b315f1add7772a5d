//! The plain objects this layer returns (TypeScript interfaces in `binding.d.ts`).
//! Counters are `number`s: exact up to 2^53, far beyond what a process submits.

use napi_derive::napi;

/// The disk buffer's fill level.
#[napi(object)]
pub struct BufferLevel {
    /// Events stored and not yet acknowledged by Kafka.
    pub entries: f64,
    /// Bytes they take.
    pub bytes: f64,
    /// The buffer's configured bound in bytes.
    pub max_bytes: f64,
}

/// A readiness snapshot (`client.health()`).
#[napi(object)]
pub struct HealthSnapshot {
    /// Kafka reachable, taking events and no delivery thread dead.
    pub ready: bool,
    /// Whether the last contact with Kafka succeeded (the circuit breaker is closed).
    pub kafka_reachable: bool,
    /// `closed`, `half_open` or `open` (Kafka unreachable).
    pub breaker: String,
    /// Whether `close` has begun.
    pub shutting_down: bool,
    /// Events waiting in the in-memory queue.
    pub queue_events: f64,
    /// Bytes waiting in the in-memory queue.
    pub queue_bytes: f64,
    /// The disk buffer, when one is configured.
    pub buffer: Option<BufferLevel>,
    /// Background threads that died (events no longer move past them).
    pub dead_threads: Vec<String>,
}

/// Running totals since the client started (`client.stats()`).
#[napi(object)]
pub struct StatsSnapshot {
    /// Events validated and queued.
    pub accepted: f64,
    /// Events that failed validation.
    pub rejected: f64,
    /// Events Kafka acknowledged.
    pub delivered: f64,
    /// Events that could not be delivered.
    pub failed: f64,
    /// Rejected events not sent to the dead-letter topic (its queue was full).
    pub dead_letters_dropped: f64,
    /// Events waiting in the in-memory queue.
    pub queue_events: f64,
    /// Bytes waiting in the in-memory queue.
    pub queue_bytes: f64,
}

/// What `close` achieved.
#[napi(object)]
pub struct ShutdownReport {
    /// Events Kafka had not acknowledged at the deadline.
    pub undelivered: f64,
    /// Of those, events kept in the disk buffer (the next start delivers them).
    pub kept_in_buffer: f64,
    /// Events lost: undelivered and not kept.
    pub lost: f64,
    /// How long the close took, in milliseconds.
    pub elapsed_ms: f64,
}

/// One event of a batch that failed validation.
#[napi(object)]
pub struct RejectionInfo {
    /// Its position in the batch (0-based).
    pub index: u32,
    /// The validation code's name (`missing_field`, ...).
    pub code: String,
    /// The validation code's fixed number.
    pub code_number: u32,
    /// The field path (`items[2].price`), absent for whole-document problems.
    pub field: Option<String>,
    /// What is wrong, for people.
    pub message: String,
}

/// What a batch submission did.
#[napi(object)]
pub struct BatchOutcome {
    /// The accepted events' ids, in batch order.
    pub ids: Vec<String>,
    /// The rejected events, in batch order.
    pub rejections: Vec<RejectionInfo>,
}

/// One log record of the library or its Kafka client.
#[napi(object)]
pub struct LogRecord {
    /// `error`, `warn`, `info`, `debug` or `trace`.
    pub level: String,
    /// The emitting module (`ingest_core::delivery`, `librdkafka`, ...).
    pub target: String,
    /// The message, followed by the record's other fields as `key=value`.
    pub message: String,
}
