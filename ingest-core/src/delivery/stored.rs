//! The form of an event in the disk buffer: everything needed to send it again after
//! a restart, with the payload untouched.
//!
//! ```text
//! u8 version (1 or 2) | u8 event kind | [u8; 16] event_id | i64 received_at (Unix ms)
//! | u16 source length | source | u16 key length | key
//! | (version 2 only: u16 experiments length | experiments)
//! | (custom events only: u16 name length | name) | payload (the rest)
//! ```
//!
//! The kind is the event kind's index (0..=3), or 4 for a custom event; an event needing
//! version 2 of its type's contract adds 16 (`product_view` with `variant`: 16). A
//! version that predates custom events reads kind 4 as undecodable (counted, not sent),
//! as one before contract version 2 reads 16. Version 2 is
//! written only for records with an `experiments` header (flag assignments made on
//! receipt), so a buffer without them stays readable by the versions before it.
//!
//! Integers are little-endian. The buffer's own framing adds the length and checksum;
//! this layout only has to be unambiguous. Decoding slices the payload, key and source
//! out of the buffer's `Bytes` without copying.

use std::sync::Arc;

use bytes::Bytes;
use uuid::Uuid;

use super::record::{CustomRoute, Destination, Record};
use crate::custom::MAX_CUSTOM_NAME;
use crate::event::EventKind;
use crate::stored_size::{FIXED_LEN, MAX_EXPERIMENTS_HEADER};

const VERSION: u8 = 1;
/// The version of records with an `experiments` header.
const VERSION_WITH_EXPERIMENTS: u8 = 2;
const MAX_SOURCE: usize = 1024;
/// The kind code of a custom event.
const CUSTOM_CODE: u8 = EventKind::ALL.len() as u8;

/// What a stored record is: one of the event kinds, or a custom event with its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StoredKind {
    /// An event, and the version of its type's contract.
    Event(EventKind, u8),
    Custom(Arc<str>),
}

/// An event read back from the disk buffer.
pub(crate) struct StoredEvent {
    pub(crate) kind: StoredKind,
    pub(crate) event_id: Uuid,
    pub(crate) received_at_ms: i64,
    source: Bytes,
    pub(crate) key: Bytes,
    experiments: Option<Bytes>,
    pub(crate) payload: Bytes,
}

impl StoredEvent {
    /// The `experiments` header, if the record has one (checked to be UTF-8 when
    /// decoded).
    pub(crate) fn experiments(&self) -> Option<&str> {
        self.experiments
            .as_deref()
            .and_then(|e| std::str::from_utf8(e).ok())
    }

    /// The sender's id (checked to be UTF-8 when decoded).
    pub(crate) fn source(&self) -> &str {
        std::str::from_utf8(&self.source).unwrap_or("")
    }

    pub(crate) fn destination(&self) -> Destination {
        match &self.kind {
            StoredKind::Event(kind, version) => Destination::Event {
                kind: *kind,
                event_id: self.event_id,
                version: *version,
            },
            StoredKind::Custom(name) => Destination::Custom(Box::new(CustomRoute {
                name: name.clone(),
                event_id: self.event_id,
            })),
        }
    }
}

/// Why stored bytes are not a record this version can read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum DecodeError {
    #[error("unknown stored record version {0}")]
    Version(u8),
    #[error("unknown event kind {0}")]
    Kind(u8),
    #[error("stored record cut short")]
    Short,
    #[error("source is not UTF-8")]
    Source,
    #[error("custom event name is not UTF-8")]
    Name,
    #[error("experiments header is not UTF-8")]
    Experiments,
}

/// Appends the stored form of an event record to `out`. Dead-letter records are never
/// stored (they go to the producer directly); for them nothing is written and `false`
/// is returned.
pub(crate) fn encode(record: &Record, out: &mut Vec<u8>) -> bool {
    let (code, event_id, name) = match &record.destination {
        Destination::Event {
            kind,
            event_id,
            version,
        } => (kind_code(*kind, *version), event_id, None),
        Destination::Custom(route) => (
            CUSTOM_CODE,
            &route.event_id,
            Some(truncate_utf8(&route.name, MAX_CUSTOM_NAME).as_bytes()),
        ),
        Destination::DeadLetter { .. } => return false,
    };
    let source = truncate_utf8(&record.source, MAX_SOURCE).as_bytes();
    let key: &[u8] = record.key.as_deref().unwrap_or_default();
    let key = &key[..key.len().min(usize::from(u16::MAX))];
    let name_len = name.map_or(0, |n| 2 + n.len());
    let experiments = record
        .experiments
        .as_deref()
        .map(|e| truncate_utf8(e, MAX_EXPERIMENTS_HEADER).as_bytes());
    let experiments_len = experiments.map_or(0, |e| 2 + e.len());
    out.reserve(
        FIXED_LEN + source.len() + key.len() + experiments_len + name_len + record.payload.len(),
    );
    out.push(if experiments.is_some() {
        VERSION_WITH_EXPERIMENTS
    } else {
        VERSION
    });
    out.push(code);
    out.extend_from_slice(event_id.as_bytes());
    out.extend_from_slice(&record.received_at_ms.to_le_bytes());
    out.extend_from_slice(&len_u16(source.len()).to_le_bytes());
    out.extend_from_slice(source);
    out.extend_from_slice(&len_u16(key.len()).to_le_bytes());
    out.extend_from_slice(key);
    if let Some(experiments) = experiments {
        out.extend_from_slice(&len_u16(experiments.len()).to_le_bytes());
        out.extend_from_slice(experiments);
    }
    if let Some(name) = name {
        out.extend_from_slice(&len_u16(name.len()).to_le_bytes());
        out.extend_from_slice(name);
    }
    out.extend_from_slice(&record.payload);
    true
}

/// Reads a stored record.
pub(crate) fn decode(bytes: &Bytes) -> Result<StoredEvent, DecodeError> {
    if bytes.len() < FIXED_LEN {
        return Err(DecodeError::Short);
    }
    if bytes[0] != VERSION && bytes[0] != VERSION_WITH_EXPERIMENTS {
        return Err(DecodeError::Version(bytes[0]));
    }
    let code = bytes[1];
    if code != CUSTOM_CODE && kind_from_code(code).is_none() {
        return Err(DecodeError::Kind(code));
    }
    let mut id = [0u8; 16];
    id.copy_from_slice(&bytes[2..18]);
    let mut at = [0u8; 8];
    at.copy_from_slice(&bytes[18..26]);
    let mut pos = 26;
    let source = take(bytes, &mut pos)?;
    std::str::from_utf8(&source).map_err(|_| DecodeError::Source)?;
    let key = take(bytes, &mut pos)?;
    let experiments = if bytes[0] == VERSION_WITH_EXPERIMENTS {
        let experiments = take(bytes, &mut pos)?;
        std::str::from_utf8(&experiments).map_err(|_| DecodeError::Experiments)?;
        Some(experiments)
    } else {
        None
    };
    let kind = match kind_from_code(code) {
        Some((kind, version)) => StoredKind::Event(kind, version),
        None => {
            let name = take(bytes, &mut pos)?;
            let name = std::str::from_utf8(&name).map_err(|_| DecodeError::Name)?;
            StoredKind::Custom(Arc::from(name))
        }
    };
    Ok(StoredEvent {
        kind,
        event_id: Uuid::from_bytes(id),
        received_at_ms: i64::from_le_bytes(at),
        source,
        key,
        experiments,
        payload: bytes.slice(pos..),
    })
}

/// The `received_at` of a stored record, without decoding the rest.
pub(crate) fn received_at_ms(bytes: &[u8]) -> Option<i64> {
    let at: [u8; 8] = bytes.get(18..26)?.try_into().ok()?;
    Some(i64::from_le_bytes(at))
}

/// A length-prefixed field at `pos`, moving `pos` past it.
fn take(bytes: &Bytes, pos: &mut usize) -> Result<Bytes, DecodeError> {
    let len: [u8; 2] = bytes
        .get(*pos..*pos + 2)
        .and_then(|b| b.try_into().ok())
        .ok_or(DecodeError::Short)?;
    let start = *pos + 2;
    let end = start + usize::from(u16::from_le_bytes(len));
    if end > bytes.len() {
        return Err(DecodeError::Short);
    }
    *pos = end;
    Ok(bytes.slice(start..end))
}

fn len_u16(len: usize) -> u16 {
    u16::try_from(len).unwrap_or(u16::MAX)
}

fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Contract versions past the first, in steps of this (below it: the kind).
const VERSION_STEP: u8 = 16;

fn kind_code(kind: EventKind, version: u8) -> u8 {
    // The index is stable: it is part of the stored format.
    kind.index() as u8 + VERSION_STEP * version.clamp(1, kind.latest_version()).saturating_sub(1)
}

/// The event kind and contract version of a code; `None` for the custom code and
/// codes this version does not know.
fn kind_from_code(code: u8) -> Option<(EventKind, u8)> {
    let kind = *EventKind::ALL.get(usize::from(code % VERSION_STEP))?;
    let version = code / VERSION_STEP + 1;
    (version <= kind.latest_version()).then_some((kind, version))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::delivery::Tracker;

    fn record(kind: EventKind, version: u8, key: &[u8], source: &str, payload: &[u8]) -> Record {
        let mut record = Record::new(
            Destination::Event {
                kind,
                event_id: Uuid::now_v7(),
                version,
            },
            Some(Bytes::copy_from_slice(key)),
            Bytes::copy_from_slice(payload),
            1_795_514_400_123,
            Arc::from(source),
            Tracker::new(1, true),
        );
        // Settle the tracker so dropping the record does not count a failure.
        drop(record.take_tracker());
        record
    }

    proptest! {
        #[test]
        fn round_trips(
            kind in 0usize..4,
            version in 1u8..=2,
            key in proptest::collection::vec(any::<u8>(), 0..300),
            source in ".{0,40}",
            experiments in proptest::option::of("[a-z_]{1,10}=[a-z]{1,8}(,[a-z_]{1,10}=[a-z]{1,8}){0,3}"),
            payload in proptest::collection::vec(any::<u8>(), 0..2000),
        ) {
            let kind = EventKind::ALL[kind];
            let version = version.min(kind.latest_version());
            let original = record(kind, version, &key, &source, &payload).with_experiments(experiments.clone());
            let mut out = Vec::new();
            prop_assert!(encode(&original, &mut out));
            let bytes = Bytes::from(out);
            let stored = decode(&bytes).expect("decodes");
            prop_assert_eq!(&stored.kind, &StoredKind::Event(kind, version));
            let Destination::Event { event_id, .. } = original.destination else { unreachable!() };
            prop_assert_eq!(stored.event_id, event_id);
            prop_assert_eq!(stored.received_at_ms, 1_795_514_400_123);
            prop_assert_eq!(received_at_ms(&bytes), Some(1_795_514_400_123));
            prop_assert_eq!(stored.source(), source.as_str());
            prop_assert_eq!(&stored.key[..], &key[..]);
            prop_assert_eq!(stored.experiments(), experiments.as_deref());
            // Without assignments, the version earlier releases read.
            prop_assert_eq!(bytes[0], if experiments.is_some() { 2 } else { 1 });
            prop_assert_eq!(&stored.payload[..], &payload[..]);
        }

        #[test]
        fn never_panics_on_garbage(bytes in proptest::collection::vec(any::<u8>(), 0..100)) {
            let _ = decode(&Bytes::from(bytes));
        }
    }

    #[test]
    fn rejects_other_versions_and_short_records() {
        let mut out = Vec::new();
        assert!(encode(
            &record(EventKind::Cart, 1, b"u1", "shop", b"{}"),
            &mut out
        ));
        let mut bad = out.clone();
        bad[0] = 9;
        assert_eq!(
            decode(&Bytes::from(bad)).err(),
            Some(DecodeError::Version(9))
        );
        let mut bad = out.clone();
        bad[1] = 7;
        assert_eq!(decode(&Bytes::from(bad)).err(), Some(DecodeError::Kind(7)));
        out.truncate(30);
        assert_eq!(decode(&Bytes::from(out)).err(), Some(DecodeError::Short));
    }

    #[test]
    fn custom_events_round_trip_with_their_name() {
        let mut original = Record::new(
            Destination::Custom(Box::new(CustomRoute {
                name: Arc::from("Newsletter Subscribed"),
                event_id: Uuid::now_v7(),
            })),
            Some(Bytes::from_static(b"user-1")),
            Bytes::from_static(br#"{"event":"Newsletter Subscribed"}"#),
            1_795_514_400_123,
            Arc::from("shop"),
            Tracker::new(1, true),
        );
        drop(original.take_tracker());
        let mut out = Vec::new();
        assert!(encode(&original, &mut out));
        let stored = decode(&Bytes::from(out.clone())).expect("decodes");
        assert_eq!(
            stored.kind,
            StoredKind::Custom(Arc::from("Newsletter Subscribed"))
        );
        assert_eq!(&stored.key[..], b"user-1");
        assert_eq!(&stored.payload[..], br#"{"event":"Newsletter Subscribed"}"#);
        let Destination::Custom(route) = &original.destination else {
            unreachable!()
        };
        assert_eq!(stored.event_id, route.event_id);
        // A name cut short is an error, not a shorter payload.
        let name_at = FIXED_LEN + "shop".len() + "user-1".len();
        out[name_at] = 0xff;
        out[name_at + 1] = 0xff;
        assert_eq!(decode(&Bytes::from(out)).err(), Some(DecodeError::Short));
    }

    #[test]
    fn long_sources_are_cut_on_a_character_boundary() {
        let source = "é".repeat(MAX_SOURCE);
        let mut out = Vec::new();
        assert!(encode(
            &record(EventKind::Search, 1, b"u", &source, b"{}"),
            &mut out
        ));
        let stored = decode(&Bytes::from(out)).expect("decodes");
        assert!(stored.source().len() <= MAX_SOURCE);
        assert!(stored.source().chars().all(|c| c == 'é'));
    }
}
