//! Frame encoding and decoding.
//!
//! `u32 LE payload length | u32 LE CRC32C(seq LE bytes ++ payload) | u64 LE seq | payload`.
//! The checksum covers the sequence number so that a frame copied to the wrong place
//! (or a stale block) cannot pass as a valid record.

use super::error::FrameDamage;

/// Bytes of a frame before its payload.
pub(crate) const HEADER_LEN: usize = 16;

/// The largest payload one record may carry. Part of the on-disk format: a length field
/// above it is damage, not a record.
pub const MAX_RECORD_BYTES: u32 = 16 * 1024 * 1024;

/// A decoded frame, borrowing its payload from the buffer it was decoded from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Frame<'a> {
    pub(crate) seq: u64,
    pub(crate) payload: &'a [u8],
}

impl Frame<'_> {
    /// Bytes the frame occupies on disk.
    pub(crate) fn encoded_len(&self) -> usize {
        HEADER_LEN + self.payload.len()
    }
}

/// Bytes a frame with a payload of `payload_len` bytes occupies on disk.
pub(crate) fn frame_len(payload_len: usize) -> u64 {
    (HEADER_LEN + payload_len) as u64
}

fn checksum(seq: u64, payload: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&seq.to_le_bytes()), payload)
}

/// Appends the frame for `(seq, payload)` to `out`.
///
/// # Panics
///
/// If `payload` is longer than [`MAX_RECORD_BYTES`]; callers check the length first.
pub(crate) fn encode(seq: u64, payload: &[u8], out: &mut Vec<u8>) {
    let len = u32::try_from(payload.len())
        .ok()
        .filter(|len| *len <= MAX_RECORD_BYTES)
        .expect("payload length is checked against MAX_RECORD_BYTES before encoding");
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&checksum(seq, payload).to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(payload);
}

fn le_u32(bytes: &[u8]) -> u32 {
    let mut raw = [0; 4];
    raw.copy_from_slice(bytes);
    u32::from_le_bytes(raw)
}

fn le_u64(bytes: &[u8]) -> u64 {
    let mut raw = [0; 8];
    raw.copy_from_slice(bytes);
    u64::from_le_bytes(raw)
}

/// Decodes the frame at the start of `buf`, verifying its length and checksum.
pub(crate) fn decode(buf: &[u8]) -> Result<Frame<'_>, FrameDamage> {
    let frame = decode_unverified(buf)?;
    let stored = le_u32(&buf[4..8]);
    let computed = checksum(frame.seq, frame.payload);
    if stored != computed {
        return Err(FrameDamage::Checksum { stored, computed });
    }
    Ok(frame)
}

/// Decodes the frame at the start of `buf`, verifying its length but not its checksum:
/// for frames already verified since they were last read from disk.
pub(crate) fn decode_unverified(buf: &[u8]) -> Result<Frame<'_>, FrameDamage> {
    if buf.len() < HEADER_LEN {
        return Err(FrameDamage::Truncated {
            needed: HEADER_LEN as u64,
            available: buf.len() as u64,
        });
    }
    let len = le_u32(&buf[0..4]);
    if len > MAX_RECORD_BYTES {
        return Err(FrameDamage::BadLength {
            len,
            max: MAX_RECORD_BYTES,
        });
    }
    let total = HEADER_LEN + len as usize;
    if buf.len() < total {
        return Err(FrameDamage::Truncated {
            needed: total as u64,
            available: buf.len() as u64,
        });
    }
    let seq = le_u64(&buf[8..16]);
    Ok(Frame {
        seq,
        payload: &buf[HEADER_LEN..total],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let mut buf = Vec::new();
        encode(7, b"hello", &mut buf);
        encode(8, b"", &mut buf);
        let first = decode(&buf).expect("valid frame");
        assert_eq!((first.seq, first.payload), (7, &b"hello"[..]));
        let second = decode(&buf[first.encoded_len()..]).expect("valid frame");
        assert_eq!((second.seq, second.payload), (8, &b""[..]));
    }

    #[test]
    fn typed_damage() {
        let mut buf = Vec::new();
        encode(1, b"payload", &mut buf);
        assert!(matches!(
            decode(&buf[..buf.len() - 1]),
            Err(FrameDamage::Truncated { .. })
        ));
        let mut flipped = buf.clone();
        flipped[HEADER_LEN] ^= 0x01;
        assert!(matches!(
            decode(&flipped),
            Err(FrameDamage::Checksum { .. })
        ));
        let mut wrong_seq = buf.clone();
        wrong_seq[8] ^= 0x01;
        assert!(matches!(
            decode(&wrong_seq),
            Err(FrameDamage::Checksum { .. })
        ));
        let mut huge = buf;
        huge[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(decode(&huge), Err(FrameDamage::BadLength { .. })));
    }
}
