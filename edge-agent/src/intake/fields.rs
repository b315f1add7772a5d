//! Reading a sender's JSON object without building a tree: its members as borrowed
//! keys and raw values, in the order sent, and single raw values read as the native
//! contract's types. Only the fields a mapping moves are ever decoded; everything else
//! is carried to the output as the bytes it arrived as.

use std::borrow::Cow;
use std::fmt;

use ingest_core::ErrorCode;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Number;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::values::{check_identity, integral, join, json_error, numeric_string};
use super::MapError;

/// The JSON type of a raw value, from its first byte (a raw value is well-formed).
pub(super) fn raw_type_name(raw: &RawValue) -> &'static str {
    match raw.get().as_bytes().first() {
        Some(b'{') => "an object",
        Some(b'[') => "an array",
        Some(b'"') => "a string",
        Some(b't' | b'f') => "a boolean",
        Some(b'n') => "null",
        _ => "a number",
    }
}

/// Whether a value is JSON `null`.
pub(super) fn is_null(raw: &RawValue) -> bool {
    raw.get() == "null"
}

fn wrong_type(raw: &RawValue, path: String, expected: &str) -> MapError {
    let message = format!("{path} must be {expected}, not {}", raw_type_name(raw));
    MapError::field(ErrorCode::InvalidType, path, message)
}

/// Deepest nesting of objects and arrays a message may hold: serde_json's own limit,
/// which a tree reading of the message would have applied.
const MAX_NESTING: usize = 128;

/// Whether well-formed JSON text nests objects and arrays deeper than `max` levels.
/// Reading members and skipping values as raw text does not recurse, so depth is
/// checked by this one scan instead: it keeps what reaches Kafka readable by parsers
/// that do recurse.
fn nests_deeper_than(json: &str, max: usize) -> bool {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &byte in json.as_bytes() {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// Fails with `too_deep` when `raw` nests deeper than [`MAX_NESTING`]: for what goes
/// out as the sender wrote it (a custom event's body), whose nesting nothing else checks.
pub(super) fn check_nesting(raw: &RawValue) -> Result<(), MapError> {
    if nests_deeper_than(raw.get(), MAX_NESTING) {
        return Err(MapError::new(
            ErrorCode::TooDeep,
            format!("JSON nesting is deeper than {MAX_NESTING} levels"),
        ));
    }
    Ok(())
}

/// An object's members, keys borrowed from the input unless they hold escapes.
pub(super) struct Fields<'a> {
    members: Vec<(Cow<'a, str>, &'a RawValue)>,
}

/// Objects with more members than this are checked for repeated keys by sorting a
/// copy of the keys rather than by comparing every pair.
const PAIRWISE_CHECK_MAX: usize = 16;

impl<'a> Fields<'a> {
    /// No members.
    pub(super) fn empty() -> Self {
        Fields {
            members: Vec::new(),
        }
    }

    /// The members of `raw`, which must be an object; `path` names it in errors.
    ///
    /// # Errors
    ///
    /// `invalid_type` when `raw` is not an object, `duplicate_field` when a key appears
    /// twice (the native contract refuses repeated keys, so a translation must not pick
    /// one of them silently), and what serde_json finds wrong with a key or a number.
    pub(super) fn read(raw: &'a RawValue, path: impl Fn() -> String) -> Result<Self, MapError> {
        if !raw.get().starts_with('{') {
            return Err(wrong_type(raw, path(), "an object"));
        }
        let Members(members) = serde_json::from_str(raw.get()).map_err(|e| json_error(&e))?;
        let fields = Fields { members };
        if let Some(key) = fields.repeated_key() {
            // An empty key is named by its quotes, so that the path is never empty.
            let key = if key.is_empty() {
                "\"\"".to_owned()
            } else {
                key
            };
            let path = join(&path(), &key);
            return Err(MapError::field(
                ErrorCode::DuplicateField,
                path.clone(),
                format!("{path} appears more than once"),
            ));
        }
        Ok(fields)
    }

    /// [`Fields::read`] of a member that may be absent or `null` (no members then).
    pub(super) fn read_optional(
        raw: Option<&'a RawValue>,
        path: impl Fn() -> String,
    ) -> Result<Self, MapError> {
        match raw {
            None => Ok(Fields::empty()),
            Some(raw) => Fields::read(raw, path),
        }
    }

    fn repeated_key(&self) -> Option<String> {
        let keys = || self.members.iter().map(|(k, _)| k.as_ref());
        if self.members.len() <= PAIRWISE_CHECK_MAX {
            return keys()
                .enumerate()
                .find(|(i, key)| keys().skip(i + 1).any(|other| other == *key))
                .map(|(_, key)| key.to_owned());
        }
        let mut sorted: Vec<&str> = keys().collect();
        sorted.sort_unstable();
        sorted
            .windows(2)
            .find(|pair| pair[0] == pair[1])
            .map(|pair| pair[0].to_owned())
    }

    /// Removes `key` and returns its value; `null` counts as absent, as in the native
    /// contract (and is removed too).
    pub(super) fn take(&mut self, key: &str) -> Option<&'a RawValue> {
        let index = self.members.iter().position(|(k, _)| k == key)?;
        let (_, value) = self.members.remove(index);
        (!is_null(value)).then_some(value)
    }

    /// The value of `key`, `null` included, without removing it.
    pub(super) fn get(&self, key: &str) -> Option<&'a RawValue> {
        self.members
            .iter()
            .find_map(|(k, v)| (k == key).then_some(*v))
    }

    /// Whether `key` is present (also when `null`).
    pub(super) fn contains(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// Adds `key` at the end unless it is present.
    pub(super) fn insert_missing(&mut self, key: Cow<'a, str>, value: &'a RawValue) {
        if !self.contains(&key) {
            self.members.push((key, value));
        }
    }

    /// Whether no member is left.
    pub(super) fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The members left, in the order sent.
    pub(super) fn iter(&self) -> impl Iterator<Item = (&Cow<'a, str>, &'a RawValue)> + '_ {
        self.members.iter().map(|(k, v)| (k, *v))
    }
}

/// The members of a JSON object, read in one pass.
struct Members<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'de> Deserialize<'de> for Members<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MembersVisitor;
        impl<'de> Visitor<'de> for MembersVisitor {
            type Value = Members<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                // Segment's messages have about ten members.
                let mut members = Vec::with_capacity(map.size_hint().unwrap_or(16));
                while let Some((Unescaped(key), value)) =
                    map.next_entry::<Unescaped<'de>, &RawValue>()?
                {
                    members.push((key, value));
                }
                Ok(Members(members))
            }
        }
        deserializer.deserialize_map(MembersVisitor)
    }
}

/// A JSON string, borrowed from the input unless it holds escapes.
struct Unescaped<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Unescaped<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor;
        impl<'de> Visitor<'de> for TextVisitor {
            type Value = Unescaped<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Self::Value, E> {
                Ok(Unescaped(Cow::Borrowed(s)))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
                Ok(Unescaped(Cow::Owned(s.to_owned())))
            }
        }
        deserializer.deserialize_str(TextVisitor)
    }
}

/// A string value's text (`raw` starts with `"`).
fn string(raw: &RawValue) -> Result<Cow<'_, str>, MapError> {
    serde_json::from_str::<Unescaped<'_>>(raw.get())
        .map(|Unescaped(text)| text)
        .map_err(|e| json_error(&e))
}

/// A string's text: the string only, unescaped (for the values the mapping looks at:
/// names, ids it hashes or measures).
pub(super) fn text(
    raw: &RawValue,
    path: impl FnOnce() -> String,
) -> Result<Cow<'_, str>, MapError> {
    if raw.get().starts_with('"') {
        string(raw)
    } else {
        Err(wrong_type(raw, path(), "a string"))
    }
}

/// A text field the mapping only moves (category, currency, query, URL, ...): a string
/// only, kept as the JSON string the sender wrote, escapes and all.
pub(super) fn literal(
    raw: &RawValue,
    path: impl FnOnce() -> String,
) -> Result<&RawValue, MapError> {
    if raw.get().starts_with('"') {
        Ok(raw)
    } else {
        Err(wrong_type(raw, path(), "a string"))
    }
}

/// An identifier (product, order, cart, coupon, ...), as it will be written.
pub(super) enum Ident<'a> {
    /// A string, as the sender wrote it.
    Literal(&'a RawValue),
    /// An integer, written as its decimal text.
    Integer(i128),
}

impl<'a> Ident<'a> {
    /// The identifier's text.
    pub(super) fn text(&self) -> Result<Cow<'a, str>, MapError> {
        match self {
            Ident::Literal(raw) => string(raw),
            Ident::Integer(i) => Ok(Cow::Owned(i.to_string())),
        }
    }
}

/// An identifier: a string, or an integer as its decimal text (SDKs often send
/// numeric database ids), also when written as an integral float.
pub(super) fn ident(raw: &RawValue, path: impl FnOnce() -> String) -> Result<Ident<'_>, MapError> {
    if raw.get().starts_with('"') {
        return Ok(Ident::Literal(raw));
    }
    match parse_number(raw) {
        Some(Ok(n)) => match integral(&n) {
            Some(i) => Ok(Ident::Integer(i)),
            None => Err(wrong_type(raw, path(), "a string")),
        },
        Some(Err(e)) => Err(e),
        None => Err(wrong_type(raw, path(), "a string")),
    }
}

/// A user's or device's identifier: an [`ident`] of at most 128 characters, checked
/// for every call, so that the bound does not depend on whether the call maps to an
/// event type (where the validator checks it) or goes to the custom-events topic.
pub(super) fn identity(
    raw: &RawValue,
    path: impl Fn() -> String,
) -> Result<Cow<'_, str>, MapError> {
    let id = ident(raw, &path)?.text()?;
    check_identity(&id, path)?;
    Ok(id)
}

/// A JSON number of `raw`, if it is one (`None` for other types).
fn parse_number(raw: &RawValue) -> Option<Result<Number, MapError>> {
    let first = *raw.get().as_bytes().first()?;
    (first == b'-' || first.is_ascii_digit())
        .then(|| serde_json::from_str::<Number>(raw.get()).map_err(|e| json_error(&e)))
}

/// An amount or a count, as it will be written.
#[derive(Clone)]
pub(super) enum Amount<'a> {
    /// A JSON number, kept as the sender wrote it.
    Sent(&'a RawValue),
    /// A number read from a numeric string (`"19.99"`).
    Read(Number),
}

impl Amount<'_> {
    /// The value, for arithmetic.
    pub(super) fn as_f64(&self) -> Option<f64> {
        match self {
            Amount::Sent(raw) => raw.get().parse().ok().filter(|f: &f64| f.is_finite()),
            Amount::Read(n) => n.as_f64(),
        }
    }
}

/// An amount or a count: a JSON number, or a string holding a finite number (some
/// SDKs send prices as `"19.99"`). The range is the validator's to check.
pub(super) fn number(
    raw: &RawValue,
    path: impl FnOnce() -> String,
) -> Result<Amount<'_>, MapError> {
    if raw.get().starts_with('"') {
        return numeric_string(&string(raw)?, path).map(Amount::Read);
    }
    match parse_number(raw) {
        // Parsed only to refuse what serde_json refuses (a number out of f64's range).
        Some(Ok(_)) => Ok(Amount::Sent(raw)),
        Some(Err(e)) => Err(e),
        None => Err(wrong_type(raw, path(), "a number")),
    }
}

/// The members of a message or event found at `prefix` (`""` for a whole body).
///
/// # Errors
///
/// `not_an_object` when it is not an object, and what [`Fields::read`] refuses.
pub(super) fn object_members<'a>(raw: &'a RawValue, prefix: &str) -> Result<Fields<'a>, MapError> {
    if raw.get().starts_with('{') {
        return Fields::read(raw, || prefix.to_owned());
    }
    let (what, path) = if prefix.is_empty() {
        ("the body", None)
    } else {
        (prefix, Some(prefix.to_owned()))
    };
    Err(MapError {
        code: ErrorCode::NotAnObject.as_str(),
        message: format!("{what} must be a JSON object, not {}", raw_type_name(raw)),
        field: path,
    })
}

/// A Unix time in microseconds (GA4's `timestamp_micros`: an integer, or its decimal
/// text as protobuf's JSON mapping writes 64-bit integers) as an RFC 3339 date-time.
pub(super) fn micros_to_rfc3339(
    raw: &RawValue,
    path: impl Fn() -> String,
) -> Result<String, MapError> {
    let micros = if raw.get().starts_with('"') {
        string(raw)?.parse::<i64>().ok()
    } else {
        match parse_number(raw) {
            Some(Ok(n)) => integral(&n).and_then(|i| i64::try_from(i).ok()),
            Some(Err(e)) => return Err(e),
            None => return Err(wrong_type(raw, path(), "an integer")),
        }
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

/// An array's elements, raw.
pub(super) fn elements(
    raw: &RawValue,
    path: impl FnOnce() -> String,
) -> Result<Vec<&RawValue>, MapError> {
    if !raw.get().starts_with('[') {
        return Err(wrong_type(raw, path(), "an array"));
    }
    serde_json::from_str(raw.get()).map_err(|e| json_error(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(json: &str) -> &RawValue {
        serde_json::from_str(json).expect("well-formed")
    }

    #[test]
    fn members_keep_their_order_and_borrow_plain_keys() {
        let value = raw(r#"{"b":1,"a\n":null,"c":"x"}"#);
        let mut fields = Fields::read(value, String::new).expect("an object");
        let keys: Vec<_> = fields.iter().map(|(k, _)| k.to_string()).collect();
        assert_eq!(keys, ["b", "a\n", "c"]);
        assert!(matches!(fields.members[0].0, Cow::Borrowed(_)));
        assert!(fields.contains("a\n"));
        assert!(fields.take("a\n").is_none(), "null counts as absent");
        assert!(!fields.contains("a\n"), "and is removed");
        assert_eq!(fields.take("c").map(RawValue::get), Some(r#""x""#));
    }

    #[test]
    fn repeated_keys_are_refused_in_small_and_large_objects() {
        let small = raw(r#"{"a":1,"b":2,"a":3}"#);
        let e = Fields::read(small, || "properties".to_owned())
            .err()
            .expect("refused");
        assert_eq!(e.code, "duplicate_field");
        assert_eq!(e.field.as_deref(), Some("properties.a"));
        let many: Vec<String> = (0..40).map(|i| format!(r#""k{i}":{i}"#)).collect();
        let large = format!("{{{},\"k7\":0}}", many.join(","));
        let e = Fields::read(raw(&large), String::new)
            .err()
            .expect("refused");
        assert_eq!(e.field.as_deref(), Some("k7"));
        let e = Fields::read(raw(r#"{"":1,"":2}"#), String::new)
            .err()
            .expect("refused");
        assert_eq!(e.field.as_deref(), Some(r#""""#));
        let fine = format!("{{{}}}", many.join(","));
        assert!(Fields::read(raw(&fine), String::new).is_ok());
    }

    #[test]
    fn micros_become_rfc3339() {
        let at = || "timestamp_micros".to_owned();
        let time = |json| micros_to_rfc3339(raw(json), at);
        assert_eq!(
            time("1796000000123456").ok().as_deref(),
            Some("2026-11-30T00:53:20.123456Z")
        );
        assert_eq!(
            time(r#""1796000000000000""#).ok().as_deref(),
            Some("2026-11-30T00:53:20Z")
        );
        for bad in ["-1", "1.5", r#""x""#, "9223372036854775807"] {
            let e = time(bad).expect_err("refused");
            assert_eq!(e.code, "invalid_timestamp", "{bad}");
        }
        assert_eq!(time("{}").expect_err("object").code, "invalid_type");
    }

    #[test]
    fn nesting_is_measured_outside_strings() {
        let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        assert!(!nests_deeper_than(&deep(3), 3));
        assert!(nests_deeper_than(&deep(4), 3));
        assert!(!nests_deeper_than(r#"{"a":"[[[[\"{{{{"}"#, 1));
        assert!(nests_deeper_than(r#"{"a\\":[{}]}"#, 2));
    }

    #[test]
    fn values_are_read_as_the_contract_types() {
        let at = || "f".to_owned();
        let id = |json| ident(raw(json), at).and_then(|id| id.text().map(Cow::into_owned));
        assert_eq!(id("42").ok().as_deref(), Some("42"));
        assert_eq!(id("8129.0").ok().as_deref(), Some("8129"));
        assert_eq!(id(r#""u\u0031""#).ok().as_deref(), Some("u1"));
        assert_eq!(id("1.5").err().map(|e| e.code), Some("invalid_type"));
        assert!(
            matches!(ident(raw(r#""p\n""#), at), Ok(Ident::Literal(r)) if r.get() == r#""p\n""#)
        );
        assert_eq!(
            literal(raw("{}"), at).err().map(|e| e.code),
            Some("invalid_type")
        );
        assert_eq!(
            text(raw("7"), at).err().map(|e| e.message),
            Some("f must be a string, not a number".to_owned())
        );
        let sent = number(raw("19.990"), at).expect("a number");
        assert!(matches!(sent, Amount::Sent(r) if r.get() == "19.990"));
        assert_eq!(
            number(raw(r#"" 3 ""#), at).ok().and_then(|a| a.as_f64()),
            Some(3.0)
        );
        for bad in [r#""NaN""#, r#""1e999""#, "[1]", "true"] {
            assert_eq!(
                number(raw(bad), at).err().map(|e| e.code),
                Some("invalid_type"),
                "{bad}"
            );
        }
        assert_eq!(
            number(raw("1e999"), at).err().map(|e| e.code),
            Some("invalid_json")
        );
        let long = format!("\"{}\"", "é".repeat(129));
        assert_eq!(
            identity(raw(&long), at).err().map(|e| e.code),
            Some("too_long")
        );
    }
}
