//! A Kafka record as the processor holds it from reading to its checkpoint (or to the
//! search index): its value, key and headers copied out of librdkafka's buffers in
//! three allocations, the topic's name shared.
//!
//! librdkafka's own owned message costs a copy of the topic name per record and an
//! allocation per header besides the value and key; a batch holds up to
//! `checkpoint.max_pending_events` of them, twice per partition group, so the held
//! records are one of the processor's largest owners of memory.

use std::sync::Arc;

use rdkafka::message::{Headers, Message};

use crate::stream::TopicPartition;

/// A record read from an event topic (see the module documentation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    topic: Arc<str>,
    partition: i32,
    offset: i64,
    timestamp_ms: Option<i64>,
    key: Option<Box<[u8]>>,
    payload: Option<Box<[u8]>>,
    /// Every header in order: the name's length (u32, little-endian), the name, the
    /// value's length (u32; `u32::MAX` for a header without a value), the value.
    headers: Box<[u8]>,
}

/// A header's value length that stands for no value at all.
const NO_VALUE: u32 = u32::MAX;

impl Record {
    /// A copy of `message`, read from `topic` (its name, shared: see [`TopicNames`]).
    pub fn of<M: Message>(message: &M, topic: Arc<str>) -> Record {
        let headers = message.headers().map_or_else(Vec::new, |hs| {
            pack(hs.iter().map(|h| (h.key.as_bytes(), h.value)))
        });
        Record {
            topic,
            partition: message.partition(),
            offset: message.offset(),
            timestamp_ms: message.timestamp().to_millis(),
            key: message.key().map(Box::from),
            payload: message.payload().map(Box::from),
            headers: headers.into_boxed_slice(),
        }
    }

    /// A record made of its parts (tests, and records built by hand).
    pub fn new(
        topic: &str,
        partition: i32,
        offset: i64,
        key: Option<&[u8]>,
        payload: Option<&[u8]>,
        headers: &[(&str, Option<&[u8]>)],
    ) -> Record {
        Record {
            topic: Arc::from(topic),
            partition,
            offset,
            timestamp_ms: None,
            key: key.map(Box::from),
            payload: payload.map(Box::from),
            headers: pack(headers.iter().map(|(k, v)| (k.as_bytes(), *v))).into_boxed_slice(),
        }
    }

    /// The topic it was read from.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Where it was read, sharing the topic's name.
    pub fn source(&self) -> TopicPartition {
        TopicPartition::shared(Arc::clone(&self.topic), self.partition)
    }

    /// Its partition.
    pub fn partition(&self) -> i32 {
        self.partition
    }

    /// Its offset.
    pub fn offset(&self) -> i64 {
        self.offset
    }

    /// Its Kafka timestamp, Unix ms, if it has one.
    pub fn timestamp_ms(&self) -> Option<i64> {
        self.timestamp_ms
    }

    /// Its key.
    pub fn key(&self) -> Option<&[u8]> {
        self.key.as_deref()
    }

    /// Its value.
    pub fn payload(&self) -> Option<&[u8]> {
        self.payload.as_deref()
    }

    /// Its headers in order: name (as librdkafka hands it over: a C string, so cut at a
    /// NUL) and value.
    pub fn headers(&self) -> HeaderIter<'_> {
        HeaderIter {
            rest: &self.headers,
        }
    }

    /// The value of its first header named `name` (`None` if there is none or it has no
    /// value).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers()
            .find(|(key, _)| *key == name.as_bytes())
            .and_then(|(_, value)| value)
    }
}

/// The headers of a [`Record`], in order.
pub struct HeaderIter<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for HeaderIter<'a> {
    /// The name's bytes and the value.
    type Item = (&'a [u8], Option<&'a [u8]>);

    fn next(&mut self) -> Option<Self::Item> {
        let (name, rest) = take_sized(self.rest)?;
        let (len, rest) = take_u32(rest)?;
        let (value, rest) = if len == NO_VALUE {
            (None, rest)
        } else {
            let len = len as usize;
            (Some(rest.get(..len)?), rest.get(len..)?)
        };
        self.rest = rest;
        Some((name, value))
    }
}

fn pack<'a>(headers: impl Iterator<Item = (&'a [u8], Option<&'a [u8]>)>) -> Vec<u8> {
    let mut packed = Vec::new();
    for (name, value) in headers {
        // A header longer than 4 GiB cannot come out of a Kafka record batch.
        packed.extend_from_slice(&(name.len() as u32).to_le_bytes());
        packed.extend_from_slice(name);
        match value {
            Some(value) => {
                packed.extend_from_slice(&(value.len() as u32).to_le_bytes());
                packed.extend_from_slice(value);
            }
            None => packed.extend_from_slice(&NO_VALUE.to_le_bytes()),
        }
    }
    packed
}

fn take_u32(bytes: &[u8]) -> Option<(u32, &[u8])> {
    let (len, rest) = bytes.split_first_chunk::<4>()?;
    Some((u32::from_le_bytes(*len), rest))
}

fn take_sized(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let (len, rest) = take_u32(bytes)?;
    let len = len as usize;
    Some((rest.get(..len)?, rest.get(len..)?))
}

/// The topic names records share: one allocation per topic, not per record.
#[derive(Debug, Default)]
pub struct TopicNames {
    names: Vec<Arc<str>>,
}

impl TopicNames {
    /// The shared name `topic`.
    pub fn get(&mut self, topic: &str) -> Arc<str> {
        if let Some(name) = self.names.iter().find(|n| &***n == topic) {
            return name.clone();
        }
        let name: Arc<str> = Arc::from(topic);
        self.names.push(name.clone());
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::message::{Header, OwnedHeaders, OwnedMessage, Timestamp};

    #[test]
    fn a_record_keeps_what_librdkafka_read_headers_in_order_and_without_value() {
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "event_type",
                value: Some("cart"),
            })
            .insert(Header::<&[u8]> {
                key: "empty",
                value: Some(b""),
            })
            .insert(Header::<&str> {
                key: "none",
                value: None,
            })
            .insert(Header {
                key: "event_type",
                value: Some("purchase"),
            })
            .insert(Header::<&[u8]> {
                key: "bin\u{1}ary",
                value: Some(&[0, 255, 10]),
            });
        let message = OwnedMessage::new(
            Some(b"{}".to_vec()),
            Some(b"u-1".to_vec()),
            "cart-events".to_owned(),
            Timestamp::CreateTime(1_700_000_000_123),
            3,
            42,
            Some(headers),
        );
        let mut names = TopicNames::default();
        let record = Record::of(&message, names.get("cart-events"));
        assert_eq!(record.topic(), "cart-events");
        assert_eq!((record.partition(), record.offset()), (3, 42));
        assert_eq!(record.timestamp_ms(), Some(1_700_000_000_123));
        assert_eq!(record.key(), Some(&b"u-1"[..]));
        assert_eq!(record.payload(), Some(&b"{}"[..]));
        let all: Vec<_> = record.headers().collect();
        assert_eq!(
            all,
            vec![
                (&b"event_type"[..], Some(&b"cart"[..])),
                (&b"empty"[..], Some(&b""[..])),
                (&b"none"[..], None),
                (&b"event_type"[..], Some(&b"purchase"[..])),
                (&b"bin\x01ary"[..], Some(&[0u8, 255, 10][..])),
            ]
        );
        assert_eq!(record.header("event_type"), Some(&b"cart"[..]));
        assert_eq!(record.header("none"), None);
        assert_eq!(record.header("missing"), None);
        assert_eq!(
            record,
            Record {
                timestamp_ms: Some(1_700_000_000_123),
                ..Record::new(
                    "cart-events",
                    3,
                    42,
                    Some(b"u-1"),
                    Some(b"{}"),
                    &[
                        ("event_type", Some(b"cart")),
                        ("empty", Some(b"")),
                        ("none", None),
                        ("event_type", Some(b"purchase")),
                        ("bin\u{1}ary", Some(&[0, 255, 10])),
                    ],
                )
            }
        );
    }

    #[test]
    fn a_record_without_value_key_or_headers_has_none() {
        let message = OwnedMessage::new(
            None,
            None,
            "t".to_owned(),
            Timestamp::NotAvailable,
            0,
            0,
            None,
        );
        let record = Record::of(&message, Arc::from("t"));
        assert_eq!((record.key(), record.payload()), (None, None));
        assert_eq!(record.timestamp_ms(), None);
        assert_eq!(record.headers().count(), 0);
    }

    #[test]
    fn records_of_a_topic_share_its_name() {
        let mut names = TopicNames::default();
        let a = names.get("product-views");
        let b = names.get("product-views");
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &names.get("cart-events")));
    }

    #[test]
    fn cut_packed_headers_end_the_iteration_instead_of_reading_past_them() {
        let record = Record::new("t", 0, 0, None, None, &[("a", Some(b"xyz"))]);
        for len in 0..record.headers.len() {
            let cut = HeaderIter {
                rest: &record.headers[..len],
            };
            assert_eq!(cut.count(), 0, "cut at {len}");
        }
    }
}
