//! Validation: is this byte string an event of the public contract?
//!
//! The client's bytes are copied once into a per-thread scratch buffer (simd-json
//! unescapes strings in place, and the original must stay untouched because it is what
//! goes to Kafka), parsed into a tape, and checked against the rules of the event type
//! without building any tree. The only allocation per valid event is its partition key.

mod currency;
mod json;
mod rules;

use std::cell::RefCell;
use std::time::Duration;

use bytes::Bytes;
use simd_json::tape::Tape;
use simd_json::{Buffers, ErrorType, INPUT_PADDING};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::error::{ErrorCode, ValidationError};
use crate::event::EventKind;
use json::Json;

/// Limits applied to every event and batch. All have production-safe defaults
/// (see [`Limits::default`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest accepted event, in bytes (default 32 KiB).
    pub max_event_bytes: usize,
    /// Largest accepted batch body after decompression, in bytes (default 4 MiB).
    pub max_batch_bytes: usize,
    /// Most events in one batch (default 10,000).
    pub max_batch_events: usize,
    /// Deepest JSON nesting inside an event; the event object itself is level 1
    /// (default 32).
    pub max_depth: usize,
    /// How far in the future an event's `timestamp` may be (default 15 minutes).
    pub max_future_skew: Duration,
    /// How far in the past an event's `timestamp` may be (default 7 days).
    pub max_past_age: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_event_bytes: 32 * 1024,
            max_batch_bytes: 4 * 1024 * 1024,
            max_batch_events: 10_000,
            max_depth: 32,
            max_future_skew: Duration::from_secs(15 * 60),
            max_past_age: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

/// An event that passed validation: its bytes, exactly as received, and what routing
/// needs to know about it.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidEvent {
    kind: EventKind,
    event_id: Uuid,
    event_id_generated: bool,
    partition_key: Bytes,
    has_experiments: bool,
    version: u8,
    payload: Bytes,
}

impl ValidEvent {
    /// The event's type.
    pub fn kind(&self) -> EventKind {
        self.kind
    }

    /// The event's id: the client's `event_id`, or a UUIDv7 generated on receipt.
    pub fn event_id(&self) -> Uuid {
        self.event_id
    }

    /// Whether [`event_id`](Self::event_id) was generated because the client sent none.
    pub fn event_id_generated(&self) -> bool {
        self.event_id_generated
    }

    /// The Kafka key: `user_id`, else `anonymous_id`.
    pub fn partition_key(&self) -> &Bytes {
        &self.partition_key
    }

    /// Whether the event names the experiments its user is in (`context.experiments`
    /// with at least one flag).
    pub fn has_experiments(&self) -> bool {
        self.has_experiments
    }

    /// The version of its type's contract the event needs: the highest version that
    /// introduced a field it sets (1 for an event with version 1's fields only). Its
    /// records' `schema` header names it ([`EventKind::schema_of`]).
    pub fn schema_version(&self) -> u8 {
        self.version
    }

    /// The client's bytes, untouched.
    pub fn payload(&self) -> &Bytes {
        &self.payload
    }

    #[cfg_attr(not(feature = "kafka"), allow(dead_code))] // used by the ingestor only
    pub(crate) fn into_parts(self) -> (EventKind, Uuid, Bytes, Bytes) {
        (self.kind, self.event_id, self.partition_key, self.payload)
    }
}

/// Checks events against the public contract. Cheap to clone; usable from any thread.
#[derive(Debug, Clone, Default)]
pub struct Validator {
    limits: Limits,
}

/// Per-thread parse state, reused so a valid event costs no parser allocations.
struct Scratch {
    input: Vec<u8>,
    buffers: Buffers,
    max_depth: usize,
    tape: Option<Tape<'static>>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch {
        input: Vec::new(),
        buffers: Buffers::default(),
        max_depth: 0,
        tape: None,
    });
}

impl Validator {
    /// A validator enforcing `limits`.
    pub fn new(limits: Limits) -> Self {
        Validator { limits }
    }

    /// The limits this validator enforces.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Validates one event.
    ///
    /// `expected` is the type implied by where the event was sent (a typed endpoint);
    /// when it is `None` the event must name its type in a `type` field. A `type` field
    /// that disagrees with `expected` is an error.
    ///
    /// # Errors
    ///
    /// A [`ValidationError`] naming the first rule the event breaks.
    pub fn validate(
        &self,
        expected: Option<EventKind>,
        payload: Bytes,
    ) -> Result<ValidEvent, ValidationError> {
        self.validate_at(expected, payload, OffsetDateTime::now_utc())
    }

    /// [`validate`](Self::validate) with an explicit "now" for the timestamp-skew rule
    /// (one clock read per batch instead of per event).
    ///
    /// # Errors
    ///
    /// As [`validate`](Self::validate).
    pub fn validate_at(
        &self,
        expected: Option<EventKind>,
        payload: Bytes,
        now: OffsetDateTime,
    ) -> Result<ValidEvent, ValidationError> {
        self.validate_inner(expected, payload, now)
            .map_err(|e| match expected {
                // The endpoint names the type even when the bytes could not be read.
                Some(kind) if e.event_kind().is_none() => e.with_event_kind(kind),
                _ => e,
            })
    }

    fn validate_inner(
        &self,
        expected: Option<EventKind>,
        payload: Bytes,
        now: OffsetDateTime,
    ) -> Result<ValidEvent, ValidationError> {
        if payload.iter().all(u8::is_ascii_whitespace) {
            return Err(ValidationError::new(
                ErrorCode::EmptyBody,
                "the event is empty",
            ));
        }
        if payload.len() > self.limits.max_event_bytes {
            return Err(ValidationError::new(
                ErrorCode::EventTooLarge,
                format!(
                    "the event is {} bytes; at most {} are allowed",
                    payload.len(),
                    self.limits.max_event_bytes
                ),
            ));
        }
        let (kind, event_id, partition_key, has_experiments, version) = SCRATCH.with(|cell| {
            let mut scratch = cell.borrow_mut();
            self.check(&mut scratch, expected, &payload, now)
        })?;
        let (event_id, event_id_generated) = match event_id {
            Some(id) => (id, false),
            None => (Uuid::now_v7(), true),
        };
        Ok(ValidEvent {
            kind,
            event_id,
            event_id_generated,
            partition_key,
            has_experiments,
            version,
            payload,
        })
    }

    fn check(
        &self,
        scratch: &mut Scratch,
        expected: Option<EventKind>,
        payload: &[u8],
        now: OffsetDateTime,
    ) -> Result<(EventKind, Option<Uuid>, Bytes, bool, u8), ValidationError> {
        let Scratch {
            input,
            buffers,
            max_depth,
            tape,
        } = scratch;
        if *max_depth != self.limits.max_depth {
            // simd-json counts the root container as depth 1, as our limit does.
            *buffers = Buffers::with_max_depth(payload.len(), self.limits.max_depth);
            *max_depth = self.limits.max_depth;
        }
        input.clear();
        input.extend_from_slice(payload);
        input.resize(payload.len() + INPUT_PADDING, 0);

        let mut parsed = tape.take().unwrap_or_else(Tape::null).reset();
        let outcome = match simd_json::fill_tape_padded(input, payload.len(), buffers, &mut parsed)
        {
            Ok(()) => match Json::root(&parsed.0) {
                Some(root) => {
                    rules::check_event(root, expected, &self.limits, now, may_hold_nul(payload))
                        .map(|facts| {
                            (
                                facts.kind,
                                facts.event_id,
                                Bytes::copy_from_slice(facts.partition_key.as_bytes()),
                                facts.has_experiments,
                                facts.version,
                            )
                        })
                }
                None => Err(ValidationError::new(
                    ErrorCode::EmptyBody,
                    "the event is empty",
                )),
            },
            Err(e) => Err(parse_error(&e, self.limits.max_depth)),
        };
        *tape = Some(parsed.reset());
        outcome
    }
}

/// Whether the event may hold U+0000 in a string or key. JSON can carry it only as the
/// escape `\u0000` (a raw control byte inside a string is malformed JSON), so its absence
/// from the raw bytes proves there is none, and an event with no such escape costs one
/// fast scan. A match is not proof (it may be `\\u0000`, an escaped backslash followed
/// by the text `u0000`): the rules then search the parsed strings.
fn may_hold_nul(payload: &[u8]) -> bool {
    memchr::memmem::find(payload, br"\u0000").is_some()
}

fn parse_error(e: &simd_json::Error, max_depth: usize) -> ValidationError {
    match e.error() {
        ErrorType::DepthLimitExceeded => ValidationError::new(
            ErrorCode::TooDeep,
            format!("JSON nesting is deeper than {max_depth} levels"),
        ),
        ErrorType::InvalidUtf8 => ValidationError::new(
            ErrorCode::InvalidUtf8,
            format!("invalid UTF-8 near byte {}", e.index()),
        ),
        other => ValidationError::new(
            ErrorCode::InvalidJson,
            format!(
                "malformed JSON near byte {}: {}",
                e.index(),
                describe(other)
            ),
        ),
    }
}

fn describe(kind: &ErrorType) -> &'static str {
    match kind {
        ErrorType::Eof | ErrorType::UnterminatedString => "unexpected end of input",
        ErrorType::TrailingData => "unexpected data after the JSON value",
        ErrorType::InvalidNumber | ErrorType::InvalidExponent | ErrorType::Overflow => {
            "invalid number"
        }
        ErrorType::InvalidEscape
        | ErrorType::InvalidUnicodeEscape
        | ErrorType::InvalidUnicodeCodepoint => "invalid escape sequence",
        ErrorType::KeyMustBeAString | ErrorType::ExpectedObjectKey => "object keys must be strings",
        ErrorType::ExpectedObjectColon => "expected ':' after an object key",
        ErrorType::ExpectedMapComma | ErrorType::ExpectedArrayComma => "expected ','",
        _ => "syntax error",
    }
}

/// Parsing a `type` value is validation: a name that is not an event type gets the
/// error an event with that `type` gets. (Here rather than in `event.rs`, so that the
/// event types stand below the error types.)
impl std::str::FromStr for EventKind {
    type Err = ValidationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EventKind::from_name(s).ok_or_else(|| {
            ValidationError::field(
                ErrorCode::UnknownEventType,
                "type",
                format!(
                    "{} is not one of product_view, cart, purchase, search",
                    crate::error::quoted(s)
                ),
            )
        })
    }
}

#[cfg(test)]
mod tests;
