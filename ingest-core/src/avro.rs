//! Avro encoding of events (cargo feature `avro`), in the Confluent wire format, and a
//! client for a schema registry's Confluent-compatible REST API.
//!
//! # Schemas
//!
//! One Avro schema per event type and version, `schemas/avro/<type>.v<N>.avsc`, generated
//! by `scripts/schemas` from the same OpenAPI components as the JSON Schemas and compiled
//! into this crate ([`schema_text_of`]). Records are written with the latest version of
//! their type ([`schema_text`], [`schema`]: `product_view` is at version 2); a later
//! version only adds optional fields with a `null` default, so it is BACKWARD compatible
//! with the earlier ones and a registry subject moves to it without a refusal. They carry the fields of the typed model
//! ([`crate::model`]): required fields are plain types, optional ones `["null", T]` with a
//! `null` default; amounts are `double`, counts `long`, `context` and purchase items
//! records, `context.experiments` a map of strings, and the search `filters` (any content)
//! the JSON text of the object. Fields the contract does not name are not carried.
//!
//! # Wire format
//!
//! A record value is `0x00` (magic byte), the schema's registry id as 4 big-endian bytes,
//! then the Avro binary encoding of the event (no container header): [`frame`] and
//! [`unframe`]. The body is produced from the parsed event ([`encode_body`]); a reader
//! decodes it with the schema it was written with (fetched from the registry by id) and
//! resolves it into its own ([`decode_body`]), so a topic may move to a newer, compatible
//! schema while older records stay readable.

mod registry;

use std::sync::LazyLock;

use apache_avro::types::Value as AvroValue;
/// A parsed Avro schema (re-exported from `apache-avro`, so consumers need no dependency
/// of their own).
pub use apache_avro::Schema;
use serde_json::Value as JsonValue;

use crate::event::EventKind;
use crate::model::Event;

pub use registry::{Compatibility, RegistryClient, RegistryError, SubjectCheck};

/// The first byte of a record in the Confluent wire format.
pub const MAGIC_BYTE: u8 = 0;

/// Bytes before the Avro body: the magic byte and the 4-byte schema id.
pub const WIRE_HEADER_LEN: usize = 5;

/// Fields whose Avro type is a string holding JSON text of any content.
const JSON_TEXT_FIELDS: &[&str] = &["filters"];

/// What went wrong encoding or decoding an Avro record.
#[derive(Debug, thiserror::Error)]
pub enum AvroError {
    /// The value is shorter than the wire format's header, or does not start with the
    /// magic byte 0.
    #[error("not in the Confluent wire format: {0}")]
    NotWireFormat(&'static str),
    /// The body is not a datum of the writer's schema: bytes left after the record, or
    /// the body ends inside a field.
    #[error("malformed Avro body: {0}")]
    Malformed(String),
    /// The Avro library refused the schema, the value or the bytes.
    #[error("avro: {0}")]
    Avro(#[source] Box<apache_avro::Error>),
    /// The decoded record is not an event of the type (a required field missing, a wrong
    /// type after schema resolution).
    #[error("not a {kind} event: {source}")]
    NotAnEvent {
        /// The expected type.
        kind: EventKind,
        /// Why the model refused it.
        #[source]
        source: serde_json::Error,
    },
    /// A field's value has no Avro representation in the schema (a bug in the mapping,
    /// or a schema edited by hand).
    #[error("field {field}: {why}")]
    Unrepresentable {
        /// The field's path.
        field: String,
        /// What did not fit.
        why: String,
    },
}

impl From<apache_avro::Error> for AvroError {
    fn from(e: apache_avro::Error) -> Self {
        AvroError::Avro(Box::new(e))
    }
}

/// The text of the Avro schema of `kind` at its latest version
/// ([`EventKind::latest_version`]), as committed in `schemas/avro/`.
pub fn schema_text(kind: EventKind) -> &'static str {
    schema_text_of(kind, kind.latest_version())
}

/// The text of the Avro schema of `version` of `kind` (versions past the latest give the
/// latest), as committed in `schemas/avro/`.
pub fn schema_text_of(kind: EventKind, version: u8) -> &'static str {
    match (kind, version) {
        (EventKind::ProductView, 1) => include_str!("../../schemas/avro/product_view.v1.avsc"),
        (EventKind::ProductView, _) => include_str!("../../schemas/avro/product_view.v2.avsc"),
        (EventKind::Cart, _) => include_str!("../../schemas/avro/cart.v1.avsc"),
        (EventKind::Purchase, _) => include_str!("../../schemas/avro/purchase.v1.avsc"),
        (EventKind::Search, _) => include_str!("../../schemas/avro/search.v1.avsc"),
    }
}

/// Every version of every type's schema: `SCHEMAS[kind.index()][version - 1]`.
static SCHEMAS: LazyLock<[Vec<Schema>; 4]> = LazyLock::new(|| {
    EventKind::ALL.map(|kind| {
        (1..=kind.latest_version())
            .map(|version| {
                Schema::parse_str(schema_text_of(kind, version))
                    .expect("the committed .avsc files parse (tests/avro.rs parses each)")
            })
            .collect()
    })
});

/// The parsed Avro schema of `kind` at its latest version: what records are written with,
/// and what a reader resolves any earlier version into.
pub fn schema(kind: EventKind) -> &'static Schema {
    schema_of(kind, kind.latest_version())
}

/// The parsed Avro schema of `version` of `kind` (versions past the latest, and 0, give
/// the latest).
pub fn schema_of(kind: EventKind, version: u8) -> &'static Schema {
    let versions = &SCHEMAS[kind.index()];
    let index = usize::from(version.max(1)) - 1;
    &versions[index.min(versions.len() - 1)]
}

/// Per event type, the registry id of the schema its topic is written with (no id: the
/// topic stays JSON). Made at start by [`AvroTopics::register`], which checks each
/// subject's compatibility, and given to the ingestor
/// (`IngestorBuilder::avro_topics`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AvroTopics {
    ids: [Option<u32>; 4],
}

impl AvroTopics {
    /// The schema id records of `kind` carry, if its topic is written in Avro.
    pub fn id(&self, kind: EventKind) -> Option<u32> {
        self.ids[kind.index()]
    }

    /// The same, with the topic of `kind` written in Avro with schema `id` (for a caller
    /// that registered the schemas itself).
    #[must_use]
    pub fn with(mut self, kind: EventKind, id: u32) -> Self {
        self.ids[kind.index()] = Some(id);
        self
    }

    /// For each `(kind, topic)`, registers (or finds) the type's schema under the subject
    /// `<topic>-value` (the TopicNameStrategy) at compatibility `level`, refusing a schema
    /// incompatible with the subject's latest one.
    ///
    /// # Errors
    ///
    /// The first subject's [`RegistryError`]: [`RegistryError::Incompatible`] names the
    /// fields that break compatibility.
    pub async fn register(
        client: &RegistryClient,
        topics: &[(EventKind, &str)],
        level: Compatibility,
    ) -> Result<AvroTopics, RegistryError> {
        let mut out = AvroTopics::default();
        for (kind, topic) in topics {
            let subject = format!("{topic}-value");
            let check = client
                .ensure_subject(&subject, schema_text(*kind), level)
                .await?;
            tracing::info!(
                topic,
                subject,
                schema_id = check.id,
                previous_schema_id = check.previous_id,
                "Avro schema registered"
            );
            out.ids[kind.index()] = Some(check.id);
        }
        Ok(out)
    }
}

/// A record value in the wire format for a validated event's JSON: parsed into the
/// model, encoded with its type's schema, framed with `id`.
///
/// # Errors
///
/// [`AvroError::NotAnEvent`] when the JSON is not an event of `kind` (never the case
/// for an event that passed validation), or an encoding error.
pub fn encode_json(kind: EventKind, id: u32, json: &[u8]) -> Result<Vec<u8>, AvroError> {
    let event =
        Event::decode(kind, json).map_err(|source| AvroError::NotAnEvent { kind, source })?;
    Ok(frame(id, &encode_body(&event)?))
}

/// The `schema` header of an Avro record of `kind`, written with its latest version
/// (`avro:product_view/v2`, `avro:cart/v1`).
pub const fn schema_header(kind: EventKind) -> &'static str {
    schema_header_of(kind, kind.latest_version())
}

/// The `schema` header of `version` of `kind` (versions past the latest give the latest).
pub const fn schema_header_of(kind: EventKind, version: u8) -> &'static str {
    match (kind, version) {
        (EventKind::ProductView, 1) => "avro:product_view/v1",
        (EventKind::ProductView, _) => "avro:product_view/v2",
        (EventKind::Cart, _) => "avro:cart/v1",
        (EventKind::Purchase, _) => "avro:purchase/v1",
        (EventKind::Search, _) => "avro:search/v1",
    }
}

/// The version an Avro `schema` header names, if it is a version of `kind` this library
/// knows (`avro:product_view/v1` → 1).
pub fn avro_version(kind: EventKind, header: &str) -> Option<u8> {
    (1..=kind.latest_version()).find(|&v| schema_header_of(kind, v) == header)
}

/// Prefixes an Avro body with the wire format's header for schema `id`.
pub fn frame(id: u32, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(WIRE_HEADER_LEN + body.len());
    out.push(MAGIC_BYTE);
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// Splits a wire-format value into its schema id and Avro body.
///
/// # Errors
///
/// [`AvroError::NotWireFormat`] when the value is shorter than 5 bytes or its first byte
/// is not 0.
pub fn unframe(value: &[u8]) -> Result<(u32, &[u8]), AvroError> {
    if value.len() < WIRE_HEADER_LEN {
        return Err(AvroError::NotWireFormat("shorter than 5 bytes"));
    }
    if value[0] != MAGIC_BYTE {
        return Err(AvroError::NotWireFormat("the first byte is not 0"));
    }
    let id = u32::from_be_bytes([value[1], value[2], value[3], value[4]]);
    Ok((id, &value[WIRE_HEADER_LEN..]))
}

/// The Avro binary encoding of `event` with its type's schema ([`schema`]), without the
/// wire format's header.
///
/// # Errors
///
/// [`AvroError::Unrepresentable`] or [`AvroError::Avro`] if the event does not fit the
/// schema; never the case for an event of the model and the committed schemas.
pub fn encode_body(event: &Event) -> Result<Vec<u8>, AvroError> {
    encode_body_of(event, event.kind().latest_version())
}

/// [`encode_body`] with `version` of the type's schema ([`schema_of`]), for a producer
/// that stays on an earlier version: the fields later versions added are left out.
///
/// # Errors
///
/// As [`encode_body`].
pub fn encode_body_of(event: &Event, version: u8) -> Result<Vec<u8>, AvroError> {
    let (kind, json) = event_json(event)?;
    let schema = schema_of(kind, version);
    let value = to_avro(&json, schema, kind.as_str())?;
    let writer = apache_avro::writer::datum::GenericDatumWriter::builder(schema).build()?;
    Ok(writer.write_value_to_vec(value)?)
}

/// Decodes an Avro body written with `writer` into an event of `kind`, resolving it into
/// this version's schema of the type (fields added since get their defaults, fields
/// removed are skipped).
///
/// # Errors
///
/// [`AvroError::Avro`] when the bytes are not a datum of `writer` or `writer` cannot be
/// read as this version's schema; [`AvroError::NotAnEvent`] when the result is not an event
/// of `kind`.
pub fn decode_body(kind: EventKind, writer: &Schema, body: &[u8]) -> Result<Event, AvroError> {
    // Read strictly with the writer's schema first, every byte accounted for, then resolve
    // the value into this version's schema: a resolving read of a truncated body can
    // fill the missing tail with defaults instead of failing.
    let mut reader = body;
    let value = apache_avro::reader::datum::GenericDatumReader::builder(writer)
        .build()?
        .read_value(&mut reader)?;
    if !reader.is_empty() {
        return Err(AvroError::Malformed(format!(
            "{} bytes left after the record",
            reader.len()
        )));
    }
    // apache-avro 0.22 reads a union whose index or value is cut off at the end of the
    // input as null, without an error. A complete body is the encoding of the value read
    // from it, byte for byte in length; a body cut short is not (the re-encoding has the
    // missing bytes back). Checked here, with the value's validity for the schema.
    let complete = value.validate(writer)
        && apache_avro::writer::datum::GenericDatumWriter::builder(writer)
            .build()?
            .write_value_to_vec(value.clone())?
            .len()
            == body.len();
    if !complete {
        return Err(AvroError::Malformed(
            "the body ends inside a field".to_owned(),
        ));
    }
    let value = value.resolve(schema(kind))?;
    let json = to_json(value, None);
    let not_an_event = |source| AvroError::NotAnEvent { kind, source };
    Ok(match kind {
        EventKind::ProductView => {
            Event::ProductView(serde_json::from_value(json).map_err(not_an_event)?)
        }
        EventKind::Cart => Event::Cart(serde_json::from_value(json).map_err(not_an_event)?),
        EventKind::Purchase => Event::Purchase(serde_json::from_value(json).map_err(not_an_event)?),
        EventKind::Search => Event::Search(serde_json::from_value(json).map_err(not_an_event)?),
    })
}

fn event_json(event: &Event) -> Result<(EventKind, JsonValue), AvroError> {
    let unrepresentable = |e: serde_json::Error| AvroError::Unrepresentable {
        field: String::new(),
        why: e.to_string(),
    };
    Ok(match event {
        Event::ProductView(e) => (
            EventKind::ProductView,
            serde_json::to_value(e).map_err(unrepresentable)?,
        ),
        Event::Cart(e) => (
            EventKind::Cart,
            serde_json::to_value(e).map_err(unrepresentable)?,
        ),
        Event::Purchase(e) => (
            EventKind::Purchase,
            serde_json::to_value(e).map_err(unrepresentable)?,
        ),
        Event::Search(e) => (
            EventKind::Search,
            serde_json::to_value(e).map_err(unrepresentable)?,
        ),
    })
}

/// The Avro value of `json` under `schema` (the committed schemas define every named type
/// inline, so no lookup of names is needed).
fn to_avro(json: &JsonValue, schema: &Schema, path: &str) -> Result<AvroValue, AvroError> {
    let wrong = |expected: &str| AvroError::Unrepresentable {
        field: path.to_owned(),
        why: format!("expected {expected}, got {json}"),
    };
    Ok(match schema {
        Schema::Null if json.is_null() => AvroValue::Null,
        Schema::String => match json {
            JsonValue::String(s) => AvroValue::String(s.clone()),
            JsonValue::Object(_) | JsonValue::Array(_) => AvroValue::String(json.to_string()),
            _ => return Err(wrong("a string")),
        },
        Schema::Double => AvroValue::Double(json.as_f64().ok_or_else(|| wrong("a number"))?),
        Schema::Long => AvroValue::Long(json.as_i64().ok_or_else(|| wrong("an integer"))?),
        Schema::Union(union) => {
            let variants = union.variants();
            let position = if json.is_null() {
                variants.iter().position(|s| matches!(s, Schema::Null))
            } else {
                variants.iter().position(|s| !matches!(s, Schema::Null))
            }
            .ok_or_else(|| wrong("a value of the union"))?;
            let inner = to_avro(json, &variants[position], path)?;
            AvroValue::Union(position as u32, Box::new(inner))
        }
        Schema::Record(record) => {
            let object = json.as_object().ok_or_else(|| wrong("an object"))?;
            let mut fields = Vec::with_capacity(record.fields.len());
            for field in &record.fields {
                let value = object.get(&field.name).unwrap_or(&JsonValue::Null);
                let path = format!("{path}.{}", field.name);
                fields.push((field.name.clone(), to_avro(value, &field.schema, &path)?));
            }
            AvroValue::Record(fields)
        }
        Schema::Array(array) => {
            let items = json.as_array().ok_or_else(|| wrong("an array"))?;
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                out.push(to_avro(item, &array.items, &format!("{path}[{i}]"))?);
            }
            AvroValue::Array(out)
        }
        Schema::Map(map) => {
            let object = json.as_object().ok_or_else(|| wrong("an object"))?;
            let mut out = std::collections::HashMap::with_capacity(object.len());
            for (key, value) in object {
                let inner = to_avro(value, &map.types, &format!("{path}.{key}"))?;
                out.insert(key.clone(), inner);
            }
            AvroValue::Map(out)
        }
        _ => return Err(wrong(&format!("a value of Avro type {schema:?}"))),
    })
}

/// The JSON form of a decoded Avro value, as the model's serde structs read it.
fn to_json(value: AvroValue, field: Option<&str>) -> JsonValue {
    match value {
        AvroValue::Null => JsonValue::Null,
        AvroValue::Boolean(b) => JsonValue::Bool(b),
        AvroValue::Int(i) => JsonValue::from(i),
        AvroValue::Long(i) => JsonValue::from(i),
        AvroValue::Float(f) => JsonValue::from(f64::from(f)),
        AvroValue::Double(f) => JsonValue::from(f),
        AvroValue::String(s) => match field {
            Some(name) if JSON_TEXT_FIELDS.contains(&name) => {
                serde_json::from_str(&s).unwrap_or(JsonValue::String(s))
            }
            _ => JsonValue::String(s),
        },
        AvroValue::Enum(_, symbol) => JsonValue::String(symbol),
        AvroValue::Union(_, inner) => to_json(*inner, field),
        AvroValue::Array(items) => {
            JsonValue::Array(items.into_iter().map(|v| to_json(v, None)).collect())
        }
        AvroValue::Map(map) => JsonValue::Object(
            map.into_iter()
                .map(|(k, v)| (k, to_json(v, None)))
                .collect(),
        ),
        AvroValue::Record(fields) => JsonValue::Object(
            fields
                .into_iter()
                .map(|(name, v)| {
                    let json = to_json(v, Some(&name));
                    (name, json)
                })
                .collect(),
        ),
        other => JsonValue::String(format!("{other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_and_unframes() {
        let framed = frame(0x0102_0304, b"body");
        assert_eq!(framed, b"\x00\x01\x02\x03\x04body");
        assert_eq!(
            unframe(&framed).expect("framed"),
            (0x0102_0304, &b"body"[..])
        );
        assert!(matches!(
            unframe(b"\x00\x01\x02"),
            Err(AvroError::NotWireFormat(_))
        ));
        assert!(matches!(
            unframe(b"{\"user_id\":1}"),
            Err(AvroError::NotWireFormat(_))
        ));
    }
}
