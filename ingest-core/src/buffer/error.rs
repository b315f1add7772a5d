//! The buffer's error type and the description of damaged frames.

use std::io;
use std::path::PathBuf;

/// Why a frame on disk cannot be trusted.
///
/// This is a description of damage, found while decoding or scanning a segment; it
/// appears in recovery and inspection reports and as the cause of
/// [`BufferError::Corrupt`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameDamage {
    /// The bytes end before the frame does (a torn write, or a damaged length field).
    #[error("truncated frame: {needed} bytes needed, {available} available")]
    Truncated {
        /// Bytes the frame header says (or the header itself needs).
        needed: u64,
        /// Bytes left in the segment from the frame's start.
        available: u64,
    },
    /// The stored CRC32C does not match the sequence number and payload.
    #[error("checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    Checksum {
        /// The checksum found in the frame header.
        stored: u32,
        /// The checksum of the bytes actually found.
        computed: u32,
    },
    /// The length field is larger than any record the format allows.
    #[error("bad frame length {len} (at most {max} allowed)")]
    BadLength {
        /// The length found in the frame header.
        len: u32,
        /// The format's limit.
        max: u32,
    },
    /// The frame is intact but its sequence number breaks the consecutive order.
    #[error("sequence number {found} where {expected} was expected")]
    Sequence {
        /// The sequence number the position calls for.
        expected: u64,
        /// The sequence number stored in the frame.
        found: u64,
    },
}

/// Everything that can go wrong in the disk buffer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BufferError {
    /// Appending would take the buffer past its configured `max_bytes`; nothing was
    /// written. Back off until acknowledgements free whole segments.
    #[error("disk buffer full: {used_bytes} bytes used + {requested_bytes} requested exceeds {max_bytes}")]
    Full {
        /// Bytes held by the retained segments.
        used_bytes: u64,
        /// Bytes the refused append needed.
        requested_bytes: u64,
        /// The configured bound.
        max_bytes: u64,
    },

    /// One payload is larger than the format allows; nothing was written.
    #[error("record of {len} bytes exceeds the {max}-byte limit")]
    RecordTooLarge {
        /// The payload's length.
        len: usize,
        /// The format's limit.
        max: u32,
    },

    /// The configuration is invalid.
    #[error("invalid buffer configuration `{field}`: {reason}")]
    InvalidConfig {
        /// The offending field.
        field: &'static str,
        /// Why it is rejected.
        reason: &'static str,
    },

    /// A file-system operation failed. When the cause is "no space left on device",
    /// [`BufferError::is_full`] is true.
    #[error("{context} {}: {source}", path.display())]
    Io {
        /// What was being attempted.
        context: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },

    /// A record read back from disk fails verification.
    #[error("corrupt record in {} at offset {offset}", segment.display())]
    Corrupt {
        /// The segment file.
        segment: PathBuf,
        /// Byte offset of the frame in the segment.
        offset: u64,
        /// What is wrong with it.
        #[source]
        damage: FrameDamage,
    },

    /// An acknowledgement names a sequence number that was never assigned.
    #[error("sequence number {seq} was never assigned (next is {next_seq})")]
    UnknownSequence {
        /// The acknowledged sequence number.
        seq: u64,
        /// The next sequence number the buffer will assign.
        next_seq: u64,
    },

    /// The embedded database under a `SledBuffer` (cargo feature `sled-buffer`)
    /// failed. When the cause is "no space left on device", [`BufferError::is_full`]
    /// is true.
    #[cfg(feature = "sled-buffer")]
    #[error("sled database failed while {context}: {source}")]
    Sled {
        /// What was being attempted.
        context: &'static str,
        /// The database's error.
        #[source]
        source: sled::Error,
    },

    /// Another open buffer holds the directory: a second process (an agent started
    /// before the old one stopped, or `edge-agent buffer repair` against a live
    /// agent) or a second buffer in this process. Nothing was read or changed.
    #[error("disk buffer {} is in use by {holder}; stop it first (two writers corrupt a buffer)", dir.display())]
    Locked {
        /// The buffer directory.
        dir: PathBuf,
        /// Who holds it, as recorded in its lock file (`pid=… host=…`).
        holder: String,
    },

    /// An earlier failure (a failed fsync, a failed rollback) left the files in a state
    /// the process can no longer vouch for; reopen the buffer to recover from disk.
    #[error("disk buffer unusable until reopened: {reason}")]
    Poisoned {
        /// The failure that poisoned the buffer.
        reason: String,
    },
}

impl BufferError {
    /// Whether the error is back-pressure: the buffer (or the disk under it) is full and
    /// the caller should slow down and retry once entries are acknowledged.
    pub fn is_full(&self) -> bool {
        match self {
            BufferError::Full { .. } => true,
            BufferError::Io { source, .. } => source.kind() == io::ErrorKind::StorageFull,
            #[cfg(feature = "sled-buffer")]
            BufferError::Sled {
                source: sled::Error::Io(source),
                ..
            } => source.kind() == io::ErrorKind::StorageFull,
            _ => false,
        }
    }

    /// Whether another open buffer holds the directory ([`BufferError::Locked`]).
    pub fn is_locked(&self) -> bool {
        matches!(self, BufferError::Locked { .. })
    }

    #[cfg(feature = "sled-buffer")]
    pub(crate) fn sled(context: &'static str, source: sled::Error) -> Self {
        BufferError::Sled { context, source }
    }

    pub(crate) fn io(context: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        BufferError::Io {
            context,
            path: path.into(),
            source,
        }
    }
}
