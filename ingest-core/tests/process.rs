//! Whole processes against a real Kafka: the `ingest-load` harness is stopped with
//! SIGTERM or SIGKILL in the middle of a load, and every event it had acknowledged must
//! be in Kafka. Selected by the `kafka-tests` feature; `scripts/test` runs them.

mod common;

use std::time::Duration;

use common::harness::{
    assert_all_delivered, assert_per_key_order, create_topics, drain_buffer, out_file, recorded,
    start_load, start_load_with, terminate, wait_exit, wait_for_lines,
};
use common::{bootstrap, event_ids, read_topic, unique};

fn brokers() -> String {
    bootstrap("KAFKA_BOOTSTRAP", "scripts/kafka start")
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_mid_load_delivers_every_accepted_event() {
    let brokers = brokers();
    let prefix = unique("sigterm");
    let topic = create_topics(&brokers, &prefix).await;
    let out = out_file(&prefix);
    let mut child = start_load(&brokers, &prefix, "accepted", &out);
    wait_for_lines(&out, 20_000, &mut child);

    let status = terminate(&mut child, Duration::from_secs(90));
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

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_with_persisted_acks_loses_nothing_after_restart_on_the_same_buffer() {
    let brokers = brokers();
    let prefix = unique("kill-disk");
    let topic = create_topics(&brokers, &prefix).await;
    let out = out_file(&prefix);
    let buffer = tempfile::tempdir().expect("buffer dir");
    let dir = buffer.path().to_str().expect("UTF-8 path");
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    for run in 0..5u32 {
        // Each run also replays what the previous one left in the buffer.
        let mut child =
            start_load_with(&brokers, &prefix, "persisted", &out, &["--buffer-dir", dir]);
        wait_for_lines(&out, 1, &mut child);
        let moment = Duration::from_millis(u64::from((nanos / 1_000 + run * 7919) % 1500));
        std::thread::sleep(moment);
        child.kill().expect("SIGKILL");
        let status = wait_exit(&mut child, Duration::from_secs(10));
        assert!(!status.success(), "killed, not exited: {status}");
    }
    drain_buffer(&brokers, &prefix, buffer.path());
    let persisted = recorded(&out);
    assert!(
        persisted.len() > 5,
        "the harness persisted events before each kill"
    );
    let records = read_topic(&brokers, &topic, persisted.len(), Duration::from_secs(120)).await;
    assert_all_delivered(&persisted, &records, "persisted");
    let _ = std::fs::remove_file(out);
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_keeps_undelivered_events_in_the_buffer_and_the_next_start_delivers_them() {
    let brokers = brokers();
    let prefix = unique("term-disk");
    let topic = create_topics(&brokers, &prefix).await;
    let out = out_file(&prefix);
    let buffer = tempfile::tempdir().expect("buffer dir");
    let dir = buffer.path().to_str().expect("UTF-8 path");
    // A 1 ms shutdown deadline: most accepted events are still on their way.
    let mut child = start_load_with(
        &brokers,
        &prefix,
        "accepted",
        &out,
        &["--buffer-dir", dir, "--shutdown-timeout-ms", "1"],
    );
    wait_for_lines(&out, 20_000, &mut child);
    let status = terminate(&mut child, Duration::from_secs(60));
    assert!(
        status.success(),
        "nothing lost: delivered or kept in the buffer: {status}"
    );
    let report = ingest_core::buffer::inspect(buffer.path()).expect("inspect");
    println!(
        "left in the buffer after SIGTERM: {} records",
        report.unacked_entries
    );

    drain_buffer(&brokers, &prefix, buffer.path());
    let accepted = recorded(&out);
    let records = read_topic(&brokers, &topic, accepted.len(), Duration::from_secs(120)).await;
    assert_all_delivered(&accepted, &records, "accepted");
    assert_per_key_order(&records);
    let _ = std::fs::remove_file(out);
}
