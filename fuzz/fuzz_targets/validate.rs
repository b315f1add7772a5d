//! The event validator, for every event type, and batch splitting (NDJSON and JSON
//! arrays).
//!
//! The first byte chooses what the rest is: 0 an event sent to the untyped endpoint
//! (its `type` field names the type), 1 to 4 an event sent to one type's endpoint, 5 a
//! batch body (split, then every event validated untyped).
//!
//! Invariants, beyond "no panic":
//! - An accepted event's payload is the input, byte for byte and without a copy (the
//!   bytes that reach the Kafka record); its type is the endpoint's; and the processor's
//!   decoding of a record reads it: `Event::decode` of its type succeeds, the event has
//!   an identity, passes `check_content`, and its id passes `check_identifier`.
//! - A rejected event has a code and a message; an error about one field names it
//!   (non-empty, printable, bounded); an error from a typed endpoint carries the type.
//! - A batch's events are non-empty, trimmed slices of the body, in order, at most
//!   `max_batch_events`; when serde_json reads the body as a JSON array (or each line
//!   of an NDJSON body as JSON), the split yields exactly its elements (lines).
#![no_main]

use bytes::Bytes;
use ingest_core::model::Event;
use ingest_core::{
    contract, split_batch, ErrorCode, EventKind, Limits, ValidationError, Validator,
};
use libfuzzer_sys::fuzz_target;
use serde_json::value::RawValue;
use time::macros::datetime;
use time::OffsetDateTime;

/// A fixed "now", so a run does not depend on the clock: the time of the intake
/// fixtures (edge-agent/tests/fixtures/intake/README.md), which some seeds share.
const NOW: OffsetDateTime = datetime!(2026-12-01 10:00 UTC);

fuzz_target!(|data: &[u8]| {
    let Some((&mode, body)) = data.split_first() else {
        return;
    };
    let validator = Validator::new(Limits::default());
    let body = Bytes::copy_from_slice(body);
    match mode % 6 {
        0 => check_event(&validator, None, body),
        5 => check_batch(&validator, body),
        n => check_event(&validator, Some(EventKind::ALL[usize::from(n - 1)]), body),
    }
});

fn check_event(validator: &Validator, expected: Option<EventKind>, payload: Bytes) {
    match validator.validate_at(expected, payload.clone(), NOW) {
        Ok(event) => {
            assert_eq!(event.payload(), &payload, "the payload is the input");
            assert_eq!(event.payload().as_ptr(), payload.as_ptr(), "and not a copy");
            if let Some(kind) = expected {
                assert_eq!(event.kind(), kind, "the endpoint's type");
            }
            let kind = event.kind();
            assert_eq!(
                EventKind::from_name(kind.as_str()),
                Some(kind),
                "event_type header"
            );
            assert!(!event.partition_key().is_empty(), "the record has a key");
            // What the processor does with the record (processor/src/pipeline/decode.rs).
            let decoded = Event::decode(kind, event.payload())
                .unwrap_or_else(|e| panic!("an accepted {kind} event does not decode: {e}"));
            assert_eq!(decoded.kind(), kind);
            assert!(
                decoded.common().identity().is_some(),
                "accepted without identity"
            );
            if let Err(e) = decoded.check_content() {
                panic!("an accepted {kind} event fails the processor's content check: {e}");
            }
            let id = event.event_id().to_string();
            assert_eq!(contract::check_identifier(&id), Ok(()), "event id {id}");
        }
        Err(error) => {
            check_error(&error);
            if expected.is_some() {
                assert!(
                    error.event_kind().is_some(),
                    "a typed endpoint's error names the type: {error}"
                );
            }
        }
    }
}

/// Codes that are always about one field.
const FIELD_CODES: &[ErrorCode] = &[
    ErrorCode::MissingField,
    ErrorCode::InvalidType,
    ErrorCode::InvalidValue,
    ErrorCode::InvalidCurrency,
    ErrorCode::InvalidTimestamp,
    ErrorCode::TimestampOutOfRange,
    ErrorCode::InvalidEventId,
    ErrorCode::TooLong,
];

fn check_error(error: &ValidationError) {
    assert!(!error.code().as_str().is_empty());
    assert!(!error.message().is_empty(), "{error:?} has no message");
    if FIELD_CODES.contains(&error.code()) {
        let field = error
            .field_path()
            .unwrap_or_else(|| panic!("{error:?} names no field"));
        assert!(!field.is_empty(), "{error:?}: empty field path");
    }
    if let Some(field) = error.field_path() {
        assert!(
            field.chars().count() <= 1024,
            "{error:?}: unbounded field path"
        );
        assert!(
            !field.chars().any(char::is_control),
            "{error:?}: control characters in the field path"
        );
    }
    assert!(
        !error.message().chars().any(|c| c.is_control() && c != '\n'),
        "{error:?}: control characters in the message"
    );
}

fn check_batch(validator: &Validator, body: Bytes) {
    let limits = validator.limits();
    let events = match split_batch(&body, limits) {
        Ok(events) => events,
        Err(error) => {
            check_error(&error);
            assert_ne!(
                reference_split(&body).map(|r| r.len() <= limits.max_batch_events),
                Some(true),
                "serde_json reads the batch, the split refuses it: {error}"
            );
            return;
        }
    };
    assert!(events.len() <= limits.max_batch_events);
    let range = body.as_ptr_range();
    let mut last_end = range.start;
    for event in &events {
        assert!(!event.is_empty(), "an empty event");
        let slice = event.as_ptr_range();
        assert!(
            slice.start >= last_end && slice.end <= range.end,
            "events are slices of the body, in order"
        );
        last_end = slice.end;
        assert!(
            !event[0].is_ascii_whitespace() && !event[event.len() - 1].is_ascii_whitespace(),
            "trimmed"
        );
    }
    if let Some(reference) = reference_split(&body) {
        let got: Vec<&[u8]> = events.iter().map(|e| &e[..]).collect();
        assert_eq!(
            got, reference,
            "the split differs from serde_json's reading"
        );
    }
    for event in events {
        check_event(validator, None, event);
    }
}

/// The events of `body` as serde_json reads them: a JSON array's elements, or the
/// lines of NDJSON whose every non-blank line is JSON; `None` for anything else.
fn reference_split(body: &[u8]) -> Option<Vec<&[u8]>> {
    let text = std::str::from_utf8(body).ok()?;
    let first = text.trim_start_matches(|c: char| c.is_ascii_whitespace());
    if first.is_empty() {
        return None;
    }
    if first.starts_with('[') {
        let elements: Vec<&RawValue> = serde_json::from_str(text).ok()?;
        return Some(elements.iter().map(|e| e.get().as_bytes()).collect());
    }
    let mut lines = Vec::new();
    for line in text.split('\n') {
        let line = line.trim_matches(|c: char| c.is_ascii_whitespace());
        if line.is_empty() {
            continue;
        }
        serde_json::from_str::<&RawValue>(line).ok()?;
        lines.push(line.as_bytes());
    }
    Some(lines)
}
