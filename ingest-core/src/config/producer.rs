//! The producer's librdkafka settings, built from a validated [`IngestConfig`]: the
//! `[kafka.properties]` passed through, then the properties this crate owns set from
//! their typed keys. Only with the `kafka` feature.

use rdkafka::ClientConfig;

use super::{IngestConfig, Settings};

impl IngestConfig {
    /// The producer's settings. Called by [`validate`](IngestConfig::validate) once
    /// every value is checked (the owned and forbidden properties refused).
    pub(super) fn producer_config(&self) -> ClientConfig {
        let kafka = &self.kafka;
        let mut producer = ClientConfig::new();
        // librdkafka's own level would follow the `log` crate's; logs go through
        // `tracing`, which filters them, so let everything from Info up through, and
        // debug lines too when the `debug` property asks librdkafka for them.
        producer.set_log_level(if kafka.properties.contains_key("debug") {
            rdkafka::config::RDKafkaLogLevel::Debug
        } else {
            rdkafka::config::RDKafkaLogLevel::Info
        });
        for (key, value) in &kafka.properties {
            producer.set(key, value);
        }
        producer
            .set("bootstrap.servers", &kafka.brokers)
            .set("client.id", &kafka.client_id)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("compression.type", kafka.compression.as_librdkafka())
            .set("linger.ms", kafka.linger_ms.to_string())
            .set("batch.size", kafka.batch_max_bytes.to_string())
            .set("batch.num.messages", kafka.batch_max_records.to_string())
            .set("message.timeout.ms", kafka.message_timeout_ms.to_string())
            .set("request.timeout.ms", kafka.request_timeout_ms.to_string())
            .set(
                "queue.buffering.max.messages",
                kafka.producer_queue_max_records.to_string(),
            )
            .set(
                "queue.buffering.max.kbytes",
                (kafka.producer_queue_max_bytes / 1024).to_string(),
            );
        if self.telemetry.statistics_interval_ms > 0 {
            producer.set(
                "statistics.interval.ms",
                self.telemetry.statistics_interval_ms.to_string(),
            );
        }
        producer
    }
}

impl Settings {
    /// The librdkafka properties of the producer, as the ingestor sets them (including
    /// secrets from `[kafka.properties]`): for tools that must talk to Kafka exactly as
    /// the ingestor does, such as a benchmark's raw producer loop.
    pub fn producer_properties(&self) -> std::collections::BTreeMap<&str, &str> {
        self.producer.config_map()
    }
}
