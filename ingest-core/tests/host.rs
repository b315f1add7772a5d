//! The API for hosts without an async runtime (language bindings, C programs): blocking
//! and polled receipts, blocking flush and shutdown, the completion queue, `stats`, and
//! `ensure_topics` outside a tokio runtime. Against the real Kafka (`KAFKA_BOOTSTRAP`);
//! no test here starts a runtime.

mod common;

use std::time::Duration;

use bytes::Bytes;
use ingest_core::{
    ensure_topics_blocking, Ack, CompletionQueue, Error, ErrorKind, EventKind, Ingestor,
};

const WAIT: Duration = Duration::from_secs(30);

fn kafka() -> String {
    common::bootstrap(
        "KAFKA_BOOTSTRAP",
        "KAFKA_STATE_DIR=/tmp/kafka-dev scripts/kafka start",
    )
}

#[test]
fn a_host_without_a_runtime_submits_waits_flushes_and_closes() {
    let brokers = kafka();
    let dir = tempfile::tempdir().expect("tempdir");
    let config = common::config(&brokers, "host", 1, 1);
    let settings = config.validate().expect("valid");
    let statuses = ensure_topics_blocking(&settings, WAIT).expect("topics without a runtime");
    assert_eq!(statuses.len(), 6, "{statuses:?}");

    let mut disk = config.clone();
    disk.buffer.kind = ingest_core::config::BufferType::Log;
    disk.buffer.dir = Some(dir.path().to_owned());
    let ingestor = Ingestor::builder().config(disk).build().expect("build");
    let body = Bytes::from_static(br#"{"user_id":"host-u1","product_id":"sku-1"}"#);
    let receipt = ingestor
        .submit(EventKind::ProductView, body.clone())
        .expect("accepted");
    receipt
        .wait_blocking(Ack::Persisted, Some(WAIT))
        .expect("persisted");
    receipt
        .wait_blocking(Ack::Delivered, Some(WAIT))
        .expect("delivered");
    assert!(matches!(receipt.try_wait(Ack::Delivered), Some(Ok(()))));

    let completions = CompletionQueue::new();
    let batch = ingestor
        .submit_batch(Bytes::from_static(
            b"{\"type\":\"search\",\"user_id\":\"host-u2\",\"query\":\"shoes\"}\n{\"type\":\"cart\"}\n",
        ))
        .expect("batch taken");
    assert_eq!((batch.accepted, batch.event_ids.len()), (1, 1));
    assert_eq!(batch.rejected.len(), 1);
    assert_eq!(batch.rejected[0].index, 1);
    completions
        .watch(&batch.receipt, Ack::Delivered, Some(WAIT), 11)
        .expect("watch");
    completions
        .watch_flush(&ingestor, WAIT, 12)
        .expect("watch flush");
    let mut tags = Vec::new();
    for _ in 0..2 {
        let done = completions.wait(WAIT).expect("completes");
        done.result.expect("delivered and flushed");
        tags.push(done.tag);
    }
    tags.sort_unstable();
    assert_eq!(tags, [11, 12]);

    ingestor.flush_blocking(WAIT).expect("flushed");
    let stats = ingestor.stats();
    assert_eq!((stats.accepted, stats.rejected), (2, 1), "{stats:?}");
    assert!(stats.delivered >= 2, "{stats:?}");
    assert!(stats.buffer.is_some());

    let report = ingestor.shutdown_blocking(WAIT).expect("closes");
    assert_eq!(report.lost(), 0, "{report:?}");
    let again = ingestor.shutdown_blocking(WAIT).expect_err("closed once");
    assert_eq!(again.code(), ErrorKind::ShuttingDown);
    let after = ingestor
        .submit(EventKind::ProductView, body)
        .expect_err("closed");
    assert!(matches!(after, Error::ShuttingDown), "{after}");

    let records = common::consume(&brokers, &config.topics.product_view.name, 1, WAIT);
    assert_eq!(
        records[0].payload,
        br#"{"user_id":"host-u1","product_id":"sku-1"}"#
    );
    assert_eq!(records[0].key.as_deref(), Some(&b"host-u1"[..]));
}
