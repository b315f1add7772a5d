//! Test support shared by the workspace's integration tests: finding the real Kafka the
//! scripts started (and failing with instructions when it is missing), and reading
//! topics back; and the seeded storefront traffic generator ([`storefront`]). Not
//! published; a dev-dependency, and a dependency of the benches' load tools.

pub mod hostile;
pub mod storefront;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
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

/// One record read back from Kafka.
#[derive(Debug, Clone)]
pub struct Consumed {
    /// The topic it was read from.
    pub topic: String,
    /// Its partition.
    pub partition: i32,
    /// Its key.
    pub key: Option<Vec<u8>>,
    /// Its value.
    pub payload: Vec<u8>,
    /// Its headers (values as lossy UTF-8).
    pub headers: HashMap<String, String>,
}

impl Consumed {
    /// A header's value, empty when absent.
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

/// A record with any bytes, as a foreign producer could write it.
#[derive(Debug, Clone, Default)]
pub struct RawRecord {
    /// Index into the `topics` given to [`produce_raw`].
    pub topic: usize,
    /// Key.
    pub key: Option<Vec<u8>>,
    /// Value (`None`: a record without one).
    pub value: Option<Vec<u8>>,
    /// Headers, in order (`None`: a header without a value).
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

/// Produces `records` (each to `topics[record.topic]`) with an idempotent producer and
/// waits until Kafka has acknowledged them all.
///
/// # Panics
///
/// When Kafka cannot be reached or refuses a record: a test or demo cannot go on then.
pub fn produce_raw(brokers: &str, topics: &[&str], records: &[RawRecord]) {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("message.max.bytes", "10000000")
        .create()
        .expect("producer");
    for r in records {
        let mut headers = OwnedHeaders::new();
        for (k, v) in &r.headers {
            headers = headers.insert(Header {
                key: k,
                value: v.as_deref(),
            });
        }
        let mut record: BaseRecord<'_, [u8], [u8]> =
            BaseRecord::to(topics[r.topic]).headers(headers);
        if let Some(key) = &r.key {
            record = record.key(key.as_slice());
        }
        if let Some(value) = &r.value {
            record = record.payload(value.as_slice());
        }
        producer.send(record).map_err(|(e, _)| e).expect("queued");
    }
    producer
        .flush(Duration::from_secs(30))
        .expect("acknowledged");
    assert_eq!(producer.in_flight_count(), 0, "every record acknowledged");
}
