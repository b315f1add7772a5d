//! Typed events, for consumers of the topics (the processor, or any service reading
//! Kafka): serde structs that mirror the public contract.
//!
//! Producers never need these: ingest-core validates on the tape and sends the client's
//! bytes. A consumer decodes a record's value with [`Event::decode`], using the
//! `event_type` header for the type. Every event that passed validation decodes; fields
//! the contract does not name are ignored here (they are still in the record).
//!
//! Records from other producers never passed the validator. A consumer that stores what
//! it reads runs [`Event::check_content`] on each decoded event: it applies the
//! contract's rules on characters, lengths, amounts and counts ([`crate::contract`]), so
//! a record a store would refuse is set aside instead of failing a whole batch.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

use crate::contract::{MAX_POSITION, MAX_QUANTITY, MAX_RESULTS_COUNT};
use crate::event::EventKind;

mod content;

/// Fields every event may carry.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Common {
    /// The client's event id, if it sent one (the `event_id` header always has the id).
    pub event_id: Option<String>,
    /// The signed-in user.
    pub user_id: Option<String>,
    /// The anonymous visitor.
    pub anonymous_id: Option<String>,
    /// The session, if the client tracks one.
    pub session_id: Option<String>,
    /// When the event happened (RFC 3339), if the client said so.
    pub timestamp: Option<String>,
    /// Where and how the event happened.
    pub context: Option<Context>,
}

impl Common {
    /// `user_id`, else `anonymous_id`: the identity the record is keyed by.
    pub fn identity(&self) -> Option<&str> {
        self.user_id.as_deref().or(self.anonymous_id.as_deref())
    }
}

/// The optional `context` object.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Context {
    /// The browser's or app's user agent.
    pub user_agent: Option<String>,
    /// The client's IP address.
    pub ip: Option<String>,
    /// The page the event happened on.
    pub page_url: Option<String>,
    /// The page before it.
    pub referrer: Option<String>,
    /// The visitor's locale (BCP 47).
    pub locale: Option<String>,
    /// A/B experiments the visitor is in: flag name → variant.
    #[serde(default, deserialize_with = "null_as_default")]
    pub experiments: BTreeMap<String, String>,
}

/// Declares an event type: its [`Common`] fields first, then its own.
///
/// Serialised with `serde(flatten)`, but read through a private struct that lists the
/// common fields next to the type's own (`read as`): `flatten` on the reading side
/// buffers the whole object into an intermediate tree and reads it a second time, which
/// was most of the cost of [`Event::decode`] for a consumer reading every record.
macro_rules! event_struct {
    (
        $(#[$meta:meta])*
        pub struct $name:ident, read as $fields:ident {
            $( $(#[$field_meta:meta])* pub $field:ident : $ty:ty, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Serialize)]
        pub struct $name {
            /// Common fields.
            #[serde(flatten)]
            pub common: Common,
            $( $(#[$field_meta])* pub $field: $ty, )*
        }

        // How the type is read: the common fields and its own, side by side.
        #[derive(Deserialize)]
        struct $fields {
            event_id: Option<String>,
            user_id: Option<String>,
            anonymous_id: Option<String>,
            session_id: Option<String>,
            timestamp: Option<String>,
            context: Option<Context>,
            $( $(#[$field_meta])* $field: $ty, )*
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let read = $fields::deserialize(deserializer)?;
                Ok($name {
                    common: Common {
                        event_id: read.event_id,
                        user_id: read.user_id,
                        anonymous_id: read.anonymous_id,
                        session_id: read.session_id,
                        timestamp: read.timestamp,
                        context: read.context,
                    },
                    $( $field: read.$field, )*
                })
            }
        }
    };
}

event_struct! {
/// A product page or tile was viewed.
pub struct ProductView, read as ProductViewFields {
    /// The product.
    pub product_id: String,
    /// Its category.
    pub category: Option<String>,
    /// Its brand.
    pub brand: Option<String>,
    /// Its price, in `currency`.
    pub price: Option<f64>,
    /// ISO 4217 code of `price`.
    pub currency: Option<String>,
    /// The product's variant shown (size, colour), since version 2 of the contract.
    #[serde(default)]
    pub variant: Option<String>,
    /// The list the product was shown in (search results, a category page, a
    /// recommendation slot), since version 2.
    #[serde(default)]
    pub list_id: Option<String>,
    /// Its place in that list (at most [`MAX_POSITION`]), since version 2.
    #[serde(default, deserialize_with = "position")]
    pub position: Option<u64>,
}
}

/// What a cart event did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CartAction {
    /// A product was added.
    Add,
    /// A product was removed.
    Remove,
    /// A product's quantity changed.
    Update,
    /// The cart was emptied.
    Clear,
}

event_struct! {
/// A cart changed.
pub struct Cart, read as CartFields {
    /// What happened.
    pub action: CartAction,
    /// The product (absent for `clear`).
    pub product_id: Option<String>,
    /// The new or added quantity (at most [`MAX_QUANTITY`]).
    #[serde(default, deserialize_with = "quantity")]
    pub quantity: Option<u64>,
    /// The unit price, in `currency`.
    pub price: Option<f64>,
    /// ISO 4217 code of `price`.
    pub currency: Option<String>,
    /// The cart.
    pub cart_id: Option<String>,
}
}

/// One line of an order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Item {
    /// The product.
    pub product_id: String,
    /// How many (1 to [`MAX_QUANTITY`]).
    #[serde(deserialize_with = "item_quantity")]
    pub quantity: u64,
    /// The unit price, in the order's currency.
    pub price: f64,
}

event_struct! {
/// An order was placed.
pub struct Purchase, read as PurchaseFields {
    /// The order.
    pub order_id: String,
    /// Its lines (1 to 1,000).
    pub items: Vec<Item>,
    /// The amount paid, in `currency`.
    pub total: f64,
    /// ISO 4217 code of every amount of the order.
    pub currency: String,
    /// Discount granted.
    pub discount: Option<f64>,
    /// Tax included.
    pub tax: Option<f64>,
    /// Shipping charged.
    pub shipping: Option<f64>,
    /// Coupon used.
    pub coupon: Option<String>,
}
}

event_struct! {
/// A search was run.
pub struct Search, read as SearchFields {
    /// What was searched for.
    pub query: String,
    /// How many results it found (at most [`MAX_RESULTS_COUNT`]).
    #[serde(default, deserialize_with = "results_count")]
    pub results_count: Option<u64>,
    /// Filters applied, as sent.
    pub filters: Option<serde_json::Map<String, serde_json::Value>>,
}
}

/// Any event of the contract.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A product view.
    ProductView(ProductView),
    /// A cart change.
    Cart(Cart),
    /// An order.
    Purchase(Purchase),
    /// A search.
    Search(Search),
}

impl Event {
    /// Decodes a record value of type `kind` (from the record's `event_type` header).
    ///
    /// Counts are read as the validator reads them: whole numbers (`2` or `2.0`) up to
    /// the field's maximum ([`MAX_QUANTITY`], [`MAX_RESULTS_COUNT`]). Nothing else is
    /// checked here: see [`check_content`](Self::check_content).
    ///
    /// # Errors
    ///
    /// The JSON error when the bytes are not an event of that type; never the case for
    /// records ingest-core wrote.
    pub fn decode(kind: EventKind, value: &[u8]) -> Result<Event, serde_json::Error> {
        Ok(match kind {
            EventKind::ProductView => Event::ProductView(serde_json::from_slice(value)?),
            EventKind::Cart => Event::Cart(serde_json::from_slice(value)?),
            EventKind::Purchase => Event::Purchase(serde_json::from_slice(value)?),
            EventKind::Search => Event::Search(serde_json::from_slice(value)?),
        })
    }

    /// The event's type.
    pub fn kind(&self) -> EventKind {
        match self {
            Event::ProductView(_) => EventKind::ProductView,
            Event::Cart(_) => EventKind::Cart,
            Event::Purchase(_) => EventKind::Purchase,
            Event::Search(_) => EventKind::Search,
        }
    }

    /// The fields every event has.
    pub fn common(&self) -> &Common {
        match self {
            Event::ProductView(e) => &e.common,
            Event::Cart(e) => &e.common,
            Event::Purchase(e) => &e.common,
            Event::Search(e) => &e.common,
        }
    }

    /// The fields every event has, to change (a consumer adding what a record's
    /// headers say, for example).
    pub fn common_mut(&mut self) -> &mut Common {
        match self {
            Event::ProductView(e) => &mut e.common,
            Event::Cart(e) => &mut e.common,
            Event::Purchase(e) => &mut e.common,
            Event::Search(e) => &mut e.common,
        }
    }
}

/// `null` where a map belongs means an empty map, as validation treats it.
fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// A count from 0 to `max`: validation accepts `2` and `2.0` alike, so decoding does too,
/// and decoding refuses what validation refuses above the field's maximum.
fn whole_number<'de, D: Deserializer<'de>>(
    deserializer: D,
    max: u64,
) -> Result<Option<u64>, D::Error> {
    let Some(n) = Option::<f64>::deserialize(deserializer)? else {
        return Ok(None);
    };
    // `max` is far below 2^53, so it and every count up to it are exact as floats.
    if n >= 0.0 && n.fract() == 0.0 && n <= max as f64 {
        Ok(Some(n as u64))
    } else {
        Err(serde::de::Error::custom(format!(
            "{n} is not a whole number from 0 to {max}"
        )))
    }
}

fn quantity<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u64>, D::Error> {
    whole_number(deserializer, MAX_QUANTITY)
}

fn item_quantity<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    whole_number(deserializer, MAX_QUANTITY)?
        .ok_or_else(|| serde::de::Error::custom("a whole number is required"))
}

fn results_count<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u64>, D::Error> {
    whole_number(deserializer, MAX_RESULTS_COUNT)
}

fn position<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u64>, D::Error> {
    whole_number(deserializer, MAX_POSITION)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::{
        MAX_AMOUNT, MAX_ID_CHARS, MAX_ITEMS, MAX_LABEL_CHARS, MAX_LOCALE_CHARS, MAX_QUERY_CHARS,
        MAX_URL_CHARS, MAX_USER_AGENT_CHARS,
    };
    use crate::error::ErrorCode;
    use crate::validate::Validator;
    use bytes::Bytes;
    use proptest::prelude::*;

    #[test]
    fn decodes_every_type_with_its_fields() {
        let view = Event::decode(
            EventKind::ProductView,
            br#"{"user_id":"u1","product_id":"p","price":19.99,"currency":"EUR","x":1,"context":{"experiments":{"checkout_v2":"control"},"ip":"203.0.113.7"}}"#,
        )
        .expect("decodes");
        let Event::ProductView(view) = view else {
            panic!("kind")
        };
        assert_eq!(view.product_id, "p");
        assert_eq!(view.price, Some(19.99));
        assert_eq!(view.common.identity(), Some("u1"));
        let context = view.common.context.expect("context");
        assert_eq!(
            context.experiments.get("checkout_v2").map(String::as_str),
            Some("control")
        );

        let cart = Event::decode(
            EventKind::Cart,
            br#"{"anonymous_id":"a","action":"add","product_id":"p","quantity":2.0}"#,
        )
        .expect("decodes");
        let Event::Cart(cart) = cart else {
            panic!("kind")
        };
        assert_eq!((cart.action, cart.quantity), (CartAction::Add, Some(2)));
        assert_eq!(cart.common.identity(), Some("a"));

        let purchase = Event::decode(
            EventKind::Purchase,
            br#"{"user_id":"u","order_id":"o","items":[{"product_id":"p","quantity":3,"price":2.5}],"total":7.5,"currency":"EUR","coupon":null}"#,
        )
        .expect("decodes");
        assert_eq!(purchase.kind(), EventKind::Purchase);
        let Event::Purchase(purchase) = purchase else {
            panic!("kind")
        };
        assert_eq!(purchase.items[0].quantity, 3);
        assert_eq!(purchase.total, 7.5);

        let search = Event::decode(
            EventKind::Search,
            br#"{"user_id":"u","query":"shoes","results_count":0,"filters":{"size":42}}"#,
        )
        .expect("decodes");
        let Event::Search(search) = search else {
            panic!("kind")
        };
        assert_eq!(
            (search.query.as_str(), search.results_count),
            ("shoes", Some(0))
        );
    }

    #[test]
    fn deep_nesting_is_skipped_where_unread_and_refused_where_read() {
        let nested = |depth: usize| format!("{}1{}", "[".repeat(depth), "]".repeat(depth));
        // A field no event type names is skipped without recursion, however deep: the
        // agent's `limits.max_depth` may allow up to 1,024 levels.
        let unread = format!(
            r#"{{"user_id":"u","product_id":"p","x":{}}}"#,
            nested(100_000)
        );
        assert!(Event::decode(EventKind::ProductView, unread.as_bytes()).is_ok());
        // Filters are kept as values: serde_json's recursion limit refuses them.
        let read = format!(
            r#"{{"user_id":"u","query":"q","filters":{{"x":{}}}}}"#,
            nested(200)
        );
        assert!(Event::decode(EventKind::Search, read.as_bytes()).is_err());
    }

    #[test]
    fn wrong_type_is_an_error_not_a_panic() {
        assert!(Event::decode(EventKind::Purchase, br#"{"user_id":"u","query":"q"}"#).is_err());
        assert!(Event::decode(EventKind::Cart, b"not json").is_err());
    }

    fn amount() -> impl Strategy<Value = f64> {
        prop_oneof![(0u32..100_000).prop_map(f64::from), (0.0f64..1e6)]
    }

    fn id() -> impl Strategy<Value = String> {
        "[a-zA-Z0-9_-]{1,20}"
    }

    /// Valid events of every type, with optional fields present or not.
    fn valid_event() -> impl Strategy<Value = (EventKind, serde_json::Value)> {
        let common = || {
            (
                id(),
                proptest::option::of(id()),
                proptest::option::of("[a-z]{1,8}"),
            )
        };
        prop_oneof![
            (common(), id(), proptest::option::of(amount())).prop_map(|((user, session, _), product, price)| {
                (EventKind::ProductView, serde_json::json!({"user_id": user, "session_id": session, "product_id": product, "price": price, "currency": "EUR"}))
            }),
            (common(), prop_oneof![Just("add"), Just("update"), Just("remove"), Just("clear")], id(), 0u64..50, any::<bool>())
                .prop_map(|((user, _, _), action, product, quantity, float)| {
                    let quantity = if float { serde_json::json!(quantity as f64) } else { serde_json::json!(quantity) };
                    (EventKind::Cart, serde_json::json!({"anonymous_id": user, "action": action, "product_id": product, "quantity": quantity}))
                }),
            (common(), id(), proptest::collection::vec((id(), 1u64..10, amount()), 1..5), amount())
                .prop_map(|((user, _, coupon), order, items, total)| {
                    let items: Vec<_> = items.into_iter().map(|(p, q, price)| serde_json::json!({"product_id": p, "quantity": q, "price": price})).collect();
                    (EventKind::Purchase, serde_json::json!({"user_id": user, "order_id": order, "items": items, "total": total, "currency": "USD", "coupon": coupon}))
                }),
            (common(), "[^\u{0}]{0,40}", proptest::option::of(0u64..1000)).prop_map(|((user, _, _), query, count)| {
                (EventKind::Search, serde_json::json!({"user_id": user, "query": query, "results_count": count}))
            }),
        ]
    }

    proptest! {
        #[test]
        fn every_valid_event_decodes_to_the_same_values((kind, event) in valid_event()) {
            let bytes = serde_json::to_vec(&event).expect("serialises");
            Validator::default()
                .validate(Some(kind), Bytes::from(bytes.clone()))
                .map_err(|e| TestCaseError::fail(format!("{e}: {event}")))?;
            let decoded = Event::decode(kind, &bytes).map_err(|e| TestCaseError::fail(format!("{e}: {event}")))?;
            prop_assert_eq!(decoded.kind(), kind);
            let identity = event.get("user_id").or(event.get("anonymous_id")).and_then(|v| v.as_str());
            prop_assert_eq!(decoded.common().identity(), identity);
            // Re-encoding the typed event and decoding it again is stable.
            let again = match &decoded {
                Event::ProductView(e) => serde_json::to_vec(e),
                Event::Cart(e) => serde_json::to_vec(e),
                Event::Purchase(e) => serde_json::to_vec(e),
                Event::Search(e) => serde_json::to_vec(e),
            }
            .expect("serialises");
            prop_assert_eq!(Event::decode(kind, &again).expect("decodes"), decoded);
        }
    }

    #[test]
    fn check_content_refuses_what_the_validator_refuses() {
        let refused = |kind: EventKind, json: &str, field: &str, code: ErrorCode, message: &str| {
            let event = Event::decode(kind, json.as_bytes()).expect(json);
            let err = event.check_content().expect_err(json);
            assert_eq!(
                (err.code(), err.field_path(), err.message()),
                (code, Some(field), message),
                "{json}"
            );
            assert_eq!(err.event_kind(), Some(kind));
            let validated = Validator::default()
                .validate(Some(kind), Bytes::copy_from_slice(json.as_bytes()))
                .expect_err(json);
            assert_eq!(
                (validated.code(), validated.field_path()),
                (code, Some(field)),
                "the validator agrees: {json}"
            );
        };
        let pv = EventKind::ProductView;
        let invalid = ErrorCode::InvalidValue;
        let control = "must not contain control characters (U+0000–U+001F, U+007F–U+009F)";
        refused(
            pv,
            r#"{"user_id":"u\u0000","product_id":"p"}"#,
            "user_id",
            invalid,
            &format!("user_id {control}"),
        );
        refused(
            pv,
            r#"{"anonymous_id":"\t","product_id":"p"}"#,
            "anonymous_id",
            invalid,
            &format!("anonymous_id {control}"),
        );
        refused(
            pv,
            r#"{"product_id":"p"}"#,
            "user_id",
            ErrorCode::MissingField,
            "one of user_id or anonymous_id is required",
        );
        refused(
            pv,
            r#"{"user_id":" ","product_id":"p"}"#,
            "user_id",
            invalid,
            "user_id must not be only whitespace",
        );
        refused(
            pv,
            r#"{"user_id":"u","product_id":"p\u2028"}"#,
            "product_id",
            invalid,
            "product_id must not contain line or paragraph separators (U+2028, U+2029)",
        );
        refused(
            pv,
            r#"{"user_id":"u","product_id":"p","brand":"\u0000"}"#,
            "brand",
            invalid,
            "brand must not contain U+0000 (NUL)",
        );
        refused(
            pv,
            r#"{"user_id":"u","product_id":"p","context":{"locale":"de\u0000"}}"#,
            "context.locale",
            invalid,
            "locale must not contain U+0000 (NUL)",
        );
        refused(
            pv,
            r#"{"user_id":"u","product_id":"p","context":{"experiments":{"a=b":"on"}}}"#,
            r#"context.experiments."a=b""#,
            invalid,
            "experiment flag names must not contain '='",
        );
        refused(
            pv,
            r#"{"user_id":"u","product_id":"p","context":{"experiments":{"f":"\u0085"}}}"#,
            "context.experiments.f",
            invalid,
            &format!("experiment variant names {control}"),
        );
        refused(
            pv,
            r#"{"user_id":"u","product_id":"p","price":1e13}"#,
            "price",
            invalid,
            "price must be at most 1e11, got 1e13",
        );
        refused(
            pv,
            r#"{"user_id":"u","product_id":"p","price":-1}"#,
            "price",
            invalid,
            "price must be a finite number >= 0, got -1",
        );
        let long = "x".repeat(MAX_ID_CHARS + 1);
        refused(
            pv,
            &format!(r#"{{"user_id":"u","product_id":"{long}"}}"#),
            "product_id",
            ErrorCode::TooLong,
            "product_id is longer than 128 characters",
        );
        let cart = EventKind::Cart;
        refused(
            cart,
            r#"{"user_id":"u","action":"add","quantity":1}"#,
            "product_id",
            ErrorCode::MissingField,
            "product_id is required",
        );
        refused(
            cart,
            r#"{"user_id":"u","action":"update","product_id":"p"}"#,
            "quantity",
            ErrorCode::MissingField,
            "quantity is required",
        );
        refused(
            cart,
            r#"{"user_id":"u","action":"clear","cart_id":"c\n"}"#,
            "cart_id",
            invalid,
            &format!("cart_id {control}"),
        );
        let purchase = EventKind::Purchase;
        refused(
            purchase,
            r#"{"user_id":"u","order_id":"o","items":[],"total":1,"currency":"EUR"}"#,
            "items",
            invalid,
            "items must hold 1 to 1000 entries, not 0",
        );
        refused(
            purchase,
            r#"{"user_id":"u","order_id":"o","items":[{"product_id":"p","quantity":0,"price":1}],"total":1,"currency":"EUR"}"#,
            "items[0].quantity",
            invalid,
            "quantity must be >= 1, got 0",
        );
        refused(
            purchase,
            r#"{"user_id":"u","order_id":"o","items":[{"product_id":"p","quantity":1,"price":1e12}],"total":1,"currency":"EUR"}"#,
            "items[0].price",
            invalid,
            "price must be at most 1e11, got 1e12",
        );
        refused(
            purchase,
            r#"{"user_id":"u","order_id":"o","items":[{"product_id":"p","quantity":1,"price":1}],"total":1e13,"currency":"EUR"}"#,
            "total",
            invalid,
            "total must be at most 1e11, got 1e13",
        );
        refused(
            purchase,
            r#"{"user_id":"u","order_id":"o","items":[{"product_id":"p","quantity":1,"price":1}],"total":1,"currency":"EUR","coupon":"\u0000"}"#,
            "coupon",
            invalid,
            &format!("coupon {control}"),
        );
        let search = EventKind::Search;
        refused(
            search,
            r#"{"user_id":"u","query":"\u0000"}"#,
            "query",
            invalid,
            "query must not contain U+0000 (NUL)",
        );
        refused(
            search,
            r#"{"user_id":"u","query":"q","filters":{"size":[1,{"x":"\u0000"}]}}"#,
            "filters.size[1].x",
            invalid,
            "x must not contain U+0000 (NUL)",
        );
        refused(
            search,
            r#"{"user_id":"u","query":"q","filters":{"a\u0000":1}}"#,
            r#"filters."a\0""#,
            invalid,
            "object keys must not contain U+0000 (NUL)",
        );
    }

    #[test]
    fn decoded_counts_stop_at_the_contract_maximum() {
        let cart = |q: &str| {
            format!(r#"{{"user_id":"u","action":"add","product_id":"p","quantity":{q}}}"#)
        };
        for fine in ["0", "1000000", "1000000.0", "2.0", "1e6"] {
            assert!(
                Event::decode(EventKind::Cart, cart(fine).as_bytes()).is_ok(),
                "{fine}"
            );
        }
        for refused in [
            "1000001",
            "9000000000000001",
            "18446744073709551615",
            "1e308",
            "2.5",
            "-1",
        ] {
            assert!(
                Event::decode(EventKind::Cart, cart(refused).as_bytes()).is_err(),
                "{refused}"
            );
        }
        let search = |n: &str| format!(r#"{{"user_id":"u","query":"q","results_count":{n}}}"#);
        assert!(Event::decode(EventKind::Search, search("1000000000").as_bytes()).is_ok());
        assert!(Event::decode(EventKind::Search, search("1000000001").as_bytes()).is_err());
    }

    /// Characters that break storage or parsing downstream, weighted against plain ones.
    fn hostile_char() -> impl Strategy<Value = char> {
        prop_oneof![
            6 => proptest::char::range('a', 'z'),
            3 => Just('\0'),
            2 => proptest::char::range('\u{1}', '\u{1f}'),
            1 => Just('\t'),
            1 => Just('\u{7f}'),
            2 => proptest::char::range('\u{80}', '\u{9f}'),
            2 => Just('='),
            1 => Just('\u{2028}'),
            1 => Just('\u{2029}'),
            2 => Just(' '),
            2 => proptest::char::range('\u{10000}', '\u{10ffff}'),
            2 => any::<char>(),
        ]
    }

    /// A string for a field of at most `max` characters: mostly plain, sometimes hostile,
    /// sometimes at the length limit (with 4-byte characters).
    fn text(max: usize) -> BoxedStrategy<String> {
        let long_char = prop_oneof![4 => Just('a'), 1 => Just('\u{1F600}'), 1 => hostile_char()];
        prop_oneof![
            8 => "[a-z0-9_-]{1,12}".boxed(),
            3 => proptest::collection::vec(hostile_char(), 0..8)
                .prop_map(String::from_iter)
                .boxed(),
            1 => proptest::collection::vec(long_char, max - 1..=max + 1)
                .prop_map(String::from_iter)
                .boxed(),
        ]
        .boxed()
    }

    /// An amount: ordinary, or at and around the contract's bounds.
    fn extreme_amount() -> impl Strategy<Value = serde_json::Value> {
        prop_oneof![
            8 => (0.0f64..1e6).prop_map(serde_json::Value::from),
            1 => Just(serde_json::json!(MAX_AMOUNT)),
            1 => Just(serde_json::json!(MAX_AMOUNT - 0.5)),
            1 => Just(serde_json::json!(MAX_AMOUNT + 1.0)),
            1 => Just(serde_json::json!(1e308)),
            1 => Just(serde_json::json!(9_000_000_000_000_001u64)),
            1 => Just(serde_json::json!(u64::MAX)),
            1 => Just(serde_json::json!(-0.5)),
        ]
    }

    /// A count for a field of at most `max`: ordinary, or at and around its bounds.
    fn extreme_count(max: u64) -> impl Strategy<Value = serde_json::Value> {
        prop_oneof![
            8 => (0u64..100).prop_map(serde_json::Value::from),
            1 => Just(serde_json::json!(max)),
            1 => Just(serde_json::json!(max as f64)),
            1 => Just(serde_json::json!(max + 1)),
            1 => Just(serde_json::json!(2.5)),
            1 => Just(serde_json::json!(9_000_000_000_000_001u64)),
            1 => Just(serde_json::json!(u64::MAX)),
            1 => Just(serde_json::json!(1e308)),
            1 => Just(serde_json::json!(-1)),
        ]
    }

    fn insert_some<T: Into<serde_json::Value>>(
        object: &mut serde_json::Map<String, serde_json::Value>,
        key: &str,
        value: Option<T>,
    ) {
        if let Some(value) = value {
            object.insert(key.to_owned(), value.into());
        }
    }

    fn filters() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            text(16).prop_map(serde_json::Value::from),
            (0u32..100).prop_map(serde_json::Value::from),
        ];
        let value = leaf.prop_recursive(2, 8, 3, |inner| {
            proptest::collection::vec(inner, 0..3).prop_map(serde_json::Value::from)
        });
        proptest::collection::btree_map(text(16), value, 0..3)
            .prop_map(|m| serde_json::Value::Object(m.into_iter().collect()))
    }

    /// Events of every type with hostile strings in every string field the model holds,
    /// and extreme amounts and counts. No `timestamp`, `event_id`, `ip` or unknown
    /// fields, and valid currencies: those rules are the validator's alone.
    fn hostile_event() -> impl Strategy<Value = (EventKind, serde_json::Value)> {
        let opt = |s: BoxedStrategy<String>| proptest::option::weighted(0.3, s);
        let context = (
            opt(text(MAX_USER_AGENT_CHARS)),
            opt(text(MAX_URL_CHARS)),
            opt(text(MAX_URL_CHARS)),
            opt(text(MAX_LOCALE_CHARS)),
            proptest::collection::btree_map(text(MAX_ID_CHARS), text(MAX_ID_CHARS), 0..3),
        )
            .prop_map(|(user_agent, page_url, referrer, locale, experiments)| {
                let mut context = serde_json::Map::new();
                insert_some(&mut context, "user_agent", user_agent);
                insert_some(&mut context, "page_url", page_url);
                insert_some(&mut context, "referrer", referrer);
                insert_some(&mut context, "locale", locale);
                let experiments: serde_json::Map<_, _> = experiments
                    .into_iter()
                    .map(|(k, v)| (k, v.into()))
                    .collect();
                context.insert("experiments".into(), experiments.into());
                serde_json::Value::Object(context)
            });
        let common = (
            proptest::option::weighted(0.8, text(MAX_ID_CHARS)),
            proptest::option::weighted(0.3, text(MAX_ID_CHARS)),
            opt(text(MAX_ID_CHARS)),
            proptest::option::weighted(0.2, context),
        )
            .prop_map(|(user, anonymous, session, context)| {
                let mut event = serde_json::Map::new();
                insert_some(&mut event, "user_id", user);
                insert_some(&mut event, "anonymous_id", anonymous);
                insert_some(&mut event, "session_id", session);
                insert_some(&mut event, "context", context);
                event
            });
        let amount = || proptest::option::weighted(0.5, extreme_amount());
        prop_oneof![
            (common.clone(), text(MAX_ID_CHARS), opt(text(MAX_LABEL_CHARS)), opt(text(MAX_LABEL_CHARS)), amount())
                .prop_map(|(mut event, product, category, brand, price)| {
                    event.insert("product_id".into(), product.into());
                    insert_some(&mut event, "category", category);
                    insert_some(&mut event, "brand", brand);
                    insert_some(&mut event, "price", price);
                    event.insert("currency".into(), "EUR".into());
                    (EventKind::ProductView, event)
                }),
            (
                common.clone(),
                prop_oneof![Just("add"), Just("update"), Just("remove"), Just("clear")],
                proptest::option::weighted(0.9, text(MAX_ID_CHARS)),
                proptest::option::weighted(0.9, extreme_count(MAX_QUANTITY)),
                amount(),
                opt(text(MAX_ID_CHARS)),
            )
                .prop_map(|(mut event, action, product, quantity, price, cart_id)| {
                    event.insert("action".into(), action.into());
                    insert_some(&mut event, "product_id", product);
                    insert_some(&mut event, "quantity", quantity);
                    insert_some(&mut event, "price", price);
                    insert_some(&mut event, "cart_id", cart_id);
                    (EventKind::Cart, event)
                }),
            (
                common.clone(),
                text(MAX_ID_CHARS),
                proptest::collection::vec(
                    (text(MAX_ID_CHARS), extreme_count(MAX_QUANTITY), extreme_amount()),
                    0..4,
                ),
                extreme_amount(),
                (amount(), amount(), amount()),
                opt(text(MAX_ID_CHARS)),
            )
                .prop_map(|(mut event, order, items, total, (discount, tax, shipping), coupon)| {
                    let items: Vec<_> = items
                        .into_iter()
                        .map(|(product, quantity, price)| {
                            serde_json::json!({"product_id": product, "quantity": quantity, "price": price})
                        })
                        .collect();
                    event.insert("order_id".into(), order.into());
                    event.insert("items".into(), items.into());
                    event.insert("total".into(), total);
                    event.insert("currency".into(), "IDR".into());
                    insert_some(&mut event, "discount", discount);
                    insert_some(&mut event, "tax", tax);
                    insert_some(&mut event, "shipping", shipping);
                    insert_some(&mut event, "coupon", coupon);
                    (EventKind::Purchase, event)
                }),
            (
                common,
                text(MAX_QUERY_CHARS),
                proptest::option::weighted(0.5, extreme_count(MAX_RESULTS_COUNT)),
                proptest::option::weighted(0.5, filters()),
            )
                .prop_map(|(mut event, query, results, filters)| {
                    event.insert("query".into(), query.into());
                    insert_some(&mut event, "results_count", results);
                    insert_some(&mut event, "filters", filters);
                    (EventKind::Search, event)
                }),
        ]
        .prop_map(|(kind, event)| (kind, serde_json::Value::Object(event)))
    }

    /// Whether any string or key in `value` holds U+0000.
    fn holds_nul(value: &serde_json::Value) -> bool {
        match value {
            serde_json::Value::String(s) => s.contains('\0'),
            serde_json::Value::Array(elements) => elements.iter().any(holds_nul),
            serde_json::Value::Object(members) => members
                .iter()
                .any(|(key, member)| key.contains('\0') || holds_nul(member)),
            _ => false,
        }
    }

    /// Every amount of an event, and every count.
    fn numbers(event: &Event) -> (Vec<f64>, Vec<u64>) {
        match event {
            Event::ProductView(e) => (e.price.into_iter().collect(), vec![]),
            Event::Cart(e) => (
                e.price.into_iter().collect(),
                e.quantity.into_iter().collect(),
            ),
            Event::Purchase(e) => {
                let mut amounts = vec![e.total];
                amounts.extend([e.discount, e.tax, e.shipping].into_iter().flatten());
                amounts.extend(e.items.iter().map(|item| item.price));
                (amounts, e.items.iter().map(|item| item.quantity).collect())
            }
            Event::Search(e) => (vec![], e.results_count.into_iter().collect()),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]

        /// The validator and `check_content` on the decoded event agree on every event
        /// the generator makes, and what they accept is safe to store and to add up.
        #[test]
        fn validator_and_check_content_agree_on_hostile_events((kind, event) in hostile_event()) {
            let bytes = serde_json::to_vec(&event).expect("serialises");
            let roomy = Validator::new(crate::Limits { max_event_bytes: 1 << 20, ..crate::Limits::default() });
            let validated = roomy.validate(Some(kind), Bytes::from(bytes.clone()));
            let decoded = Event::decode(kind, &bytes);
            let checked = decoded.as_ref().map(|e| e.check_content());
            let content_ok = matches!(checked, Ok(Ok(())));
            prop_assert_eq!(
                validated.is_ok(),
                content_ok,
                "validator: {:?}; decode and check_content: {:?}",
                validated.as_ref().err().map(ToString::to_string),
                checked.as_ref().map_err(ToString::to_string).map(|r| r.as_ref().err().map(ToString::to_string)),
            );
            if validated.is_ok() {
                let decoded = decoded.expect("accepted events decode");
                let again = match &decoded {
                    Event::ProductView(e) => serde_json::to_value(e),
                    Event::Cart(e) => serde_json::to_value(e),
                    Event::Purchase(e) => serde_json::to_value(e),
                    Event::Search(e) => serde_json::to_value(e),
                }
                .expect("serialises");
                prop_assert!(!holds_nul(&again), "a decoded string holds U+0000: {}", again);
                let (amounts, counts) = numbers(&decoded);
                for amount in amounts {
                    prop_assert!(amount * 1e6 < i64::MAX as f64, "{}", amount);
                }
                for count in counts {
                    prop_assert!(count.checked_mul(MAX_ITEMS as u64).is_some_and(|n| n <= i64::MAX as u64), "{}", count);
                }
            }
        }
    }
}
