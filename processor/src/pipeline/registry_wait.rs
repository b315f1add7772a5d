//! Partitions waiting for the schema registry.
//!
//! An Avro record's writer schema comes from the registry. When the registry cannot be
//! reached (no answer, a timeout, 5xx, 429), the record is not at fault and must not be
//! dead-lettered: its partition waits instead. What was read from the partition since
//! its last checkpoint is dropped, the partition is paused, and after a backoff (the
//! checkpoint backoff, doubling per failed attempt) it is resumed and read again from
//! its committed position. Nothing of it is committed meanwhile, so nothing is skipped;
//! the other partitions go on. An answer that will not change (an unknown id, another
//! 4xx) still dead-letters the record, as does an Avro record with no registry
//! configured.

use std::time::Instant;

use ingest_core::avro::RegistryError;
use rdkafka::consumer::Consumer;
use rdkafka::TopicPartitionList;

use super::Pipeline;
use crate::aggregate::TopicPartition;

/// A partition paused for the registry.
#[derive(Debug, Clone, Copy)]
pub(super) struct Waiting {
    /// When it is resumed and read again.
    until: Instant,
}

impl Pipeline {
    /// Whether `tp`'s records are being ignored until the registry answers.
    pub(super) fn is_waiting_for_registry(&self, tp: &TopicPartition) -> bool {
        !self.registry_waits.is_empty() && self.registry_waits.contains_key(tp)
    }

    /// Pauses `tp`, whose record could not get its schema because of `error`, and
    /// drops what was read from it since its last checkpoint.
    pub(super) fn wait_for_registry(&mut self, tp: TopicPartition, error: &RegistryError) {
        let attempts = self.registry_attempts.entry(tp.clone()).or_insert(0);
        *attempts += 1;
        let attempts = *attempts;
        let delay = self.settings.checkpoint_backoff.jittered(attempts);
        self.drop_uncommitted(&tp);
        if let Err(e) = self.consumer.pause(&partition_list(&tp)) {
            // Its records are ignored all the same (see `handle`), only fetched.
            tracing::warn!(error = %e, topic = %tp.topic, partition = tp.partition,
                "cannot pause a partition waiting for the schema registry");
        }
        if attempts == 1 {
            tracing::warn!(%error, topic = %tp.topic, partition = tp.partition,
                retry_in_ms = delay.as_millis() as u64,
                "the schema registry cannot be reached: the partition waits for it (nothing is dead-lettered or committed past it)");
        } else {
            tracing::debug!(%error, topic = %tp.topic, partition = tp.partition, attempts,
                retry_in_ms = delay.as_millis() as u64, "the schema registry still cannot be reached");
        }
        metrics::counter!("processor_schema_registry_waits_total").increment(1);
        self.registry_waits.insert(
            tp,
            Waiting {
                until: Instant::now() + delay,
            },
        );
        self.report_registry_waits();
    }

    /// A record of `tp` got its schema: the registry answers again.
    pub(super) fn registry_answered(&mut self, tp: &TopicPartition) {
        if self.registry_attempts.is_empty() {
            return;
        }
        if let Some(attempts) = self.registry_attempts.remove(tp) {
            tracing::info!(topic = %tp.topic, partition = tp.partition, attempts,
                "the schema registry answers again: the partition goes on");
        }
    }

    /// Resumes the partitions whose wait is over; each is sought back to its committed
    /// position by the next re-seek of stale partitions.
    pub(super) fn resume_registry_waits(&mut self) {
        if self.registry_waits.is_empty() {
            return;
        }
        let now = Instant::now();
        let due: Vec<TopicPartition> = self
            .registry_waits
            .iter()
            .filter(|(_, w)| w.until <= now)
            .map(|(tp, _)| tp.clone())
            .collect();
        for tp in due {
            self.registry_waits.remove(&tp);
            if let Err(e) = self.consumer.resume(&partition_list(&tp)) {
                tracing::warn!(error = %e, topic = %tp.topic, partition = tp.partition,
                    "cannot resume a partition that waited for the schema registry");
            }
            self.stale.insert(tp);
        }
        self.report_registry_waits();
    }

    /// Forgets the waits of partitions no longer assigned.
    pub(super) fn forget_registry_waits(&mut self, tp: &TopicPartition) {
        self.registry_waits.remove(tp);
        self.registry_attempts.remove(tp);
    }

    /// Sets `processor_partitions_waiting_for_registry`.
    pub(super) fn report_registry_waits(&self) {
        metrics::gauge!("processor_partitions_waiting_for_registry")
            .set(self.registry_waits.len() as f64);
    }
}

fn partition_list(tp: &TopicPartition) -> TopicPartitionList {
    let mut list = TopicPartitionList::new();
    list.add_partition(&tp.topic, tp.partition);
    list
}
