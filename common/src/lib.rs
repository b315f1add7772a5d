//! What every crate of the workspace shares, in one place (as Quickwit keeps
//! `quickwit-common`): configuration layering ([`layers`]), secret masking
//! ([`secret`]), backoff with jitter ([`backoff`]), clocks ([`clock`]) and, with the
//! `telemetry` feature, log and Prometheus setup for the binaries (`telemetry`).
//!
//! Nothing here knows a binary or the event model: `ingest-core` stands on this crate,
//! and the binaries stand on both.

pub mod backoff;
pub mod clock;
pub mod layers;
pub mod secret;
#[cfg(feature = "telemetry")]
pub mod telemetry;

pub use backoff::Backoff;
pub use layers::{ConfigError, Deprecation, EnvNames, Layers, Loaded, Origin};
