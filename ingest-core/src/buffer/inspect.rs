//! Offline inspection and repair of a buffer directory, for operators and tooling.
//!
//! [`inspect`] never modifies anything: it verifies every frame and reports. [`repair`]
//! applies exactly what opening the buffer would (truncate a torn tail, quarantine
//! damage), so no one ever has to delete a buffer by hand.

use std::path::Path;
use std::time::Duration;

use super::error::{BufferError, FrameDamage};
use super::ledger::{self, Ledger};
use super::recovery;
use super::segment;
use super::storage::{StdStorage, Storage};

/// One segment file as found on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentReport {
    /// The file name (`NNNNNNNNNNNNNNNNNNNN.seg`).
    pub file_name: String,
    /// The sequence number of its first record.
    pub first_seq: u64,
    /// Records that verify.
    pub entries: u64,
    /// The file's size, damaged bytes included.
    pub bytes: u64,
}

/// A byte range that fails verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DamagedRange {
    /// The segment file it is in.
    pub segment: String,
    /// Offset of the first bad frame.
    pub offset: u64,
    /// Bytes from there to the end of the file.
    pub len: u64,
    /// What is wrong with the first bad frame.
    pub reason: FrameDamage,
    /// It is an interrupted append at the end of the newest segment, which recovery
    /// truncates instead of quarantining.
    pub torn_tail: bool,
}

/// What a buffer directory holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BufferReport {
    /// Segment files, oldest first.
    pub segments: Vec<SegmentReport>,
    /// Records that verify, across all segments.
    pub entries: u64,
    /// Bytes of all segment files.
    pub bytes: u64,
    /// Verified records at or above the persisted watermark (acknowledgements above the
    /// watermark are not persisted, so this can overcount).
    pub unacked_entries: u64,
    /// The persisted watermark; `None` when the ledger is missing or damaged.
    pub acked_watermark: Option<u64>,
    /// The ledger exists but fails verification.
    pub ledger_damaged: bool,
    /// Time since the oldest segment file was last modified.
    pub oldest_segment_age: Option<Duration>,
    /// Every damaged range.
    pub damaged: Vec<DamagedRange>,
}

impl BufferReport {
    /// Whether every frame and the ledger verify.
    pub fn is_clean(&self) -> bool {
        self.damaged.is_empty() && !self.ledger_damaged
    }
}

/// Verifies every segment and the ledger in `dir` and reports, modifying nothing.
///
/// # Errors
///
/// [`BufferError::Io`] when the directory or a file cannot be read.
pub fn inspect(dir: impl AsRef<Path>) -> Result<BufferReport, BufferError> {
    inspect_with(&StdStorage, dir.as_ref())
}

/// Repairs `dir` as opening the buffer would (torn tails truncated, damage
/// quarantined), then inspects it. Like opening, it takes the directory's lock, so it
/// refuses a buffer that a running process has open.
///
/// # Errors
///
/// [`BufferError::Locked`] when a process has the buffer open (nothing is changed);
/// [`BufferError::Io`] when the directory cannot be read or repaired.
pub fn repair(dir: impl AsRef<Path>) -> Result<BufferReport, BufferError> {
    let dir = dir.as_ref();
    let _lock = super::lock::DirLock::acquire(dir)?;
    recovery::recover(&StdStorage, dir)?;
    inspect_with(&StdStorage, dir)
}

pub(crate) fn inspect_with(storage: &dyn Storage, dir: &Path) -> Result<BufferReport, BufferError> {
    let ledger = ledger::read(storage, dir)?;
    let watermark = match ledger {
        Ledger::Watermark(w) => Some(w),
        Ledger::Missing | Ledger::Damaged => None,
    };
    let scanned = segment::scan_dir(storage, dir)?;
    let oldest_segment_age = match scanned.first() {
        Some(s) => {
            let modified = storage
                .modified(&s.segment.path)
                .map_err(|e| BufferError::io("inspecting", &s.segment.path, e))?;
            // A clock set back makes the file look new; zero is the honest answer.
            Some(ingest_common::clock::age(modified))
        }
        None => None,
    };
    let mut report = BufferReport {
        segments: Vec::with_capacity(scanned.len()),
        entries: 0,
        bytes: 0,
        unacked_entries: 0,
        acked_watermark: watermark,
        ledger_damaged: ledger == Ledger::Damaged,
        oldest_segment_age,
        damaged: Vec::new(),
    };
    for s in scanned {
        let entries = s.segment.offsets.len() as u64;
        report.entries += entries;
        report.bytes += s.file_len;
        report.unacked_entries += s
            .segment
            .end_seq()
            .saturating_sub(s.segment.first_seq.max(watermark.unwrap_or(0)));
        if let Some(damage) = s.damage {
            report.damaged.push(DamagedRange {
                segment: s.name.clone(),
                offset: damage.offset,
                len: s.file_len - damage.offset,
                reason: damage.reason,
                torn_tail: damage.torn,
            });
        }
        report.segments.push(SegmentReport {
            file_name: s.name,
            first_seq: s.segment.first_seq,
            entries,
            bytes: s.file_len,
        });
    }
    Ok(report)
}
