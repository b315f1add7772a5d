//! Driving the `ingest-load` harness process (see `src/bin/ingest_load.rs`).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use ingest_core::{ensure_topics, IngestConfig};

use super::{event_ids, Consumed};

/// Creates the harness's topics for `prefix` (6 partitions, so keys spread).
pub async fn create_topics(brokers: &str, prefix: &str) -> String {
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

pub fn start_load(brokers: &str, prefix: &str, ack: &str, out: &Path) -> Child {
    start_load_with(brokers, prefix, ack, out, &[])
}

pub fn start_load_with(
    brokers: &str,
    prefix: &str,
    ack: &str,
    out: &Path,
    extra: &[&str],
) -> Child {
    Command::new(env!("CARGO_BIN_EXE_ingest-load"))
        .args(["--brokers", brokers, "--topic-prefix", prefix, "--ack", ack])
        .arg("--out")
        .arg(out)
        .args(extra)
        .spawn()
        .expect("starts ingest-load")
}

/// Runs the harness on `buffer_dir` without new events: it delivers what the buffer
/// holds and exits.
pub fn drain_buffer(brokers: &str, prefix: &str, buffer_dir: &Path) {
    let out = out_file(&format!("{prefix}-drain"));
    let dir = buffer_dir.to_str().expect("UTF-8 path");
    let mut child = start_load_with(
        brokers,
        prefix,
        "accepted",
        &out,
        &["--events", "0", "--buffer-dir", dir],
    );
    let status = wait_exit(&mut child, Duration::from_secs(90));
    assert!(
        status.success(),
        "the replaying run delivered everything: {status}"
    );
    let _ = std::fs::remove_file(out);
}

/// Every recorded event is in `records`; prints the duplicate count.
pub fn assert_all_delivered(recorded: &HashSet<String>, records: &[Consumed], what: &str) {
    let delivered = event_ids(records);
    let missing = recorded.difference(&delivered).count();
    assert_eq!(
        missing,
        0,
        "{missing} of {} {what} events are not in Kafka",
        recorded.len()
    );
    println!(
        "{what}: {} events recorded, {} records in Kafka, {} duplicates",
        recorded.len(),
        records.len(),
        records.len() - delivered.len()
    );
}

pub fn recorded(out: &Path) -> HashSet<String> {
    std::fs::read_to_string(out)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Waits until the harness has recorded at least `n` events.
pub fn wait_for_lines(out: &Path, n: usize, child: &mut Child) {
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

pub fn wait_exit(child: &mut Child, timeout: Duration) -> ExitStatus {
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

pub fn out_file(prefix: &str) -> PathBuf {
    std::env::temp_dir().join(format!("{prefix}.ids"))
}

/// Every user's `seq` numbers appear in increasing order: one key, one partition,
/// order kept. Only the first copy of an event counts (at-least-once delivery may
/// append a duplicate later).
pub fn assert_per_key_order(records: &[Consumed]) {
    let mut last: HashMap<Vec<u8>, u64> = HashMap::new();
    let mut seen = HashSet::new();
    for record in records {
        if !seen.insert(record.header("event_id")) {
            continue;
        }
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

/// Sends SIGTERM to the harness and waits for it to exit; returns its status.
pub fn terminate(child: &mut Child, timeout: Duration) -> ExitStatus {
    let pid = child.id().to_string();
    let sent = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(sent.success(), "SIGTERM sent");
    wait_exit(child, timeout)
}
