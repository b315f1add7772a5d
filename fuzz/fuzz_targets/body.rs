//! The edge agent's request-body decoding (`edge-agent/src/body/decompress.rs`): gzip
//! and zstd bodies decompressed up to a bound, zstd windows over 2^23 bytes refused.
//!
//! Input: a mode byte, three bytes for the bound `max_out` (at most 1 MiB), then the
//! body. Mode bit 0 picks the coding (gzip, zstd), bit 1 the code the caller names for
//! a body over the bound (`event_too_large`, `batch_too_large`), bit 2 whether the rest
//! is the compressed body itself or a plain body the target compresses first (bits 3-5:
//! the compression level).
//!
//! Invariants, beyond "no panic":
//! - Decoded output is never longer than `max_out`, and is exactly what a plain
//!   streaming decoder (the same codings, the same window cap) reads from the body.
//! - Over the bound the error is the caller's `too_large` code (413); a body the
//!   reference decoder cannot read is a 400 (`invalid_value`, the coding named), unless
//!   the zstd window is over the cap.
//! - A zstd frame whose header declares a window over 2^23 bytes is refused as
//!   `window_too_large` (413), whatever follows the header.
//! - No single allocation (through Rust's allocator) is larger than `max_out + 1` plus
//!   a fixed allowance for the decoders' own buffers.
//! - Round trip: a plain body compressed here decompresses to itself when it fits the
//!   bound, and is `too_large` when it does not.
#![no_main]

use std::io::{Read, Write};

use bytes::Bytes;
use ingest_core::ErrorCode;
use ingest_fuzz::alloc::{largest, reset_largest, Counting};
use ingest_fuzz::body_decompress::{decompress, Encoding, ZSTD_WINDOW_LOG_MAX};
use ingest_fuzz::response::ApiError;
use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOC: Counting = Counting;

/// What decoding may allocate at once besides the output: zstd's input buffer (128 KiB
/// and a block header), flate2's inflate state (about 40 KiB), and some room.
const ALLOWANCE: usize = 256 << 10;

/// The largest bound tried: the agent's default `limits.max_batch_bytes` is 1 MiB.
const MAX_BOUND: usize = 1 << 20;

fuzz_target!(|data: &[u8]| {
    let Some((head, body)) = data.split_first_chunk::<4>() else {
        return;
    };
    let mode = head[0];
    let encoding = if mode & 1 == 0 {
        Encoding::Gzip
    } else {
        Encoding::Zstd
    };
    let too_large = if mode & 2 == 0 {
        ErrorCode::EventTooLarge
    } else {
        ErrorCode::BatchTooLarge
    };
    let max_out = u32::from_le_bytes([head[1], head[2], head[3], 0]) as usize % (MAX_BOUND + 1);
    if mode & 4 == 0 {
        arbitrary_body(body, encoding, max_out, too_large);
    } else {
        round_trip(body, encoding, u32::from(mode >> 3) % 8, max_out, too_large);
    }
});

fn arbitrary_body(body: &[u8], encoding: Encoding, max_out: usize, too_large: ErrorCode) {
    let input = Bytes::copy_from_slice(body);
    reset_largest();
    let result = decompress(input, encoding, max_out, too_large);
    let largest = largest();
    assert!(
        largest <= max_out + 1 + ALLOWANCE,
        "{largest} bytes allocated at once for a bound of {max_out} ({} body bytes)",
        body.len()
    );

    let header = (encoding == Encoding::Zstd)
        .then(|| frame_header(body))
        .flatten()
        .filter(|h| h.window > 1 << ZSTD_WINDOW_LOG_MAX);
    if let Some(header) = header {
        let window_refused = result
            .as_ref()
            .is_err_and(|e| e.code() == "window_too_large");
        if window_refused {
            assert_eq!(
                result.err().map(|e| e.status()),
                Some(http::StatusCode::PAYLOAD_TOO_LARGE)
            );
            return;
        }
        // zstd reads the dictionary id before the window: a frame naming a dictionary
        // (the agent has none) is a dictionary mismatch, refused as bad zstd data.
        if header.dictionary != 0 {
            assert_bad_coding(&result.expect_err("a frame naming a dictionary"), encoding);
            return;
        }
        // A frame whose declared content fits the output is decoded in one pass, into
        // the output itself, with no window: only then may a large window pass.
        let fits = header.content_size.is_some_and(|n| n <= max_out as u64 + 1);
        assert!(
            fits,
            "a {}-byte window was not refused: {result:?}",
            header.window
        );
        return;
    }

    let (expected, failure) = reference(body, encoding, max_out);
    match (result, failure) {
        (Ok(out), None) => {
            assert!(
                out.len() <= max_out,
                "{} bytes for a bound of {max_out}",
                out.len()
            );
            assert!(
                out[..] == expected[..],
                "the output differs from the reference decoder's"
            );
        }
        (Err(error), None) => {
            assert!(
                expected.len() > max_out,
                "refused a body that fits: {error:?}"
            );
            assert_too_large(&error, too_large);
        }
        (Err(error), Some(failure)) => {
            if failure.to_string() == "Frame requires too much memory for decoding" {
                assert_eq!(error.code(), "window_too_large", "{error:?}");
            } else {
                assert_bad_coding(&error, encoding);
            }
        }
        (Ok(out), Some(failure)) => {
            panic!(
                "accepted {} bytes the reference refuses: {failure}",
                out.len()
            )
        }
    }
}

fn round_trip(plain: &[u8], encoding: Encoding, level: u32, max_out: usize, too_large: ErrorCode) {
    let compressed = match encoding {
        Encoding::Gzip => {
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(level));
            encoder.write_all(plain).expect("gzip into a vector");
            encoder.finish().expect("gzip into a vector")
        }
        _ => zstd::encode_all(plain, level as i32 - 1).expect("zstd into a vector"),
    };
    reset_largest();
    let result = decompress(Bytes::from(compressed), encoding, max_out, too_large);
    let largest = largest();
    assert!(
        largest <= max_out + 1 + ALLOWANCE,
        "{largest} bytes allocated at once"
    );
    match result {
        Ok(out) => {
            assert!(
                plain.len() <= max_out,
                "{} bytes over a bound of {max_out}",
                plain.len()
            );
            assert!(out[..] == plain[..], "the round trip changed the body");
        }
        Err(error) => {
            assert!(plain.len() > max_out, "refused a body that fits: {error:?}");
            assert_too_large(&error, too_large);
        }
    }
}

fn assert_too_large(error: &ApiError, too_large: ErrorCode) {
    assert_eq!(error.code(), too_large.as_str(), "{error:?}");
    assert_eq!(error.status(), http::StatusCode::PAYLOAD_TOO_LARGE);
}

fn assert_bad_coding(error: &ApiError, encoding: Encoding) {
    assert_eq!(error.status(), http::StatusCode::BAD_REQUEST, "{error:?}");
    match error {
        ApiError::InvalidHeader { name, message } => {
            assert_eq!(*name, "Content-Encoding");
            let coding = format!("{encoding:?}").to_lowercase();
            assert!(message.contains(&coding), "{message}");
        }
        other => panic!("not a coding error: {other:?}"),
    }
}

/// What a plain streaming decoder reads from `body`, up to one byte over the bound,
/// and the error it stopped at (if any).
fn reference(body: &[u8], encoding: Encoding, max_out: usize) -> (Vec<u8>, Option<std::io::Error>) {
    let reader: Box<dyn Read + '_> = match encoding {
        Encoding::Gzip => Box::new(flate2::read::MultiGzDecoder::new(body)),
        _ => {
            let mut decoder = match zstd::stream::read::Decoder::new(body) {
                Ok(decoder) => decoder,
                Err(e) => return (Vec::new(), Some(e)),
            };
            if let Err(e) = decoder.window_log_max(ZSTD_WINDOW_LOG_MAX) {
                return (Vec::new(), Some(e));
            }
            Box::new(decoder)
        }
    };
    let mut out = Vec::new();
    let failure = reader.take(max_out as u64 + 1).read_to_end(&mut out).err();
    (out, failure)
}

/// What the header of a zstd frame at the start of `body` declares, when it is whole
/// and valid (RFC 8878, 3.1.1.1).
struct FrameHeader {
    /// The window: the window descriptor's, or a single-segment frame's content size.
    window: u64,
    /// The dictionary id (0: none).
    dictionary: u32,
    /// The content size, when declared.
    content_size: Option<u64>,
}

fn frame_header(body: &[u8]) -> Option<FrameHeader> {
    let (magic, rest) = body.split_first_chunk::<4>()?;
    if *magic != [0x28, 0xb5, 0x2f, 0xfd] {
        return None;
    }
    let (&descriptor, rest) = rest.split_first()?;
    if descriptor & 0x08 != 0 {
        return None; // the reserved bit: refused as a bad header
    }
    let single_segment = descriptor & 0x20 != 0;
    let (window, rest) = if single_segment {
        (None, rest)
    } else {
        let (&w, rest) = rest.split_first()?;
        let base = 1u64 << (10 + u32::from(w >> 3));
        (Some(base + base / 8 * u64::from(w & 7)), rest)
    };
    let little_endian = |bytes: &[u8]| {
        bytes
            .iter()
            .rev()
            .fold(0u64, |n, &b| (n << 8) | u64::from(b))
    };
    let dictionary_len = [0, 1, 2, 4][usize::from(descriptor & 3)];
    let size_len = match descriptor >> 6 {
        0 if single_segment => 1,
        0 => 0,
        1 => 2,
        2 => 4,
        _ => 8,
    };
    let dictionary = little_endian(rest.get(..dictionary_len)?) as u32;
    let size = rest.get(dictionary_len..dictionary_len + size_len)?;
    let content_size =
        (size_len > 0).then(|| little_endian(size) + if size_len == 2 { 256 } else { 0 });
    Some(FrameHeader {
        window: window.or(content_size)?,
        dictionary,
        content_size,
    })
}
