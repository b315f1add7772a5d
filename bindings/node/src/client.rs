//! The `Client` class: create, submit, flush, close, health, stats.

use std::time::Duration;

use ingest_core::bytes::Bytes;
use ingest_core::{Ack, BatchReceipt, EventKind, IngestConfig, Ingestor, Receipt};
use napi::bindgen_prelude::PromiseRaw;
use napi::Env;
use napi_derive::napi;

use crate::error::{ingest, invalid_argument};
use crate::types::{
    BatchOutcome, BufferLevel, HealthSnapshot, RejectionInfo, ShutdownReport, StatsSnapshot,
};

/// One ingestor (validation, queue, optional disk buffer, Kafka producer) owned by
/// JavaScript. Every method may be called from the JavaScript thread only (Node.js
/// calls them there); the ingestor's own threads deliver in the background.
#[napi]
pub struct Client {
    ingestor: Ingestor,
}

#[napi]
impl Client {
    /// Creates a client from configuration text in `format` (`toml` or `json`), with the
    /// keys of ingest-core's configuration (docs/configuration.md). Starts the delivery
    /// threads; does not contact Kafka.
    #[napi(constructor, catch_unwind)]
    pub fn new(config: String, format: String) -> napi::Result<Self> {
        let parsed = match format.as_str() {
            "toml" => IngestConfig::from_toml(&config),
            "json" => IngestConfig::from_json(&config),
            other => {
                return Err(invalid_argument(format!(
                    "unknown configuration format {other:?}: expected \"toml\" or \"json\""
                )))
            }
        };
        let ingestor = parsed
            .map_err(ingest_core::Error::from)
            .and_then(|config| Ingestor::builder().config(config).build())
            .map_err(|error| ingest(&error))?;
        Ok(Client { ingestor })
    }

    /// Validates and queues one event of `kind`, returning its id. The payload is
    /// borrowed for the call and copied once, into the queue.
    #[napi(catch_unwind)]
    pub fn submit(&self, kind: String, payload: &[u8]) -> napi::Result<String> {
        let receipt = self.queue(&kind, payload)?;
        Ok(id_text(&receipt))
    }

    /// As [`submit`](Self::submit), then waits (off the JavaScript thread) until the
    /// event reaches `ack`; the promise resolves with the id.
    #[napi(catch_unwind, ts_return_type = "Promise<string>")]
    pub fn submit_and_wait<'env>(
        &self,
        env: &'env Env,
        kind: String,
        payload: &[u8],
        ack: String,
    ) -> napi::Result<PromiseRaw<'env, String>> {
        let ack = ack_level(&ack)?;
        let receipt = self.queue(&kind, payload)?;
        env.spawn_future(async move {
            receipt.wait(ack).await.map_err(|error| ingest(&error))?;
            Ok(id_text(&receipt))
        })
    }

    /// Submits a batch body (NDJSON or a JSON array of events, each naming its `type`)
    /// and waits until its accepted events reach `ack`. Valid events are queued even
    /// when others are rejected.
    #[napi(catch_unwind, ts_return_type = "Promise<BatchOutcome>")]
    pub fn submit_batch<'env>(
        &self,
        env: &'env Env,
        payload: &[u8],
        ack: String,
    ) -> napi::Result<PromiseRaw<'env, BatchOutcome>> {
        let ack = ack_level(&ack)?;
        let batch = self
            .ingestor
            .submit_batch(Bytes::copy_from_slice(payload))
            .map_err(|error| ingest(&error))?;
        env.spawn_future(async move {
            batch
                .receipt
                .wait(ack)
                .await
                .map_err(|error| ingest(&error))?;
            Ok(outcome(&batch))
        })
    }

    /// Resolves when every event submitted before the call is delivered or has failed;
    /// rejects with a timeout error after `timeout_ms`.
    #[napi(catch_unwind, ts_return_type = "Promise<void>")]
    pub fn flush<'env>(
        &self,
        env: &'env Env,
        timeout_ms: f64,
    ) -> napi::Result<PromiseRaw<'env, ()>> {
        let limit = duration(timeout_ms)?;
        let ingestor = self.ingestor.clone();
        env.spawn_future(async move {
            // ingest-core answers a flush from its delivery thread, which can be busy
            // past the deadline (waiting for room in the Kafka client's queue while
            // Kafka is unreachable): the timer keeps the promise to the caller.
            match tokio::time::timeout(limit, ingestor.flush(limit)).await {
                Ok(flushed) => flushed.map_err(|error| ingest(&error)),
                Err(_) => Err(ingest(&ingest_core::Error::Timeout(limit))),
            }
        })
    }

    /// Stops taking events, delivers what is queued within `timeout_ms`, stops the
    /// delivery threads and releases the disk buffer; resolves with what it achieved.
    #[napi(catch_unwind, ts_return_type = "Promise<ShutdownReport>")]
    pub fn close<'env>(
        &self,
        env: &'env Env,
        timeout_ms: f64,
    ) -> napi::Result<PromiseRaw<'env, ShutdownReport>> {
        let limit = duration(timeout_ms)?;
        let ingestor = self.ingestor.clone();
        env.spawn_future(async move {
            let report = ingestor
                .shutdown(limit)
                .await
                .map_err(|error| ingest(&error))?;
            Ok(ShutdownReport {
                undelivered: report.undelivered as f64,
                kept_in_buffer: report.kept_in_buffer as f64,
                lost: report.lost() as f64,
                elapsed_ms: report.elapsed.as_secs_f64() * 1000.0,
            })
        })
    }

    /// A readiness snapshot.
    #[napi(catch_unwind)]
    pub fn health(&self) -> HealthSnapshot {
        let health = self.ingestor.health();
        HealthSnapshot {
            ready: health.is_ready(),
            kafka_reachable: health.kafka_reachable(),
            breaker: health.breaker.as_str().to_owned(),
            shutting_down: health.shutting_down,
            queue_events: health.queue_events as f64,
            queue_bytes: health.queue_bytes as f64,
            buffer: health.buffer.map(|b| BufferLevel {
                entries: b.entries as f64,
                bytes: b.bytes as f64,
                max_bytes: b.max_bytes as f64,
            }),
            dead_threads: health
                .dead_threads
                .iter()
                .map(|t| (*t).to_owned())
                .collect(),
        }
    }

    /// The running totals.
    #[napi(catch_unwind)]
    pub fn stats(&self) -> StatsSnapshot {
        let stats = self.ingestor.stats();
        StatsSnapshot {
            accepted: stats.accepted as f64,
            rejected: stats.rejected as f64,
            delivered: stats.delivered as f64,
            failed: stats.failed as f64,
            dead_letters_dropped: stats.dead_letters_dropped as f64,
            queue_events: stats.queue_events as f64,
            queue_bytes: stats.queue_bytes as f64,
        }
    }
}

impl Client {
    fn queue(&self, kind: &str, payload: &[u8]) -> napi::Result<Receipt> {
        let kind = EventKind::from_name(kind).ok_or_else(|| {
            invalid_argument(format!(
                "unknown event kind {kind:?}: expected product_view, cart, purchase or search"
            ))
        })?;
        self.ingestor
            .submit(kind, Bytes::copy_from_slice(payload))
            .map_err(|error| ingest(&error))
    }
}

fn ack_level(name: &str) -> napi::Result<Ack> {
    name.parse()
        .map_err(|error: ingest_core::ParseAckError| invalid_argument(error.to_string()))
}

/// A timeout in milliseconds from JavaScript: finite and not negative.
fn duration(ms: f64) -> napi::Result<Duration> {
    if !ms.is_finite() || ms < 0.0 {
        return Err(invalid_argument(format!(
            "timeoutMs must be a finite number of milliseconds >= 0, got {ms}"
        )));
    }
    Ok(Duration::from_secs_f64((ms / 1000.0).min(u32::MAX as f64)))
}

fn id_text(receipt: &Receipt) -> String {
    receipt
        .event_id()
        .map(|id| id.hyphenated().to_string())
        .unwrap_or_default()
}

fn outcome(batch: &BatchReceipt) -> BatchOutcome {
    BatchOutcome {
        ids: batch
            .event_ids
            .iter()
            .map(|id| id.hyphenated().to_string())
            .collect(),
        rejections: batch
            .rejected
            .iter()
            .map(|r| RejectionInfo {
                index: u32::try_from(r.index).unwrap_or(u32::MAX),
                code: r.error.code().as_str().to_owned(),
                code_number: u32::from(r.error.code().number()),
                field: r.error.field_path().map(str::to_owned),
                message: r.error.message().to_owned(),
            })
            .collect(),
    }
}
