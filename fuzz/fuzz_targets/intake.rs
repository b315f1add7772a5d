//! The Segment and GA4 intake mappers (edge-agent/src/intake/) on arbitrary bytes.
//!
//! The first byte chooses: 0 to 5 a single Segment call of that type (`track`, `page`,
//! ...), 6 a Segment batch, 7 a GA4 Measurement Protocol request.
//!
//! Invariants, beyond "no panic":
//! - Every error carries one of ingest-core's error codes and a message; a field path,
//!   when given, is not empty.
//! - A mapped e-commerce event is a well-formed JSON object the validator can read:
//!   validating it for its type never fails on the JSON the mapping wrote
//!   (`invalid_utf8`, `not_an_object`, `empty_body`, or `invalid_json` other than for a
//!   number out of range), only on the contract's rules and on what the sender wrote
//!   in the values the mapping carries as sent (a repeated key, a number out of range).
//! - A custom event has a name, a non-nil id, and its body is well-formed JSON.
//! - A batch never yields more results than `max_events`.
#![no_main]

use bytes::Bytes;
use ingest_core::{ErrorCode, Limits, Validator};
use ingest_fuzz::intake::{
    ga4_collect, segment_batch, segment_single, MapError, Mapped, SegmentCall,
};
use libfuzzer_sys::fuzz_target;

const MAX_EVENTS: usize = 64;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, body)) = data.split_first() else {
        return;
    };
    let validator = Validator::new(Limits::default());
    let results = match mode % 8 {
        6 => segment_batch(body, MAX_EVENTS),
        7 => ga4_collect(body, MAX_EVENTS),
        n => Ok(vec![segment_single(SegmentCall::ALL[usize::from(n)], body)]),
    };
    let results = match results {
        Ok(results) => results,
        Err(error) => {
            check_error(&error);
            return;
        }
    };
    assert!(results.len() <= MAX_EVENTS);
    for result in results {
        match result {
            Ok(mapped) => check_mapped(&validator, mapped, body),
            Err(error) => check_error(&error),
        }
    }
});

fn check_error(error: &MapError) {
    assert!(
        ErrorCode::ALL.iter().any(|c| c.as_str() == error.code),
        "{error:?}: not an ingest-core error code"
    );
    assert!(!error.message.is_empty(), "{error:?}: no message");
    if let Some(field) = &error.field {
        assert!(!field.is_empty(), "{error:?}: empty field path");
    }
}

/// Codes that say the bytes are not a readable JSON object at all.
const NOT_AN_EVENT: &[ErrorCode] = &[
    ErrorCode::EmptyBody,
    ErrorCode::InvalidUtf8,
    ErrorCode::NotAnObject,
];

/// Whether `json` is well-formed JSON text (numbers are not range-checked: a value the
/// mapping carries is copied as the sender wrote it).
fn well_formed(json: &[u8]) -> Result<(), serde_json::Error> {
    serde_json::from_slice::<serde::de::IgnoredAny>(json).map(drop)
}

/// Whether `body` holds a `\u` escape of a UTF-16 surrogate (`\ud800` to `\udfff`):
/// serde_json reads a lone one in a value it skips, the validator refuses it.
fn holds_surrogate_escape(body: &[u8]) -> bool {
    body.windows(4).any(|w| {
        w[0] == b'\\'
            && w[1] == b'u'
            && w[2].eq_ignore_ascii_case(&b'd')
            && matches!(w[3].to_ascii_lowercase(), b'8'..=b'9' | b'a'..=b'f')
    })
}

fn check_mapped(validator: &Validator, mapped: Mapped, body: &[u8]) {
    match mapped {
        Mapped::Event { kind, json } => {
            well_formed(&json)
                .unwrap_or_else(|e| panic!("a mapped {kind} event is not JSON: {e}"));
            assert!(json.starts_with(b"{"), "a mapped {kind} event is not an object");
            if let Err(error) = validator.validate(Some(kind), Bytes::from(json)) {
                // What the sender wrote in a value the mapping carries as it came: a
                // number out of range, or a lone surrogate escape.
                let senders = error.code() == ErrorCode::InvalidJson
                    && (error.message().ends_with("invalid number")
                        || (error.message().ends_with("invalid escape sequence")
                            && holds_surrogate_escape(body)));
                assert!(
                    !NOT_AN_EVENT.contains(&error.code())
                        && (error.code() != ErrorCode::InvalidJson || senders),
                    "the validator cannot read a mapped {kind} event: {error}"
                );
            }
        }
        Mapped::Custom(custom) => {
            assert!(!custom.name.is_empty(), "a custom event without a name");
            assert!(!custom.event_id.is_nil(), "a custom event without an id");
            well_formed(&custom.body)
                .unwrap_or_else(|e| panic!("a custom event's body is not JSON: {e}"));
        }
    }
}
