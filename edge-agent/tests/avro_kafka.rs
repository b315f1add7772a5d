//! The agent's Avro output (`[avro]`) against a real Kafka and a real schema registry:
//! the listed event types' records are in the Confluent wire format with the id the
//! registry gave their schema, and decode to the event posted; the other types stay
//! JSON; a schema incompatible with its subject's latest one stops the agent at start,
//! naming the field. Selected by the `registry-tests` feature (`KAFKA_BOOTSTRAP` and
//! `REGISTRY_URL`, from `scripts/kafka start` and `scripts/registry start`);
//! `scripts/test` runs them.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{base_config, brokers, create_topics, free_port, json, post, read_topic, Agent};
use http::StatusCode;
use ingest_core::avro::{self, Compatibility, RegistryClient};
use ingest_core::model::Event;
use ingest_core::EventKind;

const WAIT: Duration = Duration::from_secs(60);
const JSON: (&str, &str) = ("content-type", "application/json");

/// The registry's Confluent-compatible API.
fn registry() -> String {
    let url = testkit::bootstrap("REGISTRY_URL", "scripts/registry start");
    format!("{}/apis/ccompat/v7", url.trim_end_matches('/'))
}

fn avro_section(types: &str, registry: &str) -> String {
    format!(
        "[avro]\ntypes = [{types}]\nregistry_url = \"{registry}\"\ncompatibility = \"backward\"\n"
    )
}

/// An agent's configuration with product views written in Avro, its topics created, for
/// a test that registers a schema before the agent starts: `(prefix, port, config)`.
async fn product_view_config(test: &str, registry: &str) -> (String, u16, String) {
    let prefix = testkit::unique(test);
    let port = free_port();
    let config = format!(
        "{}\n{}",
        base_config(&brokers(), &prefix, port, ""),
        avro_section("\"product_view\"", registry)
    );
    create_topics(&config).await;
    (prefix, port, config)
}

#[tokio::test(flavor = "multi_thread")]
async fn listed_types_are_written_in_avro_with_the_registry_id() {
    let registry = registry();
    let agent = Agent::start(
        "avro",
        "",
        &avro_section("\"product_view\", \"purchase\"", &registry),
    )
    .await;
    let view = r#"{"user_id":"u1","product_id":"sku-1","price":19.99,"currency":"EUR","context":{"page_url":"https://shop.example/p/1"}}"#;
    let search = r#"{"user_id":"u1","query":"red shoes"}"#;
    for (path, body) in [("product-view", view), ("search", search)] {
        let response = agent
            .send(post(
                &format!("/api/events/{path}"),
                body.to_owned(),
                &[JSON, ("ingest-ack", "delivered")],
            ))
            .await;
        assert_eq!(response.status(), StatusCode::ACCEPTED, "{path}");
        assert_eq!(json(&response)["accepted"], 1);
    }

    let records = read_topic(&agent.topic("product-views"), 1, WAIT).await;
    assert_eq!(records.len(), 1);
    let record = &records[0];
    assert_eq!(record.header("schema"), "avro:product_view/v2");
    let (id, body) = avro::unframe(&record.payload).expect("the Confluent wire format");
    // The id is the one the registry holds for the subject, and it names this schema.
    let client = RegistryClient::new(&registry, Duration::from_secs(10), 4).expect("client");
    let subject = format!("{}-value", agent.topic("product-views"));
    let (latest, _) = client
        .latest(&subject)
        .await
        .expect("the registry answers")
        .expect("the subject was registered at start");
    assert_eq!(id, latest, "the record carries the subject's schema id");
    let writer = client.schema_by_id(id).await.expect("the schema by id");
    let Event::ProductView(decoded) =
        avro::decode_body(EventKind::ProductView, &writer, body).expect("decodes")
    else {
        panic!("not a product view")
    };
    assert_eq!(decoded.product_id, "sku-1");
    assert_eq!(decoded.price, Some(19.99));
    assert_eq!(decoded.common.user_id.as_deref(), Some("u1"));
    assert_eq!(
        decoded
            .common
            .context
            .as_ref()
            .and_then(|c| c.page_url.as_deref()),
        Some("https://shop.example/p/1")
    );

    // A type not listed stays JSON, byte for byte.
    let searches = read_topic(&agent.topic("search-events"), 1, WAIT).await;
    assert_eq!(searches[0].payload, search.as_bytes());
    assert_ne!(searches[0].header("schema"), "avro:search/v1");
}

/// A subject that holds version 1 of the product-view schema (a topic written by an
/// earlier agent) moves to version 2 at start: the registry's BACKWARD check accepts the
/// added optional fields, and the new records carry version 2's id, which a reader of
/// either version decodes.
#[tokio::test(flavor = "multi_thread")]
async fn a_subject_at_version_1_moves_to_the_compatible_version_2() {
    let registry = registry();
    let (prefix, port, config) = product_view_config("avro-evolve", &registry).await;
    let client = RegistryClient::new(&registry, Duration::from_secs(10), 4).expect("client");
    let subject = format!("{prefix}-product-views-value");
    let v1 = client
        .ensure_subject(
            &subject,
            avro::schema_text_of(EventKind::ProductView, 1),
            Compatibility::Backward,
        )
        .await
        .expect("version 1 registered")
        .id;
    let agent = Agent::launch(prefix, port, config, tempfile::tempdir().expect("dir"), &[]).await;
    let view = r#"{"user_id":"u1","product_id":"sku-1","variant":"red / XL","list_id":"home-top","position":2}"#;
    let response = agent
        .send(post(
            "/api/events/product-view",
            view,
            &[JSON, ("ingest-ack", "delivered")],
        ))
        .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let records = read_topic(&agent.topic("product-views"), 1, WAIT).await;
    let (id, body) = avro::unframe(&records[0].payload).expect("the Confluent wire format");
    assert_ne!(id, v1, "a new schema version was registered");
    let (latest, _) = client
        .latest(&subject)
        .await
        .expect("the registry answers")
        .expect("the subject");
    assert_eq!(id, latest);
    assert_eq!(records[0].header("schema"), "avro:product_view/v2");
    let writer = client.schema_by_id(id).await.expect("the schema by id");
    let Event::ProductView(decoded) =
        avro::decode_body(EventKind::ProductView, &writer, body).expect("decodes")
    else {
        panic!("not a product view")
    };
    assert_eq!(
        (
            decoded.variant.as_deref(),
            decoded.list_id.as_deref(),
            decoded.position
        ),
        (Some("red / XL"), Some("home-top"), Some(2))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_incompatible_registered_schema_stops_the_agent_at_start_naming_the_field() {
    let registry = registry();
    let (prefix, _port, config) = product_view_config("avro-incompatible", &registry).await;
    // The subject's latest schema has `price` as a string: the agent's (a double) cannot
    // read what was written with it.
    let mut retyped: serde_json::Value =
        serde_json::from_str(avro::schema_text(EventKind::ProductView)).expect("schema");
    for field in retyped["fields"].as_array_mut().expect("fields") {
        if field["name"] == "price" {
            field["type"] = serde_json::json!(["null", "string"]);
        }
    }
    let client = RegistryClient::new(&registry, Duration::from_secs(10), 4).expect("client");
    client
        .ensure_subject(
            &format!("{prefix}-product-views-value"),
            &retyped.to_string(),
            Compatibility::None,
        )
        .await
        .expect("the retyped schema registered");

    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("agent.toml");
    std::fs::write(&file, &config).expect("config file");
    let output = Command::new(env!("CARGO_BIN_EXE_edge-agent"))
        .arg("--config")
        .arg(&file)
        .stdin(Stdio::null())
        .output()
        .expect("runs edge-agent");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("registering the Avro schemas") && stderr.contains("field `price`"),
        "the refusal names the field: {stderr}"
    );
    assert!(stderr.contains("BACKWARD"), "{stderr}");
}
