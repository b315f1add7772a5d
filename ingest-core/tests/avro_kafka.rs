//! Avro topics end to end, against a real Kafka (`KAFKA_BOOTSTRAP`, `scripts/kafka start`)
//! and a real schema registry (`REGISTRY_URL`, `scripts/registry start`): the schema is
//! registered at start, events submitted as JSON arrive in the Confluent wire format with
//! the registered id and the `avro:<type>/v1` header, decode (with the schema fetched from
//! the registry by that id) to the submitted event, in this crate and in Python's fastavro,
//! and a topic left in JSON is untouched.

mod common;
#[path = "common/fastavro.rs"]
mod fastavro;

use std::time::Duration;

use ingest_core::avro::{decode_body, unframe, AvroTopics, Compatibility, RegistryClient};
use ingest_core::model::Event;
use ingest_core::{EventKind, Ingestor};

fn registry() -> RegistryClient {
    let url = std::env::var("REGISTRY_URL").unwrap_or_else(|_| {
        panic!("REGISTRY_URL is not set: start a registry with `scripts/registry start` and export the URL it prints")
    });
    let base = format!("{}/apis/ccompat/v7", url.trim_end_matches('/'));
    RegistryClient::new(&base, Duration::from_secs(10), 16).expect("client")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_avro_topic_carries_the_wire_format_and_decodes_to_the_submitted_event() {
    let brokers = common::bootstrap("KAFKA_BOOTSTRAP", "scripts/kafka start");
    let config = common::config(&brokers, "avro", 1, 1);
    common::create_topics(&config).await;
    let client = registry();
    let purchases = config.topics.purchase.name.clone();
    let topics = AvroTopics::register(
        &client,
        &[(EventKind::Purchase, purchases.as_str())],
        Compatibility::Backward,
    )
    .await
    .expect("registered");
    let id = topics.id(EventKind::Purchase).expect("an id");
    let ingestor = Ingestor::builder()
        .config(config.clone())
        .avro_topics(topics)
        .build()
        .expect("ingestor");
    let purchase = r#"{"user_id":"u-7","order_id":"o-7","items":[{"product_id":"sku-1","quantity":2,"price":9.5}],"total":19,"currency":"EUR","coupon":"X1","gift":"kept in JSON, not in Avro"}"#;
    let view = r#"{"user_id":"u-7","product_id":"sku-1","price":9.5}"#;
    ingestor
        .submit(EventKind::Purchase, purchase.as_bytes().to_vec().into())
        .expect("accepted");
    ingestor
        .submit(EventKind::ProductView, view.as_bytes().to_vec().into())
        .expect("accepted");
    ingestor
        .shutdown(Duration::from_secs(30))
        .await
        .expect("delivered");

    let records = common::consume(&brokers, &purchases, 1, Duration::from_secs(30));
    assert_eq!(records.len(), 1);
    let record = &records[0];
    assert_eq!(record.payload[0], 0, "magic byte");
    let (record_id, body) = unframe(&record.payload).expect("wire format");
    assert_eq!(record_id, id);
    assert_eq!(record.headers["schema"], "avro:purchase/v1");
    assert_eq!(record.headers["event_type"], "purchase");
    assert_eq!(record.key.as_deref(), Some(&b"u-7"[..]));
    let writer = client.schema_by_id(record_id).await.expect("schema by id");
    let decoded = decode_body(EventKind::Purchase, &writer, body).expect("decodes");
    let submitted = Event::decode(EventKind::Purchase, purchase.as_bytes()).expect("event");
    assert_eq!(decoded, submitted);
    // And an independent reader, given only the record and the registry, agrees.
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("record.bin");
    std::fs::write(&path, &record.payload).expect("write");
    let url = std::env::var("REGISTRY_URL").expect("set");
    let base = format!("{}/apis/ccompat/v7", url.trim_end_matches('/'));
    let read = fastavro::decode(&base, &path);
    assert_eq!(read["schema_id"], id);
    assert_eq!(read["record"]["order_id"], "o-7");
    assert_eq!(read["record"]["items"][0]["quantity"], 2);
    assert_eq!(read["record"]["total"], 19.0);
    assert_eq!(read["record"]["coupon"], "X1");
    assert!(read["record"].get("gift").is_none());

    // The product-view topic was not named: it stays JSON, byte for byte.
    let views = common::consume(
        &brokers,
        &config.topics.product_view.name,
        1,
        Duration::from_secs(30),
    );
    assert_eq!(views[0].payload, view.as_bytes());
    assert_eq!(views[0].headers["schema"], "json:product_view/v1");
}
