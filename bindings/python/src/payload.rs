//! Payloads: a Python bytes-like object as the `Bytes` ingest-core takes.
//!
//! A `bytes` object is immutable, so its buffer is shared without a copy: the `Bytes`
//! keeps a reference to the object until Kafka has the record. A `bytearray`, a
//! `memoryview` or another writable buffer may change after the call returns while the
//! event still waits for delivery, so its content is copied once.

#![allow(unsafe_code)]

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use ingest_core::bytes::Bytes;

/// A `bytes` object kept alive for as long as ingest-core holds its content.
struct SharedBytes {
    object: Py<PyBytes>,
    start: *const u8,
    len: usize,
}

// SAFETY: `start` points into the immutable buffer of `object`, which this value keeps
// alive; sharing a read-only pointer between threads is sound, and `Py<T>` is `Send`
// and `Sync` (dropping it without the GIL defers the reference count update to PyO3's
// pool, taken care of the next time a thread holds the GIL).
unsafe impl Send for SharedBytes {}
// SAFETY: as above; nothing is ever written through `start`.
unsafe impl Sync for SharedBytes {}

impl AsRef<[u8]> for SharedBytes {
    fn as_ref(&self) -> &[u8] {
        let _ = &self.object;
        // SAFETY: a `bytes` object's buffer never moves or changes during the object's
        // life (it is immutable and allocated with the object), and `self.object` keeps
        // the object alive, so `start..start + len` stays valid and unchanged while
        // `self` exists.
        unsafe { std::slice::from_raw_parts(self.start, self.len) }
    }
}

/// The content of `payload` (`bytes`, `bytearray`, `memoryview` or any object with a
/// contiguous byte buffer), or a `TypeError` naming what was passed.
pub(crate) fn payload(payload: &Bound<'_, PyAny>) -> PyResult<Bytes> {
    if let Ok(bytes) = payload.cast::<PyBytes>() {
        return Ok(shared(bytes));
    }
    let wrong_type = || {
        PyTypeError::new_err(format!(
            "payload must be bytes-like (bytes, bytearray, memoryview), not {}",
            payload
                .get_type()
                .name()
                .map_or_else(|_| "an unknown type".to_owned(), |n| n.to_string())
        ))
    };
    if payload.is_instance_of::<pyo3::types::PyString>() {
        return Err(PyTypeError::new_err(
            "payload must be bytes-like (bytes, bytearray, memoryview), not str: encode it first (text.encode())",
        ));
    }
    // Anything else with a buffer (bytearray, memoryview, array.array, ...) is copied
    // once through `memoryview(payload).tobytes()`; the buffer protocol itself is not
    // part of the stable ABI of Python 3.9 and 3.10.
    let py = payload.py();
    let view = py
        .import("builtins")?
        .getattr("memoryview")?
        .call1((payload,))
        .map_err(|_| wrong_type())?;
    let copy = view.call_method0("tobytes")?;
    let copy = copy.cast::<PyBytes>().map_err(|_| wrong_type())?;
    Ok(shared(copy))
}

/// The content of a `bytes` object, shared.
fn shared(bytes: &Bound<'_, PyBytes>) -> Bytes {
    let content = bytes.as_bytes();
    Bytes::from_owner(SharedBytes {
        start: content.as_ptr(),
        len: content.len(),
        object: bytes.clone().unbind(),
    })
}
