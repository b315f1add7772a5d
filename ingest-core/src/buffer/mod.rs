//! Disk buffer: holds events on local disk until they are delivered, so a Kafka outage
//! or a restart does not lose them.
//!
//! # Engines
//!
//! Two engines implement one trait, [`BufferEngine`], which states the contract the
//! delivery path relies on (ordering, durability, the `max_bytes` bound) and which a
//! shared conformance suite checks for both:
//!
//! - [`LogBuffer`], the default: a segmented, append-only log written by this module,
//!   described below. Group commit, recovery with quarantine, offline inspection.
//! - `SledBuffer`, on the `sled` embedded database, built only with the cargo feature
//!   `sled-buffer`: one entry per record, deleted on acknowledgement (its
//!   documentation describes the layout). Space is bounded by unacknowledged payload
//!   bytes rather than whole segments; it has no inspection or quarantine of its own.
//!
//! The rest of this documentation describes [`LogBuffer`].
//!
//! # On-disk format
//!
//! ```text
//! <dir>/
//!   00000000000000000000.seg   segment files, named by their first sequence number
//!   00000000000000004096.seg   (20 zero-padded digits, so names sort in log order)
//!   ledger                     the acknowledged watermark
//!   lock                       held (flock) by the process that has the buffer open
//!   quarantine/                damaged byte ranges moved out of the log, with reports
//! ```
//!
//! The lock file holds `pid=<pid> host=<host>` of the process holding it; its lock,
//! not its content, is what keeps a second process out (see [`BufferError::Locked`]).
//!
//! A segment is a sequence of frames, all integers little-endian:
//!
//! ```text
//! u32 payload length | u32 CRC32C(seq bytes ++ payload) | u64 sequence number | payload
//! ```
//!
//! A payload is at most [`MAX_RECORD_BYTES`]; a larger length field is damage. The
//! ledger is `u64 watermark | u32 CRC32C(watermark bytes)`, replaced atomically by
//! writing `ledger.tmp`, syncing it, renaming it over `ledger` and syncing the directory.
//!
//! # Invariants
//!
//! - Sequence numbers are consecutive within a segment, and each segment starts where
//!   the previous one ended, except across a gap left by quarantined records.
//! - Sequence numbers are never reused, even after every segment is deleted: the
//!   ledger's watermark then carries the position across restarts. The one exception
//!   is a record that was never durable: a number handed out by an append whose bytes
//!   a crash then lost (torn or never synced) is handed out again after recovery.
//! - A segment is deleted only when every record in it is acknowledged, and only after
//!   a watermark covering it has been persisted.
//! - A record is durable once the [`SyncPolicy`] says so: before `append` returns with
//!   [`SyncPolicy::Always`] (concurrent appenders share one `fdatasync`, a group
//!   commit), at most one interval after `append` returns with
//!   [`SyncPolicy::IntervalMs`] (idle or not: the buffer's background thread syncs
//!   what no later append did), and only on
//!   [`LogBuffer::sync`] with [`SyncPolicy::Never`]. A closed segment is always synced
//!   when the next one is created, so only the newest segment is ever unsynced.
//! - The retained segments hold at most `max_bytes`; an append that does not fit is
//!   refused before anything is written ([`BufferError::is_full`]). A failed write is
//!   cut back off the file, so the log never contains a partial batch it reported as
//!   failed. A failed `fdatasync` poisons the buffer until it is reopened, because
//!   after one the kernel may have dropped the unwritten pages.
//! - Readers see every record written, synced or not; with [`SyncPolicy::Always`] a
//!   record can therefore be read (and delivered) shortly before its append returns.
//! - Acknowledgements may arrive out of order: the buffer keeps a watermark (every
//!   record below it acknowledged) and the set of acknowledged records above it, which
//!   is bounded by the number of retained records. Only the watermark is persisted
//!   (at most 100 ms after it moved, before a segment is deleted, on `sync` and on
//!   drop), so a crash causes redelivery, never loss: delivery is at least once.
//!
//! # Threads and locks
//!
//! One mutex guards the in-memory state (segment index, watermark, acknowledged set).
//! It is held for appends' `write`s (to the page cache) and for bookkeeping, never for
//! an `fdatasync` or a read: `ack` only updates memory, `read` plans under the lock
//! and reads the files without it (a segment deleted meanwhile held only acknowledged
//! records, so the read is planned again). A background thread per open buffer,
//! `ingest-buffer`, does the slow work: the interval policy's sync, the ledger write
//! (write, `fdatasync`, rename, directory sync) and segment deletion, serialised by a
//! second lock so that ledger writes stay in order. Acknowledgements wake it once per
//! round; [`LogBuffer::sync`] does the same work at once.
//!
//! # Recovery
//!
//! [`LogBuffer::open`] reads every segment and verifies every frame (length, checksum,
//! sequence number). Reads verify the checksums of records appended since then; the
//! records recovered at open are not verified again, so each record is verified once.
//!
//! - A short or failing frame at the tail of the **last** segment (or a run of zeros
//!   where the file was extended but never written) is a torn write: the append never
//!   completed, so it is truncated away with a warning.
//! - Damage anywhere else is quarantined: the bytes from the bad frame to the end of
//!   that segment are copied (durably) to `quarantine/` with a `.txt` report, the
//!   segment is truncated before them, and an error is logged. The other segments are
//!   kept, and the lost records become a gap the watermark skips.
//!
//! The [`RecoveryReport`] lists what was found. [`inspect`] reports the same without
//! touching anything; [`repair`] does what opening would.

mod commit;
#[cfg(test)]
mod conformance;
mod engine;
mod error;
mod inspect;
mod ledger;
mod lock;
mod log;
mod record;
mod recovery;
mod segment;
#[cfg(feature = "sled-buffer")]
mod sled;
mod storage;

#[cfg(test)]
mod tests;

#[cfg(feature = "sled-buffer")]
pub use self::sled::{SledBuffer, SledConfig};
pub use engine::{BufferEngine, BufferStats, SyncPolicy};
pub use error::{BufferError, FrameDamage};
pub use inspect::{inspect, repair, BufferReport, DamagedRange, SegmentReport};
pub use lock::LOCK_FILE;
pub use log::{LogBuffer, LogConfig};
pub use record::MAX_RECORD_BYTES;
pub use recovery::{QuarantinedRange, RecoveryReport, QUARANTINE_DIR};
pub use storage::{FileHandle, StdStorage, Storage, StorageFile};
