//! Decoding a Kafka record into an [`Incoming`] event: its type (header or topic), the
//! event itself with the contract's content checks, its id and de-duplication key, and
//! its event time. A record that fails any of it is dead-lettered with the reason by
//! the pipeline, and left out of the search index by its indexer.
//!
//! A value is JSON, or Avro in the Confluent wire format (magic byte 0, the schema's
//! registry id, the Avro body; `schema` header `avro:<type>/v1`): its writer's schema is
//! fetched from the registry by id ([`Decoder::avro_writer`], cached and bounded) and the
//! body resolved into this version's schema, giving the same event model as JSON. An
//! unknown id, no registry configured or one that refuses, or a body that is not the
//! writer's schema's datum is a dead letter (`unknown_schema_id`, `schema_unavailable`,
//! `undecodable`); a registry that cannot be reached is waited for
//! ([`NoWriter::Unreachable`]), never a reason to dead-letter.

use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use ingest_core::avro::{self, RegistryClient, RegistryError, Schema};
use ingest_core::flags::{self, EXPERIMENTS_HEADER};
use ingest_core::model::Event;
use ingest_core::{contract, EventKind};

use crate::aggregate::Incoming;
use crate::config::{RegistrySettings, TopicsConfig};
use crate::dead_letter::reason;
use crate::dedup;
use crate::error::Error;
use crate::record::Record;

/// Why an Avro record has no writer's schema.
#[derive(Debug)]
pub enum NoWriter {
    /// The record is dead-lettered: this code and why.
    Letter(&'static str, String),
    /// The registry could not be reached: the record waits for it.
    Unreachable(RegistryError),
}

/// Turns records of the four event topics into events.
pub struct Decoder {
    /// The event type of each topic (for records without an `event_type` header).
    kinds: HashMap<String, EventKind>,
    /// The experiment flags counted per variant (`None`: every flag).
    experiment_flags: Option<BTreeSet<String>>,
    /// The schema registry Avro records' schemas come from, if configured.
    registry: Option<RegistryClient>,
}

impl Decoder {
    /// A decoder for the records of `topics`.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when the registry's URL cannot be used.
    pub fn new(
        topics: &TopicsConfig,
        experiment_flags: Option<BTreeSet<String>>,
        registry: Option<&RegistrySettings>,
    ) -> Result<Decoder, Error> {
        let kinds = [
            (topics.product_view.clone(), EventKind::ProductView),
            (topics.cart.clone(), EventKind::Cart),
            (topics.purchase.clone(), EventKind::Purchase),
            (topics.search.clone(), EventKind::Search),
        ]
        .into();
        let registry = registry
            .map(|r| {
                RegistryClient::new(r.url.expose(), r.timeout, r.cache_capacity).map_err(|e| {
                    Error::Config(ingest_common::ConfigError::new(
                        "schema_registry.url",
                        e.to_string(),
                    ))
                })
            })
            .transpose()?;
        Ok(Decoder {
            kinds,
            experiment_flags,
            registry,
        })
    }

    /// The writer's schema of an Avro record (a value starting with the magic byte 0),
    /// from the registry by the id in the value; `None` for any other value.
    ///
    /// # Errors
    ///
    /// [`NoWriter`]: the record is a dead letter, or the registry must be waited for.
    pub async fn avro_writer(&self, message: &Record) -> Result<Option<Arc<Schema>>, NoWriter> {
        let payload = message.payload().unwrap_or_default();
        if payload.first() != Some(&avro::MAGIC_BYTE) {
            return Ok(None);
        }
        let (id, _) = avro::unframe(payload)
            .map_err(|e| NoWriter::Letter(reason::UNDECODABLE, e.to_string()))?;
        let Some(registry) = &self.registry else {
            return Err(NoWriter::Letter(
                reason::SCHEMA_UNAVAILABLE,
                format!("an Avro record (schema id {id}) and no schema_registry.url configured"),
            ));
        };
        match registry.schema_by_id(id).await {
            Ok(schema) => Ok(Some(schema)),
            Err(RegistryError::UnknownId(_)) => Err(NoWriter::Letter(
                reason::UNKNOWN_SCHEMA_ID,
                format!("schema id {id} is not in the schema registry"),
            )),
            Err(e) if e.is_retryable() => Err(NoWriter::Unreachable(e)),
            Err(e) => Err(NoWriter::Letter(reason::SCHEMA_UNAVAILABLE, e.to_string())),
        }
    }

    /// Decodes `message` (read with `writer`, its Avro writer's schema, if it is Avro).
    ///
    /// # Errors
    ///
    /// The dead-letter reason code and why.
    pub fn decode(
        &self,
        message: &Record,
        writer: Option<&Schema>,
    ) -> Result<Incoming, (&'static str, String)> {
        // Borrowed unless a value is not UTF-8 (then read lossily, as a copy).
        let header = |name: &str| -> Option<Cow<'_, str>> {
            message.header(name).map(String::from_utf8_lossy)
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
        let payload = message.payload().unwrap_or_default();
        let mut event = decode_value(kind, header("schema").as_deref(), payload, writer)?;
        if event.common().identity().is_none() {
            return Err((
                reason::MISSING_IDENTITY,
                "neither user_id nor anonymous_id".to_owned(),
            ));
        }
        if let Some(value) = header(EXPERIMENTS_HEADER) {
            add_assigned_experiments(&mut event, &value)?;
        }
        // Records from foreign producers never met the validator: the same rules here.
        event
            .check_content()
            .map_err(|e| (reason::UNSTORABLE, e.to_string()))?;
        if let Some(flags) = &self.experiment_flags {
            if let Some(context) = event.common_mut().context.as_mut() {
                context.experiments.retain(|flag, _| flags.contains(flag));
            }
        }
        let event_id = header("event_id")
            .map(Cow::into_owned)
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
                dedup::key_of_sourced(&source, &event_id)
            }
            None => dedup::key_of(&event_id),
        };
        let event_time_ms = event
            .common()
            .timestamp
            .as_deref()
            .and_then(parse_rfc3339_ms)
            .or_else(|| header("received_at").as_deref().and_then(parse_rfc3339_ms))
            .or_else(|| message.timestamp_ms())
            .unwrap_or_else(ingest_common::clock::unix_ms);
        Ok(Incoming {
            source: message.source(),
            event_id,
            key: dedup_key,
            event_time_ms,
            event,
        })
    }
}

/// The event in a record's value: JSON, or an Avro body in the wire format read with
/// `writer` (the schema its id names). Every version of the type this processor knows
/// is read (a later version only adds optional fields; JSON is decoded into the latest
/// model, Avro resolved into the latest schema). Records without a `schema` header
/// (foreign producers) are read by their first byte, JSON or Avro; a version this
/// processor does not know is not guessed at.
fn decode_value(
    kind: EventKind,
    schema: Option<&str>,
    payload: &[u8],
    writer: Option<&Schema>,
) -> Result<Event, (&'static str, String)> {
    // Whether the header says Avro; `None`: no header.
    let avro_header = match schema {
        None => None,
        Some(h) if kind.json_version(h).is_some() => Some(false),
        Some(h) if avro::avro_version(kind, h).is_some() => Some(true),
        Some(h) => {
            return Err((
                reason::UNKNOWN_SCHEMA,
                format!(
                    "schema header {:?} is not a version this processor reads ({} to {}, {} to {})",
                    clip(h),
                    kind.schema_of(1),
                    kind.schema_of(kind.latest_version()),
                    avro::schema_header_of(kind, 1),
                    avro::schema_header(kind)
                ),
            ))
        }
    };
    match writer {
        Some(writer) => {
            if avro_header == Some(false) {
                return Err((
                    reason::UNDECODABLE,
                    format!(
                        "an Avro value under the schema header {}",
                        clip(schema.unwrap_or(""))
                    ),
                ));
            }
            let (_, body) =
                avro::unframe(payload).map_err(|e| (reason::UNDECODABLE, e.to_string()))?;
            avro::decode_body(kind, writer, body).map_err(|e| {
                (
                    reason::UNDECODABLE,
                    format!("not a {kind} Avro record: {e}"),
                )
            })
        }
        None if avro_header == Some(true) => Err((
            reason::UNDECODABLE,
            format!(
                "schema header {} but the value is not in the Avro wire format",
                clip(schema.unwrap_or(""))
            ),
        )),
        None => Event::decode(kind, payload)
            .map_err(|e| (reason::UNDECODABLE, format!("not a {kind} event: {e}"))),
    }
}

/// The flag assignments the agent made for an event that named none (the
/// `experiments` header), as the event's `context.experiments`; an event that names its
/// own keeps them and the header is ignored.
fn add_assigned_experiments(event: &mut Event, value: &str) -> Result<(), (&'static str, String)> {
    let common = event.common_mut();
    if common
        .context
        .as_ref()
        .is_some_and(|c| !c.experiments.is_empty())
    {
        return Ok(());
    }
    let pairs = flags::parse_header_value(value).map_err(|why| {
        (
            reason::UNSTORABLE,
            format!("experiments header {:?}: {why}", clip(value)),
        )
    })?;
    let context = common.context.get_or_insert_with(Default::default);
    context.experiments = pairs
        .into_iter()
        .map(|(flag, variant)| (flag.to_owned(), variant.to_owned()))
        .collect();
    Ok(())
}

/// At most the first 64 characters of a foreign value, for a message.
fn clip(text: &str) -> String {
    text.chars().take(64).collect()
}

/// Parses an RFC 3339 timestamp into Unix milliseconds.
pub(crate) fn parse_rfc3339_ms(text: &str) -> Option<i64> {
    let t =
        time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()?;
    Some((t.unix_timestamp_nanos() / 1_000_000) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PURCHASE: &str = r#"{"user_id":"u-1","order_id":"o-1","items":[{"product_id":"p","quantity":2,"price":5}],"total":10,"currency":"EUR","coupon":"C"}"#;

    #[test]
    fn an_avro_record_decodes_to_the_same_event_as_its_json() {
        let kind = EventKind::Purchase;
        let json = Event::decode(kind, PURCHASE.as_bytes()).expect("event");
        let value = avro::encode_json(kind, 42, PURCHASE.as_bytes()).expect("encodes");
        let writer = avro::schema(kind);
        for header in [Some("avro:purchase/v1"), None] {
            assert_eq!(
                decode_value(kind, header, &value, Some(writer)),
                Ok(json.clone())
            );
        }
        assert_eq!(
            decode_value(kind, Some("json:purchase/v1"), PURCHASE.as_bytes(), None),
            Ok(json)
        );
    }

    #[test]
    fn both_versions_of_a_product_view_are_read_and_a_third_is_not() {
        let kind = EventKind::ProductView;
        let v1 = r#"{"user_id":"u","product_id":"p"}"#;
        let v2 = r#"{"user_id":"u","product_id":"p","variant":"red / XL","list_id":"search-results","position":3.0}"#;
        let read =
            |header: &str, json: &str| decode_value(kind, Some(header), json.as_bytes(), None);
        let Ok(Event::ProductView(view)) = read("json:product_view/v2", v2) else {
            panic!("version 2 read");
        };
        assert_eq!(
            (
                view.variant.as_deref(),
                view.list_id.as_deref(),
                view.position
            ),
            (Some("red / XL"), Some("search-results"), Some(3))
        );
        assert!(read("json:product_view/v1", v1).is_ok());
        assert_eq!(
            read("json:product_view/v3", v2).map_err(|(code, _)| code),
            Err(reason::UNKNOWN_SCHEMA)
        );
        // An Avro record written with version 1 of the schema (a producer that has not
        // moved) is resolved into version 2: the new fields are absent.
        let event = Event::decode(kind, v2.as_bytes()).expect("event");
        let v1_body = avro::frame(7, &avro::encode_body_of(&event, 1).expect("encodes"));
        let Ok(Event::ProductView(view)) = decode_value(
            kind,
            Some("avro:product_view/v1"),
            &v1_body,
            Some(avro::schema_of(kind, 1)),
        ) else {
            panic!("version 1 Avro read");
        };
        assert_eq!(
            (view.product_id.as_str(), view.variant, view.position),
            ("p", None, None)
        );
        let v2_body = avro::frame(8, &avro::encode_body(&event).expect("encodes"));
        let Ok(Event::ProductView(view)) = decode_value(
            kind,
            Some("avro:product_view/v2"),
            &v2_body,
            Some(avro::schema(kind)),
        ) else {
            panic!("version 2 Avro read");
        };
        assert_eq!(view.variant.as_deref(), Some("red / XL"));
    }

    #[test]
    fn mismatched_or_damaged_avro_records_are_undecodable() {
        let kind = EventKind::Purchase;
        let value = avro::encode_json(kind, 42, PURCHASE.as_bytes()).expect("encodes");
        let writer = avro::schema(kind);
        let code = |r: Result<Event, (&'static str, String)>| r.map_err(|(code, _)| code);
        // Cut short, read with another type's schema, or JSON under an Avro header.
        assert_eq!(
            code(decode_value(
                kind,
                None,
                &value[..value.len() - 2],
                Some(writer)
            )),
            Err(reason::UNDECODABLE)
        );
        assert_eq!(
            code(decode_value(
                kind,
                None,
                &value,
                Some(avro::schema(EventKind::Search))
            )),
            Err(reason::UNDECODABLE)
        );
        assert_eq!(
            code(decode_value(
                kind,
                Some("avro:purchase/v1"),
                PURCHASE.as_bytes(),
                None
            )),
            Err(reason::UNDECODABLE)
        );
        assert_eq!(
            code(decode_value(
                kind,
                Some("json:purchase/v1"),
                &value,
                Some(writer)
            )),
            Err(reason::UNDECODABLE)
        );
        assert_eq!(
            code(decode_value(
                kind,
                Some("avro:purchase/v2"),
                &value,
                Some(writer)
            )),
            Err(reason::UNKNOWN_SCHEMA),
            "purchase has no version 2"
        );
    }

    #[test]
    fn assignments_in_the_header_fill_only_events_that_name_none() {
        let kind = EventKind::ProductView;
        let experiments = |json: &str, header: &str| {
            let mut event = Event::decode(kind, json.as_bytes()).expect("event");
            add_assigned_experiments(&mut event, header).map(|()| {
                event
                    .common()
                    .context
                    .as_ref()
                    .map(|c| c.experiments.clone().into_iter().collect::<Vec<_>>())
                    .unwrap_or_default()
            })
        };
        let pair = |f: &str, v: &str| (f.to_owned(), v.to_owned());
        assert_eq!(
            experiments(
                r#"{"user_id":"u","product_id":"p"}"#,
                "checkout_v2=control,search_ranking=learned"
            ),
            Ok(vec![
                pair("checkout_v2", "control"),
                pair("search_ranking", "learned")
            ])
        );
        assert_eq!(
            experiments(
                r#"{"user_id":"u","product_id":"p","context":{"locale":"de-DE"}}"#,
                "checkout_v2=control"
            ),
            Ok(vec![pair("checkout_v2", "control")])
        );
        assert_eq!(
            experiments(
                r#"{"user_id":"u","product_id":"p","context":{"experiments":{"checkout_v2":"treatment"}}}"#,
                "checkout_v2=control"
            ),
            Ok(vec![pair("checkout_v2", "treatment")]),
            "the event's own win"
        );
        let refused =
            experiments(r#"{"user_id":"u","product_id":"p"}"#, "checkout_v2").expect_err("no '='");
        assert_eq!(refused.0, reason::UNSTORABLE);
        assert!(refused.1.contains("experiments header"), "{}", refused.1);
    }

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
