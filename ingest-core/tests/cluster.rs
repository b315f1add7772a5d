//! ingest-core against a real 3-broker Kafka (`scripts/kafka start --brokers 3`).
//! Selected by the `kafka-cluster-tests` feature; `scripts/test` runs them.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use bytes::Bytes;
use common::{bootstrap, config, event_ids, read_topic};
use ingest_core::{ensure_topics, Ack, EventKind, Ingestor};
use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use rdkafka::ClientConfig;

/// The tests take turns: one of them stops a broker, which the other must not see.
static CLUSTER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread")]
async fn topics_get_replication_three_and_acks_all_delivery_works() {
    let _turn = CLUSTER.lock().await;
    let brokers = bootstrap("KAFKA_CLUSTER_BOOTSTRAP", "scripts/kafka start --brokers 3");
    let config = config(&brokers, "rf3", 6, 3);
    let settings = config.validate().expect("valid");
    let statuses = ensure_topics(&settings, Duration::from_secs(60))
        .await
        .expect("created");
    assert!(
        statuses
            .iter()
            .all(|s| s.created && s.replication_factor == 3),
        "{statuses:?}"
    );

    // The broker reports the layout we asked for: 3 replicas per partition, min ISR 2.
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()
        .expect("admin");
    let topic = config.topics.purchase.name.clone();
    let metadata = admin
        .inner()
        .fetch_metadata(Some(&topic), Duration::from_secs(10))
        .expect("metadata");
    let partitions = metadata.topics()[0].partitions();
    assert_eq!(partitions.len(), 6);
    assert!(partitions.iter().all(|p| p.replicas().len() == 3));
    // Asked again for a while: the other test of this file stops a broker meanwhile, and
    // a broker coming back may answer before it has the topic's configuration.
    let mut min_isr = None;
    for _ in 0..20 {
        let configs = admin
            .describe_configs(&[ResourceSpecifier::Topic(&topic)], &AdminOptions::new())
            .await
            .expect("describe");
        min_isr = configs[0]
            .as_ref()
            .ok()
            .and_then(|resource| resource.get("min.insync.replicas"))
            .and_then(|e| e.value.clone());
        if min_isr.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(min_isr.as_deref(), Some("2"));

    let ingestor = Ingestor::builder()
        .config(config.clone())
        .build()
        .expect("builds");
    let mut ids = HashSet::new();
    let mut receipts = Vec::new();
    for i in 0..2_000 {
        let body = format!(
            r#"{{"user_id":"u{}","order_id":"o{i}","items":[{{"product_id":"p","quantity":1,"price":3}}],"total":3,"currency":"EUR"}}"#,
            i % 100
        );
        let receipt = ingestor
            .submit(EventKind::Purchase, Bytes::from(body))
            .expect("accepted");
        ids.insert(receipt.event_id().expect("id").to_string());
        receipts.push(receipt);
    }
    for receipt in &receipts {
        receipt
            .wait(Ack::Delivered)
            .await
            .expect("acknowledged by all in-sync replicas");
    }
    ingestor
        .shutdown(Duration::from_secs(30))
        .await
        .expect("shuts down");
    let records = read_topic(&brokers, &topic, 2_000, Duration::from_secs(60)).await;
    assert_eq!(records.len(), 2_000);
    assert_eq!(event_ids(&records), ids);
}

/// Runs `scripts/kafka COMMAND ARGS` on the 3-broker cluster.
fn cluster(args: &[&str]) {
    let state = bootstrap("KAFKA_CLUSTER_STATE_DIR", "scripts/kafka start --brokers 3");
    let script = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/kafka");
    let status = std::process::Command::new(script)
        .args(args)
        .env("KAFKA_STATE_DIR", state)
        .stdout(std::process::Stdio::null())
        .status()
        .expect("runs scripts/kafka");
    assert!(status.success(), "scripts/kafka {args:?}: {status}");
}

/// Starts the broker again when dropped, also when the test fails.
struct Restart(&'static str);

impl Drop for Restart {
    fn drop(&mut self) {
        cluster(&["start-broker", self.0]);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn delivery_continues_when_one_broker_of_three_dies() {
    let _turn = CLUSTER.lock().await;
    let brokers = bootstrap("KAFKA_CLUSTER_BOOTSTRAP", "scripts/kafka start --brokers 3");
    let mut config = config(&brokers, "one-down", 6, 3);
    let buffer = tempfile::tempdir().expect("dir");
    config.buffer.kind = ingest_core::config::BufferType::Log;
    config.buffer.dir = Some(buffer.path().to_path_buf());
    let settings = config.validate().expect("valid");
    ensure_topics(&settings, Duration::from_secs(60))
        .await
        .expect("created");
    let ingestor = Ingestor::builder()
        .config(config.clone())
        .build()
        .expect("builds");
    let submit = |from: u64, to: u64| {
        (from..to)
            .map(|i| {
                let body = format!(
                    r#"{{"user_id":"u{}","product_id":"p{i}","seq":{i}}}"#,
                    i % 40
                );
                ingestor
                    .submit(EventKind::ProductView, Bytes::from(body))
                    .expect("accepted")
            })
            .collect::<Vec<_>>()
    };
    let mut receipts = submit(0, 1_000);
    cluster(&["kill-broker", "2"]);
    let restart = Restart("2");
    receipts.extend(submit(1_000, 3_000));
    let mut ids = HashSet::new();
    for receipt in &receipts {
        tokio::time::timeout(Duration::from_secs(120), receipt.wait(Ack::Delivered))
            .await
            .expect("delivered in time with one broker down")
            .expect("acknowledged by the two remaining in-sync replicas");
        ids.insert(receipt.event_id().expect("id").to_string());
    }
    let report = ingestor
        .shutdown(Duration::from_secs(30))
        .await
        .expect("stops");
    assert_eq!(report.kept_in_buffer, 0);
    drop(restart);
    let topic = &config.topics.product_view.name;
    let records = read_topic(&brokers, topic, 3_000, Duration::from_secs(60)).await;
    assert_eq!(event_ids(&records), ids, "every event once");
}
