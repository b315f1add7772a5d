//! What the fuzz targets share: an allocator that records the largest single request,
//! and the pure modules of the processor and the edge agent, compiled from their own
//! source files.
//!
//! The processor and the edge agent cannot be built without librdkafka (their
//! libraries are built around the Kafka consumer and the ingestor), so the targets
//! include the files that hold the parsers themselves with `#[path]`: the same source,
//! not a copy. Those files depend only on each other, on `ingest-core` (built without
//! its `kafka` feature) and on crates listed in this crate's manifest.

pub mod alloc;

/// processor/src/stream.rs: topic-partitions and stream minutes (needed by `dedup`).
#[path = "../../processor/src/stream.rs"]
pub mod stream;

/// processor/src/dedup.rs: the de-duplication ids and their `dedup_log` blobs.
#[path = "../../processor/src/dedup.rs"]
pub mod dedup;

/// processor/src/recommend/pair_log.rs: the product-pair deltas' `pair_log` blobs.
#[path = "../../processor/src/recommend/pair_log.rs"]
pub mod pair_log;

/// edge-agent/src/intake/: the Segment and GA4 translation.
#[path = "../../edge-agent/src/intake/mod.rs"]
pub mod intake;
