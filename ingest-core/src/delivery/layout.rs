//! The order in which the delivery thread hands a group of records to the producer.
//!
//! librdkafka keeps every record in allocations made in the order records are handed
//! to it (the message with its value and key, then one per header), and writes a
//! partition's batch by walking that partition's records. Handed over in submission
//! order, the records of one batch lie every n-th among those of all partitions, and
//! writing them is a cache miss per header. Handed over grouped by the partition
//! librdkafka will pick, a batch's records are neighbours in memory: in a raw producer
//! loop with keys and five headers over ten partitions, 1.5–1.8× the rate.
//!
//! Sorting never reorders one key's records: they share a partition, so they share a
//! sort key, and the sort is stable. Order across keys was never promised.
//!
//! The partition is predicted from the key as librdkafka's `consistent_random` and
//! `consistent` partitioners choose it (CRC-32 of the key, modulo the partition count),
//! with partition counts read from the cluster's metadata in the background. Where the
//! prediction cannot be made (another partitioner is configured, the counts are not
//! known yet, a record has no key) records are only grouped by topic; a wrong
//! prediction costs speed, never correctness, since librdkafka still partitions.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use ingest_common::Backoff;
use rdkafka::producer::Producer;

use super::record::{Destination, Record};
use super::sender::Sender;
use crate::event::EventKind;

/// How often partition counts are read again (partitions are rarely added).
const REFRESH_EVERY: Duration = Duration::from_secs(60);
/// How soon to read them again while an event topic's count is unknown, doubled after
/// each such refresh up to [`REFRESH_EVERY`], each wait jittered (agents started
/// together do not all ask at once).
const RETRY_UNKNOWN: Duration = Duration::from_secs(2);
/// How long one metadata request may take.
const REFRESH_TIMEOUT: Duration = Duration::from_secs(10);
/// Slot of the dead-letter topic, after the event kinds'.
const DEAD_LETTER_SLOT: usize = EventKind::ALL.len();
/// Slot of the custom-events topic, last.
const CUSTOM_SLOT: usize = DEAD_LETTER_SLOT + 1;

/// Predicts partitions and orders groups of records by them.
pub(crate) struct Layout {
    /// Whether the configured partitioner is one this module can predict.
    predictable: bool,
    /// Partition count per topic slot; 0 while unknown.
    counts: [AtomicU32; CUSTOM_SLOT + 1],
    /// When the counts are next due to be read; `None` until the first read is due.
    /// Moved a full period ahead when a read starts, so reads never overlap (one takes
    /// at most [`REFRESH_TIMEOUT`]), and brought nearer after it by `schedule_retry`.
    next_refresh: Mutex<Option<Instant>>,
    /// Refreshes in a row that left an event topic's count unknown.
    retries: AtomicU32,
}

impl Layout {
    /// `partitioner` is the configured `partitioner` property, if any.
    pub(crate) fn new(partitioner: Option<&str>) -> Self {
        Layout {
            predictable: matches!(partitioner, None | Some("consistent_random" | "consistent")),
            counts: Default::default(),
            next_refresh: Mutex::new(None),
            retries: AtomicU32::new(0),
        }
    }

    /// Sorts `records` by topic, then by predicted partition; stable.
    pub(crate) fn order(&self, records: &mut [Record]) {
        if records.len() > 1 {
            records.sort_by_cached_key(|record| self.sort_key(record));
        }
    }

    fn sort_key(&self, record: &Record) -> (usize, u32) {
        let slot = slot(&record.destination);
        let count = self.counts[slot].load(Ordering::Relaxed);
        let partition = match &record.key {
            Some(key) if self.predictable && count > 0 && !key.is_empty() => {
                partition_of(key, count)
            }
            _ => u32::MAX,
        };
        (slot, partition)
    }

    /// Reads the partition counts again, on a thread of its own, if they are due.
    pub(crate) fn refresh_if_due(self: &Arc<Self>, sender: &Arc<Sender>) {
        if !self.predictable {
            return;
        }
        let now = Instant::now();
        {
            let mut next = self.next_refresh.lock().unwrap_or_else(|e| e.into_inner());
            if next.is_some_and(|at| now < at) {
                return;
            }
            *next = Some(now + REFRESH_EVERY);
        }
        let (layout, sender) = (self.clone(), sender.clone());
        // No thread for it now: the next period tries again.
        let _ = thread::Builder::new()
            .name("ingest-metadata".to_owned())
            .spawn(move || {
                layout.refresh(&sender);
                layout.schedule_retry();
            });
    }

    /// While an event topic's count is unknown (created after the ingestor started,
    /// or Kafka unreachable), looks again soon, backing off.
    fn schedule_retry(&self) {
        let unknown = self.counts[..DEAD_LETTER_SLOT]
            .iter()
            .any(|c| c.load(Ordering::Relaxed) == 0);
        if !unknown {
            self.retries.store(0, Ordering::Relaxed);
            return;
        }
        let retries = self
            .retries
            .fetch_add(1, Ordering::Relaxed)
            .saturating_add(1);
        let delay = Backoff::new(RETRY_UNKNOWN, REFRESH_EVERY).jittered(retries);
        *self.next_refresh.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now() + delay);
    }

    fn refresh(&self, sender: &Sender) {
        let Ok(metadata) = sender
            .producer
            .client()
            .fetch_metadata(None, REFRESH_TIMEOUT)
        else {
            // Kafka unreachable: keep what we knew; the next refresh tries again.
            return;
        };
        for topic in metadata.topics() {
            if topic.error().is_some() {
                continue;
            }
            let count = u32::try_from(topic.partitions().len()).unwrap_or(0);
            let slots = EventKind::ALL
                .iter()
                .map(|kind| (kind.index(), &sender.topics[kind.index()]))
                .chain([
                    (DEAD_LETTER_SLOT, &sender.dead_letter_topic),
                    (CUSTOM_SLOT, &sender.custom_topic),
                ]);
            for (slot, name) in slots {
                if **name == *topic.name() {
                    self.counts[slot].store(count, Ordering::Relaxed);
                }
            }
        }
    }

    #[cfg(test)]
    pub(crate) fn set_count(&self, destination: &Destination, count: u32) {
        self.counts[slot(destination)].store(count, Ordering::Relaxed);
    }
}

fn slot(destination: &Destination) -> usize {
    match destination {
        Destination::Event { kind, .. } => kind.index(),
        Destination::DeadLetter { .. } => DEAD_LETTER_SLOT,
        Destination::Custom { .. } => CUSTOM_SLOT,
    }
}

/// The partition librdkafka's `consistent_random` partitioner gives a non-empty key.
fn partition_of(key: &[u8], count: u32) -> u32 {
    crc32fast::hash(key) % count
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::receipt::Tracker;
    use bytes::Bytes;
    use uuid::Uuid;

    fn view(key: &str, seq: u8) -> Record {
        Record::new(
            Destination::Event {
                kind: EventKind::ProductView,
                event_id: Uuid::nil(),
                version: 1,
            },
            (!key.is_empty()).then(|| Bytes::copy_from_slice(key.as_bytes())),
            Bytes::from(vec![seq]),
            0,
            Arc::from("test"),
            Tracker::new(1, false),
        )
    }

    fn order_of(records: &[Record]) -> Vec<(Option<&[u8]>, u8)> {
        records
            .iter()
            .map(|r| (r.key.as_deref(), r.payload[0]))
            .collect()
    }

    #[test]
    fn unknown_counts_are_read_again_after_a_doubling_jittered_wait() {
        let layout = Layout::new(None);
        // Nominal waits 2, 4, 8, 16, 32 s, then the 60 s cap; each drawn from its
        // upper half.
        for nominal in [2u64, 4, 8, 16, 32, 60, 60] {
            let before = Instant::now();
            layout.schedule_retry();
            let after = Instant::now();
            let due = layout
                .next_refresh
                .lock()
                .expect("not poisoned")
                .expect("scheduled");
            let nominal = Duration::from_secs(nominal);
            assert!(due >= before + nominal / 2, "{nominal:?}");
            assert!(due <= after + nominal, "{nominal:?}");
        }
        for slot in &layout.counts {
            slot.store(3, Ordering::Relaxed);
        }
        layout.schedule_retry();
        assert_eq!(layout.retries.load(Ordering::Relaxed), 0, "known: reset");
    }

    #[test]
    fn partition_of_is_crc32_of_the_key_modulo_the_count() {
        // CRC-32 (IEEE) of "123456789" is 0xCBF43926, the standard check value.
        assert_eq!(partition_of(b"123456789", 1 << 31), 0xCBF4_3926 - (1 << 31));
        assert_eq!(partition_of(b"123456789", 10), 0xCBF4_3926 % 10);
    }

    #[test]
    fn groups_by_partition_and_keeps_each_keys_order() {
        let layout = Layout::new(None);
        let keys = ["user-1", "user-2", "user-3", "user-4", "user-5", "user-6"];
        let mut records: Vec<Record> = (0..60u8)
            .map(|seq| view(keys[usize::from(seq) % keys.len()], seq))
            .collect();
        layout.set_count(&records[0].destination, 4);
        layout.order(&mut records);

        let partitions: Vec<u32> = records
            .iter()
            .map(|r| {
                r.key
                    .as_deref()
                    .map_or(u32::MAX, |key| partition_of(key, 4))
            })
            .collect();
        assert!(
            partitions.windows(2).all(|w| w[0] <= w[1]),
            "not grouped by partition: {partitions:?}"
        );
        for key in keys {
            let seqs: Vec<u8> = order_of(&records)
                .into_iter()
                .filter(|(k, _)| *k == Some(key.as_bytes()))
                .map(|(_, seq)| seq)
                .collect();
            assert_eq!(seqs.len(), 10);
            assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{key}: {seqs:?}");
        }
    }

    #[test]
    fn without_counts_or_with_another_partitioner_the_order_is_kept() {
        let keys = ["b", "a", "c", "a", "b"];
        for layout in [Layout::new(None), Layout::new(Some("murmur2_random"))] {
            let mut records: Vec<Record> = keys
                .iter()
                .zip(0u8..)
                .map(|(key, seq)| view(key, seq))
                .collect();
            if !layout.predictable {
                // Counts known, but the partitioner is not one to predict.
                layout.set_count(&records[0].destination, 4);
            }
            layout.order(&mut records);
            let seqs: Vec<u8> = order_of(&records).into_iter().map(|(_, s)| s).collect();
            assert_eq!(seqs, [0, 1, 2, 3, 4]);
        }
    }

    #[test]
    fn dead_letters_follow_events_and_keyless_records_go_last() {
        let layout = Layout::new(None);
        let mut records = vec![
            Record::new(
                Destination::DeadLetter {
                    error: Box::new(crate::error::ValidationError::new(
                        crate::error::ErrorCode::InvalidJson,
                        "x",
                    )),
                    truncated: false,
                },
                None,
                Bytes::from(vec![0]),
                0,
                Arc::from("test"),
                Tracker::new(1, false),
            ),
            view("", 1),
            view("user-1", 2),
        ];
        layout.set_count(&records[2].destination, 3);
        layout.order(&mut records);
        let seqs: Vec<u8> = order_of(&records).into_iter().map(|(_, s)| s).collect();
        assert_eq!(seqs, [2, 1, 0]);
    }
}
