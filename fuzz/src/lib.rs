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

/// processor/src/fast_hash.rs: the hasher of the processor's hot maps (needed by
/// `pair_log`).
#[path = "../../processor/src/fast_hash.rs"]
pub mod fast_hash;

/// processor/src/dedup.rs: the de-duplication ids and their `dedup_log` blobs.
#[path = "../../processor/src/dedup.rs"]
pub mod dedup;

/// processor/src/compressed.rs: the log rows' zstd frames, read within bounds.
#[path = "../../processor/src/compressed.rs"]
pub mod compressed;

/// processor/src/recommend/pair_log.rs: the product-pair deltas' `pair_log` blobs.
#[path = "../../processor/src/recommend/pair_log.rs"]
pub mod pair_log;

/// processor/src/user_state/codec.rs: the users' state `user_state_log` rows.
#[path = "../../processor/src/user_state/codec.rs"]
pub mod user_state_codec;

/// edge-agent/src/intake/: the Segment and GA4 translation.
#[path = "../../edge-agent/src/intake/mod.rs"]
pub mod intake;

/// edge-agent/src/response.rs: the agent's errors, their codes and statuses (what
/// `body_decompress` answers with).
#[path = "../../edge-agent/src/response.rs"]
pub mod response;

/// edge-agent/src/body/decompress.rs: request bodies' gzip and zstd decoding, bounded.
#[path = "../../edge-agent/src/body/decompress.rs"]
pub mod body_decompress;

/// edge-agent/src/client.rs: client addresses and proxy networks (the configuration's
/// `server.trusted_proxies`).
#[path = "../../edge-agent/src/client.rs"]
pub mod client;

/// edge-agent/src/config.rs and config/settings.rs: the agent's configuration, read
/// and validated. (`check_key` is re-exported there for the agent's keys file, which is
/// not included.)
#[allow(unused_imports)]
#[path = "../../edge-agent/src/config.rs"]
pub mod agent_config;
