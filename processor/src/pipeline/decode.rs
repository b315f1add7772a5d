//! Decoding a Kafka record into an [`Incoming`] event: its type (header or topic), the
//! event itself with the contract's content checks, its id and de-duplication key, and
//! its event time. A record that fails any of it is dead-lettered with the reason.

use ingest_core::model::Event;
use ingest_core::{contract, EventKind};
use rdkafka::message::{Headers, OwnedMessage};
use rdkafka::Message;

use super::{now_ms, Pipeline};
use crate::aggregate::{Incoming, TopicPartition};
use crate::dead_letter::reason;
use crate::dedup;

impl Pipeline {
    pub(super) fn decode(
        &self,
        message: &OwnedMessage,
    ) -> Result<Incoming, (&'static str, String)> {
        let header = |name: &str| -> Option<String> {
            message.headers().and_then(|hs| {
                hs.iter()
                    .find(|h| h.key == name)
                    .and_then(|h| h.value)
                    .map(|v| String::from_utf8_lossy(v).into_owned())
            })
        };
        let kind = match header("event_type") {
            Some(name) => EventKind::from_name(&name).ok_or_else(|| {
                (
                    reason::UNKNOWN_EVENT_TYPE,
                    format!("event_type header {:?} is not an event type", clip(&name)),
                )
            })?,
            None => *self.kinds.get(message.topic()).ok_or((
                reason::MISSING_EVENT_TYPE,
                "no event_type header".to_owned(),
            ))?,
        };
        // Records without the header (foreign producers) are read as version 1; a
        // version this processor does not know is not guessed at.
        if let Some(schema) = header("schema") {
            if schema != kind.schema() {
                return Err((
                    reason::UNKNOWN_SCHEMA,
                    format!(
                        "schema header {:?} is not a version this processor reads ({})",
                        clip(&schema),
                        kind.schema()
                    ),
                ));
            }
        }
        let payload = message.payload().unwrap_or_default();
        let mut event = Event::decode(kind, payload)
            .map_err(|e| (reason::UNDECODABLE, format!("not a {kind} event: {e}")))?;
        if event.common().identity().is_none() {
            return Err((
                reason::MISSING_IDENTITY,
                "neither user_id nor anonymous_id".to_owned(),
            ));
        }
        // Records from foreign producers never met the validator: the same rules here.
        event
            .check_content()
            .map_err(|e| (reason::UNSTORABLE, e.to_string()))?;
        if let Some(flags) = &self.settings.experiment_flags {
            let common = match &mut event {
                Event::ProductView(e) => &mut e.common,
                Event::Cart(e) => &mut e.common,
                Event::Purchase(e) => &mut e.common,
                Event::Search(e) => &mut e.common,
            };
            if let Some(context) = common.context.as_mut() {
                context.experiments.retain(|flag, _| flags.contains(flag));
            }
        }
        let event_id = header("event_id")
            .or_else(|| event.common().event_id.clone())
            .unwrap_or_else(|| {
                format!(
                    "{}:{}:{}",
                    message.topic(),
                    message.partition(),
                    message.offset()
                )
            });
        contract::check_identifier(&event_id).map_err(|why| {
            (
                reason::UNSTORABLE,
                format!("event_id header {:?}: {why}", clip(&event_id)),
            )
        })?;
        let dedup_key = match header("source") {
            Some(source) => {
                contract::check_identifier(&source).map_err(|why| {
                    (
                        reason::UNSTORABLE,
                        format!("source header {:?}: {why}", clip(&source)),
                    )
                })?;
                // Length-prefixed, so no two (source, id) pairs share a key.
                dedup::key_of(&format!("{}:{source}/{event_id}", source.len()))
            }
            None => dedup::key_of(&event_id),
        };
        let event_time_ms = event
            .common()
            .timestamp
            .as_deref()
            .and_then(parse_rfc3339_ms)
            .or_else(|| header("received_at").as_deref().and_then(parse_rfc3339_ms))
            .or_else(|| message.timestamp().to_millis())
            .unwrap_or_else(now_ms);
        Ok(Incoming {
            source: TopicPartition::new(message.topic(), message.partition()),
            event_id,
            key: dedup_key,
            event_time_ms,
            event,
        })
    }
}

/// At most the first 64 characters of a foreign value, for a message.
fn clip(text: &str) -> String {
    text.chars().take(64).collect()
}

/// Parses an RFC 3339 timestamp into Unix milliseconds.
fn parse_rfc3339_ms(text: &str) -> Option<i64> {
    let t =
        time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()?;
    Some((t.unix_timestamp_nanos() / 1_000_000) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_timestamps() {
        assert_eq!(
            parse_rfc3339_ms("2026-11-24T10:00:00.123Z"),
            Some(1_795_514_400_123)
        );
        assert_eq!(
            parse_rfc3339_ms("2026-11-24T11:00:00+01:00"),
            Some(1_795_514_400_000)
        );
        assert_eq!(parse_rfc3339_ms("yesterday"), None);
    }
}
