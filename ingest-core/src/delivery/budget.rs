//! Admission to the in-memory queue: [`QueueBudget`], lock-free.
//!
//! Its atomics come from [`super::sync`], so that the loom model checker (crate
//! `ingest-loom`) runs this file against its own.

use super::sync::{AtomicUsize, Ordering};

/// Admission control for the in-memory queue: bounds events and bytes together, and
/// reserves a whole batch at once so a batch is queued entirely or not at all.
pub(crate) struct QueueBudget {
    events: AtomicUsize,
    bytes: AtomicUsize,
    max_events: usize,
    max_bytes: usize,
}

/// A reservation that did not fit: what was queued when it was tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Full {
    pub(crate) queued_events: usize,
    pub(crate) queued_bytes: usize,
}

impl QueueBudget {
    pub(crate) fn new(max_events: usize, max_bytes: usize) -> Self {
        QueueBudget {
            events: AtomicUsize::new(0),
            bytes: AtomicUsize::new(0),
            max_events,
            max_bytes,
        }
    }

    /// Reserves room for `events` events of `bytes` bytes; on success, returns how many
    /// events are queued now, these included.
    pub(crate) fn try_reserve(&self, events: usize, bytes: usize) -> Result<usize, Full> {
        let queued_events = self.events.fetch_add(events, Ordering::AcqRel);
        let queued_bytes = self.bytes.fetch_add(bytes, Ordering::AcqRel);
        if queued_events + events > self.max_events || queued_bytes + bytes > self.max_bytes {
            self.release(events, bytes);
            return Err(Full {
                queued_events,
                queued_bytes,
            });
        }
        Ok(queued_events + events)
    }

    /// Events and bytes queued now.
    pub(crate) fn queued(&self) -> (usize, usize) {
        (
            self.events.load(Ordering::Relaxed),
            self.bytes.load(Ordering::Relaxed),
        )
    }

    pub(crate) fn release(&self, events: usize, bytes: usize) {
        self.events.fetch_sub(events, Ordering::AcqRel);
        self.bytes.fetch_sub(bytes, Ordering::AcqRel);
    }
}
