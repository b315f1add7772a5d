//! The metrics ingest-core exports, observed through a recording metrics backend.
//! Needs no broker: deliveries fail against an unreachable cluster, which is itself
//! one of the things measured.

use std::time::Duration;

use bytes::Bytes;
use ingest_core::{Ack, EventKind, IngestConfig, Ingestor};
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use metrics_util::MetricKind;

/// One reading of every metric. The debugging recorder reports counters as deltas
/// since the previous reading, so a test reads once per phase and queries the copy.
struct Reading(Vec<Sample>);

/// Kind, name, labels and value of one metric.
type Sample = (MetricKind, String, Vec<(String, String)>, DebugValue);

impl Reading {
    fn take(snapshotter: &Snapshotter) -> Self {
        Reading(
            snapshotter
                .snapshot()
                .into_vec()
                .into_iter()
                .map(|(key, _, _, value)| {
                    let mut labels: Vec<(String, String)> = key
                        .key()
                        .labels()
                        .map(|l| (l.key().to_owned(), l.value().to_owned()))
                        .collect();
                    // Every series carries its ingestor; the queries below leave it out.
                    let name = key.key().name().to_owned();
                    let before = labels.len();
                    labels.retain(|(k, _)| k != "ingestor");
                    assert_eq!(labels.len() + 1, before, "{name} has an `ingestor` label");
                    (key.kind(), name, labels, value)
                })
                .collect(),
        )
    }

    fn value(&self, kind: MetricKind, name: &str, labels: &[(&str, &str)]) -> Option<&DebugValue> {
        let wanted: Vec<(String, String)> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        self.0
            .iter()
            .find(|(k, n, l, _)| *k == kind && n == name && *l == wanted)
            .map(|(_, _, _, v)| v)
    }

    fn counter(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        match self.value(MetricKind::Counter, name, labels) {
            Some(DebugValue::Counter(n)) => *n,
            _ => 0,
        }
    }
}

#[tokio::test]
async fn accepted_rejected_failed_and_queue_metrics_are_exported() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder
        .install()
        .expect("the only recorder in this test binary");

    let mut config = IngestConfig::default();
    config.kafka.brokers = "127.0.0.1:1".to_owned();
    config.kafka.message_timeout_ms = 1_000;
    config.topics.cart.name = "carts-under-test".to_owned();
    let ingestor = Ingestor::builder().config(config).build().expect("builds");

    let mut receipts = Vec::new();
    for i in 0..3 {
        let body = format!(r#"{{"user_id":"u{i}","action":"add","product_id":"p","quantity":1}}"#);
        receipts.push(
            ingestor
                .submit(EventKind::Cart, Bytes::from(body))
                .expect("accepted"),
        );
    }
    ingestor
        .submit(EventKind::Cart, Bytes::from_static(br#"{"user_id":"u","action":"add","product_id":"p","quantity":1,"currency":"EURO"}"#))
        .expect_err("invalid currency");
    ingestor
        .submit_batch(Bytes::from_static(
            b"{\"type\":\"nope\",\"user_id\":\"u\"}\n{\"type\":\"search\",\"user_id\":\"u\"}\n",
        ))
        .expect("batch");

    let reading = Reading::take(&snapshotter);
    assert_eq!(
        reading.counter("ingest_events_accepted_total", &[("event_type", "cart")]),
        3
    );
    assert_eq!(
        reading.counter(
            "ingest_events_rejected_total",
            &[("event_type", "cart"), ("reason", "invalid_currency")]
        ),
        1
    );
    assert_eq!(
        reading.counter(
            "ingest_events_rejected_total",
            &[("event_type", "unknown"), ("reason", "unknown_event_type")]
        ),
        1
    );

    assert_eq!(
        reading.counter(
            "ingest_events_rejected_total",
            &[("event_type", "search"), ("reason", "missing_field")]
        ),
        1,
        "a batch element with a valid type is counted under its type"
    );

    for receipt in &receipts {
        assert!(
            receipt.wait(Ack::Delivered).await.is_err(),
            "nothing listens on port 1"
        );
    }
    let reading = Reading::take(&snapshotter);
    assert_eq!(
        reading.counter(
            "ingest_events_failed_total",
            &[("topic", "carts-under-test"), ("reason", "MessageTimedOut")]
        ),
        3
    );
    assert_eq!(
        reading.counter(
            "ingest_events_delivered_total",
            &[("topic", "carts-under-test")]
        ),
        0
    );
    match reading.value(MetricKind::Gauge, "ingest_queue_events", &[]) {
        Some(DebugValue::Gauge(depth)) => {
            assert_eq!(depth.into_inner(), 0.0, "everything left the queue")
        }
        other => panic!("queue depth gauge missing: {other:?}"),
    }
    ingestor
        .shutdown(Duration::from_secs(1))
        .await
        .expect("shuts down");
}
