//! Reading back what reached Kafka: the records of some topics written since a run
//! started (from the high watermarks taken then) up to the end they had when the read
//! started, picked by the run encoded in `event_id`. Starting at the run's own
//! watermarks keeps the read short on a Kafka that has served many runs before.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use uuid::Uuid;

/// Where each partition of some topics ended at one moment: (topic, partition) to
/// its high watermark.
pub type Watermarks = HashMap<(String, i32), i64>;

fn consumer(brokers: &str) -> Option<BaseConsumer> {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "ingest-benches-verify")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create()
        .map_err(|error| eprintln!("verify: consumer: {error}"))
        .ok()
}

/// The (low, high) watermarks of every partition of `topics`; topics without metadata
/// are left out.
fn watermarks(consumer: &BaseConsumer, topics: &[&str]) -> HashMap<(String, i32), (i64, i64)> {
    let mut marks = HashMap::new();
    for topic in topics {
        let Ok(metadata) = consumer.fetch_metadata(Some(topic), Duration::from_secs(10)) else {
            eprintln!("verify: no metadata for {topic}");
            continue;
        };
        for partition in metadata.topics().iter().flat_map(|t| t.partitions()) {
            let id = partition.id();
            if let Ok(pair) = consumer.fetch_watermarks(topic, id, Duration::from_secs(10)) {
                marks.insert((topic.to_string(), id), pair);
            }
        }
    }
    marks
}

/// The high watermarks of `topics` now, to be given to [`kafka_event_seqs`] after the
/// run. Empty when Kafka cannot be reached (the read then starts at the beginning).
pub fn high_watermarks(brokers: &str, topics: &[&str]) -> Watermarks {
    let Some(consumer) = consumer(brokers) else {
        return Watermarks::new();
    };
    watermarks(&consumer, topics)
        .into_iter()
        .map(|(partition, (_, high))| (partition, high))
        .collect()
}

/// How many times each event number of `run` occurs in `topics` (by the `event_id`
/// header), reading every partition from its offset in `since` (the beginning for a
/// partition not in it) up to its high watermark at the time of the call.
/// Unreachable brokers or missing topics count as empty: the caller reports missing
/// events, which says more than an error here.
pub fn kafka_event_seqs(
    brokers: &str,
    topics: &[&str],
    run: u64,
    since: &Watermarks,
) -> HashMap<u64, u32> {
    let mut found = HashMap::new();
    let Some(consumer) = consumer(brokers) else {
        return found;
    };
    let mut ends = HashMap::new();
    let mut assignment = TopicPartitionList::new();
    for ((topic, id), (low, high)) in watermarks(&consumer, topics) {
        let start = since.get(&(topic.clone(), id)).map_or(low, |&s| s.max(low));
        if high > start {
            let _ = assignment.add_partition_offset(&topic, id, Offset::Offset(start));
            ends.insert((topic, id), high);
        }
    }
    if ends.is_empty() {
        return found;
    }
    if let Err(error) = consumer.assign(&assignment) {
        eprintln!("verify: assign: {error}");
        return found;
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while !ends.is_empty() && Instant::now() < deadline {
        let Some(Ok(message)) = consumer.poll(Duration::from_millis(500)) else {
            continue;
        };
        let key = (message.topic().to_string(), message.partition());
        if let Some(headers) = message.headers() {
            let id = headers
                .iter()
                .find(|h| h.key == "event_id")
                .and_then(|h| h.value)
                .and_then(|v| std::str::from_utf8(v).ok())
                .and_then(|v| Uuid::parse_str(v).ok());
            if let Some(id) = id {
                let (high, low) = id.as_u64_pair();
                if high == run {
                    *found.entry(low).or_insert(0) += 1;
                }
            }
        }
        if ends
            .get(&key)
            .is_some_and(|&end| message.offset() + 1 >= end)
        {
            ends.remove(&key);
        }
    }
    found
}
