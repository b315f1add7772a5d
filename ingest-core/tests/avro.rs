//! The Avro schemas of schemas/avro/ against the event model: every event of the contract
//! encodes to Avro and decodes back equal, and a record written with an older schema is
//! read with this one (schema resolution). No services needed.

use apache_avro::Schema;
use ingest_core::avro::{decode_body, encode_body, frame, schema, schema_text, unframe};
use ingest_core::model::Event;
use ingest_core::EventKind;
use testkit::storefront::{EventType, Storefront};

const KINDS: [EventKind; 4] = [
    EventKind::ProductView,
    EventKind::Cart,
    EventKind::Purchase,
    EventKind::Search,
];

/// Events with every optional field set (and some with none), beyond what the storefront
/// generator sends: nested context with experiments, filters with nested content,
/// purchases with every amount.
const FULL: &[(EventKind, &str)] = &[
    (
        EventKind::ProductView,
        r#"{"event_id":"0192f3a4-5b6c-7d8e-9f00-112233445566","user_id":"u-1","anonymous_id":"a-1","session_id":"s-1","timestamp":"2026-11-24T10:00:00.123Z","context":{"user_agent":"Mozilla/5.0","ip":"2001:db8::1","page_url":"https://shop.example/p/1","referrer":"https://search.example/?q=x","locale":"de-CH","experiments":{"checkout_v2":"treatment","hero":"b"}},"product_id":"sku-1","category":"shoes","brand":"Acme","price":19.99,"currency":"EUR"}"#,
    ),
    (
        EventKind::ProductView,
        r#"{"anonymous_id":"a-2","product_id":"sku-2"}"#,
    ),
    (
        EventKind::Cart,
        r#"{"user_id":"u-1","action":"add","product_id":"sku-1","quantity":3,"price":5,"currency":"USD","cart_id":"c-1","context":{"experiments":{}}}"#,
    ),
    (EventKind::Cart, r#"{"user_id":"u-1","action":"clear"}"#),
    (
        EventKind::Purchase,
        r#"{"user_id":"u-1","order_id":"o-1","items":[{"product_id":"sku-1","quantity":1,"price":19.99},{"product_id":"sku-2","quantity":1000000,"price":0}],"total":1e11,"currency":"JPY","discount":1.5,"tax":0.25,"shipping":4.9,"coupon":"WINTER"}"#,
    ),
    (
        EventKind::Search,
        r#"{"user_id":"u-1","query":"red shoes","results_count":1000000000,"filters":{"size":[42,43],"color":"red","price":{"max":100.5},"in_stock":true,"tag":null}}"#,
    ),
    (EventKind::Search, r#"{"anonymous_id":"a-3","query":""}"#),
];

fn kind_of(t: EventType) -> EventKind {
    EventKind::from_name(t.as_str()).expect("the storefront names contract types")
}

fn round_trip(kind: EventKind, json: &[u8]) {
    let event = Event::decode(kind, json).expect("a contract event");
    let body = encode_body(&event).expect("encodes");
    let record = frame(7, &body);
    let (id, body) = unframe(&record).expect("test data");
    assert_eq!(id, 7);
    let back = decode_body(kind, schema(kind), body).expect("decodes");
    assert_eq!(back, event, "{kind}: {}", String::from_utf8_lossy(json));
}

#[test]
fn the_committed_schemas_parse_and_name_their_type() {
    for kind in KINDS {
        let parsed = Schema::parse_str(schema_text(kind)).expect("parses");
        let Schema::Record(record) = parsed else {
            panic!("{kind}: not a record")
        };
        assert_eq!(record.name.namespace(), Some("shopstream.events.v1"));
        // Every optional field has a null default: a later version can drop or add it.
        for field in &record.fields {
            if matches!(field.schema, Schema::Union(_)) {
                assert_eq!(
                    field.default,
                    Some(serde_json::Value::Null),
                    "{kind}.{}",
                    field.name
                );
            }
        }
    }
}

#[test]
fn every_full_event_round_trips() {
    for (kind, json) in FULL {
        round_trip(*kind, json.as_bytes());
    }
}

#[test]
fn storefront_events_of_every_type_round_trip() {
    let mut storefront = Storefront::new(1, 0, 42);
    for t in [
        EventType::ProductView,
        EventType::Cart,
        EventType::Purchase,
        EventType::Search,
    ] {
        for _ in 0..50 {
            let event = storefront.event_of(t);
            round_trip(kind_of(t), &event.body);
        }
    }
    for _ in 0..500 {
        let event = storefront.next_event();
        round_trip(kind_of(event.kind), &event.body);
    }
}

#[test]
fn a_record_of_an_older_schema_is_read_with_defaults() {
    // Version "0" of product_view: no brand, category or context (as if they were added
    // later, with null defaults).
    let old = Schema::parse_str(
        r#"{"type":"record","name":"ProductView","namespace":"shopstream.events.v1","fields":[
            {"name":"user_id","type":["null","string"],"default":null},
            {"name":"product_id","type":"string"},
            {"name":"price","type":["null","double"],"default":null}]}"#,
    )
    .expect("test data");
    use apache_avro::types::Value;
    let datum = apache_avro::writer::datum::GenericDatumWriter::builder(&old)
        .build()
        .expect("test data")
        .write_value_to_vec(Value::Record(vec![
            (
                "user_id".into(),
                Value::Union(1, Box::new(Value::String("u-9".into()))),
            ),
            ("product_id".into(), Value::String("sku-9".into())),
            (
                "price".into(),
                Value::Union(1, Box::new(Value::Double(2.5))),
            ),
        ]))
        .expect("test data");
    let event = decode_body(EventKind::ProductView, &old, &datum).expect("resolves");
    let Event::ProductView(view) = event else {
        panic!("not a view")
    };
    assert_eq!(view.common.user_id.as_deref(), Some("u-9"));
    assert_eq!(view.product_id, "sku-9");
    assert_eq!(view.price, Some(2.5));
    assert_eq!(view.brand, None);
    assert_eq!(view.common.context, None);
}

#[test]
fn a_body_that_is_not_the_writer_schema_fails_without_panicking() {
    // Truncated and garbage bodies: an error, never a panic or a half event.
    let event = Event::decode(EventKind::Purchase, FULL[4].1.as_bytes()).expect("test data");
    let body = encode_body(&event).expect("test data");
    for cut in [0, 1, body.len() / 2, body.len() - 1] {
        let result = decode_body(
            EventKind::Purchase,
            schema(EventKind::Purchase),
            &body[..cut],
        );
        assert!(
            result.is_err(),
            "cut at {cut} of {}: {result:?}",
            body.len()
        );
    }
    // A body whose last fields are absent optional ones (one byte each, union index 0):
    // cut anywhere, it fails too, not decoded with the cut fields as null.
    let view = Event::decode(EventKind::ProductView, FULL[1].1.as_bytes()).expect("test data");
    let body = encode_body(&view).expect("test data");
    for cut in 1..=4 {
        let result = decode_body(
            EventKind::ProductView,
            schema(EventKind::ProductView),
            &body[..body.len() - cut],
        );
        assert!(result.is_err(), "{cut} bytes cut: {result:?}");
    }
    // A purchase body read as a search: an error too (or, if the bytes happen to parse,
    // leftover bytes).
    assert!(decode_body(EventKind::Search, schema(EventKind::Search), &body).is_err());
}
