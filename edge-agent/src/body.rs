//! Request bodies: media type and coding checks, reading with a size bound and a
//! deadline, and decompression that stops at the decompressed-size bound (so a small
//! compressed body cannot expand into gigabytes).

use std::io::Read;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE};
use http::HeaderMap;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use ingest_core::{ErrorCode, ValidationError};

use crate::response::ApiError;

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

/// The body's coding, from `Content-Encoding`.
///
/// # Errors
///
/// 415 for a coding other than `gzip`, `zstd` or `identity`.
pub fn encoding(headers: &HeaderMap) -> Result<Encoding, ApiError> {
    let Some(value) = headers.get(CONTENT_ENCODING) else {
        return Ok(Encoding::Identity);
    };
    match value.to_str().map(|v| v.trim().to_ascii_lowercase()) {
        Ok(v) if v.is_empty() || v == "identity" => Ok(Encoding::Identity),
        Ok(v) if v == "gzip" || v == "x-gzip" => Ok(Encoding::Gzip),
        Ok(v) if v == "zstd" => Ok(Encoding::Zstd),
        _ => Err(ApiError::UnsupportedMediaType(format!(
            "Content-Encoding {:?} is not accepted (gzip, zstd or identity)",
            String::from_utf8_lossy(value.as_bytes())
        ))),
    }
}

/// Checks `Content-Type` against what an endpoint takes (a missing one is accepted).
///
/// # Errors
///
/// 415 for another media type.
pub fn check_media_type(headers: &HeaderMap, accepted: &[&str]) -> Result<(), ApiError> {
    let Some(value) = headers.get(CONTENT_TYPE) else {
        return Ok(());
    };
    let essence = value
        .to_str()
        .ok()
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase());
    match essence {
        Some(essence) if accepted.contains(&essence.as_str()) => Ok(()),
        _ => Err(ApiError::UnsupportedMediaType(format!(
            "Content-Type {:?} is not accepted here ({})",
            String::from_utf8_lossy(value.as_bytes()),
            accepted.join(", ")
        ))),
    }
}

/// Reads the whole body: refused with 413 before reading when `Content-Length` says it
/// is over `limit`, and cut off when more arrives; 408 when it takes over `timeout`.
///
/// The body is copied into an allocation of its own, sized by `Content-Length`. hyper
/// hands over body chunks as slices of the connection's read buffer (8 KiB at least);
/// an event keeps its body until Kafka has it, so a queued 500-byte event would
/// otherwise hold a whole read buffer, and the queue's byte bound (which counts event
/// bytes) would not bound memory.
///
/// # Errors
///
/// As above; a connection error while reading is a 400.
pub async fn read(
    body: Incoming,
    headers: &HeaderMap,
    limit: usize,
    timeout: Duration,
) -> Result<Bytes, ApiError> {
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ApiError::BodyTooLarge { limit });
    }
    let capacity = declared.map_or(0, |n| n as usize);
    match tokio::time::timeout(timeout, collect(Limited::new(body, limit), capacity)).await {
        Err(_) => Err(ApiError::BodyTimeout),
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(error)) => {
            if error
                .downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                Err(ApiError::BodyTooLarge { limit })
            } else {
                Err(ApiError::InvalidHeader {
                    name: "Content-Length",
                    message: format!("the request body could not be read: {error}"),
                })
            }
        }
    }
}

/// Copies a body's data frames into one buffer of `capacity` bytes (grown if the body
/// turns out longer, and trimmed to its length if it grew).
async fn collect(
    mut body: Limited<Incoming>,
    capacity: usize,
) -> Result<Bytes, Box<dyn std::error::Error + Send + Sync>> {
    let mut out = Vec::with_capacity(capacity);
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            out.extend_from_slice(&data);
        }
    }
    if out.capacity() > out.len() {
        out.shrink_to_fit();
    }
    Ok(Bytes::from(out))
}

/// Decompresses `bytes`. More than `max_out` decompressed bytes is `too_large` (the
/// error the caller names: `event_too_large` or `batch_too_large`); decompression
/// stops right there.
///
/// # Errors
///
/// 413 over the bound; 400 when the bytes are not valid in their coding.
pub fn decompress(
    bytes: Bytes,
    encoding: Encoding,
    max_out: usize,
    too_large: ErrorCode,
) -> Result<Bytes, ApiError> {
    let reader: Box<dyn Read + '_> = match encoding {
        Encoding::Identity => return Ok(bytes),
        Encoding::Gzip => Box::new(flate2::read::MultiGzDecoder::new(&bytes[..])),
        Encoding::Zstd => match zstd::stream::read::Decoder::new(&bytes[..]) {
            Ok(decoder) => Box::new(decoder),
            Err(e) => return Err(bad_coding(encoding, &e)),
        },
    };
    let mut out = Vec::with_capacity((bytes.len() * 4).min(max_out + 1));
    let read = reader
        .take(max_out as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| bad_coding(encoding, &e))?;
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

    #[test]
    fn broken_codings_and_unknown_types_are_refused() {
        let err = decompress(
            Bytes::from_static(b"not gzip"),
            Encoding::Gzip,
            100,
            ErrorCode::BatchTooLarge,
        )
        .expect_err("bad");
        assert_eq!(err.status(), http::StatusCode::BAD_REQUEST);
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_ENCODING, "br".parse().expect("value"));
        assert_eq!(
            encoding(&headers).expect_err("br").status(),
            http::StatusCode::UNSUPPORTED_MEDIA_TYPE
        );
        headers.insert(
            CONTENT_TYPE,
            "application/json; charset=utf-8".parse().expect("value"),
        );
        assert!(check_media_type(&headers, &["application/json"]).is_ok());
        headers.insert(CONTENT_TYPE, "application/xml".parse().expect("value"));
        assert!(check_media_type(&headers, &["application/json"]).is_err());
    }
}
