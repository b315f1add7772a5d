//! The counters of one submission's progress ([`Progress`]), lock-free: the part of a
//! receipt's tracker that many threads update at once.
//!
//! Its atomics come from [`super::sync`], so that the loom model checker (crate
//! `ingest-loom`) runs this file against its own.

use super::sync::{AtomicUsize, OnceLock, Ordering};

/// Which acknowledgement level a question is about: the disk buffer (`Persisted` with
/// a disk buffer) or the end of the road (delivered or failed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stage {
    Persisted,
    Settled,
}

/// How many of a submission's events are still on their way, to the disk buffer and to
/// their final state, and how many failed.
///
/// Every event ends in exactly one of two ways: handed on and later
/// [`complete`](Self::complete)d, or [`abandon`](Self::abandon)ed before it left the
/// queue. A method that brings a count to zero says so, once, so that its caller wakes
/// the waiters; a waiter that sees a count at zero also sees every failure counted
/// before it got there.
pub(crate) struct Progress {
    total: usize,
    /// Events not yet in their final state (delivered or failed).
    pending: AtomicUsize,
    /// Events not yet written to the disk buffer nor failed (disk buffer only).
    unpersisted: AtomicUsize,
    failed: AtomicUsize,
    /// Events that failed before they were persisted.
    failed_unpersisted: AtomicUsize,
    first_failure: OnceLock<(String, bool)>,
}

/// Which counts a call brought to zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Reached {
    pub(crate) persisted: bool,
    pub(crate) settled: bool,
}

impl Progress {
    pub(crate) fn new(total: usize) -> Self {
        Progress {
            total,
            pending: AtomicUsize::new(total),
            unpersisted: AtomicUsize::new(total),
            failed: AtomicUsize::new(0),
            failed_unpersisted: AtomicUsize::new(0),
            first_failure: OnceLock::new(),
        }
    }

    pub(crate) fn total(&self) -> usize {
        self.total
    }

    /// Events not yet in their final state.
    pub(crate) fn pending(&self) -> usize {
        self.pending.load(Ordering::Relaxed)
    }

    /// `n` events were written to the disk buffer: `true` if that was the last of them.
    pub(crate) fn persisted(&self, n: usize) -> bool {
        self.unpersisted.fetch_sub(n, Ordering::AcqRel) == n
    }

    /// One event that left the queue reached its final state: `true` if it was the
    /// last.
    pub(crate) fn complete(&self, failure: Option<(String, bool)>) -> bool {
        if let Some(failure) = failure {
            self.record_failure(failure);
        }
        self.settle_one()
    }

    /// One event failed before it left the queue (never persisted, never sent).
    pub(crate) fn abandon(&self, reason: String, retryable: bool) -> Reached {
        // Counted before the counters move, so a woken waiter sees the failure.
        self.record_failure((reason, retryable));
        self.failed_unpersisted.fetch_add(1, Ordering::Relaxed);
        Reached {
            persisted: self.persisted(1),
            settled: self.settle_one(),
        }
    }

    fn record_failure(&self, failure: (String, bool)) {
        let _ = self.first_failure.set(failure);
        self.failed.fetch_add(1, Ordering::Relaxed);
    }

    fn settle_one(&self) -> bool {
        // AcqRel: a waiter that sees 0 also sees the failure recorded before.
        self.pending.fetch_sub(1, Ordering::AcqRel) == 1
    }

    /// Whether every event has passed `stage`.
    pub(crate) fn is_done(&self, stage: Stage) -> bool {
        let counter = match stage {
            Stage::Persisted => &self.unpersisted,
            Stage::Settled => &self.pending,
        };
        counter.load(Ordering::Acquire) == 0
    }

    /// The events that failed before `stage` (read after [`is_done`](Self::is_done)).
    pub(crate) fn failed(&self, stage: Stage) -> usize {
        match stage {
            Stage::Persisted => self.failed_unpersisted.load(Ordering::Relaxed),
            Stage::Settled => self.failed.load(Ordering::Relaxed),
        }
    }

    /// The first failure's reason and whether it was retryable.
    pub(crate) fn first_failure(&self) -> Option<&(String, bool)> {
        self.first_failure.get()
    }
}
