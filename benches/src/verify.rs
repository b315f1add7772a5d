//! Reading back what reached Kafka: every record of some topics, from the beginning to
//! the end they had when the read started, picked by the run encoded in `event_id`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use uuid::Uuid;

/// How many times each event number of `run` occurs in `topics` (by the `event_id`
/// header), reading every partition up to its high watermark at the time of the call.
/// Unreachable brokers or missing topics count as empty: the caller reports missing
/// events, which says more than an error here.
pub fn kafka_event_seqs(brokers: &str, topics: &[&str], run: u64) -> HashMap<u64, u32> {
    let mut found = HashMap::new();
    let consumer: BaseConsumer = match ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "ingest-benches-verify")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create()
    {
        Ok(consumer) => consumer,
        Err(error) => {
            eprintln!("verify: consumer: {error}");
            return found;
        }
    };
    let mut ends = HashMap::new();
    let mut assignment = TopicPartitionList::new();
    for topic in topics {
        let Ok(metadata) = consumer.fetch_metadata(Some(topic), Duration::from_secs(10)) else {
            eprintln!("verify: no metadata for {topic}");
            continue;
        };
        for partition in metadata.topics().iter().flat_map(|t| t.partitions()) {
            let id = partition.id();
            if let Ok((low, high)) = consumer.fetch_watermarks(topic, id, Duration::from_secs(10)) {
                if high > low {
                    ends.insert((topic.to_string(), id), high);
                    let _ = assignment.add_partition_offset(topic, id, Offset::Offset(low));
                }
            }
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
