//! The storefront's events as Segment's and GA4's libraries would send them, for load
//! on the agent's Segment- and GA4-compatible endpoints (`loadgen --format`). Each
//! event keeps its meaning: a product view is a `Product Viewed` track call or a
//! `view_item` event, and so on, so the agent maps it back to the same event type.

use serde_json::{json, Map, Value};

use crate::storefront::Event;
use ingest_core::EventKind;

/// A Segment `track` call for `event`, as analytics-node sends it in a batch. The
/// `messageId` is the event's id, so the mapped event keeps it (a verifier finds the
/// event in Kafka by it).
pub fn segment_message(event: &Event, timestamp: &str) -> Value {
    let native = parse(event);
    let (name, properties) = match event.kind {
        EventKind::ProductView => (
            "Product Viewed",
            pick(
                &native,
                &["product_id", "category", "brand", "price", "currency"],
            ),
        ),
        EventKind::Cart => (
            if native["action"] == "remove" {
                "Product Removed"
            } else {
                "Product Added"
            },
            pick(
                &native,
                &["product_id", "quantity", "price", "currency", "cart_id"],
            ),
        ),
        EventKind::Purchase => {
            let mut properties = pick(&native, &["order_id", "total", "currency"]);
            properties.insert("products".to_owned(), native["items"].clone());
            ("Order Completed", properties)
        }
        EventKind::Search => ("Products Searched", pick(&native, &["query"])),
    };
    let context = &native["context"];
    json!({
        "type": "track",
        "event": name,
        "userId": native["user_id"],
        "messageId": native["event_id"],
        "timestamp": timestamp,
        "properties": properties,
        "context": {
            "library": {"name": "@segment/analytics-node", "version": "2.1.3"},
            "userAgent": context["user_agent"],
            "ip": context["ip"],
            "locale": context["locale"],
            "page": {"url": context["page_url"]},
        },
        "integrations": {},
    })
}

/// A GA4 Measurement Protocol event for `event` (`view_item`, `add_to_cart`,
/// `remove_from_cart`, `purchase`, `search`).
pub fn ga4_event(event: &Event) -> Value {
    let native = parse(event);
    let item = |product: &Value, quantity: &Value, price: &Value| json!({"item_id": product, "quantity": quantity, "price": price});
    match event.kind {
        EventKind::ProductView => json!({
            "name": "view_item",
            "params": {
                "currency": native["currency"],
                "value": native["price"],
                "items": [item(&native["product_id"], &json!(1), &native["price"])],
            },
        }),
        EventKind::Cart => json!({
            "name": if native["action"] == "remove" { "remove_from_cart" } else { "add_to_cart" },
            "params": {
                "currency": native["currency"],
                "items": [item(&native["product_id"], &native["quantity"], &native["price"])],
            },
        }),
        EventKind::Purchase => {
            let items: Vec<Value> = native["items"]
                .as_array()
                .map(|items| {
                    items
                        .iter()
                        .map(|i| item(&i["product_id"], &i["quantity"], &i["price"]))
                        .collect()
                })
                .unwrap_or_default();
            json!({
                "name": "purchase",
                "params": {
                    "transaction_id": native["order_id"],
                    "currency": native["currency"],
                    "value": native["total"],
                    "items": items,
                },
            })
        }
        EventKind::Search => json!({
            "name": "search",
            "params": {"search_term": native["query"]},
        }),
    }
}

fn parse(event: &Event) -> Value {
    serde_json::from_slice(&event.body).expect("the storefront generates JSON")
}

fn pick(native: &Value, fields: &[&str]) -> Map<String, Value> {
    fields
        .iter()
        .filter(|f| !native[**f].is_null())
        .map(|f| ((*f).to_owned(), native[*f].clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storefront::Storefront;

    #[test]
    fn every_type_has_a_segment_and_a_ga4_form() {
        let mut shop = Storefront::new(7, 0, 42);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..200 {
            let event = shop.next_event();
            let native = parse(&event);
            let message = segment_message(&event, "2026-12-06T05:00:00Z");
            assert_eq!(message["messageId"], native["event_id"]);
            assert_eq!(message["userId"], native["user_id"]);
            let name = message["event"].as_str().expect("name");
            let ga4 = ga4_event(&event);
            let ga4_name = ga4["name"].as_str().expect("name");
            match event.kind {
                EventKind::ProductView => {
                    assert_eq!((name, ga4_name), ("Product Viewed", "view_item"));
                    assert_eq!(message["properties"]["product_id"], native["product_id"]);
                }
                EventKind::Cart => assert!(matches!(
                    (name, ga4_name),
                    ("Product Added", "add_to_cart") | ("Product Removed", "remove_from_cart")
                )),
                EventKind::Purchase => {
                    assert_eq!((name, ga4_name), ("Order Completed", "purchase"));
                    assert_eq!(message["properties"]["products"], native["items"]);
                }
                EventKind::Search => {
                    assert_eq!((name, ga4_name), ("Products Searched", "search"));
                    assert_eq!(ga4["params"]["search_term"], native["query"]);
                }
            }
            seen.insert(event.kind);
        }
        assert_eq!(seen.len(), 4);
    }
}
