//! [`Sender`]: turns a record into a Kafka record (topic, key, headers) and hands it to
//! the producer client. Shared by the memory path ([`Worker`](super::Worker)) and the
//! disk path ([`Forwarder`](super::forwarder::Forwarder)).

use std::sync::Arc;

use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, ThreadedProducer};

use super::context::{DeliveryContext, Sent};
use super::record::{Destination, Record, Rfc3339Millis};
use super::stored::StoredEvent;

/// One record about to be sent, borrowed from a queued [`Record`] or from an event read
/// back from the disk buffer.
pub(crate) struct Outgoing<'a> {
    pub(crate) destination: &'a Destination,
    pub(crate) key: Option<&'a [u8]>,
    pub(crate) payload: &'a [u8],
    pub(crate) received_at_ms: i64,
    pub(crate) source: &'a str,
}

impl<'a> Outgoing<'a> {
    pub(crate) fn of_record(record: &'a Record) -> Self {
        Outgoing {
            destination: &record.destination,
            key: record.key.as_deref(),
            payload: &record.payload,
            received_at_ms: record.received_at_ms,
            source: &record.source,
        }
    }

    pub(crate) fn of_stored(stored: &'a StoredEvent, destination: &'a Destination) -> Self {
        Outgoing {
            destination,
            key: Some(&stored.key),
            payload: &stored.payload,
            received_at_ms: stored.received_at_ms,
            source: stored.source(),
        }
    }
}

pub(crate) struct Sender {
    pub(crate) producer: ThreadedProducer<DeliveryContext>,
    pub(crate) topics: [Arc<str>; 4],
    pub(crate) dead_letter_topic: Arc<str>,
}

impl Sender {
    pub(crate) fn topic(&self, destination: &Destination) -> &str {
        match destination {
            Destination::Event { kind, .. } => &self.topics[kind.index()],
            Destination::DeadLetter { .. } => &self.dead_letter_topic,
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
        let mut outgoing = BaseRecord::with_opaque_to(topic, sent)
            .payload(record.payload)
            .headers(headers(record));
        if let Some(key) = record.key {
            outgoing = outgoing.key(key);
        }
        self.producer
            .send(outgoing)
            .map_err(|(error, back)| (error, back.delivery_opaque))
    }
}

fn headers(record: &Outgoing<'_>) -> OwnedHeaders {
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
        Destination::Event { kind, event_id } => {
            let mut id = [0u8; uuid::fmt::Hyphenated::LENGTH];
            let id = event_id.hyphenated().encode_lower(&mut id);
            common(
                OwnedHeaders::new_with_capacity(5)
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
                value: Some(kind.schema()),
            })
        }
        Destination::DeadLetter { error, truncated } => {
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
                    value: Some(error.message()),
                });
            if let Some(field) = error.field_path() {
                headers = headers.insert(Header {
                    key: "error_field",
                    value: Some(field),
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
