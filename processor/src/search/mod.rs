//! The search index sink: every counted event, enriched, as one document in an
//! OpenSearch/Elasticsearch index, for analytics search.
//!
//! ## Guarantee: at-least-once, idempotent by `event_id`
//!
//! The documents of a checkpoint are written to the `search_outbox` table *in the
//! checkpoint's transaction* ([`crate::store::Checkpoint::write`]), so they are
//! durable exactly when the rollups and offsets are, and a crash cannot lose them. A
//! background task ([`SearchSink`]) reads the outbox in order, sends bounded `_bulk`
//! requests, and deletes rows only after the index has answered for them. A crash
//! between the answer and the delete sends those rows again; the document id is the
//! `event_id`, so a repeat overwrites the same document instead of adding one. Only
//! events counted for the first time get a document (the de-duplication of
//! [`crate::aggregate`]), so replays of Kafka records add no rows either.
//!
//! ## Never blocking the checkpoint
//!
//! The checkpoint only inserts rows; it never waits for the index. While the index is
//! down the sink retries with a capped exponential backoff and the outbox grows, up to
//! `search.max_queued_documents`: beyond that the oldest rows are deleted and counted in
//! `processor_search_documents_dropped_total` (a bound, so an index that stays down
//! cannot fill the database). A document the index rejects for good (a 4xx item other
//! than 429, e.g. a mapping conflict) is logged, counted in
//! `processor_search_documents_failed_total` and removed; everything else is retried.
//!
//! Several processor instances may send the same rows at once; that is harmless for the
//! same reason a replay is.
//!
//! ```text
//! checkpoint tx ──insert──▶ search_outbox ──read in order──▶ POST {url}/_bulk
//!                                 ▲                               │
//!                                 └─────── delete answered ◀──────┘
//! ```

mod bulk;
mod client;
mod document;
mod sink;
mod url;

pub use bulk::{bulk_body, classify, ItemOutcome};
pub use client::IndexClient;
pub use document::{document, index_mapping};
pub use sink::SearchSink;
pub use url::IndexUrl;
