//! `ingest_flags`: feature-flag assignment, the same as the edge agent's
//! (`ingest_core::flags`): a flags file's text in, each user's variants out.

#![allow(non_camel_case_types)]

use std::ffi::c_char;

use ingest_core::flags::FlagSet;

use crate::boundary::{boundary, boundary_or, c_string, fail, invalid_argument, text};
use crate::types::{ingest_config_format, ingest_status};

/// A checked set of feature flags. Opaque, immutable and thread-safe; create with
/// `ingest_flags_new`, release with `ingest_flags_free`.
pub struct ingest_flags {
    set: FlagSet,
}

/// Borrows a flag set, or fails with `INGEST_ERR_INVALID_ARGUMENT` for NULL.
///
/// # Safety
///
/// `flags` must be NULL or a live pointer from `ingest_flags_new`.
unsafe fn flags<'a>(flags: *const ingest_flags) -> Result<&'a FlagSet, ingest_status> {
    // SAFETY: NULL or live, by the caller's contract.
    unsafe { flags.as_ref() }
        .map(|f| &f.set)
        .ok_or_else(|| invalid_argument("flags is NULL"))
}

/// Resets a string out-pointer to NULL, failing for a NULL out-pointer.
///
/// # Safety
///
/// `out` must be NULL or writable.
unsafe fn reset(out: *mut *mut c_char, what: &str) -> Result<(), ingest_status> {
    if out.is_null() {
        return Err(invalid_argument(&format!("{what} is NULL")));
    }
    // SAFETY: non-NULL and writable by the caller's contract.
    unsafe { out.write(std::ptr::null_mut()) };
    Ok(())
}

/// Reads a flags file's text, `text[0..len]`: `format` is `INGEST_CONFIG_TOML`
/// (`[[flags]]` tables) or `INGEST_CONFIG_JSON` (`{"flags": [...]}`), as the edge
/// agent's `flags.file` (docs/edge-agent.md, "Feature flags"). On success `*out` holds
/// the flags.
///
/// Errors: `INGEST_ERR_CONFIG` when the text does not parse or a flag breaks a rule; the
/// message names where (`flags[0].variants: the percentages add up to 90, not 100`, or
/// `flags file: ... at line 2 column 1`).
///
/// # Safety
///
/// `text` must point to `len` readable bytes; `out` must be writable.
#[no_mangle]
pub unsafe extern "C" fn ingest_flags_new(
    text: *const c_char,
    len: usize,
    format: u32,
    out: *mut *mut ingest_flags,
) -> ingest_status {
    boundary(|| {
        if out.is_null() {
            return invalid_argument("out is NULL");
        }
        // SAFETY: `out` is non-NULL and writable by the contract; NULL until success.
        unsafe { out.write(std::ptr::null_mut()) };
        // SAFETY: forwarded contract.
        let text = match unsafe { self::text(text, len, "text") } {
            Ok(text) => text,
            Err(status) => return status,
        };
        let parsed = match format {
            f if f == ingest_config_format::INGEST_CONFIG_TOML as u32 => FlagSet::from_toml(text),
            f if f == ingest_config_format::INGEST_CONFIG_JSON as u32 => FlagSet::from_json(text),
            other => return invalid_argument(&format!("unknown flags format {other}")),
        };
        match parsed {
            Ok(set) => {
                let flags = Box::new(ingest_flags { set });
                // SAFETY: as above.
                unsafe { out.write(Box::into_raw(flags)) };
                ingest_status::INGEST_OK
            }
            Err(error) => fail(ingest_status::INGEST_ERR_CONFIG, &error.to_string()),
        }
    })
}

/// How many flags the set holds (0 for NULL).
///
/// # Safety
///
/// `flags` must be NULL or live.
#[no_mangle]
pub unsafe extern "C" fn ingest_flags_len(flags: *const ingest_flags) -> usize {
    boundary_or(0, || {
        // SAFETY: forwarded contract.
        unsafe { self::flags(flags) }.map_or(0, FlagSet::len)
    })
}

/// The variant of every flag for the user `user[0..len]` (UTF-8; a user id, or an
/// anonymous id for a visitor), as a JSON object from flag name to variant name, in
/// flag name order: `{"checkout_v2":"control","search_ranking":"learned"}`. On success
/// `*json_out` holds the NUL-terminated text, which the caller owns and frees with
/// `ingest_string_free`.
///
/// # Safety
///
/// `flags` must be NULL or live; `user` must point to `len` readable bytes; `json_out`
/// must be writable.
#[no_mangle]
pub unsafe extern "C" fn ingest_flags_assign(
    flags: *const ingest_flags,
    user: *const c_char,
    len: usize,
    json_out: *mut *mut c_char,
) -> ingest_status {
    boundary(|| {
        // SAFETY: forwarded contract.
        if let Err(status) = unsafe { reset(json_out, "json_out") } {
            return status;
        }
        // SAFETY: forwarded contract.
        let set = match unsafe { self::flags(flags) } {
            Ok(set) => set,
            Err(status) => return status,
        };
        // SAFETY: forwarded contract.
        let user = match unsafe { text(user, len, "user") } {
            Ok(user) => user,
            Err(status) => return status,
        };
        let assigned: serde_json::Map<String, serde_json::Value> = set
            .assign(user)
            .into_iter()
            .map(|(flag, variant)| (flag.to_owned(), variant.into()))
            .collect();
        let json = serde_json::Value::Object(assigned).to_string();
        // SAFETY: `json_out` is non-NULL and writable (checked by `reset`, contract).
        unsafe { json_out.write(c_string(&json).into_raw()) };
        ingest_status::INGEST_OK
    })
}

/// The user's variant of one flag: `flag[0..flag_len]` and `user[0..user_len]` are
/// UTF-8. On success `*variant_out` holds the variant's NUL-terminated name, which the
/// caller owns and frees with `ingest_string_free`, or NULL when the set has no such
/// flag (still `INGEST_OK`).
///
/// # Safety
///
/// `flags` must be NULL or live; `flag` and `user` must point to `flag_len` and
/// `user_len` readable bytes; `variant_out` must be writable.
#[no_mangle]
pub unsafe extern "C" fn ingest_flags_variant(
    flags: *const ingest_flags,
    flag: *const c_char,
    flag_len: usize,
    user: *const c_char,
    user_len: usize,
    variant_out: *mut *mut c_char,
) -> ingest_status {
    boundary(|| {
        // SAFETY: forwarded contract.
        if let Err(status) = unsafe { reset(variant_out, "variant_out") } {
            return status;
        }
        // SAFETY: forwarded contract.
        let set = match unsafe { self::flags(flags) } {
            Ok(set) => set,
            Err(status) => return status,
        };
        // SAFETY: forwarded contract.
        let (flag, user) =
            match unsafe { (text(flag, flag_len, "flag"), text(user, user_len, "user")) } {
                (Ok(flag), Ok(user)) => (flag, user),
                (Err(status), _) | (_, Err(status)) => return status,
            };
        if let Some(variant) = set.variant(flag, user) {
            // SAFETY: `variant_out` is non-NULL and writable (checked by `reset`).
            unsafe { variant_out.write(c_string(variant).into_raw()) };
        }
        ingest_status::INGEST_OK
    })
}

/// Releases a flag set; NULL is ignored. No other thread may use it during or after
/// this call.
///
/// # Safety
///
/// `flags` must be NULL or a pointer from `ingest_flags_new` not yet freed.
#[no_mangle]
pub unsafe extern "C" fn ingest_flags_free(flags: *mut ingest_flags) {
    boundary(|| {
        if !flags.is_null() {
            // SAFETY: from `Box::into_raw` in `ingest_flags_new`, freed once (contract).
            drop(unsafe { Box::from_raw(flags) });
        }
        ingest_status::INGEST_OK
    });
}

#[cfg(test)]
mod tests {
    use std::ffi::CStr;
    use std::ptr;

    use super::*;
    use crate::boundary::{ingest_last_error_message, ingest_string_free};

    /// The flags of the documented test vectors (docs/edge-agent.md, "Feature flags").
    const FLAGS: &str = "[[flags]]\nname = \"checkout_v2\"\nvariants = [{ name = \"control\", percent = 90 }, { name = \"treatment\", percent = 10 }]\n\n[[flags]]\nname = \"search_ranking\"\nvariants = [{ name = \"bm25\", percent = 50 }, { name = \"learned\", percent = 50 }]\n";
    const TOML: u32 = ingest_config_format::INGEST_CONFIG_TOML as u32;

    /// Takes a string the library returned, freeing it.
    ///
    /// # Safety
    ///
    /// `s` is NULL or a string from `ingest_flags_*`, not yet freed.
    unsafe fn take(s: *mut c_char) -> Option<String> {
        if s.is_null() {
            return None;
        }
        // SAFETY: a live NUL-terminated string (contract).
        let text = unsafe { CStr::from_ptr(s) }.to_string_lossy().into_owned();
        // SAFETY: as above; freed once.
        unsafe { ingest_string_free(s) };
        Some(text)
    }

    fn last_error() -> String {
        // SAFETY: the library's NUL-terminated thread-local string, never NULL.
        unsafe { CStr::from_ptr(ingest_last_error_message()) }
            .to_string_lossy()
            .into_owned()
    }

    #[test]
    fn flags_assign_the_documented_test_vectors() {
        // SAFETY: valid pointers and lengths; every handle and string freed once.
        unsafe {
            let mut flags = ptr::null_mut();
            let status = ingest_flags_new(FLAGS.as_ptr().cast(), FLAGS.len(), TOML, &mut flags);
            assert_eq!(status, ingest_status::INGEST_OK, "{}", last_error());
            assert_eq!(ingest_flags_len(flags), 2);
            let mut json = ptr::null_mut();
            let user = "user-1";
            let status = ingest_flags_assign(flags, user.as_ptr().cast(), user.len(), &mut json);
            assert_eq!(status, ingest_status::INGEST_OK);
            assert_eq!(
                take(json).as_deref(),
                Some(r#"{"checkout_v2":"control","search_ranking":"learned"}"#)
            );
            let variant = |flag: &str, user: &str| {
                let mut out = ptr::dangling_mut::<c_char>();
                let status = ingest_flags_variant(
                    flags,
                    flag.as_ptr().cast(),
                    flag.len(),
                    user.as_ptr().cast(),
                    user.len(),
                    &mut out,
                );
                assert_eq!(status, ingest_status::INGEST_OK);
                take(out)
            };
            assert_eq!(variant("checkout_v2", "user-2").as_deref(), Some("control"));
            assert_eq!(variant("unknown", "user-1"), None);
            ingest_flags_free(flags);
        }
    }

    #[test]
    fn bad_flags_and_arguments_are_refused() {
        // SAFETY: valid pointers and lengths, or NULLs being checked; nothing leaks.
        unsafe {
            let bad = FLAGS.replace("90", "80");
            let mut flags = ptr::dangling_mut::<ingest_flags>();
            let status = ingest_flags_new(bad.as_ptr().cast(), bad.len(), TOML, &mut flags);
            assert_eq!(status, ingest_status::INGEST_ERR_CONFIG);
            assert!(flags.is_null());
            assert_eq!(
                last_error(),
                "flags[0].variants: the percentages add up to 90, not 100"
            );
            let status = ingest_flags_new(FLAGS.as_ptr().cast(), FLAGS.len(), 7, &mut flags);
            assert_eq!(status, ingest_status::INGEST_ERR_INVALID_ARGUMENT);
            assert!(last_error().contains("format 7"), "{}", last_error());
            let mut json = ptr::dangling_mut::<c_char>();
            let status = ingest_flags_assign(ptr::null(), c"u".as_ptr(), 1, &mut json);
            assert_eq!(status, ingest_status::INGEST_ERR_INVALID_ARGUMENT);
            assert!(json.is_null());
            ingest_flags_free(ptr::null_mut());
            ingest_string_free(ptr::null_mut());
        }
    }
}
