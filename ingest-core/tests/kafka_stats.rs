//! librdkafka's statistics exported as metrics, against a real single-node Kafka
//! (`scripts/kafka start`). Its own test binary, because it installs the process's
//! metrics recorder. Selected by the `kafka-tests` feature.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{bootstrap, config, create_topics};
use ingest_core::{Ack, EventKind, Ingestor};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};

#[tokio::test(flavor = "multi_thread")]
async fn broker_round_trips_queues_and_batches_are_exported() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder
        .install()
        .expect("the only recorder in this test binary");

    let mut config = config(
        &bootstrap("KAFKA_BOOTSTRAP", "scripts/kafka start"),
        "stats",
        1,
        1,
    );
    config.telemetry.instance = "stats-test".to_owned();
    config.telemetry.statistics_interval_ms = 200;
    create_topics(&config).await;
    let ingestor = Ingestor::builder().config(config).build().expect("builds");
    for i in 0..20 {
        let body = format!(r#"{{"user_id":"u{i}","product_id":"p"}}"#);
        ingestor
            .submit(EventKind::ProductView, Bytes::from(body))
            .expect("queued")
            .wait(Ack::Delivered)
            .await
            .expect("delivered");
    }

    let deadline = Instant::now() + Duration::from_secs(20);
    let (rtt, batches) = loop {
        let snapshot = snapshotter.snapshot().into_vec();
        let series = |name: &str| -> Vec<(Vec<(String, String)>, f64)> {
            snapshot
                .iter()
                .filter(|(key, _, _, _)| key.key().name() == name)
                .filter_map(|(key, _, _, value)| {
                    let labels = key
                        .key()
                        .labels()
                        .map(|l| (l.key().to_owned(), l.value().to_owned()))
                        .collect();
                    match value {
                        DebugValue::Gauge(v) => Some((labels, v.into_inner())),
                        _ => None,
                    }
                })
                .collect()
        };
        let rtt = series("ingest_kafka_broker_rtt_seconds");
        let batches = series("ingest_kafka_batch_messages");
        if rtt.iter().any(|(_, v)| *v > 0.0) && batches.iter().any(|(_, v)| *v > 0.0) {
            break (rtt, batches);
        }
        assert!(
            Instant::now() < deadline,
            "no statistics exported: rtt {rtt:?}, batches {batches:?}"
        );
        // librdkafka's round-trip and batch figures cover the last statistics interval
        // only: keep producing, so that every interval has some to report.
        let body = r#"{"user_id":"u-more","product_id":"p"}"#;
        ingestor
            .submit(EventKind::ProductView, Bytes::from_static(body.as_bytes()))
            .expect("queued");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let has = |labels: &[(String, String)], k: &str, v: &str| {
        labels.iter().any(|(lk, lv)| lk == k && lv == v)
    };
    assert!(rtt.iter().all(|(l, _)| has(l, "ingestor", "stats-test")
        && l.iter().any(|(k, v)| k == "broker" && v.ends_with("/1"))));
    assert!(batches
        .iter()
        .any(|(l, v)| has(l, "ingestor", "stats-test") && *v >= 1.0));
    ingestor
        .shutdown(Duration::from_secs(10))
        .await
        .expect("shutdown");
}
