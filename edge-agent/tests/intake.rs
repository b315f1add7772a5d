//! The Segment and GA4 translation layer against payloads shaped as the SDKs send them
//! (`tests/fixtures/intake/`): every e-commerce event it produces passes ingest-core's
//! validator and carries the sender's values; everything else is kept as sent.

use bytes::Bytes;
use edge_agent::intake::{
    ga4_collect, segment_batch, segment_single, Custom, MapError, Mapped, SegmentCall,
};
use ingest_core::{EventKind, ValidationError, Validator};
use proptest::prelude::*;
use serde_json::value::RawValue;
use serde_json::{json, Value};
use time::macros::datetime;

fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/tests/fixtures/intake/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// What the validator says of a translated event, at the fixtures' time.
fn check(kind: EventKind, json: &[u8]) -> Result<Value, ValidationError> {
    let now = datetime!(2026-12-01 10:05 UTC);
    Validator::default().validate_at(Some(kind), Bytes::copy_from_slice(json), now)?;
    Ok(serde_json::from_slice(json).expect("the mapping writes JSON"))
}

/// The event, which must be of `kind` and valid.
fn event(mapped: &Result<Mapped, MapError>, kind: EventKind) -> Value {
    match mapped {
        Ok(Mapped::Event { kind: got, json }) => {
            assert_eq!(*got, kind, "{}", String::from_utf8_lossy(json));
            check(kind, json).unwrap_or_else(|e| {
                panic!("{e}: {}", String::from_utf8_lossy(json));
            })
        }
        other => panic!("expected a {kind} event, got {other:?}"),
    }
}

fn custom(mapped: &Result<Mapped, MapError>) -> &Custom {
    match mapped {
        Ok(Mapped::Custom(custom)) => custom,
        other => panic!("expected a custom event, got {other:?}"),
    }
}

fn error(mapped: Result<Mapped, MapError>) -> MapError {
    mapped.expect_err("refused")
}

/// The raw bytes of each message of a batch, as sent.
fn raw_messages(body: &[u8]) -> Vec<String> {
    #[derive(serde::Deserialize)]
    struct Batch<'a> {
        #[serde(borrow)]
        batch: Vec<&'a RawValue>,
    }
    let batch: Batch<'_> = serde_json::from_slice(body).expect("fixture");
    batch.batch.iter().map(|m| m.get().to_owned()).collect()
}

#[test]
fn analytics_js_batch() {
    let body = fixture("segment-batch-analytics-js.json");
    let out = segment_batch(&body, 100).expect("a batch");
    assert_eq!(out.len(), 3);

    let view = event(&out[0], EventKind::ProductView);
    assert_eq!(view["product_id"], "507f1f77bcf86cd799439011");
    assert_eq!(view["category"], "Games");
    assert_eq!(view["brand"], "Hasbro");
    assert_eq!(view["price"], 18.99);
    assert_eq!(view["currency"], "EUR");
    assert_eq!(view["anonymous_id"], "c1b7f2d4-5e3a-4f8b-9d6c-0a1e2f3b4c5d");
    assert!(view.get("user_id").is_none(), "userId was null");
    assert_eq!(view["timestamp"], "2026-12-01T10:00:00.120Z");
    let context = &view["context"];
    assert_eq!(
        context["page_url"],
        "https://shop.example/p/monopoly-3rd-edition"
    );
    assert_eq!(context["referrer"], "https://shop.example/c/games");
    assert_eq!(context["locale"], "de-DE");
    assert!(context["user_agent"]
        .as_str()
        .is_some_and(|ua| ua.starts_with("Mozilla/5.0")));
    // The id is derived from analytics.js's messageId: a UUIDv8, the same on a resend.
    let event_id = view["event_id"].as_str().expect("an id");
    assert_eq!(
        uuid::Uuid::parse_str(event_id)
            .expect("a UUID")
            .get_version_num(),
        8
    );
    let again = segment_batch(&body, 100).expect("a batch");
    assert_eq!(
        event(&again[0], EventKind::ProductView)["event_id"],
        event_id
    );
    // Unmapped properties and the rest of the envelope are kept; the write key is not.
    assert_eq!(view["properties"]["sku"], "G-32");
    // The view's version 2 fields.
    assert_eq!(view["variant"], "200 pieces");
    assert_eq!(view["position"], 3);
    assert!(view["properties"].get("variant").is_none());
    assert_eq!(view["source"]["format"], "segment");
    assert_eq!(view["source"]["event"], "Product Viewed");
    assert_eq!(
        view["source"]["message_id"],
        "ajs-next-1796119200120-6a3e1f0c-2b9d-4e57-8c14-9f0b7d2e4a61"
    );
    assert_eq!(view["source"]["context"]["library"]["name"], "analytics.js");
    assert_eq!(
        view["source"]["context"]["page"]["title"],
        "Monopoly: 3rd Edition | Shop"
    );
    assert_eq!(view["source"]["sentAt"], "2026-12-01T10:00:00.250Z");
    let json = serde_json::to_string(&view).expect("json");
    assert!(!json.contains("9b1XKm2pQ3rS4tU5vW6xY7zA8bC9dE0f"), "{json}");

    // A page call and an unmapped track name are custom events, byte for byte, but
    // for the write key analytics.js put in the page call: a credential is dropped.
    let page = custom(&out[1]);
    assert_eq!(page.name, "page");
    assert_eq!(
        page.key.as_deref(),
        Some("c1b7f2d4-5e3a-4f8b-9d6c-0a1e2f3b4c5d")
    );
    let sent: Value = serde_json::from_slice(&body).expect("fixture");
    assert!(
        sent["batch"][1].get("writeKey").is_some(),
        "the fixture has one"
    );
    let kept: Value = serde_json::from_slice(&page.body).expect("json");
    let mut expected = sent["batch"][1].clone();
    expected.as_object_mut().expect("object").remove("writeKey");
    assert_eq!(kept, expected);
    assert!(!String::from_utf8_lossy(&page.body).contains("9b1XKm2pQ3rS4tU5vW6xY7zA8bC9dE0f"));
    let filtered = custom(&out[2]);
    assert_eq!(filtered.name, "Product List Filtered");
    let mut expected = sent["batch"][2].clone();
    expected.as_object_mut().expect("object").remove("writeKey");
    assert_eq!(
        serde_json::from_slice::<Value>(&filtered.body).expect("json"),
        expected
    );
    assert_ne!(page.event_id, filtered.event_id);
    assert_eq!(custom(&again[2]).event_id, filtered.event_id);
}

#[test]
fn analytics_node_orders() {
    let body = fixture("segment-batch-analytics-node.json");
    let out = segment_batch(&body, 100).expect("a batch");
    assert_eq!(out.len(), 4);

    let order = event(&out[0], EventKind::Purchase);
    assert_eq!(order["order_id"], "50314b8e9bcf000000000000");
    assert_eq!(order["user_id"], "user-42");
    assert_eq!(order["total"], 27.5, "total wins over revenue");
    assert_eq!(order["properties"]["revenue"], 25);
    assert_eq!(
        order["properties"]["checkout_id"],
        "fksdjfsdjfisjf9sdfjsd9f"
    );
    assert_eq!(order["currency"], "USD");
    assert_eq!(order["discount"], 2.5);
    assert_eq!(order["tax"], 2);
    assert_eq!(order["shipping"], 3);
    assert_eq!(order["coupon"], "hasbros");
    assert_eq!(order["context"]["ip"], "203.0.113.7");
    let items = order["items"].as_array().expect("items");
    assert_eq!(items.len(), 3);
    assert_eq!(items[0]["product_id"], "507f1f77bcf86cd799439011");
    assert_eq!(
        items[0]["sku"], "45790-32",
        "the unused sku stays with the line"
    );
    assert_eq!(
        items[1]["product_id"], "46493-32",
        "sku when there is no product_id"
    );
    assert!(items[1].get("sku").is_none());
    assert_eq!(items[1]["quantity"], 2);
    assert_eq!(items[1]["name"], "Uno Card Game");
    assert_eq!(
        items[2]["quantity"], 1,
        "a line without a quantity is one unit"
    );
    assert_eq!(items[2]["price"], 0);

    // revenue as the total; numeric strings become numbers.
    let order = event(&out[1], EventKind::Purchase);
    assert_eq!(order["total"], 40);
    assert_eq!(order["currency"], "EUR");
    assert_eq!(order["items"][0]["price"], 20.0);
    assert_eq!(order["items"][0]["quantity"], 2);

    // Neither: the lines' sum; checkout_id as the order; USD assumed.
    let order = event(&out[2], EventKind::Purchase);
    assert_eq!(order["order_id"], "chk-77");
    assert_eq!(order["total"], 64.97);
    assert_eq!(order["currency"], "USD");

    let identify = custom(&out[3]);
    assert_eq!(identify.name, "identify");
    assert_eq!(identify.key.as_deref(), Some("user-42"));
    assert_eq!(identify.body, raw_messages(&body)[3].as_bytes());
}

#[test]
fn analytics_python_cart_and_search() {
    let body = fixture("segment-batch-analytics-python.json");
    let out = segment_batch(&body, 100).expect("a batch");
    assert_eq!(out.len(), 4);

    let add = event(&out[0], EventKind::Cart);
    assert_eq!(add["action"], "add");
    assert_eq!(
        add["quantity"], 1,
        "an added product without a quantity is one unit"
    );
    assert_eq!(add["cart_id"], "skdjsidjsdkdj29j");
    assert_eq!(add["price"], 18.99);
    assert_eq!(add["user_id"], "user-7");
    assert!(add.get("anonymous_id").is_none());
    assert_eq!(add["timestamp"], "2026-12-01T10:00:00.123456+00:00");
    // analytics-python's messageId is a UUID: it is the event id.
    assert_eq!(add["event_id"], "3f0c1a2e-8b7d-4c5e-9a1b-2c3d4e5f6a7b");

    let remove = event(&out[1], EventKind::Cart);
    assert_eq!(remove["action"], "remove");
    assert_eq!(
        remove["product_id"], "90210",
        "an integer id becomes its text"
    );
    assert_eq!(remove["quantity"], 2);

    let search = event(&out[2], EventKind::Search);
    assert_eq!(search["query"], "blue hotpants été");

    assert_eq!(custom(&out[3]).name, "identify");
    assert_eq!(
        custom(&out[3]).event_id.to_string(),
        "5a4b3c2d-1e0f-4a9b-8c7d-6e5f4a3b2c1d"
    );
}

#[test]
fn single_calls() {
    let track = segment_single(SegmentCall::Track, &fixture("segment-track-single.json"));
    let cart = event(&track, EventKind::Cart);
    assert_eq!(cart["price"], 18.99, "a numeric string becomes a number");
    assert_eq!(cart["currency"], "GBP");
    assert_eq!(cart["context"]["ip"], "2001:db8::7");
    assert_eq!(cart["context"]["user_agent"], "curl/8.5.0");
    assert!(
        cart.get("event_id").is_none(),
        "no messageId: the validator makes one"
    );
    assert!(
        cart["source"].get("context").is_none(),
        "nothing left of context"
    );

    let body = br#"  {"type":"track","anonymousId":"a1","traits":{"x":1}}  "#;
    let identify = segment_single(SegmentCall::Identify, body);
    let identify = custom(&identify);
    assert_eq!(identify.name, "identify");
    assert_eq!(
        identify.body,
        body.trim_ascii(),
        "the type in the body is ignored"
    );
    for call in SegmentCall::ALL {
        assert_eq!(SegmentCall::from_name(call.as_str()), Some(call));
    }

    // A track call's name may not be empty (it names the custom event).
    for name in ["\"\"", "\"  \""] {
        let body = format!(r#"{{"userId":"u","event":{name}}}"#);
        let e = error(segment_single(SegmentCall::Track, body.as_bytes()));
        assert_eq!(
            (e.code, e.field.as_deref()),
            ("invalid_value", Some("event")),
            "{e}"
        );
    }
}

#[test]
fn ga4_gtag_ecommerce() {
    let body = fixture("ga4-gtag-ecommerce.json");
    let out = ga4_collect(&body, 25).expect("a request");
    // view_item (2 items), add_to_cart, remove_from_cart, purchase, search, page_view.
    assert_eq!(out.len(), 7);

    let first = event(&out[0], EventKind::ProductView);
    let second = event(&out[1], EventKind::ProductView);
    assert_eq!(first["product_id"], "SKU_12345");
    assert_eq!(first["category"], "Apparel");
    assert_eq!(first["brand"], "Google");
    assert_eq!(first["price"], 10.01);
    assert_eq!(first["currency"], "USD");
    assert_eq!(first["user_id"], "user-42");
    assert_eq!(first["anonymous_id"], "1187329532.1796118000");
    assert_eq!(first["session_id"], "1796118000");
    assert_eq!(first["timestamp"], "2026-12-01T10:00:00Z");
    assert_eq!(first["context"]["page_url"], "https://shop.example/p/sku-1");
    // The view's version 2 fields.
    assert_eq!(first["variant"], "green");
    assert_eq!(first["position"], 0, "from index");
    assert!(first["item"].get("item_variant").is_none());
    assert_eq!(first["properties"]["value"], 30.03);
    assert_eq!(
        first["source"]["user_properties"]["customer_tier"]["value"],
        "premium"
    );
    assert_eq!(first["source"]["non_personalized_ads"], false);
    assert_eq!(second["product_id"], "SKU_12346");
    assert_ne!(first["event_id"], second["event_id"]);
    let again = ga4_collect(&body, 25).expect("a request");
    assert_eq!(
        event(&again[1], EventKind::ProductView)["event_id"],
        second["event_id"]
    );

    let add = event(&out[2], EventKind::Cart);
    assert_eq!(add["action"], "add");
    assert_eq!(add["quantity"], 3);
    assert_eq!(
        add["timestamp"], "2026-12-01T10:00:05Z",
        "the event's own time wins"
    );
    let remove = event(&out[3], EventKind::Cart);
    assert_eq!(remove["action"], "remove");
    assert_eq!(
        remove["quantity"], 1,
        "GA4 counts an item without a quantity as one"
    );

    let order = event(&out[4], EventKind::Purchase);
    assert_eq!(order["order_id"], "T_12345");
    assert_eq!(order["total"], 72.05);
    assert_eq!(order["tax"], 3.6);
    assert_eq!(order["shipping"], 5.99);
    assert_eq!(order["coupon"], "SUMMER_SALE");
    assert_eq!(order["items"][1]["product_id"], "SKU_12346");
    assert_eq!(order["items"][1]["quantity"], 2);
    assert_eq!(order["items"][1]["item_name"], "Google Grey Women's Tee");

    assert_eq!(event(&out[5], EventKind::Search)["query"], "t-shirts");

    let page_view = custom(&out[6]);
    assert_eq!(page_view.name, "page_view");
    assert_eq!(page_view.key.as_deref(), Some("user-42"));
    let composed: Value = serde_json::from_slice(&page_view.body).expect("json");
    assert_eq!(composed["client_id"], "1187329532.1796118000");
    assert_eq!(composed["user_id"], "user-42");
    assert_eq!(composed["timestamp_micros"], 1_796_119_200_000_000_i64);
    assert_eq!(
        composed["user_properties"]["customer_tier"]["value"],
        "premium"
    );
    assert_eq!(composed["event"]["name"], "page_view");
    assert_eq!(custom(&again[6]).event_id, page_view.event_id);
}

#[test]
fn ga4_without_time_derives_no_id() {
    let body = br#"{"client_id":"c.1","events":[{"name":"search","params":{"search_term":"x"}},{"name":"login"}]}"#;
    let out = ga4_collect(body, 25).expect("a request");
    let search = event(&out[0], EventKind::Search);
    assert!(search.get("event_id").is_none());
    assert!(search.get("timestamp").is_none());
    let again = ga4_collect(body, 25).expect("a request");
    assert_ne!(custom(&out[1]).event_id, custom(&again[1]).event_id);
    assert_eq!(custom(&out[1]).key.as_deref(), Some("c.1"));
}

#[test]
fn ids_are_deterministic_per_message() {
    let message = |id: &str| {
        format!(
            r#"{{"type":"track","event":"Products Searched","anonymousId":"a","messageId":"{id}","properties":{{"query":"q"}}}}"#
        )
    };
    let id_of = |id: &str| {
        let out = segment_single(SegmentCall::Track, message(id).as_bytes());
        event(&out, EventKind::Search)["event_id"].clone()
    };
    assert_eq!(id_of("m-1"), id_of("m-1"));
    assert_ne!(id_of("m-1"), id_of("m-2"));
    assert_eq!(
        id_of("6BA7B810-9DAD-11D1-80B4-00C04FD430C8"),
        "6ba7b810-9dad-11d1-80b4-00c04fd430c8"
    );
    // The sender's id is kept under `source` unless it is the event id, as written.
    let source_id = |id: &str| {
        let out = segment_single(SegmentCall::Track, message(id).as_bytes());
        event(&out, EventKind::Search)["source"]["message_id"].clone()
    };
    assert_eq!(source_id("m-1"), "m-1");
    assert_eq!(
        source_id("6BA7B810-9DAD-11D1-80B4-00C04FD430C8"),
        "6BA7B810-9DAD-11D1-80B4-00C04FD430C8"
    );
    assert_eq!(
        source_id("6ba7b810-9dad-11d1-80b4-00c04fd430c8"),
        Value::Null
    );
}

#[test]
fn request_errors() {
    let cases: [(&[u8], &str, Option<&str>); 9] = [
        (b"", "empty_body", None),
        (b"{\"batch\": [", "invalid_json", None),
        (b"\xff\xfe", "invalid_utf8", None),
        (b"[1,2]", "not_an_object", None),
        (b"{}", "missing_field", Some("batch")),
        (b"{\"batch\": null}", "missing_field", Some("batch")),
        (b"{\"batch\": {}}", "invalid_type", Some("batch")),
        (b"{\"batch\": [], \"batch\": []}", "duplicate_field", None),
        (b"{\"batch\": [1, 2, 3]}", "too_many_events", Some("batch")),
    ];
    for (body, code, field) in cases {
        let e = segment_batch(body, 2).expect_err("refused");
        assert_eq!((e.code, e.field.as_deref()), (code, field), "{e}");
    }
    let e = segment_batch(br#"{"batch": "x"}"#, 2).expect_err("refused");
    assert_eq!(e.message, "batch must be an array, not a string");

    let cases: [(&[u8], &str, Option<&str>); 6] = [
        (b"7", "not_an_object", None),
        (br#"{"events":[]}"#, "missing_field", Some("client_id")),
        (
            br#"{"client_id":true,"events":[]}"#,
            "invalid_type",
            Some("client_id"),
        ),
        (br#"{"client_id":"c"}"#, "missing_field", Some("events")),
        (
            br#"{"client_id":"c","events":{}}"#,
            "invalid_type",
            Some("events"),
        ),
        (
            br#"{"client_id":"c","timestamp_micros":-5,"events":[]}"#,
            "invalid_timestamp",
            Some("timestamp_micros"),
        ),
    ];
    for (body, code, field) in cases {
        let e = ga4_collect(body, 2).expect_err("refused");
        assert_eq!((e.code, e.field.as_deref()), (code, field), "{e}");
    }
    let e = ga4_collect(br#"{"client_id":"c","events":[{},{},{}]}"#, 2).expect_err("too many");
    assert_eq!(e.code, "too_many_events");
    assert_eq!(
        e.message,
        "the request holds 3 events; at most 2 are allowed"
    );
    for name in ["\"\"", "\" \""] {
        let body = format!(r#"{{"client_id":"c","events":[{{"name":{name}}}]}}"#);
        let mapped = ga4_collect(body.as_bytes(), 2).expect("request read");
        let e = error(mapped.into_iter().next().expect("one event"));
        assert_eq!(e.code, "invalid_value", "an empty GA4 event name: {e}");
    }
    let app = ga4_collect(br#"{"app_instance_id":"i1","events":[{"name":"x"}]}"#, 2).expect("app");
    assert_eq!(custom(&app[0]).key.as_deref(), Some("i1"));
}

#[test]
fn message_errors_name_the_senders_field() {
    let body = br#"{"batch":[
        7,
        {"anonymousId":"a"},
        {"type":"trak","anonymousId":"a"},
        {"type":"track","event":"Product Viewed"},
        {"type":"track","anonymousId":"a"},
        {"type":"track","anonymousId":"a","event":"Order Completed","properties":{"order_id":"o","products":[{"product_id":"p","price":"abc"}]}},
        {"type":"track","anonymousId":"a","event":"Order Completed","properties":{"order_id":"o","products":[{"price":1}]}},
        {"type":"track","anonymousId":"a","event":"Order Completed","properties":{"products":[]}},
        {"type":"track","anonymousId":"a","event":"Product Viewed","properties":{"price":1}},
        {"type":"track","anonymousId":"a","event":"Products Searched","properties":{}},
        {"type":"track","anonymousId":"a","event":"Product Viewed","properties":{"product_id":"p"},"context":{"page":{"url":5}}},
        {"type":"track","anonymousId":"a","event":"Product Viewed","properties":["p"]},
        {"type":"track","anonymousId":{},"event":"x"}
    ]}"#;
    let out = segment_batch(body, 100).expect("a batch");
    let expected = [
        ("not_an_object", "batch[0]"),
        ("missing_field", "batch[1].type"),
        ("invalid_value", "batch[2].type"),
        ("missing_field", "batch[3].userId"),
        ("missing_field", "batch[4].event"),
        ("invalid_type", "batch[5].properties.products[0].price"),
        (
            "missing_field",
            "batch[6].properties.products[0].product_id",
        ),
        ("missing_field", "batch[7].properties.order_id"),
        ("missing_field", "batch[8].properties.product_id"),
        ("missing_field", "batch[9].properties.query"),
        ("invalid_type", "batch[10].context.page.url"),
        ("invalid_type", "batch[11].properties"),
        ("invalid_type", "batch[12].anonymousId"),
    ];
    assert_eq!(out.len(), expected.len());
    for (result, (code, field)) in out.into_iter().zip(expected) {
        let e = error(result);
        assert_eq!((e.code, e.field.as_deref()), (code, Some(field)), "{e}");
        assert!(e.message.contains(field), "{e}");
    }
}

#[test]
fn an_order_without_products_is_the_validators_to_refuse() {
    let body =
        br#"{"userId":"u","event":"Order Completed","properties":{"order_id":"o-1","total":10}}"#;
    let Ok(Mapped::Event { kind, json }) = segment_single(SegmentCall::Track, body) else {
        panic!("mapped")
    };
    let e = check(kind, &json).expect_err("no items");
    assert_eq!(e.code().as_str(), "invalid_value");
    assert_eq!(e.field_path(), Some("items"));
    assert_eq!(e.message(), "items must hold 1 to 1000 entries, not 0");
}

#[test]
fn ga4_event_errors() {
    let body = br#"{"client_id":"c","timestamp_micros":1796119200000000,"events":[
        "x",
        {"params":{}},
        {"name":"view_item","params":{"items":[]}},
        {"name":"view_item","params":{"items":[{"item_name":"Tee"},{"item_id":"ok"}]}},
        {"name":"purchase","params":{"value":1,"items":[{"item_id":"a","price":1}]}},
        {"name":"search","params":{"q":"x"}},
        {"name":"add_to_cart","timestamp_micros":"soon","params":{"items":[{"item_id":"a"}]}},
        {"name":"add_to_cart","params":{"items":[{"item_id":"a","quantity":[]}]}}
    ]}"#;
    let out = ga4_collect(body, 25).expect("a request");
    let fields: Vec<_> = out
        .iter()
        .map(|r| match r {
            Err(e) => (e.code, e.field.clone().unwrap_or_default()),
            Ok(_) => ("ok", String::new()),
        })
        .collect();
    let expected = [
        ("not_an_object", "events[0]"),
        ("missing_field", "events[1].name"),
        ("missing_field", "events[2].params.items"),
        ("missing_field", "events[3].params.items[0].item_id"),
        ("ok", ""),
        ("missing_field", "events[4].params.transaction_id"),
        ("missing_field", "events[5].params.search_term"),
        ("invalid_timestamp", "events[6].timestamp_micros"),
        ("invalid_type", "events[7].params.items[0].quantity"),
    ];
    let expected: Vec<_> = expected
        .iter()
        .map(|(c, f)| (*c, (*f).to_owned()))
        .collect();
    assert_eq!(fields, expected);
    event(&out[4], EventKind::ProductView);
}

#[test]
fn text_survives_escaping() {
    let awkward = "line\nbreak \"quoted\" \\ tab\t bell\u{7} nul\u{0} sep\u{2028} é 🛒";
    let long = "x".repeat(100 * 1024);
    let message = json!({
        "type": "track", "event": "Products Searched", "anonymousId": "a",
        "properties": {"query": awkward, "note": long},
    });
    let body = serde_json::to_vec(&message).expect("json");
    let Ok(Mapped::Event { json, .. }) = segment_single(SegmentCall::Track, &body) else {
        panic!("mapped")
    };
    let native: Value = serde_json::from_slice(&json).expect("json");
    assert_eq!(native["query"], awkward);
    assert_eq!(native["properties"]["note"], long.as_str());
    // The validator then has its say: too large, and NUL is refused anyway.
    let e = check(EventKind::Search, &json).expect_err("too large");
    assert_eq!(e.code().as_str(), "event_too_large");

    // A custom event keeps the very bytes, escapes included.
    let body = br#"{"type":"track","event":"Note","anonymousId":"a","properties":{"t":"\u0000\n\ud83d\uded2"}}"#;
    let out =
        segment_batch(&[br#"{"batch":["#.as_slice(), body, b"]}"].concat(), 10).expect("a batch");
    assert_eq!(custom(&out[0]).body, body.as_slice());
}

#[test]
fn hostile_nesting_is_an_error_not_a_crash() {
    let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
    // Skimming the top level does not recurse: a deep array is simply not an object.
    let e = segment_batch(deep(100_000).as_bytes(), 10).expect_err("refused");
    assert_eq!(e.code, "not_an_object");
    let e = segment_single(SegmentCall::Page, deep(100_000).as_bytes()).expect_err("refused");
    assert_eq!(e.code, "not_an_object");
    let e = segment_single(
        SegmentCall::Page,
        format!(
            r#"{{"anonymousId":"a","properties":{{"x":{}}}}}"#,
            deep(129)
        )
        .as_bytes(),
    )
    .expect_err("refused");
    assert_eq!(e.code, "too_deep");
    let body = format!(
        r#"{{"batch":[{{"type":"page","anonymousId":"a","properties":{{"x":{}}}}}]}}"#,
        deep(100_000)
    );
    let out = segment_batch(body.as_bytes(), 10);
    match out {
        Err(e) => assert_eq!(e.code, "too_deep"),
        Ok(out) => assert_eq!(error(out.into_iter().next().expect("one")).code, "too_deep"),
    }
    let body = format!(
        r#"{{"client_id":"c","events":[{{"name":"x","params":{}}}]}}"#,
        deep(100_000)
    );
    match ga4_collect(body.as_bytes(), 10) {
        Err(e) => assert_eq!(e.code, "too_deep"),
        Ok(out) => assert_eq!(error(out.into_iter().next().expect("one")).code, "too_deep"),
    }
}

fn arbitrary_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        "[a-z_ ]{0,8}".prop_map(Value::from),
        prop::sample::select(vec![
            "track",
            "page",
            "identify",
            "Product Viewed",
            "Product Added",
            "Product Removed",
            "Order Completed",
            "Products Searched",
            "view_item",
            "add_to_cart",
            "remove_from_cart",
            "purchase",
            "search",
            "19.99",
            "1e999",
            "",
        ])
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        let keys = prop::sample::select(vec![
            "type",
            "event",
            "userId",
            "anonymousId",
            "messageId",
            "properties",
            "context",
            "products",
            "product_id",
            "sku",
            "price",
            "quantity",
            "total",
            "revenue",
            "order_id",
            "query",
            "page",
            "url",
            "name",
            "params",
            "items",
            "item_id",
            "transaction_id",
            "value",
            "search_term",
            "timestamp",
            "timestamp_micros",
            "client_id",
            "user_id",
            "events",
            "batch",
            "currency",
        ]);
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map(keys, inner, 0..6).prop_map(|m| Value::Object(
                m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
            )),
        ]
    })
}

proptest! {
    #[test]
    fn arbitrary_payloads_never_panic(value in arbitrary_json(), call in 0..6usize) {
        let call = SegmentCall::ALL[call];
        let bodies = [
            value.clone(),
            json!({"batch": [value.clone()]}),
            json!({"userId": "u", "event": "Order Completed", "properties": value.clone()}),
            json!({"client_id": "c", "events": [value.clone()]}),
            json!({"client_id": "c", "events": [{"name": "purchase", "params": value.clone()}]}),
            json!({"client_id": "c", "events": [{"name": "view_item", "params": {"items": [value.clone()]}}]}),
        ];
        for body in bodies {
            let body = serde_json::to_vec(&body).expect("json");
            let mut results = vec![segment_single(call, &body)];
            results.extend(segment_batch(&body, 10).into_iter().flatten());
            results.extend(ga4_collect(&body, 10).into_iter().flatten());
            for result in results {
                if let Ok(Mapped::Event { json, .. }) = result {
                    let native: Value = serde_json::from_slice(&json).expect("the mapping writes JSON");
                    prop_assert!(native.is_object());
                }
            }
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = segment_single(SegmentCall::Track, &bytes);
        let _ = segment_batch(&bytes, 10);
        let _ = ga4_collect(&bytes, 10);
    }
}

#[test]
fn batch_context_fills_gaps_and_original_timestamp_stands_in() {
    let body =
        br#"{"context":{"ip":"198.51.100.4","locale":"fr-FR","app":{"name":"shop"}},"batch":[
        {"type":"track","event":"Products Searched","anonymousId":"a","messageId":" ",
         "originalTimestamp":"2026-12-01T09:59:00Z","sentAt":"2026-12-01T10:00:00Z",
         "properties":{"query":"q"},"context":{"locale":"de-DE"}}
    ]}"#;
    let out = segment_batch(body, 10).expect("a batch");
    let search = event(&out[0], EventKind::Search);
    assert_eq!(search["context"]["ip"], "198.51.100.4", "from the batch");
    assert_eq!(
        search["context"]["locale"], "de-DE",
        "the message's own wins"
    );
    assert_eq!(search["source"]["context"]["app"]["name"], "shop");
    assert_eq!(search["timestamp"], "2026-12-01T09:59:00Z");
    assert_eq!(search["source"]["sentAt"], "2026-12-01T10:00:00Z");
    assert!(
        search.get("event_id").is_none(),
        "a blank messageId derives nothing"
    );
}

#[test]
fn ga4_request_context_and_line_fields() {
    let body = br#"{"client_id":"c.1","user_agent":"Mozilla/5.0 (Android 14)","ip_override":"192.0.2.9",
        "consent":{"ad_user_data":"DENIED"},
        "events":[{"name":"purchase","params":{"transaction_id":"T1","currency":"EUR","language":"fr-fr",
            "page_referrer":"https://search.example/","items":[{"item_id":"a","price":"2.50","quantity":2,"product_id":"spoof"}]}}]}"#;
    let out = ga4_collect(body, 25).expect("a request");
    let order = event(&out[0], EventKind::Purchase);
    assert_eq!(order["context"]["user_agent"], "Mozilla/5.0 (Android 14)");
    assert_eq!(order["context"]["ip"], "192.0.2.9");
    assert_eq!(order["context"]["locale"], "fr-fr");
    assert_eq!(order["context"]["referrer"], "https://search.example/");
    assert_eq!(
        order["items"][0]["product_id"], "a",
        "a sender key never displaces a native one"
    );
    assert_eq!(order["total"], 5.0, "the lines' sum without a value");
    assert_eq!(order["source"]["consent"]["ad_user_data"], "DENIED");
    assert!(order.get("user_id").is_none());
}

#[test]
fn blank_ids_count_as_absent() {
    let body = br#"{"userId":"","anonymousId":"a-1","event":"Products Searched","timestamp":null,
        "originalTimestamp":"2026-12-01T10:00:00Z","properties":{"query":"q"}}"#;
    let search = event(&segment_single(SegmentCall::Track, body), EventKind::Search);
    assert!(search.get("user_id").is_none());
    assert_eq!(search["anonymous_id"], "a-1");
    assert_eq!(
        search["timestamp"], "2026-12-01T10:00:00Z",
        "a null timestamp is absent"
    );
    let e = segment_single(SegmentCall::Page, br#"{"userId":" ","anonymousId":""}"#)
        .expect_err("no identity");
    assert_eq!(e.field.as_deref(), Some("userId"));
    let e =
        ga4_collect(br#"{"client_id":"","user_id":"u","events":[]}"#, 25).expect_err("no device");
    assert_eq!(e.field.as_deref(), Some("client_id"));
}
