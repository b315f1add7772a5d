//! [`BufferEngine`]: the operations the delivery path needs from a disk buffer, so it
//! can run on either engine ([`LogBuffer`](super::LogBuffer) or `SledBuffer`), and the
//! types every engine shares ([`SyncPolicy`], [`BufferStats`]).

use std::ops::Range;
use std::time::Duration;

use bytes::Bytes;

use super::error::BufferError;

/// When appended records reach stable storage (the same for every engine).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncPolicy {
    /// Every append is durable before it returns; concurrent appends share one sync.
    Always,
    /// Every append is durable at most this many milliseconds after it returns, idle
    /// or not: an append syncs when the interval has passed since the last sync, and
    /// the buffer's background thread syncs at most this long after the first append
    /// left unsynced, so the last records of a burst do not wait for the next append.
    /// A power loss forgets at most the appends of the last interval.
    IntervalMs(u64),
    /// Only explicit syncs ([`BufferEngine::sync`]) and segment rolls sync; the
    /// operating system writes the rest back when it likes.
    Never,
}

impl Default for SyncPolicy {
    /// `IntervalMs(100)`.
    fn default() -> Self {
        SyncPolicy::IntervalMs(100)
    }
}

impl SyncPolicy {
    /// Whether an append made `since_sync` after the last sync must sync now.
    pub(crate) fn is_due(self, since_sync: Duration) -> bool {
        match self {
            SyncPolicy::Always => true,
            SyncPolicy::IntervalMs(ms) => since_sync >= Duration::from_millis(ms),
            SyncPolicy::Never => false,
        }
    }
}

/// A snapshot of the buffer's size and position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BufferStats {
    /// Records retained and not yet acknowledged.
    pub entries: u64,
    /// What the engine's `max_bytes` bounds: for [`LogBuffer`](super::LogBuffer) the
    /// bytes of the retained segments, for `SledBuffer` the payload bytes of the
    /// unacknowledged records.
    pub bytes: u64,
    /// The oldest record not yet acknowledged, if any.
    pub oldest_unacked_seq: Option<u64>,
    /// The sequence number the next append will get.
    pub next_seq: u64,
    /// Segment files retained (always zero for `SledBuffer`).
    pub segments: usize,
}

/// Default bound of every engine: 1 GiB.
pub(crate) const DEFAULT_MAX_BYTES: u64 = 1 << 30;

/// How often, at most, an engine persists its acknowledgement watermark while acks
/// trickle in. A crash forgets at most this much progress: redelivery, never loss.
pub(crate) const ACK_PERSIST_INTERVAL: Duration = Duration::from_millis(100);

/// The check every engine's configuration starts with.
pub(crate) fn check_max_bytes(max_bytes: u64) -> Result<(), BufferError> {
    if max_bytes == 0 {
        return Err(BufferError::InvalidConfig {
            field: "max_bytes",
            reason: "must be greater than zero",
        });
    }
    Ok(())
}

/// A durable, bounded queue of records with consecutive sequence numbers and
/// out-of-order acknowledgement: what the delivery path writes events into before
/// sending them, and reads back after a restart or an outage.
///
/// Every implementation keeps this contract:
///
/// - **Ordering.** Sequence numbers are assigned consecutively, in the order appends
///   take effect; a batch gets one contiguous range. Numbers are never reused, not
///   even after every record is acknowledged and the buffer is reopened (except a
///   number whose record a crash lost before it was durable).
/// - **Durability.** A record is durable once the engine's [`SyncPolicy`] says so, and
///   always after [`BufferEngine::sync`] returns. A crash may forget acknowledgements
///   (the records are then delivered again), never unacknowledged records that were
///   durable: delivery is at least once.
/// - **Bound.** The buffer never holds more than its configured `max_bytes`; an append
///   that does not fit is refused before anything is written, with an error for which
///   [`BufferError::is_full`] is true. That is back-pressure, not failure: retry once
///   acknowledgements have freed space.
/// - **Concurrency.** Every method takes `&self` and may be called from many threads
///   at once.
///
/// [`SyncPolicy`]: super::SyncPolicy
pub trait BufferEngine: Send + Sync {
    /// Appends `payloads` as consecutive records and returns their sequence numbers
    /// (an empty range, at the next number, for no payloads). Returns once the records
    /// are as durable as the engine's sync policy requires. Either every payload is
    /// appended or, on error, none is.
    ///
    /// # Errors
    ///
    /// [`BufferError::Full`] (or another error for which [`BufferError::is_full`] is
    /// true, such as a full disk) when the records do not fit; nothing was written and
    /// no sequence number was used. [`BufferError::RecordTooLarge`] when one payload
    /// exceeds [`MAX_RECORD_BYTES`](super::MAX_RECORD_BYTES). Other errors when the
    /// storage fails.
    fn append(&self, payloads: &[&[u8]]) -> Result<Range<u64>, BufferError>;

    /// Reads up to `max_records` unacknowledged records with sequence numbers from
    /// `from_seq` on, in ascending order, skipping acknowledged ones (and any gap).
    /// Payloads add up to at most `max_bytes`, except that the first record is always
    /// returned (when `max_records > 0`), so one large record cannot stall a reader.
    /// A reader sees records as soon as they are written, possibly before the append
    /// that wrote them has returned.
    ///
    /// # Errors
    ///
    /// When the storage cannot be read or a record fails verification.
    fn read(
        &self,
        from_seq: u64,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Vec<(u64, Bytes)>, BufferError>;

    /// Marks record `seq` as delivered, so it is no longer read and its space can be
    /// reclaimed. Acknowledgements may arrive in any order and more than once; an
    /// acknowledgement is made durable lazily (at the latest by [`BufferEngine::sync`]),
    /// so a crash may deliver the record again.
    ///
    /// # Errors
    ///
    /// [`BufferError::UnknownSequence`] for a sequence number never assigned; other
    /// errors when the storage fails (the acknowledgement may then be retried).
    fn ack(&self, seq: u64) -> Result<(), BufferError>;

    /// Makes every record appended so far, and every acknowledgement, durable.
    ///
    /// # Errors
    ///
    /// When the storage cannot be synced. An engine may refuse further work after a
    /// failed sync ([`BufferError::Poisoned`]) until it is reopened.
    fn sync(&self) -> Result<(), BufferError>;

    /// Makes everything durable, as [`BufferEngine::sync`], and lets go of the files
    /// where the engine can: [`LogBuffer`](super::LogBuffer) stops its background thread
    /// and releases its directory lock, so a new buffer can open the directory while
    /// this value is still referenced (after an ingestor's shutdown, for instance);
    /// later calls fail. The default only syncs.
    ///
    /// # Errors
    ///
    /// As [`BufferEngine::sync`].
    fn close(&self) -> Result<(), BufferError> {
        self.sync()
    }

    /// A snapshot of the buffer's size and position. `entries`, `oldest_unacked_seq`
    /// and `next_seq` mean the same for every engine; `bytes` is what the engine's
    /// `max_bytes` bounds (zero when nothing is retained), and `segments` is
    /// engine-specific (zero for engines without segment files).
    fn stats(&self) -> BufferStats;

    /// Whether the engine's own background thread, if it has one, still runs (or was
    /// stopped by [`BufferEngine::close`]); `false` once it died, from a panic: then
    /// nothing syncs on the interval, writes the ledger or deletes segments any more.
    /// The default (no such thread) is `true`.
    fn background_alive(&self) -> bool {
        true
    }
}
