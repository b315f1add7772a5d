//! [`Stats`]: the ingestor's running totals, read on demand.
//!
//! The same counts go to the `metrics` facade (see the `telemetry` table); a snapshot
//! serves hosts that install no metrics recorder, such as programs that embed the
//! library through a language binding and report in their own way.

use std::sync::atomic::Ordering;

use crate::health::BufferHealth;
use crate::telemetry::Counts;

/// A snapshot of an ingestor's totals since it was built, from
/// [`Ingestor::stats`](crate::Ingestor::stats). Counters only grow; the queue and
/// buffer fields are current levels.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Stats {
    /// Events validated and queued (`ingest_events_accepted_total`).
    pub accepted: u64,
    /// Events that failed validation (`ingest_events_rejected_total`).
    pub rejected: u64,
    /// Records acknowledged by Kafka, dead letters included
    /// (`ingest_events_delivered_total`).
    pub delivered: u64,
    /// Records Kafka did not take (`ingest_events_failed_total`).
    pub failed: u64,
    /// Dead-letter records not queued (`ingest_dead_letters_dropped_total`).
    pub dead_letters_dropped: u64,
    /// Events waiting in the in-memory queue.
    pub queue_events: usize,
    /// Bytes waiting in the in-memory queue.
    pub queue_bytes: usize,
    /// The disk buffer's fill level, if one is configured.
    pub buffer: Option<BufferHealth>,
}

impl Stats {
    /// The counters of `counts` with the given current levels.
    pub(crate) fn read(
        counts: &Counts,
        queue: (usize, usize),
        buffer: Option<BufferHealth>,
    ) -> Stats {
        Stats {
            accepted: counts.accepted.load(Ordering::Relaxed),
            rejected: counts.rejected.load(Ordering::Relaxed),
            delivered: counts.delivered.load(Ordering::Relaxed),
            failed: counts.failed.load(Ordering::Relaxed),
            dead_letters_dropped: counts.dead_letters_dropped.load(Ordering::Relaxed),
            queue_events: queue.0,
            queue_bytes: queue.1,
            buffer,
        }
    }
}
