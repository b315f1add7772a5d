//! # processor
//!
//! Consumes the event topics as a Kafka consumer group, de-duplicates and enriches the
//! events, computes real-time metrics in one-minute event-time windows, and serves them
//! at `GET /api/analytics/real-time`. Results are exactly-once: every checkpoint is one
//! PostgreSQL transaction holding the rollups, the consumer offsets and the
//! de-duplication state, and Redis (the live view) is written only from committed state,
//! idempotently.
//!
//! ```text
//! Kafka → decode (ingest_core::model) → hold until checkpoint
//!       → dedup (event_id) → late? → enrich (catalog, rates, user agent, experiments)
//!       → rollup deltas → PostgreSQL (rollups + offsets + seen ids, one transaction)
//!       → Redis (absolute values, versioned; sets and HyperLogLogs) → HTTP API
//!       → dead-letter outbox (same transaction) → dead-letter topic
//! Kafka → decode → enrich → search index (own consumer group; bulk `create`, at least once)
//! ```
//!
//! Start with [`run`]. `docs/processor.md` in the repository describes the metrics, the
//! design and every configuration key.

pub mod aggregate;
pub mod catalog;
pub mod compressed;
pub mod config;
pub mod copartition;
pub mod dead_letter;
pub mod decode;
pub mod dedup;
mod error;
pub mod fast_hash;
pub mod group_context;
pub mod http;
pub mod isolate;
pub mod lag;
pub mod live;
pub mod live_page;
pub mod members;
pub mod pipeline;
pub mod prune;
pub mod recommend;
pub mod record;
pub mod report;
pub mod search;
pub mod sessions;
pub mod store;
pub mod store_pool;
pub mod stream;
pub mod ua;
pub mod user_state;

use std::sync::Arc;

pub use config::{Overrides, ProcessorConfig, Settings};
pub use error::{Disposition, Error};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::sync::watch;

/// Aborts a background task when dropped (when [`run`] returns, however it returns).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs the processor until `shutdown` turns true: the HTTP API and the consume loop,
/// then a final checkpoint.
///
/// # Errors
///
/// Start-up failures (stores, Kafka, migrations, the listen address) and fatal errors
/// of the consume loop.
pub async fn run(
    settings: Settings,
    metrics: PrometheusHandle,
    shutdown: watch::Receiver<bool>,
) -> Result<(), Error> {
    let settings = Arc::new(settings);
    // Drains histogram samples into their buckets every second, scraped or not: without
    // it every sample is kept until the next scrape, without bound.
    let _upkeep = AbortOnDrop(ingest_common::telemetry::spawn_upkeep(metrics.clone()));
    let live = live::LiveView::connect(
        &settings.redis_url,
        settings.redis_ca_file.as_deref(),
        &settings.key_prefix,
        settings.retention.as_secs(),
        settings.redis_response_timeout,
    )
    .await?;
    // Built first: a CA file that cannot be read stops the start, before any work.
    let indexer = settings
        .search
        .clone()
        .map(|search| {
            let t = &settings.kafka.topics;
            search::SearchIndexer::new(
                search,
                search::KafkaSource {
                    client: pipeline::client_config(&settings),
                    topics: vec![
                        t.product_view.clone(),
                        t.cart.clone(),
                        t.purchase.clone(),
                        t.search.clone(),
                    ],
                    lag_interval_ms: settings.kafka.lag_interval_ms,
                },
                decode::Decoder::new(
                    t,
                    settings.experiment_flags.clone(),
                    settings.schema_registry.as_ref(),
                )?,
                search::CatalogSource {
                    postgres_url: settings.postgres_url.clone(),
                    connect_timeout: settings.postgres_connect_timeout,
                    reporting_currency: settings.reporting_currency.clone(),
                    max_products: settings.max_products,
                    ttl: settings.catalog_ttl,
                },
            )
        })
        .transpose()?;
    let health = Arc::new(pipeline::Health::default());
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .map_err(Error::Http)?;
    tracing::info!(listen = %settings.listen, "HTTP API listening");
    let state = Arc::new(http::ApiState {
        live: live.clone(),
        currency: settings.reporting_currency.clone(),
        limits: live::ReadLimits {
            top_n: settings.top_n,
            max_experiment_pairs: settings.max_experiment_pairs,
        },
        queries: tokio::sync::Semaphore::new(settings.max_concurrent_queries),
        recommendations_top_n: settings.recommendations_top_n,
        recommendations_partners: settings.recommendations_partners,
        stores: store_pool::StorePool::new(
            &settings.postgres_url,
            settings.api_postgres_connections,
            settings.postgres_connect_timeout,
            settings.api_statement_timeout,
        ),
        metrics,
        health: health.clone(),
    });
    let limits = http::ConnectionLimits {
        max_connections: settings.max_connections,
        header_read_timeout: settings.header_read_timeout,
        drain_timeout: settings.drain_timeout,
    };
    let server = tokio::spawn(http::serve(
        listener,
        http::router(state),
        limits,
        shutdown.clone(),
    ));
    let mut pipeline = pipeline::Pipeline::start(settings.clone(), live, health).await?;
    let indexer = indexer.map(|indexer| tokio::spawn(indexer.run(shutdown.clone())));
    // The publishers stop after the pipeline, so that the users and dead letters of the
    // final checkpoint get their last round.
    let (stop_publisher, publisher_stop) = watch::channel(false);
    let letters = dead_letter::Publisher::new(
        dead_letter::PublisherSettings {
            topic: settings.kafka.topics.dead_letter.clone(),
            postgres_url: settings.postgres_url.clone(),
            postgres_connect_timeout: settings.postgres_connect_timeout,
            timeout: settings.dead_letter_timeout,
            backoff: settings.dead_letter_backoff,
        },
        pipeline.producer(),
    );
    pipeline.set_dead_letter_waker(letters.waker());
    let letters = tokio::spawn(letters.run(publisher_stop.clone()));
    let publisher = settings.recommendations_topic.clone().map(|topic| {
        let publisher = recommend::publisher::Publisher::new(
            recommend::publisher::PublisherSettings {
                topic,
                top_n: settings.recommendations_top_n,
                partners: settings.recommendations_partners,
                interval: settings.recommendations_interval,
                postgres_url: settings.postgres_url.expose().to_owned(),
                postgres_connect_timeout: settings.postgres_connect_timeout,
                fold_max_pairs: settings.pair_fold_max_pairs,
            },
            pipeline.producer(),
        );
        pipeline.set_active_users(publisher.active_users());
        tokio::spawn(publisher.run(publisher_stop))
    });
    let pruning = tokio::spawn(prune::run(
        prune::PruneSettings {
            postgres_url: settings.postgres_url.clone(),
            postgres_connect_timeout: settings.postgres_connect_timeout,
            interval: settings.prune_interval,
            group_id: settings.kafka.group_id.clone(),
            dedup_window_minutes: settings.dedup_window_minutes,
            rollup_retention_minutes: settings.rollup_retention_minutes,
            max_product_pairs: settings.max_product_pairs,
            session_retention_ms: settings.session_retention_ms,
        },
        shutdown.clone(),
    ));
    let folding = tokio::spawn(recommend::fold::run(
        recommend::fold::FoldSettings {
            postgres_url: settings.postgres_url.expose().to_owned(),
            postgres_connect_timeout: settings.postgres_connect_timeout,
            interval: settings.pair_fold_interval,
            max_pairs: settings.pair_fold_max_pairs,
            top: settings.recommendations_partners,
        },
        shutdown.clone(),
    ));
    let result = pipeline.run(shutdown).await;
    // A pruning run or a fold holds nothing that must finish (a fold that does not
    // commit leaves its rows for the next start).
    pruning.abort();
    folding.abort();
    if result.is_ok() {
        // It stopped on the same signal and drains within `api.drain_timeout_ms`.
        let _ = server.await;
    } else {
        server.abort();
    }
    let _ = stop_publisher.send(true);
    if let Some(publisher) = publisher {
        if result.is_ok() {
            let _ = publisher.await;
        } else {
            publisher.abort();
        }
    }
    if result.is_ok() {
        // Its last round is bounded by the dead-letter time-out per letter; what it
        // does not produce stays queued for the next start.
        let _ = letters.await;
    } else {
        letters.abort();
    }
    if let Some(indexer) = indexer {
        if result.is_ok() {
            // It stops on the same signal; its last attempt is bounded by its time-out.
            let _ = indexer.await;
        } else {
            // Nothing signals it then; what it has not committed is read again.
            indexer.abort();
        }
    }
    result
}

/// Applies the schema migrations to the database at `url` (the processor does this on
/// start; tools and tests call it to prepare a database). Returns the files applied.
///
/// # Errors
///
/// Connection and migration errors.
pub async fn migrate(url: &str) -> Result<Vec<&'static str>, Error> {
    let mut store = store::Store::connect(url, std::time::Duration::from_secs(10)).await?;
    store.migrate().await
}
