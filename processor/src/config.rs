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

use ingest_common::secret::Secret;
use ingest_common::{ConfigError, EnvNames, Layers, Loaded};
use ingest_core::contract;

use crate::error::Error;

pub use ingest_common::secret::mask_url;
pub use ingest_common::Backoff;

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
        }
    }
}

/// `[kafka]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaConfig {
    /// Bootstrap servers, `host:port,...`.
    pub brokers: String,
    /// Consumer group id; every processor instance of one deployment uses the same.
    pub group_id: String,
    /// Consumer session timeout (ms): a silent instance loses its partitions after it.
    pub session_timeout_ms: u64,
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

/// `[postgres]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PostgresConfig {
    /// Connection URL, `postgres://user:password@host:port/database`.
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

/// `[redis]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisConfig {
    /// Connection URL, `redis://[:password@]host:port/db`.
    pub url: String,
    /// Prefix of every key the processor writes.
    pub key_prefix: String,
    /// How long a minute's keys live (minutes); at least the largest API window (60).
    pub retention_minutes: u64,
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            url: "redis://127.0.0.1:6379/0".to_owned(),
            key_prefix: "processor".to_owned(),
            retention_minutes: 120,
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

/// `[search]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SearchConfig {
    /// Whether counted events are indexed. Off by default: with it on, every checkpoint
    /// also queues one document per new event in PostgreSQL.
    pub enabled: bool,
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
    /// How often the queue is looked at without a checkpoint waking the sink (ms).
    pub flush_interval_ms: u64,
    /// Time one request may take (ms).
    pub request_timeout_ms: u64,
    /// Wait after a failed request, doubled per failure, with jitter (ms).
    pub initial_backoff_ms: u64,
    /// Cap of that wait (ms).
    pub max_backoff_ms: u64,
    /// Documents queued at most while the index is unreachable; the oldest beyond it are
    /// dropped and counted.
    pub max_queued_documents: u64,
}

impl Default for SearchConfig {
    fn default() -> Self {
        SearchConfig {
            enabled: false,
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
            max_queued_documents: 1_000_000,
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

    /// A copy safe to print: passwords in URLs replaced by `****`, librdkafka
    /// properties with secret-looking names (the workspace's one list,
    /// [`ingest_common::secret::is_secret_name`]) by `<redacted>`.
    #[must_use]
    pub fn masked(&self) -> ProcessorConfig {
        let mut masked = self.clone();
        masked.postgres.url = mask_url(&masked.postgres.url);
        masked.redis.url = mask_url(&masked.redis.url);
        masked.search.url = mask_url(&masked.search.url);
        for secret in [&mut masked.search.password, &mut masked.search.api_key] {
            if !secret.is_empty() {
                ingest_common::secret::REDACTED.clone_into(secret);
            }
        }
        ingest_common::secret::mask_properties(masked.kafka.properties.iter_mut());
        masked
    }

    /// The configuration as TOML with secrets masked (see [`masked`](Self::masked)).
    pub fn masked_toml(&self) -> String {
        toml::to_string_pretty(&self.masked()).unwrap_or_else(|e| format!("# cannot print: {e}\n"))
    }

    /// Validates the configuration into [`Settings`] (no I/O).
    ///
    /// # Errors
    ///
    /// [`Error::Config`] naming the first key whose value is not acceptable.
    pub fn validate(&self) -> Result<Settings, Error> {
        let bad = |key: &str, why: &str| Err(Error::Config(ConfigError::new(key, why)));
        let listen: SocketAddr = match self.listen.parse() {
            Ok(a) => a,
            Err(_) => return bad("listen", "must be an address like 127.0.0.1:8090"),
        };
        let currency = &self.reporting_currency;
        if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_uppercase()) {
            return bad("reporting_currency", "must be an ISO 4217 code such as EUR");
        }
        if self.kafka.brokers.trim().is_empty() {
            return bad("kafka.brokers", "must not be empty");
        }
        if self.kafka.group_id.trim().is_empty() {
            return bad("kafka.group_id", "must not be empty");
        }
        let t = &self.kafka.topics;
        let names = [
            &t.product_view,
            &t.cart,
            &t.purchase,
            &t.search,
            &t.dead_letter,
        ];
        if names.iter().any(|n| n.trim().is_empty()) {
            return bad("kafka.topics", "no topic name may be empty");
        }
        for (i, a) in names.iter().enumerate() {
            if names[i + 1..].contains(a) {
                return bad("kafka.topics", "every topic must have its own name");
            }
        }
        for name in self.kafka.properties.keys() {
            if RESERVED_PROPERTIES.contains(&name.as_str()) {
                return bad(
                    &format!("kafka.properties.{name}"),
                    "is set by the processor (its exactly-once design depends on it)",
                );
            }
        }
        if !self.postgres.url.starts_with("postgres://")
            && !self.postgres.url.starts_with("postgresql://")
        {
            return bad("postgres.url", "must start with postgres://");
        }
        if !self.redis.url.starts_with("redis://") && !self.redis.url.starts_with("rediss://") {
            return bad("redis.url", "must start with redis:// or rediss://");
        }
        if self.redis.key_prefix.is_empty() || self.redis.key_prefix.contains(' ') {
            return bad("redis.key_prefix", "must be a non-empty word");
        }
        if self.redis.retention_minutes < 61 {
            return bad(
                "redis.retention_minutes",
                "must be at least 61 (the 1h window)",
            );
        }
        if self.checkpoint.interval_ms == 0
            || self.checkpoint.max_pending_events == 0
            || self.checkpoint.max_pending_bytes == 0
        {
            return bad(
                "checkpoint",
                "interval_ms, max_pending_events and max_pending_bytes must be > 0",
            );
        }
        if self.checkpoint.initial_backoff_ms == 0
            || self.checkpoint.max_backoff_ms < self.checkpoint.initial_backoff_ms
        {
            return bad(
                "checkpoint",
                "need 0 < initial_backoff_ms <= max_backoff_ms",
            );
        }
        if self.dedup.window_minutes == 0 || self.dedup.window_minutes > 525_600 {
            return bad(
                "dedup.window_minutes",
                "must be between 1 and 525600 (a year)",
            );
        }
        if self.dedup.max_ids_per_partition == 0 {
            return bad("dedup.max_ids_per_partition", "must be > 0");
        }
        if self.catalog.refresh_secs == 0 || self.catalog.max_products == 0 {
            return bad("catalog", "refresh_secs and max_products must be > 0");
        }
        let d = &self.dead_letter;
        if d.initial_backoff_ms == 0 || d.max_backoff_ms < d.initial_backoff_ms {
            return bad(
                "dead_letter",
                "need 0 < initial_backoff_ms <= max_backoff_ms",
            );
        }
        let sessions = &self.sessions;
        if sessions.inactivity_timeout_secs == 0 || sessions.max_events_per_user == 0 {
            return bad(
                "sessions",
                "inactivity_timeout_secs and max_events_per_user must be > 0",
            );
        }
        if sessions.retention_minutes * 60
            < sessions.inactivity_timeout_secs + self.windows.allowed_lateness_secs + 60
        {
            return bad(
                "sessions.retention_minutes",
                "must cover the inactivity timeout plus the allowed lateness and a minute",
            );
        }
        let r = &self.recommendations;
        if r.recent_products == 0 || r.recent_products > 1_000 || r.top_n == 0 || r.top_n > 1_000 {
            return bad(
                "recommendations",
                "recent_products and top_n must be in 1..=1000",
            );
        }
        if r.pair_window == 0 || r.pair_window > r.recent_products {
            return bad(
                "recommendations.pair_window",
                "must be in 1..=recommendations.recent_products",
            );
        }
        if let Some((flag, why)) = self.experiments.flags.iter().find_map(|f| {
            let why = match contract::check_identifier(f) {
                Err(why) => why,
                Ok(()) if f.chars().any(contract::is_forbidden_in_flag) => "must not contain '='",
                Ok(()) => return None,
            };
            Some((f, why))
        }) {
            return bad("experiments.flags", &format!("flag {flag:?} {why}"));
        }
        if r.order_items_paired == 0 || r.order_items_paired > 1_000 {
            return bad("recommendations.order_items_paired", "must be in 1..=1000");
        }
        if r.partners_per_product == 0 || r.partners_per_product > 10_000 {
            return bad(
                "recommendations.partners_per_product",
                "must be in 1..=10000",
            );
        }
        if r.fold_interval_ms == 0 || r.fold_interval_ms > 3_600_000 {
            return bad(
                "recommendations.fold_interval_ms",
                "must be between 1 and 3600000 (an hour)",
            );
        }
        if r.fold_max_pairs == 0 {
            return bad("recommendations.fold_max_pairs", "must be > 0");
        }
        if r.publish_interval_secs == 0 || r.publish_interval_secs > 86_400 {
            return bad(
                "recommendations.publish_interval_secs",
                "must be in 1..=86400",
            );
        }
        if self.api.top_n == 0 || self.api.top_n > 1_000 {
            return bad("api.top_n", "must be in 1..=1000");
        }
        if self.api.max_connections == 0 || self.api.header_read_timeout_ms == 0 {
            return bad(
                "api",
                "max_connections and header_read_timeout_ms must be > 0",
            );
        }
        if self.api.drain_timeout_ms == 0 || self.api.drain_timeout_ms > 600_000 {
            return bad("api.drain_timeout_ms", "must be in 1..=600000");
        }
        if self.api.max_concurrent_queries == 0 || self.api.max_concurrent_queries > 1_024 {
            return bad("api.max_concurrent_queries", "must be in 1..=1024");
        }
        if self.api.max_experiment_pairs == 0 || self.api.max_experiment_pairs > 10_000 {
            return bad("api.max_experiment_pairs", "must be in 1..=10000");
        }
        if self.api.postgres_connections == 0 || self.api.postgres_connections > 64 {
            return bad("api.postgres_connections", "must be in 1..=64");
        }
        if self.api.statement_timeout_ms == 0 || self.api.statement_timeout_ms > 600_000 {
            return bad("api.statement_timeout_ms", "must be in 1..=600000");
        }
        let pruning = &self.pruning;
        if pruning.rollup_retention_minutes < self.redis.retention_minutes
            || pruning.rollup_retention_minutes > i64::MAX as u64 / 60
        {
            return bad(
                "pruning.rollup_retention_minutes",
                "must be at least redis.retention_minutes",
            );
        }
        if pruning.max_product_pairs == 0
            || pruning.max_product_pairs > i64::MAX as u64
            || pruning.interval_secs == 0
        {
            return bad("pruning", "max_product_pairs and interval_secs must be > 0");
        }
        let search = if self.search.enabled {
            Some(self.search.validate()?)
        } else {
            None
        };
        Ok(Settings {
            search,
            rollup_retention_minutes: pruning.rollup_retention_minutes as i64,
            max_product_pairs: pruning.max_product_pairs as i64,
            prune_interval: Duration::from_secs(pruning.interval_secs),
            listen,
            reporting_currency: currency.clone(),
            kafka: self.kafka.clone(),
            postgres_url: self.postgres.url.clone(),
            postgres_connect_timeout: Duration::from_millis(self.postgres.connect_timeout_ms),
            redis_url: self.redis.url.clone(),
            key_prefix: self.redis.key_prefix.clone(),
            retention: Duration::from_secs(self.redis.retention_minutes * 60),
            checkpoint_interval: Duration::from_millis(self.checkpoint.interval_ms),
            max_pending_events: self.checkpoint.max_pending_events,
            max_pending_bytes: self.checkpoint.max_pending_bytes,
            max_isolated_records: self.checkpoint.max_isolated_records,
            checkpoint_backoff: Backoff {
                initial: Duration::from_millis(self.checkpoint.initial_backoff_ms),
                max: Duration::from_millis(self.checkpoint.max_backoff_ms),
            },
            dedup_window_minutes: self.dedup.window_minutes as i64,
            dedup_window: crate::dedup::Window {
                minutes: self.dedup.window_minutes as i64,
                max_ids_per_partition: self.dedup.max_ids_per_partition,
            },
            allowed_lateness_secs: self.windows.allowed_lateness_secs as i64,
            catalog_ttl: Duration::from_secs(self.catalog.refresh_secs),
            max_products: self.catalog.max_products,
            dead_letter_backoff: Backoff {
                initial: Duration::from_millis(d.initial_backoff_ms),
                max: Duration::from_millis(d.max_backoff_ms),
            },
            dead_letter_timeout: Duration::from_millis(d.timeout_ms),
            inactivity_timeout_ms: sessions.inactivity_timeout_secs as i64 * 1_000,
            session_retention_ms: sessions.retention_minutes as i64 * 60_000,
            max_events_per_user: sessions.max_events_per_user,
            recent_products: r.recent_products,
            recommendations_top_n: r.top_n,
            pair_window: r.pair_window,
            order_items_paired: r.order_items_paired,
            experiment_flags: (!self.experiments.flags.is_empty())
                .then(|| self.experiments.flags.iter().cloned().collect()),
            recommendations_partners: r.partners_per_product,
            recommendations_topic: (!r.topic.trim().is_empty()).then(|| r.topic.clone()),
            recommendations_interval: Duration::from_secs(r.publish_interval_secs),
            pair_fold_interval: Duration::from_millis(r.fold_interval_ms),
            pair_fold_max_pairs: r.fold_max_pairs as i64,
            top_n: self.api.top_n,
            max_connections: self.api.max_connections,
            header_read_timeout: Duration::from_millis(self.api.header_read_timeout_ms),
            drain_timeout: Duration::from_millis(self.api.drain_timeout_ms),
            max_concurrent_queries: self.api.max_concurrent_queries,
            max_experiment_pairs: self.api.max_experiment_pairs,
            api_postgres_connections: self.api.postgres_connections,
            api_statement_timeout: Duration::from_millis(self.api.statement_timeout_ms),
        })
    }
}

impl SearchConfig {
    fn validate(&self) -> Result<SearchSettings, Error> {
        let bad = |key: &str, why: &str| {
            Err(Error::Config(ConfigError::new(
                format!("search.{key}"),
                why,
            )))
        };
        let url = match crate::search::IndexUrl::parse(&self.url) {
            Ok(u) => u,
            Err(why) => return bad("url", &why),
        };
        let auth = match (
            self.username.as_str(),
            self.password.as_str(),
            self.api_key.as_str(),
        ) {
            ("", "", "") => None,
            ("", "", key) => Some(SearchAuth::ApiKey(Secret::new(key))),
            (_, _, key) if !key.is_empty() => {
                return bad("api_key", "and search.username are exclusive: set one")
            }
            ("", _, _) => return bad("password", "is set without search.username"),
            (user, _, _) if user.contains(':') => {
                return bad("username", "must not contain ':' (basic authentication)")
            }
            (user, password, _) => Some(SearchAuth::Basic {
                username: user.to_owned(),
                password: Secret::new(password),
            }),
        };
        if self.api_key.chars().any(|c| c.is_control() || c == ' ') {
            return bad("api_key", "must not contain spaces or control characters");
        }
        if auth.is_some() && !url.is_tls() {
            tracing::warn!(
                "search.url is http: the search credentials are sent unencrypted; use https"
            );
        }
        let ca_file = (!self.ca_file.is_empty()).then(|| std::path::PathBuf::from(&self.ca_file));
        let index = &self.index;
        if index.is_empty()
            || index.len() > 255
            || index.starts_with(['-', '_', '+', '.'])
            || index
                .chars()
                .any(|c| c.is_ascii_uppercase() || " \\/*?\"<>|,#:".contains(c))
        {
            return bad(
                "index",
                "must be a lower-case index name without spaces or \\/*?\"<>|,#:",
            );
        }
        if self.batch_size == 0 || self.batch_size > 100_000 {
            return bad("batch_size", "must be in 1..=100000");
        }
        if self.max_bulk_bytes < 1 << 10 {
            return bad("max_bulk_bytes", "must be at least 1024");
        }
        if self.flush_interval_ms == 0 || self.request_timeout_ms == 0 {
            return bad("flush_interval_ms", "and request_timeout_ms must be > 0");
        }
        if self.initial_backoff_ms == 0 || self.max_backoff_ms < self.initial_backoff_ms {
            return bad(
                "initial_backoff_ms",
                "need 0 < initial_backoff_ms <= max_backoff_ms",
            );
        }
        let max_queued_documents = match i64::try_from(self.max_queued_documents) {
            Ok(n) if n >= self.batch_size as i64 => n,
            _ => return bad("max_queued_documents", "must be at least batch_size"),
        };
        Ok(SearchSettings {
            url,
            auth,
            ca_file,
            gzip: self.gzip,
            index: index.clone(),
            batch_size: self.batch_size,
            max_bulk_bytes: self.max_bulk_bytes,
            flush_interval: Duration::from_millis(self.flush_interval_ms),
            request_timeout: Duration::from_millis(self.request_timeout_ms),
            backoff: Backoff {
                initial: Duration::from_millis(self.initial_backoff_ms),
                max: Duration::from_millis(self.max_backoff_ms),
            },
            max_queued_documents,
        })
    }
}

/// The validated `[search]` section.
#[derive(Debug, Clone)]
pub struct SearchSettings {
    /// The index's REST API.
    pub url: crate::search::IndexUrl,
    /// Credentials sent with every request.
    pub auth: Option<SearchAuth>,
    /// Extra CA certificates (PEM) for `https`.
    pub ca_file: Option<std::path::PathBuf>,
    /// Whether request bodies are gzip-compressed.
    pub gzip: bool,
    /// Index name.
    pub index: String,
    /// Documents per bulk request.
    pub batch_size: usize,
    /// Bytes of documents per bulk request at most.
    pub max_bulk_bytes: usize,
    /// Queue look-up interval.
    pub flush_interval: Duration,
    /// Request time-out.
    pub request_timeout: Duration,
    /// Backoff after failures.
    pub backoff: Backoff,
    /// Queue bound.
    pub max_queued_documents: i64,
}

/// How the search sink authenticates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SearchAuth {
    /// HTTP basic authentication.
    Basic {
        /// The user.
        username: String,
        /// The password.
        password: Secret,
    },
    /// `Authorization: ApiKey <key>`.
    ApiKey(Secret),
}

/// librdkafka properties the processor sets itself.
const RESERVED_PROPERTIES: &[&str] = &[
    "bootstrap.servers",
    "group.id",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "isolation.level",
    "partition.assignment.strategy",
    "auto.offset.reset",
];

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The search index sink, when enabled.
    pub search: Option<SearchSettings>,
    /// Rollup retention, minutes.
    pub rollup_retention_minutes: i64,
    /// Product pairs kept per kind.
    pub max_product_pairs: i64,
    /// Time between pruning runs.
    pub prune_interval: Duration,
    /// HTTP API address.
    pub listen: SocketAddr,
    /// ISO 4217 reporting currency.
    pub reporting_currency: String,
    /// Kafka settings as configured.
    pub kafka: KafkaConfig,
    /// PostgreSQL URL.
    pub postgres_url: String,
    /// PostgreSQL connect timeout.
    pub postgres_connect_timeout: Duration,
    /// Redis URL.
    pub redis_url: String,
    /// Redis key prefix.
    pub key_prefix: String,
    /// Redis key lifetime.
    pub retention: Duration,
    /// Checkpoint interval.
    pub checkpoint_interval: Duration,
    /// Events held between checkpoints at most.
    pub max_pending_events: usize,
    /// Bytes of records held between checkpoints at most.
    pub max_pending_bytes: usize,
    /// Records one checkpoint may isolate and dead-letter after PostgreSQL refused them.
    pub max_isolated_records: usize,
    /// Backoff after failed checkpoints.
    pub checkpoint_backoff: Backoff,
    /// De-duplication window, minutes.
    pub dedup_window_minutes: i64,
    /// De-duplication window and cap.
    pub dedup_window: crate::dedup::Window,
    /// Allowed lateness, seconds.
    pub allowed_lateness_secs: i64,
    /// Catalog cache time to live.
    pub catalog_ttl: Duration,
    /// Catalog cache bound.
    pub max_products: usize,
    /// Dead-letter retry backoff.
    pub dead_letter_backoff: Backoff,
    /// Dead-letter attempt timeout.
    pub dead_letter_timeout: Duration,
    /// Session inactivity timeout, ms.
    pub inactivity_timeout_ms: i64,
    /// How long event times are kept for sessions, ms.
    pub session_retention_ms: i64,
    /// Event times kept per user at most.
    pub max_events_per_user: usize,
    /// Recent products kept per user.
    pub recent_products: usize,
    /// Products per recommendation answer.
    pub recommendations_top_n: usize,
    /// Most recent products a new one is paired with.
    pub pair_window: usize,
    /// Distinct products of one order that are paired.
    pub order_items_paired: usize,
    /// The experiment flags counted, when not all are.
    pub experiment_flags: Option<std::collections::BTreeSet<String>>,
    /// Partners per product that recommendations draw on.
    pub recommendations_partners: usize,
    /// Where recommendations are published, if anywhere.
    pub recommendations_topic: Option<String>,
    /// How often recommendations are published (per user at most).
    pub recommendations_interval: Duration,
    /// Time between folds of `pair_log` into `product_pairs`.
    pub pair_fold_interval: Duration,
    /// Distinct pairs one fold adds at most.
    pub pair_fold_max_pairs: i64,
    /// Top list length.
    pub top_n: usize,
    /// HTTP connections at once.
    pub max_connections: usize,
    /// HTTP request header timeout.
    pub header_read_timeout: Duration,
    /// Time HTTP requests in flight have to be answered after a stop signal.
    pub drain_timeout: Duration,
    /// Analytics requests computed at once.
    pub max_concurrent_queries: usize,
    /// Experiment pairs per analytics answer at most.
    pub max_experiment_pairs: usize,
    /// PostgreSQL connections of the recommendations endpoint.
    pub api_postgres_connections: usize,
    /// Statement timeout of those connections.
    pub api_statement_timeout: Duration,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn defaults_validate_and_report_in_eur() {
        let config = ProcessorConfig::layered(None, env(&[]), &Overrides::default()).expect("ok");
        assert_eq!(config, ProcessorConfig::default());
        let settings = config.validate().expect("valid");
        assert_eq!(settings.reporting_currency, "EUR");
        assert_eq!(settings.kafka.topics.dead_letter, "events-dlq");
    }

    #[test]
    fn layers_override_in_order_file_env_flags() {
        let file = r#"
            listen = "127.0.0.1:1"
            [kafka]
            brokers = "file:9092"
            group_id = "from-file"
            [checkpoint]
            interval_ms = 50
        "#;
        let vars = env(&[
            ("PROCESSOR_KAFKA__GROUP_ID", "from-env"),
            ("PROCESSOR_CHECKPOINT__INTERVAL_MS", "75"),
            ("PROCESSOR_KAFKA__BROKERS", "env:9092"),
            ("OTHER_THING", "ignored"),
        ]);
        let flags = Overrides {
            brokers: Some("flag:9092".to_owned()),
            ..Overrides::default()
        };
        let config = ProcessorConfig::layered(Some(file), vars, &flags).expect("ok");
        assert_eq!(config.listen, "127.0.0.1:1");
        assert_eq!(config.kafka.group_id, "from-env");
        assert_eq!(config.kafka.brokers, "flag:9092");
        assert_eq!(config.checkpoint.interval_ms, 75);
        // Untouched keys keep their defaults.
        assert_eq!(config.redis.retention_minutes, 120);
    }

    #[test]
    fn each_value_keeps_its_origin_and_errors_name_it() {
        use ingest_common::Origin;
        let dir = std::env::temp_dir().join(format!("processor-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("processor.json");
        std::fs::write(
            &file,
            r#"{"kafka": {"group_id": "from-json"}, "experiments": {"flags": ["a"]}}"#,
        )
        .expect("write");
        let loaded = ProcessorConfig::load(
            Some(&file),
            env(&[
                ("PROCESSOR_CHECKPOINT__MAX_PENDING_EVENTS", "10"),
                ("PROCESSOR_LISTEN", "127.0.0.1:9"),
                (
                    "PROCESSOR_EXPERIMENTS__FLAGS",
                    "checkout_v2, search_ranking",
                ),
            ]),
            &Overrides {
                redis: Some("redis://r:1/0".to_owned()),
                ..Overrides::default()
            },
        )
        .expect("loads");
        let config = &loaded.config;
        assert_eq!(config.kafka.group_id, "from-json");
        assert_eq!(config.checkpoint.max_pending_events, 10);
        assert_eq!(config.listen, "127.0.0.1:9");
        assert_eq!(config.experiments.flags, ["checkout_v2", "search_ranking"]);
        assert_eq!(config.redis.url, "redis://r:1/0");
        assert_eq!(loaded.origin("kafka.group_id"), Origin::File(file.clone()));
        assert_eq!(
            loaded.origin("checkpoint.max_pending_events"),
            Origin::Env("PROCESSOR_CHECKPOINT__MAX_PENDING_EVENTS".into())
        );
        assert_eq!(loaded.origin("redis.url"), Origin::Flag("--redis".into()));
        assert_eq!(loaded.origin("dedup.window_minutes"), Origin::Default);
        assert!(loaded.deprecations().is_empty());

        let loaded = ProcessorConfig::load(
            None,
            env(&[("PROCESSOR_API__TOP_N", "0")]),
            &Overrides::default(),
        )
        .expect("loads");
        let Err(Error::Config(error)) = loaded.config.validate() else {
            panic!("api.top_n = 0 is refused");
        };
        assert_eq!(
            loaded.explain(error).to_string(),
            "invalid configuration `api.top_n` (from environment variable PROCESSOR_API__TOP_N): must be in 1..=1000"
        );
        let error = ProcessorConfig::load(
            None,
            env(&[("PROCESSOR_DEDUP__WINDOW_MINUTES", "a day")]),
            &Overrides::default(),
        )
        .expect_err("not a number");
        assert_eq!(
            error.to_string(),
            "invalid configuration `dedup.window_minutes` (from environment variable PROCESSOR_DEDUP__WINDOW_MINUTES): \"a day\" is not a valid integer"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn every_key_is_documented_and_every_documented_key_exists() {
        let doc = include_str!("../../docs/processor.md");
        let section = ingest_common::layers::markdown_section(doc, "## Configuration", "## ")
            .expect("the configuration section");
        let in_code = ingest_common::layers::leaf_keys(&ProcessorConfig::default());
        if let Err(drift) =
            ingest_common::layers::check_documented("docs/processor.md", section, in_code)
        {
            panic!("{drift}");
        }
    }

    #[test]
    fn unknown_keys_are_rejected_in_file_and_env() {
        let err = ProcessorConfig::layered(
            Some("[kafka]\nbrokerz = \"x\""),
            env(&[]),
            &Overrides::default(),
        )
        .expect_err("unknown key");
        assert!(err.to_string().contains("brokerz"), "{err}");
        let err =
            ProcessorConfig::layered(None, env(&[("PROCESSOR_NOPE", "1")]), &Overrides::default())
                .expect_err("unknown env key");
        assert!(err.to_string().contains("nope"), "{err}");
    }

    #[test]
    fn the_search_sink_is_off_by_default_and_validated_when_on() {
        assert!(ProcessorConfig::default()
            .validate()
            .expect("defaults")
            .search
            .is_none());
        let file =
            "[search]\nenabled = true\nurl = \"http://10.0.0.5:9201\"\nindex = \"shop-events\"\n";
        let env = env(&[("PROCESSOR_SEARCH__BATCH_SIZE", "250")]);
        let settings = ProcessorConfig::layered(Some(file), env, &Overrides::default())
            .expect("layers")
            .validate()
            .expect("valid");
        let search = settings.search.expect("enabled");
        assert_eq!(search.url.to_string(), "http://10.0.0.5:9201");
        assert_eq!(
            (search.index.as_str(), search.batch_size),
            ("shop-events", 250)
        );
        assert_eq!(
            (search.auth, search.ca_file, search.gzip),
            (None, None, true)
        );

        let file =
            "[search]\nenabled = true\nurl = \"https://os.internal\"\nusername = \"ingest\"\n\
                    ca_file = \"/etc/ca.pem\"\ngzip = false\n";
        let vars = self::env(&[("PROCESSOR_SEARCH__PASSWORD", "pw:1")]);
        let search = ProcessorConfig::layered(Some(file), vars, &Overrides::default())
            .expect("layers")
            .validate()
            .expect("valid")
            .search
            .expect("enabled");
        assert_eq!(search.url.to_string(), "https://os.internal:9200");
        assert_eq!(
            search.auth,
            Some(SearchAuth::Basic {
                username: "ingest".into(),
                password: Secret::new("pw:1"),
            })
        );
        assert!(!format!("{search:?}").contains("pw:1"), "{search:?}");
        assert_eq!(search.ca_file, Some("/etc/ca.pem".into()));
        assert!(!search.gzip);
        let mut config = ProcessorConfig::default();
        config.search.enabled = true;
        config.search.api_key = "aWQ6a2V5".into();
        let search = config.validate().expect("valid").search.expect("enabled");
        assert_eq!(
            search.auth,
            Some(SearchAuth::ApiKey(Secret::new("aWQ6a2V5")))
        );

        for (key, change) in [
            (
                "search.url",
                (|c: &mut SearchConfig| c.url = "ftp://x".into()) as fn(&mut SearchConfig),
            ),
            ("search.url", |c| c.url = "https://u:p@x".into()),
            ("search.api_key", |c| {
                c.username = "u".into();
                c.api_key = "k".into();
            }),
            ("search.api_key", |c| c.api_key = "a b".into()),
            ("search.password", |c| c.password = "p".into()),
            ("search.username", |c| c.username = "a:b".into()),
            ("search.index", |c| c.index = "Shop".into()),
            ("search.index", |c| c.index = "a b".into()),
            ("search.batch_size", |c| c.batch_size = 0),
            ("search.max_queued_documents", |c| {
                c.max_queued_documents = 10
            }),
            ("search.initial_backoff_ms", |c| c.max_backoff_ms = 1),
        ] {
            let mut config = ProcessorConfig::default();
            config.search.enabled = true;
            change(&mut config.search);
            let error = config.validate().expect_err("invalid").to_string();
            assert!(error.contains(key), "{key}: {error}");
        }
    }

    #[test]
    fn pruning_keeps_what_the_live_view_is_rebuilt_from() {
        let mut config = ProcessorConfig::default();
        config.pruning.rollup_retention_minutes = config.redis.retention_minutes - 1;
        let error = config.validate().expect_err("too short").to_string();
        assert!(
            error.contains("pruning.rollup_retention_minutes"),
            "{error}"
        );
        let mut config = ProcessorConfig::default();
        config.pruning.max_product_pairs = 0;
        assert!(config.validate().is_err());
        let settings = ProcessorConfig::default().validate().expect("defaults");
        assert_eq!(settings.rollup_retention_minutes, 43_200);
        assert_eq!(settings.prune_interval, Duration::from_secs(60));
    }

    #[test]
    fn recommendation_bounds_are_checked() {
        for (key, change) in [
            (
                "recommendations.partners_per_product",
                (|c| c.partners_per_product = 0) as fn(&mut RecommendationsConfig),
            ),
            ("recommendations.publish_interval_secs", |c| {
                c.publish_interval_secs = 0
            }),
            ("recommendations.pair_window", |c| c.pair_window = 21),
            ("recommendations.fold_interval_ms", |c| {
                c.fold_interval_ms = 0
            }),
            ("recommendations.fold_max_pairs", |c| c.fold_max_pairs = 0),
        ] {
            let mut config = ProcessorConfig::default();
            change(&mut config.recommendations);
            let error = config.validate().expect_err("invalid").to_string();
            assert!(error.contains(key), "{key}: {error}");
        }
        let settings = ProcessorConfig::default().validate().expect("defaults");
        assert_eq!(settings.recommendations_partners, 50);
        assert_eq!(settings.recommendations_interval, Duration::from_secs(30));
        assert_eq!(settings.pair_fold_interval, Duration::from_secs(10));
    }

    #[test]
    fn experiment_flags_are_all_by_default_or_the_listed_ones() {
        let settings = ProcessorConfig::default().validate().expect("defaults");
        assert_eq!(settings.experiment_flags, None);
        let config = ProcessorConfig::layered(
            Some("[experiments]\nflags = [\"checkout_v2\", \"search_ranking\"]"),
            Vec::new(),
            &Overrides::default(),
        )
        .expect("parses");
        let flags = config.validate().expect("valid").experiment_flags;
        assert_eq!(
            flags.map(|f| f.into_iter().collect::<Vec<_>>()),
            Some(vec!["checkout_v2".to_owned(), "search_ranking".to_owned()])
        );
        let config = ProcessorConfig {
            experiments: ExperimentsConfig {
                flags: vec!["a=b".to_owned()],
            },
            ..ProcessorConfig::default()
        };
        let error = config.validate().expect_err("refused").to_string();
        assert!(error.contains("experiments.flags"), "{error}");
    }

    #[test]
    fn validation_names_the_key() {
        let config = ProcessorConfig {
            reporting_currency: "euro".to_owned(),
            ..ProcessorConfig::default()
        };
        assert!(config
            .validate()
            .expect_err("bad")
            .to_string()
            .contains("reporting_currency"));
        let mut config = ProcessorConfig::default();
        config
            .kafka
            .properties
            .insert("enable.auto.commit".to_owned(), "true".to_owned());
        assert!(config
            .validate()
            .expect_err("bad")
            .to_string()
            .contains("enable.auto.commit"));
        let mut config = ProcessorConfig::default();
        config.kafka.topics.cart = "purchases".to_owned();
        assert!(config.validate().is_err());
    }

    #[test]
    fn secrets_are_masked() {
        assert_eq!(
            mask_url("postgres://app:s3cret@db:5432/x"),
            "postgres://app:****@db:5432/x"
        );
        assert_eq!(mask_url("redis://:pw@h:1/0"), "redis://:****@h:1/0");
        assert_eq!(mask_url("redis://h:1/0"), "redis://h:1/0");
        let mut config = ProcessorConfig::default();
        config.postgres.url = "postgres://app:s3cret@db/x".to_owned();
        config
            .kafka
            .properties
            .insert("sasl.password".to_owned(), "hunter2".to_owned());
        config
            .kafka
            .properties
            .insert("ssl.key.password".to_owned(), "hunter3".to_owned());
        config.search.password = "hunter4".to_owned();
        config.search.api_key = "hunter5".to_owned();
        let text = config.masked_toml();
        assert!(
            !text.contains("s3cret") && !text.contains("hunter"),
            "{text}"
        );
        assert!(text.contains("password = \"<redacted>\""), "{text}");
        assert!(text.contains("****"));
    }

    #[test]
    fn api_bounds_have_defaults_and_are_checked() {
        let settings = ProcessorConfig::default().validate().expect("defaults");
        assert_eq!(settings.max_concurrent_queries, 8);
        assert_eq!(settings.max_experiment_pairs, 100);
        assert_eq!(settings.api_postgres_connections, 4);
        assert_eq!(settings.api_statement_timeout, Duration::from_secs(2));
        for (key, change) in [
            (
                "api.max_concurrent_queries",
                (|c| c.max_concurrent_queries = 0) as fn(&mut ApiConfig),
            ),
            ("api.max_experiment_pairs", |c| c.max_experiment_pairs = 0),
            ("api.max_experiment_pairs", |c| {
                c.max_experiment_pairs = 10_001
            }),
            ("api.postgres_connections", |c| c.postgres_connections = 0),
            ("api.statement_timeout_ms", |c| c.statement_timeout_ms = 0),
        ] {
            let mut config = ProcessorConfig::default();
            change(&mut config.api);
            let error = config.validate().expect_err("invalid").to_string();
            assert!(error.contains(key), "{key}: {error}");
        }
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let b = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_millis(350),
        };
        assert_eq!(b.delay(1), Duration::from_millis(100));
        assert_eq!(b.delay(2), Duration::from_millis(200));
        assert_eq!(b.delay(3), Duration::from_millis(350));
        assert_eq!(b.delay(60), Duration::from_millis(350));
    }
}
