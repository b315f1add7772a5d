//! Records a foreign producer could write to the event topics, each with the reason the
//! processor must dead-letter it: NUL and control characters in every kind of string
//! field, amounts and quantities past the contract's limits, 100 KB strings, values that
//! are not JSON, empty or absent, nesting deeper than any parser allows, headers that
//! are not UTF-8. Shared by the processor's tests and `scripts/demo --hostile`;
//! [`crate::produce_raw`] writes them.

use serde_json::{json, Value};

use crate::RawRecord;

/// One hostile record.
#[derive(Debug, Clone)]
pub struct Hostile {
    /// The record (topic 0 product views, 1 cart, 2 purchases, 3 searches), with a
    /// header `marker` = `hostile-<index>` to find its dead letter.
    pub record: RawRecord,
    /// The `error_code` its dead letter must carry.
    pub reason: &'static str,
}

/// Topic, `event_type` header, value, extra headers, expected reason.
type Case<'a> = (
    usize,
    &'a [u8],
    Option<Vec<u8>>,
    Vec<(&'a str, &'a [u8])>,
    &'static str,
);

fn merged(base: Value, fields: Value) -> Option<Vec<u8>> {
    let mut v = base;
    if let (Some(object), Some(fields)) = (v.as_object_mut(), fields.as_object()) {
        for (k, x) in fields {
            object.insert(k.clone(), x.clone());
        }
    }
    Some(serde_json::to_vec(&v).expect("JSON"))
}

/// The hostile records, with event times `timestamp` (RFC 3339).
pub fn records(timestamp: &str) -> Vec<Hostile> {
    let view = |fields: Value| {
        merged(
            json!({"user_id": "hostile", "product_id": "sku-0001", "timestamp": timestamp}),
            fields,
        )
    };
    let purchase = |fields: Value| {
        merged(
            json!({"user_id": "hostile-buyer", "order_id": "o-1", "currency": "EUR", "total": 1.0,
                "items": [{"product_id": "sku-0001", "quantity": 1, "price": 1.0}], "timestamp": timestamp}),
            fields,
        )
    };
    let search = |fields: Value| {
        merged(
            json!({"user_id": "hostile", "query": "q", "timestamp": timestamp}),
            fields,
        )
    };
    let long = "x".repeat(100_000);
    // In a field the processor reads as a value (a search's filters): past serde_json's
    // nesting limit. (Nesting in a field no event type names is skipped, at any depth.)
    let deep = format!(
        r#"{{"user_id":"u","query":"q","filters":{{"x":{}1{}}}}}"#,
        "{\"a\":".repeat(200),
        "}".repeat(200)
    );
    let unstorable = "unstorable";
    let cases: Vec<Case<'_>> = vec![
        (
            0,
            b"product_view",
            view(json!({"user_id": "a\u{0}b"})),
            vec![],
            unstorable,
        ),
        (
            0,
            b"product_view",
            view(json!({"user_id": null, "anonymous_id": "anon\u{0}"})),
            vec![],
            unstorable,
        ),
        (
            0,
            b"product_view",
            view(json!({"product_id": "sku\u{0}1"})),
            vec![],
            unstorable,
        ),
        (
            2,
            b"purchase",
            purchase(json!({"items": [{"product_id": "p\u{0}", "quantity": 1, "price": 1.0}]})),
            vec![],
            unstorable,
        ),
        (
            0,
            b"product_view",
            view(json!({"context": {"experiments": {"flag\u{0}": "a"}}})),
            vec![],
            unstorable,
        ),
        (
            0,
            b"product_view",
            view(json!({"context": {"experiments": {"flag": "a\u{0}"}}})),
            vec![],
            unstorable,
        ),
        (
            3,
            b"search",
            search(json!({"query": "shoes\u{0}"})),
            vec![],
            unstorable,
        ),
        (
            0,
            b"product_view",
            view(json!({"context": {"experiments": {"check\tout": "a"}}})),
            vec![],
            unstorable,
        ),
        (
            0,
            b"product_view",
            view(json!({"context": {"experiments": {"a=b": "c"}}})),
            vec![],
            unstorable,
        ),
        (
            0,
            b"product_view",
            view(json!({"user_id": "u\u{85}"})),
            vec![],
            unstorable,
        ),
        (
            0,
            b"product_view",
            view(json!({"session_id": "s\u{1b}[31m"})),
            vec![],
            unstorable,
        ),
        (
            2,
            b"purchase",
            purchase(json!({"total": 1e13})),
            vec![],
            unstorable,
        ),
        (
            2,
            b"purchase",
            purchase(json!({"total": 2e13})),
            vec![],
            unstorable,
        ),
        (
            2,
            b"purchase",
            purchase(json!({"items": [{"product_id": "p", "quantity": 9e15, "price": 1.0}]})),
            vec![],
            "undecodable",
        ),
        (
            2,
            b"purchase",
            purchase(json!({"discount": -1.0})),
            vec![],
            unstorable,
        ),
        (
            3,
            b"search",
            search(json!({"results_count": 9e15})),
            vec![],
            "undecodable",
        ),
        (
            0,
            b"product_view",
            view(json!({"price": 1e300})),
            vec![],
            unstorable,
        ),
        (
            0,
            b"product_view",
            view(json!({"product_id": long})),
            vec![],
            unstorable,
        ),
        (
            0,
            b"product_view",
            view(json!({"brand": long})),
            vec![],
            unstorable,
        ),
        (
            3,
            b"search",
            search(json!({"query": long})),
            vec![],
            unstorable,
        ),
        (
            0,
            b"product_view",
            view(json!({})),
            vec![("event_id", b"id\x00with-nul")],
            unstorable,
        ),
        (
            0,
            b"product_view",
            view(json!({})),
            vec![("source", b"shop\x01")],
            unstorable,
        ),
        (
            0,
            b"\xff\xfeview",
            view(json!({})),
            vec![],
            "unknown_event_type",
        ),
        // A version of the type this processor does not know (it reads v1 and v2), or
        // another type's schema: never guessed at.
        (
            0,
            b"product_view",
            view(json!({})),
            vec![("schema", b"json:product_view/v3")],
            "unknown_schema",
        ),
        (
            3,
            b"search",
            search(json!({})),
            vec![("schema", b"json:cart/v1")],
            "unknown_schema",
        ),
        (
            0,
            b"product_view",
            Some(b"\x01\x02 not json".to_vec()),
            vec![],
            "undecodable",
        ),
        // A leading zero byte is the Avro wire format's magic: without a registry to
        // fetch the schema from, the record waits in the dead-letter topic for a replay.
        (
            0,
            b"product_view",
            Some(b"\x00\x01 not json".to_vec()),
            vec![],
            "schema_unavailable",
        ),
        (0, b"product_view", Some(Vec::new()), vec![], "undecodable"),
        (0, b"product_view", None, vec![], "undecodable"),
        (3, b"search", Some(deep.into_bytes()), vec![], "undecodable"),
        (1, b"cart", Some(b"[1,2,3]".to_vec()), vec![], "undecodable"),
        (
            1,
            b"cart",
            Some(br#"{"user_id":"u","action":"add","product_id":"p","quantity":"1"}"#.to_vec()),
            vec![],
            "undecodable",
        ),
        (
            0,
            b"product_view",
            view(json!({"user_id": null})),
            vec![],
            "missing_identity",
        ),
    ];
    cases
        .into_iter()
        .enumerate()
        .map(|(i, (topic, event_type, value, extra, reason))| {
            let mut headers = vec![
                ("event_type".to_owned(), Some(event_type.to_vec())),
                (
                    "marker".to_owned(),
                    Some(format!("hostile-{i}").into_bytes()),
                ),
            ];
            for (k, v) in extra {
                headers.push((k.to_owned(), Some(v.to_vec())));
            }
            Hostile {
                record: RawRecord {
                    topic,
                    key: Some(format!("hostile-user-{i}").into_bytes()),
                    value,
                    headers,
                },
                reason,
            }
        })
        .collect()
}
