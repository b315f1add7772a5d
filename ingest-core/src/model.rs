//! Typed events, for consumers of the topics (the processor, or any service reading
//! Kafka): serde structs that mirror the public contract.
//!
//! Producers never need these: ingest-core validates on the tape and sends the client's
//! bytes. A consumer decodes a record's value with [`Event::decode`], using the
//! `event_type` header for the type. Every event that passed validation decodes; fields
//! the contract does not name are ignored here (they are still in the record).

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

use crate::event::EventKind;

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

/// A product page or tile was viewed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProductView {
    /// Common fields.
    #[serde(flatten)]
    pub common: Common,
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

/// A cart changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cart {
    /// Common fields.
    #[serde(flatten)]
    pub common: Common,
    /// What happened.
    pub action: CartAction,
    /// The product (absent for `clear`).
    pub product_id: Option<String>,
    /// The new or added quantity.
    #[serde(default, deserialize_with = "whole_number")]
    pub quantity: Option<u64>,
    /// The unit price, in `currency`.
    pub price: Option<f64>,
    /// ISO 4217 code of `price`.
    pub currency: Option<String>,
    /// The cart.
    pub cart_id: Option<String>,
}

/// One line of an order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Item {
    /// The product.
    pub product_id: String,
    /// How many (at least 1).
    #[serde(deserialize_with = "required_whole_number")]
    pub quantity: u64,
    /// The unit price, in the order's currency.
    pub price: f64,
}

/// An order was placed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Purchase {
    /// Common fields.
    #[serde(flatten)]
    pub common: Common,
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

/// A search was run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Search {
    /// Common fields.
    #[serde(flatten)]
    pub common: Common,
    /// What was searched for.
    pub query: String,
    /// How many results it found.
    #[serde(default, deserialize_with = "whole_number")]
    pub results_count: Option<u64>,
    /// Filters applied, as sent.
    pub filters: Option<serde_json::Map<String, serde_json::Value>>,
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
}

/// `null` where a map belongs means an empty map, as validation treats it.
fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// A count: validation accepts `2` and `2.0` alike, so decoding does too.
fn whole_number<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u64>, D::Error> {
    let Some(n) = Option::<f64>::deserialize(deserializer)? else {
        return Ok(None);
    };
    if n >= 0.0 && n.fract() == 0.0 && n <= 9.0e15 {
        Ok(Some(n as u64))
    } else {
        Err(serde::de::Error::custom(format!(
            "{n} is not a whole number >= 0"
        )))
    }
}

fn required_whole_number<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    whole_number(deserializer)?
        .ok_or_else(|| serde::de::Error::custom("a whole number is required"))
}

#[cfg(test)]
mod tests {
    use super::*;
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
            (common(), ".{0,40}", proptest::option::of(0u64..1000)).prop_map(|((user, _, _), query, count)| {
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
}
