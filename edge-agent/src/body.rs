//! Request bodies: media type and coding checks, reading with a size bound and a
//! deadline, and the threads that decompress them. The decompression itself, which
//! stops at the decompressed-size bound (so a small compressed body cannot expand into
//! gigabytes), is [`decompress`](fn@decompress) (in `body/decompress.rs`, free of HTTP
//! so the fuzz target `body` compiles it on its own).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE};
use http::HeaderMap;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::response::ApiError;

mod decompress;

pub use decompress::{decompress, Encoding, ZSTD_WINDOW_LOG_MAX};

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_codings_and_media_types_are_refused() {
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
