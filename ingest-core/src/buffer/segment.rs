//! Segment files: naming, the in-memory index of one segment, and verification of a
//! segment's frames (shared by recovery, which acts on damage, and inspection, which
//! only reports it).

use std::path::{Path, PathBuf};

use super::error::{BufferError, FrameDamage};
use super::record;
use super::storage::Storage;

const SEGMENT_SUFFIX: &str = ".seg";
const NAME_DIGITS: usize = 20;

/// The file name of the segment whose first record is `first_seq`.
pub(crate) fn segment_name(first_seq: u64) -> String {
    format!("{first_seq:020}{SEGMENT_SUFFIX}")
}

/// The first sequence number encoded in a segment file name, if it is one.
pub(crate) fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != NAME_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// One segment of the live log: which records it holds and where they start.
///
/// The offset index costs 8 bytes per retained record; it is bounded because the
/// number of retained records is bounded by `max_bytes / 16`.
#[derive(Debug)]
pub(crate) struct Segment {
    pub(crate) first_seq: u64,
    /// Byte offset of each frame; record `first_seq + i` starts at `offsets[i]`.
    pub(crate) offsets: Vec<u64>,
    /// Valid bytes in the file (every frame complete and verified or written by us).
    pub(crate) len: u64,
    pub(crate) path: PathBuf,
}

impl Segment {
    /// One past the last sequence number in the segment.
    pub(crate) fn end_seq(&self) -> u64 {
        self.first_seq + self.offsets.len() as u64
    }

    /// Byte offset where the frame of index `i` ends.
    pub(crate) fn frame_end(&self, i: usize) -> u64 {
        self.offsets.get(i + 1).copied().unwrap_or(self.len)
    }
}

/// The first damaged frame of a segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Damage {
    pub(crate) offset: u64,
    pub(crate) reason: FrameDamage,
    /// The damage is an interrupted append at the end of the newest segment, which
    /// recovery truncates silently instead of quarantining.
    pub(crate) torn: bool,
}

/// A verified segment file.
#[derive(Debug)]
pub(crate) struct ScannedSegment {
    pub(crate) name: String,
    pub(crate) segment: Segment,
    /// The file's length on disk (`segment.len` plus any damaged tail).
    pub(crate) file_len: u64,
    pub(crate) damage: Option<Damage>,
}

/// Verifies every frame of one segment's bytes: lengths, checksums and consecutive
/// sequence numbers starting at `first_seq`. Stops at the first damaged frame.
fn scan(bytes: &[u8], first_seq: u64, is_last: bool) -> (Vec<u64>, Option<Damage>) {
    let mut offsets = Vec::new();
    let mut offset = 0;
    while offset < bytes.len() {
        let expected = first_seq + offsets.len() as u64;
        let reason = match record::decode(&bytes[offset..]) {
            Ok(frame) if frame.seq == expected => {
                offsets.push(offset as u64);
                offset += frame.encoded_len();
                continue;
            }
            Ok(frame) => FrameDamage::Sequence {
                expected,
                found: frame.seq,
            },
            Err(damage) => damage,
        };
        let rest = &bytes[offset..];
        // An append interrupted by a crash leaves, at the very end of the newest
        // segment, a short frame, a frame whose checksum fails because its last blocks
        // never reached the disk, or zeros where the file was extended but not written.
        let last_frame = match reason {
            FrameDamage::Checksum { .. } => frame_len_field(rest) == rest.len() as u64,
            _ => false,
        };
        let torn = is_last
            && (matches!(reason, FrameDamage::Truncated { .. })
                || last_frame
                || rest.iter().all(|b| *b == 0));
        return (
            offsets,
            Some(Damage {
                offset: offset as u64,
                reason,
                torn,
            }),
        );
    }
    (offsets, None)
}

fn frame_len_field(frame: &[u8]) -> u64 {
    let mut raw = [0; 4];
    raw.copy_from_slice(&frame[..4]);
    record::frame_len(u32::from_le_bytes(raw) as usize)
}

/// Reads and verifies every segment in `dir`, oldest first, without modifying anything.
///
/// A segment whose first sequence number overlaps the previous segment's records is
/// reported as damaged from offset 0: sequence numbers are never reused, so one of the
/// two cannot be trusted, and the older one wins.
pub(crate) fn scan_dir(
    storage: &dyn Storage,
    dir: &Path,
) -> Result<Vec<ScannedSegment>, BufferError> {
    let mut names: Vec<(u64, String)> = storage
        .list_dir(dir)
        .map_err(|e| BufferError::io("listing", dir, e))?
        .into_iter()
        .filter_map(|name| parse_segment_name(&name).map(|seq| (seq, name)))
        .collect();
    names.sort_unstable();
    let count = names.len();
    let mut scanned: Vec<ScannedSegment> = Vec::with_capacity(count);
    for (i, (first_seq, name)) in names.into_iter().enumerate() {
        let path = dir.join(&name);
        let bytes = storage
            .read(&path)
            .map_err(|e| BufferError::io("reading", &path, e))?;
        let prev_end = scanned.last().map(|s| s.segment.end_seq());
        let (offsets, damage) = match prev_end {
            Some(expected) if first_seq < expected => (
                Vec::new(),
                Some(Damage {
                    offset: 0,
                    reason: FrameDamage::Sequence {
                        expected,
                        found: first_seq,
                    },
                    torn: false,
                }),
            ),
            _ => scan(&bytes, first_seq, i + 1 == count),
        };
        let len = damage.as_ref().map_or(bytes.len() as u64, |d| d.offset);
        scanned.push(ScannedSegment {
            name,
            segment: Segment {
                first_seq,
                offsets,
                len,
                path,
            },
            file_len: bytes.len() as u64,
            damage,
        });
    }
    Ok(scanned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        assert_eq!(segment_name(42), "00000000000000000042.seg");
        assert_eq!(parse_segment_name(&segment_name(u64::MAX)), Some(u64::MAX));
        assert_eq!(parse_segment_name("42.seg"), None);
        assert_eq!(parse_segment_name("0000000000000000004x.seg"), None);
        assert_eq!(parse_segment_name("ledger"), None);
    }

    #[test]
    fn torn_tails_and_damage() {
        let mut bytes = Vec::new();
        record::encode(5, b"first", &mut bytes);
        record::encode(6, b"second", &mut bytes);
        let (offsets, damage) = scan(&bytes, 5, true);
        assert_eq!((offsets.len(), damage), (2, None));

        let (offsets, damage) = scan(&bytes[..bytes.len() - 3], 5, true);
        assert_eq!(offsets.len(), 1);
        assert!(damage.expect("damage").torn);

        let mut zeros = bytes.clone();
        zeros.extend_from_slice(&[0; 40]);
        let (_, damage) = scan(&zeros, 5, true);
        assert!(damage.expect("damage").torn);

        let mut flipped = bytes.clone();
        flipped[record::HEADER_LEN] ^= 0xff;
        let (offsets, damage) = scan(&flipped, 5, true);
        let damage = damage.expect("damage");
        assert_eq!((offsets.len(), damage.offset, damage.torn), (0, 0, false));

        let (_, damage) = scan(&bytes[..bytes.len() - 3], 5, false);
        assert!(!damage.expect("damage").torn);

        let (_, damage) = scan(&bytes, 4, true);
        assert!(matches!(
            damage.expect("damage").reason,
            FrameDamage::Sequence {
                expected: 4,
                found: 5
            }
        ));
    }
}
