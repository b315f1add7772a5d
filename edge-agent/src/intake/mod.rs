//! Intake of the formats shops already send: Segment's HTTP tracking API and Google
//! Analytics 4's Measurement Protocol, translated into this project's events.
//!
//! This module is the pure translation layer: bytes in, [`Mapped`] values out, no I/O.
//! The HTTP endpoints authenticate, call [`segment_single`], [`segment_batch`] or
//! [`ga4_collect`], and submit what comes back:
//!
//! - [`Mapped::Event`]: an e-commerce event (`Product Viewed`, `Order Completed`,
//!   `view_item`, `purchase`, ...) as a native JSON event of the public contract, for
//!   `Ingestor::submit_with(kind, ..)`. The validator still checks it: the mapping
//!   translates, it does not judge amounts, lengths or timestamps.
//! - [`Mapped::Custom`]: everything else (other event names; Segment's `page`,
//!   `identify`, `screen`, `group` and `alias` calls), for the custom-events topic, never
//!   dropped.
//!
//! The mapping tables, defaults and decisions are in `docs/intake.md`. The rules that
//! shape the code:
//!
//! - **Nothing the sender said is lost.** Fields with a native home are moved there;
//!   the rest of `properties` / `params` is kept under the native event's `properties`,
//!   and the rest of the envelope (Segment's `context` remainder, `integrations`, GA4's
//!   `user_properties`, ...) under `source`. Unknown fields travel to Kafka untouched.
//!   The one exception is a Segment `writeKey` sent in a body: it is a credential.
//! - **Errors name the sender's field**, by its path in the sender's payload
//!   (`batch[3].properties.products[0].price`), with ingest-core's error codes
//!   ([`ingest_core::ErrorCode`]; every case fits one of them, so there are no
//!   intake-specific codes). The mapping reports what it must decide itself: the
//!   body's shape, values of a type it cannot translate, and a missing field that
//!   identifies the event (product, order, search query). Everything else is the
//!   validator's, whose paths are the native ones (`items[0].price`).
//! - **Ids are deterministic** where the sender gives something to derive them from, so
//!   a resend is de-duplicated downstream (`id.rs`).

mod fields;
mod ga4;
mod id;
mod order;
mod segment;
mod values;
mod writer;

use std::fmt;

use bytes::Bytes;
use ingest_core::EventKind;
use uuid::Uuid;

pub use ga4::ga4_collect;
pub use segment::{segment_batch, segment_single, segment_without_write_key, SegmentCall};

/// One message of a Segment or GA4 request, translated.
#[derive(Debug, Clone, PartialEq)]
pub enum Mapped {
    /// An e-commerce event, as this project's own JSON event (the public contract),
    /// ready for `Ingestor::submit_with(kind, Bytes::from(json), ..)`.
    Event {
        /// The event's type (it carries no `type` field: the kind says it).
        kind: EventKind,
        /// The native event, serialised.
        json: Vec<u8>,
    },
    /// Any other event or call, for the custom-events topic.
    Custom(Custom),
}

/// An event with no native type, kept as the sender sent it.
#[derive(Debug, Clone, PartialEq)]
pub struct Custom {
    /// Segment: the event name of a `track` call, else the call type (`page`,
    /// `identify`, ...); GA4: the event name.
    pub name: String,
    /// The partition key: Segment's `userId`, else `anonymousId`; GA4's `user_id`, else
    /// `client_id` (else `app_instance_id`). `None` when the sender gave neither.
    pub key: Option<String>,
    /// Derived from the sender's id where there is one (see `docs/intake.md`), so a
    /// resend carries the same id; otherwise a fresh UUIDv7.
    pub event_id: Uuid,
    /// Segment: the message's bytes exactly as sent. GA4: a JSON object with the
    /// request's `client_id`, `app_instance_id`, `user_id`, `timestamp_micros` and
    /// `user_properties` and the event's bytes as sent under `event`.
    pub body: Bytes,
}

/// Why a request, or one message of it, cannot be translated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapError {
    /// ingest-core's error code (`ErrorCode::X.as_str()`: `invalid_json`,
    /// `missing_field`, `invalid_type`, ...).
    pub code: &'static str,
    /// What is wrong, for a person.
    pub message: String,
    /// The field's path in the sender's payload (`batch[3].properties.price`), when the
    /// error is about one field.
    pub field: Option<String>,
}

impl MapError {
    pub(crate) fn new(code: ingest_core::ErrorCode, message: impl Into<String>) -> Self {
        MapError {
            code: code.as_str(),
            message: message.into(),
            field: None,
        }
    }

    pub(crate) fn field(
        code: ingest_core::ErrorCode,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        MapError {
            code: code.as_str(),
            message: message.into(),
            field: Some(field.into()),
        }
    }
}

impl MapError {
    /// The same error as ingest-core's type, for the dead-letter topic's headers.
    pub fn to_validation_error(&self) -> ingest_core::ValidationError {
        let code = ingest_core::ErrorCode::ALL
            .iter()
            .copied()
            .find(|c| c.as_str() == self.code)
            .unwrap_or(ingest_core::ErrorCode::InvalidValue);
        match &self.field {
            Some(field) => {
                ingest_core::ValidationError::field(code, field.clone(), self.message.clone())
            }
            None => ingest_core::ValidationError::new(code, self.message.clone()),
        }
    }
}

impl fmt::Display for MapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.field {
            Some(field) => write!(f, "{} ({field}): {}", self.code, self.message),
            None => write!(f, "{}: {}", self.code, self.message),
        }
    }
}

impl std::error::Error for MapError {}
