//! Whole processes against a real Kafka: the `ingest-load` harness is stopped with
//! SIGTERM or SIGKILL in the middle of a load, and every event it had acknowledged must
//! be in Kafka. Selected by the `kafka-tests` feature; `scripts/test` runs them.

mod common;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use common::{bootstrap, event_ids, read_topic, unique, Consumed};
use ingest_core::{ensure_topics, IngestConfig};

fn brokers() -> String {
    bootstrap("KAFKA_BOOTSTRAP", "scripts/kafka start")
}

/// Creates the harness's topics for `prefix` (6 partitions, so keys spread).
async fn create_topics(brokers: &str, prefix: &str) -> String {
    let mut config = IngestConfig::default();
    config.kafka.brokers = brokers.to_owned();
    for (topic, name) in [
        (&mut config.topics.product_view, "product-views"),
        (&mut config.topics.cart, "cart-events"),
        (&mut config.topics.purchase, "purchases"),
        (&mut config.topics.search, "search-events"),
        (&mut config.topics.dead_letter, "events-dlq"),
    ] {
        topic.name = format!("{prefix}-{name}");
        topic.partitions = 6;
        topic.replication_factor = 1;
    }
    let settings = config.validate().expect("valid");
    ensure_topics(&settings, Duration::from_secs(30))
        .await
        .expect("topics");
    config.topics.product_view.name
}

fn start_load(brokers: &str, prefix: &str, ack: &str, out: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_ingest-load"))
        .args(["--brokers", brokers, "--topic-prefix", prefix, "--ack", ack])
        .arg("--out")
        .arg(out)
        .spawn()
        .expect("starts ingest-load")
}

fn recorded(out: &Path) -> HashSet<String> {
    std::fs::read_to_string(out)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Waits until the harness has recorded at least `n` events.
fn wait_for_lines(out: &Path, n: usize, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while recorded(out).len() < n {
        assert!(
            Instant::now() < deadline,
            "ingest-load recorded fewer than {n} events in 60 s"
        );
        assert!(
            child.try_wait().expect("status").is_none(),
            "ingest-load exited early"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn wait_exit(child: &mut Child, timeout: Duration) -> ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("status") {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "ingest-load did not exit within {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn out_file(prefix: &str) -> PathBuf {
    std::env::temp_dir().join(format!("{prefix}.ids"))
}

/// Every user's `seq` numbers appear in increasing order: one key, one partition,
/// order kept (duplicates excepted, which at-least-once delivery allows).
fn assert_per_key_order(records: &[Consumed]) {
    let mut last: HashMap<Vec<u8>, u64> = HashMap::new();
    for record in records {
        let event: serde_json::Value = serde_json::from_slice(&record.payload).expect("JSON");
        let seq = event["seq"].as_u64().expect("seq");
        let key = record.key.clone().expect("keyed");
        if let Some(previous) = last.insert(key.clone(), seq) {
            assert!(
                seq > previous,
                "user {} went from seq {previous} to {seq}",
                String::from_utf8_lossy(&key)
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_mid_load_delivers_every_accepted_event() {
    let brokers = brokers();
    let prefix = unique("sigterm");
    let topic = create_topics(&brokers, &prefix).await;
    let out = out_file(&prefix);
    let mut child = start_load(&brokers, &prefix, "accepted", &out);
    wait_for_lines(&out, 20_000, &mut child);

    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill")
        .success());
    let status = wait_exit(&mut child, Duration::from_secs(90));
    assert!(
        status.success(),
        "ingest-load drained everything and exited 0: {status}"
    );

    let accepted = recorded(&out);
    let records = read_topic(&brokers, &topic, accepted.len(), Duration::from_secs(120)).await;
    let delivered = event_ids(&records);
    let missing = accepted.difference(&delivered).count();
    assert_eq!(
        missing,
        0,
        "{missing} of {} accepted events are not in Kafka",
        accepted.len()
    );
    assert_eq!(
        records.len(),
        delivered.len(),
        "no duplicates without a crash"
    );
    assert_per_key_order(&records);
    let _ = std::fs::remove_file(out);
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_mid_load_loses_no_delivered_event() {
    let brokers = brokers();
    let prefix = unique("sigkill");
    let topic = create_topics(&brokers, &prefix).await;
    let out = out_file(&prefix);
    // Five kills at different moments, all into the same topic.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    for run in 0..5u32 {
        let mut child = start_load(&brokers, &prefix, "delivered", &out);
        wait_for_lines(&out, 1, &mut child);
        let moment = Duration::from_millis(u64::from((nanos / 1_000 + run * 7919) % 1500));
        std::thread::sleep(moment);
        child.kill().expect("SIGKILL");
        let status = wait_exit(&mut child, Duration::from_secs(10));
        assert!(!status.success(), "killed, not exited: {status}");
    }
    let acknowledged = recorded(&out);
    assert!(
        acknowledged.len() > 5,
        "the harness acknowledged events before each kill"
    );
    let records = read_topic(
        &brokers,
        &topic,
        acknowledged.len(),
        Duration::from_secs(120),
    )
    .await;
    let delivered = event_ids(&records);
    let missing = acknowledged.difference(&delivered).count();
    assert_eq!(
        missing,
        0,
        "{missing} of {} acknowledged events are not in Kafka",
        acknowledged.len()
    );
    let _ = std::fs::remove_file(out);
}
