//! Configuration in two steps: [`ProcessorConfig`] is what the TOML file, the
//! environment and the command line say (serde, unknown keys rejected); [`Settings`] is
//! the validated, typed value the processor runs with. Validation does no I/O.
//!
//! Layers, each overriding the one before: built-in defaults → TOML file → environment
//! (`PROCESSOR_<SECTION>__<KEY>`, e.g. `PROCESSOR_KAFKA__BROKERS`; top-level keys as
//! `PROCESSOR_LISTEN`) → command-line flags, through the workspace's one mechanism
//! ([`ingest_common::Layers`]): an environment value is read as its key's type, lists
//! comma-separated or as TOML arrays, tables as TOML inline tables.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use ingest_common::secret::{Secret, SecretUrl};
use ingest_common::{ConfigError, EnvNames, Layers, Loaded};
use ingest_core::contract;

use crate::error::Error;

pub use ingest_common::secret::mask_url;
pub use ingest_common::Backoff;

mod settings;
#[cfg(test)]
mod tests;

pub use settings::{RegistrySettings, SearchAuth, SearchSettings, Settings};

/// The environment variable prefix of every key.
pub const ENV_PREFIX: &str = "PROCESSOR_";

/// The processor's environment names: `PROCESSOR_SECTION__KEY`.
pub const ENV_NAMES: EnvNames<'static> = EnvNames::new(ENV_PREFIX);

/// The whole configuration file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProcessorConfig {
    /// Address of the HTTP API (analytics, metrics, health).
    pub listen: String,
    /// ISO 4217 code every amount is converted to.
    pub reporting_currency: String,
    /// Kafka consumer group and topics.
    pub kafka: KafkaConfig,
    /// PostgreSQL: rollups, offsets, de-duplication state, catalog and rates.
    pub postgres: PostgresConfig,
    /// Redis: the live view the API reads.
    pub redis: RedisConfig,
    /// When results and offsets are committed.
    pub checkpoint: CheckpointConfig,
    /// De-duplication by `event_id`.
    pub dedup: DedupConfig,
    /// Event-time windows.
    pub windows: WindowsConfig,
    /// Product catalog and currency rates cache.
    pub catalog: CatalogConfig,
    /// Dead-letter topic writes.
    pub dead_letter: DeadLetterConfig,
    /// Sessions per user.
    pub sessions: SessionsConfig,
    /// Recommendations.
    pub recommendations: RecommendationsConfig,
    /// A/B experiments.
    pub experiments: ExperimentsConfig,
    /// Analytics API answers.
    pub api: ApiConfig,
    /// The search index sink (OpenSearch/Elasticsearch).
    pub search: SearchConfig,
    /// What the processor deletes, and when.
    pub pruning: PruningConfig,
    /// The schema registry Avro records' schemas are read from.
    pub schema_registry: SchemaRegistryConfig,
}

impl Default for ProcessorConfig {
    fn default() -> Self {
        ProcessorConfig {
            listen: "127.0.0.1:8090".to_owned(),
            reporting_currency: "EUR".to_owned(),
            kafka: KafkaConfig::default(),
            postgres: PostgresConfig::default(),
            redis: RedisConfig::default(),
            checkpoint: CheckpointConfig::default(),
            dedup: DedupConfig::default(),
            windows: WindowsConfig::default(),
            catalog: CatalogConfig::default(),
            dead_letter: DeadLetterConfig::default(),
            sessions: SessionsConfig::default(),
            recommendations: RecommendationsConfig::default(),
            experiments: ExperimentsConfig::default(),
            api: ApiConfig::default(),
            search: SearchConfig::default(),
            pruning: PruningConfig::default(),
            schema_registry: SchemaRegistryConfig::default(),
        }
    }
}

/// `[schema_registry]`. `Debug` masks a password in the URL.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SchemaRegistryConfig {
    /// Base URL of the registry's Confluent-compatible API (e.g.
    /// `http://registry:8080/apis/ccompat/v7` for Apicurio Registry). Empty: no registry,
    /// and Avro records are dead-lettered (`schema_unavailable`).
    pub url: String,
    /// Time one request to the registry may take (ms).
    pub timeout_ms: u64,
    /// Schemas kept by id.
    pub cache_capacity: usize,
}

impl Default for SchemaRegistryConfig {
    fn default() -> Self {
        SchemaRegistryConfig {
            url: String::new(),
            timeout_ms: 5_000,
            cache_capacity: 1_000,
        }
    }
}

/// `[kafka]`. `Debug` masks secret-looking properties.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaConfig {
    /// Bootstrap servers, `host:port,...`.
    pub brokers: String,
    /// Consumer group id; every processor instance of one deployment uses the same.
    pub group_id: String,
    /// Consumer session timeout (ms): a silent instance loses its partitions after it.
    pub session_timeout_ms: u64,
    /// How often the lag per partition (`processor_partition_lag`) is measured, from
    /// librdkafka's statistics (ms); 0: never.
    pub lag_interval_ms: u64,
    /// Topic names.
    pub topics: TopicsConfig,
    /// Extra librdkafka properties for consumer and producer (`security.protocol`,
    /// `sasl.*`, `ssl.*`, ...). Properties the processor's guarantees rest on cannot be
    /// overridden.
    pub properties: BTreeMap<String, String>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            brokers: "127.0.0.1:9092".to_owned(),
            group_id: "processor".to_owned(),
            session_timeout_ms: 10_000,
            lag_interval_ms: 5_000,
            topics: TopicsConfig::default(),
            properties: BTreeMap::new(),
        }
    }
}

/// `[kafka.topics]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TopicsConfig {
    /// Product views.
    pub product_view: String,
    /// Cart changes.
    pub cart: String,
    /// Orders.
    pub purchase: String,
    /// Searches.
    pub search: String,
    /// Where undecodable events go.
    pub dead_letter: String,
}

impl Default for TopicsConfig {
    fn default() -> Self {
        TopicsConfig {
            product_view: "product-views".to_owned(),
            cart: "cart-events".to_owned(),
            purchase: "purchases".to_owned(),
            search: "search-events".to_owned(),
            dead_letter: "events-dlq".to_owned(),
        }
    }
}

/// `[postgres]`. `Debug` masks the password of the URL.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PostgresConfig {
    /// Connection URL, `postgres://user:password@host:port/database`. TLS as libpq:
    /// `?sslmode=disable|prefer|require|verify-ca|verify-full` (default `prefer`) and
    /// `sslrootcert=/path/ca.pem` (PEM; default: the system's roots for `verify-*`).
    pub url: String,
    /// Connect timeout (ms).
    pub connect_timeout_ms: u64,
}

impl Default for PostgresConfig {
    fn default() -> Self {
        PostgresConfig {
            url: "postgres://postgres@127.0.0.1:5432/ingest".to_owned(),
            connect_timeout_ms: 5_000,
        }
    }
}

/// `[redis]`. `Debug` masks the password of the URL.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisConfig {
    /// Connection URL, `redis://[:password@]host:port/db`, or `rediss://…` for TLS
    /// (the server's certificate is checked against the system's roots, or `ca_file`).
    pub url: String,
    /// PEM file of the CA certificates trusted for a `rediss://` URL instead of the
    /// system's roots (a private CA); empty: the system's roots.
    pub ca_file: String,
    /// Prefix of every key the processor writes.
    pub key_prefix: String,
    /// How long a minute's keys live (minutes); at least the largest API window (60).
    pub retention_minutes: u64,
    /// How long a command may wait for Redis's reply before it counts as a connection
    /// failure (retried), in milliseconds.
    pub response_timeout_ms: u64,
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            url: "redis://127.0.0.1:6379/0".to_owned(),
            ca_file: String::new(),
            key_prefix: "processor".to_owned(),
            retention_minutes: 120,
            response_timeout_ms: 5_000,
        }
    }
}

/// `[checkpoint]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CheckpointConfig {
    /// Interval between checkpoints (ms).
    pub interval_ms: u64,
    /// Events held between checkpoints at most; reaching it checkpoints early.
    pub max_pending_events: usize,
    /// Bytes of record values (events and dead letters) held between checkpoints at
    /// most; reaching it checkpoints early. Bounds the memory a batch of large records
    /// takes (decoded events take about three times their bytes).
    pub max_pending_bytes: usize,
    /// Records a checkpoint may dead-letter as `unstorable` after PostgreSQL refused
    /// them (isolated one by one); a checkpoint that would dead-letter more stops the
    /// processor instead: so many refusals point at the database, not at the records.
    pub max_isolated_records: usize,
    /// Log written for a partition number's users' state since its last snapshot, at
    /// least, before the next log row is a snapshot (KiB; the log may also grow to the
    /// snapshot's own size). Smaller: faster loads after a rebalance, more rewriting.
    pub user_state_snapshot_min_kib: usize,
    /// Partition groups (1..=64): partition `p` of every topic belongs to group
    /// `p % groups`, and each group checkpoints on its own PostgreSQL connection, side
    /// by side with the others.
    pub groups: usize,
    /// Wait after a failed checkpoint before the next attempt, doubled per failure,
    /// with jitter (ms).
    pub initial_backoff_ms: u64,
    /// Cap of that wait (ms).
    pub max_backoff_ms: u64,
}

impl Default for CheckpointConfig {
    fn default() -> Self {
        CheckpointConfig {
            interval_ms: 1_000,
            max_pending_events: 50_000,
            max_pending_bytes: 64 << 20,
            max_isolated_records: 100,
            user_state_snapshot_min_kib: 1024,
            groups: 2,
            initial_backoff_ms: 200,
            max_backoff_ms: 10_000,
        }
    }
}

/// `[dedup]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DedupConfig {
    /// How long an event's id is remembered to catch a resend: minutes of stream time
    /// (the partition's watermark) after the minute it was counted in.
    pub window_minutes: u64,
    /// Ids remembered per partition at most; past it the oldest minutes are forgotten
    /// before their window ends (about 40 bytes of memory each).
    pub max_ids_per_partition: usize,
}

impl Default for DedupConfig {
    fn default() -> Self {
        DedupConfig {
            window_minutes: 10,
            max_ids_per_partition: 500_000,
        }
    }
}

/// `[windows]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WindowsConfig {
    /// How long after its minute ends an event is still counted (seconds of event time,
    /// measured against the partition's watermark); later events are counted as late.
    pub allowed_lateness_secs: u64,
}

impl Default for WindowsConfig {
    fn default() -> Self {
        WindowsConfig {
            allowed_lateness_secs: 300,
        }
    }
}

/// `[catalog]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CatalogConfig {
    /// Time to live of the cached catalog and rates (seconds); then they are reloaded.
    pub refresh_secs: u64,
    /// Products held in the cache at most; more are not loaded (and count as missing).
    pub max_products: usize,
}

impl Default for CatalogConfig {
    fn default() -> Self {
        CatalogConfig {
            refresh_secs: 60,
            max_products: 1_000_000,
        }
    }
}

/// `[dead_letter]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeadLetterConfig {
    /// Wait after a failed attempt to produce dead letters (ms), doubled per attempt
    /// (they stay queued in PostgreSQL meanwhile).
    pub initial_backoff_ms: u64,
    /// Cap of that wait (ms).
    pub max_backoff_ms: u64,
    /// Time one attempt may take (ms).
    pub timeout_ms: u64,
}

impl Default for DeadLetterConfig {
    fn default() -> Self {
        DeadLetterConfig {
            initial_backoff_ms: 100,
            max_backoff_ms: 5_000,
            timeout_ms: 30_000,
        }
    }
}

/// `[sessions]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SessionsConfig {
    /// Inactivity (seconds of event time) after which a user's next event starts a new
    /// session.
    pub inactivity_timeout_secs: u64,
    /// How long a user's event times are kept for sessions (minutes of event time, from
    /// the user's newest event).
    pub retention_minutes: u64,
    /// Event times kept per user at most (the newest).
    pub max_events_per_user: usize,
}

impl Default for SessionsConfig {
    fn default() -> Self {
        SessionsConfig {
            inactivity_timeout_secs: 1_800,
            retention_minutes: 1_440,
            max_events_per_user: 1_000,
        }
    }
}

/// `[recommendations]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RecommendationsConfig {
    /// Recent distinct products kept per user, viewed and bought each.
    pub recent_products: usize,
    /// Products per recommendation answer and published record.
    pub top_n: usize,
    /// Most recent other products a viewed or bought product is paired with: bounds the
    /// pair counts each event writes (at most `recent_products`).
    pub pair_window: usize,
    /// Distinct products of one order (its first, in item order) that are paired with
    /// each other and with recent purchases: bounds an order's co-purchase pairs to
    /// `n·(n−1) + 2·n·pair_window`, whatever its size.
    pub order_items_paired: usize,
    /// Partners per product (by count) that recommendations draw on: the item-to-item
    /// neighbour list of each product, so that the cost of a user's recommendations does
    /// not grow with the catalog.
    pub partners_per_product: usize,
    /// Topic the recommendations of recently active users are published to, keyed by
    /// user; empty: not published.
    pub topic: String,
    /// A user's recommendations are published at most once per this many seconds (the
    /// users active since the last round, all at once).
    pub publish_interval_secs: u64,
    /// Time between folds of the checkpoints' product-pair deltas (`pair_log`) into the
    /// pair counts that recommendations read (ms): how far recommendations lag counting.
    pub fold_interval_ms: u64,
    /// Distinct product pairs one fold adds at most (memory bound of a fold, about 100
    /// bytes each); more pending deltas are folded at once in the next round.
    pub fold_max_pairs: usize,
}

impl Default for RecommendationsConfig {
    fn default() -> Self {
        RecommendationsConfig {
            recent_products: 20,
            top_n: 10,
            pair_window: 5,
            order_items_paired: 25,
            partners_per_product: 50,
            topic: "user-recommendations".to_owned(),
            publish_interval_secs: 30,
            fold_interval_ms: 10_000,
            fold_max_pairs: 500_000,
        }
    }
}

/// `[experiments]`
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExperimentsConfig {
    /// The experiment flags counted per variant; others in `context.experiments` are
    /// ignored. Empty: every flag a client sends. Listing the shop's flags bounds the
    /// experiment sets per minute, whatever public clients send.
    pub flags: Vec<String>,
}

/// `[api]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    /// Entries in each top list (products, searches).
    pub top_n: usize,
    /// HTTP connections served at once; further clients wait to be accepted.
    pub max_connections: usize,
    /// Time a client has to send its request headers (ms).
    pub header_read_timeout_ms: u64,
    /// Time requests in flight have to be answered after a stop signal (ms); new
    /// connections are refused from the signal on, and those still open then are cut.
    pub drain_timeout_ms: u64,
    /// Analytics requests computed at once; more are answered 503 with `Retry-After`.
    pub max_concurrent_queries: usize,
    /// (flag, variant) pairs an analytics answer reports at most (the first in byte
    /// order); the answer's `experiment_pairs` says how many the window has.
    pub max_experiment_pairs: usize,
    /// PostgreSQL connections the recommendations endpoint uses at most.
    pub postgres_connections: usize,
    /// Time one statement of the recommendations endpoint may take (ms); then it is
    /// cancelled and the request answered 503 with `Retry-After`.
    pub statement_timeout_ms: u64,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            top_n: 10,
            max_connections: 1_024,
            header_read_timeout_ms: 10_000,
            drain_timeout_ms: 10_000,
            max_concurrent_queries: 8,
            max_experiment_pairs: 100,
            postgres_connections: 4,
            statement_timeout_ms: 2_000,
        }
    }
}

/// `[pruning]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PruningConfig {
    /// How long per-minute rollups stay in PostgreSQL (minutes); at least
    /// `redis.retention_minutes`, since the live view is rebuilt from them.
    pub rollup_retention_minutes: u64,
    /// Product pairs kept per kind (co-view, co-purchase) at most; the least counted are
    /// deleted first.
    pub max_product_pairs: u64,
    /// Time between pruning runs (s); the de-duplication state is pruned then too.
    pub interval_secs: u64,
}

impl Default for PruningConfig {
    fn default() -> Self {
        PruningConfig {
            rollup_retention_minutes: 43_200,
            max_product_pairs: 1_000_000,
            interval_secs: 60,
        }
    }
}

/// `[search]`. `Debug` masks the password and the API key.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SearchConfig {
    /// Whether events are indexed. Off by default. The indexer reads the event topics
    /// with a consumer group of its own, apart from the analytics.
    pub enabled: bool,
    /// The indexer's consumer group; empty: `kafka.group_id` followed by `-search`.
    pub group_id: String,
    /// The index's REST API, `http[s]://host[:port][/prefix]` (port 9200 by default).
    pub url: String,
    /// User of HTTP basic authentication, with `password`; empty: none.
    pub username: String,
    /// Password of `username` (masked in `--check-config` and logs).
    pub password: String,
    /// API key, sent as `Authorization: ApiKey <key>` (the base64 `id:key` form the
    /// cluster hands out; masked); empty: none. Exclusive with `username`.
    pub api_key: String,
    /// PEM file of CA certificates trusted for an `https` URL, besides the system's
    /// roots; empty: the system's roots only.
    pub ca_file: String,
    /// Whether request bodies are sent gzip-compressed (`Content-Encoding: gzip`).
    pub gzip: bool,
    /// Index name (created with the processor's mapping if missing).
    pub index: String,
    /// Documents per `_bulk` request at most.
    pub batch_size: usize,
    /// Bytes of documents per `_bulk` request at most (a single larger document is sent
    /// alone); keep it well below the index's `http.max_content_length`.
    pub max_bulk_bytes: usize,
    /// The longest a document read from Kafka waits for a fuller `_bulk` request (ms).
    pub flush_interval_ms: u64,
    /// Time one request may take (ms).
    pub request_timeout_ms: u64,
    /// Wait after a failed request, doubled per failure, with jitter (ms).
    pub initial_backoff_ms: u64,
    /// Cap of that wait (ms).
    pub max_backoff_ms: u64,
    /// No longer used (documents wait in Kafka, not in PostgreSQL); accepted so that
    /// older files still load, with a warning.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_queued_documents: Option<u64>,
}

impl Default for SearchConfig {
    fn default() -> Self {
        SearchConfig {
            enabled: false,
            group_id: String::new(),
            url: "http://127.0.0.1:9200".to_owned(),
            username: String::new(),
            password: String::new(),
            api_key: String::new(),
            ca_file: String::new(),
            gzip: true,
            index: "ecommerce-events".to_owned(),
            batch_size: 1_000,
            max_bulk_bytes: 10 << 20,
            flush_interval_ms: 1_000,
            request_timeout_ms: 30_000,
            initial_backoff_ms: 500,
            max_backoff_ms: 30_000,
            max_queued_documents: None,
        }
    }
}

/// Command-line overrides (the last layer).
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--listen`
    pub listen: Option<String>,
    /// `--brokers`
    pub brokers: Option<String>,
    /// `--postgres`
    pub postgres: Option<String>,
    /// `--redis`
    pub redis: Option<String>,
}

impl Overrides {
    /// Adds the flags given as the last layer.
    fn apply(
        &self,
        layers: Layers<ProcessorConfig>,
    ) -> Result<Layers<ProcessorConfig>, ConfigError> {
        let mut layers = layers;
        for (key, flag, value) in [
            ("listen", "--listen", &self.listen),
            ("kafka.brokers", "--brokers", &self.brokers),
            ("postgres.url", "--postgres", &self.postgres),
            ("redis.url", "--redis", &self.redis),
        ] {
            if let Some(value) = value {
                layers = layers.flag(key, flag, value)?;
            }
        }
        Ok(layers)
    }
}

impl ProcessorConfig {
    /// Builds the configuration from its layers: defaults, then `file` (TOML text), then
    /// the `PROCESSOR_*` variables of `env`, then `overrides`.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for bad TOML, an unknown key or a value of the wrong type.
    pub fn layered(
        file: Option<&str>,
        env: impl IntoIterator<Item = (String, String)>,
        overrides: &Overrides,
    ) -> Result<ProcessorConfig, Error> {
        let mut layers = Layers::<ProcessorConfig>::new()?;
        if let Some(text) = file {
            layers = layers.toml(text)?;
        }
        Ok(overrides.apply(layers.env(ENV_NAMES, env)?)?.load()?.config)
    }

    /// Builds the configuration from its layers: defaults, then the file at `file`
    /// (TOML, or JSON when its name ends in `.json`), then the `PROCESSOR_*` variables
    /// of `env`, then `overrides`, keeping where each value came from (for
    /// `--check-config` and error messages).
    ///
    /// # Errors
    ///
    /// A file that cannot be read or parsed, a variable whose value does not parse, an
    /// unknown key or a value of the wrong type, naming the key and its origin.
    pub fn load(
        file: Option<&std::path::Path>,
        env: impl IntoIterator<Item = (String, String)>,
        overrides: &Overrides,
    ) -> Result<Loaded<ProcessorConfig>, ConfigError> {
        let mut layers = Layers::<ProcessorConfig>::new()?;
        if let Some(path) = file {
            layers = layers.file(path)?;
        }
        overrides.apply(layers.env(ENV_NAMES, env)?)?.load()
    }

    /// A copy safe to print: passwords in URLs and connection strings (user
    /// information, `password=` query parameters and `key=value` pairs, see
    /// [`mask_url`]) replaced by `****`, librdkafka properties with secret-looking names
    /// (the workspace's one list, [`ingest_common::secret::is_secret_name`]) by
    /// `<redacted>`.
    #[must_use]
    pub fn masked(&self) -> ProcessorConfig {
        let mut masked = self.clone();
        masked.postgres = masked.postgres.masked();
        masked.redis = masked.redis.masked();
        masked.search = masked.search.masked();
        masked.kafka = masked.kafka.masked();
        masked.schema_registry.url = mask_url(&masked.schema_registry.url);
        masked
    }

    /// The configuration as TOML with secrets masked (see [`masked`](Self::masked)).
    pub fn masked_toml(&self) -> String {
        toml::to_string_pretty(&self.masked()).unwrap_or_else(|e| format!("# cannot print: {e}\n"))
    }
}

impl KafkaConfig {
    fn masked(&self) -> KafkaConfig {
        let mut masked = self.clone();
        ingest_common::secret::mask_properties(masked.properties.iter_mut());
        masked
    }
}

impl std::fmt::Debug for KafkaConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown = self.masked();
        f.debug_struct("KafkaConfig")
            .field("brokers", &shown.brokers)
            .field("group_id", &shown.group_id)
            .field("session_timeout_ms", &shown.session_timeout_ms)
            .field("lag_interval_ms", &shown.lag_interval_ms)
            .field("topics", &shown.topics)
            .field("properties", &shown.properties)
            .finish()
    }
}

impl PostgresConfig {
    fn masked(&self) -> PostgresConfig {
        PostgresConfig {
            url: mask_url(&self.url),
            ..self.clone()
        }
    }
}

impl std::fmt::Debug for SchemaRegistryConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SchemaRegistryConfig")
            .field("url", &mask_url(&self.url))
            .field("timeout_ms", &self.timeout_ms)
            .field("cache_capacity", &self.cache_capacity)
            .finish()
    }
}

impl std::fmt::Debug for PostgresConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresConfig")
            .field("url", &mask_url(&self.url))
            .field("connect_timeout_ms", &self.connect_timeout_ms)
            .finish()
    }
}

impl RedisConfig {
    fn masked(&self) -> RedisConfig {
        RedisConfig {
            url: mask_url(&self.url),
            ..self.clone()
        }
    }
}

impl std::fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &mask_url(&self.url))
            .field("ca_file", &self.ca_file)
            .field("key_prefix", &self.key_prefix)
            .field("retention_minutes", &self.retention_minutes)
            .field("response_timeout_ms", &self.response_timeout_ms)
            .finish()
    }
}

impl SearchConfig {
    fn masked(&self) -> SearchConfig {
        let mut masked = self.clone();
        masked.url = mask_url(&masked.url);
        for secret in [&mut masked.password, &mut masked.api_key] {
            if !secret.is_empty() {
                ingest_common::secret::REDACTED.clone_into(secret);
            }
        }
        masked
    }
}

impl std::fmt::Debug for SearchConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown = self.masked();
        f.debug_struct("SearchConfig")
            .field("enabled", &shown.enabled)
            .field("url", &shown.url)
            .field("username", &shown.username)
            .field("password", &shown.password)
            .field("api_key", &shown.api_key)
            .field("ca_file", &shown.ca_file)
            .field("gzip", &shown.gzip)
            .field("index", &shown.index)
            .field("batch_size", &shown.batch_size)
            .field("max_bulk_bytes", &shown.max_bulk_bytes)
            .field("flush_interval_ms", &shown.flush_interval_ms)
            .field("request_timeout_ms", &shown.request_timeout_ms)
            .field("initial_backoff_ms", &shown.initial_backoff_ms)
            .field("max_backoff_ms", &shown.max_backoff_ms)
            .field("max_queued_documents", &shown.max_queued_documents)
            .finish()
    }
}
