//! Validation: [`ProcessorConfig::validate`] turns the raw configuration into the typed
//! [`Settings`] the processor runs with, naming the key and why when a value is refused.
//! It does no I/O.

use super::*;

impl ProcessorConfig {
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
        // sslmode and sslrootcert are read here too, so that a bad value stops the start
        // (the CA file itself is read when connecting).
        crate::store::PostgresUrl::parse(&self.postgres.url)?;
        if !self.redis.url.starts_with("redis://") && !self.redis.url.starts_with("rediss://") {
            return bad("redis.url", "must start with redis:// or rediss://");
        }
        if self.redis.url.contains('#') {
            return bad(
                "redis.url",
                "takes no #fragment (#insecure would turn certificate checks off); \
                 trust a private CA with redis.ca_file",
            );
        }
        if !self.redis.ca_file.is_empty() && !self.redis.url.starts_with("rediss://") {
            return bad("redis.ca_file", "needs a rediss:// redis.url (TLS)");
        }
        if self.redis.key_prefix.is_empty() || self.redis.key_prefix.contains(' ') {
            return bad("redis.key_prefix", "must be a non-empty word");
        }
        if self.redis.response_timeout_ms == 0 {
            return bad("redis.response_timeout_ms", "must be greater than 0");
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
        if !(1..=64).contains(&self.checkpoint.groups) {
            return bad("checkpoint.groups", "must be in 1..=64");
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
        let registry = &self.schema_registry;
        let url_ok = registry.url.is_empty()
            || registry.url.starts_with("http://")
            || registry.url.starts_with("https://");
        if !url_ok {
            return bad("schema_registry.url", "must be an http:// or https:// URL");
        }
        if registry.timeout_ms == 0 || registry.cache_capacity == 0 {
            return bad(
                "schema_registry",
                "timeout_ms and cache_capacity must be > 0",
            );
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
            Some(self.search.validate(&self.kafka.group_id)?)
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
            postgres_url: SecretUrl::new(self.postgres.url.clone()),
            postgres_connect_timeout: Duration::from_millis(self.postgres.connect_timeout_ms),
            redis_url: SecretUrl::new(self.redis.url.clone()),
            redis_ca_file: (!self.redis.ca_file.is_empty())
                .then(|| std::path::PathBuf::from(&self.redis.ca_file)),
            key_prefix: self.redis.key_prefix.clone(),
            retention: Duration::from_secs(self.redis.retention_minutes * 60),
            redis_response_timeout: Duration::from_millis(self.redis.response_timeout_ms),
            checkpoint_interval: Duration::from_millis(self.checkpoint.interval_ms),
            max_pending_events: self.checkpoint.max_pending_events,
            max_pending_bytes: self.checkpoint.max_pending_bytes,
            max_isolated_records: self.checkpoint.max_isolated_records,
            user_state_snapshot_min_bytes: self
                .checkpoint
                .user_state_snapshot_min_kib
                .saturating_mul(1024),
            checkpoint_groups: self.checkpoint.groups,
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
            schema_registry: (!registry.url.is_empty()).then(|| RegistrySettings {
                url: SecretUrl::new(registry.url.clone()),
                timeout: Duration::from_millis(registry.timeout_ms),
                cache_capacity: registry.cache_capacity,
            }),
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
    fn validate(&self, kafka_group_id: &str) -> Result<SearchSettings, Error> {
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
        if self.max_queued_documents.is_some() {
            tracing::warn!(
                "search.max_queued_documents no longer has an effect: documents not yet \
                 indexed wait in Kafka; remove the key"
            );
        }
        let group_id = if self.group_id.is_empty() {
            format!("{kafka_group_id}-search")
        } else {
            self.group_id.clone()
        };
        if group_id == kafka_group_id {
            return bad(
                "group_id",
                "must differ from kafka.group_id: the indexer commits its own offsets",
            );
        }
        Ok(SearchSettings {
            group_id,
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
        })
    }
}

/// The validated `[search]` section.
#[derive(Debug, Clone)]
pub struct SearchSettings {
    /// The indexer's consumer group.
    pub group_id: String,
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
    /// The longest a document waits for a fuller request.
    pub flush_interval: Duration,
    /// Request time-out.
    pub request_timeout: Duration,
    /// Backoff after failures.
    pub backoff: Backoff,
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
    // Set from `kafka.lag_interval_ms`.
    "statistics.interval.ms",
];

/// `[schema_registry]`, validated.
#[derive(Debug, Clone)]
pub struct RegistrySettings {
    /// Base URL of the Confluent-compatible API (its `Debug` masks a password).
    pub url: SecretUrl,
    /// Time one request may take.
    pub timeout: Duration,
    /// Schemas kept by id.
    pub cache_capacity: usize,
}

/// The validated configuration. `Debug` masks the passwords of the URLs and the
/// secret-looking Kafka properties.
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
    /// PostgreSQL URL (`Debug` masks its password).
    pub postgres_url: SecretUrl,
    /// PostgreSQL connect timeout.
    pub postgres_connect_timeout: Duration,
    /// Redis URL (`Debug` masks its password).
    pub redis_url: SecretUrl,
    /// CA certificates trusted for a `rediss://` URL instead of the system's roots.
    pub redis_ca_file: Option<std::path::PathBuf>,
    /// Redis key prefix.
    pub key_prefix: String,
    /// Redis key lifetime.
    pub retention: Duration,
    /// How long a Redis command waits for its reply.
    pub redis_response_timeout: Duration,
    /// Checkpoint interval.
    pub checkpoint_interval: Duration,
    /// Events held between checkpoints at most.
    pub max_pending_events: usize,
    /// Bytes of records held between checkpoints at most.
    pub max_pending_bytes: usize,
    /// Records one checkpoint may isolate and dead-letter after PostgreSQL refused them.
    pub max_isolated_records: usize,
    /// Log bytes of a partition number's users' state before a snapshot, at least.
    pub user_state_snapshot_min_bytes: usize,
    /// Partition groups checkpointing side by side.
    pub checkpoint_groups: usize,
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
    /// The schema registry of Avro records, if configured.
    pub schema_registry: Option<RegistrySettings>,
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
