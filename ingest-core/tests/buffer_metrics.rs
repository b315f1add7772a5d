//! The disk buffer's and the circuit breaker's metrics, observed through a recording
//! metrics backend. Needs no broker: Kafka is unreachable, which opens the breaker and
//! fills the buffer.

use std::time::{Duration, Instant};

use bytes::Bytes;
use ingest_core::config::{BufferSync, BufferType, WhenFull};
use ingest_core::{Ack, BreakerState, EventKind, IngestConfig, Ingestor};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use metrics_util::MetricKind;

#[tokio::test(flavor = "multi_thread")]
async fn breaker_buffer_fill_drops_and_fsync_latency_are_exported() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder
        .install()
        .expect("the only recorder in this test binary");

    let dir = tempfile::tempdir().expect("dir");
    let mut config = IngestConfig::default();
    config.kafka.brokers = "127.0.0.1:1".to_owned();
    config.buffer.kind = BufferType::Log;
    config.buffer.dir = Some(dir.path().to_path_buf());
    config.buffer.max_bytes = 1 << 20;
    config.buffer.segment_bytes = 128 << 10;
    config.buffer.sync = BufferSync::Always;
    config.buffer.when_full = WhenFull::DropNewest;
    config.breaker.stall_timeout_ms = 500;
    config.breaker.probe_min_backoff_ms = 100;
    let ingestor = Ingestor::builder().config(config).build().expect("builds");

    let pad = "x".repeat(1000);
    let mut dropped_receipts = 0;
    for i in 0..2_000 {
        let body = format!(r#"{{"user_id":"u{i}","product_id":"p","pad":"{pad}"}}"#);
        let receipt = ingestor
            .submit(EventKind::ProductView, Bytes::from(body))
            .expect("drop_newest never pushes back");
        if receipt.wait(Ack::Persisted).await.is_err() {
            dropped_receipts += 1;
        }
    }
    assert!(dropped_receipts > 0, "a 1 MiB buffer cannot hold 2 MB");
    let deadline = Instant::now() + Duration::from_secs(20);
    while ingestor.health().breaker != BreakerState::Open {
        assert!(
            Instant::now() < deadline,
            "the breaker opens when nothing is delivered"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The buffer gauges refresh every second.
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let snapshot = snapshotter.snapshot().into_vec();
    let find = |kind: MetricKind, name: &str, label: Option<(&str, &str)>| {
        snapshot
            .iter()
            .find(|(key, _, _, _)| {
                key.kind() == kind
                    && key.key().name() == name
                    && label.is_none_or(|(k, v)| {
                        key.key().labels().any(|l| l.key() == k && l.value() == v)
                    })
            })
            .map(|(_, _, _, value)| value)
    };
    let gauge = |name: &str| match find(MetricKind::Gauge, name, None) {
        Some(DebugValue::Gauge(v)) => v.into_inner(),
        other => panic!("{name}: {other:?}"),
    };
    let counter = |name: &str, label| match find(MetricKind::Counter, name, label) {
        Some(DebugValue::Counter(n)) => *n,
        other => panic!("{name}: {other:?}"),
    };
    assert_eq!(gauge("ingest_breaker_state"), 2.0, "open");
    assert!(counter("ingest_breaker_opened_total", None) >= 1);
    assert_eq!(
        counter("ingest_buffer_dropped_total", Some(("reason", "full"))),
        dropped_receipts
    );
    assert_eq!(gauge("ingest_buffer_max_bytes"), f64::from(1u32 << 20));
    let bytes = gauge("ingest_buffer_bytes");
    assert!(
        bytes > 512.0 * 1024.0 && bytes <= f64::from(1u32 << 20),
        "{bytes}"
    );
    assert_eq!(
        gauge("ingest_buffer_entries"),
        (2_000 - dropped_receipts) as f64
    );
    assert!(gauge("ingest_buffer_oldest_age_seconds") >= 1.0);
    match find(MetricKind::Histogram, "ingest_buffer_fsync_seconds", None) {
        Some(DebugValue::Histogram(samples)) => assert!(!samples.is_empty()),
        other => panic!("fsync histogram: {other:?}"),
    }

    let report = ingestor
        .shutdown(Duration::from_secs(5))
        .await
        .expect("shuts down");
    assert_eq!(report.kept_in_buffer, 2_000 - dropped_receipts as usize);
}
