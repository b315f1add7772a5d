//! [`Sender`]: turns a record into a Kafka record (topic, key, headers) and hands it to
//! the producer client. Shared by the memory path ([`Worker`](super::Worker) and
//! submitters, see [`Sender::send_first`]) and the disk path
//! ([`Forwarder`](super::forwarder::Forwarder)).

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, ThreadedProducer};

use super::context::{is_retryable, reason_label, DeliveryContext, Sent};
use super::record::{Destination, Record, Rfc3339Millis};
use super::stored::StoredEvent;
use crate::custom::CUSTOM_EVENT_TYPE;
use crate::telemetry::Telemetry;

/// The most characters of `error_message` and `error_field` in a dead letter's headers.
const MAX_ERROR_HEADER_CHARS: usize = 512;

/// One record about to be sent, borrowed from a queued [`Record`] or from an event read
/// back from the disk buffer.
pub(crate) struct Outgoing<'a> {
    pub(crate) destination: &'a Destination,
    pub(crate) key: Option<&'a [u8]>,
    pub(crate) payload: &'a [u8],
    pub(crate) received_at_ms: i64,
    pub(crate) source: &'a str,
    pub(crate) experiments: Option<&'a str>,
}

impl<'a> Outgoing<'a> {
    pub(crate) fn of_record(record: &'a Record) -> Self {
        Outgoing {
            destination: &record.destination,
            key: record.key.as_deref(),
            payload: &record.payload,
            received_at_ms: record.received_at_ms,
            source: &record.source,
            experiments: record.experiments.as_deref(),
        }
    }

    pub(crate) fn of_stored(stored: &'a StoredEvent, destination: &'a Destination) -> Self {
        Outgoing {
            destination,
            key: Some(&stored.key),
            payload: &stored.payload,
            received_at_ms: stored.received_at_ms,
            source: stored.source(),
            experiments: stored.experiments(),
        }
    }
}

pub(crate) struct Sender {
    pub(crate) producer: ThreadedProducer<DeliveryContext>,
    pub(crate) topics: [Arc<str>; 4],
    pub(crate) dead_letter_topic: Arc<str>,
    pub(crate) custom_topic: Arc<str>,
    /// Held by whoever feeds the producer from the memory queue's side: the delivery
    /// thread while it has records taken off the queue and not yet handed on, or a
    /// submitter sending its record directly. Records therefore enter the producer in
    /// the order they were submitted.
    pub(crate) feed: Mutex<()>,
    pub(crate) telemetry: Telemetry,
    /// The event types whose topics are written in Avro, with their schema ids.
    #[cfg(feature = "avro")]
    pub(crate) avro: crate::avro::AvroTopics,
}

impl Sender {
    pub(crate) fn new(
        producer: ThreadedProducer<DeliveryContext>,
        topics: [Arc<str>; 4],
        dead_letter_topic: Arc<str>,
        custom_topic: Arc<str>,
        telemetry: Telemetry,
    ) -> Self {
        Sender {
            producer,
            topics,
            dead_letter_topic,
            custom_topic,
            feed: Mutex::new(()),
            telemetry,
            #[cfg(feature = "avro")]
            avro: crate::avro::AvroTopics::default(),
        }
    }

    /// Takes the feed (see [`feed`](Self::feed)), waiting for it.
    pub(crate) fn feed(&self) -> MutexGuard<'_, ()> {
        self.feed.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Hands a submitter's record straight to the producer on the calling thread, if
    /// that keeps submission order: the feed is free and `nothing_queued` (asked while
    /// holding it) says no record waits in the queue ahead of this one. Then the record
    /// skips the queue and the delivery thread altogether, as a plain producer loop
    /// would. Otherwise, or when the producer's own queue is full, the record comes
    /// back for the queue. Never blocks.
    // The `Err` is the record handed back, not an error: boxing it would cost an
    // allocation per event on the hot path to shrink a return value.
    #[allow(clippy::result_large_err)]
    pub(crate) fn send_first(
        &self,
        mut record: Record,
        nothing_queued: impl FnOnce() -> bool,
    ) -> Result<(), Record> {
        let Ok(_feed) = self.feed.try_lock() else {
            return Err(record);
        };
        if !nothing_queued() {
            return Err(record);
        }
        let Some(tracker) = record.take_tracker() else {
            return Ok(());
        };
        let sent = Sent::waited_for(tracker);
        match self.try_send(&Outgoing::of_record(&record), sent) {
            Ok(()) => Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                if let Some(tracker) = back.tracker {
                    record.put_tracker(tracker);
                }
                Err(record)
            }
            Err((error, back)) => {
                let topic = self.topic(&record.destination);
                self.telemetry.failed(topic, &reason_label(&error));
                tracing::warn!(topic, %error, "record refused by the Kafka client");
                if let Some(tracker) = back.tracker {
                    tracker.complete(Some((error.to_string(), is_retryable(&error))));
                }
                Ok(())
            }
        }
    }

    pub(crate) fn topic(&self, destination: &Destination) -> &str {
        match destination {
            Destination::Event { kind, .. } => &self.topics[kind.index()],
            Destination::DeadLetter { .. } => &self.dead_letter_topic,
            Destination::Custom { .. } => &self.custom_topic,
        }
    }

    /// One attempt to hand the record to the producer client; on failure the opaque
    /// comes back with the error (`QueueFull` means: wait and try again).
    pub(crate) fn try_send(
        &self,
        record: &Outgoing<'_>,
        sent: Box<Sent>,
    ) -> Result<(), (KafkaError, Box<Sent>)> {
        let topic = self.topic(record.destination);
        #[cfg_attr(not(feature = "avro"), allow(unused_mut))]
        let mut payload = record.payload;
        #[cfg_attr(not(feature = "avro"), allow(unused_mut))]
        let mut schema = None;
        #[cfg(feature = "avro")]
        let encoded;
        #[cfg(feature = "avro")]
        if let Destination::Event { kind, .. } = record.destination {
            if let Some(id) = self.avro.id(*kind) {
                // The buffer keeps the client's JSON; the Avro body is made from the
                // parsed event when the record leaves. A validated event always
                // encodes: a failure is refused as an invalid message, never retried.
                encoded = match crate::avro::encode_json(*kind, id, record.payload) {
                    Ok(bytes) => bytes,
                    Err(error) => {
                        tracing::error!(topic, %error, "event could not be encoded to Avro");
                        return Err((
                            KafkaError::MessageProduction(RDKafkaErrorCode::InvalidMessage),
                            sent,
                        ));
                    }
                };
                payload = &encoded;
                schema = Some(crate::avro::schema_header(*kind));
            }
        }
        let mut outgoing = BaseRecord::with_opaque_to(topic, sent)
            .payload(payload)
            .headers(headers(record, schema));
        if let Some(key) = record.key {
            outgoing = outgoing.key(key);
        }
        self.producer
            .send(outgoing)
            .map_err(|(error, back)| (error, back.delivery_opaque))
    }
}

/// The record's headers; `schema` overrides the event's `schema` header (an Avro topic's
/// `avro:<type>/v1`).
fn headers(record: &Outgoing<'_>, schema: Option<&str>) -> OwnedHeaders {
    let received_at = Rfc3339Millis::new(record.received_at_ms);
    let common = |headers: OwnedHeaders| {
        headers
            .insert(Header {
                key: "received_at",
                value: Some(received_at.as_str()),
            })
            .insert(Header {
                key: "source",
                value: Some(record.source),
            })
    };
    match record.destination {
        Destination::Event {
            kind,
            event_id,
            version,
        } => {
            let mut id = [0u8; uuid::fmt::Hyphenated::LENGTH];
            let id = event_id.hyphenated().encode_lower(&mut id);
            let headers = common(
                OwnedHeaders::new_with_capacity(6)
                    .insert(Header {
                        key: "event_type",
                        value: Some(kind.as_str()),
                    })
                    .insert(Header {
                        key: "event_id",
                        value: Some(&*id),
                    }),
            )
            .insert(Header {
                key: "schema",
                value: Some(schema.unwrap_or(kind.schema_of(*version))),
            });
            match record.experiments {
                Some(experiments) => headers.insert(Header {
                    key: crate::flags::EXPERIMENTS_HEADER,
                    value: Some(experiments),
                }),
                None => headers,
            }
        }
        Destination::Custom(route) => {
            let mut id = [0u8; uuid::fmt::Hyphenated::LENGTH];
            let id = route.event_id.hyphenated().encode_lower(&mut id);
            common(
                OwnedHeaders::new_with_capacity(5)
                    .insert(Header {
                        key: "event_type",
                        value: Some(CUSTOM_EVENT_TYPE),
                    })
                    .insert(Header {
                        key: "event_name",
                        value: Some(&*route.name),
                    })
                    .insert(Header {
                        key: "event_id",
                        value: Some(&*id),
                    }),
            )
        }
        Destination::DeadLetter { error, truncated } => {
            // Validation keeps client text out of both already; this bounds whatever a
            // host's own `ValidationError` holds.
            let message = crate::error::printable(error.message(), MAX_ERROR_HEADER_CHARS);
            let field = error
                .field_path()
                .map(|f| crate::error::printable(f, MAX_ERROR_HEADER_CHARS));
            let mut headers = OwnedHeaders::new_with_capacity(7);
            if let Some(kind) = error.event_kind() {
                headers = headers.insert(Header {
                    key: "event_type",
                    value: Some(kind.as_str()),
                });
            }
            headers = headers
                .insert(Header {
                    key: "error_code",
                    value: Some(error.code().as_str()),
                })
                .insert(Header {
                    key: "error_message",
                    value: Some(&*message),
                });
            if let Some(field) = &field {
                headers = headers.insert(Header {
                    key: "error_field",
                    value: Some(&**field),
                });
            }
            if *truncated {
                headers = headers.insert(Header {
                    key: "payload_truncated",
                    value: Some("true"),
                });
            }
            common(headers)
        }
    }
}

#[cfg(test)]
mod tests {
    use rdkafka::message::Headers;

    use super::*;
    use crate::{ErrorCode, ValidationError};

    /// A dead letter's `error_message` and `error_field` headers are bounded and hold no
    /// control character, whatever the error holds.
    #[test]
    fn dead_letter_error_headers_are_bounded_and_printable() {
        let raw = format!("\0\r\nFake-Header: 1\u{1b}[31m{}", "k".repeat(100_000));
        let destination = Destination::DeadLetter {
            error: Box::new(ValidationError::field(
                ErrorCode::DuplicateField,
                raw.clone(),
                raw,
            )),
            truncated: false,
        };
        let record = Outgoing {
            destination: &destination,
            key: None,
            payload: b"{}",
            received_at_ms: 0,
            source: "test",
            experiments: None,
        };
        let headers = headers(&record, None);
        let mut seen = 0;
        for header in headers.iter() {
            if header.key == "error_message" || header.key == "error_field" {
                let value = std::str::from_utf8(header.value.expect("value")).expect("UTF-8");
                assert!(value.chars().count() <= 513, "{}", header.key);
                assert!(!value.chars().any(char::is_control), "{value:?}");
                assert!(
                    value.starts_with("\\u{0}\\u{d}\\u{a}Fake-Header"),
                    "{value}"
                );
                seen += 1;
            }
        }
        assert_eq!(seen, 2);
    }

    /// An event's assignments travel in the `experiments` header, only when made.
    #[test]
    fn the_experiments_header_is_written_when_assignments_were_made() {
        let destination = Destination::Event {
            kind: crate::EventKind::ProductView,
            event_id: uuid::Uuid::now_v7(),
            version: 1,
        };
        let mut record = Outgoing {
            destination: &destination,
            key: Some(b"user-1"),
            payload: b"{}",
            received_at_ms: 0,
            source: "test",
            experiments: None,
        };
        let value = |record: &Outgoing<'_>| {
            headers(record, None)
                .iter()
                .find(|h| h.key == "experiments")
                .map(|h| h.value.map(<[u8]>::to_vec))
        };
        assert_eq!(value(&record), None);
        record.experiments = Some("checkout_v2=control");
        assert_eq!(value(&record), Some(Some(b"checkout_v2=control".to_vec())));
    }
}
