//! The schema registry client against a real registry (Apicurio Registry, started by
//! `scripts/registry start`, which prints the URL for `REGISTRY_URL`): subjects are
//! registered and read back by id, a compatible change registers, an incompatible one is
//! refused naming the field, and a record in the wire format is decoded by an independent
//! Avro reader (Python's fastavro) with the schema it fetches from the registry.
//!
//! Each test uses subjects of its own (a per-run suffix), so runs never see each other's
//! schemas even against a long-running registry.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use apache_avro::Schema;
use ingest_core::avro::{
    encode_body, frame, schema_text, Compatibility, RegistryClient, RegistryError,
};
use ingest_core::model::Event;
use ingest_core::EventKind;

#[path = "common/fastavro.rs"]
mod fastavro;

fn registry_url() -> String {
    std::env::var("REGISTRY_URL").unwrap_or_else(|_| {
        panic!("REGISTRY_URL is not set: start a registry with `scripts/registry start` and export the URL it prints")
    })
}

fn client() -> RegistryClient {
    let base = format!("{}/apis/ccompat/v7", registry_url().trim_end_matches('/'));
    RegistryClient::new(&base, Duration::from_secs(10), 16).expect("client")
}

fn subject(name: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_nanos();
    format!("{name}-{}-{nanos}-value", std::process::id())
}

/// The product_view schema with `edit` applied to its field list.
fn product_view_with(edit: impl FnOnce(&mut Vec<serde_json::Value>)) -> String {
    let mut schema: serde_json::Value =
        serde_json::from_str(schema_text(EventKind::ProductView)).expect("avsc");
    let fields = schema["fields"].as_array_mut().expect("fields");
    edit(fields);
    schema.to_string()
}

#[tokio::test]
async fn a_subject_registers_once_and_its_schema_reads_back_by_id() {
    let client = client();
    let subject = subject("product-views");
    let local = schema_text(EventKind::ProductView);
    let first = client
        .ensure_subject(&subject, local, Compatibility::Backward)
        .await
        .expect("registers");
    assert_eq!(first.previous_id, None);
    // A second start finds the same schema: same id, nothing new registered.
    let again = client
        .ensure_subject(&subject, local, Compatibility::Backward)
        .await
        .expect("finds it");
    assert_eq!(again.id, first.id);
    assert_eq!(again.previous_id, Some(first.id));
    let fetched = client.schema_by_id(first.id).await.expect("by id");
    assert_eq!(
        fetched.canonical_form(),
        Schema::parse_str(local).expect("parses").canonical_form()
    );
    let unknown = client.schema_by_id(u32::MAX - 7).await;
    assert!(
        matches!(unknown, Err(RegistryError::UnknownId(_))),
        "{unknown:?}"
    );
}

#[tokio::test]
async fn a_new_optional_field_is_a_compatible_change() {
    let client = client();
    let subject = subject("product-views-compatible");
    let v1 = client
        .ensure_subject(
            &subject,
            schema_text(EventKind::ProductView),
            Compatibility::Backward,
        )
        .await
        .expect("v1");
    let v2 = product_view_with(|fields| {
        fields.push(
            serde_json::json!({"name": "gift_wrap", "type": ["null", "boolean"], "default": null}),
        )
    });
    let check = client
        .ensure_subject(&subject, &v2, Compatibility::Backward)
        .await
        .expect("a new optional field is backward compatible");
    assert_ne!(check.id, v1.id);
    assert_eq!(check.previous_id, Some(v1.id));
    let (latest, _) = client
        .latest(&subject)
        .await
        .expect("latest")
        .expect("some");
    assert_eq!(latest, check.id);
}

#[tokio::test]
async fn an_incompatible_change_is_refused_naming_the_field() {
    let client = client();
    let subject = subject("product-views-incompatible");
    let v1 = client
        .ensure_subject(
            &subject,
            schema_text(EventKind::ProductView),
            Compatibility::Backward,
        )
        .await
        .expect("v1");
    // `price` retyped from an optional double to an optional string.
    let retyped = product_view_with(|fields| {
        for field in fields.iter_mut() {
            if field["name"] == "price" {
                field["type"] = serde_json::json!(["null", "string"]);
            }
        }
    });
    let err = client
        .ensure_subject(&subject, &retyped, Compatibility::Backward)
        .await
        .expect_err("a retyped field is not backward compatible");
    let RegistryError::Incompatible {
        reasons, latest_id, ..
    } = &err
    else {
        panic!("{err}")
    };
    assert_eq!(*latest_id, v1.id);
    assert!(
        reasons.iter().any(|r| r.starts_with("field `price`")),
        "{err}"
    );
    // A required field added without a default: refused too, naming it.
    let required = product_view_with(|fields| {
        fields.push(serde_json::json!({"name": "warehouse", "type": "string"}))
    });
    let err = client
        .ensure_subject(&subject, &required, Compatibility::Backward)
        .await
        .expect_err("a new required field is not backward compatible");
    assert!(err.to_string().contains("field `warehouse`"), "{err}");
    assert!(err.to_string().contains("BACKWARD"), "{err}");
    // Nothing was registered by the refusals.
    let (latest, _) = client
        .latest(&subject)
        .await
        .expect("latest")
        .expect("some");
    assert_eq!(latest, v1.id);
}

#[tokio::test]
async fn fastavro_decodes_a_record_with_the_schema_from_the_registry() {
    let client = client();
    let subject = subject("purchases");
    let id = client
        .ensure_subject(
            &subject,
            schema_text(EventKind::Purchase),
            Compatibility::Backward,
        )
        .await
        .expect("registers")
        .id;
    let json = r#"{"user_id":"u-1","session_id":"s-1","context":{"locale":"fr-CH","experiments":{"checkout_v2":"treatment"}},"order_id":"o-42","items":[{"product_id":"sku-1","quantity":2,"price":19.99},{"product_id":"sku-2","quantity":1,"price":0}],"total":39.98,"currency":"CHF","tax":2.5,"coupon":"WINTER"}"#;
    let event = Event::decode(EventKind::Purchase, json.as_bytes()).expect("event");
    let record = frame(id, &encode_body(&event).expect("encodes"));
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("record.bin");
    std::fs::write(&path, &record).expect("write");
    let base = format!("{}/apis/ccompat/v7", registry_url().trim_end_matches('/'));
    let decoded = fastavro::decode(&base, &path);
    assert_eq!(decoded["schema_id"], id);
    let r = &decoded["record"];
    assert_eq!(r["user_id"], "u-1");
    assert_eq!(r["session_id"], "s-1");
    assert_eq!(r["anonymous_id"], serde_json::Value::Null);
    assert_eq!(r["context"]["locale"], "fr-CH");
    assert_eq!(r["context"]["experiments"]["checkout_v2"], "treatment");
    assert_eq!(r["order_id"], "o-42");
    assert_eq!(r["items"][0]["product_id"], "sku-1");
    assert_eq!(r["items"][0]["quantity"], 2);
    assert_eq!(r["items"][0]["price"], 19.99);
    assert_eq!(r["items"][1]["price"], 0.0);
    assert_eq!(r["total"], 39.98);
    assert_eq!(r["currency"], "CHF");
    assert_eq!(r["tax"], 2.5);
    assert_eq!(r["discount"], serde_json::Value::Null);
    assert_eq!(r["coupon"], "WINTER");
}
