//! Segment's HTTP tracking API: single calls (`/v1/track`, `/v1/page`, ...) and
//! `/v1/batch`, with the e-commerce v2 spec's event names mapped to native events.

use std::fmt;

use bytes::Bytes;
use ingest_core::{ErrorCode, EventKind};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use uuid::Uuid;

use super::values::{
    carry, ident, identity, is_blank, join, json_error, member, object, order_line, parse_body,
    required, sum_of_lines, take, text, type_name, As,
};
use super::{id, Custom, MapError, Mapped};

/// The Segment calls, each its own endpoint (`POST /v1/<call>`) and `type` in a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SegmentCall {
    /// `track`: a named event with properties; the e-commerce names become native events.
    Track,
    /// `page`: a web page was viewed.
    Page,
    /// `screen`: an app screen was viewed.
    Screen,
    /// `identify`: who the user is, with traits.
    Identify,
    /// `group`: the user joined a company or account.
    Group,
    /// `alias`: two identities are one user.
    Alias,
}

impl SegmentCall {
    /// Every call, in the order of the spec.
    pub const ALL: [SegmentCall; 6] = [
        SegmentCall::Track,
        SegmentCall::Page,
        SegmentCall::Screen,
        SegmentCall::Identify,
        SegmentCall::Group,
        SegmentCall::Alias,
    ];

    /// The call's name, as in its path and in a batch message's `type`.
    pub const fn as_str(self) -> &'static str {
        match self {
            SegmentCall::Track => "track",
            SegmentCall::Page => "page",
            SegmentCall::Screen => "screen",
            SegmentCall::Identify => "identify",
            SegmentCall::Group => "group",
            SegmentCall::Alias => "alias",
        }
    }

    /// The call named `name` (case-sensitive, as Segment writes them).
    pub fn from_name(name: &str) -> Option<SegmentCall> {
        SegmentCall::ALL.into_iter().find(|c| c.as_str() == name)
    }
}

impl fmt::Display for SegmentCall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// Translates the body of a single call (`POST /v1/track`, `/v1/page`, ...). A `type`
/// field in the body is ignored: the endpoint says which call it is.
///
/// # Errors
///
/// The body is empty, not UTF-8, not JSON, too deeply nested or not an object; it has
/// neither `userId` nor `anonymousId`; a `track` call has no `event` name; or a field
/// the mapping reads has a type it cannot translate (see `docs/intake.md`). Paths in
/// errors are the body's own (`properties.products[0].price`).
pub fn segment_single(call: SegmentCall, body: &[u8]) -> Result<Mapped, MapError> {
    let raw: &RawValue = parse_body(body)?;
    let message = message_object(raw, "")?;
    translate(call, message, raw, "", None)
}

/// The body of `/v1/batch`: `{"batch": [...], "context"?, "integrations"?, "sentAt"?,
/// "writeKey"?}`. Only `batch` and `context` are read.
#[derive(Deserialize)]
struct BatchBody<'a> {
    #[serde(borrow, default)]
    batch: Option<&'a RawValue>,
    #[serde(default)]
    context: Option<Value>,
}

/// Translates a `/v1/batch` body, message by message.
///
/// Each message names its call in `type`. A batch-level `context` fills the keys a
/// message's own `context` lacks (for the e-commerce events; custom events keep the
/// message's bytes as sent).
///
/// # Errors
///
/// The outer error is for the request as a whole: the body is empty, not UTF-8, not
/// JSON or not an object; `batch` is missing or not an array; it holds more than
/// `max_events` messages (`too_many_events`). Otherwise every message has its own
/// result, in order, with paths that start at `batch[i]`.
pub fn segment_batch(
    body: &[u8],
    max_events: usize,
) -> Result<Vec<Result<Mapped, MapError>>, MapError> {
    // One pass reads the envelope and splits the messages; only a body it cannot read
    // goes through the careful reading below, which names what is wrong.
    // (serde reads a struct from an array too: only an object takes the one pass.)
    let object = body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    let (messages, context) = match object
        .then(|| serde_json::from_slice::<WellFormedBatch<'_>>(body).ok())
        .flatten()
    {
        Some(batch) => (batch.batch, batch.context),
        None => read_batch_carefully(body)?,
    };
    if messages.len() > max_events {
        return Err(MapError::field(
            ErrorCode::TooManyEvents,
            "batch",
            format!(
                "the batch holds {} messages; at most {max_events} are allowed",
                messages.len()
            ),
        ));
    }
    let context = match context {
        Some(Value::Object(context)) => Some(context),
        _ => None,
    };
    Ok(messages
        .into_iter()
        .enumerate()
        .map(|(index, raw)| {
            let prefix = format!("batch[{index}]");
            let mut message = message_object(raw, &prefix)?;
            let call = call_of(&mut message, &prefix)?;
            translate(call, message, raw, &prefix, context.as_ref())
        })
        .collect())
}

/// A `/v1/batch` body as it should be: an object whose `batch` is an array (a repeated
/// `batch` or `context` key is refused, as the careful reading refuses it).
#[derive(Deserialize)]
struct WellFormedBatch<'a> {
    #[serde(borrow)]
    batch: Vec<&'a RawValue>,
    #[serde(default)]
    context: Option<Value>,
}

/// The messages and the batch-level context of a body the one-pass reading refused,
/// or the precise error.
fn read_batch_carefully(body: &[u8]) -> Result<(Vec<&RawValue>, Option<Value>), MapError> {
    let raw: &RawValue = parse_body(body)?;
    if !raw.get().starts_with('{') {
        return Err(MapError::new(
            ErrorCode::NotAnObject,
            format!(
                "the body must be a JSON object with a \"batch\" array, not {}",
                raw_type_name(raw)
            ),
        ));
    }
    // Well-formed and an object: the only error left is a repeated known key.
    let body: BatchBody<'_> = serde_json::from_str(raw.get()).map_err(|e| {
        MapError::new(
            ErrorCode::DuplicateField,
            format!("a key appears more than once in the body: {e}"),
        )
    })?;
    let batch = body.batch.filter(|b| b.get() != "null").ok_or_else(|| {
        MapError::field(
            ErrorCode::MissingField,
            "batch",
            "batch is required: an array of messages",
        )
    })?;
    let messages: Vec<&RawValue> = serde_json::from_str(batch.get()).map_err(|_| {
        MapError::field(
            ErrorCode::InvalidType,
            "batch",
            format!("batch must be an array, not {}", raw_type_name(batch)),
        )
    })?;
    Ok((messages, body.context))
}

/// The JSON type of a raw value, from its first byte (the value is well-formed).
fn raw_type_name(raw: &RawValue) -> &'static str {
    match raw.get().as_bytes().first() {
        Some(b'{') => "an object",
        Some(b'[') => "an array",
        Some(b'"') => "a string",
        Some(b't' | b'f') => "a boolean",
        Some(b'n') => "null",
        _ => "a number",
    }
}

fn message_object(raw: &RawValue, prefix: &str) -> Result<Map<String, Value>, MapError> {
    match serde_json::from_str::<Value>(raw.get()).map_err(|e| json_error(&e))? {
        Value::Object(map) => Ok(map),
        other if prefix.is_empty() => Err(MapError::new(
            ErrorCode::NotAnObject,
            format!("the body must be a JSON object, not {}", type_name(&other)),
        )),
        other => Err(MapError::field(
            ErrorCode::NotAnObject,
            prefix,
            format!("{prefix} must be a JSON object, not {}", type_name(&other)),
        )),
    }
}

fn call_of(message: &mut Map<String, Value>, prefix: &str) -> Result<SegmentCall, MapError> {
    let path = || join(prefix, "type");
    let Some(name) = take(message, "type") else {
        return Err(MapError::field(
            ErrorCode::MissingField,
            path(),
            format!(
                "{} is required: track, page, screen, identify, group or alias",
                path()
            ),
        ));
    };
    let name = text(name, path)?;
    SegmentCall::from_name(&name).ok_or_else(|| {
        MapError::field(
            ErrorCode::InvalidValue,
            path(),
            format!(
                "{} must be one of track, page, screen, identify, group, alias, not {:?}",
                path(),
                name.chars().take(64).collect::<String>()
            ),
        )
    })
}

/// The e-commerce v2 spec's names this project has a type for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Ecommerce {
    ProductViewed,
    ProductAdded,
    ProductRemoved,
    OrderCompleted,
    ProductsSearched,
}

impl Ecommerce {
    fn from_name(name: &str) -> Option<Ecommerce> {
        Some(match name {
            "Product Viewed" => Ecommerce::ProductViewed,
            "Product Added" => Ecommerce::ProductAdded,
            "Product Removed" => Ecommerce::ProductRemoved,
            "Order Completed" => Ecommerce::OrderCompleted,
            "Products Searched" => Ecommerce::ProductsSearched,
            _ => return None,
        })
    }

    fn kind(self) -> EventKind {
        match self {
            Ecommerce::ProductViewed => EventKind::ProductView,
            Ecommerce::ProductAdded | Ecommerce::ProductRemoved => EventKind::Cart,
            Ecommerce::OrderCompleted => EventKind::Purchase,
            Ecommerce::ProductsSearched => EventKind::Search,
        }
    }
}

/// The currency Segment's spec assumes for revenue when none is given.
const DEFAULT_ORDER_CURRENCY: &str = "USD";

/// A custom event's body: the message as sent, byte for byte, unless it holds a
/// `writeKey` (analytics.js in a browser puts the key in the body): a credential never
/// goes to Kafka, so the message is then written again without it.
fn custom_body(raw: &RawValue, has_write_key: bool) -> Result<Bytes, MapError> {
    if !has_write_key {
        return Ok(Bytes::copy_from_slice(raw.get().as_bytes()));
    }
    let mut message: Map<String, Value> =
        serde_json::from_str(raw.get()).map_err(|e| json_error(&e))?;
    message.remove("writeKey");
    serde_json::to_vec(&message)
        .map(Bytes::from)
        .map_err(|e| MapError::new(ErrorCode::InvalidValue, format!("cannot serialise: {e}")))
}

/// One message, already read as an object, found at `prefix` (`""` for a single call).
fn translate(
    call: SegmentCall,
    mut message: Map<String, Value>,
    raw: &RawValue,
    prefix: &str,
    batch_context: Option<&Map<String, Value>>,
) -> Result<Mapped, MapError> {
    let at = |key: &str| join(prefix, key);
    message.remove("type");
    let has_write_key = message.contains_key("writeKey");
    // Some server libraries send `""` for "no user id": blank counts as absent.
    let user_id = take(&mut message, "userId")
        .map(|v| identity(v, || at("userId")))
        .transpose()?
        .filter(|id| !is_blank(id));
    let anonymous_id = take(&mut message, "anonymousId")
        .map(|v| identity(v, || at("anonymousId")))
        .transpose()?
        .filter(|id| !is_blank(id));
    if user_id.is_none() && anonymous_id.is_none() {
        return Err(MapError::field(
            ErrorCode::MissingField,
            at("userId"),
            format!(
                "one of {} or {} is required",
                at("userId"),
                at("anonymousId")
            ),
        ));
    }
    let message_id = take(&mut message, "messageId")
        .map(|v| ident(v, || at("messageId")))
        .transpose()?;
    // An empty id would make every such message a resend of the others.
    let event_id = message_id
        .as_deref()
        .filter(|id| !is_blank(id))
        .map(id::segment);
    let name = match call {
        SegmentCall::Track => Some(
            take(&mut message, "event")
                .map(|v| text(v, || at("event")))
                .transpose()?
                .ok_or_else(|| {
                    MapError::field(
                        ErrorCode::MissingField,
                        at("event"),
                        format!("{} (the event name) is required for track", at("event")),
                    )
                })
                .and_then(|name| {
                    if name.trim().is_empty() {
                        Err(MapError::field(
                            ErrorCode::InvalidValue,
                            at("event"),
                            format!("{} (the event name) must not be empty", at("event")),
                        ))
                    } else {
                        Ok(name)
                    }
                })?,
        ),
        _ => None,
    };
    let Some(ecommerce) = name.as_deref().and_then(Ecommerce::from_name) else {
        return Ok(Mapped::Custom(Custom {
            name: name.unwrap_or_else(|| call.as_str().to_owned()),
            key: user_id.or(anonymous_id),
            event_id: event_id.unwrap_or_else(Uuid::now_v7),
            body: custom_body(raw, has_write_key)?,
        }));
    };

    let mut native = Map::new();
    if let Some(id) = event_id {
        native.insert("event_id".into(), id.to_string().into());
    }
    if let Some(user_id) = user_id {
        native.insert("user_id".into(), user_id.into());
    }
    if let Some(anonymous_id) = anonymous_id {
        native.insert("anonymous_id".into(), anonymous_id.into());
    }
    // `timestamp` is when it happened; `originalTimestamp` is the device's clock when
    // `timestamp` was not set. `sentAt` is when the request left, not the event's time.
    if message.get("timestamp").is_some_and(|t| !t.is_null()) {
        carry(
            &mut message,
            "timestamp",
            prefix,
            As::Text,
            &mut native,
            "timestamp",
        )?;
    } else {
        let key = "originalTimestamp";
        carry(
            &mut message,
            key,
            prefix,
            As::Text,
            &mut native,
            "timestamp",
        )?;
    }

    let mut context = object(take(&mut message, "context"), || at("context"))?;
    if let Some(shared) = batch_context {
        for (key, value) in shared {
            context.entry(key.clone()).or_insert_with(|| value.clone());
        }
    }
    let native_context = native_context(&mut context, &at("context"))?;
    if !native_context.is_empty() {
        native.insert("context".into(), native_context.into());
    }

    let base = at("properties");
    let mut properties = object(take(&mut message, "properties"), || base.clone())?;
    let name = name.unwrap_or_default();
    let event = Translation {
        properties: &mut properties,
        base: &base,
        name: &name,
        native: &mut native,
    };
    match ecommerce {
        Ecommerce::ProductViewed => event.product_view()?,
        Ecommerce::ProductAdded => event.cart("add")?,
        Ecommerce::ProductRemoved => event.cart("remove")?,
        Ecommerce::OrderCompleted => event.purchase()?,
        Ecommerce::ProductsSearched => event.search()?,
    }
    if !properties.is_empty() {
        native.insert("properties".into(), properties.into());
    }

    // The rest of the envelope, under `source`; a write key is a credential, not data.
    message.remove("writeKey");
    let mut source = message;
    source.insert("format".into(), "segment".into());
    source.insert("type".into(), call.as_str().into());
    source.insert("event".into(), name.into());
    if let Some(message_id) = message_id {
        source.insert("message_id".into(), message_id.into());
    }
    if !context.is_empty() {
        source.insert("context".into(), context.into());
    }
    native.insert("source".into(), source.into());

    let json = serde_json::to_vec(&native)
        .map_err(|e| MapError::new(ErrorCode::InvalidValue, format!("cannot serialise: {e}")))?;
    Ok(Mapped::Event {
        kind: ecommerce.kind(),
        json,
    })
}

/// Moves Segment's context fields that have a native home out of `context` (found at
/// path `base`) into a native `context` object.
fn native_context(
    context: &mut Map<String, Value>,
    base: &str,
) -> Result<Map<String, Value>, MapError> {
    let mut native = Map::new();
    carry(
        context,
        "userAgent",
        base,
        As::Text,
        &mut native,
        "user_agent",
    )?;
    carry(context, "ip", base, As::Text, &mut native, "ip")?;
    carry(context, "locale", base, As::Text, &mut native, "locale")?;
    let page_base = join(base, "page");
    let mut page = object(take(context, "page"), || page_base.clone())?;
    carry(
        &mut page,
        "url",
        &page_base,
        As::Text,
        &mut native,
        "page_url",
    )?;
    carry(
        &mut page,
        "referrer",
        &page_base,
        As::Text,
        &mut native,
        "referrer",
    )?;
    if !page.is_empty() {
        context.insert("page".into(), page.into());
    }
    Ok(native)
}

/// One e-commerce message's properties being moved into the native event.
struct Translation<'a> {
    properties: &'a mut Map<String, Value>,
    /// The path of `properties` in the sender's payload.
    base: &'a str,
    /// The event name, for messages.
    name: &'a str,
    native: &'a mut Map<String, Value>,
}

impl Translation<'_> {
    fn carry(&mut self, key: &str, read: As, native_key: &str) -> Result<(), MapError> {
        carry(
            self.properties,
            key,
            self.base,
            read,
            self.native,
            native_key,
        )
    }

    fn product_id(&mut self) -> Result<(), MapError> {
        let id = product_id(self.properties, self.base, self.name)?;
        self.native.insert("product_id".into(), id.into());
        Ok(())
    }

    fn product_view(mut self) -> Result<(), MapError> {
        self.product_id()?;
        self.carry("category", As::Text, "category")?;
        self.carry("brand", As::Text, "brand")?;
        self.carry("price", As::Number, "price")?;
        self.carry("currency", As::Text, "currency")?;
        // Version 2 of the view (its schema header says so when either is set).
        self.carry("variant", As::Text, "variant")?;
        self.carry("position", As::Number, "position")
    }

    fn cart(mut self, action: &str) -> Result<(), MapError> {
        self.native.insert("action".into(), action.into());
        self.product_id()?;
        self.carry("quantity", As::Number, "quantity")?;
        if action == "add" {
            // An added product without a quantity is one unit.
            self.native.entry("quantity").or_insert_with(|| 1.into());
        }
        self.carry("price", As::Number, "price")?;
        self.carry("currency", As::Text, "currency")?;
        self.carry("cart_id", As::Ident, "cart_id")
    }

    fn purchase(mut self) -> Result<(), MapError> {
        if self.properties.contains_key("order_id") {
            self.carry("order_id", As::Ident, "order_id")?;
        } else {
            self.carry("checkout_id", As::Ident, "order_id")?;
        }
        if !self.native.contains_key("order_id") {
            let path = join(self.base, "order_id");
            return Err(MapError::field(
                ErrorCode::MissingField,
                path.clone(),
                format!("{path} (or checkout_id) is required for {}", self.name),
            ));
        }
        let products_path = join(self.base, "products");
        let products = match take(self.properties, "products") {
            None => Vec::new(),
            Some(Value::Array(products)) => products,
            Some(other) => {
                return Err(MapError::field(
                    ErrorCode::InvalidType,
                    products_path.clone(),
                    format!(
                        "{products_path} must be an array, not {}",
                        type_name(&other)
                    ),
                ))
            }
        };
        let mut items = Vec::with_capacity(products.len());
        for (index, product) in products.into_iter().enumerate() {
            let path = format!("{products_path}[{index}]");
            let Value::Object(mut product) = product else {
                return Err(MapError::field(
                    ErrorCode::InvalidType,
                    path.clone(),
                    format!("{path} must be an object, not {}", type_name(&product)),
                ));
            };
            let product_id = product_id(&mut product, &path, self.name)?;
            items.push(order_line(product, product_id, &path)?);
        }
        // The amount paid: `total`, else `revenue`, else the sum of the lines.
        self.carry("total", As::Number, "total")?;
        if !self.native.contains_key("total") {
            self.carry("revenue", As::Number, "total")?;
        }
        if !self.native.contains_key("total") {
            let lines = items
                .iter()
                .map(|item| (member(item, "price"), member(item, "quantity")));
            if let Some(sum) = sum_of_lines(lines).and_then(serde_json::Number::from_f64) {
                self.native.insert("total".into(), sum.into());
            }
        }
        self.native.insert("items".into(), items.into());
        self.carry("currency", As::Text, "currency")?;
        self.native
            .entry("currency")
            .or_insert_with(|| DEFAULT_ORDER_CURRENCY.into());
        self.carry("discount", As::Number, "discount")?;
        self.carry("tax", As::Number, "tax")?;
        self.carry("shipping", As::Number, "shipping")?;
        self.carry("coupon", As::Ident, "coupon")
    }

    fn search(mut self) -> Result<(), MapError> {
        self.carry("query", As::Text, "query")?;
        required(self.native, "query", self.base, "query", self.name)
    }
}

/// `product_id`, else `sku`, of a product object found at `base`.
fn product_id(
    product: &mut Map<String, Value>,
    base: &str,
    name: &str,
) -> Result<String, MapError> {
    for key in ["product_id", "sku"] {
        if let Some(value) = take(product, key) {
            return ident(value, || join(base, key));
        }
    }
    let path = join(base, "product_id");
    Err(MapError::field(
        ErrorCode::MissingField,
        path.clone(),
        format!("{path} (or sku) is required for {name}"),
    ))
}
