//! A partition group: the partitions whose number is the group's index modulo
//! `checkpoint.groups`, in every topic. Records are keyed by user and the event topics
//! have as many partitions each, so a user's events of every kind fall into one group,
//! and groups touch disjoint users' state. Each group has its own committer (its own
//! PostgreSQL connection and state) and its own batch being read, so the checkpoints of
//! two groups run side by side; within a group they stay sequential.

use std::time::Instant;

use super::committer::{Batch, Committer};
use crate::aggregate::TopicPartition;

/// One partition group (see the module documentation).
pub(super) struct Group {
    /// The committer while no checkpoint of this group is in flight.
    pub(super) committer: Option<Box<Committer>>,
    /// The batch being read.
    pub(super) batch: Batch,
    /// Bytes of the records in `batch`.
    pub(super) pending_bytes: usize,
    /// Partitions revoked while a checkpoint was in flight, for the committer to forget.
    pub(super) revoked: Vec<TopicPartition>,
    /// A checkpoint fell due while one was in flight.
    pub(super) due: bool,
    /// Failed checkpoints in a row.
    pub(super) failures: u32,
    /// Failed checkpoints in a row whose error calls for a halt.
    pub(super) halt_failures: u32,
    /// No checkpoint before this (backoff after a failure).
    pub(super) retry_at: Option<Instant>,
}

impl Group {
    pub(super) fn new(committer: Box<Committer>) -> Group {
        Group {
            committer: Some(committer),
            batch: Batch::default(),
            pending_bytes: 0,
            revoked: Vec::new(),
            due: false,
            failures: 0,
            halt_failures: 0,
            retry_at: None,
        }
    }

    /// Whether its checkpoint is in flight.
    pub(super) fn is_busy(&self) -> bool {
        self.committer.is_none()
    }

    /// Records in the batch being read (dead letters included).
    pub(super) fn records(&self) -> usize {
        self.batch.held.len() + self.batch.letters.len()
    }

    /// Drops what the batch being read holds of `tp`.
    pub(super) fn drop_partition(&mut self, tp: &TopicPartition) {
        self.batch.ranges.remove(tp);
        self.batch
            .held
            .retain(|h| h.record.partition() != tp.partition || h.record.topic() != &*tp.topic);
        self.batch
            .letters
            .retain(|l| l.partition != tp.partition || *l.topic != *tp.topic);
        self.pending_bytes = self
            .batch
            .held
            .iter()
            .map(|h| h.size())
            .chain(self.batch.letters.iter().map(|l| l.size()))
            .sum();
    }
}

/// The group of a partition.
pub(super) fn group_of(tp: &TopicPartition, groups: usize) -> usize {
    tp.partition.unsigned_abs() as usize % groups.max(1)
}
