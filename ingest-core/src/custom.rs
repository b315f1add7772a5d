//! Custom events: whatever a storefront sends that is none of the four e-commerce
//! types (a Segment `page` or `identify` call, a GA4 `login`, a newsletter sign-up).
//! They go to their own topic (`topics.custom`, default `custom-events`) so that
//! nothing a shop sends is dropped, while the e-commerce topics keep their contract.
//!
//! A custom event is checked only for what every consumer relies on: a name, a key of
//! at most 128 characters, and a body that is one JSON object within the event size
//! limit. Its record carries the headers `event_type: custom`, `event_name`,
//! `event_id`, `received_at` and `source`; the value is the body, byte for byte.

use bytes::Bytes;
use uuid::Uuid;

use crate::error::{ErrorCode, ValidationError};
use crate::validate::Limits;

/// The `event_type` header of a custom event's record.
pub const CUSTOM_EVENT_TYPE: &str = "custom";
/// Longest custom event name, in bytes (the name travels in a Kafka header).
pub const MAX_CUSTOM_NAME: usize = 256;
/// Longest partition key, in characters (as for `user_id` on the e-commerce types).
const MAX_KEY_CHARS: usize = 128;

/// An event outside the four e-commerce types, for
/// [`Ingestor::submit_custom_with`](crate::Ingestor::submit_custom_with).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomEvent {
    /// What happened, as the sender names it (`Newsletter Subscribed`, `page`, `login`).
    pub name: String,
    /// The partition key: the user's id, so one user's events stay in order. `None`
    /// sends the record without a key (spread over the partitions).
    pub key: Option<String>,
    /// The event's id; `None` generates a UUIDv7.
    pub event_id: Option<Uuid>,
    /// The record's value: one JSON object, sent byte for byte.
    pub body: Bytes,
}

impl CustomEvent {
    /// A custom event without key or id.
    pub fn new(name: impl Into<String>, body: impl Into<Bytes>) -> Self {
        CustomEvent {
            name: name.into(),
            key: None,
            event_id: None,
            body: body.into(),
        }
    }

    /// Sets the partition key.
    #[must_use]
    pub fn with_key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Sets the event id.
    #[must_use]
    pub fn with_event_id(mut self, event_id: Uuid) -> Self {
        self.event_id = Some(event_id);
        self
    }

    /// Checks the name, the key and the body against `limits`.
    ///
    /// # Errors
    ///
    /// A [`ValidationError`] naming the field at fault: `name` (empty, longer than
    /// [`MAX_CUSTOM_NAME`] bytes, or holding control characters), `key` (empty or
    /// longer than 128 characters), or the body (empty, larger than
    /// `limits.max_event_bytes`, not JSON, not an object).
    pub fn check(&self, limits: &Limits) -> Result<(), ValidationError> {
        if self.name.is_empty() {
            return Err(ValidationError::field(
                ErrorCode::MissingField,
                "name",
                "a custom event needs a name",
            ));
        }
        if self.name.len() > MAX_CUSTOM_NAME {
            return Err(ValidationError::field(
                ErrorCode::TooLong,
                "name",
                format!(
                    "the name is {} bytes; at most {MAX_CUSTOM_NAME} are allowed",
                    self.name.len()
                ),
            ));
        }
        if self.name.chars().any(char::is_control) {
            return Err(ValidationError::field(
                ErrorCode::InvalidValue,
                "name",
                "the name holds control characters",
            ));
        }
        if let Some(key) = &self.key {
            if key.is_empty() || key.chars().count() > MAX_KEY_CHARS {
                return Err(ValidationError::field(
                    ErrorCode::InvalidValue,
                    "key",
                    format!("the key must hold 1 to {MAX_KEY_CHARS} characters"),
                ));
            }
        }
        if self.body.iter().all(u8::is_ascii_whitespace) {
            return Err(ValidationError::new(
                ErrorCode::EmptyBody,
                "the event is empty",
            ));
        }
        if self.body.len() > limits.max_event_bytes {
            return Err(ValidationError::new(
                ErrorCode::EventTooLarge,
                format!(
                    "the event is {} bytes; at most {} are allowed",
                    self.body.len(),
                    limits.max_event_bytes
                ),
            ));
        }
        let first = self.body.iter().find(|b| !b.is_ascii_whitespace());
        if first != Some(&b'{') {
            return Err(ValidationError::new(
                ErrorCode::NotAnObject,
                "a custom event is one JSON object",
            ));
        }
        // serde_json stops at its own nesting limit (128), so hostile nesting cannot
        // exhaust the stack; the body is not kept, only checked.
        serde_json::from_slice::<serde::de::IgnoredAny>(&self.body).map_err(|error| {
            ValidationError::new(
                ErrorCode::InvalidJson,
                format!("the event is not well-formed JSON: {error}"),
            )
        })?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(event: &CustomEvent) -> Result<(), ErrorCode> {
        event.check(&Limits::default()).map_err(|e| e.code())
    }

    #[test]
    fn accepts_a_named_json_object() {
        let event = CustomEvent::new("Newsletter Subscribed", r#"{"email_hash":"ab"}"#)
            .with_key("user-1")
            .with_event_id(Uuid::now_v7());
        assert_eq!(check(&event), Ok(()));
    }

    #[test]
    fn refuses_what_consumers_could_not_rely_on() {
        let body = r#"{"a":1}"#;
        assert_eq!(
            check(&CustomEvent::new("", body)),
            Err(ErrorCode::MissingField)
        );
        assert_eq!(
            check(&CustomEvent::new("x".repeat(MAX_CUSTOM_NAME + 1), body)),
            Err(ErrorCode::TooLong)
        );
        assert_eq!(
            check(&CustomEvent::new("a\nb", body)),
            Err(ErrorCode::InvalidValue)
        );
        assert_eq!(
            check(&CustomEvent::new("page", body).with_key("")),
            Err(ErrorCode::InvalidValue)
        );
        assert_eq!(
            check(&CustomEvent::new("page", body).with_key("k".repeat(129))),
            Err(ErrorCode::InvalidValue)
        );
        assert_eq!(
            check(&CustomEvent::new("page", " \n")),
            Err(ErrorCode::EmptyBody)
        );
        assert_eq!(
            check(&CustomEvent::new("page", "[1]")),
            Err(ErrorCode::NotAnObject)
        );
        assert_eq!(
            check(&CustomEvent::new("page", r#"{"a":"#)),
            Err(ErrorCode::InvalidJson)
        );
        let deep = format!("{}{}", "{\"a\":".repeat(10_000), "}".repeat(10_000));
        assert_eq!(
            CustomEvent::new("page", deep)
                .check(&Limits {
                    max_event_bytes: 1 << 20,
                    ..Limits::default()
                })
                .map_err(|e| e.code()),
            Err(ErrorCode::InvalidJson)
        );
        let large = format!(r#"{{"a":"{}"}}"#, "x".repeat(40 * 1024));
        assert_eq!(
            check(&CustomEvent::new("page", large)),
            Err(ErrorCode::EventTooLarge)
        );
    }
}
