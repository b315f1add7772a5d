//! `ingest_client`: create, submit, flush, close, health, stats.

#![allow(non_camel_case_types)]

use std::ffi::c_char;
use std::time::Duration;

use ingest_core::bytes::Bytes;
use ingest_core::{BreakerState, IngestConfig, Ingestor};

use crate::boundary::{boundary, bytes, fail, fail_with, invalid_argument, text};
use crate::receipt::ingest_receipt;
use crate::types::{
    event_kind, ingest_config_format, ingest_event_id, ingest_health, ingest_shutdown_report,
    ingest_stats, ingest_status, timeout,
};

/// How long `ingest_client_free` lets a client that was never closed deliver what it
/// holds.
pub const INGEST_FREE_CLOSE_TIMEOUT_MS: u64 = 30_000;

/// A client: one ingestor (validation, queue, optional disk buffer, Kafka producer).
/// Opaque and thread-safe; create with `ingest_client_new`, close with `ingest_close`,
/// release with `ingest_client_free`.
pub struct ingest_client {
    pub(crate) ingestor: Ingestor,
}

/// Borrows a client, or fails with `INGEST_ERR_INVALID_ARGUMENT` for NULL.
///
/// # Safety
///
/// `client` must be NULL or a live pointer from `ingest_client_new`.
pub(crate) unsafe fn client<'a>(
    client: *const ingest_client,
) -> Result<&'a ingest_client, ingest_status> {
    // SAFETY: NULL or live, by the caller's contract.
    unsafe { client.as_ref() }.ok_or_else(|| invalid_argument("client is NULL"))
}

/// Writes `value` through `out` when it is not NULL.
///
/// # Safety
///
/// `out` must be NULL or writable.
pub(crate) unsafe fn put<T>(out: *mut T, value: T) {
    if !out.is_null() {
        // SAFETY: non-NULL and writable by the caller's contract.
        unsafe { out.write(value) };
    }
}

/// Creates a client from configuration text: `format` is `INGEST_CONFIG_TOML` or
/// `INGEST_CONFIG_JSON`, the keys those of the `[ingest]` configuration (`kafka.brokers`,
/// `buffer.type`, `buffer.dir`, ...; see docs/configuration.md). Starts the delivery
/// threads; does not contact Kafka (an unreachable cluster shows in delivery and
/// health, not here). On success `*out` holds the client.
///
/// Errors: `INGEST_ERR_CONFIG` (the message names the key), `INGEST_ERR_BUFFER` (the disk
/// buffer cannot be opened, e.g. another process holds it), `INGEST_ERR_KAFKA`.
///
/// # Safety
///
/// `config` must point to `config_len` readable bytes; `out` must be writable.
#[no_mangle]
pub unsafe extern "C" fn ingest_client_new(
    config: *const c_char,
    config_len: usize,
    format: u32,
    out: *mut *mut ingest_client,
) -> ingest_status {
    boundary(|| {
        if out.is_null() {
            return invalid_argument("out is NULL");
        }
        // SAFETY: `out` is non-NULL and writable by the contract; NULL until success.
        unsafe { out.write(std::ptr::null_mut()) };
        // SAFETY: forwarded contract.
        let text = match unsafe { text(config, config_len, "config") } {
            Ok(text) => text,
            Err(status) => return status,
        };
        let parsed = match format {
            f if f == ingest_config_format::INGEST_CONFIG_TOML as u32 => {
                IngestConfig::from_toml(text)
            }
            f if f == ingest_config_format::INGEST_CONFIG_JSON as u32 => {
                IngestConfig::from_json(text)
            }
            other => return invalid_argument(&format!("unknown configuration format {other}")),
        };
        let built = parsed
            .map_err(ingest_core::Error::from)
            .and_then(|config| Ingestor::builder().config(config).build());
        match built {
            Ok(ingestor) => {
                let client = Box::new(ingest_client { ingestor });
                // SAFETY: as above.
                unsafe { out.write(Box::into_raw(client)) };
                ingest_status::INGEST_OK
            }
            Err(error) => fail_with(&error),
        }
    })
}

/// Releases a client. One never closed is closed first, with a deadline of
/// [`INGEST_FREE_CLOSE_TIMEOUT_MS`]. NULL is ignored. No other thread may use the
/// client during or after this call.
///
/// # Safety
///
/// `client` must be NULL or a pointer from `ingest_client_new` not yet freed.
#[no_mangle]
pub unsafe extern "C" fn ingest_client_free(client: *mut ingest_client) {
    boundary(|| {
        if client.is_null() {
            return ingest_status::INGEST_OK;
        }
        // SAFETY: from `Box::into_raw` in `ingest_client_new`, freed once (contract).
        let client = unsafe { Box::from_raw(client) };
        if !client.ingestor.health().shutting_down {
            let _ = client
                .ingestor
                .shutdown_blocking(Duration::from_millis(INGEST_FREE_CLOSE_TIMEOUT_MS));
        }
        ingest_status::INGEST_OK
    });
}

/// Submits one event of type `kind` (`INGEST_PRODUCT_VIEW`, ...): `bytes[0..len]` is its
/// JSON, copied, and sent to Kafka byte for byte. On success writes the event's id to
/// `*id_out` and a receipt to `*receipt_out` (to wait for an acknowledgement level;
/// free it with `ingest_receipt_free`); either may be NULL when not wanted.
///
/// Errors: `INGEST_ERR_INVALID_EVENT` (details from `ingest_last_rejection`; the event
/// also goes to the dead-letter topic), `INGEST_ERR_QUEUE_FULL` (retry later),
/// `INGEST_ERR_SHUTTING_DOWN` (closed).
///
/// # Safety
///
/// `client` as for `ingest_client_free`; `bytes` must point to `len` readable bytes;
/// `id_out` and `receipt_out` must be NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn ingest_submit(
    client: *const ingest_client,
    kind: u32,
    bytes: *const u8,
    len: usize,
    id_out: *mut ingest_event_id,
    receipt_out: *mut *mut ingest_receipt,
) -> ingest_status {
    boundary(|| {
        // SAFETY: forwarded contract.
        unsafe { put(receipt_out, std::ptr::null_mut()) };
        // SAFETY: forwarded contract.
        let client = match unsafe { self::client(client) } {
            Ok(client) => client,
            Err(status) => return status,
        };
        let Some(kind) = event_kind(kind) else {
            return invalid_argument(&format!("unknown event kind {kind}"));
        };
        // SAFETY: forwarded contract.
        let body = match unsafe { self::bytes(bytes, len, "bytes") } {
            Ok(body) => Bytes::copy_from_slice(body),
            Err(status) => return status,
        };
        match client.ingestor.submit(kind, body) {
            Ok(receipt) => {
                let id = receipt
                    .event_id()
                    .map(|id| *id.as_bytes())
                    .unwrap_or_default();
                // SAFETY: forwarded contract.
                unsafe {
                    put(id_out, ingest_event_id { bytes: id });
                    if !receipt_out.is_null() {
                        put(receipt_out, ingest_receipt::into_raw(receipt));
                    }
                }
                ingest_status::INGEST_OK
            }
            Err(error) => fail_with(&error),
        }
    })
}

/// Waits until every event submitted before this call has been delivered to Kafka or
/// has failed, up to `timeout_ms`. Errors: `INGEST_ERR_TIMEOUT`,
/// `INGEST_ERR_SHUTTING_DOWN`.
///
/// # Safety
///
/// `client` as for `ingest_client_free`.
#[no_mangle]
pub unsafe extern "C" fn ingest_flush(
    client: *const ingest_client,
    timeout_ms: u64,
) -> ingest_status {
    boundary(|| {
        // SAFETY: forwarded contract.
        let client = match unsafe { self::client(client) } {
            Ok(client) => client,
            Err(status) => return status,
        };
        let limit = timeout(timeout_ms).unwrap_or(Duration::MAX); // ingest-core reads MAX as no limit
        match client.ingestor.flush_blocking(limit) {
            Ok(()) => ingest_status::INGEST_OK,
            Err(error) => fail_with(&error),
        }
    })
}

/// Closes the client: stops taking events, delivers what it holds within `timeout_ms`,
/// stops its threads and releases the disk buffer, and writes what it achieved to
/// `*report_out` (may be NULL). With a disk buffer, what Kafka has not acknowledged by
/// then stays in the buffer for the next start (`kept_in_buffer`). The client still
/// needs `ingest_client_free`; meanwhile other calls on it fail with
/// `INGEST_ERR_SHUTTING_DOWN`, as does a second close.
///
/// # Safety
///
/// `client` as for `ingest_client_free`; `report_out` must be NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn ingest_close(
    client: *const ingest_client,
    timeout_ms: u64,
    report_out: *mut ingest_shutdown_report,
) -> ingest_status {
    boundary(|| {
        // SAFETY: forwarded contract.
        let client = match unsafe { self::client(client) } {
            Ok(client) => client,
            Err(status) => return status,
        };
        let limit = timeout(timeout_ms).unwrap_or(Duration::from_secs(u64::from(u32::MAX)));
        match client.ingestor.shutdown_blocking(limit) {
            Ok(report) => {
                let report = ingest_shutdown_report {
                    undelivered: report.undelivered as u64,
                    kept_in_buffer: report.kept_in_buffer as u64,
                    lost: report.lost() as u64,
                    elapsed_ms: u64::try_from(report.elapsed.as_millis()).unwrap_or(u64::MAX),
                };
                // SAFETY: forwarded contract.
                unsafe { put(report_out, report) };
                ingest_status::INGEST_OK
            }
            Err(ingest_core::Error::ShuttingDown) => fail(
                ingest_status::INGEST_ERR_SHUTTING_DOWN,
                "the client is already closed (or closing)",
            ),
            Err(error) => fail_with(&error),
        }
    })
}

/// Writes a readiness snapshot to `*out`.
///
/// # Safety
///
/// `client` as for `ingest_client_free`; `out` must be writable.
#[no_mangle]
pub unsafe extern "C" fn ingest_client_health(
    client: *const ingest_client,
    out: *mut ingest_health,
) -> ingest_status {
    boundary(|| {
        // SAFETY: forwarded contract.
        let client = match unsafe { self::client(client) } {
            Ok(client) => client,
            Err(status) => return status,
        };
        if out.is_null() {
            return invalid_argument("out is NULL");
        }
        let health = client.ingestor.health();
        let buffer = health.buffer;
        let snapshot = ingest_health {
            ready: u8::from(health.is_ready()),
            kafka_reachable: u8::from(health.kafka_reachable()),
            shutting_down: u8::from(health.shutting_down),
            has_buffer: u8::from(buffer.is_some()),
            breaker: match health.breaker {
                BreakerState::Closed => 0,
                BreakerState::HalfOpen => 1,
                _ => 2,
            },
            dead_threads: health.dead_threads.len() as u32,
            queue_events: health.queue_events as u64,
            queue_bytes: health.queue_bytes as u64,
            buffer_entries: buffer.map_or(0, |b| b.entries),
            buffer_bytes: buffer.map_or(0, |b| b.bytes),
            buffer_max_bytes: buffer.map_or(0, |b| b.max_bytes),
        };
        // SAFETY: forwarded contract.
        unsafe { put(out, snapshot) };
        ingest_status::INGEST_OK
    })
}

/// Writes the running totals to `*out` (for hosts that export their own metrics).
///
/// # Safety
///
/// `client` as for `ingest_client_free`; `out` must be writable.
#[no_mangle]
pub unsafe extern "C" fn ingest_client_stats(
    client: *const ingest_client,
    out: *mut ingest_stats,
) -> ingest_status {
    boundary(|| {
        // SAFETY: forwarded contract.
        let client = match unsafe { self::client(client) } {
            Ok(client) => client,
            Err(status) => return status,
        };
        if out.is_null() {
            return invalid_argument("out is NULL");
        }
        let stats = client.ingestor.stats();
        let snapshot = ingest_stats {
            accepted: stats.accepted,
            rejected: stats.rejected,
            delivered: stats.delivered,
            failed: stats.failed,
            dead_letters_dropped: stats.dead_letters_dropped,
            queue_events: stats.queue_events as u64,
            queue_bytes: stats.queue_bytes as u64,
        };
        // SAFETY: forwarded contract.
        unsafe { put(out, snapshot) };
        ingest_status::INGEST_OK
    })
}

/// Writes the text form of `id` (36 characters and a NUL) to `buffer` of `capacity`
/// bytes (at least 37).
///
/// # Safety
///
/// `id` must be readable; `buffer` must point to `capacity` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn ingest_event_id_format(
    id: *const ingest_event_id,
    buffer: *mut c_char,
    capacity: usize,
) -> ingest_status {
    boundary(|| {
        // SAFETY: NULL or readable by the contract.
        let Some(id) = (unsafe { id.as_ref() }) else {
            return invalid_argument("id is NULL");
        };
        if buffer.is_null() || capacity < 37 {
            return invalid_argument("buffer is NULL or shorter than 37 bytes");
        }
        let mut text = [0u8; 37];
        uuid::Uuid::from_bytes(id.bytes)
            .hyphenated()
            .encode_lower(&mut text[..36]);
        // SAFETY: `buffer` holds at least 37 writable bytes (checked above, contract).
        unsafe { std::ptr::copy_nonoverlapping(text.as_ptr(), buffer.cast::<u8>(), 37) };
        ingest_status::INGEST_OK
    })
}
