//! `ingest_receipt`: waiting for an acknowledgement level, blocking or polled.

#![allow(non_camel_case_types)]

use ingest_core::Receipt;

use crate::boundary::{boundary, boundary_or, fail_with, invalid_argument};
use crate::types::{ack, ingest_status, timeout};

/// What became of a submission's events. Opaque and thread-safe; free with
/// `ingest_receipt_free`. Freeing it does not affect delivery.
pub struct ingest_receipt {
    pub(crate) receipt: Receipt,
}

impl ingest_receipt {
    pub(crate) fn into_raw(receipt: Receipt) -> *mut ingest_receipt {
        Box::into_raw(Box::new(ingest_receipt { receipt }))
    }
}

/// Borrows a receipt, or fails with `INGEST_ERR_INVALID_ARGUMENT` for NULL.
///
/// # Safety
///
/// `receipt` must be NULL or live.
pub(crate) unsafe fn receipt<'a>(
    receipt: *const ingest_receipt,
) -> Result<&'a Receipt, ingest_status> {
    // SAFETY: NULL or live, by the caller's contract.
    unsafe { receipt.as_ref() }
        .map(|r| &r.receipt)
        .ok_or_else(|| invalid_argument("receipt is NULL"))
}

/// The status of an outcome, recording a failure as the thread's last error.
pub(crate) fn status(outcome: Result<(), ingest_core::Error>) -> ingest_status {
    match outcome {
        Ok(()) => ingest_status::INGEST_OK,
        Err(error) => fail_with(&error),
    }
}

/// Blocks until the receipt's events reach `ack` (`INGEST_ACK_PERSISTED`,
/// `INGEST_ACK_DELIVERED`; `INGEST_ACK_ACCEPTED` returns at once) or `timeout_ms`
/// passes (`INGEST_NO_TIMEOUT`: no limit).
///
/// Errors: `INGEST_ERR_DELIVERY` (some events did not get there; the message says how
/// many and why), `INGEST_ERR_TIMEOUT` (still on their way: wait again).
///
/// # Safety
///
/// `receipt` must be NULL or live.
#[no_mangle]
pub unsafe extern "C" fn ingest_receipt_wait(
    receipt: *const ingest_receipt,
    ack: u32,
    timeout_ms: u64,
) -> ingest_status {
    boundary(|| {
        // SAFETY: forwarded contract.
        let receipt = match unsafe { self::receipt(receipt) } {
            Ok(receipt) => receipt,
            Err(status) => return status,
        };
        let Some(level) = self::ack(ack) else {
            return invalid_argument(&format!("unknown acknowledgement level {ack}"));
        };
        status(receipt.wait_blocking(level, timeout(timeout_ms)))
    })
}

/// [`ingest_receipt_wait`] without waiting: `INGEST_PENDING` while the events are on
/// their way, else the outcome.
///
/// # Safety
///
/// `receipt` must be NULL or live.
#[no_mangle]
pub unsafe extern "C" fn ingest_receipt_try(
    receipt: *const ingest_receipt,
    ack: u32,
) -> ingest_status {
    boundary(|| {
        // SAFETY: forwarded contract.
        let receipt = match unsafe { self::receipt(receipt) } {
            Ok(receipt) => receipt,
            Err(status) => return status,
        };
        let Some(level) = self::ack(ack) else {
            return invalid_argument(&format!("unknown acknowledgement level {ack}"));
        };
        match receipt.try_wait(level) {
            None => ingest_status::INGEST_PENDING,
            Some(outcome) => status(outcome),
        }
    })
}

/// How many events the receipt covers (0 for NULL).
///
/// # Safety
///
/// `receipt` must be NULL or live.
#[no_mangle]
pub unsafe extern "C" fn ingest_receipt_event_count(receipt: *const ingest_receipt) -> usize {
    boundary_or(0, || {
        // SAFETY: forwarded contract.
        unsafe { self::receipt(receipt) }.map_or(0, Receipt::event_count)
    })
}

/// Releases a receipt; NULL is ignored.
///
/// # Safety
///
/// `receipt` must be NULL or a receipt the library returned, not yet freed.
#[no_mangle]
pub unsafe extern "C" fn ingest_receipt_free(receipt: *mut ingest_receipt) {
    boundary(|| {
        if !receipt.is_null() {
            // SAFETY: from `Box::into_raw` in `into_raw`, freed once (contract).
            drop(unsafe { Box::from_raw(receipt) });
        }
        ingest_status::INGEST_OK
    });
}
