//! The boundary every call crosses: panics caught, errors kept per thread, arguments
//! checked.

use std::cell::RefCell;
use std::ffi::{c_char, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

use ingest_core::{Error, ValidationError};

use crate::types::{ingest_rejection, ingest_status, INGEST_ABI_VERSION};

/// The last failure on this thread.
#[derive(Default)]
struct LastError {
    message: Option<CString>,
    rejection: Option<OwnedRejection>,
}

/// A rejection with the strings an [`ingest_rejection`] borrows.
pub(crate) struct OwnedRejection {
    index: usize,
    code: u16,
    code_name: CString,
    field: Option<CString>,
    message: CString,
}

impl OwnedRejection {
    pub(crate) fn new(index: usize, error: &ValidationError) -> Self {
        OwnedRejection {
            index,
            code: error.code().number(),
            code_name: c_string(error.code().as_str()),
            field: error.field_path().map(c_string),
            message: c_string(error.message()),
        }
    }

    /// The C view, borrowing from `self`.
    pub(crate) fn view(&self) -> ingest_rejection {
        ingest_rejection {
            index: self.index,
            code: self.code,
            code_name: self.code_name.as_ptr(),
            field: self.field.as_ref().map_or(std::ptr::null(), |f| f.as_ptr()),
            message: self.message.as_ptr(),
        }
    }
}

thread_local! {
    static LAST_ERROR: RefCell<LastError> = RefCell::new(LastError::default());
}

/// Text as a C string; interior NULs (which C cannot hold) become U+FFFD.
pub(crate) fn c_string(text: &str) -> CString {
    CString::new(text.replace('\0', "\u{fffd}")).unwrap_or_default()
}

/// Records `message` as this thread's last error and returns `status`.
pub(crate) fn fail(status: ingest_status, message: &str) -> ingest_status {
    LAST_ERROR.with(|last| {
        let mut last = last.borrow_mut();
        last.message = Some(c_string(message));
        last.rejection = None;
    });
    status
}

/// Records a library error (with its rejection, if it is a validation error) and
/// returns its status.
pub(crate) fn fail_with(error: &Error) -> ingest_status {
    let status = fail(ingest_status::of(error), &error.to_string());
    if let Some(invalid) = error.validation() {
        LAST_ERROR.with(|last| last.borrow_mut().rejection = Some(OwnedRejection::new(0, invalid)));
    }
    status
}

/// `INGEST_ERR_INVALID_ARGUMENT` with `message`.
pub(crate) fn invalid_argument(message: &str) -> ingest_status {
    fail(ingest_status::INGEST_ERR_INVALID_ARGUMENT, message)
}

/// Runs one exported call: a panic inside becomes `INGEST_ERR_PANIC` with its message,
/// instead of unwinding into C (undefined behaviour) or aborting the host.
pub(crate) fn boundary(call: impl FnOnce() -> ingest_status) -> ingest_status {
    match catch_unwind(AssertUnwindSafe(call)) {
        Ok(status) => status,
        Err(panic) => fail(
            ingest_status::INGEST_ERR_PANIC,
            &format!("internal error: {}", panic_message(&*panic)),
        ),
    }
}

/// [`boundary`] for calls that return a value rather than a status: `fallback` on panic.
pub(crate) fn boundary_or<T>(fallback: T, call: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(call)) {
        Ok(value) => value,
        Err(panic) => {
            fail(
                ingest_status::INGEST_ERR_PANIC,
                &format!("internal error: {}", panic_message(&*panic)),
            );
            fallback
        }
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("a panic without a message")
}

/// The bytes `ptr[0..len]`, checked: NULL is allowed only with `len == 0`.
///
/// # Safety
///
/// A non-NULL `ptr` must point to `len` readable bytes that stay unchanged during the
/// call, as the header documents for every `(bytes, len)` pair.
pub(crate) unsafe fn bytes<'a>(
    ptr: *const u8,
    len: usize,
    what: &str,
) -> Result<&'a [u8], ingest_status> {
    if ptr.is_null() {
        return if len == 0 {
            Ok(&[])
        } else {
            Err(invalid_argument(&format!(
                "{what} is NULL but its length is {len}"
            )))
        };
    }
    if len > isize::MAX as usize {
        return Err(invalid_argument(&format!(
            "{what}: length {len} is impossible"
        )));
    }
    // SAFETY: non-NULL and within isize::MAX (checked above); readable for `len` bytes
    // and unchanged during the call by this function's contract.
    Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
}

/// UTF-8 text `ptr[0..len]`, checked.
///
/// # Safety
///
/// As [`bytes`].
pub(crate) unsafe fn text<'a>(
    ptr: *const c_char,
    len: usize,
    what: &str,
) -> Result<&'a str, ingest_status> {
    // SAFETY: forwarded contract.
    let raw = unsafe { bytes(ptr.cast(), len, what) }?;
    std::str::from_utf8(raw).map_err(|e| invalid_argument(&format!("{what} is not UTF-8: {e}")))
}

/// The library's version (`"0.1.0"`), a static string.
#[no_mangle]
pub extern "C" fn ingest_version() -> *const c_char {
    static VERSION: &CStr =
        match CStr::from_bytes_with_nul(concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes()) {
            Ok(version) => version,
            Err(_) => c"unknown",
        };
    VERSION.as_ptr()
}

/// The ABI version this library implements ([`INGEST_ABI_VERSION`] of its header); a
/// program may compare it with the header it was built against.
#[no_mangle]
pub extern "C" fn ingest_abi_version() -> u32 {
    INGEST_ABI_VERSION
}

/// A status's snake_case name (`"queue_full"`), a static string; `"unknown"` for a
/// value that is no status.
#[no_mangle]
pub extern "C" fn ingest_status_name(status: u32) -> *const c_char {
    use ingest_status::*;
    let known = [
        INGEST_OK,
        INGEST_ERR_INVALID_EVENT,
        INGEST_ERR_QUEUE_FULL,
        INGEST_ERR_SHUTTING_DOWN,
        INGEST_ERR_CONFIG,
        INGEST_ERR_KAFKA,
        INGEST_ERR_DELIVERY,
        INGEST_ERR_IO,
        INGEST_ERR_BUFFER,
        INGEST_ERR_TIMEOUT,
        INGEST_PENDING,
        INGEST_ERR_INVALID_ARGUMENT,
        INGEST_ERR_PANIC,
        INGEST_ERR_UNKNOWN,
    ];
    known
        .into_iter()
        .find(|s| *s as u32 == status)
        .unwrap_or(INGEST_ERR_UNKNOWN)
        .name()
        .as_ptr()
}

/// The message of the last call on this thread that failed, NUL-terminated; an empty
/// string when none has. Borrowed: valid until the next call on this thread that
/// fails. Never NULL.
#[no_mangle]
pub extern "C" fn ingest_last_error_message() -> *const c_char {
    boundary_or(c"".as_ptr(), || {
        LAST_ERROR.with(|last| {
            last.borrow()
                .message
                .as_ref()
                .map_or(c"".as_ptr(), |m| m.as_ptr())
        })
    })
}

/// Copies the last error's message (as [`ingest_last_error_message`]) into `buffer`
/// of `capacity` bytes, cut to fit and always NUL-terminated when `capacity > 0`.
/// Returns the message's full length in bytes, without the NUL: a result of
/// `capacity` or more means it was cut. `buffer` may be NULL when `capacity` is 0, to
/// ask for the length.
///
/// # Safety
///
/// `buffer` must be NULL or point to `capacity` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn ingest_last_error_copy(buffer: *mut c_char, capacity: usize) -> usize {
    boundary_or(0, || {
        LAST_ERROR.with(|last| {
            let last = last.borrow();
            let message = last.message.as_ref().map_or(&b""[..], |m| m.as_bytes());
            if !buffer.is_null() && capacity > 0 {
                let n = message.len().min(capacity - 1);
                // SAFETY: `buffer` holds `capacity` writable bytes (the caller's
                // contract) and `n + 1 <= capacity`; the source is our own string,
                // which cannot overlap the caller's buffer.
                unsafe {
                    std::ptr::copy_nonoverlapping(message.as_ptr(), buffer.cast::<u8>(), n);
                    *buffer.add(n) = 0;
                }
            }
            message.len()
        })
    })
}

/// When the last call on this thread that failed rejected an event
/// (`INGEST_ERR_INVALID_EVENT`), fills `out` with its code, field and message and
/// returns 1; otherwise returns 0 and leaves `out` alone. The strings are borrowed:
/// valid until the next call on this thread that fails.
///
/// # Safety
///
/// `out` must be NULL or point to a writable `ingest_rejection`.
#[no_mangle]
pub unsafe extern "C" fn ingest_last_rejection(out: *mut ingest_rejection) -> i32 {
    boundary_or(0, || {
        if out.is_null() {
            return 0;
        }
        LAST_ERROR.with(|last| match &last.borrow().rejection {
            Some(rejection) => {
                // SAFETY: `out` is non-NULL and writable by the caller's contract.
                unsafe { out.write(rejection.view()) };
                1
            }
            None => 0,
        })
    })
}

/// Releases a string the library handed over to the caller (`ingest_flags_assign`,
/// `ingest_flags_variant`); NULL is ignored. Strings the library only lends (error
/// messages, names) are never passed here.
///
/// # Safety
///
/// `string` must be NULL or a string such a function wrote, not yet freed.
#[no_mangle]
pub unsafe extern "C" fn ingest_string_free(string: *mut c_char) {
    boundary(|| {
        if !string.is_null() {
            // SAFETY: from `CString::into_raw` in the function that wrote it, freed once
            // (contract).
            drop(unsafe { CString::from_raw(string) });
        }
        ingest_status::INGEST_OK
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_a_status_and_a_message() {
        let status = boundary(|| panic!("the invariant broke"));
        assert_eq!(status, ingest_status::INGEST_ERR_PANIC);
        // SAFETY: the library's own NUL-terminated thread-local string.
        let message = unsafe { CStr::from_ptr(ingest_last_error_message()) };
        assert_eq!(message.to_str(), Ok("internal error: the invariant broke"));
        assert_eq!(boundary_or(7, || -> i32 { panic!("again") }), 7);
    }

    #[test]
    fn lengths_and_nulls_are_checked() {
        // SAFETY: NULL pointers are what is being checked; nothing is read.
        unsafe {
            assert_eq!(bytes(std::ptr::null(), 0, "b"), Ok(&[][..]));
            assert_eq!(
                bytes(std::ptr::null(), 3, "b"),
                Err(ingest_status::INGEST_ERR_INVALID_ARGUMENT)
            );
            let one = [1u8];
            assert_eq!(
                bytes(one.as_ptr(), usize::MAX, "b"),
                Err(ingest_status::INGEST_ERR_INVALID_ARGUMENT)
            );
        }
        let mut buffer = [0x7f as c_char; 4];
        fail(ingest_status::INGEST_ERR_IO, "abcdef");
        // SAFETY: `buffer` holds 4 writable bytes.
        let full = unsafe { ingest_last_error_copy(buffer.as_mut_ptr(), buffer.len()) };
        assert_eq!(full, 6);
        // SAFETY: the copy is NUL-terminated within the buffer.
        let copied = unsafe { CStr::from_ptr(buffer.as_ptr()) };
        assert_eq!(copied.to_str(), Ok("abc"));
    }
}
