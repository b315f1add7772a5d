//! ingest-core against a real single-node Kafka (`scripts/kafka start`).
//! Selected by the `kafka-tests` feature; `scripts/test` runs them.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use bytes::Bytes;
use common::{bootstrap, config, create_topics, event_ids, payloads, read_topic};
use ingest_core::{
    ensure_topics, Ack, CustomEvent, ErrorCode, EventKind, IngestConfig, Ingestor, SubmitOptions,
};

fn brokers() -> String {
    bootstrap("KAFKA_BOOTSTRAP", "scripts/kafka start")
}

const WAIT: Duration = Duration::from_secs(60);

/// Creates the test's own topics, then an ingestor that sends to them.
async fn start(config: IngestConfig) -> Ingestor {
    create_topics(&config).await;
    Ingestor::builder().config(config).build().expect("builds")
}

#[tokio::test(flavor = "multi_thread")]
async fn every_event_type_lands_in_its_topic_with_exact_bytes_key_and_headers() {
    let brokers = brokers();
    let config = config(&brokers, "types", 3, 1);
    let ingestor = start(config.clone()).await;

    let given_id = "0190c6a4-5a5e-7d5e-8b5e-0123456789ab";
    let events = [
        (EventKind::ProductView, format!(r#"{{"event_id":"{given_id}","user_id":"u-1","product_id":"sku-1","price":19.99,"currency":"EUR","x_extra":{{"kept":[1,2]}}}}"#)),
        (EventKind::Cart, r#"{"anonymous_id":"anon-7","action":"add","product_id":"sku-1","quantity":2}"#.to_owned()),
        (EventKind::Purchase, r#"{"user_id":"u-1", "order_id":"o-1","items":[{"product_id":"sku-1","quantity":2,"price":19.99}],"total":39.98,"currency":"EUR"}"#.to_owned()),
        (EventKind::Search, "{ \"user_id\" : \"u-2\",\n \"query\":\"red \\u00e9 shoes\", \"results_count\": 0 }".to_owned()),
    ];
    let mut receipts = Vec::new();
    for (kind, body) in &events {
        let receipt = ingestor
            .submit(*kind, Bytes::from(body.clone()))
            .expect("accepted");
        receipts.push(receipt);
    }
    for receipt in &receipts {
        receipt.wait(Ack::Delivered).await.expect("delivered");
    }
    assert_eq!(receipts[0].event_id().expect("id").to_string(), given_id);

    for ((kind, body), receipt) in events.iter().zip(&receipts) {
        let topic = &config.topics.for_kind(*kind).name;
        let records = read_topic(&brokers, topic, 1, WAIT).await;
        assert_eq!(records.len(), 1, "{kind}: exactly one record in {topic}");
        let record = &records[0];
        assert_eq!(
            record.payload,
            body.as_bytes(),
            "{kind}: payload is the client's bytes"
        );
        let key = if *kind == EventKind::Cart {
            "anon-7"
        } else if *kind == EventKind::Search {
            "u-2"
        } else {
            "u-1"
        };
        assert_eq!(record.key.as_deref(), Some(key.as_bytes()), "{kind}: key");
        assert_eq!(record.header("event_type"), kind.as_str());
        assert_eq!(
            record.header("event_id"),
            receipt.event_id().expect("id").to_string()
        );
        assert_eq!(record.header("schema"), kind.schema());
        assert_eq!(record.header("source"), "integration-test");
        let received_at = record.header("received_at");
        assert!(
            time::OffsetDateTime::parse(
                received_at,
                &time::format_description::well_known::Rfc3339
            )
            .is_ok(),
            "received_at {received_at:?} is RFC 3339"
        );
    }
    let report = ingestor
        .shutdown(Duration::from_secs(10))
        .await
        .expect("shuts down");
    assert_eq!(report.undelivered, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mixed_batch_delivers_exactly_the_valid_events_and_dead_letters_the_rest() {
    let brokers = brokers();
    let config = config(&brokers, "mixed", 2, 1);
    let ingestor = start(config.clone()).await;

    let body = concat!(
        r#"{"type":"product_view","user_id":"u1","product_id":"p1"}"#,
        "\n",
        r#"{"type":"product_view","user_id":"u1"}"#,
        "\n",
        r#"{"type":"search","user_id":"u2","query":"q"}"#,
        "\n",
        r#"{"type":"cart","user_id":"u3","action":"add","product_id":"p","quantity":1,"currency":"EURO"}"#,
        "\n",
        r#"{"type":"search","user_id":"u2","query":"q","#,
        "\n",
        r#"{"type":"purchase","user_id":"u4","order_id":"o","items":[{"product_id":"p","quantity":1,"price":2}],"total":2,"currency":"EUR"}"#,
        "\n",
    );
    let batch = ingestor
        .submit_batch(Bytes::from_static(body.as_bytes()))
        .expect("batch accepted");
    assert_eq!(batch.accepted, 3);
    let rejected: Vec<(usize, ErrorCode, Option<String>)> = batch
        .rejected
        .iter()
        .map(|r| {
            (
                r.index,
                r.error.code(),
                r.error.field_path().map(str::to_owned),
            )
        })
        .collect();
    assert_eq!(
        rejected,
        [
            (1, ErrorCode::MissingField, Some("product_id".to_owned())),
            (3, ErrorCode::InvalidCurrency, Some("currency".to_owned())),
            (4, ErrorCode::InvalidJson, None),
        ]
    );
    batch
        .receipt
        .wait(Ack::Delivered)
        .await
        .expect("valid events delivered");
    ingestor
        .flush(Duration::from_secs(30))
        .await
        .expect("dead letters flushed");

    let lines: Vec<&str> = body.lines().collect();
    let topics = &config.topics;
    let views = read_topic(&brokers, &topics.product_view.name, 1, WAIT).await;
    let searches = read_topic(&brokers, &topics.search.name, 1, WAIT).await;
    let purchases = read_topic(&brokers, &topics.purchase.name, 1, WAIT).await;
    let carts = read_topic(&brokers, &topics.cart.name, 0, WAIT).await;
    assert_eq!(payloads(&views), [lines[0].as_bytes()]);
    assert_eq!(payloads(&searches), [lines[2].as_bytes()]);
    assert_eq!(payloads(&purchases), [lines[5].as_bytes()]);
    assert!(carts.is_empty(), "the invalid cart event was not delivered");

    let mut dead = read_topic(&brokers, &topics.dead_letter.name, 3, WAIT).await;
    dead.sort_by(|a, b| a.payload.cmp(&b.payload));
    let mut expected = vec![
        (lines[1], "missing_field", "product_id", "product_view"),
        (lines[3], "invalid_currency", "currency", "cart"),
        (lines[4], "invalid_json", "", ""),
    ];
    expected.sort();
    assert_eq!(dead.len(), 3, "{dead:?}");
    for (record, (payload, code, field, event_type)) in dead.iter().zip(expected) {
        assert_eq!(record.payload, payload.as_bytes());
        assert_eq!(record.header("error_code"), code);
        assert_eq!(record.header("error_field"), field);
        assert_eq!(
            record.header("event_type"),
            event_type,
            "known from a valid type field"
        );
        assert!(!record.header("error_message").is_empty());
        assert_eq!(record.header("source"), "integration-test");
    }
    ingestor
        .shutdown(Duration::from_secs(10))
        .await
        .expect("shuts down");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rejected_single_event_is_dead_lettered_with_its_type_unless_disabled() {
    let brokers = brokers();
    let mut config = config(&brokers, "single-dlq", 1, 1);
    let ingestor = start(config.clone()).await;
    let bad = Bytes::from_static(br#"{"user_id":"u","action":"add"}"#);
    let err = ingestor
        .submit(EventKind::Cart, bad.clone())
        .expect_err("invalid");
    assert_eq!(
        err.validation().map(|v| v.code()),
        Some(ErrorCode::MissingField)
    );
    assert!(!err.is_retryable());
    ingestor
        .flush(Duration::from_secs(30))
        .await
        .expect("flushed");
    ingestor
        .shutdown(Duration::from_secs(10))
        .await
        .expect("shuts down");

    // The same again with dead-lettering off: the topic must not grow.
    config.dead_letter.enabled = false;
    let quiet = Ingestor::builder()
        .config(config.clone())
        .build()
        .expect("builds");
    quiet
        .submit(EventKind::Cart, bad.clone())
        .expect_err("invalid");
    quiet.flush(Duration::from_secs(30)).await.expect("flushed");
    quiet
        .shutdown(Duration::from_secs(10))
        .await
        .expect("shuts down");

    let dead = read_topic(&brokers, &config.topics.dead_letter.name, 1, WAIT).await;
    assert_eq!(dead.len(), 1, "only the first ingestor dead-lettered");
    assert_eq!(dead[0].payload, bad.as_ref());
    assert_eq!(dead[0].header("event_type"), "cart");
    assert_eq!(dead[0].header("error_code"), "missing_field");
    assert_eq!(dead[0].header("error_field"), "product_id");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hundred_thousand_events_from_four_threads_arrive_exactly_once() {
    const THREADS: usize = 4;
    const PER_THREAD: usize = 25_000;
    let brokers = brokers();
    let config = config(&brokers, "volume", 6, 1);
    let ingestor = start(config.clone()).await;

    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let ingestor = ingestor.clone();
            std::thread::spawn(move || {
                let mut receipts = Vec::with_capacity(PER_THREAD);
                for i in 0..PER_THREAD {
                    let id = uuid::Uuid::now_v7();
                    let body = format!(r#"{{"event_id":"{id}","user_id":"user-{}","product_id":"sku-{i}","price":9.5}}"#, i % 997);
                    let mut body = Bytes::from(body);
                    loop {
                        match ingestor.submit(EventKind::ProductView, body) {
                            Ok(receipt) => {
                                receipts.push(receipt);
                                break;
                            }
                            Err(e) if e.is_backpressure() => {
                                // Bounded queue: back off and resubmit, as a caller should.
                                std::thread::sleep(Duration::from_millis(2));
                                body = Bytes::from(format!(r#"{{"event_id":"{id}","user_id":"user-{}","product_id":"sku-{i}","price":9.5}}"#, i % 997));
                            }
                            Err(e) => panic!("thread {t}: {e}"),
                        }
                    }
                }
                receipts
            })
        })
        .collect();
    let mut sent = HashSet::new();
    let mut receipts = Vec::new();
    for handle in handles {
        for receipt in handle.join().expect("thread") {
            sent.insert(receipt.event_id().expect("id").to_string());
            receipts.push(receipt);
        }
    }
    assert_eq!(sent.len(), THREADS * PER_THREAD);
    for receipt in &receipts {
        receipt.wait(Ack::Delivered).await.expect("delivered");
    }

    let records = read_topic(
        &brokers,
        &config.topics.product_view.name,
        THREADS * PER_THREAD,
        Duration::from_secs(120),
    )
    .await;
    assert_eq!(
        records.len(),
        THREADS * PER_THREAD,
        "no record lost or duplicated"
    );
    assert_eq!(event_ids(&records), sent, "exactly the submitted event ids");
    ingestor
        .shutdown(Duration::from_secs(10))
        .await
        .expect("shuts down");
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_with_events_in_flight_delivers_all_of_them() {
    let brokers = brokers();
    let mut config = config(&brokers, "shutdown", 3, 1);
    // A long linger keeps records inside the producer when shutdown starts.
    config.kafka.linger_ms = 500;
    let ingestor = start(config.clone()).await;
    let mut ids = HashSet::new();
    for i in 0..5_000 {
        let body = format!(r#"{{"user_id":"u{}","query":"q{i}"}}"#, i % 50);
        let receipt = ingestor
            .submit(EventKind::Search, Bytes::from(body))
            .expect("accepted");
        ids.insert(receipt.event_id().expect("id").to_string());
    }
    let report = ingestor
        .shutdown(Duration::from_secs(30))
        .await
        .expect("shuts down");
    assert_eq!(report.undelivered, 0);
    let err = ingestor.submit(
        EventKind::Search,
        Bytes::from_static(br#"{"user_id":"u","query":"late"}"#),
    );
    assert!(
        matches!(err, Err(ingest_core::Error::ShuttingDown)),
        "{err:?}"
    );

    let records = read_topic(&brokers, &config.topics.search.name, 5_000, WAIT).await;
    assert_eq!(records.len(), 5_000);
    assert_eq!(event_ids(&records), ids);
}

#[tokio::test(flavor = "multi_thread")]
async fn topic_creation_reduces_replication_to_the_cluster_size_and_is_idempotent() {
    let brokers = brokers();
    let config = config(&brokers, "admin", 4, 3);
    let settings = config.validate().expect("valid");
    let first = ensure_topics(&settings, Duration::from_secs(30))
        .await
        .expect("created");
    assert_eq!(
        first.len(),
        6,
        "four event topics, dead letters, custom events"
    );
    for status in &first {
        assert!(status.created, "{status:?}");
        assert_eq!(
            status.replication_factor, 1,
            "single broker: reduced from 3"
        );
    }
    assert_eq!(first[0].partitions, 4);
    let again = ensure_topics(&settings, Duration::from_secs(30))
        .await
        .expect("idempotent");
    assert!(again.iter().all(|s| !s.created));
    assert_eq!(
        again.iter().map(|s| s.partitions).collect::<Vec<_>>(),
        [4, 4, 4, 4, 4, 4]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_submission_can_name_its_own_source() {
    let brokers = brokers();
    let config = config(&brokers, "source", 1, 1);
    let ingestor = start(config.clone()).await;
    let single = SubmitOptions::default().with_source("storefront-7");
    let batch = SubmitOptions::default().with_source("storefront-8");
    let receipt = ingestor
        .submit_with(
            EventKind::Search,
            Bytes::from_static(br#"{"user_id":"u","query":"a"}"#),
            &single,
        )
        .expect("accepted");
    let batched = ingestor
        .submit_batch_with(
            Bytes::from_static(b"[{\"type\":\"search\",\"user_id\":\"u\",\"query\":\"b\"}]"),
            &batch,
        )
        .expect("accepted");
    let plain = ingestor
        .submit(
            EventKind::Search,
            Bytes::from_static(br#"{"user_id":"u","query":"c"}"#),
        )
        .expect("accepted");
    for r in [&receipt, &batched.receipt, &plain] {
        r.wait(Ack::Delivered).await.expect("delivered");
    }
    let records = read_topic(&brokers, &config.topics.search.name, 3, WAIT).await;
    let sources: Vec<(&[u8], &str)> = records
        .iter()
        .map(|r| (r.payload.as_slice(), r.header("source")))
        .collect();
    assert_eq!(
        sources,
        [
            (&br#"{"user_id":"u","query":"a"}"#[..], "storefront-7"),
            (
                &br#"{"type":"search","user_id":"u","query":"b"}"#[..],
                "storefront-8"
            ),
            (&br#"{"user_id":"u","query":"c"}"#[..], "integration-test"),
        ],
        "one partition, one key: in submission order"
    );
    ingestor
        .shutdown(Duration::from_secs(10))
        .await
        .expect("shuts down");
}

#[tokio::test(flavor = "multi_thread")]
async fn single_submissions_taken_in_groups_keep_their_order_and_all_resolve() {
    let brokers = brokers();
    let config = config(&brokers, "groups", 3, 1);
    let ingestor = start(config.clone()).await;
    // Bursts and pauses, so the delivery thread takes groups of every size, gathers
    // and goes idle in between.
    let mut receipts = Vec::new();
    for i in 0..5_000u32 {
        let body = format!(r#"{{"user_id":"u-order","query":"q{i}"}}"#);
        let receipt = ingestor
            .submit(EventKind::Search, Bytes::from(body))
            .expect("accepted");
        receipts.push(receipt);
        if i % 1_000 == 999 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    for receipt in &receipts {
        receipt.wait(Ack::Delivered).await.expect("delivered");
    }
    let records = read_topic(&brokers, &config.topics.search.name, 5_000, WAIT).await;
    let queries: Vec<String> = records
        .iter()
        .map(|r| {
            let text = std::str::from_utf8(&r.payload).expect("utf-8");
            let start = text.find("\"query\":\"").expect("query") + 9;
            text[start..text.len() - 2].to_owned()
        })
        .collect();
    let expected: Vec<String> = (0..5_000).map(|i| format!("q{i}")).collect();
    assert_eq!(queries, expected, "one key: in submission order, each once");
    ingestor
        .shutdown(Duration::from_secs(10))
        .await
        .expect("shuts down");
}

#[tokio::test(flavor = "multi_thread")]
async fn batches_of_many_users_keep_each_users_order_and_land_where_predicted() {
    let brokers = brokers();
    let config = config(&brokers, "layout", 6, 1);
    let ingestor = start(config.clone()).await;
    // Wait until the delivery thread has read the partition counts, so the groups
    // below are ordered by partition and not only by topic.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (users, batches, per_batch) = (50u32, 20u32, 500u32);
    let mut receipts = Vec::new();
    for b in 0..batches {
        let mut body = String::new();
        for i in 0..per_batch {
            let seq = b * per_batch + i;
            body.push_str(&format!(
                "{{\"type\":\"search\",\"user_id\":\"user-{}\",\"query\":\"q{seq}\"}}\n",
                seq % users
            ));
        }
        let batch = ingestor.submit_batch(Bytes::from(body)).expect("accepted");
        assert_eq!(batch.accepted, per_batch as usize);
        receipts.push(batch.receipt);
    }
    for receipt in &receipts {
        receipt.wait(Ack::Delivered).await.expect("delivered");
    }
    let total = (batches * per_batch) as usize;
    let records = read_topic(&brokers, &config.topics.search.name, total, WAIT).await;
    assert_eq!(records.len(), total);
    let mut last_seq: std::collections::HashMap<Vec<u8>, u32> = Default::default();
    for record in &records {
        let key = record.key.clone().expect("keyed");
        // The partitioner librdkafka applies is the one the delivery thread predicts
        // when it orders a group: CRC-32 of the key modulo the partition count.
        assert_eq!(
            record.partition,
            (crc32fast::hash(&key) % 6) as i32,
            "partition of {:?}",
            String::from_utf8_lossy(&key)
        );
        let text = std::str::from_utf8(&record.payload).expect("utf-8");
        let start = text.find("\"query\":\"q").expect("query") + 10;
        let seq: u32 = text[start..text.len() - 2].parse().expect("seq");
        if let Some(previous) = last_seq.insert(key.clone(), seq) {
            assert!(
                previous < seq,
                "one user's events out of order: {previous} then {seq}"
            );
        }
    }
    assert_eq!(last_seq.len(), users as usize);
    ingestor
        .shutdown(Duration::from_secs(10))
        .await
        .expect("shuts down");
}

#[tokio::test(flavor = "multi_thread")]
async fn custom_events_land_in_their_topic_with_name_header_and_bad_ones_are_dead_lettered() {
    let brokers = brokers();
    let config = config(&brokers, "custom", 3, 1);
    let ingestor = start(config.clone()).await;

    let body = "{\"type\":\"page\",\"name\":\"Home \\u0000\",\"properties\":{\"path\":\"/\"}}";
    let id = uuid::Uuid::now_v7();
    let receipt = ingestor
        .submit_custom_with(
            CustomEvent::new("page", body)
                .with_key("user-9")
                .with_event_id(id),
            &SubmitOptions::default().with_source("storefront-1"),
        )
        .expect("accepted");
    receipt.wait(Ack::Delivered).await.expect("delivered");
    assert_eq!(receipt.event_id(), Some(id));
    let unkeyed = ingestor
        .submit_custom_with(
            CustomEvent::new("Newsletter Subscribed", "{}"),
            &SubmitOptions::default(),
        )
        .expect("accepted");
    unkeyed.wait(Ack::Delivered).await.expect("delivered");

    let error = ingestor
        .submit_custom_with(CustomEvent::new("page", "[1,2]"), &SubmitOptions::default())
        .expect_err("an array is refused");
    assert_eq!(
        error.validation().map(|e| e.code()),
        Some(ErrorCode::NotAnObject)
    );

    let records = read_topic(&brokers, &config.topics.custom.name, 2, WAIT).await;
    assert_eq!(records.len(), 2, "exactly the two accepted custom events");
    let page = records
        .iter()
        .find(|r| r.header("event_name") == "page")
        .expect("the page event");
    assert_eq!(
        page.payload,
        body.as_bytes(),
        "the value is the body as given"
    );
    assert_eq!(page.key.as_deref(), Some(&b"user-9"[..]));
    assert_eq!(page.header("event_type"), "custom");
    assert_eq!(page.header("event_id"), id.to_string());
    assert_eq!(page.header("source"), "storefront-1");
    let other = records
        .iter()
        .find(|r| r.header("event_name") == "Newsletter Subscribed")
        .expect("the sign-up");
    assert_eq!(other.key, None);
    assert_eq!(
        other.header("event_id"),
        unkeyed.event_id().expect("id").to_string()
    );

    let dead = read_topic(&brokers, &config.topics.dead_letter.name, 1, WAIT).await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].payload, b"[1,2]");
    assert_eq!(dead[0].header("error_code"), "not_an_object");
    let report = ingestor
        .shutdown(Duration::from_secs(10))
        .await
        .expect("shuts down");
    assert_eq!(report.undelivered, 0);
}
