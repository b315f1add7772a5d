//! `ingest_completions`: acknowledgements for event loops, keyed by the caller's tags.

#![allow(non_camel_case_types)]

use std::time::{Duration, Instant};

use ingest_core::{Completion, CompletionQueue};

use crate::boundary::{boundary, boundary_or, fail_with, invalid_argument};
use crate::client::{client, ingest_client};
use crate::receipt::receipt;
use crate::types::{ack, ingest_completion, ingest_status, timeout};

/// A completion queue: register waits under `uint64_t` tags, take the finished ones
/// off without blocking (`ingest_completions_poll`) or with a bounded wait
/// (`ingest_completions_wait`). The library never calls into the host to report them.
/// Opaque and thread-safe; one queue may serve several clients. Free with
/// `ingest_completions_free`.
pub struct ingest_completions {
    queue: CompletionQueue,
}

/// Borrows a queue, or fails for NULL.
///
/// # Safety
///
/// `queue` must be NULL or live.
unsafe fn queue<'a>(
    queue: *const ingest_completions,
) -> Result<&'a CompletionQueue, ingest_status> {
    // SAFETY: NULL or live, by the caller's contract.
    unsafe { queue.as_ref() }
        .map(|q| &q.queue)
        .ok_or_else(|| invalid_argument("completion queue is NULL"))
}

/// Creates a completion queue holding at most `capacity` registrations (0: the default,
/// 65,536). Never NULL.
#[no_mangle]
pub extern "C" fn ingest_completions_new(capacity: usize) -> *mut ingest_completions {
    boundary_or(std::ptr::null_mut(), || {
        let queue = if capacity == 0 {
            CompletionQueue::new()
        } else {
            CompletionQueue::with_capacity(capacity)
        };
        Box::into_raw(Box::new(ingest_completions { queue }))
    })
}

/// Registers `tag` to complete when the receipt's events reach `ack`, fail to, or
/// `timeout_ms` passes first (`INGEST_NO_TIMEOUT`: no limit). The receipt may be freed
/// right after. Errors: `INGEST_ERR_QUEUE_FULL` when the queue holds its capacity
/// (take completions off first).
///
/// # Safety
///
/// `queue` and `receipt` must be NULL or live.
#[no_mangle]
pub unsafe extern "C" fn ingest_completions_watch(
    queue: *const ingest_completions,
    receipt: *const crate::receipt::ingest_receipt,
    ack: u32,
    timeout_ms: u64,
    tag: u64,
) -> ingest_status {
    boundary(|| {
        // SAFETY: forwarded contract.
        let (queue, receipt) = match unsafe { (self::queue(queue), self::receipt(receipt)) } {
            (Ok(queue), Ok(receipt)) => (queue, receipt),
            (Err(status), _) | (_, Err(status)) => return status,
        };
        let Some(level) = self::ack(ack) else {
            return invalid_argument(&format!("unknown acknowledgement level {ack}"));
        };
        match queue.watch(receipt, level, timeout(timeout_ms), tag) {
            Ok(()) => ingest_status::INGEST_OK,
            Err(error) => fail_with(&error),
        }
    })
}

/// Registers `tag` to complete when a flush of `client` (as `ingest_flush` with
/// `timeout_ms`) finishes.
///
/// # Safety
///
/// `queue` and `client` must be NULL or live.
#[no_mangle]
pub unsafe extern "C" fn ingest_completions_watch_flush(
    queue: *const ingest_completions,
    client: *const ingest_client,
    timeout_ms: u64,
    tag: u64,
) -> ingest_status {
    boundary(|| {
        // SAFETY: forwarded contract.
        let (queue, client) = match unsafe { (self::queue(queue), self::client(client)) } {
            (Ok(queue), Ok(client)) => (queue, client),
            (Err(status), _) | (_, Err(status)) => return status,
        };
        let limit = timeout(timeout_ms).unwrap_or(Duration::from_secs(u64::from(u32::MAX)));
        match queue.watch_flush(&client.ingestor, limit, tag) {
            Ok(()) => ingest_status::INGEST_OK,
            Err(error) => fail_with(&error),
        }
    })
}

fn entry(done: Completion) -> ingest_completion {
    ingest_completion {
        tag: done.tag,
        status: match done.result {
            Ok(()) => ingest_status::INGEST_OK,
            Err(error) => ingest_status::of(&error),
        },
    }
}

/// Moves up to `max` finished registrations into `out[0..max]` without blocking;
/// returns how many (0 when none, or for a NULL argument).
///
/// # Safety
///
/// `queue` must be NULL or live; `out` must point to `max` writable entries.
#[no_mangle]
pub unsafe extern "C" fn ingest_completions_poll(
    queue: *const ingest_completions,
    out: *mut ingest_completion,
    max: usize,
) -> usize {
    // SAFETY: forwarded contract.
    unsafe { take(queue, out, max, None) }
}

/// As [`ingest_completions_poll`], but first waits up to `timeout_ms` for at least one.
///
/// # Safety
///
/// As [`ingest_completions_poll`].
#[no_mangle]
pub unsafe extern "C" fn ingest_completions_wait(
    queue: *const ingest_completions,
    out: *mut ingest_completion,
    max: usize,
    timeout_ms: u64,
) -> usize {
    let limit = timeout(timeout_ms).unwrap_or(Duration::from_secs(u64::from(u32::MAX)));
    // SAFETY: forwarded contract.
    unsafe { take(queue, out, max, Some(limit)) }
}

/// Fills `out` from the queue, waiting up to `wait` for the first entry.
///
/// # Safety
///
/// As [`ingest_completions_poll`].
unsafe fn take(
    queue: *const ingest_completions,
    out: *mut ingest_completion,
    max: usize,
    wait: Option<Duration>,
) -> usize {
    boundary_or(0, || {
        // SAFETY: forwarded contract.
        let Ok(queue) = (unsafe { self::queue(queue) }) else {
            return 0;
        };
        if out.is_null() || max == 0 {
            invalid_argument("out is NULL or max is 0");
            return 0;
        }
        let started = Instant::now();
        let mut n = 0;
        while n < max {
            let next = match wait {
                Some(limit) if n == 0 => queue.wait(limit.saturating_sub(started.elapsed())),
                _ => queue.poll(),
            };
            let Some(done) = next else { break };
            // SAFETY: `out` holds `max` writable entries (contract) and `n < max`.
            unsafe { out.add(n).write(entry(done)) };
            n += 1;
        }
        n
    })
}

/// Registrations still waiting (0 for NULL).
///
/// # Safety
///
/// `queue` must be NULL or live.
#[no_mangle]
pub unsafe extern "C" fn ingest_completions_waiting(queue: *const ingest_completions) -> usize {
    boundary_or(0, || {
        // SAFETY: forwarded contract.
        let queue = unsafe { self::queue(queue) };
        queue.map_or(0, CompletionQueue::waiting)
    })
}

/// Releases a queue; NULL is ignored. Registrations still waiting finish unobserved.
///
/// # Safety
///
/// `queue` must be NULL or a queue from `ingest_completions_new`, not yet freed.
#[no_mangle]
pub unsafe extern "C" fn ingest_completions_free(queue: *mut ingest_completions) {
    boundary(|| {
        if !queue.is_null() {
            // SAFETY: from `Box::into_raw` in `ingest_completions_new`, freed once.
            drop(unsafe { Box::from_raw(queue) });
        }
        ingest_status::INGEST_OK
    });
}
