//! The ledger: the acknowledged watermark, persisted so a restart does not redeliver
//! everything still on disk.
//!
//! Format: `u64 LE watermark | u32 LE CRC32C(watermark bytes)`, 12 bytes, replaced
//! atomically (write `ledger.tmp`, fsync, rename over `ledger`, fsync the directory) so
//! a crash leaves either the old or the new value, never a mix.

use std::path::Path;

use super::error::BufferError;
use super::storage::Storage;

pub(crate) const LEDGER_FILE: &str = "ledger";
pub(crate) const LEDGER_TMP_FILE: &str = "ledger.tmp";

/// What the ledger file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ledger {
    /// No ledger yet (a new buffer, or nothing acknowledged before the first persist).
    Missing,
    /// A verified watermark.
    Watermark(u64),
    /// The file exists but fails verification.
    Damaged,
}

fn encode(watermark: u64) -> [u8; 12] {
    let mut out = [0; 12];
    out[..8].copy_from_slice(&watermark.to_le_bytes());
    out[8..].copy_from_slice(&crc32c::crc32c(&watermark.to_le_bytes()).to_le_bytes());
    out
}

pub(crate) fn read(storage: &dyn Storage, dir: &Path) -> Result<Ledger, BufferError> {
    let path = dir.join(LEDGER_FILE);
    if !storage
        .exists(&path)
        .map_err(|e| BufferError::io("checking", &path, e))?
    {
        return Ok(Ledger::Missing);
    }
    let bytes = storage
        .read(&path)
        .map_err(|e| BufferError::io("reading", &path, e))?;
    let Ok(raw) = <[u8; 12]>::try_from(bytes.as_slice()) else {
        return Ok(Ledger::Damaged);
    };
    let mut watermark = [0; 8];
    watermark.copy_from_slice(&raw[..8]);
    let watermark = u64::from_le_bytes(watermark);
    if encode(watermark) == raw {
        Ok(Ledger::Watermark(watermark))
    } else {
        Ok(Ledger::Damaged)
    }
}

pub(crate) fn write(storage: &dyn Storage, dir: &Path, watermark: u64) -> Result<(), BufferError> {
    let tmp = dir.join(LEDGER_TMP_FILE);
    let path = dir.join(LEDGER_FILE);
    let file = storage
        .open_append(&tmp)
        .map_err(|e| BufferError::io("creating", &tmp, e))?;
    // A leftover temp file from a crash may hold bytes; start from empty.
    file.set_len(0)
        .and_then(|()| file.write_all(&encode(watermark)))
        .and_then(|()| file.sync_data())
        .map_err(|e| BufferError::io("writing", &tmp, e))?;
    storage
        .rename(&tmp, &path)
        .map_err(|e| BufferError::io("renaming", &tmp, e))?;
    storage
        .sync_dir(dir)
        .map_err(|e| BufferError::io("syncing", dir, e))
}
