//! Metrics exported through the `metrics` facade.
//!
//! Handles for the hot path are resolved once, when the ingestor is built, so install
//! the metrics recorder (e.g. the Prometheus exporter) before building an ingestor.
//!
//! Every series also carries the label `ingestor` (`telemetry.instance`, by default
//! `ingestor-N` numbered per process), so that two ingestors in one process keep their
//! own series instead of overwriting each other's gauges. (It is not called
//! `instance` because Prometheus gives that name to the scrape target.)
//!
//! | name | type | labels | meaning |
//! |---|---|---|---|
//! | `ingest_events_accepted_total` | counter | `event_type` | events validated and queued |
//! | `ingest_events_rejected_total` | counter | `event_type`, `reason` | events that failed validation |
//! | `ingest_events_delivered_total` | counter | `topic` | records acknowledged by Kafka |
//! | `ingest_events_failed_total` | counter | `topic`, `reason` | records Kafka did not take in time |
//! | `ingest_dead_letters_dropped_total` | counter | `reason` | dead-letter records not queued |
//! | `ingest_queue_events` | gauge | | events waiting for the producer |
//! | `ingest_queue_bytes` | gauge | | bytes waiting for the producer |
//! | `ingest_delivery_latency_seconds` | histogram | | submit to Kafka acknowledgement |
//! | `ingest_producer_queue_full_total` | counter | | times the producer client's own queue was full |
//! | `ingest_breaker_state` | gauge | | circuit breaker: 0 closed, 1 half-open, 2 open |
//! | `ingest_breaker_opened_total` | counter | | times the breaker opened |
//! | `ingest_delivery_retries_total` | counter | `reason` | buffered records failed retryably, to be sent again |
//! | `ingest_buffer_bytes`, `ingest_buffer_max_bytes` | gauge | | disk buffer fill and bound |
//! | `ingest_buffer_entries` | gauge | | unacknowledged events in the disk buffer |
//! | `ingest_buffer_oldest_age_seconds` | gauge | | age of the oldest unacknowledged event |
//! | `ingest_buffer_replayed_total` | counter | | events sent that an earlier run left behind |
//! | `ingest_buffer_dropped_total` | counter | `reason` | events given up by the disk path |
//! | `ingest_buffer_fsync_seconds` | histogram | | each `fdatasync` / sled flush |
//! | `ingest_buffer_quarantined_total`, `ingest_buffer_quarantined_bytes_total` | counter | | damage quarantined at open |
//!
//! librdkafka's statistics (every `telemetry.statistics_interval_ms`) are exported by
//! the producer's context; see `delivery/stats.rs` for their names.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use metrics::{counter, gauge, histogram, Counter, Gauge, Histogram};

use crate::error::ValidationError;
use crate::event::EventKind;

/// The name of the label every series of an ingestor carries.
pub(crate) const INGESTOR: &str = "ingestor";

/// The configured `ingestor` label, or the next `ingestor-N` of this process.
pub(crate) fn instance_name(configured: Option<&Arc<str>>) -> Arc<str> {
    static STARTED: AtomicU64 = AtomicU64::new(0);
    match configured {
        Some(name) => name.clone(),
        None => Arc::from(format!(
            "ingestor-{}",
            STARTED.fetch_add(1, Ordering::Relaxed) + 1
        )),
    }
}

/// Pre-resolved metric handles.
#[derive(Clone)]
pub(crate) struct Telemetry {
    instance: Arc<str>,
    accepted: [Counter; 4],
    accepted_custom: Counter,
    delivered: Vec<(std::sync::Arc<str>, Counter)>,
    pub(crate) queue_events: Gauge,
    pub(crate) queue_bytes: Gauge,
    pub(crate) delivery_latency: Histogram,
    pub(crate) producer_queue_full: Counter,
    /// The same events counted for [`Ingestor::stats`](crate::Ingestor::stats), for
    /// hosts that install no metrics recorder.
    pub(crate) counts: Arc<Counts>,
}

/// Running totals behind [`Stats`](crate::Stats).
#[derive(Debug, Default)]
pub(crate) struct Counts {
    pub(crate) accepted: AtomicU64,
    pub(crate) rejected: AtomicU64,
    pub(crate) delivered: AtomicU64,
    pub(crate) failed: AtomicU64,
    pub(crate) dead_letters_dropped: AtomicU64,
}

impl Telemetry {
    pub(crate) fn new(topics: &[Arc<str>], instance: Arc<str>) -> Self {
        let me = instance.to_string();
        Telemetry {
            accepted: EventKind::ALL.map(|k| {
                counter!("ingest_events_accepted_total", INGESTOR => me.clone(), "event_type" => k.as_str())
            }),
            accepted_custom: counter!("ingest_events_accepted_total", INGESTOR => me.clone(), "event_type" => crate::custom::CUSTOM_EVENT_TYPE),
            delivered: topics
                .iter()
                .map(|t| {
                    (
                        t.clone(),
                        counter!("ingest_events_delivered_total", INGESTOR => me.clone(), "topic" => t.to_string()),
                    )
                })
                .collect(),
            queue_events: gauge!("ingest_queue_events", INGESTOR => me.clone()),
            queue_bytes: gauge!("ingest_queue_bytes", INGESTOR => me.clone()),
            delivery_latency: histogram!("ingest_delivery_latency_seconds", INGESTOR => me.clone()),
            producer_queue_full: counter!("ingest_producer_queue_full_total", INGESTOR => me),
            counts: Arc::default(),
            instance,
        }
    }

    /// The value of the `ingestor` label.
    pub(crate) fn instance(&self) -> String {
        self.instance.to_string()
    }

    pub(crate) fn accepted(&self, kind: EventKind, n: u64) {
        self.accepted[kind.index()].increment(n);
        self.counts.accepted.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn accepted_custom(&self, n: u64) {
        self.accepted_custom.increment(n);
        self.counts.accepted.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn rejected(&self, error: &ValidationError) {
        self.counts.rejected.fetch_add(1, Ordering::Relaxed);
        let event_type = error.event_kind().map_or("unknown", EventKind::as_str);
        counter!("ingest_events_rejected_total", INGESTOR => self.instance(), "event_type" => event_type, "reason" => error.code().as_str())
            .increment(1);
    }

    pub(crate) fn delivered(&self, topic: &str) {
        self.counts.delivered.fetch_add(1, Ordering::Relaxed);
        match self.delivered.iter().find(|(t, _)| &**t == topic) {
            Some((_, c)) => c.increment(1),
            None => counter!("ingest_events_delivered_total", INGESTOR => self.instance(), "topic" => topic.to_owned())
                .increment(1),
        }
    }

    pub(crate) fn failed(&self, topic: &str, reason: &str) {
        self.counts.failed.fetch_add(1, Ordering::Relaxed);
        counter!("ingest_events_failed_total", INGESTOR => self.instance(), "topic" => topic.to_owned(), "reason" => reason.to_owned())
            .increment(1);
    }

    pub(crate) fn dead_letter_dropped(&self, reason: &'static str, n: u64) {
        self.counts
            .dead_letters_dropped
            .fetch_add(n, Ordering::Relaxed);
        counter!("ingest_dead_letters_dropped_total", INGESTOR => self.instance(), "reason" => reason)
            .increment(n);
    }

    /// A buffered record failed retryably and is sent again.
    pub(crate) fn retried(&self, reason: String) {
        counter!("ingest_delivery_retries_total", INGESTOR => self.instance(), "reason" => reason)
            .increment(1);
    }
}
