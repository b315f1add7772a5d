//! Reading the sender's JSON: the request body, and single values translated into the
//! native contract's types, each failure naming the sender's field.

use ingest_core::ErrorCode;
use serde::Deserialize;
use serde_json::{Map, Number, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

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

/// The JSON type of a value, for messages.
pub(super) fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
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

/// Removes `key` from `map`; `null` counts as absent, as in the native contract.
pub(super) fn take(map: &mut Map<String, Value>, key: &str) -> Option<Value> {
    map.remove(key).filter(|v| !v.is_null())
}

fn wrong_type(value: &Value, path: String, expected: &str) -> MapError {
    let message = format!("{path} must be {expected}, not {}", type_name(value));
    MapError::field(ErrorCode::InvalidType, path, message)
}

/// An identifier (user, product, order, ...): a string, or an integer as its decimal
/// text (SDKs often send numeric database ids).
pub(super) fn ident(value: Value, path: impl FnOnce() -> String) -> Result<String, MapError> {
    match value {
        Value::String(s) => Ok(s),
        Value::Number(n) if integral(&n).is_some() => {
            Ok(integral(&n).map(|i| i.to_string()).unwrap_or_default())
        }
        other => Err(wrong_type(&other, path(), "a string")),
    }
}

/// Longest user or device identifier, in characters (the event contract's bound on
/// `user_id` and `anonymous_id`, and on a custom event's key).
const MAX_IDENTITY_CHARS: usize = 128;

/// A user's or device's identifier: an [`ident`] of at most 128 characters, checked
/// for every call, so that the bound does not depend on whether the call maps to an
/// event type (where the validator checks it) or goes to the custom-events topic.
pub(super) fn identity(value: Value, path: impl Fn() -> String) -> Result<String, MapError> {
    let id = ident(value, &path)?;
    check_identity(&id, path)?;
    Ok(id)
}

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

/// A text field (category, currency, query, URL, ...): a string only.
pub(super) fn text(value: Value, path: impl FnOnce() -> String) -> Result<String, MapError> {
    match value {
        Value::String(s) => Ok(s),
        other => Err(wrong_type(&other, path(), "a string")),
    }
}

/// An amount or a count: a JSON number kept as it is, or a string holding a finite
/// number (some SDKs send prices as `"19.99"`), turned into a JSON number. The range
/// is the validator's to check.
pub(super) fn number(value: Value, path: impl FnOnce() -> String) -> Result<Number, MapError> {
    match value {
        Value::Number(n) => Ok(n),
        Value::String(s) => numeric_string(&s, path),
        other => Err(wrong_type(&other, path(), "a number")),
    }
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

/// An object, or absent; anything else is a type error.
pub(super) fn object(
    value: Option<Value>,
    path: impl FnOnce() -> String,
) -> Result<Map<String, Value>, MapError> {
    match value {
        None => Ok(Map::new()),
        Some(Value::Object(map)) => Ok(map),
        Some(other) => Err(wrong_type(&other, path(), "an object")),
    }
}

/// How a carried field is read (see [`carry`]).
#[derive(Clone, Copy)]
pub(super) enum As {
    /// [`ident`].
    Ident,
    /// [`text`].
    Text,
    /// [`number`].
    Number,
}

/// Moves `key` of the sender's object `from` (found at path `base`) to `native_key` of
/// the native object `to`, read as `read`. Absent or `null` moves nothing.
pub(super) fn carry(
    from: &mut Map<String, Value>,
    key: &str,
    base: &str,
    read: As,
    to: &mut Map<String, Value>,
    native_key: &str,
) -> Result<(), MapError> {
    let Some(value) = take(from, key) else {
        return Ok(());
    };
    let path = || join(base, key);
    let value = match read {
        As::Ident => Value::String(ident(value, path)?),
        As::Text => Value::String(text(value, path)?),
        As::Number => Value::Number(number(value, path)?),
    };
    to.insert(native_key.to_owned(), value);
    Ok(())
}

/// Fails with `missing_field` at the sender's `base.key` when [`carry`] found nothing
/// for `native_key`: the field the event type `needed_for` cannot do without.
pub(super) fn required(
    to: &Map<String, Value>,
    native_key: &str,
    base: &str,
    key: &str,
    needed_for: &str,
) -> Result<(), MapError> {
    if to.contains_key(native_key) {
        return Ok(());
    }
    let path = join(base, key);
    Err(MapError::field(
        ErrorCode::MissingField,
        path.clone(),
        format!("{path} is required for {needed_for}"),
    ))
}

/// One line of a native order (`items[]`): `product_id`, `quantity` (1 when absent)
/// and `price` read from the sender's `line` at `path`, and the line's other fields
/// (name, brand, variant, ...) kept beside them without displacing them.
pub(super) fn order_line(
    mut line: Map<String, Value>,
    product_id: String,
    path: &str,
) -> Result<Value, MapError> {
    let mut out = Map::new();
    out.insert("product_id".into(), product_id.into());
    carry(
        &mut line,
        "quantity",
        path,
        As::Number,
        &mut out,
        "quantity",
    )?;
    out.entry("quantity").or_insert_with(|| 1.into());
    carry(&mut line, "price", path, As::Number, &mut out, "price")?;
    for (key, value) in line {
        out.entry(key).or_insert(value);
    }
    Ok(Value::Object(out))
}

/// A member of an object, `null` when absent.
pub(super) fn member<'v>(object: &'v Value, key: &str) -> &'v Value {
    object.get(key).unwrap_or(&Value::Null)
}

/// A sum of `price × quantity`, rounded to micro-units (the precision the processor
/// stores amounts in), for an order that states no total.
pub(super) fn sum_of_lines<'a>(lines: impl Iterator<Item = (&'a Value, &'a Value)>) -> Option<f64> {
    let mut total = 0.0;
    for (price, quantity) in lines {
        total += price.as_f64()? * quantity.as_f64()?;
    }
    Some((total * 1e6).round() / 1e6)
}

/// A Unix time in microseconds (GA4's `timestamp_micros`: an integer, or its decimal
/// text as protobuf's JSON mapping writes 64-bit integers) as an RFC 3339 date-time.
pub(super) fn micros_to_rfc3339(
    value: &Value,
    path: impl Fn() -> String,
) -> Result<String, MapError> {
    let micros = match value {
        Value::Number(n) => integral(n).and_then(|i| i64::try_from(i).ok()),
        Value::String(s) => s.parse::<i64>().ok(),
        other => return Err(wrong_type(other, path(), "an integer")),
    };
    let invalid = || {
        let path = path();
        MapError::field(
            ErrorCode::InvalidTimestamp,
            path.clone(),
            format!("{path} must be a whole number of microseconds since 1970-01-01T00:00:00Z"),
        )
    };
    let micros = micros.filter(|m| *m >= 0).ok_or_else(invalid)?;
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1000)
        .ok()
        .and_then(|at| at.format(&Rfc3339).ok())
        .ok_or_else(invalid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ids_may_be_integers_written_as_floats() {
        let id = |v: Value| ident(v, || "id".to_owned()).map_err(|e| e.code);
        assert_eq!(id(json!(8129.0)), Ok("8129".to_owned()));
        assert_eq!(
            id(json!(18_446_744_073_709_551_615_u64)),
            Ok("18446744073709551615".to_owned())
        );
        assert_eq!(
            id(json!(-9_223_372_036_854_775_808_i64)),
            Ok("-9223372036854775808".to_owned())
        );
        assert!(id(json!(1.5)).is_err());
        assert!(id(json!(1.9e19)).is_err());
        assert!(id(json!(true)).is_err());
    }

    #[test]
    fn numbers_from_numbers_and_numeric_strings() {
        let at = || "price".to_owned();
        assert_eq!(number(json!(19.99), at).ok(), Number::from_f64(19.99));
        assert_eq!(number(json!("19.99"), at).ok(), Number::from_f64(19.99));
        assert_eq!(number(json!(" 3 "), at).ok(), Some(3u64.into()));
        for bad in [
            json!("abc"),
            json!("NaN"),
            json!("inf"),
            json!("1e999"),
            json!(""),
        ] {
            let e = number(bad.clone(), at).expect_err("refused");
            assert_eq!(e.code, "invalid_type", "{bad}");
            assert_eq!(e.field.as_deref(), Some("price"));
        }
        let e = number(json!([1]), at).expect_err("refused");
        assert_eq!(e.message, "price must be a number, not an array");
    }

    #[test]
    fn identifiers_take_integers_as_text() {
        let at = || "userId".to_owned();
        assert_eq!(ident(json!(42), at).ok().as_deref(), Some("42"));
        assert_eq!(ident(json!("u1"), at).ok().as_deref(), Some("u1"));
        assert_eq!(
            ident(json!(1.5), at).expect_err("float").code,
            "invalid_type"
        );
        assert_eq!(
            ident(json!(true), at).expect_err("bool").code,
            "invalid_type"
        );
    }

    #[test]
    fn micros_become_rfc3339() {
        let at = || "timestamp_micros".to_owned();
        assert_eq!(
            micros_to_rfc3339(&json!(1_796_000_000_123_456_i64), at)
                .ok()
                .as_deref(),
            Some("2026-11-30T00:53:20.123456Z")
        );
        assert_eq!(
            micros_to_rfc3339(&json!("1796000000000000"), at)
                .ok()
                .as_deref(),
            Some("2026-11-30T00:53:20Z")
        );
        for bad in [json!(-1), json!(1.5), json!("x"), json!(i64::MAX)] {
            let e = micros_to_rfc3339(&bad, at).expect_err("refused");
            assert_eq!(e.code, "invalid_timestamp", "{bad}");
        }
        assert_eq!(
            micros_to_rfc3339(&json!({}), at).expect_err("object").code,
            "invalid_type"
        );
    }

    #[test]
    fn sums_round_to_micro_units() {
        let lines = [(json!(19.99), json!(3)), (json!("x"), json!(1))];
        assert_eq!(
            sum_of_lines(lines[..1].iter().map(|(p, q)| (p, q))),
            Some(59.97)
        );
        assert_eq!(sum_of_lines(lines.iter().map(|(p, q)| (p, q))), None);
    }
}
