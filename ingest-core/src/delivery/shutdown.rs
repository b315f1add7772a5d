//! What a shutdown achieved.

use std::time::Duration;

/// What [`Ingestor::shutdown`](crate::Ingestor::shutdown) achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShutdownReport {
    /// Records Kafka had not acknowledged by the deadline; the receipts of those events
    /// resolved with an error. With a disk buffer these are the records kept in it.
    pub undelivered: usize,
    /// Of those, the records kept in the disk buffer: the next start delivers them
    /// (always zero without a disk buffer).
    pub kept_in_buffer: usize,
    /// How long the shutdown took.
    pub elapsed: Duration,
}

impl ShutdownReport {
    /// Records neither delivered nor kept in the disk buffer: lost.
    pub fn lost(&self) -> usize {
        self.undelivered.saturating_sub(self.kept_in_buffer)
    }
}
