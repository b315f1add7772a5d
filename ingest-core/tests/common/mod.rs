//! Helpers shared by the integration tests that talk to a real Kafka.

#![allow(dead_code, unreachable_pub, unused_imports)]

#[cfg(feature = "kafka-tests")]
pub mod harness;

use std::time::Duration;

use ingest_core::config::TopicConfig;
use ingest_core::{ensure_topics, IngestConfig};
pub use testkit::{bootstrap, consume, event_ids, payloads, read_topic, unique, Consumed};

/// A configuration whose topics are private to one test.
pub fn config(brokers: &str, test: &str, partitions: i32, replication_factor: i32) -> IngestConfig {
    let prefix = unique(test);
    let topic = |name: &str| TopicConfig {
        name: format!("{prefix}-{name}"),
        partitions,
        replication_factor,
    };
    let mut config = IngestConfig::default();
    config.kafka.brokers = brokers.to_owned();
    config.kafka.linger_ms = 2;
    config.source = "integration-test".to_owned();
    config.topics.product_view = topic("product-views");
    config.topics.cart = topic("cart-events");
    config.topics.purchase = topic("purchases");
    config.topics.search = topic("search-events");
    config.topics.dead_letter = topic("events-dlq");
    config.topics.custom = topic("custom-events");
    config
}

/// Creates the configuration's topics.
pub async fn create_topics(config: &IngestConfig) {
    let settings = config.validate().expect("valid test config");
    ensure_topics(&settings, Duration::from_secs(30))
        .await
        .expect("topics created");
}
