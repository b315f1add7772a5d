//! Splitting a batch body into events without parsing them.
//!
//! A batch is NDJSON (one event per line) or a JSON array of events; the first
//! non-blank byte decides (`[` means array). Splitting only tracks strings and brackets,
//! so it is a single fast pass, and every event comes out as a [`Bytes::slice`] of the
//! body: the bytes that reach Kafka are the client's, not a re-serialisation. Events are
//! validated one by one afterwards, so one malformed event never sinks its neighbours;
//! only a body whose overall structure is broken (an unterminated array, say) is
//! rejected whole.

use bytes::Bytes;
use memchr::{memchr, memchr2};

use crate::error::{ErrorCode, ValidationError};
use crate::validate::Limits;

/// Splits a batch body into its events (whitespace around each one trimmed).
///
/// # Errors
///
/// `empty_body`, `batch_too_large`, `too_many_events`, or `invalid_json` when a JSON
/// array body is structurally broken.
pub fn split_batch(body: &Bytes, limits: &Limits) -> Result<Vec<Bytes>, ValidationError> {
    if body.len() > limits.max_batch_bytes {
        return Err(ValidationError::new(
            ErrorCode::BatchTooLarge,
            format!(
                "the batch is {} bytes; at most {} are allowed",
                body.len(),
                limits.max_batch_bytes
            ),
        ));
    }
    let start = body
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .ok_or_else(|| ValidationError::new(ErrorCode::EmptyBody, "the batch is empty"))?;
    let events = if body[start] == b'[' {
        split_array(body, start, limits.max_batch_events)?
    } else {
        split_lines(body, limits.max_batch_events)?
    };
    Ok(events)
}

fn too_many(max: usize) -> ValidationError {
    ValidationError::new(
        ErrorCode::TooManyEvents,
        format!("the batch holds more than {max} events"),
    )
}

fn malformed(at: usize, what: &str) -> ValidationError {
    ValidationError::new(
        ErrorCode::InvalidJson,
        format!("malformed JSON array near byte {at}: {what}"),
    )
}

/// The range `from..to` of `body` without surrounding ASCII whitespace.
fn trimmed(body: &Bytes, from: usize, to: usize) -> Bytes {
    let slice = &body[from..to];
    let lead = slice.iter().take_while(|b| b.is_ascii_whitespace()).count();
    let trail = slice[lead..]
        .iter()
        .rev()
        .take_while(|b| b.is_ascii_whitespace())
        .count();
    body.slice(from + lead..to - trail)
}

fn split_lines(body: &Bytes, max_events: usize) -> Result<Vec<Bytes>, ValidationError> {
    let mut events = Vec::new();
    let mut from = 0;
    while from < body.len() {
        let to = memchr(b'\n', &body[from..]).map_or(body.len(), |i| from + i);
        let event = trimmed(body, from, to);
        if !event.is_empty() {
            if events.len() == max_events {
                return Err(too_many(max_events));
            }
            events.push(event);
        }
        from = to + 1;
    }
    Ok(events)
}

fn split_array(
    body: &Bytes,
    open: usize,
    max_events: usize,
) -> Result<Vec<Bytes>, ValidationError> {
    let bytes = &body[..];
    let mut events = Vec::new();
    let mut depth = 0usize; // nesting inside the current element
    let mut element_start = open + 1;
    let mut i = open + 1;
    loop {
        let Some(&b) = bytes.get(i) else {
            return Err(malformed(i, "unexpected end of input, expected ']'"));
        };
        match b {
            b'"' => i = skip_string(bytes, i)?,
            b'{' | b'[' => depth += 1,
            b'}' | b']' if depth > 0 => depth -= 1,
            b'}' => return Err(malformed(i, "unbalanced '}'")),
            b',' | b']' if depth == 0 => {
                let event = trimmed(body, element_start, i);
                let closing = b == b']';
                if event.is_empty() {
                    // `[]` is an empty batch; `[,` `[1,]` `[1,,2]` are broken.
                    if !(closing && events.is_empty() && element_start == open + 1) {
                        return Err(malformed(i, "empty array element"));
                    }
                } else {
                    if events.len() == max_events {
                        return Err(too_many(max_events));
                    }
                    events.push(event);
                }
                element_start = i + 1;
                if closing {
                    if let Some(extra) =
                        bytes[i + 1..].iter().position(|b| !b.is_ascii_whitespace())
                    {
                        return Err(malformed(i + 1 + extra, "unexpected data after the array"));
                    }
                    return Ok(events);
                }
            }
            _ => {}
        }
        i += 1;
    }
}

/// Given `bytes[quote] == b'"'`, returns the index of the closing quote.
fn skip_string(bytes: &[u8], quote: usize) -> Result<usize, ValidationError> {
    let mut i = quote + 1;
    loop {
        match memchr2(b'"', b'\\', &bytes[i..]) {
            Some(offset) if bytes[i + offset] == b'"' => return Ok(i + offset),
            // A backslash escapes the next byte, whatever it is.
            Some(offset) => i += offset + 2,
            None => return Err(malformed(bytes.len(), "unterminated string")),
        }
        if i >= bytes.len() {
            return Err(malformed(bytes.len(), "unterminated string"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn split(body: &str) -> Result<Vec<String>, ValidationError> {
        let body = Bytes::copy_from_slice(body.as_bytes());
        split_batch(&body, &Limits::default()).map(|v| {
            v.iter()
                .map(|b| String::from_utf8(b.to_vec()).expect("utf-8"))
                .collect()
        })
    }

    #[test]
    fn ndjson_lines_blank_lines_and_crlf() {
        let got = split("{\"a\":1}\r\n\n  {\"b\":2}  \n{\"c\":3}").expect("splits");
        assert_eq!(got, ["{\"a\":1}", "{\"b\":2}", "{\"c\":3}"]);
    }

    #[test]
    fn array_elements_with_tricky_strings() {
        let got =
            split(r#" [ {"q":"a,b]"} , {"q":"\"},["}, {"n":[1,2,{"x":"\\"}]} ] "#).expect("splits");
        assert_eq!(
            got,
            [
                r#"{"q":"a,b]"}"#,
                r#"{"q":"\"},["}"#,
                r#"{"n":[1,2,{"x":"\\"}]}"#
            ]
        );
    }

    #[test]
    fn slices_share_the_body() {
        let body = Bytes::from_static(b"[{\"a\":1},{\"b\":2}]");
        let events = split_batch(&body, &Limits::default()).expect("splits");
        let base = body.as_ptr() as usize;
        assert_eq!(events[0].as_ptr() as usize - base, 1);
        assert_eq!(events[1].as_ptr() as usize - base, 9);
    }

    #[test]
    fn empty_array_is_an_empty_batch() {
        assert!(split("[]").expect("splits").is_empty());
        assert!(split(" [ ] ").expect("splits").is_empty());
    }

    #[test]
    fn broken_arrays_are_rejected_whole() {
        for body in [
            "[",
            "[{\"a\":1}",
            "[{\"a\":1},]",
            "[,]",
            "[1,,2]",
            "[{\"a\":\"x]",
            "[{}}]",
            "[{}] x",
        ] {
            let err = split(body).expect_err(body);
            assert_eq!(err.code(), ErrorCode::InvalidJson, "{body}: {err}");
        }
    }

    #[test]
    fn malformed_elements_are_left_to_validation() {
        // Structure is fine, content is not: split, and let validation reject element 1.
        assert_eq!(split("[{\"a\":1}, {bad}, 3]").expect("splits").len(), 3);
    }

    #[test]
    fn empty_and_blank_bodies() {
        for body in ["", "   \n\t "] {
            assert_eq!(split(body).expect_err(body).code(), ErrorCode::EmptyBody);
        }
    }

    #[test]
    fn limits_on_size_and_count() {
        let limits = Limits {
            max_batch_bytes: 20,
            max_batch_events: 2,
            ..Limits::default()
        };
        let big = Bytes::from(vec![b' '; 21]);
        assert_eq!(
            split_batch(&big, &limits).expect_err("big").code(),
            ErrorCode::BatchTooLarge
        );
        let three = Bytes::from_static(b"{}\n{}\n{}");
        assert_eq!(
            split_batch(&three, &limits).expect_err("3").code(),
            ErrorCode::TooManyEvents
        );
        let three = Bytes::from_static(b"[{},{},{}]");
        assert_eq!(
            split_batch(&three, &limits).expect_err("3").code(),
            ErrorCode::TooManyEvents
        );
    }

    proptest! {
        #[test]
        fn never_panics_on_arbitrary_bytes(body in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = split_batch(&Bytes::from(body), &Limits::default());
        }

        #[test]
        fn array_of_json_objects_round_trips(values in proptest::collection::vec(
            proptest::collection::btree_map("[a-z\"\\\\,\\[\\]{} ]{0,6}", "[ -~]{0,8}", 0..4), 0..20)
        ) {
            let texts: Vec<String> = values
                .iter()
                .map(|m| serde_json::to_string(m).expect("serialises"))
                .collect();
            let body = format!("[{}]", texts.join(" , "));
            let got = split(&body).expect("splits");
            prop_assert_eq!(&got, &texts);
            let ndjson = texts.join("\n");
            let got = split(&ndjson);
            if texts.is_empty() {
                prop_assert!(got.is_err());
            } else {
                prop_assert_eq!(got.expect("splits"), texts);
            }
        }
    }
}
