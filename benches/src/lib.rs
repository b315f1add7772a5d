//! Benchmarks of the ingestion platform. The criterion suites live in `benches/`; run
//! them with `cargo bench -p ingest-benches`. Each suite measures the product next to a
//! ceiling taken in the same run, so results read as ratios that survive a noisy machine.
//!
//! The binaries are the side-by-side tools `scripts/bench` drives:
//! - `loadgen`: storefront traffic over HTTP with HDR latency histograms and a Kafka check;
//! - `ceiling-server`: a bare hyper server that reads the body and answers 202, the
//!   ceiling of any HTTP ingestion on the machine;
//! - `produce-bench`: ingest-core `submit` → acknowledgement vs a raw rdkafka producer
//!   loop with the same settings, and a bare consumer as the processor's ceiling.

pub mod intake_format;
pub mod report;
pub mod storefront;
pub mod topics;
pub mod verify;
