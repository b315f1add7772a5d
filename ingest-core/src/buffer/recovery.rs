//! Recovery: bring a buffer directory to a state where every retained frame verifies.
//!
//! A torn tail of the newest segment is truncated (an interrupted append that was never
//! acknowledged to its caller as durable). Any other damage is quarantined: the bytes
//! from the first bad frame to the end of that segment are copied to `quarantine/`
//! together with a report, the segment is truncated before them, and an error is
//! logged. Later segments are kept; the lost sequence numbers become a gap.

use std::path::{Path, PathBuf};

use super::error::{BufferError, FrameDamage};
use super::ledger::{self, Ledger, LEDGER_TMP_FILE};
use super::segment::{self, ScannedSegment, Segment};
use super::storage::Storage;

/// Sub-directory of the buffer that receives quarantined bytes.
pub const QUARANTINE_DIR: &str = "quarantine";

/// A damaged byte range moved out of the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuarantinedRange {
    /// The segment file the bytes came from.
    pub segment: String,
    /// Offset of the first damaged frame in that segment.
    pub offset: u64,
    /// Bytes quarantined (to the end of the segment).
    pub len: u64,
    /// What was wrong with the first damaged frame.
    pub reason: FrameDamage,
    /// Where the copy of the bytes was written (a `.txt` report sits beside it).
    pub copy: PathBuf,
}

/// What opening (or repairing) a buffer found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Records retained and not yet acknowledged.
    pub entries: u64,
    /// Bytes of the retained segments.
    pub bytes: u64,
    /// Every record below this sequence number is acknowledged.
    pub acked_watermark: u64,
    /// The next sequence number to be assigned.
    pub next_seq: u64,
    /// Segments retained.
    pub segments: usize,
    /// Bytes of an interrupted append cut from the end of the newest segment.
    pub torn_bytes_truncated: u64,
    /// Damaged ranges moved to the quarantine directory.
    pub quarantined: Vec<QuarantinedRange>,
    /// The ledger failed verification; the watermark was reset to the oldest retained
    /// record, so already delivered records may be delivered again.
    pub ledger_damaged: bool,
}

/// The verified state of a buffer directory after recovery.
#[derive(Debug)]
pub(crate) struct Recovered {
    pub(crate) segments: Vec<Segment>,
    /// The persisted watermark (0 when none); may point into a gap or below the oldest
    /// segment, which the log's state normalises.
    pub(crate) watermark: u64,
    pub(crate) next_seq: u64,
    pub(crate) report: RecoveryReport,
}

fn truncate(storage: &dyn Storage, path: &Path, len: u64) -> Result<(), BufferError> {
    let file = storage
        .open_append(path)
        .map_err(|e| BufferError::io("opening", path, e))?;
    file.set_len(len)
        .and_then(|()| file.sync_data())
        .map_err(|e| BufferError::io("truncating", path, e))
}

/// Copies the damaged tail of a segment to the quarantine directory, durably, before
/// the caller truncates it: evidence is never destroyed before it is safe elsewhere.
fn quarantine(
    storage: &dyn Storage,
    dir: &Path,
    scanned: &ScannedSegment,
    offset: u64,
    reason: &FrameDamage,
) -> Result<QuarantinedRange, BufferError> {
    let qdir = dir.join(QUARANTINE_DIR);
    storage
        .create_dir_all(&qdir)
        .map_err(|e| BufferError::io("creating", &qdir, e))?;
    let path = &scanned.segment.path;
    let whole = storage
        .read(path)
        .map_err(|e| BufferError::io("reading", path, e))?;
    // Segments are read whole during the scan too, so this is no new memory bound.
    let bytes = usize::try_from(offset)
        .ok()
        .and_then(|offset| whole.get(offset..))
        .unwrap_or_default();
    let len = bytes.len() as u64;
    // A crash between copy and truncation leaves a copy behind; a counter keeps the
    // next attempt from overwriting it.
    let mut attempt = 0u32;
    let base = loop {
        let base = format!("{}.{offset}.{attempt}", scanned.name);
        let exists = storage
            .exists(&qdir.join(format!("{base}.bin")))
            .map_err(|e| BufferError::io("checking", &qdir, e))?;
        if !exists {
            break base;
        }
        attempt += 1;
    };
    let copy = qdir.join(format!("{base}.bin"));
    let report = format!(
        "segment: {}\noffset: {offset}\nlength: {len}\nreason: {reason}\n",
        scanned.name
    );
    for (path, content) in [
        (&copy, bytes),
        (&qdir.join(format!("{base}.txt")), report.as_bytes()),
    ] {
        let file = storage
            .open_append(path)
            .map_err(|e| BufferError::io("creating", path, e))?;
        file.set_len(0)
            .and_then(|()| file.write_all(content))
            .and_then(|()| file.sync_data())
            .map_err(|e| BufferError::io("writing", path, e))?;
    }
    storage
        .sync_dir(&qdir)
        .and_then(|()| storage.sync_dir(dir))
        .map_err(|e| BufferError::io("syncing", &qdir, e))?;
    Ok(QuarantinedRange {
        segment: scanned.name.clone(),
        offset,
        len,
        reason: reason.clone(),
        copy,
    })
}

/// Verifies every segment in `dir` (creating it if needed), truncates torn tails,
/// quarantines damage and removes segments left empty.
pub(crate) fn recover(storage: &dyn Storage, dir: &Path) -> Result<Recovered, BufferError> {
    storage
        .create_dir_all(dir)
        .map_err(|e| BufferError::io("creating", dir, e))?;
    let tmp = dir.join(LEDGER_TMP_FILE);
    if storage
        .exists(&tmp)
        .map_err(|e| BufferError::io("checking", &tmp, e))?
    {
        storage
            .remove(&tmp)
            .map_err(|e| BufferError::io("removing", &tmp, e))?;
    }

    let mut report = RecoveryReport::default();
    let ledger = ledger::read(storage, dir)?;
    let watermark = match ledger {
        Ledger::Watermark(w) => w,
        Ledger::Missing => 0,
        Ledger::Damaged => {
            tracing::error!(dir = %dir.display(), "disk buffer ledger is damaged; retained records will be delivered again");
            report.ledger_damaged = true;
            0
        }
    };

    let mut segments = Vec::new();
    let mut removed_any = false;
    for scanned in segment::scan_dir(storage, dir)? {
        if let Some(damage) = &scanned.damage {
            if damage.torn {
                let cut = scanned.file_len - damage.offset;
                tracing::warn!(
                    segment = %scanned.name,
                    offset = damage.offset,
                    bytes = cut,
                    reason = %damage.reason,
                    "truncating torn write at the end of the disk buffer"
                );
                report.torn_bytes_truncated += cut;
            } else {
                let range = quarantine(storage, dir, &scanned, damage.offset, &damage.reason)?;
                tracing::error!(
                    segment = %range.segment,
                    offset = range.offset,
                    bytes = range.len,
                    reason = %range.reason,
                    copy = %range.copy.display(),
                    "disk buffer damaged: records quarantined and lost from the buffer"
                );
                report.quarantined.push(range);
            }
            truncate(storage, &scanned.segment.path, damage.offset)?;
        }
        if scanned.segment.offsets.is_empty() {
            storage
                .remove(&scanned.segment.path)
                .map_err(|e| BufferError::io("removing", &scanned.segment.path, e))?;
            removed_any = true;
            continue;
        }
        segments.push(scanned.segment);
    }
    if removed_any {
        storage
            .sync_dir(dir)
            .map_err(|e| BufferError::io("syncing", dir, e))?;
    }

    // Sequence numbers are never reused: after every segment was acknowledged and
    // deleted, the ledger's watermark is the only memory of how far the log got.
    let next_seq = segments
        .last()
        .map_or(watermark, |s: &Segment| s.end_seq().max(watermark));
    Ok(Recovered {
        segments,
        watermark,
        next_seq,
        report,
    })
}
