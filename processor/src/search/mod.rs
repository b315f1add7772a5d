//! The search indexer: every event, enriched, as one document in an
//! OpenSearch/Elasticsearch index, for analytics search.
//!
//! ## Straight from Kafka, apart from the analytics
//!
//! The indexer ([`SearchIndexer`]) reads the four event topics with a consumer group of
//! its own (`search.group_id`, by default `kafka.group_id` + `-search`), decodes each
//! record as the pipeline does ([`crate::decode`]), enriches it from the catalog, and
//! sends bounded `_bulk` requests. Nothing of it passes through the checkpoint or
//! PostgreSQL (only the catalog is read from there), so a slow or down index delays
//! documents and never the analytics; while it is down the documents wait in Kafka.
//!
//! ## Guarantee: at-least-once, idempotent by `event_id`
//!
//! Offsets are committed only after the index has answered for every document read
//! before them, so a crash or a rebalance can only make records be read again. Each
//! document is a `create` with `_id = event_id`: a document the index already holds is
//! answered 409 and left alone (counted in `processor_search_documents_existing_total`),
//! so a record read again, or an event sent twice, never adds a document. A record the
//! pipeline dead-letters has none (`processor_search_records_skipped_total{reason}`).
//! A document the index rejects for good (a 4xx item other than 409 and 429, e.g. a
//! mapping conflict) is logged, counted in `processor_search_documents_failed_total`
//! and passed over; everything else is retried with a capped exponential backoff, with
//! the partitions paused and the consumer still polled (so it keeps its group).
//!
//! ```text
//! event topics ──consumer group <group>-search──▶ decode, enrich ──▶ POST {url}/_bulk
//!       ▲                                                                  │
//!       └──────────── commit offsets once every document is answered ◀─────┘
//! ```

mod bulk;
mod client;
mod document;
mod indexer;
mod url;

pub use bulk::{bulk_body, classify, ItemOutcome};
pub use client::IndexClient;
pub use document::{document, index_mapping};
pub use indexer::{CatalogSource, KafkaSource, SearchIndexer};
pub use url::IndexUrl;
