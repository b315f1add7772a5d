//! A record on its way to Kafka, and the header values it carries.

use std::sync::Arc;

use bytes::Bytes;
use uuid::Uuid;

use super::receipt::Tracker;
use crate::error::ValidationError;
use crate::event::EventKind;

/// Where a record goes.
pub(crate) enum Destination {
    /// The topic of an event kind, with the event's id.
    Event { kind: EventKind, event_id: Uuid },
    /// The dead-letter topic, with why the payload was rejected.
    /// The event type, when known, is the error's [`ValidationError::event_kind`].
    DeadLetter {
        error: Box<ValidationError>,
        truncated: bool,
    },
}

/// One record queued for the producer.
///
/// A record owns a share of its submission's [`Tracker`] until it is handed to the
/// producer. If it is dropped before that (the ingestor stopped with it still queued),
/// its event is reported as failed, so no receipt ever waits forever.
pub(crate) struct Record {
    pub(crate) destination: Destination,
    pub(crate) key: Option<Bytes>,
    pub(crate) payload: Bytes,
    pub(crate) received_at_ms: i64,
    pub(crate) source: Arc<str>,
    tracker: Option<Arc<Tracker>>,
}

impl Record {
    pub(crate) fn new(
        destination: Destination,
        key: Option<Bytes>,
        payload: Bytes,
        received_at_ms: i64,
        source: Arc<str>,
        tracker: Arc<Tracker>,
    ) -> Self {
        Record {
            destination,
            key,
            payload,
            received_at_ms,
            source,
            tracker: Some(tracker),
        }
    }

    /// Fails the record's receipt: it will not be delivered.
    pub(crate) fn abandon(&mut self, reason: String) {
        if let Some(tracker) = self.tracker.take() {
            tracker.abandon(reason, true);
        }
    }

    /// Hands the tracker share to the producer, which reports the outcome.
    pub(crate) fn take_tracker(&mut self) -> Option<Arc<Tracker>> {
        self.tracker.take()
    }
}

impl Drop for Record {
    fn drop(&mut self) {
        if let Some(tracker) = self.tracker.take() {
            tracker.abandon(
                "dropped before delivery: the ingestor stopped".to_owned(),
                true,
            );
        }
    }
}

/// Formats Unix milliseconds as RFC 3339 UTC with millisecond precision
/// (`2026-11-24T10:00:00.123Z`), the form of the `received_at` header.
pub(crate) fn rfc3339_millis(unix_ms: i64) -> String {
    let secs = unix_ms.div_euclid(1000);
    let millis = unix_ms.rem_euclid(1000);
    match time::OffsetDateTime::from_unix_timestamp(secs) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{millis:03}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        ),
        Err(_) => "1970-01-01T00:00:00.000Z".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_received_at() {
        assert_eq!(rfc3339_millis(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            rfc3339_millis(1_795_514_400_123),
            "2026-11-24T10:00:00.123Z"
        );
    }

    #[test]
    fn dropping_a_queued_record_fails_its_receipt() {
        let tracker = Tracker::new(1, false);
        let record = Record::new(
            Destination::Event {
                kind: EventKind::Cart,
                event_id: Uuid::nil(),
            },
            None,
            Bytes::new(),
            0,
            Arc::from("test"),
            tracker.clone(),
        );
        drop(record);
        let receipt = super::super::Receipt::new(tracker, None);
        assert!(receipt.is_settled());
    }
}
