//! Google Analytics 4's Measurement Protocol (`POST /mp/collect`), with GA4's
//! recommended e-commerce events mapped to native events.
//!
//! `view_item`, `add_to_cart` and `remove_from_cart` carry a list of items; the native
//! `product_view` and `cart` events are about one product, so each item becomes an
//! event of its own (the processor's per-product numbers need exactly that). A
//! `purchase` stays one event with one line per item.

use std::collections::BTreeMap;

use bytes::Bytes;
use ingest_core::contract::MAX_ITEMS;
use ingest_core::{ErrorCode, EventKind};
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use uuid::Uuid;

use super::values::{
    carry, ident, identity, is_blank, join, json_error, member, micros_to_rfc3339, object,
    order_line, parse_body, required, sum_of_lines, take, text, type_name, As,
};
use super::{id, Custom, MapError, Mapped};

/// Translates a Measurement Protocol body: `{client_id, user_id?, timestamp_micros?,
/// user_properties?, events: [{name, params?, timestamp_micros?}]}`.
///
/// The result holds one entry per native event, in order: one per event, except that
/// `view_item`, `add_to_cart` and `remove_from_cart` give one per item (or one error).
///
/// # Errors
///
/// The outer error is for the request as a whole: the body is empty, not UTF-8, not
/// JSON or not an object; it has neither `client_id` nor `app_instance_id`; a
/// request-level field has a type the mapping cannot read; `events` is missing or not
/// an array, or holds more than `max_events` events (`too_many_events`). Per-event
/// errors name the field from the top of the body (`events[2].params.items[0].item_id`).
pub fn ga4_collect(
    body: &[u8],
    max_events: usize,
) -> Result<Vec<Result<Mapped, MapError>>, MapError> {
    let raw: &RawValue = parse_body(body)?;
    if !raw.get().starts_with('{') {
        return Err(MapError::new(
            ErrorCode::NotAnObject,
            "the body must be a JSON object with an \"events\" array",
        ));
    }
    // Well-formed, so this only reads the top level; a repeated key keeps the last.
    let fields: BTreeMap<String, &RawValue> =
        serde_json::from_str(raw.get()).map_err(|e| json_error(&e))?;
    let request = Request::read(fields)?;
    let events = request.events.ok_or_else(|| {
        MapError::field(
            ErrorCode::MissingField,
            "events",
            "events is required: an array of {name, params}",
        )
    })?;
    let events: Vec<&RawValue> = serde_json::from_str(events.get()).map_err(|_| {
        MapError::field(
            ErrorCode::InvalidType,
            "events",
            "events must be an array of {name, params}",
        )
    })?;
    if events.len() > max_events {
        return Err(MapError::field(
            ErrorCode::TooManyEvents,
            "events",
            format!(
                "the request holds {} events; at most {max_events} are allowed",
                events.len()
            ),
        ));
    }
    let mut out = Vec::with_capacity(events.len());
    for (index, event) in events.into_iter().enumerate() {
        if let Err(e) = request.event(index, event, &mut out) {
            out.push(Err(e));
        }
    }
    Ok(out)
}

/// The request-level fields, read once for all events.
struct Request<'a> {
    /// Raw values for custom events' bodies.
    raw: Envelope<'a>,
    user_id: Option<String>,
    /// `client_id`, else `app_instance_id`.
    device_id: String,
    timestamp: Option<String>,
    /// `user_agent` and `ip_override`, as native context fields.
    context: Map<String, Value>,
    /// The remaining request-level fields, for the native events' `source`.
    rest: Map<String, Value>,
    events: Option<&'a RawValue>,
}

/// What a custom event's body holds: the request's identity, time and user properties
/// exactly as sent, and the event.
#[derive(Serialize, Clone, Copy)]
struct Envelope<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    client_id: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    app_instance_id: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_id: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    timestamp_micros: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_properties: Option<&'a RawValue>,
}

#[derive(Serialize)]
struct CustomBody<'a> {
    #[serde(flatten)]
    envelope: Envelope<'a>,
    event: &'a RawValue,
}

fn value_of(raw: &RawValue) -> Result<Value, MapError> {
    serde_json::from_str(raw.get()).map_err(|e| json_error(&e))
}

impl<'a> Request<'a> {
    fn read(mut fields: BTreeMap<String, &'a RawValue>) -> Result<Self, MapError> {
        let mut raw_field = |key: &str| fields.remove(key).filter(|v| v.get() != "null");
        let raw = Envelope {
            client_id: raw_field("client_id"),
            app_instance_id: raw_field("app_instance_id"),
            user_id: raw_field("user_id"),
            timestamp_micros: raw_field("timestamp_micros"),
            user_properties: raw_field("user_properties"),
        };
        let events = raw_field("events");
        // A blank id counts as absent.
        let read_ident = |raw: Option<&RawValue>, key: &str| {
            raw.map(|v| identity(value_of(v)?, || key.to_owned()))
                .transpose()
                .map(|id| id.filter(|id| !is_blank(id)))
        };
        let user_id = read_ident(raw.user_id, "user_id")?;
        let device_id = match read_ident(raw.client_id, "client_id")? {
            Some(id) => id,
            None => read_ident(raw.app_instance_id, "app_instance_id")?.ok_or_else(|| {
                MapError::field(
                    ErrorCode::MissingField,
                    "client_id",
                    "client_id (web streams) or app_instance_id (app streams) is required",
                )
            })?,
        };
        let timestamp = raw
            .timestamp_micros
            .map(|v| micros_to_rfc3339(&value_of(v)?, || "timestamp_micros".to_owned()))
            .transpose()?;
        let mut rest = Map::new();
        for (key, value) in fields {
            rest.insert(key, value_of(value)?);
        }
        if let Some(properties) = raw.user_properties {
            rest.insert("user_properties".into(), value_of(properties)?);
        }
        let mut context = Map::new();
        carry(
            &mut rest,
            "user_agent",
            "",
            As::Text,
            &mut context,
            "user_agent",
        )?;
        carry(&mut rest, "ip_override", "", As::Text, &mut context, "ip")?;
        Ok(Request {
            raw,
            user_id,
            device_id,
            timestamp,
            context,
            rest,
            events,
        })
    }

    /// The partition key of custom events.
    fn key(&self) -> String {
        self.user_id
            .clone()
            .unwrap_or_else(|| self.device_id.clone())
    }

    /// Translates the `index`-th event into `out`.
    fn event(
        &self,
        index: usize,
        raw: &RawValue,
        out: &mut Vec<Result<Mapped, MapError>>,
    ) -> Result<(), MapError> {
        let prefix = format!("events[{index}]");
        let mut event = match value_of(raw)? {
            Value::Object(event) => event,
            other => {
                return Err(MapError::field(
                    ErrorCode::NotAnObject,
                    prefix.clone(),
                    format!("{prefix} must be a JSON object, not {}", type_name(&other)),
                ))
            }
        };
        let name = take(&mut event, "name")
            .map(|v| text(v, || join(&prefix, "name")))
            .transpose()?
            .ok_or_else(|| {
                MapError::field(
                    ErrorCode::MissingField,
                    join(&prefix, "name"),
                    format!("{} is required", join(&prefix, "name")),
                )
            })?;
        if name.trim().is_empty() {
            return Err(MapError::field(
                ErrorCode::InvalidValue,
                join(&prefix, "name"),
                format!("{} must not be empty", join(&prefix, "name")),
            ));
        }
        // An event's own time overrides the request's.
        let timestamp = match take(&mut event, "timestamp_micros") {
            Some(micros) => Some(micros_to_rfc3339(&micros, || {
                join(&prefix, "timestamp_micros")
            })?),
            None => self.timestamp.clone(),
        };
        // Without a time there is nothing to tell a resend from a second, identical
        // event: no id is derived, and the validator gives the event a fresh one.
        let derive_id = |item: usize| {
            timestamp.as_deref().map(|at| {
                let user = self.user_id.as_deref().unwrap_or_default();
                id::derive(
                    id::GA4,
                    &[
                        self.device_id.as_bytes(),
                        user.as_bytes(),
                        at.as_bytes(),
                        &(index as u64).to_le_bytes(),
                        &(item as u64).to_le_bytes(),
                        raw.get().as_bytes(),
                    ],
                )
            })
        };
        let Some(kind) = Ecommerce::from_name(&name) else {
            let body = CustomBody {
                envelope: self.raw,
                event: raw,
            };
            let body = serde_json::to_vec(&body).map_err(|e| {
                MapError::new(ErrorCode::InvalidValue, format!("cannot serialise: {e}"))
            })?;
            out.push(Ok(Mapped::Custom(Custom {
                name,
                key: Some(self.key()),
                event_id: derive_id(0).unwrap_or_else(Uuid::now_v7),
                body: Bytes::from(body),
            })));
            return Ok(());
        };

        let base = join(&prefix, "params");
        let mut params = object(take(&mut event, "params"), || base.clone())?;
        let mut common = Map::new();
        if let Some(user_id) = &self.user_id {
            common.insert("user_id".into(), user_id.clone().into());
        }
        common.insert("anonymous_id".into(), self.device_id.clone().into());
        if let Some(at) = timestamp.clone() {
            common.insert("timestamp".into(), at.into());
        }
        carry(
            &mut params,
            "session_id",
            &base,
            As::Ident,
            &mut common,
            "session_id",
        )?;
        let mut context = self.context.clone();
        carry(
            &mut params,
            "page_location",
            &base,
            As::Text,
            &mut context,
            "page_url",
        )?;
        carry(
            &mut params,
            "page_referrer",
            &base,
            As::Text,
            &mut context,
            "referrer",
        )?;
        carry(
            &mut params,
            "language",
            &base,
            As::Text,
            &mut context,
            "locale",
        )?;
        if !context.is_empty() {
            common.insert("context".into(), context.into());
        }
        let mut source = self.rest.clone();
        source.extend(event);
        source.insert("format".into(), "ga4".into());
        source.insert("event".into(), name.clone().into());

        let translation = Translation {
            base: &base,
            name: &name,
            common,
            source,
        };
        match kind {
            Ecommerce::ViewItem | Ecommerce::AddToCart | Ecommerce::RemoveFromCart => {
                translation.per_item(kind, params, derive_id, out)
            }
            Ecommerce::Purchase => out.push(translation.purchase(params, derive_id(0))),
            Ecommerce::Search => out.push(translation.search(params, derive_id(0))),
        }
        Ok(())
    }
}

/// GA4's recommended e-commerce events this project has a type for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Ecommerce {
    ViewItem,
    AddToCart,
    RemoveFromCart,
    Purchase,
    Search,
}

impl Ecommerce {
    fn from_name(name: &str) -> Option<Ecommerce> {
        Some(match name {
            "view_item" => Ecommerce::ViewItem,
            "add_to_cart" => Ecommerce::AddToCart,
            "remove_from_cart" => Ecommerce::RemoveFromCart,
            "purchase" => Ecommerce::Purchase,
            "search" => Ecommerce::Search,
            _ => return None,
        })
    }
}

/// One e-commerce event being translated: the fields every native event made from it
/// shares, and where its params sit in the request.
struct Translation<'a> {
    /// The path of `params` in the request.
    base: &'a str,
    name: &'a str,
    common: Map<String, Value>,
    source: Map<String, Value>,
}

impl Translation<'_> {
    fn finish(
        &self,
        kind: EventKind,
        mut native: Map<String, Value>,
        properties: &Map<String, Value>,
        event_id: Option<Uuid>,
    ) -> Result<Mapped, MapError> {
        if let Some(id) = event_id {
            native.insert("event_id".into(), id.to_string().into());
        }
        if !properties.is_empty() {
            native.insert("properties".into(), properties.clone().into());
        }
        native.insert("source".into(), self.source.clone().into());
        let json = serde_json::to_vec(&native).map_err(|e| {
            MapError::new(ErrorCode::InvalidValue, format!("cannot serialise: {e}"))
        })?;
        Ok(Mapped::Event { kind, json })
    }

    /// `params.items` as objects, with the path of the array.
    fn items(&self, params: &mut Map<String, Value>) -> Result<(String, Vec<Value>), MapError> {
        let path = join(self.base, "items");
        match take(params, "items") {
            Some(Value::Array(items)) if items.len() > MAX_ITEMS => Err(MapError::field(
                ErrorCode::InvalidValue,
                path.clone(),
                format!(
                    "{path} holds {} items; at most {MAX_ITEMS} are allowed",
                    items.len()
                ),
            )),
            Some(Value::Array(items)) if !items.is_empty() => Ok((path, items)),
            None | Some(Value::Array(_)) => Err(MapError::field(
                ErrorCode::MissingField,
                path.clone(),
                format!("{} needs at least one item in {path}", self.name),
            )),
            Some(other) => Err(MapError::field(
                ErrorCode::InvalidType,
                path.clone(),
                format!("{path} must be an array, not {}", type_name(&other)),
            )),
        }
    }

    /// `view_item`, `add_to_cart`, `remove_from_cart`: one native event per item.
    fn per_item(
        self,
        kind: Ecommerce,
        mut params: Map<String, Value>,
        derive_id: impl Fn(usize) -> Option<Uuid>,
        out: &mut Vec<Result<Mapped, MapError>>,
    ) {
        let prepared = self.items(&mut params).and_then(|items| {
            let mut currency = Map::new();
            carry(
                &mut params,
                "currency",
                self.base,
                As::Text,
                &mut currency,
                "currency",
            )?;
            Ok((items, currency))
        });
        let ((path, items), currency) = match prepared {
            Ok(prepared) => prepared,
            Err(e) => return out.push(Err(e)),
        };
        for (index, item) in items.into_iter().enumerate() {
            let path = format!("{path}[{index}]");
            out.push(
                self.one_item(kind, item, &path, &currency)
                    .and_then(|native| {
                        let native_kind = match kind {
                            Ecommerce::ViewItem => EventKind::ProductView,
                            _ => EventKind::Cart,
                        };
                        self.finish(native_kind, native, &params, derive_id(index))
                    }),
            );
        }
    }

    fn one_item(
        &self,
        kind: Ecommerce,
        item: Value,
        path: &str,
        currency: &Map<String, Value>,
    ) -> Result<Map<String, Value>, MapError> {
        let mut item = item_object(item, path)?;
        let mut native = self.common.clone();
        match kind {
            Ecommerce::AddToCart => native.insert("action".into(), "add".into()),
            Ecommerce::RemoveFromCart => native.insert("action".into(), "remove".into()),
            _ => None,
        };
        native.insert("product_id".into(), item_id(&mut item, path)?.into());
        if kind == Ecommerce::ViewItem {
            carry(
                &mut item,
                "item_category",
                path,
                As::Text,
                &mut native,
                "category",
            )?;
            carry(
                &mut item,
                "item_brand",
                path,
                As::Text,
                &mut native,
                "brand",
            )?;
            // Version 2 of the view (its schema header says so when any is set).
            for (key, read, native_key) in [
                ("item_variant", As::Text, "variant"),
                ("item_list_id", As::Ident, "list_id"),
                ("index", As::Number, "position"),
            ] {
                carry(&mut item, key, path, read, &mut native, native_key)?;
            }
        } else {
            // GA4 counts an item without a quantity as one unit.
            carry(
                &mut item,
                "quantity",
                path,
                As::Number,
                &mut native,
                "quantity",
            )?;
            native.entry("quantity").or_insert_with(|| 1.into());
        }
        carry(&mut item, "price", path, As::Number, &mut native, "price")?;
        native.extend(currency.clone());
        if !item.is_empty() {
            native.insert("item".into(), item.into());
        }
        Ok(native)
    }

    fn purchase(
        self,
        mut params: Map<String, Value>,
        event_id: Option<Uuid>,
    ) -> Result<Mapped, MapError> {
        let mut native = self.common.clone();
        carry(
            &mut params,
            "transaction_id",
            self.base,
            As::Ident,
            &mut native,
            "order_id",
        )?;
        required(&native, "order_id", self.base, "transaction_id", "purchase")?;
        let (path, items) = self.items(&mut params)?;
        let mut lines = Vec::with_capacity(items.len());
        for (index, item) in items.into_iter().enumerate() {
            let path = format!("{path}[{index}]");
            let mut item = item_object(item, &path)?;
            let product = item_id(&mut item, &path)?;
            lines.push(order_line(item, product, &path)?);
        }
        carry(
            &mut params,
            "value",
            self.base,
            As::Number,
            &mut native,
            "total",
        )?;
        if !native.contains_key("total") {
            let sum = sum_of_lines(
                lines
                    .iter()
                    .map(|line| (member(line, "price"), member(line, "quantity"))),
            );
            if let Some(sum) = sum.and_then(serde_json::Number::from_f64) {
                native.insert("total".into(), sum.into());
            }
        }
        native.insert("items".into(), lines.into());
        carry(
            &mut params,
            "currency",
            self.base,
            As::Text,
            &mut native,
            "currency",
        )?;
        carry(
            &mut params,
            "tax",
            self.base,
            As::Number,
            &mut native,
            "tax",
        )?;
        carry(
            &mut params,
            "shipping",
            self.base,
            As::Number,
            &mut native,
            "shipping",
        )?;
        carry(
            &mut params,
            "coupon",
            self.base,
            As::Ident,
            &mut native,
            "coupon",
        )?;
        self.finish(EventKind::Purchase, native, &params, event_id)
    }

    fn search(
        self,
        mut params: Map<String, Value>,
        event_id: Option<Uuid>,
    ) -> Result<Mapped, MapError> {
        let mut native = self.common.clone();
        carry(
            &mut params,
            "search_term",
            self.base,
            As::Text,
            &mut native,
            "query",
        )?;
        required(&native, "query", self.base, "search_term", "search")?;
        self.finish(EventKind::Search, native, &params, event_id)
    }
}

fn item_object(item: Value, path: &str) -> Result<Map<String, Value>, MapError> {
    match item {
        Value::Object(item) => Ok(item),
        other => Err(MapError::field(
            ErrorCode::InvalidType,
            path,
            format!("{path} must be an object, not {}", type_name(&other)),
        )),
    }
}

/// `item_id`: GA4 also accepts an item with only `item_name`, but a name does not
/// identify a product.
fn item_id(item: &mut Map<String, Value>, path: &str) -> Result<String, MapError> {
    match take(item, "item_id") {
        Some(id) => ident(id, || join(path, "item_id")),
        None => {
            let path = join(path, "item_id");
            Err(MapError::field(
                ErrorCode::MissingField,
                path.clone(),
                format!("{path} is required (item_name alone does not identify a product)"),
            ))
        }
    }
}
