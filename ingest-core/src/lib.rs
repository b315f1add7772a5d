//! # ingest-core
//!
//! Validates e-commerce events (product views, cart changes, purchases, searches),
//! routes them to their Kafka topics keyed by user, and delivers them with an
//! idempotent `acks=all` producer. The bytes a client sends are the bytes that reach
//! Kafka: batches are split into zero-copy slices and nothing is re-serialised.
//!
//! ```text
//! Bytes → validate (simd-json tape, rules per type) → route (topic, key, headers)
//!       → bounded queue → [disk buffer] → producer (batching, compression, retries) → Kafka
//!                              ↘ Ack::Persisted                   ↘ Ack::Delivered
//! ```
//!
//! Start with [`Ingestor::builder`]. With a disk buffer ([`IngestorBuilder::disk_buffer`]
//! or `[buffer]` in [`IngestConfig`]) events survive crashes and Kafka outages and are
//! replayed in order, at least once; a circuit breaker stops sending to an unreachable
//! cluster and probes it ([`Ingestor::health`]). Rejected events go to a dead-letter topic with the
//! reason in headers. Metrics are emitted through the [`metrics`] facade (see the
//! `telemetry` table in the repository's docs), logs through [`tracing`].
//!
//! ## Hosts without an async runtime
//!
//! Nothing here needs tokio. Besides the `async` forms, receipts wait on the calling
//! thread ([`Receipt::wait_blocking`]) or answer at once ([`Receipt::try_wait`]);
//! [`Ingestor::flush_blocking`], [`Ingestor::shutdown_blocking`] and
//! [`ensure_topics_blocking`] block likewise; a [`CompletionQueue`] collects finished
//! receipts under the caller's `u64` tags for event loops; [`Ingestor::stats`] reads the
//! counters without a metrics recorder; [`Error::code`] gives fixed numbers
//! ([`codes`]). Language bindings and the C ABI are built on these.
//!
//! ## Records written to Kafka
//!
//! | part | content |
//! |---|---|
//! | topic | per event type, configurable ([`config::TopicsConfig`]) |
//! | key | `user_id`, else `anonymous_id` |
//! | value | the event's JSON, byte for byte as received |
//! | headers | `event_type`, `event_id` (the client's, or a generated UUIDv7), `received_at` (RFC 3339, ms), `schema` (`json:<type>/v1`), `source`; `experiments` when [`SubmitOptions::flags`] assigned the event's user |
//!
//! Custom events ([`CustomEvent`]: anything outside the four types, such as a Segment
//! `page` call) go to `topics.custom` with the headers `event_type: custom`,
//! `event_name`, `event_id`, `received_at` and `source`.
//!
//! Dead-letter records carry `error_code`, `error_message`, `error_field` (when a field
//! is at fault), `event_type` (when known), `received_at`, `source`, and
//! `payload_truncated: true` when the payload was cut to the configured maximum.
//!
//! ## Allocator
//!
//! The Kafka client inside (librdkafka, linked statically) allocates every record and
//! each of its headers with the C allocator on the thread that submits, and frees them
//! on the thread that reads delivery reports. glibc's `malloc` handles that pattern
//! poorly: on the project's benchmark the ingestor delivers 1.8× more events per second
//! when the C allocator is mimalloc. Applications that embed this crate should replace
//! `malloc` process-wide, as the project's own binaries do:
//!
//! ```toml
//! mimalloc = { version = "0.1", features = ["override"] }
//! ```
//!
//! together with `#[global_allocator] static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;`
//! so that Rust and C share it. jemalloc's unprefixed build serves as well.

#![deny(missing_docs)]
#![warn(unreachable_pub)]

// Without the `kafka` feature (default on) only the pure parts are built: validation,
// batch splitting, the event model and contract, custom events, codes, the disk
// buffer's storage and the configuration (read and validated; the producer's librdkafka
// settings are built only with `kafka`). The fuzz targets (fuzz/) use that build.
#[cfg(feature = "kafka")]
pub mod admin;
#[cfg(feature = "avro")]
pub mod avro;
mod batch;
#[cfg(feature = "kafka")]
mod blocking;
pub mod buffer;
pub mod codes;
pub mod compatibility;
#[cfg(feature = "kafka")]
mod completion;
pub mod config;
pub mod contract;
mod custom;
#[cfg(feature = "kafka")]
mod delivery;
mod error;
mod event;
pub mod flags;
#[cfg(feature = "kafka")]
mod health;
mod host;
#[cfg(feature = "kafka")]
mod ingestor;
pub mod model;
#[cfg(feature = "kafka")]
mod stats;
mod stored_size;
#[cfg(feature = "kafka")]
mod telemetry;
mod validate;

#[cfg(feature = "kafka")]
pub use admin::{ensure_topics, ensure_topics_blocking, TopicStatus};
pub use batch::split_batch;
pub use codes::ErrorKind;
#[cfg(feature = "kafka")]
pub use completion::{Completion, CompletionQueue, DEFAULT_COMPLETION_CAPACITY};
pub use config::{IngestConfig, Settings};
pub use custom::{CustomEvent, CUSTOM_EVENT_TYPE, MAX_CUSTOM_NAME};
#[cfg(feature = "kafka")]
pub use delivery::{
    Ack, BatchReceipt, BreakerState, ParseAckError, Receipt, Rejection, ShutdownReport,
};
pub use error::{printable, ConfigError, Error, ErrorCode, KafkaError, ValidationError};
pub use event::EventKind;
#[cfg(feature = "kafka")]
pub use health::{BufferHealth, Health};
#[cfg(feature = "kafka")]
pub use ingestor::{Ingestor, IngestorBuilder, SubmitOptions};
#[cfg(feature = "kafka")]
pub use stats::Stats;
pub use validate::{Limits, ValidEvent, Validator};

/// The `bytes` crate, re-exported so callers use the same `Bytes` type.
pub use bytes;

/// The handles hosts share between threads (language bindings hand them to any thread
/// of the host) are `Send` and `Sync`; this fails to compile if one stops being so.
#[cfg(feature = "kafka")]
const _: () = {
    const fn shared_between_threads<T: Send + Sync>() {}
    shared_between_threads::<Ingestor>();
    shared_between_threads::<Receipt>();
    shared_between_threads::<BatchReceipt>();
    shared_between_threads::<CompletionQueue>();
    shared_between_threads::<Completion>();
    shared_between_threads::<Error>();
    shared_between_threads::<Health>();
    shared_between_threads::<Stats>();
    shared_between_threads::<ShutdownReport>();
};
