//! Google Analytics 4's Measurement Protocol (`POST /mp/collect`), with GA4's
//! recommended e-commerce events mapped to native events.
//!
//! `view_item`, `add_to_cart` and `remove_from_cart` carry a list of items; the native
//! `product_view` and `cart` events are about one product, so each item becomes an
//! event of its own (the processor's per-product numbers need exactly that). A
//! `purchase` stays one event with one line per item.
//!
//! A request is read as Segment's messages are (`fields.rs`): members as raw JSON, only
//! the fields the mapping moves decoded, the native events written straight as text.
//! What all events of a request share (identity, time, context, `source`) is written
//! once per event and copied into each native event made from it.

use std::borrow::Cow;

use bytes::Bytes;
use ingest_core::contract::MAX_ITEMS;
use ingest_core::{ErrorCode, EventKind};
use serde_json::value::RawValue;
use uuid::Uuid;

use super::fields::{
    check_nesting, elements, ident, identity, literal, micros_to_rfc3339, object_members,
    raw_type_name, text, Amount, Fields, Ident,
};
use super::order::OrderLine;
use super::values::{is_blank, join, parse_body, As};
use super::writer::{carry, ObjectWriter};
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
/// JSON or not an object; a key appears twice at its top level; it has neither
/// `client_id` nor `app_instance_id`; a request-level field has a type the mapping
/// cannot read; `events` is missing or not an array, or holds more than `max_events`
/// events (`too_many_events`). Per-event errors name the field from the top of the body
/// (`events[2].params.items[0].item_id`).
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
    let mut fields = Fields::read(raw, String::new)?;
    let events = fields.take("events");
    let request = Request::read(fields)?;
    let events = events.ok_or_else(|| {
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
    /// The identity, time and user properties as sent, for custom events' bodies:
    /// `client_id`, `app_instance_id`, `user_id`, `timestamp_micros`, `user_properties`.
    envelope: [(&'static str, Option<&'a RawValue>); 5],
    user_id: Option<Cow<'a, str>>,
    /// `client_id`, else `app_instance_id`.
    device_id: Cow<'a, str>,
    timestamp: Option<String>,
    /// `user_agent` and `ip_override`, for the native `context`.
    user_agent: Option<&'a RawValue>,
    ip: Option<&'a RawValue>,
    /// The remaining request-level fields, for the native events' `source`.
    rest: Fields<'a>,
}

impl<'a> Request<'a> {
    fn read(mut fields: Fields<'a>) -> Result<Self, MapError> {
        let envelope = [
            "client_id",
            "app_instance_id",
            "user_id",
            "timestamp_micros",
        ]
        .map(|key| (key, fields.take(key)));
        // Kept in `rest` too (at its end): it is part of every native event's `source`.
        let user_properties = fields.take("user_properties");
        if let Some(properties) = user_properties {
            fields.insert_missing(Cow::Borrowed("user_properties"), properties);
        }
        let [client_id, app_instance_id, user_id, timestamp_micros] = envelope.map(|(_, v)| v);
        // A blank id counts as absent.
        let read_ident = |raw: Option<&'a RawValue>, key: &str| {
            raw.map(|v| identity(v, || key.to_owned()))
                .transpose()
                .map(|id| id.filter(|id| !is_blank(id)))
        };
        let user_id_text = read_ident(user_id, "user_id")?;
        let device_id = match read_ident(client_id, "client_id")? {
            Some(id) => id,
            None => read_ident(app_instance_id, "app_instance_id")?.ok_or_else(|| {
                MapError::field(
                    ErrorCode::MissingField,
                    "client_id",
                    "client_id (web streams) or app_instance_id (app streams) is required",
                )
            })?,
        };
        let timestamp = timestamp_micros
            .map(|v| micros_to_rfc3339(v, || "timestamp_micros".to_owned()))
            .transpose()?;
        let user_agent = fields
            .take("user_agent")
            .map(|v| literal(v, || "user_agent".to_owned()))
            .transpose()?;
        let ip = fields
            .take("ip_override")
            .map(|v| literal(v, || "ip_override".to_owned()))
            .transpose()?;
        Ok(Request {
            envelope: [
                ("client_id", client_id),
                ("app_instance_id", app_instance_id),
                ("user_id", user_id),
                ("timestamp_micros", timestamp_micros),
                ("user_properties", user_properties),
            ],
            user_id: user_id_text,
            device_id,
            timestamp,
            user_agent,
            ip,
            rest: fields,
        })
    }

    /// The partition key of custom events.
    fn key(&self) -> String {
        self.user_id
            .as_deref()
            .unwrap_or(&self.device_id)
            .to_owned()
    }

    /// A custom event's body: the request's envelope as sent, and the event under
    /// `event` (checked for nesting: it goes out as the sender wrote it).
    fn custom_body(&self, event: &RawValue) -> Result<Bytes, MapError> {
        check_nesting(event)?;
        let mut body = ObjectWriter::new(event.get().len() + 256);
        for (key, value) in self.envelope {
            if let Some(value) = value {
                body.raw(key, value);
            }
        }
        body.raw("event", event);
        Ok(Bytes::from(body.finish()))
    }

    /// Translates the `index`-th event into `out`.
    fn event(
        &self,
        index: usize,
        raw: &'a RawValue,
        out: &mut Vec<Result<Mapped, MapError>>,
    ) -> Result<(), MapError> {
        let prefix = format!("events[{index}]");
        let mut event = object_members(raw, &prefix)?;
        let name_path = || join(&prefix, "name");
        let name = event
            .take("name")
            .map(|v| text(v, name_path))
            .transpose()?
            .ok_or_else(|| {
                MapError::field(
                    ErrorCode::MissingField,
                    name_path(),
                    format!("{} is required", name_path()),
                )
            })?;
        if name.trim().is_empty() {
            return Err(MapError::field(
                ErrorCode::InvalidValue,
                name_path(),
                format!("{} must not be empty", name_path()),
            ));
        }
        // An event's own time overrides the request's.
        let timestamp = match event.take("timestamp_micros") {
            Some(micros) => Some(micros_to_rfc3339(micros, || {
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
            out.push(Ok(Mapped::Custom(Custom {
                name: name.into_owned(),
                key: Some(self.key()),
                event_id: derive_id(0).unwrap_or_else(Uuid::now_v7),
                body: self.custom_body(raw)?,
            })));
            return Ok(());
        };

        let base = join(&prefix, "params");
        let mut params = Fields::read_optional(event.take("params"), || base.clone())?;
        let mut common = ObjectWriter::new(512);
        if let Some(user_id) = &self.user_id {
            common.string("user_id", user_id);
        }
        common.string("anonymous_id", &self.device_id);
        if let Some(at) = &timestamp {
            common.string("timestamp", at);
        }
        carry(
            &mut params,
            "session_id",
            &base,
            As::Ident,
            &mut common,
            "session_id",
        )?;
        let mut page = |key: &str| {
            params
                .take(key)
                .map(|v| literal(v, || join(&base, key)))
                .transpose()
        };
        let context = [
            ("user_agent", self.user_agent),
            ("ip", self.ip),
            ("page_url", page("page_location")?),
            ("referrer", page("page_referrer")?),
            ("locale", page("language")?),
        ];
        if context.iter().any(|(_, value)| value.is_some()) {
            common.open_object("context");
            for (key, value) in context {
                if let Some(value) = value {
                    common.raw(key, value);
                }
            }
            common.close();
        }

        // The rest of the request and of the event, under `source`; the event's own
        // keys win over the request's.
        let mut source = ObjectWriter::new(256);
        source.open_object("source");
        source.members(&self.rest, |key| {
            SOURCE_KEYS.contains(&key) || event.contains(key)
        });
        source.members(&event, |key| SOURCE_KEYS.contains(&key));
        source.string("format", "ga4");
        source.string("event", &name);
        source.close();

        let translation = Translation {
            base: &base,
            name: &name,
            common: common.into_members(),
            source: source.into_members(),
        };
        match kind {
            Ecommerce::ViewItem | Ecommerce::AddToCart | Ecommerce::RemoveFromCart => {
                translation.per_item(kind, params, derive_id, out);
            }
            Ecommerce::Purchase => out.push(translation.purchase(params, derive_id(0))),
            Ecommerce::Search => out.push(translation.search(params, derive_id(0))),
        }
        Ok(())
    }
}

/// Keys the translation writes under `source`; a sender's member of the same name gives
/// way to them.
const SOURCE_KEYS: [&str; 2] = ["format", "event"];

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

/// One e-commerce event being translated: the members every native event made from it
/// shares, already written, and where its params sit in the request.
struct Translation<'t> {
    /// The path of `params` in the request.
    base: &'t str,
    name: &'t str,
    /// Identity, time, session and context.
    common: Vec<u8>,
    /// `"source": {...}`.
    source: Vec<u8>,
}

impl Translation<'_> {
    /// A native event: its id, the shared members, then what `fill` writes.
    fn start(&self, event_id: Option<Uuid>) -> ObjectWriter {
        let mut native = ObjectWriter::new(self.common.len() + self.source.len() + 256);
        if let Some(id) = event_id {
            native.string(
                "event_id",
                id.hyphenated().encode_lower(&mut Uuid::encode_buffer()),
            );
        }
        native.members_text(&self.common);
        native
    }

    /// The end of a native event: the params left over, then `source`.
    fn finish(&self, kind: EventKind, mut native: ObjectWriter, params: &Fields<'_>) -> Mapped {
        if !params.is_empty() {
            native.open_object("properties");
            native.members(params, |_| false);
            native.close();
        }
        native.members_text(&self.source);
        Mapped::Event {
            kind,
            json: native.finish(),
        }
    }

    /// `params.items`, each raw, with the path of the array.
    fn items<'a>(&self, params: &mut Fields<'a>) -> Result<(String, Vec<&'a RawValue>), MapError> {
        let path = join(self.base, "items");
        let items = match params.take("items") {
            Some(raw) => elements(raw, || path.clone())?,
            None => Vec::new(),
        };
        if items.len() > MAX_ITEMS {
            return Err(MapError::field(
                ErrorCode::InvalidValue,
                path.clone(),
                format!(
                    "{path} holds {} items; at most {MAX_ITEMS} are allowed",
                    items.len()
                ),
            ));
        }
        if items.is_empty() {
            return Err(MapError::field(
                ErrorCode::MissingField,
                path.clone(),
                format!("{} needs at least one item in {path}", self.name),
            ));
        }
        Ok((path, items))
    }

    /// `view_item`, `add_to_cart`, `remove_from_cart`: one native event per item.
    fn per_item(
        self,
        kind: Ecommerce,
        mut params: Fields<'_>,
        derive_id: impl Fn(usize) -> Option<Uuid>,
        out: &mut Vec<Result<Mapped, MapError>>,
    ) {
        let prepared = self.items(&mut params).and_then(|items| {
            let currency = params
                .take("currency")
                .map(|v| literal(v, || join(self.base, "currency")))
                .transpose()?;
            Ok((items, currency))
        });
        let ((path, items), currency) = match prepared {
            Ok(prepared) => prepared,
            Err(e) => return out.push(Err(e)),
        };
        let native_kind = match kind {
            Ecommerce::ViewItem => EventKind::ProductView,
            _ => EventKind::Cart,
        };
        for (index, item) in items.into_iter().enumerate() {
            let path = format!("{path}[{index}]");
            let mut native = self.start(derive_id(index));
            out.push(
                one_item(kind, item, &path, currency, &mut native)
                    .map(|()| self.finish(native_kind, native, &params)),
            );
        }
    }

    fn purchase(self, mut params: Fields<'_>, event_id: Option<Uuid>) -> Result<Mapped, MapError> {
        let mut native = self.start(event_id);
        let base = self.base;
        if !carry(
            &mut params,
            "transaction_id",
            base,
            As::Ident,
            &mut native,
            "order_id",
        )? {
            let path = join(base, "transaction_id");
            return Err(MapError::field(
                ErrorCode::MissingField,
                path.clone(),
                format!("{path} is required for purchase"),
            ));
        }
        let (path, items) = self.items(&mut params)?;
        let lines = OrderLine::read_all(items, &path, item_id)?;
        if !carry(&mut params, "value", base, As::Number, &mut native, "total")? {
            if let Some(total) = OrderLine::total(&lines) {
                native.amount("total", &total);
            }
        }
        OrderLine::write_all(&lines, &mut native);
        carry(
            &mut params,
            "currency",
            base,
            As::Text,
            &mut native,
            "currency",
        )?;
        carry(&mut params, "tax", base, As::Number, &mut native, "tax")?;
        carry(
            &mut params,
            "shipping",
            base,
            As::Number,
            &mut native,
            "shipping",
        )?;
        carry(
            &mut params,
            "coupon",
            base,
            As::Ident,
            &mut native,
            "coupon",
        )?;
        Ok(self.finish(EventKind::Purchase, native, &params))
    }

    fn search(self, mut params: Fields<'_>, event_id: Option<Uuid>) -> Result<Mapped, MapError> {
        let mut native = self.start(event_id);
        if !carry(
            &mut params,
            "search_term",
            self.base,
            As::Text,
            &mut native,
            "query",
        )? {
            let path = join(self.base, "search_term");
            return Err(MapError::field(
                ErrorCode::MissingField,
                path.clone(),
                format!("{path} is required for search"),
            ));
        }
        Ok(self.finish(EventKind::Search, native, &params))
    }
}

/// Writes one item's fields into `native`: the item at `path` of a `view_item`,
/// `add_to_cart` or `remove_from_cart`.
fn one_item(
    kind: Ecommerce,
    item: &RawValue,
    path: &str,
    currency: Option<&RawValue>,
    native: &mut ObjectWriter,
) -> Result<(), MapError> {
    if !item.get().starts_with('{') {
        return Err(MapError::field(
            ErrorCode::InvalidType,
            path,
            format!("{path} must be an object, not {}", raw_type_name(item)),
        ));
    }
    let mut item = Fields::read(item, || path.to_owned())?;
    match kind {
        Ecommerce::AddToCart => native.string("action", "add"),
        Ecommerce::RemoveFromCart => native.string("action", "remove"),
        _ => {}
    }
    native.ident("product_id", &item_id(&mut item, path)?);
    if kind == Ecommerce::ViewItem {
        // `item_variant`, `item_list_id` and `index` make it version 2 of the view (its
        // schema header says so when any is set).
        for (key, read, native_key) in [
            ("item_category", As::Text, "category"),
            ("item_brand", As::Text, "brand"),
            ("item_variant", As::Text, "variant"),
            ("item_list_id", As::Ident, "list_id"),
            ("index", As::Number, "position"),
        ] {
            carry(&mut item, key, path, read, native, native_key)?;
        }
    } else if !carry(&mut item, "quantity", path, As::Number, native, "quantity")? {
        // GA4 counts an item without a quantity as one unit.
        native.amount("quantity", &Amount::Read(1.into()));
    }
    carry(&mut item, "price", path, As::Number, native, "price")?;
    if let Some(currency) = currency {
        native.raw("currency", currency);
    }
    if !item.is_empty() {
        native.open_object("item");
        native.members(&item, |_| false);
        native.close();
    }
    Ok(())
}

/// `item_id`: GA4 also accepts an item with only `item_name`, but a name does not
/// identify a product.
fn item_id<'a>(item: &mut Fields<'a>, path: &str) -> Result<Ident<'a>, MapError> {
    match item.take("item_id") {
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
