//! Decompression of request bodies, byte for byte: gzip and zstd, stopped at a bound on
//! the decompressed size (so a small compressed body cannot expand into gigabytes), and
//! zstd frames refused when their window is over the size RFC 9659 allows.
//!
//! No HTTP here (reading bodies and their headers is `body.rs`'s): the fuzz
//! target `body` (fuzz/) compiles this file with [`crate::response`] alone.

use std::io::Read;

use bytes::Bytes;
use ingest_core::{ErrorCode, ValidationError};

use crate::response::ApiError;

/// The largest zstd window accepted, as a power of two: 2^23 = 8 MiB, the limit RFC 9659
/// sets for `Content-Encoding: zstd` (and what `zstd -19` uses at most). Without it a
/// frame may declare a 128 MiB window (zstd's own decoding limit), which the decoder
/// reserves whatever the body's size.
pub const ZSTD_WINDOW_LOG_MAX: u32 = 23;

/// zstd's message for a frame whose window is over the decoder's limit
/// (`ZSTD_error_frameParameter_windowTooLarge`).
const ZSTD_WINDOW_TOO_LARGE: &str = "Frame requires too much memory for decoding";

/// How a body is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// Not compressed.
    Identity,
    /// `Content-Encoding: gzip`.
    Gzip,
    /// `Content-Encoding: zstd`.
    Zstd,
}

/// Decompresses `bytes`. More than `max_out` decompressed bytes is `too_large` (the
/// error the caller names: `event_too_large` or `batch_too_large`); decompression
/// stops right there.
///
/// A zstd frame whose window is over 2^[`ZSTD_WINDOW_LOG_MAX`] bytes is refused before
/// anything is decoded.
///
/// # Errors
///
/// 413 over the bound, or for a zstd window over 8 MiB (`window_too_large`); 400 when
/// the bytes are not valid in their coding.
pub fn decompress(
    bytes: Bytes,
    encoding: Encoding,
    max_out: usize,
    too_large: ErrorCode,
) -> Result<Bytes, ApiError> {
    let reader: Box<dyn Read + '_> = match encoding {
        Encoding::Identity => return Ok(bytes),
        Encoding::Gzip => Box::new(flate2::read::MultiGzDecoder::new(&bytes[..])),
        Encoding::Zstd => {
            let decoder = zstd::stream::read::Decoder::new(&bytes[..]).and_then(|mut d| {
                d.window_log_max(ZSTD_WINDOW_LOG_MAX)?;
                Ok(d)
            });
            match decoder {
                Ok(decoder) => Box::new(decoder),
                Err(e) => return Err(bad_coding(encoding, &e)),
            }
        }
    };
    let map_err = |e: std::io::Error| {
        if encoding == Encoding::Zstd && e.to_string() == ZSTD_WINDOW_TOO_LARGE {
            ApiError::WindowTooLarge {
                max_bytes: 1 << ZSTD_WINDOW_LOG_MAX,
            }
        } else {
            bad_coding(encoding, &e)
        }
    };
    // The output grows by doubling, but never past the bound: `read_to_end` would
    // double a 4 MiB buffer to 8 MiB to find the one byte over it.
    let limit = max_out + 1;
    let mut out = Vec::with_capacity((bytes.len() * 4).clamp(1, limit));
    let mut reader = reader.take(limit as u64);
    loop {
        if out.len() == out.capacity() {
            let grow = out.capacity().min(limit - out.len());
            if grow == 0 {
                break;
            }
            out.reserve_exact(grow);
        }
        let filled = out.len();
        out.resize(out.capacity(), 0);
        let n = loop {
            match reader.read(&mut out[filled..]) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                other => break other,
            }
        };
        match n {
            Ok(n) => {
                out.truncate(filled + n);
                if n == 0 {
                    break;
                }
            }
            Err(e) => return Err(map_err(e)),
        }
    }
    let read = out.len();
    if read > max_out {
        return Err(ApiError::Invalid(ValidationError::new(
            too_large,
            format!("the decompressed body is larger than {max_out} bytes"),
        )));
    }
    // The events keep this allocation until Kafka has them: give back what growing
    // (and the guess above) left spare, unless it is little.
    if out.capacity() - out.len() > out.len() / 4 {
        out.shrink_to_fit();
    }
    Ok(Bytes::from(out))
}

fn bad_coding(encoding: Encoding, error: &std::io::Error) -> ApiError {
    ApiError::InvalidHeader {
        name: "Content-Encoding",
        message: format!("the body is not valid {encoding:?} data: {error}").to_lowercase(),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn gzip(data: &[u8]) -> Bytes {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(data).expect("gzip");
        Bytes::from(encoder.finish().expect("gzip"))
    }

    #[test]
    fn decompresses_gzip_and_zstd() {
        let data = b"{\"a\":1}\n".repeat(100);
        assert_eq!(
            decompress(
                gzip(&data),
                Encoding::Gzip,
                10_000,
                ErrorCode::BatchTooLarge
            )
            .expect("gzip"),
            data
        );
        let z = Bytes::from(zstd::encode_all(&data[..], 3).expect("zstd"));
        assert_eq!(
            decompress(z, Encoding::Zstd, 10_000, ErrorCode::BatchTooLarge).expect("zstd"),
            data
        );
    }

    #[test]
    fn a_compression_bomb_stops_at_the_bound() {
        // 256 MiB of zeros compress to a few kilobytes; only max_out + 1 bytes are
        // ever produced from them.
        let bomb = zstd::encode_all(std::io::repeat(0).take(256 << 20), 1).expect("zstd");
        assert!(bomb.len() < 64 << 10, "{}", bomb.len());
        let err = decompress(
            Bytes::from(bomb),
            Encoding::Zstd,
            4 << 20,
            ErrorCode::BatchTooLarge,
        )
        .expect_err("bomb");
        assert_eq!(err.status(), http::StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(err.code(), "batch_too_large");
    }

    /// A zstd frame that declares a window over 8 MiB is refused with its own error
    /// before any memory is reserved for it; 8 MiB windows still decode.
    #[test]
    fn zstd_windows_over_8_mib_are_refused() {
        // An 18-byte frame: magic, a header declaring a 2^27-byte (128 MiB) window and
        // no content size, one empty last block, nothing more.
        let frame = Bytes::from_static(&[
            0x28,
            0xb5,
            0x2f,
            0xfd,           // magic
            0x00,           // no single segment, no content size, no checksum
            (27 - 10) << 3, // window descriptor: 2^27
            0x01,
            0x00,
            0x00, // last block, raw, 0 bytes
        ]);
        let err = decompress(frame, Encoding::Zstd, 4 << 20, ErrorCode::BatchTooLarge)
            .expect_err("a 128 MiB window");
        assert_eq!(err.status(), http::StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(err.code(), "window_too_large");
        let answer = err.into_response(1);
        let body = answer.into_body();
        let text = format!("{body:?}");
        assert!(text.contains("8388608"), "{text}");

        // The same from an encoder told to use a 16 MiB window (streamed, so the window
        // is not shrunk to the content's size).
        let data = b"{\"a\":1}\n".repeat(1000);
        let mut encoder = zstd::stream::Encoder::new(Vec::new(), 3).expect("encoder");
        encoder.window_log(24).expect("window log");
        encoder.include_contentsize(false).expect("no size");
        encoder.write_all(&data).expect("write");
        let big = Bytes::from(encoder.finish().expect("finish"));
        let err = decompress(big, Encoding::Zstd, 4 << 20, ErrorCode::BatchTooLarge)
            .expect_err("a 16 MiB window");
        assert_eq!(err.code(), "window_too_large");

        let mut encoder = zstd::stream::Encoder::new(Vec::new(), 3).expect("encoder");
        encoder.window_log(23).expect("window log");
        encoder.include_contentsize(false).expect("no size");
        encoder.write_all(&data).expect("write");
        let fine = Bytes::from(encoder.finish().expect("finish"));
        assert_eq!(
            decompress(fine, Encoding::Zstd, 4 << 20, ErrorCode::BatchTooLarge).expect("8 MiB"),
            data
        );
    }

    /// Two frames declaring a 128 MiB window that are not `window_too_large`, as zstd
    /// reads them (what the fuzz target `body` allows): one naming a dictionary is a
    /// dictionary mismatch (zstd checks the id first; the agent has no dictionaries),
    /// and one whose declared content fits the output is decoded in one pass, straight
    /// into the output, with no window at all.
    #[test]
    fn large_windows_zstd_reads_without_a_window_buffer() {
        let window = (27 - 10) << 3;
        let dictionary =
            Bytes::from([&ZSTD_MAGIC[..], &[0x01, window, 0x07, 0x01, 0x00, 0x00]].concat());
        let err = decompress(
            dictionary,
            Encoding::Zstd,
            4 << 20,
            ErrorCode::BatchTooLarge,
        )
        .expect_err("a dictionary");
        assert_eq!(err.status(), http::StatusCode::BAD_REQUEST);
        assert_eq!(err.code(), "invalid_value");

        let content = b"{\"a\":1}\n".repeat(32);
        let block = (1u32 | (content.len() as u32) << 3).to_le_bytes();
        let one_pass = Bytes::from(
            [
                &ZSTD_MAGIC[..],
                &[0x40, window, 0x00, 0x00], // a 2-byte content size: 0 + 256
                &block[..3],
                &content[..],
            ]
            .concat(),
        );
        assert_eq!(
            decompress(one_pass, Encoding::Zstd, 4 << 20, ErrorCode::BatchTooLarge)
                .expect("one pass"),
            content
        );
    }

    const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

    #[test]
    fn broken_codings_are_refused() {
        let err = decompress(
            Bytes::from_static(b"not gzip"),
            Encoding::Gzip,
            100,
            ErrorCode::BatchTooLarge,
        )
        .expect_err("bad");
        assert_eq!(err.status(), http::StatusCode::BAD_REQUEST);
    }
}
