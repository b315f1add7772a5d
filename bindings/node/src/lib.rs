//! The Node.js addon behind the npm package `ingest-core`: ingest-core's
//! [`Ingestor`](ingest_core::Ingestor) as a class, built with napi-rs; and its
//! feature-flag assignment ([`FlagSet`](ingest_core::flags::FlagSet)) as another.
//!
//! This layer is internal: `index.js` wraps it into the package's public API (option
//! names, `Error` subclasses, the log emitter). Errors leave this layer as plain
//! `Error`s whose message is a marker followed by a JSON description (`src/error.rs`),
//! which `index.js` turns into the right subclass.
//!
//! Nothing here blocks the JavaScript thread beyond validating and queueing an event:
//! acknowledgements, `flush` and `close` are futures that napi-rs runs on its Tokio
//! runtime and that settle a `Promise` when they finish (ingest-core's waits are
//! runtime-agnostic; no thread waits for them).

mod client;
mod error;
mod flags;
mod log;
mod types;

pub use client::Client;
pub use flags::Flags;
pub use log::set_log_handler;
pub use types::{
    BatchOutcome, BufferLevel, HealthSnapshot, LogRecord, RejectionInfo, ShutdownReport,
    StatsSnapshot,
};
