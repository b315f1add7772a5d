//! One enriched event as a search document (pure; no I/O).

use ingest_core::model::Event;
use serde_json::{json, Map, Value};

use crate::aggregate::{minute_of, normalise_query, Incoming};
use crate::catalog::Catalog;
use crate::ua;

/// The document of `incoming`, enriched from `catalog` (product name and category,
/// amounts in the reporting currency), its user agent (device class, browser, OS) and
/// its experiments (as `flag=variant` keywords, so flags do not become mapping fields).
pub fn document(incoming: &Incoming, catalog: &Catalog) -> Value {
    let event = &incoming.event;
    let common = event.common();
    let mut doc = Map::new();
    doc.insert("event_id".into(), json!(incoming.event_id));
    doc.insert("event_type".into(), json!(event.kind().as_str()));
    doc.insert("timestamp".into(), json!(incoming.event_time_ms));
    doc.insert(
        "minute".into(),
        json!(minute_of(incoming.event_time_ms) * 1_000),
    );
    doc.insert("topic".into(), json!(&*incoming.source.topic));
    doc.insert("partition".into(), json!(incoming.source.partition));
    for (key, value) in [
        ("user_id", &common.user_id),
        ("anonymous_id", &common.anonymous_id),
        ("session_id", &common.session_id),
    ] {
        if let Some(v) = value {
            doc.insert(key.into(), json!(v));
        }
    }
    if let Some(context) = &common.context {
        if let Some(agent) = context.user_agent.as_deref() {
            let device = ua::parse(agent);
            doc.insert(
                "device".into(),
                json!({"class": device.class, "browser": device.browser, "os": device.os}),
            );
        }
        for (key, value) in [
            ("page_url", &context.page_url),
            ("referrer", &context.referrer),
            ("locale", &context.locale),
        ] {
            if let Some(v) = value {
                doc.insert(key.into(), json!(v));
            }
        }
        if !context.experiments.is_empty() {
            let pairs: Vec<String> = context
                .experiments
                .iter()
                .map(|(flag, variant)| format!("{flag}={variant}"))
                .collect();
            doc.insert("experiments".into(), json!(pairs));
        }
    }
    let product = |id: &str| -> Value {
        let mut p = json!({"id": id});
        if let Some(found) = catalog.product(id) {
            p["name"] = json!(found.name);
            if let Some(category) = &found.category {
                p["category"] = json!(category);
            }
        }
        p
    };
    let reporting = |amount: Option<f64>, currency: Option<&str>| -> Option<f64> {
        let micros = catalog.to_reporting_micros(amount?, currency?)?;
        Some(micros as f64 / 1_000_000.0)
    };
    match event {
        Event::ProductView(view) => {
            let mut p = product(&view.product_id);
            // The catalog wins; the event's own labels fill what it does not know.
            if p.get("category").is_none() {
                if let Some(c) = &view.category {
                    p["category"] = json!(c);
                }
            }
            if let Some(b) = &view.brand {
                p["brand"] = json!(b);
            }
            if let Some(v) = &view.variant {
                p["variant"] = json!(v);
            }
            doc.insert("product".into(), p);
            if view.list_id.is_some() || view.position.is_some() {
                doc.insert(
                    "list".into(),
                    json!({"id": view.list_id, "position": view.position}),
                );
            }
            if let Some(price) = view.price {
                doc.insert("price".into(), json!(price));
            }
            if let Some(currency) = &view.currency {
                doc.insert("currency".into(), json!(currency));
            }
            if let Some(amount) = reporting(view.price, view.currency.as_deref()) {
                doc.insert("price_reporting".into(), json!(amount));
            }
        }
        Event::Cart(cart) => {
            let mut c = json!({"action": cart.action});
            if let Some(q) = cart.quantity {
                c["quantity"] = json!(q);
            }
            if let Some(id) = &cart.cart_id {
                c["cart_id"] = json!(id);
            }
            doc.insert("cart".into(), c);
            if let Some(id) = &cart.product_id {
                doc.insert("product".into(), product(id));
            }
            if let Some(price) = cart.price {
                doc.insert("price".into(), json!(price));
            }
            if let Some(currency) = &cart.currency {
                doc.insert("currency".into(), json!(currency));
            }
        }
        Event::Purchase(order) => {
            let items: Vec<Value> = order
                .items
                .iter()
                .map(|i| {
                    let mut p = product(&i.product_id);
                    p["quantity"] = json!(i.quantity);
                    p["price"] = json!(i.price);
                    p
                })
                .collect();
            let mut o = json!({
                "order_id": order.order_id,
                "total": order.total,
                "currency": order.currency,
                "items": items,
            });
            if let Some(revenue) = reporting(Some(order.total), Some(&order.currency)) {
                o["revenue_reporting"] = json!(revenue);
            }
            if let Some(coupon) = &order.coupon {
                o["coupon"] = json!(coupon);
            }
            doc.insert("order".into(), o);
        }
        Event::Search(search) => {
            let mut s = json!({
                "query": search.query,
                "normalised_query": normalise_query(&search.query),
            });
            if let Some(n) = search.results_count {
                s["results_count"] = json!(n);
                s["zero_results"] = json!(n == 0);
            }
            doc.insert("search".into(), s);
        }
    }
    Value::Object(doc)
}

/// The index's mappings: keywords for ids and labels, dates for times; `dynamic: false`,
/// so unexpected fields are kept in `_source` but cannot grow the mapping.
pub fn index_mapping() -> Value {
    let keyword = json!({"type": "keyword"});
    let product = json!({"properties": {
        "id": keyword, "name": {"type": "text", "fields": {"raw": keyword}},
        "category": keyword, "brand": keyword, "variant": keyword,
        "quantity": {"type": "long"}, "price": {"type": "double"},
    }});
    json!({
        "mappings": {
            "dynamic": false,
            "properties": {
                "event_id": keyword, "event_type": keyword,
                "timestamp": {"type": "date", "format": "epoch_millis"},
                "minute": {"type": "date", "format": "epoch_millis"},
                "topic": keyword, "partition": {"type": "integer"},
                "user_id": keyword, "anonymous_id": keyword, "session_id": keyword,
                "device": {"properties": {"class": keyword, "browser": keyword, "os": keyword}},
                "page_url": keyword, "referrer": keyword, "locale": keyword,
                "experiments": keyword,
                "product": product.clone(),
                "list": {"properties": {"id": keyword, "position": {"type": "long"}}},
                "price": {"type": "double"}, "currency": keyword,
                "price_reporting": {"type": "double"},
                "cart": {"properties": {"action": keyword, "quantity": {"type": "long"}, "cart_id": keyword}},
                "order": {"properties": {
                    "order_id": keyword, "total": {"type": "double"}, "currency": keyword,
                    "revenue_reporting": {"type": "double"}, "coupon": keyword,
                    "items": product,
                }},
                "search": {"properties": {
                    "query": {"type": "text"}, "normalised_query": keyword,
                    "results_count": {"type": "long"}, "zero_results": {"type": "boolean"},
                }},
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::TopicPartition;
    use ingest_core::EventKind;

    fn incoming(kind: EventKind, json: &str) -> Incoming {
        Incoming {
            source: TopicPartition::new("purchases", 3),
            event_id: "e-1".to_owned(),
            key: crate::dedup::key_of("e-1"),
            event_time_ms: 1_795_514_412_345,
            event: Event::decode(kind, json.as_bytes()).expect("valid test event"),
        }
    }

    #[test]
    fn a_purchase_is_enriched_from_catalog_rates_and_user_agent() {
        let mut catalog = Catalog::new("EUR");
        catalog.insert_rate("USD", 0.5);
        catalog.insert_product("sku-1", "Boots", Some("shoes".to_owned()));
        let doc = document(
            &incoming(
                EventKind::Purchase,
                r#"{"user_id":"u1","order_id":"o1","total":30.0,"currency":"USD",
                    "items":[{"product_id":"sku-1","quantity":2,"price":15.0},
                             {"product_id":"sku-x","quantity":1,"price":0.0}],
                    "context":{"user_agent":"Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1",
                               "experiments":{"checkout_v2":"treatment"}}}"#,
            ),
            &catalog,
        );
        assert_eq!(doc["event_id"], "e-1");
        assert_eq!(doc["event_type"], "purchase");
        assert_eq!(doc["timestamp"], 1_795_514_412_345_i64);
        assert_eq!(doc["minute"], 1_795_514_400_000_i64);
        assert_eq!(doc["order"]["revenue_reporting"], 15.0);
        assert_eq!(doc["order"]["items"][0]["name"], "Boots");
        assert_eq!(doc["order"]["items"][0]["category"], "shoes");
        assert!(doc["order"]["items"][1].get("name").is_none());
        assert_eq!(doc["device"]["class"], "mobile");
        assert_eq!(doc["device"]["os"], "ios");
        assert_eq!(doc["experiments"], json!(["checkout_v2=treatment"]));
        assert_eq!(doc["user_id"], "u1");
        assert!(doc.get("anonymous_id").is_none());
    }

    #[test]
    fn searches_and_carts_carry_their_own_fields() {
        let catalog = Catalog::new("EUR");
        let doc = document(
            &incoming(
                EventKind::Search,
                r#"{"anonymous_id":"a","query":"  Red Shoes ","results_count":0}"#,
            ),
            &catalog,
        );
        assert_eq!(doc["search"]["normalised_query"], "red shoes");
        assert_eq!(doc["search"]["zero_results"], true);
        let doc = document(
            &incoming(
                EventKind::Cart,
                r#"{"user_id":"u","action":"add","product_id":"p","quantity":3}"#,
            ),
            &catalog,
        );
        assert_eq!(doc["cart"]["action"], "add");
        assert_eq!(doc["cart"]["quantity"], 3);
        assert_eq!(doc["product"]["id"], "p");
    }

    #[test]
    fn the_mapping_covers_every_top_level_field_a_document_has() {
        let mut catalog = Catalog::new("EUR");
        catalog.insert_product("p", "P", None);
        let doc = document(
            &incoming(
                EventKind::ProductView,
                r#"{"user_id":"u","session_id":"s","product_id":"p","price":2.0,"currency":"EUR",
                    "variant":"red","list_id":"home","position":4,
                    "context":{"user_agent":"curl/8","page_url":"/p","referrer":"/","locale":"de"}}"#,
            ),
            &catalog,
        );
        let mapping = index_mapping();
        let props = &mapping["mappings"]["properties"];
        for key in doc.as_object().expect("an object").keys() {
            assert!(props.get(key).is_some(), "{key} is not mapped");
        }
        // Version 2's fields of a view.
        assert_eq!(doc["product"]["variant"], "red");
        assert_eq!(
            doc["list"],
            serde_json::json!({"id": "home", "position": 4})
        );
        assert!(props["product"]["properties"].get("variant").is_some());
    }
}
