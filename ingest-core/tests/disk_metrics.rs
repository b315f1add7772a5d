//! Events in the disk buffer whose submitters stopped waiting are delivered and their
//! delivery latency is still measured; receipts still held resolve. Against a real
//! Kafka; its own test binary, because it installs the process's metrics recorder.
//! Selected by the `kafka-tests` feature; `scripts/test` runs it.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{bootstrap, config, create_topics};
use ingest_core::config::{BufferSync, BufferType};
use ingest_core::{Ack, EventKind, Ingestor};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use metrics_util::MetricKind;

#[tokio::test(flavor = "multi_thread")]
async fn buffered_events_nobody_waits_for_are_delivered_and_timed() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder
        .install()
        .expect("the only recorder in this test binary");
    let brokers = bootstrap("KAFKA_BOOTSTRAP", "scripts/kafka start");
    let dir = tempfile::tempdir().expect("dir");
    let mut config = config(&brokers, "unwatched", 3, 1);
    config.buffer.kind = BufferType::Log;
    config.buffer.dir = Some(dir.path().to_path_buf());
    config.buffer.sync = BufferSync::Never;
    create_topics(&config).await;
    let ingestor = Ingestor::builder().config(config).build().expect("builds");

    const EVENTS: usize = 5_000;
    for i in 0..EVENTS {
        let body = format!(r#"{{"user_id":"u{}","product_id":"p{i}"}}"#, i % 50);
        // The receipt is dropped at once, as an `accepted` HTTP answer does.
        drop(
            ingestor
                .submit(EventKind::ProductView, Bytes::from(body))
                .expect("submitted"),
        );
    }
    ingestor
        .flush(Duration::from_secs(60))
        .await
        .expect("everything delivered");

    let latencies = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .find(|(key, _, _, _)| {
            key.kind() == MetricKind::Histogram
                && key.key().name() == "ingest_delivery_latency_seconds"
        })
        .map(|(_, _, _, value)| value);
    match latencies {
        Some(DebugValue::Histogram(samples)) => {
            assert_eq!(samples.len(), EVENTS, "one latency per delivered event");
            assert!(samples
                .iter()
                .all(|s| (0.0..60.0).contains(&s.into_inner())));
        }
        other => panic!("delivery latency histogram: {other:?}"),
    }
    // Receipts held on to resolve, however fast their records reach the disk.
    let kept: Vec<_> = (0..EVENTS)
        .map(|i| {
            let body = format!(r#"{{"user_id":"w{}","product_id":"p{i}"}}"#, i % 50);
            ingestor
                .submit(EventKind::ProductView, Bytes::from(body))
                .expect("submitted")
        })
        .collect();
    for receipt in kept {
        tokio::time::timeout(Duration::from_secs(30), receipt.wait(Ack::Delivered))
            .await
            .expect("a held receipt resolves")
            .expect("delivered");
    }
    let report = ingestor
        .shutdown(Duration::from_secs(10))
        .await
        .expect("shuts down");
    assert_eq!(report.kept_in_buffer, 0);
}
