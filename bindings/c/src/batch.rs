//! `ingest_batch`: the outcome of a batch submission.

#![allow(non_camel_case_types)]

use ingest_core::bytes::Bytes;
use ingest_core::BatchReceipt;

use crate::boundary::{boundary, boundary_or, bytes, fail_with, invalid_argument, OwnedRejection};
use crate::client::{client, put};
use crate::receipt::ingest_receipt;
use crate::types::{ingest_event_id, ingest_rejection, ingest_status};

/// What a batch submission did: the accepted events' ids and receipt, and the rejected
/// events. Opaque; free with `ingest_batch_free`.
pub struct ingest_batch {
    receipt: BatchReceipt,
    ids: Vec<ingest_event_id>,
    rejections: Vec<OwnedRejection>,
}

/// Borrows a batch, or fails for NULL.
///
/// # Safety
///
/// `batch` must be NULL or live.
unsafe fn batch<'a>(batch: *const ingest_batch) -> Result<&'a ingest_batch, ingest_status> {
    // SAFETY: NULL or live, by the caller's contract.
    unsafe { batch.as_ref() }.ok_or_else(|| invalid_argument("batch is NULL"))
}

/// Submits a batch body, `bytes[0..len]` (copied): NDJSON or a JSON array of events,
/// each naming its `type`. Valid events are queued even when others are rejected; on
/// success `*batch_out` lists both (`ingest_batch_*`).
///
/// Errors: `INGEST_ERR_INVALID_EVENT` when the body as a whole is unusable (empty, too
/// large, broken array; details from `ingest_last_rejection`), `INGEST_ERR_QUEUE_FULL`
/// or `INGEST_ERR_SHUTTING_DOWN` (nothing of the batch was queued).
///
/// # Safety
///
/// `client` must be NULL or live; `bytes` must point to `len` readable bytes;
/// `batch_out` must be writable.
#[no_mangle]
pub unsafe extern "C" fn ingest_submit_batch(
    client: *const crate::client::ingest_client,
    bytes: *const u8,
    len: usize,
    batch_out: *mut *mut ingest_batch,
) -> ingest_status {
    boundary(|| {
        if batch_out.is_null() {
            return invalid_argument("batch_out is NULL");
        }
        // SAFETY: forwarded contract.
        unsafe { put(batch_out, std::ptr::null_mut()) };
        // SAFETY: forwarded contract.
        let client = match unsafe { self::client(client) } {
            Ok(client) => client,
            Err(status) => return status,
        };
        // SAFETY: forwarded contract.
        let body = match unsafe { self::bytes(bytes, len, "bytes") } {
            Ok(body) => Bytes::copy_from_slice(body),
            Err(status) => return status,
        };
        match client.ingestor.submit_batch(body) {
            Ok(receipt) => {
                let ids = receipt
                    .event_ids
                    .iter()
                    .map(|id| ingest_event_id {
                        bytes: *id.as_bytes(),
                    })
                    .collect();
                let rejections = receipt
                    .rejected
                    .iter()
                    .map(|r| OwnedRejection::new(r.index, &r.error))
                    .collect();
                let batch = Box::new(ingest_batch {
                    receipt,
                    ids,
                    rejections,
                });
                // SAFETY: forwarded contract.
                unsafe { put(batch_out, Box::into_raw(batch)) };
                ingest_status::INGEST_OK
            }
            Err(error) => fail_with(&error),
        }
    })
}

/// How many events of the batch were accepted (0 for NULL).
///
/// # Safety
///
/// `batch` must be NULL or live.
#[no_mangle]
pub unsafe extern "C" fn ingest_batch_accepted(batch: *const ingest_batch) -> usize {
    boundary_or(0, || {
        // SAFETY: forwarded contract.
        let batch = unsafe { self::batch(batch) };
        batch.map_or(0, |b| b.ids.len())
    })
}

/// The accepted events' ids, in batch order: an array of `ingest_batch_accepted`
/// entries, borrowed from the batch (NULL for NULL).
///
/// # Safety
///
/// `batch` must be NULL or live.
#[no_mangle]
pub unsafe extern "C" fn ingest_batch_event_ids(
    batch: *const ingest_batch,
) -> *const ingest_event_id {
    boundary_or(std::ptr::null(), || {
        // SAFETY: forwarded contract.
        let batch = unsafe { self::batch(batch) };
        batch.map_or(std::ptr::null(), |b| b.ids.as_ptr())
    })
}

/// How many events of the batch were rejected (0 for NULL).
///
/// # Safety
///
/// `batch` must be NULL or live.
#[no_mangle]
pub unsafe extern "C" fn ingest_batch_rejected(batch: *const ingest_batch) -> usize {
    boundary_or(0, || {
        // SAFETY: forwarded contract.
        let batch = unsafe { self::batch(batch) };
        batch.map_or(0, |b| b.rejections.len())
    })
}

/// Writes the `i`-th rejection (batch order) to `*out`; its strings are borrowed from
/// the batch. `INGEST_ERR_INVALID_ARGUMENT` when `i` is out of range.
///
/// # Safety
///
/// `batch` must be NULL or live; `out` must be writable.
#[no_mangle]
pub unsafe extern "C" fn ingest_batch_rejection(
    batch: *const ingest_batch,
    i: usize,
    out: *mut ingest_rejection,
) -> ingest_status {
    boundary(|| {
        // SAFETY: forwarded contract.
        let batch = match unsafe { self::batch(batch) } {
            Ok(batch) => batch,
            Err(status) => return status,
        };
        if out.is_null() {
            return invalid_argument("out is NULL");
        }
        let Some(rejection) = batch.rejections.get(i) else {
            return invalid_argument(&format!(
                "rejection {i} does not exist ({} rejected)",
                batch.rejections.len()
            ));
        };
        // SAFETY: forwarded contract.
        unsafe { put(out, rejection.view()) };
        ingest_status::INGEST_OK
    })
}

/// A receipt for the batch's accepted events (a new handle: free it with
/// `ingest_receipt_free`); NULL for NULL.
///
/// # Safety
///
/// `batch` must be NULL or live.
#[no_mangle]
pub unsafe extern "C" fn ingest_batch_receipt(batch: *const ingest_batch) -> *mut ingest_receipt {
    boundary_or(std::ptr::null_mut(), || {
        // SAFETY: forwarded contract.
        unsafe { self::batch(batch) }.map_or(std::ptr::null_mut(), |b| {
            ingest_receipt::into_raw(b.receipt.receipt.clone())
        })
    })
}

/// Releases a batch; NULL is ignored. Receipts taken from it stay valid.
///
/// # Safety
///
/// `batch` must be NULL or a batch the library returned, not yet freed.
#[no_mangle]
pub unsafe extern "C" fn ingest_batch_free(batch: *mut ingest_batch) {
    boundary(|| {
        if !batch.is_null() {
            // SAFETY: from `Box::into_raw` in `ingest_submit_batch`, freed once (contract).
            drop(unsafe { Box::from_raw(batch) });
        }
        ingest_status::INGEST_OK
    });
}
