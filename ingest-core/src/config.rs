//! Configuration of an [`Ingestor`](crate::Ingestor).
//!
//! Two steps, as everywhere in this project: [`IngestConfig`] is the serde-facing shape
//! (every field documented, unknown keys rejected, defaults production-safe), and
//! [`IngestConfig::validate`] turns it into [`Settings`], the checked, typed value the
//! ingestor runs on. Validation does no I/O.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::ConfigError;
use crate::event::EventKind;
use crate::validate::Limits;

#[cfg(feature = "kafka")]
mod producer;
mod settings;

pub use settings::Settings;
#[cfg(feature = "kafka")]
pub(crate) use settings::{BreakerSettings, DiskBufferSettings};

/// Everything an [`Ingestor`](crate::Ingestor) can be told, as read from a TOML file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// How to reach and write to Kafka.
    pub kafka: KafkaConfig,
    /// Topic names and layout.
    pub topics: TopicsConfig,
    /// Limits applied to events and batches.
    pub limits: LimitsConfig,
    /// The bounded in-memory queue between callers and the Kafka producer.
    pub queue: QueueConfig,
    /// Where rejected events go.
    pub dead_letter: DeadLetterConfig,
    /// Where accepted events wait for Kafka: memory only, or a disk buffer.
    pub buffer: BufferConfig,
    /// When to stop sending to an unreachable Kafka, and how to probe it.
    pub breaker: BreakerConfig,
    /// Metrics: the `ingestor` label and librdkafka's statistics.
    pub telemetry: TelemetryConfig,
    /// Identifies this sender in the `source` header of every record (a storefront or
    /// host name). Empty means the host name.
    pub source: String,
}

/// Compression of record batches sent to Kafka.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Compression {
    /// No compression.
    None,
    /// gzip: small, slow.
    Gzip,
    /// snappy.
    Snappy,
    /// lz4: fast, the default.
    #[default]
    Lz4,
    /// zstd: smallest at good speed.
    Zstd,
}

impl Compression {
    #[cfg(feature = "kafka")]
    fn as_librdkafka(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }
}

/// Kafka producer settings. `Debug` masks secret-looking properties.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// Bootstrap brokers, `host:port` separated by commas.
    pub brokers: String,
    /// Client id shown in broker logs and quotas.
    pub client_id: String,
    /// Compression codec for record batches.
    pub compression: Compression,
    /// How long the producer waits to fill a batch before sending it, in milliseconds.
    /// Longer means fewer, larger batches (less CPU per event in the client and the
    /// brokers) and a longer wait for every `delivered` acknowledgement.
    pub linger_ms: u64,
    /// Largest record batch per partition, in bytes.
    pub batch_max_bytes: usize,
    /// Most records per batch.
    pub batch_max_records: usize,
    /// How long the producer keeps retrying one record before reporting it failed, in
    /// milliseconds. Retries within this time are automatic and keep order.
    pub message_timeout_ms: u64,
    /// How long to wait for a broker's answer to one produce request, in milliseconds.
    pub request_timeout_ms: u64,
    /// Most records waiting inside the producer client (its own bounded queue).
    pub producer_queue_max_records: usize,
    /// Most bytes waiting inside the producer client.
    pub producer_queue_max_bytes: usize,
    /// Any other librdkafka property, passed through as is: `security.protocol`,
    /// `sasl.mechanism`, `sasl.username`, `ssl.ca.location`, ... Properties that this
    /// section sets itself, or that would weaken delivery guarantees
    /// (`enable.idempotence`, `acks`), are rejected.
    pub properties: BTreeMap<String, String>,
}

/// The mask shown instead of secret values.
pub const REDACTED: &str = ingest_common::secret::REDACTED;

/// Whether a librdkafka property holds a secret (passwords, keys, tokens), judged by
/// its name so that properties added in future librdkafka versions are covered too
/// (the workspace's one word list, [`ingest_common::secret::is_secret_name`]).
pub fn is_secret_property(key: &str) -> bool {
    ingest_common::secret::is_secret_name(key)
}

impl KafkaConfig {
    fn redacted(&self) -> KafkaConfig {
        let mut copy = self.clone();
        ingest_common::secret::mask_properties(copy.properties.iter_mut());
        copy
    }
}

impl std::fmt::Debug for KafkaConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown = self.redacted();
        f.debug_struct("KafkaConfig")
            .field("brokers", &shown.brokers)
            .field("client_id", &shown.client_id)
            .field("compression", &shown.compression)
            .field("linger_ms", &shown.linger_ms)
            .field("batch_max_bytes", &shown.batch_max_bytes)
            .field("batch_max_records", &shown.batch_max_records)
            .field("message_timeout_ms", &shown.message_timeout_ms)
            .field("request_timeout_ms", &shown.request_timeout_ms)
            .field(
                "producer_queue_max_records",
                &shown.producer_queue_max_records,
            )
            .field("producer_queue_max_bytes", &shown.producer_queue_max_bytes)
            .field("properties", &shown.properties)
            .finish()
    }
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            brokers: "127.0.0.1:9092".to_owned(),
            client_id: "ingest-core".to_owned(),
            compression: Compression::Lz4,
            linger_ms: 5,
            batch_max_bytes: 1024 * 1024,
            batch_max_records: 10_000,
            message_timeout_ms: 300_000,
            request_timeout_ms: 30_000,
            producer_queue_max_records: 100_000,
            producer_queue_max_bytes: 256 * 1024 * 1024,
            properties: BTreeMap::new(),
        }
    }
}

/// One topic's name and the layout used when the topic is created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicConfig {
    /// Topic name.
    pub name: String,
    /// Partitions when created.
    pub partitions: i32,
    /// Replication factor when created (reduced, with a warning, on smaller clusters).
    pub replication_factor: i32,
}

impl TopicConfig {
    fn new(name: &str, partitions: i32) -> Self {
        TopicConfig {
            name: name.to_owned(),
            partitions,
            replication_factor: 3,
        }
    }
}

/// The topics events are written to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TopicsConfig {
    /// Product views (default `product-views`, 10 partitions).
    pub product_view: TopicConfig,
    /// Cart changes (default `cart-events`, 10 partitions).
    pub cart: TopicConfig,
    /// Orders (default `purchases`, 10 partitions).
    pub purchase: TopicConfig,
    /// Searches (default `search-events`, 10 partitions).
    pub search: TopicConfig,
    /// Events rejected by validation (default `events-dlq`, 3 partitions).
    pub dead_letter: TopicConfig,
    /// Custom events: anything outside the four e-commerce types, such as Segment
    /// `page` calls or GA4 events without a mapping (default `custom-events`, 10
    /// partitions).
    pub custom: TopicConfig,
}

impl Default for TopicsConfig {
    fn default() -> Self {
        TopicsConfig {
            product_view: TopicConfig::new("product-views", 10),
            cart: TopicConfig::new("cart-events", 10),
            purchase: TopicConfig::new("purchases", 10),
            search: TopicConfig::new("search-events", 10),
            dead_letter: TopicConfig::new("events-dlq", 3),
            custom: TopicConfig::new("custom-events", 10),
        }
    }
}

impl TopicsConfig {
    /// The topic of an event kind.
    pub fn for_kind(&self, kind: EventKind) -> &TopicConfig {
        match kind {
            EventKind::ProductView => &self.product_view,
            EventKind::Cart => &self.cart,
            EventKind::Purchase => &self.purchase,
            EventKind::Search => &self.search,
        }
    }

    /// Every topic with its configuration key, event topics first.
    pub fn all(&self) -> [(&'static str, &TopicConfig); 6] {
        [
            ("topics.product_view", &self.product_view),
            ("topics.cart", &self.cart),
            ("topics.purchase", &self.purchase),
            ("topics.search", &self.search),
            ("topics.dead_letter", &self.dead_letter),
            ("topics.custom", &self.custom),
        ]
    }
}

/// Limits on events and batches (see [`Limits`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Largest event, in bytes.
    pub max_event_bytes: usize,
    /// Largest batch body after decompression, in bytes.
    pub max_batch_bytes: usize,
    /// Most events per batch.
    pub max_batch_events: usize,
    /// Deepest JSON nesting in an event (the event object is level 1).
    pub max_depth: usize,
    /// How far in the future a `timestamp` may be, in seconds.
    pub max_future_skew_secs: u64,
    /// How far in the past a `timestamp` may be, in seconds.
    pub max_past_age_secs: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        let limits = Limits::default();
        LimitsConfig {
            max_event_bytes: limits.max_event_bytes,
            max_batch_bytes: limits.max_batch_bytes,
            max_batch_events: limits.max_batch_events,
            max_depth: limits.max_depth,
            max_future_skew_secs: limits.max_future_skew.as_secs(),
            max_past_age_secs: limits.max_past_age.as_secs(),
        }
    }
}

/// Bounds of the in-memory queue; a submission that would exceed either is refused
/// with [`Error::QueueFull`](crate::Error::QueueFull).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueConfig {
    /// Most events waiting to be handed to the producer.
    pub max_events: usize,
    /// Most payload bytes waiting to be handed to the producer.
    pub max_bytes: usize,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            max_events: 100_000,
            max_bytes: 64 * 1024 * 1024,
        }
    }
}

/// Dead-letter handling of rejected events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeadLetterConfig {
    /// Whether rejected events are written to the dead-letter topic.
    pub enabled: bool,
    /// Longest payload copied into a dead-letter record, in bytes; longer ones are cut
    /// and marked with the header `payload_truncated: true`.
    pub max_payload_bytes: usize,
}

impl Default for DeadLetterConfig {
    fn default() -> Self {
        DeadLetterConfig {
            enabled: true,
            max_payload_bytes: 64 * 1024,
        }
    }
}

/// Which buffer holds accepted events until Kafka acknowledges them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum BufferType {
    /// Memory only (the bounded queue and the producer client's queue): fastest, but a
    /// crash loses what Kafka has not acknowledged yet.
    #[default]
    Memory,
    /// The segmented log on disk ([`LogBuffer`](crate::buffer::LogBuffer)).
    Log,
    /// The sled embedded database on disk (`SledBuffer`), built only with the cargo
    /// feature `sled-buffer`; without it, validation refuses this type.
    Sled,
}

/// The refusal of `buffer.type = "sled"` by a build without the engine.
pub(crate) fn sled_not_built() -> ConfigError {
    ConfigError::new(
        "buffer.type",
        "is `sled`, but this build does not include the sled engine: it is behind the \
         cargo feature `sled-buffer` (of ingest-core, and of edge-agent: \
         `cargo build -p edge-agent --features sled-buffer`); use `log`, the recommended \
         disk engine, or rebuild with the feature",
    )
}

/// When writes to the disk buffer reach stable storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum BufferSync {
    /// Before an append returns (concurrent submissions share one `fdatasync`).
    Always,
    /// Every append is on stable storage at most `buffer.sync_interval_ms` after it
    /// returned, also when no append follows (the buffer's own thread syncs): a power
    /// loss forgets at most the last interval's appends.
    #[default]
    Interval,
    /// When the operating system writes back; survives a process crash, not a power loss.
    Never,
}

/// What happens to accepted events when the disk buffer is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum WhenFull {
    /// Hold them in the queue until space frees up (for at most
    /// `buffer.full_timeout_ms`); the queue fills and submissions are refused with
    /// [`Error::QueueFull`](crate::Error::QueueFull): back-pressure to the caller.
    #[default]
    Block,
    /// Drop them at once, count them in `ingest_buffer_dropped_total{reason="full"}`,
    /// and fail their receipts; submissions keep being accepted.
    DropNewest,
}

/// The buffer between the queue and Kafka.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BufferConfig {
    /// `memory` (default), `log` (disk, recommended) or `sled` (disk).
    #[serde(rename = "type")]
    pub kind: BufferType,
    /// Directory of a disk buffer (required for `log` and `sled`); created if missing.
    /// One ingestor per directory.
    pub dir: Option<std::path::PathBuf>,
    /// Most bytes the disk buffer may hold, in bytes.
    pub max_bytes: u64,
    /// Size at which the `log` engine starts a new segment file, in bytes.
    pub segment_bytes: u64,
    /// When appends reach stable storage: `always`, `interval` or `never`.
    pub sync: BufferSync,
    /// The interval of `sync = "interval"`, in milliseconds.
    pub sync_interval_ms: u64,
    /// What to do when the disk buffer is full: `block` or `drop_newest`.
    pub when_full: WhenFull,
    /// With `when_full = "block"`: how long accepted events wait for space before their
    /// receipts fail, in milliseconds.
    pub full_timeout_ms: u64,
}

impl Default for BufferConfig {
    fn default() -> Self {
        BufferConfig {
            kind: BufferType::Memory,
            dir: None,
            max_bytes: 1 << 30,
            segment_bytes: 64 << 20,
            sync: BufferSync::Interval,
            sync_interval_ms: 100,
            when_full: WhenFull::Block,
            full_timeout_ms: 30_000,
        }
    }
}

/// Metrics of one ingestor (see `docs/operations.md`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// The value of the `ingestor` label on every metric series of this ingestor, so
    /// that ingestors sharing a process (and its metrics recorder) keep apart. Empty
    /// (the default) means `ingestor-N`, N counting the ingestors started in the
    /// process from 1: `ingestor-1` for the usual single one.
    pub instance: String,
    /// How often librdkafka reports its statistics (broker round-trip times, queue
    /// depths, batch sizes, errors per broker), exported as `ingest_kafka_*` metrics,
    /// in milliseconds; 0 turns them off.
    pub statistics_interval_ms: u64,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig {
            instance: String::new(),
            statistics_interval_ms: 10_000,
        }
    }
}

/// The circuit breaker around delivery (see `docs/operations.md`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BreakerConfig {
    /// First wait before probing an unreachable cluster, in milliseconds; doubled after
    /// every failed probe.
    pub probe_min_backoff_ms: u64,
    /// Longest wait between probes, in milliseconds.
    pub probe_max_backoff_ms: u64,
    /// How long one probe (a metadata request) may take, in milliseconds.
    pub probe_timeout_ms: u64,
    /// Open when records wait in the producer and none has been delivered for this
    /// long, in milliseconds.
    pub stall_timeout_ms: u64,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            probe_min_backoff_ms: 500,
            probe_max_backoff_ms: 30_000,
            probe_timeout_ms: 5_000,
            stall_timeout_ms: 10_000,
        }
    }
}

impl IngestConfig {
    /// Reads a configuration from TOML text (what a file or a binding passes): the
    /// defaults, then the keys the text sets, through the workspace's one layering
    /// mechanism ([`ingest_common::Layers`]). Does not validate: call
    /// [`validate`](Self::validate) (or build an ingestor) next.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] for text that does not parse, an unknown key or a value of the
    /// wrong type, naming the key.
    pub fn from_toml(text: &str) -> Result<IngestConfig, ConfigError> {
        Ok(ingest_common::Layers::new()?.toml(text)?.load()?.config)
    }

    /// Reads a configuration from JSON text (an object with the same keys as the TOML
    /// file), as [`from_toml`](Self::from_toml) does.
    ///
    /// # Errors
    ///
    /// As [`from_toml`](Self::from_toml).
    pub fn from_json(text: &str) -> Result<IngestConfig, ConfigError> {
        Ok(ingest_common::Layers::new()?.json(text)?.load()?.config)
    }

    /// A copy safe to print or log: secret-looking `kafka.properties` values (see
    /// [`is_secret_property`]) are replaced by [`REDACTED`].
    #[must_use]
    pub fn redacted(&self) -> IngestConfig {
        IngestConfig {
            kafka: self.kafka.redacted(),
            ..self.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_match_the_product_contract() {
        let settings = IngestConfig::default()
            .validate()
            .expect("defaults validate");
        assert_eq!(settings.topic(EventKind::ProductView), "product-views");
        assert_eq!(settings.topic(EventKind::Cart), "cart-events");
        assert_eq!(settings.topic(EventKind::Purchase), "purchases");
        assert_eq!(settings.topic(EventKind::Search), "search-events");
        assert_eq!(&*settings.dead_letter_topic, "events-dlq");
        assert_eq!(settings.producer.get("enable.idempotence"), Some("true"));
        assert_eq!(settings.producer.get("acks"), Some("all"));
        assert_eq!(settings.producer.get("compression.type"), Some("lz4"));
        assert_eq!(settings.limits, Limits::default());
    }

    #[test]
    fn toml_round_trip_and_unknown_keys() {
        let text = r#"
            source = "shop-1"
            [kafka]
            brokers = "a:1,b:2"
            compression = "zstd"
            [kafka.properties]
            "security.protocol" = "SASL_SSL"
            [topics.cart]
            name = "carts"
            partitions = 4
            replication_factor = 1
        "#;
        let config: IngestConfig = toml::from_str(text).expect("parses");
        let settings = config.validate().expect("valid");
        assert_eq!(settings.topic(EventKind::Cart), "carts");
        assert_eq!(settings.producer.get("security.protocol"), Some("SASL_SSL"));
        assert_eq!(settings.producer.get("compression.type"), Some("zstd"));
        assert_eq!(settings.source.as_deref(), Some("shop-1"));

        let err = toml::from_str::<IngestConfig>("[kafka]\nlinger = 5").expect_err("unknown key");
        assert!(err.to_string().contains("unknown field"), "{err}");
    }

    #[test]
    fn rejects_weakened_guarantees_and_owned_properties() {
        for (key, expect) in [
            ("enable.idempotence", "always idempotent"),
            ("acks", "acks=all"),
            ("linger.ms", "kafka.linger_ms"),
        ] {
            let mut config = IngestConfig::default();
            config
                .kafka
                .properties
                .insert(key.to_owned(), "1".to_owned());
            let err = config.validate().expect_err(key);
            assert_eq!(err.key(), format!("kafka.properties.{key}"));
            assert!(err.to_string().contains(expect), "{err}");
        }
    }

    #[test]
    fn secrets_never_show_in_debug_or_redacted_copies() {
        let mut config = IngestConfig::default();
        for (key, value) in [
            ("sasl.password", "hunter2"),
            ("ssl.key.password", "k3y"),
            ("sasl.oauthbearer.client.secret", "s3cret"),
            ("sasl.username", "shop"),
        ] {
            config
                .kafka
                .properties
                .insert(key.to_owned(), value.to_owned());
        }
        let settings = config.validate().expect("valid");
        for shown in [
            format!("{config:?}"),
            format!("{settings:?}"),
            toml::to_string(&config.redacted()).expect("toml"),
        ] {
            for secret in ["hunter2", "k3y", "s3cret"] {
                assert!(!shown.contains(secret), "{secret} leaked in {shown}");
            }
            assert!(shown.contains("shop"), "non-secrets stay visible");
        }
        // The producer still gets the real values.
        assert_eq!(settings.producer.get("sasl.password"), Some("hunter2"));
    }

    #[test]
    fn toml_and_json_text_load_through_the_shared_layers() {
        let from_toml = IngestConfig::from_toml(
            "source = \"shop\"\n[kafka]\nlinger_ms = 20\n[kafka.properties]\n\"sasl.username\" = \"u\"\n[buffer]\ntype = \"log\"\ndir = \"/var/spool/x\"\n",
        )
        .expect("toml");
        let from_json = IngestConfig::from_json(
            r#"{"source": "shop", "kafka": {"linger_ms": 20, "properties": {"sasl.username": "u"}},
                "buffer": {"type": "log", "dir": "/var/spool/x"}}"#,
        )
        .expect("json");
        assert_eq!(from_toml, from_json);
        assert_eq!(from_toml.kafka.linger_ms, 20);
        assert_eq!(
            from_toml.topics,
            TopicsConfig::default(),
            "the rest default"
        );
        assert!(from_toml.validate().expect("valid").has_disk_buffer());
        assert_eq!(
            IngestConfig::from_toml("").expect("empty"),
            IngestConfig::default()
        );
        assert_eq!(
            IngestConfig::from_json("{}").expect("empty"),
            IngestConfig::default()
        );

        let err = IngestConfig::from_toml("[kafka]\nlingerms = 1").expect_err("unknown");
        assert_eq!(err.key(), "kafka.lingerms");
        assert!(err.to_string().contains("(from TOML text)"), "{err}");
        let err = IngestConfig::from_json(r#"{"kafka": {"linger_ms": "soon"}}"#).expect_err("type");
        assert_eq!(err.key(), "kafka.linger_ms");
        assert!(err.to_string().contains("(from JSON text)"), "{err}");
        // Layered over the defaults, a partial topic table keeps the default layout.
        let partial = IngestConfig::from_toml("[topics.cart]\nname = \"c\"").expect("partial");
        assert_eq!(
            (
                partial.topics.cart.name.as_str(),
                partial.topics.cart.partitions
            ),
            ("c", 10)
        );
        let err = IngestConfig::from_json("{").expect_err("syntax");
        assert!(err.to_string().starts_with("JSON text: "), "{err}");
    }

    #[test]
    fn every_key_is_documented_and_every_documented_key_exists() {
        let doc = include_str!("../../docs/configuration.md");
        let reference =
            ingest_common::layers::markdown_section(doc, "## Reference", "## Validation rules")
                .expect("the reference section");
        let mut config = IngestConfig::default();
        config.buffer.dir = Some("/set/for/its/key".into());
        let in_code = ingest_common::layers::leaf_keys(&config)
            .into_iter()
            .map(|key| match key.strip_prefix("topics.") {
                // One table documents the six topics.
                Some(rest) => format!("topics.*.{}", rest.split_once('.').map_or(rest, |(_, k)| k)),
                None => key,
            });
        if let Err(drift) =
            ingest_common::layers::check_documented("docs/configuration.md", reference, in_code)
        {
            panic!("{drift}");
        }
    }

    #[test]
    fn the_documented_complete_file_is_the_default() {
        let doc = include_str!("../../docs/configuration.md");
        let section = doc
            .split("## Complete file with every default")
            .nth(1)
            .expect("section");
        let toml_text = section
            .split("```toml")
            .nth(1)
            .and_then(|rest| rest.split("```").next())
            .expect("a toml block");
        let parsed: IngestConfig = toml::from_str(toml_text).expect("parses");
        assert_eq!(parsed, IngestConfig::default());
    }

    #[test]
    fn disk_buffer_needs_a_dir_and_room_for_the_largest_event() {
        let config: IngestConfig = toml::from_str(
            "[buffer]\ntype = \"log\"\ndir = \"/var/spool/ingest\"\nsync = \"always\"\nwhen_full = \"drop_newest\"",
        )
        .expect("parses");
        let settings = config.validate().expect("valid");
        let disk = settings.disk_buffer.expect("disk buffer");
        assert_eq!(disk.sync, crate::buffer::SyncPolicy::Always);
        assert_eq!(disk.when_full, WhenFull::DropNewest);

        let mut config = IngestConfig::default();
        config.buffer.kind = BufferType::Sled;
        assert_eq!(config.validate().expect_err("dir").key(), "buffer.dir");
        config.buffer.dir = Some("/tmp/x".into());
        config.buffer.max_bytes = 1000;
        assert_eq!(
            config.validate().expect_err("max").key(),
            "buffer.max_bytes"
        );

        let mut config = IngestConfig::default();
        config.buffer.kind = BufferType::Log;
        config.buffer.dir = Some("/tmp/x".into());
        config.buffer.segment_bytes = 1000;
        assert_eq!(
            config.validate().expect_err("segment").key(),
            "buffer.segment_bytes"
        );
        config.buffer.segment_bytes = 1 << 20;
        config.buffer.sync_interval_ms = 0;
        assert_eq!(
            config.validate().expect_err("interval").key(),
            "buffer.sync_interval_ms"
        );

        let mut config = IngestConfig::default();
        config.breaker.probe_max_backoff_ms = 1;
        assert_eq!(
            config.validate().expect_err("backoff").key(),
            "breaker.probe_max_backoff_ms"
        );
        let err = toml::from_str::<IngestConfig>("[buffer]\ntype = \"tape\"").expect_err("type");
        assert!(err.to_string().contains("memory"), "{err}");
    }

    #[test]
    fn the_sled_engine_needs_its_cargo_feature() {
        let config: IngestConfig =
            toml::from_str("[buffer]\ntype = \"sled\"\ndir = \"/var/spool/ingest\"")
                .expect("parses in every build");
        let result = config.validate();
        if cfg!(feature = "sled-buffer") {
            let disk = result.expect("valid").disk_buffer.expect("disk buffer");
            assert_eq!(disk.kind, BufferType::Sled);
        } else {
            let err = result.expect_err("not built in");
            assert_eq!(err.key(), "buffer.type");
            assert!(err.reason().contains("`sled-buffer`"), "{err}");
        }
    }

    #[test]
    fn rejects_bad_topics_and_limits() {
        let mut config = IngestConfig::default();
        config.topics.search.name = "bad topic".to_owned();
        assert_eq!(
            config.validate().expect_err("name").key(),
            "topics.search.name"
        );

        let mut config = IngestConfig::default();
        config.topics.dead_letter.name = "purchases".to_owned();
        assert_eq!(
            config.validate().expect_err("dlq").key(),
            "topics.dead_letter.name"
        );

        let mut config = IngestConfig::default();
        config.topics.cart.partitions = 0;
        assert_eq!(
            config.validate().expect_err("partitions").key(),
            "topics.cart.partitions"
        );

        let mut config = IngestConfig::default();
        config.limits.max_depth = 0;
        assert_eq!(
            config.validate().expect_err("depth").key(),
            "limits.max_depth"
        );

        let mut config = IngestConfig::default();
        config.queue.max_bytes = 1024;
        assert_eq!(
            config.validate().expect_err("queue").key(),
            "queue.max_bytes"
        );

        let mut config = IngestConfig::default();
        config.kafka.linger_ms = config.kafka.message_timeout_ms;
        assert_eq!(
            config.validate().expect_err("linger").key(),
            "kafka.message_timeout_ms"
        );

        let mut config = IngestConfig::default();
        config.kafka.brokers = "a:1,,b:2".to_owned();
        assert_eq!(
            config.validate().expect_err("brokers").key(),
            "kafka.brokers"
        );
    }
}
