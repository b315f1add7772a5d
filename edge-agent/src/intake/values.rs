//! What both formats' readers share: the request body's first checks, paths in the
//! sender's payload, and the rules for identifiers and amounts.

use ingest_core::ErrorCode;
use serde::Deserialize;
use serde_json::Number;

use super::MapError;

/// Parses a request body. Empty, non-UTF-8, malformed and too deeply nested bodies get
/// their own codes; serde_json stops at 128 levels of nesting, so no body can exhaust
/// the stack.
pub(super) fn parse_body<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, MapError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(MapError::new(ErrorCode::EmptyBody, "the body is empty"));
    }
    if let Err(e) = std::str::from_utf8(body) {
        return Err(MapError::new(
            ErrorCode::InvalidUtf8,
            format!("invalid UTF-8 near byte {}", e.valid_up_to()),
        ));
    }
    serde_json::from_slice(body).map_err(|e| json_error(&e))
}

/// A serde_json syntax error as a [`MapError`].
pub(super) fn json_error(e: &serde_json::Error) -> MapError {
    let text = e.to_string();
    if text.starts_with("recursion limit exceeded") {
        MapError::new(ErrorCode::TooDeep, "JSON nesting is deeper than 128 levels")
    } else {
        MapError::new(ErrorCode::InvalidJson, format!("malformed JSON: {text}"))
    }
}

/// `base.key`, or `key` at the top of the payload.
pub(super) fn join(base: &str, key: &str) -> String {
    if base.is_empty() {
        key.to_owned()
    } else {
        format!("{base}.{key}")
    }
}

/// Whether an id is empty or only whitespace: as good as absent.
pub(super) fn is_blank(id: &str) -> bool {
    id.trim().is_empty()
}

/// Longest user or device identifier, in characters (the event contract's bound on
/// `user_id` and `anonymous_id`, and on a custom event's key).
const MAX_IDENTITY_CHARS: usize = 128;

/// Fails with `too_long` when a user's or device's identifier found at `path` is
/// longer than [`MAX_IDENTITY_CHARS`].
pub(super) fn check_identity(id: &str, path: impl FnOnce() -> String) -> Result<(), MapError> {
    let chars = id.chars().count();
    if chars <= MAX_IDENTITY_CHARS {
        return Ok(());
    }
    let path = path();
    Err(MapError::field(
        ErrorCode::TooLong,
        path.clone(),
        format!("{path} is {chars} characters long; at most {MAX_IDENTITY_CHARS} are allowed"),
    ))
}

/// The value of a JSON number that is a whole number within 64 bits (signed or not),
/// also when written with a fraction or an exponent (`8129.0`, `1e3`, below 2^53), as
/// Python's `json` writes floats: JSON does not tell an integer from an integral float.
pub(super) fn integral(n: &Number) -> Option<i128> {
    if let Some(i) = n.as_i64() {
        return Some(i128::from(i));
    }
    if let Some(u) = n.as_u64() {
        return Some(i128::from(u));
    }
    // Written as a float: only where f64 holds every integer exactly (|f| < 2^53), so
    // that a rounded neighbour of the 64-bit bounds is not taken for a value within.
    let f = n.as_f64()?;
    #[allow(clippy::cast_possible_truncation)]
    (f.fract() == 0.0 && f.abs() < 9_007_199_254_740_992.0).then_some(f as i128)
}

/// The number a string sent for an amount holds (`"19.99"`, `" 3 "`), or
/// `invalid_type` at `path`.
pub(super) fn numeric_string(s: &str, path: impl FnOnce() -> String) -> Result<Number, MapError> {
    numeric_text(s.trim()).ok_or_else(|| {
        let path = path();
        let shown: String = s.chars().take(32).collect();
        MapError::field(
            ErrorCode::InvalidType,
            path.clone(),
            format!("{path} must be a number or a numeric string, not {shown:?}"),
        )
    })
}

fn numeric_text(s: &str) -> Option<Number> {
    if let Ok(n) = s.parse::<u64>() {
        return Some(n.into());
    }
    if let Ok(n) = s.parse::<i64>() {
        return Some(n.into());
    }
    // `parse::<f64>` also takes "inf", "NaN" and "1e999" (as infinity): refused here.
    s.parse::<f64>().ok().and_then(Number::from_f64)
}

/// How a carried field is read (see `writer::carry`).
#[derive(Clone, Copy)]
pub(super) enum As {
    /// An identifier: a string, or an integer as its text.
    Ident,
    /// A string, kept as the sender wrote it.
    Text,
    /// An amount or a count: a number, or a numeric string.
    Number,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn number(json: &str) -> Number {
        serde_json::from_str(json).expect("a number")
    }

    #[test]
    fn integral_numbers_include_floats_without_a_fraction() {
        assert_eq!(integral(&number("8129.0")), Some(8129));
        assert_eq!(
            integral(&number("18446744073709551615")),
            Some(18_446_744_073_709_551_615)
        );
        assert_eq!(
            integral(&number("-9223372036854775808")),
            Some(-9_223_372_036_854_775_808)
        );
        assert_eq!(integral(&number("1.5")), None);
        assert_eq!(integral(&number("1.9e19")), None);
    }

    #[test]
    fn numeric_strings_are_finite_numbers() {
        let at = || "price".to_owned();
        assert_eq!(numeric_string("19.99", at).ok(), Number::from_f64(19.99));
        assert_eq!(numeric_string(" 3 ", at).ok(), Some(3u64.into()));
        for bad in ["abc", "NaN", "inf", "1e999", ""] {
            let e = numeric_string(bad, at).expect_err("refused");
            assert_eq!(e.code, "invalid_type", "{bad}");
            assert_eq!(e.field.as_deref(), Some("price"));
        }
    }

    #[test]
    fn identities_are_bounded_in_characters() {
        let at = || "userId".to_owned();
        assert!(check_identity(&"é".repeat(128), at).is_ok());
        let e = check_identity(&"é".repeat(129), at).expect_err("too long");
        assert_eq!(e.code, "too_long");
        assert_eq!(e.field.as_deref(), Some("userId"));
    }
}
