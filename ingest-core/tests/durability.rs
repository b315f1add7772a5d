//! The disk buffer in the delivery path, against a real Kafka: `persisted` receipts,
//! replay on the next start, a full buffer under both policies, and a damaged buffer
//! file. "Kafka down" is an ingestor pointed at a closed port; the next start points
//! it at the real broker. Selected by the `kafka-tests` feature; `scripts/test` runs
//! them.

mod common;

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::harness::assert_per_key_order;
use common::{bootstrap, config, create_topics, event_ids, read_topic};
use ingest_core::config::{BufferSync, BufferType, WhenFull};
use ingest_core::{
    buffer, Ack, BreakerState, CustomEvent, Error, EventKind, IngestConfig, Ingestor, SubmitOptions,
};

const WAIT: Duration = Duration::from_secs(60);

fn brokers() -> String {
    bootstrap("KAFKA_BOOTSTRAP", "scripts/kafka start")
}

/// An address where no broker listens.
fn unreachable() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    format!("127.0.0.1:{port}")
}

fn with_disk(mut config: IngestConfig, dir: &Path, kind: BufferType) -> IngestConfig {
    config.buffer.kind = kind;
    config.buffer.dir = Some(dir.to_path_buf());
    config.buffer.sync = BufferSync::Always;
    config.breaker.probe_min_backoff_ms = 100;
    config.breaker.probe_max_backoff_ms = 1000;
    config.breaker.stall_timeout_ms = 2000;
    config
}

/// A test's configuration with a `log` buffer in `dir` and its topics created, and the
/// same pointed at a closed port ("Kafka down").
async fn real_and_down(brokers: &str, test: &str, dir: &Path) -> (IngestConfig, IngestConfig) {
    let real = with_disk(config(brokers, test, 3, 1), dir, BufferType::Log);
    create_topics(&real).await;
    let mut down = real.clone();
    down.kafka.brokers = unreachable();
    (real, down)
}

fn view(user: u64, seq: u64, pad: usize) -> Bytes {
    Bytes::from(format!(
        r#"{{"user_id":"u{user}","product_id":"sku-{seq}","seq":{seq},"pad":"{}"}}"#,
        "x".repeat(pad)
    ))
}

async fn persisted_events_are_delivered_with_their_headers(kind: BufferType) {
    let brokers = brokers();
    let dir = tempfile::tempdir().expect("dir");
    let config = with_disk(config(&brokers, "disk", 3, 1), dir.path(), kind);
    create_topics(&config).await;
    let ingestor = Ingestor::builder()
        .config(config.clone())
        .build()
        .expect("builds");
    assert!(ingestor.settings().has_disk_buffer());
    let mut receipts = Vec::new();
    for seq in 0..500 {
        receipts.push(
            ingestor
                .submit(EventKind::ProductView, view(seq % 7, seq, 10))
                .expect("accepted"),
        );
    }
    let batch = ingestor
        .submit_batch(Bytes::from_static(
            b"{\"type\":\"search\",\"user_id\":\"u1\",\"query\":\"shoes\"}\n{\"type\":\"search\"}\n",
        ))
        .expect("batch");
    assert_eq!((batch.accepted, batch.rejected.len()), (1, 1));
    for receipt in &receipts {
        receipt.wait(Ack::Persisted).await.expect("persisted");
    }
    for receipt in &receipts {
        receipt.wait(Ack::Delivered).await.expect("delivered");
    }
    batch.receipt.wait(Ack::Delivered).await.expect("delivered");
    let health = ingestor.health();
    assert_eq!(health.breaker, BreakerState::Closed);
    assert!(health.is_ready());
    let report = ingestor
        .shutdown(Duration::from_secs(30))
        .await
        .expect("stops");
    assert_eq!((report.undelivered, report.kept_in_buffer), (0, 0));

    let topic = &config.topics.product_view.name;
    let records = read_topic(&brokers, topic, 500, WAIT).await;
    assert_eq!(records.len(), 500, "each event once");
    let ids: HashSet<String> = receipts
        .iter()
        .map(|r| r.event_id().expect("id").to_string())
        .collect();
    assert_eq!(event_ids(&records), ids);
    for record in &records {
        let event: serde_json::Value = serde_json::from_slice(&record.payload).expect("JSON");
        let seq = event["seq"].as_u64().expect("seq");
        assert_eq!(
            record.payload,
            view(seq % 7, seq, 10),
            "payload bytes unchanged"
        );
        assert_eq!(
            record.key.as_deref(),
            Some(format!("u{}", seq % 7).as_bytes())
        );
        assert_eq!(record.header("event_type"), "product_view");
        assert_eq!(record.header("schema"), "json:product_view/v1");
        assert_eq!(record.header("source"), "integration-test");
        assert!(record.header("received_at").ends_with('Z'));
    }
    assert_per_key_order(&records);
    let searches = read_topic(&brokers, &config.topics.search.name, 1, WAIT).await;
    assert_eq!(searches.len(), 1);
    let dead = read_topic(&brokers, &config.topics.dead_letter.name, 1, WAIT).await;
    assert_eq!(dead.len(), 1, "the invalid batch element is dead-lettered");
    assert_eq!(dead[0].header("error_code"), "missing_field");
}

#[tokio::test(flavor = "multi_thread")]
async fn log_buffer_persists_then_delivers_with_exact_bytes_and_headers() {
    persisted_events_are_delivered_with_their_headers(BufferType::Log).await;
}

#[cfg(feature = "sled-buffer")]
#[tokio::test(flavor = "multi_thread")]
async fn sled_buffer_persists_then_delivers_with_exact_bytes_and_headers() {
    persisted_events_are_delivered_with_their_headers(BufferType::Sled).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn kafka_down_keeps_events_on_disk_and_the_next_start_replays_them_first() {
    let brokers = brokers();
    let dir = tempfile::tempdir().expect("dir");
    let (real, down) = real_and_down(&brokers, "replay", dir.path()).await;

    let ingestor = Ingestor::builder().config(down).build().expect("builds");
    let mut persisted = HashSet::new();
    for seq in 0..1000 {
        let receipt = ingestor
            .submit(EventKind::ProductView, view(seq % 10, seq, 50))
            .expect("accepted while Kafka is down");
        receipt
            .wait(Ack::Persisted)
            .await
            .expect("persisted while Kafka is down");
        persisted.insert(receipt.event_id().expect("id").to_string());
    }
    // No broker answers: the breaker opens; the buffer has room, so still ready.
    let deadline = Instant::now() + Duration::from_secs(30);
    while ingestor.health().breaker != BreakerState::Open {
        assert!(Instant::now() < deadline, "the breaker never opened");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let health = ingestor.health();
    assert!(!health.kafka_reachable() && health.is_ready(), "{health:?}");
    assert_eq!(health.buffer.expect("buffer").entries, 1000);
    let started = Instant::now();
    let report = ingestor
        .shutdown(Duration::from_secs(30))
        .await
        .expect("stops");
    assert_eq!(
        (report.kept_in_buffer, report.lost()),
        (1000, 0),
        "{report:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "an open breaker does not wait for the deadline"
    );

    // Next start, Kafka reachable: the buffered events go first, then new ones.
    let ingestor = Ingestor::builder()
        .config(real.clone())
        .build()
        .expect("builds");
    let mut receipts = Vec::new();
    for seq in 1000..1100 {
        receipts.push(
            ingestor
                .submit(EventKind::ProductView, view(seq % 10, seq, 50))
                .expect("accepted"),
        );
    }
    for receipt in &receipts {
        receipt.wait(Ack::Delivered).await.expect("delivered");
        persisted.insert(receipt.event_id().expect("id").to_string());
    }
    ingestor.flush(WAIT).await.expect("replay delivered");
    let report = ingestor
        .shutdown(Duration::from_secs(30))
        .await
        .expect("stops");
    assert_eq!(report.kept_in_buffer, 0);

    let records = read_topic(&brokers, &real.topics.product_view.name, 1100, WAIT).await;
    let delivered = event_ids(&records);
    assert_eq!(
        persisted.difference(&delivered).count(),
        0,
        "every persisted event is in Kafka"
    );
    println!(
        "replay: {} records, {} duplicates",
        records.len(),
        records.len() - delivered.len()
    );
    assert_per_key_order(&records);
}

/// A config whose buffer holds about 1 MiB and whose queue is small.
fn tiny(config: IngestConfig, dir: &Path, when_full: WhenFull) -> IngestConfig {
    let mut config = with_disk(config, dir, BufferType::Log);
    config.buffer.max_bytes = 1 << 20;
    config.buffer.segment_bytes = 128 << 10;
    config.buffer.sync = BufferSync::Interval;
    config.buffer.when_full = when_full;
    config.buffer.full_timeout_ms = 60_000;
    config.limits.max_batch_events = 100;
    config.limits.max_batch_bytes = 64 << 10;
    config.queue.max_events = 200;
    config.queue.max_bytes = 256 << 10;
    config
}

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("VmRSS")
        * 1024
}

#[tokio::test(flavor = "multi_thread")]
async fn full_buffer_blocks_with_backpressure_or_drops_newest_and_loses_nothing_persisted() {
    let brokers = brokers();
    let base = config(&brokers, "full", 3, 1);
    create_topics(&base).await;
    let mut persisted = HashSet::new();
    let mut delivered_expected = 0;

    for when_full in [WhenFull::Block, WhenFull::DropNewest] {
        let dir = tempfile::tempdir().expect("dir");
        let real = tiny(base.clone(), dir.path(), when_full);
        let mut down = real.clone();
        down.kafka.brokers = unreachable();
        let ingestor = Ingestor::builder().config(down).build().expect("builds");
        let (mut backpressure, mut dropped, mut receipts) = (0u64, 0u64, Vec::new());
        let mut rss_half = 0;
        // 40 MiB offered to a 1 MiB buffer; memory is measured over the second half,
        // when the buffer has long been full.
        for seq in 0..40_000u64 {
            if seq == 20_000 {
                rss_half = rss_bytes();
            }
            match ingestor.submit(EventKind::ProductView, view(seq % 10, seq, 1000)) {
                Ok(receipt) => receipts.push(receipt),
                Err(error) => {
                    assert!(
                        matches!(error, Error::QueueFull { .. }),
                        "only back-pressure: {error}"
                    );
                    backpressure += 1;
                    tokio::task::yield_now().await;
                }
            }
            if receipts.len() >= 64 {
                for receipt in receipts.drain(..) {
                    match tokio::time::timeout(
                        Duration::from_millis(200),
                        receipt.wait(Ack::Persisted),
                    )
                    .await
                    {
                        Ok(Ok(())) => {
                            persisted.insert(receipt.event_id().expect("id").to_string());
                        }
                        Ok(Err(error)) => {
                            assert!(error.to_string().contains("disk buffer is full"), "{error}");
                            dropped += 1;
                        }
                        // Blocked: waiting for space.
                        Err(_) => {}
                    }
                }
            }
        }
        let rss_growth = rss_bytes().saturating_sub(rss_half);
        println!(
            "{when_full:?}: persisted {}, backpressure {backpressure}, dropped {dropped}, RSS growth {} KiB",
            persisted.len(),
            rss_growth / 1024
        );
        match when_full {
            WhenFull::Block => {
                assert!(backpressure > 0, "a full buffer pushes back");
                assert_eq!(dropped, 0, "block never drops");
            }
            WhenFull::DropNewest => {
                assert!(dropped > 0, "drop_newest drops and says so");
            }
        }
        let stats = ingestor.health().buffer.expect("buffer");
        assert!(stats.bytes <= 1 << 20, "the bound holds: {stats:?}");
        assert!(!stats.has_room());
        assert!(
            rss_growth < 8 << 20,
            "memory stays bounded: grew {rss_growth} bytes while 20 MiB more were offered"
        );
        let report = ingestor
            .shutdown(Duration::from_secs(2))
            .await
            .expect("stops");
        assert_eq!(report.lost(), 0);
        delivered_expected += report.kept_in_buffer;

        // Kafka back: everything persisted is delivered.
        let ingestor = Ingestor::builder().config(real).build().expect("builds");
        ingestor.flush(WAIT).await.expect("replayed");
        let report = ingestor
            .shutdown(Duration::from_secs(30))
            .await
            .expect("stops");
        assert_eq!(report.kept_in_buffer, 0);
    }
    let records = read_topic(
        &brokers,
        &base.topics.product_view.name,
        delivered_expected,
        WAIT,
    )
    .await;
    let delivered = event_ids(&records);
    assert_eq!(
        persisted.difference(&delivered).count(),
        0,
        "every persisted event is in Kafka ({} persisted, {} delivered)",
        persisted.len(),
        delivered.len()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn damaged_buffer_is_quarantined_and_the_intact_records_are_delivered() {
    let brokers = brokers();
    let dir = tempfile::tempdir().expect("dir");
    let mut real = with_disk(
        config(&brokers, "corrupt", 3, 1),
        dir.path(),
        BufferType::Log,
    );
    real.buffer.segment_bytes = 64 << 10;
    create_topics(&real).await;
    let mut down = real.clone();
    down.kafka.brokers = unreachable();

    let ingestor = Ingestor::builder().config(down).build().expect("builds");
    let mut persisted = Vec::new();
    for seq in 0..1000 {
        let receipt = ingestor
            .submit(EventKind::ProductView, view(seq % 10, seq, 300))
            .expect("accepted");
        receipt.wait(Ack::Persisted).await.expect("persisted");
        persisted.push(receipt.event_id().expect("id").to_string());
    }
    let report = ingestor
        .shutdown(Duration::from_secs(5))
        .await
        .expect("stops");
    assert_eq!(report.kept_in_buffer, 1000);

    // Flip bytes in the middle of the second of several segments.
    let mut segments: Vec<_> = std::fs::read_dir(dir.path())
        .expect("dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    segments.sort();
    assert!(segments.len() >= 4, "{segments:?}");
    let mut bytes = std::fs::read(&segments[1]).expect("read");
    let middle = bytes.len() / 2;
    for b in &mut bytes[middle..middle + 32] {
        *b ^= 0xA5;
    }
    std::fs::write(&segments[1], &bytes).expect("write");
    let before = buffer::inspect(dir.path()).expect("inspect");
    assert_eq!(
        before.damaged.len(),
        1,
        "inspect finds the damage: {before:?}"
    );

    let ingestor = Ingestor::builder()
        .config(real.clone())
        .build()
        .expect("builds");
    ingestor
        .flush(WAIT)
        .await
        .expect("intact records delivered");
    let report = ingestor
        .shutdown(Duration::from_secs(30))
        .await
        .expect("stops");
    assert_eq!(report.kept_in_buffer, 0);
    let quarantine = dir.path().join(buffer::QUARANTINE_DIR);
    assert!(
        std::fs::read_dir(&quarantine).expect("quarantine").count() >= 2,
        "the damaged range and its report are kept"
    );
    assert!(buffer::inspect(dir.path())
        .expect("inspect")
        .damaged
        .is_empty());

    let records = read_topic(&brokers, &real.topics.product_view.name, 1, WAIT).await;
    let delivered = event_ids(&records);
    let lost: Vec<usize> = (0..persisted.len())
        .filter(|i| !delivered.contains(&persisted[*i]))
        .collect();
    println!(
        "corruption: {} delivered, {} quarantined",
        delivered.len(),
        lost.len()
    );
    assert!(!lost.is_empty(), "the damaged records are not delivered");
    assert!(lost.len() < 200, "only the damaged segment's tail is lost");
    // What was lost is one contiguous run (from the bad frame to its segment's end).
    assert_eq!(lost.last().expect("some") - lost[0] + 1, lost.len());
    assert!(lost[0] > 0 && *lost.last().expect("some") < persisted.len() - 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn custom_events_kept_on_disk_while_kafka_is_down_arrive_with_their_name_after_a_restart() {
    let brokers = brokers();
    let dir = tempfile::tempdir().expect("dir");
    let (real, down) = real_and_down(&brokers, "custom-replay", dir.path()).await;

    let ingestor = Ingestor::builder().config(down).build().expect("builds");
    let mut sent = Vec::new();
    for seq in 0..20u32 {
        let name = format!("Coupon Entered {seq}");
        let body = format!(r#"{{"event":"{name}","seq":{seq}}}"#);
        let receipt = ingestor
            .submit_custom_with(
                CustomEvent::new(name.clone(), body.clone()).with_key(format!("u{}", seq % 3)),
                &SubmitOptions::default(),
            )
            .expect("accepted while Kafka is down");
        receipt
            .wait(Ack::Persisted)
            .await
            .expect("persisted while Kafka is down");
        sent.push((receipt.event_id().expect("id").to_string(), name, body));
    }
    let report = ingestor
        .shutdown(Duration::from_secs(30))
        .await
        .expect("stops");
    assert_eq!(
        (report.kept_in_buffer, report.lost()),
        (20, 0),
        "{report:?}"
    );

    let ingestor = Ingestor::builder()
        .config(real.clone())
        .build()
        .expect("builds");
    ingestor.flush(WAIT).await.expect("replay delivered");
    ingestor
        .shutdown(Duration::from_secs(30))
        .await
        .expect("stops");

    let records = read_topic(&brokers, &real.topics.custom.name, 20, WAIT).await;
    assert_eq!(event_ids(&records).len(), 20);
    for (id, name, body) in &sent {
        let record = records
            .iter()
            .find(|r| r.header("event_id") == id.as_str())
            .unwrap_or_else(|| panic!("{id} was delivered"));
        assert_eq!(record.header("event_type"), "custom");
        assert_eq!(record.header("event_name"), name.as_str());
        assert_eq!(record.payload, body.as_bytes());
    }
    assert_per_key_order(&records);
}
