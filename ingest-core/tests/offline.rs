//! Delivery behaviour that needs no broker: an unreachable cluster, a full queue, and
//! shutdown with nothing deliverable. Runs in plain `cargo test`.

use std::time::Duration;

use bytes::Bytes;
use ingest_core::{Ack, Error, EventKind, IngestConfig, Ingestor};

/// A configuration pointing at a port nothing listens on.
fn unreachable() -> IngestConfig {
    let mut config = IngestConfig::default();
    config.kafka.brokers = "127.0.0.1:1".to_owned();
    config.kafka.message_timeout_ms = 1_500;
    config.dead_letter.enabled = false;
    config
}

fn event(i: usize) -> Bytes {
    Bytes::from(format!(r#"{{"user_id":"u{i}","product_id":"p"}}"#))
}

#[tokio::test]
async fn an_unreachable_cluster_fails_receipts_with_a_retryable_error() {
    let ingestor = Ingestor::builder()
        .config(unreachable())
        .build()
        .expect("builds without contacting brokers");
    let receipt = ingestor
        .submit(EventKind::ProductView, event(1))
        .expect("accepted");
    receipt
        .wait(Ack::Accepted)
        .await
        .expect("accepted resolves at once");
    let err = tokio::time::timeout(Duration::from_secs(30), receipt.wait(Ack::Delivered))
        .await
        .expect("resolves after message_timeout_ms")
        .expect_err("cannot be delivered");
    match &err {
        Error::Delivery {
            failed,
            total,
            retryable,
            ..
        } => {
            assert_eq!((*failed, *total, *retryable), (1, 1, true), "{err}");
        }
        other => panic!("unexpected {other}"),
    }
    assert!(err.is_retryable());
    ingestor
        .shutdown(Duration::from_secs(1))
        .await
        .expect("shuts down");
}

#[tokio::test]
async fn a_full_queue_refuses_with_a_typed_error_and_never_grows() {
    let mut config = unreachable();
    config.kafka.message_timeout_ms = 60_000;
    config.kafka.producer_queue_max_records = 10;
    config.queue.max_events = 50;
    config.limits.max_batch_events = 50;
    let ingestor = Ingestor::builder().config(config).build().expect("builds");
    let mut accepted = 0;
    let mut refused = None;
    for i in 0..10_000 {
        match ingestor.submit(EventKind::ProductView, event(i)) {
            Ok(_) => accepted += 1,
            Err(e) => {
                refused = Some(e);
                break;
            }
        }
    }
    let refused = refused.expect("the queue filled up");
    assert!(matches!(refused, Error::QueueFull { .. }), "{refused}");
    assert!(refused.is_backpressure() && refused.is_retryable());
    // Producer queue (10) + our queue (50), and at most one record in the thread's hands.
    assert!(accepted <= 61, "accepted {accepted}: the bounds hold");

    // A batch is admitted whole or not at all.
    let batch = (0..20)
        .map(|i| format!(r#"{{"type":"search","user_id":"u{i}","query":"q"}}"#))
        .collect::<Vec<_>>()
        .join("\n");
    let err = ingestor
        .submit_batch(Bytes::from(batch))
        .expect_err("no room");
    assert!(matches!(err, Error::QueueFull { .. }), "{err}");

    let report = ingestor
        .shutdown(Duration::from_millis(500))
        .await
        .expect("shuts down");
    assert!(
        report.undelivered > 0,
        "nothing could be delivered: {report:?}"
    );
}

#[tokio::test]
async fn shutdown_resolves_every_receipt_and_closes_all_clones() {
    let ingestor = Ingestor::builder()
        .config(unreachable())
        .build()
        .expect("builds");
    let clone = ingestor.clone();
    let receipts: Vec<_> = (0..100)
        .map(|i| {
            ingestor
                .submit(EventKind::ProductView, event(i))
                .expect("accepted")
        })
        .collect();
    let report = ingestor
        .shutdown(Duration::from_millis(300))
        .await
        .expect("shuts down");
    assert_eq!(report.undelivered, 100);
    for receipt in &receipts {
        assert!(receipt.is_settled(), "no receipt waits forever");
        assert!(receipt.wait(Ack::Delivered).await.is_err());
    }
    assert!(matches!(
        clone.submit(EventKind::ProductView, event(0)),
        Err(Error::ShuttingDown)
    ));
    assert!(matches!(
        clone.shutdown(Duration::from_secs(1)).await,
        Err(Error::ShuttingDown)
    ));
    assert!(matches!(
        clone.flush(Duration::from_secs(1)).await,
        Err(Error::ShuttingDown)
    ));
}

#[test]
fn invalid_configuration_is_refused_before_any_io() {
    let mut config = IngestConfig::default();
    config
        .kafka
        .properties
        .insert("acks".to_owned(), "1".to_owned());
    let err = Ingestor::builder()
        .config(config)
        .build()
        .expect_err("acks=1 refused");
    assert!(matches!(err, Error::Config(_)), "{err}");
    assert!(err.to_string().contains("kafka.properties.acks"), "{err}");
}

#[tokio::test]
async fn a_flood_of_invalid_events_never_takes_queue_room_from_valid_ones() {
    let mut config = unreachable();
    config.dead_letter.enabled = true;
    config.kafka.message_timeout_ms = 60_000;
    config.kafka.producer_queue_max_records = 10;
    config.queue.max_events = 100;
    config.limits.max_batch_events = 100;
    let ingestor = Ingestor::builder().config(config).build().expect("builds");
    for i in 0..1_000 {
        let invalid = Bytes::from(format!(r#"{{"user_id":"u{i}"}}"#));
        let err = ingestor
            .submit(EventKind::ProductView, invalid)
            .expect_err("no product_id");
        assert!(
            err.validation().is_some(),
            "always the validation error, never back-pressure: {err}"
        );
    }
    // The dead letters could not all be queued (nothing is delivered), yet valid events
    // still find the whole queue free.
    for i in 0..50 {
        ingestor
            .submit(EventKind::ProductView, event(i))
            .expect("room for valid events");
    }
    let report = ingestor
        .shutdown(Duration::from_millis(300))
        .await
        .expect("shuts down");
    assert!(report.undelivered >= 50, "{report:?}");
}

/// `ensure_topics` outside any tokio runtime returns the client's error instead of
/// panicking, both polled by the blocking form and by a foreign executor.
#[test]
fn ensure_topics_without_a_runtime_returns_an_error() {
    let settings = unreachable().validate().expect("valid");
    let err = ingest_core::ensure_topics_blocking(&settings, Duration::from_millis(500))
        .expect_err("nothing listens");
    assert_eq!(err.code(), ingest_core::ErrorKind::Kafka, "{err}");
    assert!(err.to_string().contains("metadata"), "{err}");
}

/// The blocking forms work without a runtime: a flush with nothing reachable times out,
/// a shutdown reports what it could not deliver, and a second one is refused.
#[test]
fn blocking_flush_and_shutdown_without_a_runtime() {
    let ingestor = Ingestor::builder()
        .config(unreachable())
        .build()
        .expect("builds");
    ingestor
        .submit(EventKind::ProductView, event(1))
        .expect("accepted");
    let err = ingestor
        .flush_blocking(Duration::from_millis(200))
        .expect_err("cannot deliver");
    assert!(matches!(err, Error::Timeout(_)), "{err}");
    let report = ingestor
        .shutdown_blocking(Duration::from_millis(200))
        .expect("stops");
    assert_eq!(report.undelivered, 1, "{report:?}");
    assert!(matches!(
        ingestor.shutdown_blocking(Duration::ZERO),
        Err(Error::ShuttingDown)
    ));
    assert_eq!(ingestor.stats().accepted, 1);
}

/// `Duration::MAX` means "no limit" to flush and shutdown, rather than a deadline that
/// overflows: the shutdown returns once the unreachable cluster's records time out.
#[test]
fn the_longest_deadlines_do_not_overflow() {
    let ingestor = Ingestor::builder()
        .config(unreachable())
        .build()
        .expect("builds");
    ingestor
        .submit(
            EventKind::Cart,
            Bytes::from_static(br#"{"user_id":"u","action":"clear"}"#),
        )
        .expect("accepted");
    let started = std::time::Instant::now();
    let report = ingestor.shutdown_blocking(Duration::MAX).expect("stops");
    assert_eq!(
        report.undelivered + ingestor.stats().failed as usize,
        1,
        "{report:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(30));
    assert!(ingestor.health().threads_alive(), "{:?}", ingestor.health());
}

/// A flush waiting with a long deadline holds back neither later submissions nor a
/// shutdown with a short one: the shutdown keeps its own deadline and the flush ends
/// with `ShuttingDown`.
#[test]
fn a_long_flush_does_not_hold_back_a_shutdown() {
    let mut config = unreachable();
    config.kafka.message_timeout_ms = 600_000;
    let ingestor = Ingestor::builder().config(config).build().expect("builds");
    ingestor
        .submit(EventKind::ProductView, event(1))
        .expect("accepted");
    let flusher = ingestor.clone();
    let flush = std::thread::spawn(move || flusher.flush_blocking(Duration::from_secs(600)));
    std::thread::sleep(Duration::from_millis(200));
    ingestor
        .submit(EventKind::ProductView, event(2))
        .expect("a flush in progress does not stop submissions");
    let started = std::time::Instant::now();
    let report = ingestor
        .shutdown_blocking(Duration::from_millis(300))
        .expect("stops");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the shutdown waited {:?} for the flush",
        started.elapsed()
    );
    assert_eq!(report.undelivered, 2, "{report:?}");
    let flushed = flush.join().expect("flush thread");
    assert!(matches!(flushed, Err(Error::ShuttingDown)), "{flushed:?}");
}

/// A flush keeps its deadline even while the delivery thread waits for room in the Kafka
/// client's full queue (nothing reachable, records kept for the message timeout).
#[test]
fn a_flush_keeps_its_deadline_behind_a_full_client_queue() {
    let mut config = unreachable();
    config.kafka.message_timeout_ms = 600_000;
    config.kafka.producer_queue_max_records = 1;
    let ingestor = Ingestor::builder().config(config).build().expect("builds");
    for i in 0..3 {
        ingestor
            .submit(EventKind::ProductView, event(i))
            .expect("accepted");
    }
    // The delivery thread now holds the second record, waiting for the first to leave.
    std::thread::sleep(Duration::from_millis(200));
    let started = std::time::Instant::now();
    let flushed = ingestor.flush_blocking(Duration::from_millis(300));
    assert!(matches!(flushed, Err(Error::Timeout(_))), "{flushed:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the flush took {:?}",
        started.elapsed()
    );
    let report = ingestor
        .shutdown_blocking(Duration::from_millis(300))
        .expect("stops");
    assert_eq!(report.undelivered, 3, "{report:?}");
}

/// `SubmitOptions::with_allowed_kinds`: a single event of another type, and such events
/// in a batch, are rejected as `type_not_allowed` on `type`; the allowed ones are taken.
#[tokio::test]
async fn events_of_a_type_not_allowed_are_rejected_and_the_rest_taken() {
    use ingest_core::{ErrorCode, SubmitOptions};
    let ingestor = Ingestor::builder()
        .config(unreachable())
        .build()
        .expect("builds");
    let options = SubmitOptions::default().with_allowed_kinds([
        EventKind::ProductView,
        EventKind::Cart,
        EventKind::Search,
    ]);
    assert!(options.allows(EventKind::Search) && !options.allows(EventKind::Purchase));
    assert!(SubmitOptions::default().allows(EventKind::Purchase));

    let purchase = Bytes::from_static(
        br#"{"user_id":"u1","order_id":"o1","currency":"EUR","total":1.0,"items":[{"product_id":"p","quantity":1,"price":1.0}]}"#,
    );
    match ingestor.submit_with(EventKind::Purchase, purchase.clone(), &options) {
        Err(Error::Invalid(error)) => {
            assert_eq!(error.code(), ErrorCode::TypeNotAllowed);
            assert_eq!(error.code().number(), 20);
            assert_eq!(error.field_path(), Some("type"));
            assert!(error.message().contains("purchase"), "{}", error.message());
        }
        other => panic!("expected type_not_allowed, got {other:?}"),
    }
    ingestor
        .submit_with(EventKind::Purchase, purchase, &SubmitOptions::default())
        .expect("allowed without the option");

    let batch = Bytes::from_static(
        b"{\"type\":\"product_view\",\"user_id\":\"u1\",\"product_id\":\"p\"}\n\
          {\"type\":\"purchase\",\"user_id\":\"u1\",\"order_id\":\"o2\",\"currency\":\"EUR\",\"total\":1.0,\"items\":[{\"product_id\":\"p\",\"quantity\":1,\"price\":1.0}]}\n\
          {\"type\":\"search\",\"user_id\":\"u1\",\"query\":\"shoes\"}\n",
    );
    let result = ingestor
        .submit_batch_with(batch, &options)
        .expect("batch taken");
    assert_eq!(result.accepted, 2);
    assert_eq!(result.rejected.len(), 1);
    assert_eq!(result.rejected[0].index, 1);
    assert_eq!(result.rejected[0].error.code(), ErrorCode::TypeNotAllowed);
    ingestor
        .shutdown(Duration::from_secs(1))
        .await
        .expect("shuts down");
}
