//! A whole-cluster outage under load: the `ingest-load` harness, with a disk buffer and
//! `persisted` acknowledgements, keeps taking events while Kafka is stopped for 30 s,
//! and delivers them, in order per user, once it is back. Selected by the
//! `kafka-outage-tests` feature; `scripts/test` runs it on its own, because it stops
//! the broker every other test uses.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::harness::{
    assert_all_delivered, assert_per_key_order, create_topics, drain_buffer, out_file, recorded,
    start_load_with, terminate, wait_for_lines,
};
use common::{bootstrap, read_topic, unique};

/// Runs `scripts/kafka COMMAND` on the cluster the test uses.
fn kafka(command: &str) {
    let state = bootstrap("KAFKA_OUTAGE_STATE_DIR", "scripts/kafka start");
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/kafka");
    let status = Command::new(script)
        .arg(command)
        .env("KAFKA_STATE_DIR", state)
        .stdout(std::process::Stdio::null())
        .status()
        .expect("runs scripts/kafka");
    assert!(status.success(), "scripts/kafka {command}: {status}");
}

#[tokio::test(flavor = "multi_thread")]
async fn thirty_second_outage_loses_no_persisted_event_and_keeps_per_user_order() {
    let brokers = bootstrap("KAFKA_BOOTSTRAP", "scripts/kafka start");
    let prefix = unique("outage");
    let topic = create_topics(&brokers, &prefix).await;
    let out = out_file(&prefix);
    let buffer = tempfile::tempdir().expect("buffer dir");
    let dir = buffer.path().to_str().expect("UTF-8 path");
    // Records time out in the client during the outage (10 s), so the forwarder's
    // rewind runs too, not only the client's own retries.
    let mut child = start_load_with(
        &brokers,
        &prefix,
        "persisted",
        &out,
        &[
            "--buffer-dir",
            dir,
            "--rate",
            "2000",
            "--message-timeout-ms",
            "10000",
        ],
    );
    wait_for_lines(&out, 4_000, &mut child);

    kafka("stop");
    let at_stop = recorded(&out).len();
    std::thread::sleep(Duration::from_secs(30));
    let during = recorded(&out).len() - at_stop;
    assert!(
        child.try_wait().expect("status").is_none(),
        "the harness survives the outage"
    );
    assert!(
        during > 20_000,
        "events kept being persisted while Kafka was down ({during} in 30 s)"
    );
    kafka("start");

    // Let it catch up with Kafka back, then stop it.
    std::thread::sleep(Duration::from_secs(15));
    let status = terminate(&mut child, Duration::from_secs(90));
    assert!(status.success(), "nothing lost at shutdown: {status}");
    // Whatever the shutdown left in the buffer is delivered by the next start.
    drain_buffer(&brokers, &prefix, buffer.path());

    let persisted = recorded(&out);
    let records = read_topic(&brokers, &topic, persisted.len(), Duration::from_secs(180)).await;
    assert_all_delivered(&persisted, &records, "persisted (outage)");
    assert_per_key_order(&records);
    let _ = std::fs::remove_file(out);
}
