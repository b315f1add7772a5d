//! A record on its way to Kafka, and the header values it carries.

use std::sync::Arc;

use bytes::Bytes;
use uuid::Uuid;

use super::receipt::Tracker;
use crate::error::ValidationError;
use crate::event::EventKind;

/// Where a record goes.
pub(crate) enum Destination {
    /// The topic of an event kind, with the event's id and the version of the type's
    /// contract it needs (its `schema` header).
    Event {
        kind: EventKind,
        event_id: Uuid,
        version: u8,
    },
    /// The custom-events topic: an event outside the four e-commerce types, under the
    /// name its sender gave it.
    /// (Boxed: the name and id would make every record larger.)
    Custom(Box<CustomRoute>),
    /// The dead-letter topic, with why the payload was rejected.
    /// The event type, when known, is the error's [`ValidationError::event_kind`].
    DeadLetter {
        error: Box<ValidationError>,
        truncated: bool,
    },
}

/// A custom event's name and id.
pub(crate) struct CustomRoute {
    pub(crate) name: Arc<str>,
    pub(crate) event_id: Uuid,
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
    /// The `experiments` header: flag assignments made for an event that named none.
    pub(crate) experiments: Option<Box<str>>,
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
            experiments: None,
            tracker: Some(tracker),
        }
    }

    /// Sets the `experiments` header.
    pub(crate) fn with_experiments(mut self, experiments: Option<String>) -> Self {
        self.experiments = experiments.map(String::into_boxed_str);
        self
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

    /// Takes back a tracker share the producer refused (its queue was full).
    pub(crate) fn put_tracker(&mut self, tracker: Arc<Tracker>) {
        self.tracker = Some(tracker);
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

/// Unix milliseconds as RFC 3339 UTC with millisecond precision
/// (`2026-11-24T10:00:00.123Z`), the form of the `received_at` header. Formatted on the
/// stack: it is written once per record on the delivery thread's hot path.
pub(crate) struct Rfc3339Millis([u8; 24]);

impl Rfc3339Millis {
    pub(crate) fn new(unix_ms: i64) -> Self {
        let secs = unix_ms.div_euclid(1000);
        let millis = unix_ms.rem_euclid(1000) as u32;
        let mut text = *b"1970-01-01T00:00:00.000Z";
        if let Ok(t) = time::OffsetDateTime::from_unix_timestamp(secs) {
            // Years past 9999 cannot be written in four digits; such clocks are broken
            // and keep the epoch.
            if (0..=9999).contains(&t.year()) {
                let mut put = |at: usize, value: u32, digits: usize| {
                    let mut value = value;
                    for i in (0..digits).rev() {
                        text[at + i] = b'0' + (value % 10) as u8;
                        value /= 10;
                    }
                };
                put(0, t.year() as u32, 4);
                put(5, u32::from(u8::from(t.month())), 2);
                put(8, u32::from(t.day()), 2);
                put(11, u32::from(t.hour()), 2);
                put(14, u32::from(t.minute()), 2);
                put(17, u32::from(t.second()), 2);
                put(20, millis, 3);
            }
        }
        Rfc3339Millis(text)
    }

    pub(crate) fn as_str(&self) -> &str {
        // Only ASCII digits and punctuation are ever written.
        std::str::from_utf8(&self.0).unwrap_or("1970-01-01T00:00:00.000Z")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_received_at() {
        let format = |ms| Rfc3339Millis::new(ms).as_str().to_owned();
        assert_eq!(format(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(format(1_795_514_400_123), "2026-11-24T10:00:00.123Z");
        assert_eq!(format(951_825_599_999), "2000-02-29T11:59:59.999Z");
        assert_eq!(format(-1), "1969-12-31T23:59:59.999Z");
        assert_eq!(format(i64::MAX), "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn dropping_a_queued_record_fails_its_receipt() {
        let tracker = Tracker::new(1, false);
        let record = Record::new(
            Destination::Event {
                kind: EventKind::Cart,
                event_id: Uuid::nil(),
                version: 1,
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
