//! Request bodies: media type and coding checks, reading with a size bound and a
//! deadline, and decompression that stops at the decompressed-size bound (so a small
//! compressed body cannot expand into gigabytes).

use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE};
use http::HeaderMap;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use ingest_core::{ErrorCode, ValidationError};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::response::ApiError;

/// The largest zstd window accepted, as a power of two: 2^23 = 8 MiB, the limit RFC 9659
/// sets for `Content-Encoding: zstd` (and what `zstd -19` uses at most). Without it a
/// frame may declare a 128 MiB window (zstd's own decoding limit), which the decoder
/// reserves whatever the body's size.
pub const ZSTD_WINDOW_LOG_MAX: u32 = 23;

/// zstd's message for a frame whose window is over the decoder's limit
/// (`ZSTD_error_frameParameter_windowTooLarge`).
const ZSTD_WINDOW_TOO_LARGE: &str = "Frame requires too much memory for decoding";

/// A job for a decompression thread.
type Job = Box<dyn FnOnce() + Send>;

/// A fixed set of threads that decompress request bodies, off the runtime's threads
/// (where a 4 MiB body would stall every connection on that thread for milliseconds).
/// At most as many bodies are decompressed at once as there are threads; more wait for
/// a turn. The threads are fixed, not the runtime's blocking pool, because each thread
/// keeps its allocator's cache: the pool's changing threads each kept the memory of
/// their last bodies, and a stream of bombs grew the agent by 80 MiB in 10 s.
pub struct Decompressors {
    jobs: tokio::sync::mpsc::Sender<Job>,
}

impl Decompressors {
    /// Starts `threads` threads (at least 1).
    ///
    /// # Errors
    ///
    /// When a thread cannot be started.
    pub fn start(threads: usize) -> std::io::Result<Decompressors> {
        let threads = threads.max(1);
        let (jobs, queue) = tokio::sync::mpsc::channel::<Job>(threads);
        let queue = std::sync::Arc::new(std::sync::Mutex::new(queue));
        for i in 0..threads {
            let queue = queue.clone();
            std::thread::Builder::new()
                .name(format!("edge-decompress-{i}"))
                .spawn(move || loop {
                    // One thread waits for the next job at a time; the others wait
                    // for the lock.
                    let job = queue
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .blocking_recv();
                    match job {
                        Some(job) => job(),
                        None => return,
                    }
                })?;
        }
        Ok(Decompressors { jobs })
    }

    /// Runs `work` on one of the threads, waiting for a turn; `None` when the threads
    /// are gone (the agent is stopping) or `work` panicked.
    pub async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Option<T> {
        let (done, result) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = done.send(work());
        });
        self.jobs.send(job).await.ok()?;
        result.await.ok()
    }
}

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

/// The bytes of request bodies being received at once, across all connections
/// (`server.max_body_memory_bytes`). A body reserves its `Content-Length` when its head
/// arrives (a body without one, each chunk as it arrives) and gives it back once read;
/// a body that does not fit is refused at once with 503, so thousands of slow uploads
/// cannot hold `max_connections` × `max_body_bytes` of memory.
#[derive(Clone)]
pub struct BodyBudget {
    bytes: Arc<Semaphore>,
}

impl BodyBudget {
    /// A budget of `bytes`.
    pub fn new(bytes: usize) -> BodyBudget {
        BodyBudget {
            bytes: Arc::new(Semaphore::new(bytes.min(Semaphore::MAX_PERMITS))),
        }
    }

    /// Takes `n` bytes, if they are free.
    fn reserve(&self, n: usize) -> Result<Option<OwnedSemaphorePermit>, BudgetExhausted> {
        if n == 0 {
            return Ok(None);
        }
        u32::try_from(n)
            .ok()
            .and_then(|n| self.bytes.clone().try_acquire_many_owned(n).ok())
            .map(Some)
            .ok_or(BudgetExhausted)
    }

    /// Bytes not reserved now.
    pub fn available(&self) -> usize {
        self.bytes.available_permits()
    }
}

/// Reads the whole body: refused with 413 before reading when `Content-Length` says it
/// is over `limit`, and cut off when more arrives; 408 when it takes over `timeout`;
/// 503 when the bytes do not fit in `budget`.
///
/// The body is copied into an allocation of its own, at most `Content-Length` bytes,
/// grown as the bytes arrive (never reserved whole for a client that sends nothing).
/// hyper hands over body chunks as slices of the connection's read buffer (8 KiB at
/// least); an event keeps its body until Kafka has it, so a queued 500-byte event would
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
    budget: &BodyBudget,
) -> Result<Bytes, ApiError> {
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ApiError::BodyTooLarge { limit });
    }
    let declared = declared.map(|n| n as usize);
    let reserved = budget
        .reserve(declared.unwrap_or(0))
        .map_err(BudgetExhausted::answer)?;
    let reading = collect(Limited::new(body, limit), declared, budget, reserved);
    match tokio::time::timeout(timeout, reading).await {
        Err(_) => Err(ApiError::BodyTimeout),
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(error)) => {
            if error
                .downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                Err(ApiError::BodyTooLarge { limit })
            } else if error.downcast_ref::<BudgetExhausted>().is_some() {
                Err(BudgetExhausted.answer())
            } else {
                Err(ApiError::InvalidHeader {
                    name: "Content-Length",
                    message: format!("the request body could not be read: {error}"),
                })
            }
        }
    }
}

/// Copies a body's data frames into one buffer, grown as they arrive, at most to the
/// `declared` length (trimmed to its length if it grew past what arrived). Without a
/// declared length, each frame's bytes are reserved from `budget` as it arrives.
async fn collect(
    mut body: Limited<Incoming>,
    declared: Option<usize>,
    budget: &BodyBudget,
    mut reserved: Option<OwnedSemaphorePermit>,
) -> Result<Bytes, Box<dyn std::error::Error + Send + Sync>> {
    let mut out: Vec<u8> = Vec::new();
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame?.into_data() else {
            continue;
        };
        if declared.is_none() {
            if let Some(more) = budget.reserve(data.len())? {
                match reserved.as_mut() {
                    Some(permit) => permit.merge(more),
                    None => reserved = Some(more),
                }
            }
        }
        let needed = out.len() + data.len();
        if needed > out.capacity() {
            // Double, but never past the declared length: a body announced as 4 MiB
            // takes 4 MiB only once its bytes are there.
            let target = needed.max(out.capacity() * 2);
            let target = declared.map_or(target, |d| target.min(d.max(needed)));
            out.reserve_exact(target - out.len());
        }
        out.extend_from_slice(&data);
    }
    if out.capacity() > out.len() {
        out.shrink_to_fit();
    }
    drop(reserved);
    Ok(Bytes::from(out))
}

/// The [`BodyBudget`] has too few bytes free.
#[derive(Debug)]
struct BudgetExhausted;

impl BudgetExhausted {
    fn answer(self) -> ApiError {
        ApiError::Unavailable(
            "too many request bodies are being received at once; retry later".to_owned(),
        )
    }
}

impl std::fmt::Display for BudgetExhausted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the body budget is exhausted")
    }
}

impl std::error::Error for BudgetExhausted {}

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
