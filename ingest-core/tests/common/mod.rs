//! Helpers shared by the integration tests that talk to a real Kafka.

#![allow(dead_code, unreachable_pub)]

#[cfg(feature = "kafka-tests")]
pub mod harness;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use ingest_core::config::TopicConfig;
use ingest_core::{ensure_topics, IngestConfig};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

/// The bootstrap address of the Kafka the tests use, from `KAFKA_BOOTSTRAP`.
///
/// # Panics
///
/// When it is not set: these tests need a real broker and say how to get one.
pub fn bootstrap(var: &str, how: &str) -> String {
    match std::env::var(var) {
        Ok(v) if !v.trim().is_empty() => v,
        _ => panic!(
            "{var} is not set. These tests need a real Kafka: run `{how}` and export {var}=<the address it prints>, \
             or run scripts/test, which does both."
        ),
    }
}

/// A unique topic name prefix for one test, so tests never see each other's records.
pub fn unique(test: &str) -> String {
    format!("t-{test}-{}", uuid::Uuid::now_v7().simple())
}

/// A configuration whose topics are private to one test.
pub fn config(brokers: &str, test: &str, partitions: i32, replication_factor: i32) -> IngestConfig {
    let prefix = unique(test);
    let topic = |name: &str| TopicConfig {
        name: format!("{prefix}-{name}"),
        partitions,
        replication_factor,
    };
    let mut config = IngestConfig::default();
    config.kafka.brokers = brokers.to_owned();
    config.kafka.linger_ms = 2;
    config.source = "integration-test".to_owned();
    config.topics.product_view = topic("product-views");
    config.topics.cart = topic("cart-events");
    config.topics.purchase = topic("purchases");
    config.topics.search = topic("search-events");
    config.topics.dead_letter = topic("events-dlq");
    config
}

/// Creates the configuration's topics.
pub async fn create_topics(config: &IngestConfig) {
    let settings = config.validate().expect("valid test config");
    ensure_topics(&settings, Duration::from_secs(30))
        .await
        .expect("topics created");
}

/// One record read back from Kafka.
#[derive(Debug, Clone)]
pub struct Consumed {
    pub topic: String,
    pub partition: i32,
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    pub headers: HashMap<String, String>,
}

impl Consumed {
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).map_or("", String::as_str)
    }
}

/// Reads every record of `topic` from the beginning until `expected` records arrived
/// and no more come for a short while (to catch duplicates), or until `timeout`.
pub fn consume(brokers: &str, topic: &str, expected: usize, timeout: Duration) -> Vec<Consumed> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set(
            "group.id",
            format!("verify-{}", uuid::Uuid::now_v7().simple()),
        )
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .create()
        .expect("consumer");
    // A topic created moments ago may not have its partition leaders yet: wait for them.
    let metadata_deadline = Instant::now() + Duration::from_secs(30);
    let mut assignment = TopicPartitionList::new();
    loop {
        let metadata = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .expect("metadata");
        // Every partition must have a leader, or records in the others would be missed.
        let ready = metadata.topics().iter().all(|t| {
            t.error().is_none()
                && !t.partitions().is_empty()
                && t.partitions().iter().all(|p| p.leader() >= 0)
        });
        let partitions: Vec<i32> = if ready {
            metadata
                .topics()
                .iter()
                .flat_map(|t| t.partitions().iter().map(|p| p.id()))
                .collect()
        } else {
            Vec::new()
        };
        if !partitions.is_empty() {
            for id in partitions {
                assignment
                    .add_partition_offset(topic, id, Offset::Beginning)
                    .expect("partition");
            }
            break;
        }
        assert!(
            Instant::now() < metadata_deadline,
            "topic {topic} has no partitions with a leader after 30 s"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    consumer.assign(&assignment).expect("assign");

    let deadline = Instant::now() + timeout;
    let mut records = Vec::new();
    let mut quiet_since: Option<Instant> = None;
    while Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                quiet_since = None;
                let headers = m
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|h| {
                                let value =
                                    h.value.map(|v| String::from_utf8_lossy(v).into_owned());
                                (h.key.to_owned(), value.unwrap_or_default())
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                records.push(Consumed {
                    topic: m.topic().to_owned(),
                    partition: m.partition(),
                    key: m.key().map(<[u8]>::to_vec),
                    payload: m.payload().map(<[u8]>::to_vec).unwrap_or_default(),
                    headers,
                });
            }
            Some(Err(e)) => panic!("consuming {topic}: {e}"),
            None if records.len() >= expected => {
                let since = *quiet_since.get_or_insert_with(Instant::now);
                if since.elapsed() > Duration::from_millis(1500) {
                    break;
                }
            }
            None => {}
        }
    }
    records
}

/// [`consume`] on a blocking thread, for async tests.
pub async fn read_topic(
    brokers: &str,
    topic: &str,
    expected: usize,
    timeout: Duration,
) -> Vec<Consumed> {
    let (brokers, topic) = (brokers.to_owned(), topic.to_owned());
    tokio::task::spawn_blocking(move || consume(&brokers, &topic, expected, timeout))
        .await
        .expect("the consuming thread finishes")
}

/// The `event_id` headers of `records`.
pub fn event_ids(records: &[Consumed]) -> HashSet<String> {
    records
        .iter()
        .map(|r| r.header("event_id").to_owned())
        .collect()
}

/// The values of `records`, in order.
pub fn payloads(records: &[Consumed]) -> Vec<&[u8]> {
    records.iter().map(|r| r.payload.as_slice()).collect()
}
