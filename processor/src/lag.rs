//! The consumer's lag per partition: `processor_partition_lag{topic, partition}`, the
//! records a partition holds past the offset last committed for it, read or not.
//!
//! It comes from librdkafka's statistics (every `kafka.lag_interval_ms`): the partition's
//! last stable offset (what a `read_committed` consumer can read) minus the offset the
//! group last committed for it. The processor commits each checkpoint's offsets to
//! Kafka as a hint after PostgreSQL (where its positions live), so this is the lag of
//! the committed results. A partition never committed counts from its first offset.
//! Only the partitions assigned to this instance are reported; one that leaves is set
//! to 0, so a sum over instances stays right after a rebalance.
//!
//! The search indexer's consumer group reports its own lag the same way, as
//! `processor_search_lag_documents{topic, partition}` ([`crate::search`]).

use std::collections::HashSet;
use std::sync::Mutex;

use rdkafka::statistics::Statistics;
use rdkafka::TopicPartitionList;

/// The partitions assigned to this instance, and the gauges reported for them.
#[derive(Debug)]
pub struct LagGauges {
    metric: &'static str,
    assigned: Mutex<HashSet<(String, i32)>>,
}

impl LagGauges {
    /// Gauges named `metric`, labelled `topic` and `partition`.
    pub fn new(metric: &'static str) -> LagGauges {
        LagGauges {
            metric,
            assigned: Mutex::new(HashSet::new()),
        }
    }

    /// Partitions were assigned (cooperative rebalancing: in addition to the others).
    pub fn assigned(&self, list: &TopicPartitionList) {
        let mut assigned = lock(&self.assigned);
        for element in list.elements() {
            assigned.insert((element.topic().to_owned(), element.partition()));
        }
    }

    /// Partitions were revoked: their gauges go to 0.
    pub fn revoked(&self, list: &TopicPartitionList) {
        let mut assigned = lock(&self.assigned);
        for element in list.elements() {
            let key = (element.topic().to_owned(), element.partition());
            if assigned.remove(&key) {
                self.gauge(&key.0, key.1).set(0.0);
            }
        }
    }

    /// Sets the gauges of the assigned partitions from a statistics report.
    pub fn report(&self, statistics: &Statistics) {
        let assigned = lock(&self.assigned);
        for (name, topic) in &statistics.topics {
            for (id, partition) in &topic.partitions {
                if !assigned.contains(&(name.clone(), *id)) {
                    continue;
                }
                // The last stable offset; the high watermark where there is none.
                let end = if partition.ls_offset >= 0 {
                    partition.ls_offset
                } else {
                    partition.hi_offset
                };
                let from = if partition.committed_offset >= 0 {
                    partition.committed_offset
                } else {
                    partition.lo_offset
                };
                if end < 0 || from < 0 {
                    // Not known yet (the partition's offsets are being fetched).
                    continue;
                }
                self.gauge(name, *id).set((end - from).max(0) as f64);
            }
        }
    }

    fn gauge(&self, topic: &str, partition: i32) -> metrics::Gauge {
        metrics::gauge!(self.metric, "topic" => topic.to_owned(),
            "partition" => partition.to_string())
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
