//! Reading the zstd frames of the processor's log rows (`pair_log`, `user_state_log`)
//! within bounds. This file depends on nothing else in the processor: the fuzz targets
//! (`fuzz/`) compile it with the row formats that use it.

use std::io::Read;

/// The largest zstd window a row may use, as a power of two: 8 MiB. Rows are written
/// at level 1, whose window is at most 512 KiB (2¹⁹).
const MAX_WINDOW_LOG: u32 = 23;

/// A frame that is not zstd, or holds more than its bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotAFrame;

/// Decompresses `frame`, refusing more than `max_bytes`.
///
/// Streamed, so memory grows with what the frame really holds: `zstd::bulk` reserves
/// its whole bound up front when a frame does not declare its size (hundreds of MiB for
/// a damaged row of a few bytes). The window is capped as well.
///
/// # Errors
///
/// [`NotAFrame`].
pub fn decompress(frame: &[u8], max_bytes: usize) -> Result<Vec<u8>, NotAFrame> {
    let mut decoder = zstd::stream::read::Decoder::with_buffer(frame).map_err(|_| NotAFrame)?;
    decoder
        .window_log_max(MAX_WINDOW_LOG)
        .map_err(|_| NotAFrame)?;
    let mut body = Vec::new();
    decoder
        .take(max_bytes as u64 + 1)
        .read_to_end(&mut body)
        .map_err(|_| NotAFrame)?;
    if body.len() > max_bytes {
        return Err(NotAFrame);
    }
    Ok(body)
}

/// Compresses `body` at level 1 (fast: rows are written at every checkpoint); `None`
/// if zstd fails (it does not with these parameters).
pub fn compress(body: &[u8]) -> Option<Vec<u8>> {
    zstd::bulk::compress(body, 1).ok()
}
