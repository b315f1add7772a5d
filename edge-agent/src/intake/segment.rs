//! Segment's HTTP tracking API: single calls (`/v1/track`, `/v1/page`, ...) and
//! `/v1/batch`, with the e-commerce v2 spec's event names mapped to native events.

use std::fmt;

use std::borrow::Cow;

use bytes::Bytes;
use ingest_core::{ErrorCode, EventKind};
use serde::Deserialize;
use serde_json::value::RawValue;
use uuid::Uuid;

use super::fields::{
    check_nesting, ident, identity, is_null, literal, object_members, raw_type_name, text, Amount,
    Fields, Ident,
};
use super::order::OrderLine;
use super::values::{is_blank, join, parse_body, As};
use super::writer::{carry, ObjectWriter};
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
/// neither `userId` nor `anonymousId`; a `track` call has no `event` name; a key the
/// mapping reads appears twice in one object; or a field the mapping reads has a type
/// it cannot translate (see `docs/intake.md`). Paths in errors are the body's own
/// (`properties.products[0].price`).
pub fn segment_single(call: SegmentCall, body: &[u8]) -> Result<Mapped, MapError> {
    let raw: &RawValue = parse_body(body)?;
    let mut message = object_members(raw, "")?;
    message.take("type");
    translate(call, message, raw, "", None)
}

/// The body of `/v1/batch`: `{"batch": [...], "context"?, "integrations"?, "sentAt"?,
/// "writeKey"?}`. Only `batch` and `context` are read.
#[derive(Deserialize)]
struct BatchBody<'a> {
    #[serde(borrow, default)]
    batch: Option<&'a RawValue>,
    #[serde(borrow, default)]
    context: Option<&'a RawValue>,
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
/// JSON or not an object; `batch` is missing or not an array; the batch-level
/// `context` repeats a key; the batch holds more than `max_events` messages
/// (`too_many_events`). Otherwise every message has its own result, in order, with
/// paths that start at `batch[i]`.
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
    // A batch-level context that is not an object is ignored, as Segment ignores it.
    let context = match context.filter(|c| c.get().starts_with('{')) {
        Some(raw) => Some(Fields::read(raw, || "context".to_owned())?),
        None => None,
    };
    Ok(messages
        .into_iter()
        .enumerate()
        .map(|(index, raw)| {
            let prefix = format!("batch[{index}]");
            let mut message = object_members(raw, &prefix)?;
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
    #[serde(borrow, default)]
    context: Option<&'a RawValue>,
}

/// The messages and the batch-level context of a body the one-pass reading refused,
/// or the precise error.
fn read_batch_carefully(body: &[u8]) -> Result<(Vec<&RawValue>, Option<&RawValue>), MapError> {
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
    let batch = body.batch.filter(|b| !is_null(b)).ok_or_else(|| {
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

fn call_of(message: &mut Fields<'_>, prefix: &str) -> Result<SegmentCall, MapError> {
    let path = || join(prefix, "type");
    let Some(name) = message.take("type") else {
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
///
/// Reading a message does not recurse into the values it only carries, so the nesting
/// of a body that goes out as sent is checked here (an e-commerce event's is checked by
/// the validator).
fn custom_body(raw: &RawValue, has_write_key: bool) -> Result<Bytes, MapError> {
    check_nesting(raw)?;
    if !has_write_key {
        return Ok(Bytes::copy_from_slice(raw.get().as_bytes()));
    }
    let message = Fields::read(raw, String::new)?;
    let mut out = ObjectWriter::new(raw.get().len());
    out.members(&message, |key| key == "writeKey");
    Ok(Bytes::from(out.finish()))
}

/// A Segment body or message as it may be kept, in the dead-letter topic: without its
/// top-level `writeKey`, a credential. `None` when the text `writeKey` is still in it
/// after that (deeper in it, or in a body that cannot be read as an object): then
/// nothing of it may be kept.
pub fn segment_without_write_key(bytes: &Bytes) -> Option<Bytes> {
    const KEY: &[u8] = b"writeKey";
    let holds_key = |b: &[u8]| b.windows(KEY.len()).any(|w| w == KEY);
    if !holds_key(bytes) {
        return Some(bytes.clone());
    }
    let raw: &RawValue = serde_json::from_slice(bytes).ok()?;
    let message = Fields::read(raw, String::new).ok()?;
    let mut out = ObjectWriter::new(bytes.len());
    out.members(&message, |key| key == "writeKey");
    let kept = out.finish();
    (!holds_key(&kept)).then(|| Bytes::from(kept))
}

/// Keys the translation writes under `source`; a sender's member of the same name in
/// the rest of the message gives way to them.
const SOURCE_KEYS: [&str; 5] = ["format", "type", "event", "message_id", "context"];

/// One message, its members read, found at `prefix` (`""` for a single call); its
/// `type` has been taken.
fn translate<'a>(
    call: SegmentCall,
    mut message: Fields<'a>,
    raw: &'a RawValue,
    prefix: &str,
    batch_context: Option<&Fields<'a>>,
) -> Result<Mapped, MapError> {
    let at = |key: &str| join(prefix, key);
    let has_write_key = message.contains("writeKey");
    // Some server libraries send `""` for "no user id": blank counts as absent.
    let user_id = message
        .take("userId")
        .map(|v| identity(v, || at("userId")))
        .transpose()?
        .filter(|id| !is_blank(id));
    let anonymous_id = message
        .take("anonymousId")
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
    let message_id = message
        .take("messageId")
        .map(|v| ident(v, || at("messageId")).and_then(|id| id.text()))
        .transpose()?;
    // An empty id would make every such message a resend of the others.
    let event_id = message_id
        .as_deref()
        .filter(|id| !is_blank(id))
        .map(id::segment);
    let name = match call {
        SegmentCall::Track => Some(event_name(&mut message, prefix)?),
        _ => None,
    };
    let Some(ecommerce) = name.as_deref().and_then(Ecommerce::from_name) else {
        return Ok(Mapped::Custom(Custom {
            name: name.map_or_else(|| call.as_str().to_owned(), Cow::into_owned),
            key: user_id.or(anonymous_id).map(Cow::into_owned),
            event_id: event_id.unwrap_or_else(Uuid::now_v7),
            body: custom_body(raw, has_write_key)?,
        }));
    };
    let name = name.unwrap_or_default();

    let mut native = ObjectWriter::new(raw.get().len() + 64);
    let mut id_text = Uuid::encode_buffer();
    let event_id = event_id.map(|id| &*id.hyphenated().encode_lower(&mut id_text));
    if let Some(id) = event_id {
        native.string("event_id", id);
    }
    if let Some(user_id) = &user_id {
        native.string("user_id", user_id);
    }
    if let Some(anonymous_id) = &anonymous_id {
        native.string("anonymous_id", anonymous_id);
    }
    // `timestamp` is when it happened; `originalTimestamp` is the device's clock when
    // `timestamp` was not set. `sentAt` is when the request left, not the event's time.
    let time_key = if message.get("timestamp").is_some_and(|t| !is_null(t)) {
        "timestamp"
    } else {
        "originalTimestamp"
    };
    if let Some(time) = message.take(time_key) {
        native.raw("timestamp", literal(time, || at(time_key))?);
    }

    let mut context = Fields::read_optional(message.take("context"), || at("context"))?;
    if let Some(shared) = batch_context {
        for (key, value) in shared.iter() {
            context.insert_missing(key.clone(), value);
        }
    }
    let page = native_context(&mut context, &at("context"), &mut native)?;

    let base = at("properties");
    let mut properties = Fields::read_optional(message.take("properties"), || base.clone())?;
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
    write_members(&mut native, "properties", &properties);

    // The rest of the envelope, under `source`; a write key is a credential, not data.
    native.open_object("source");
    native.members(&message, |key| {
        key == "writeKey" || SOURCE_KEYS.contains(&key)
    });
    native.string("format", "segment");
    native.string("type", call.as_str());
    native.string("event", &name);
    // A messageId that is a UUID is the event id itself, so it is not written twice.
    if let Some(message_id) = message_id.filter(|id| event_id != Some(id)) {
        native.string("message_id", &message_id);
    }
    if !context.is_empty() || !page.is_empty() {
        native.open_object("context");
        native.members(&context, |_| false);
        write_members(&mut native, "page", &page);
        native.close();
    }
    Ok(Mapped::Event {
        kind: ecommerce.kind(),
        json: native.finish(),
    })
}

/// A track call's event name, required and not blank.
fn event_name<'a>(message: &mut Fields<'a>, prefix: &str) -> Result<Cow<'a, str>, MapError> {
    let path = || join(prefix, "event");
    let Some(raw) = message.take("event") else {
        return Err(MapError::field(
            ErrorCode::MissingField,
            path(),
            format!("{} (the event name) is required for track", path()),
        ));
    };
    let name = text(raw, path)?;
    if name.trim().is_empty() {
        return Err(MapError::field(
            ErrorCode::InvalidValue,
            path(),
            format!("{} (the event name) must not be empty", path()),
        ));
    }
    Ok(name)
}

/// `"key":{...}` with `fields`' members as sent, unless there are none.
fn write_members(out: &mut ObjectWriter, key: &str, fields: &Fields<'_>) {
    if fields.is_empty() {
        return;
    }
    out.open_object(key);
    out.members(fields, |_| false);
    out.close();
}

/// Writes the native `context` from Segment's context fields that have a native home,
/// taken out of `context` (found at path `base`). Returns what is left of
/// `context.page`, which stays with the rest of the context.
fn native_context<'a>(
    context: &mut Fields<'a>,
    base: &str,
    native: &mut ObjectWriter,
) -> Result<Fields<'a>, MapError> {
    let page_base = join(base, "page");
    let mut page = Fields::read_optional(context.take("page"), || page_base.clone())?;
    let take = |from: &mut Fields<'a>, key: &str, base: &str| {
        from.take(key)
            .map(|value| literal(value, || join(base, key)))
            .transpose()
    };
    let found = [
        take(context, "userAgent", base)?,
        take(context, "ip", base)?,
        take(context, "locale", base)?,
        take(&mut page, "url", &page_base)?,
        take(&mut page, "referrer", &page_base)?,
    ];
    if found.iter().any(Option::is_some) {
        native.open_object("context");
        let names = ["user_agent", "ip", "locale", "page_url", "referrer"];
        for (name, value) in names.into_iter().zip(&found) {
            if let Some(value) = value {
                native.raw(name, value);
            }
        }
        native.close();
    }
    Ok(page)
}

/// One e-commerce message's properties being moved into the native event.
struct Translation<'p, 'a> {
    properties: &'p mut Fields<'a>,
    /// The path of `properties` in the sender's payload.
    base: &'p str,
    /// The event name, for messages.
    name: &'p str,
    native: &'p mut ObjectWriter,
}

impl<'a> Translation<'_, 'a> {
    fn path(&self, key: &str) -> String {
        join(self.base, key)
    }

    /// Moves a property to `native_key` (see [`carry`]).
    fn carry(&mut self, key: &str, read: As, native_key: &str) -> Result<bool, MapError> {
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
        self.native.ident("product_id", &id);
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
        self.carry("position", As::Number, "position")?;
        Ok(())
    }

    fn cart(mut self, action: &str) -> Result<(), MapError> {
        self.native.string("action", action);
        self.product_id()?;
        // An added product without a quantity is one unit.
        if !self.carry("quantity", As::Number, "quantity")? && action == "add" {
            self.native.amount("quantity", &Amount::Read(1.into()));
        }
        self.carry("price", As::Number, "price")?;
        self.carry("currency", As::Text, "currency")?;
        self.carry("cart_id", As::Ident, "cart_id")?;
        Ok(())
    }

    fn purchase(mut self) -> Result<(), MapError> {
        let id_key = if self.properties.contains("order_id") {
            "order_id"
        } else {
            "checkout_id"
        };
        if !self.carry(id_key, As::Ident, "order_id")? {
            let path = self.path("order_id");
            return Err(MapError::field(
                ErrorCode::MissingField,
                path.clone(),
                format!("{path} (or checkout_id) is required for {}", self.name),
            ));
        }
        let products_path = self.path("products");
        let products = match self.properties.take("products") {
            None => Vec::new(),
            Some(raw) => super::fields::elements(raw, || products_path.clone())?,
        };
        // The lines are read before anything is written: the total may be their sum.
        let name = self.name;
        let lines = OrderLine::read_all(products, &products_path, |product, path| {
            product_id(product, path, name)
        })?;
        // The amount paid: `total`, else `revenue`, else the sum of the lines.
        if !self.carry("total", As::Number, "total")?
            && !self.carry("revenue", As::Number, "total")?
        {
            if let Some(total) = OrderLine::total(&lines) {
                self.native.amount("total", &total);
            }
        }
        OrderLine::write_all(&lines, self.native);
        if !self.carry("currency", As::Text, "currency")? {
            self.native.string("currency", DEFAULT_ORDER_CURRENCY);
        }
        self.carry("discount", As::Number, "discount")?;
        self.carry("tax", As::Number, "tax")?;
        self.carry("shipping", As::Number, "shipping")?;
        self.carry("coupon", As::Ident, "coupon")?;
        Ok(())
    }

    fn search(mut self) -> Result<(), MapError> {
        if self.carry("query", As::Text, "query")? {
            return Ok(());
        }
        let path = self.path("query");
        Err(MapError::field(
            ErrorCode::MissingField,
            path.clone(),
            format!("{path} is required for {}", self.name),
        ))
    }
}

/// `product_id`, else `sku`, of a product object found at `base`.
fn product_id<'a>(product: &mut Fields<'a>, base: &str, name: &str) -> Result<Ident<'a>, MapError> {
    for key in ["product_id", "sku"] {
        if let Some(value) = product.take(key) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kept_body_never_holds_the_write_key() {
        let keep = |text: &str| segment_without_write_key(&Bytes::from(text.to_owned()));
        let plain = r#"{"type":"track","event":"x"}"#;
        assert_eq!(keep(plain).as_deref(), Some(plain.as_bytes()), "untouched");
        let kept = keep(r#"{"type":"track","writeKey":"wk-secret-0123456789","event":"x"}"#)
            .expect("rewritten");
        let kept: serde_json::Value = serde_json::from_slice(&kept).expect("JSON");
        assert_eq!(kept, serde_json::json!({"type": "track", "event": "x"}));
        // A key deeper in, or in a body that cannot be read: nothing is kept.
        assert_eq!(keep(r#"{"batch":[{"writeKey":"wk-secret"}]}"#), None);
        assert_eq!(keep(r#"{"writeKey":"wk-secret", "#), None);
    }
}
