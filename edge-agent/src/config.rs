//! The agent's configuration: one TOML file, environment overrides, command-line flags.
//!
//! Layers, each overriding the one before: defaults → `--config FILE` → environment
//! variables `EDGE_AGENT_<SECTION>__<KEY>` → flags (`--listen`, `--brokers`,
//! `--buffer-dir`, ...), through the workspace's one mechanism
//! ([`ingest_common::Layers`]). The earlier single-underscore names
//! (`EDGE_AGENT_<SECTION>_<KEY>`) are still accepted, each reported as a
//! [`Deprecation`](ingest_common::Deprecation). [`AgentConfig`] is the serde shape
//! (unknown keys rejected); [`AgentConfig::validate`] builds the checked
//! [`AgentSettings`] without doing I/O.
//!
//! The ingest sections (`[kafka]`, `[topics.*]`, `[limits]`, `[queue]`, `[dead_letter]`,
//! `[buffer]`, `[breaker]`, `[telemetry]`, `source`) are `ingest-core`'s, documented in
//! `docs/configuration.md`; the agent's own are documented in `docs/edge-agent.md`.

use std::path::PathBuf;

use ingest_common::{EnvNames, Layers, Loaded};
use ingest_core::config::{
    BreakerConfig, BufferConfig, BufferType, DeadLetterConfig, KafkaConfig, LimitsConfig,
    QueueConfig, TelemetryConfig, TopicsConfig,
};
use ingest_core::IngestConfig;
use serde::{Deserialize, Serialize};

// The path spelt out: the fuzz target `config` (fuzz/) compiles this file with
// `#[path]`, where a plain `mod settings;` would be looked for beside this file.
#[path = "config/settings.rs"]
mod settings;

pub(crate) use settings::check_key;
pub use settings::{AgentSettings, AvroSettings, TlsFiles};

/// The prefix of environment overrides.
pub const ENV_PREFIX: &str = "EDGE_AGENT_";

/// What shows instead of a secret in printed configurations.
pub const MASK: &str = ingest_common::secret::REDACTED;

/// The agent's environment names: `EDGE_AGENT_SECTION__KEY`, and the deprecated
/// `EDGE_AGENT_SECTION_KEY`.
pub const ENV_NAMES: EnvNames<'static> = EnvNames::new(ENV_PREFIX).with_legacy_single_underscore();

/// The smallest `server.max_head_bytes`, and its default: 8 KiB, the read buffer an
/// HTTP/1 connection starts with. Any larger bound lets that buffer grow to 16 KiB on
/// the first request (the HTTP/2 preface check hands the first bytes over separately),
/// which at 1,000 open connections is 8 MiB more.
pub const MIN_HEAD_BYTES: usize = 8192;

/// The default `server.http2_max_concurrent_streams`: enough for a storefront's
/// connection pool, and a quarter of hyper's own default (200), which bounds what one
/// connection can hold (each stream may buffer a body of up to `max_body_bytes`).
pub const DEFAULT_HTTP2_MAX_CONCURRENT_STREAMS: u32 = 64;

/// Everything the agent can be told, as read from its TOML file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct AgentConfig {
    /// Listeners, limits and timeouts of the HTTP server.
    pub server: ServerConfig,
    /// TLS on the TCP listener (off unless a certificate is given).
    pub tls: TlsConfig,
    /// API keys (write keys per storefront); off when none are configured.
    pub auth: AuthConfig,
    /// Rate limits per API key and global; off at 0.
    pub rate_limit: RateLimitConfig,
    /// Browser access.
    pub cors: CorsConfig,
    /// Feature flags served at `GET /api/flags` (off unless a file is given).
    pub flags: FlagsConfig,
    /// Avro output with a schema registry (off unless event types are listed).
    pub avro: AvroConfig,
    /// Log output.
    pub log: LogConfig,
    /// Create the configured topics at start (with their partitions and replication;
    /// existing topics are left as they are).
    pub create_topics: bool,
    /// `ingest-core`: value of the `source` header (empty: the host name).
    pub source: String,
    /// `ingest-core`: the Kafka producer.
    pub kafka: KafkaConfig,
    /// `ingest-core`: topic names and layout.
    pub topics: TopicsConfig,
    /// `ingest-core`: event and batch limits.
    pub limits: LimitsConfig,
    /// `ingest-core`: the in-memory queue.
    pub queue: QueueConfig,
    /// `ingest-core`: the dead-letter topic.
    pub dead_letter: DeadLetterConfig,
    /// `ingest-core`: the disk buffer (`--buffer-dir` turns it on).
    pub buffer: BufferConfig,
    /// `ingest-core`: the circuit breaker.
    pub breaker: BreakerConfig,
    /// `ingest-core`: the `ingestor` metric label and librdkafka's statistics.
    pub telemetry: TelemetryConfig,
}

/// The HTTP server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// TCP address to listen on; empty for none.
    pub listen: String,
    /// Unix domain socket path to listen on; empty for none.
    pub unix_socket: String,
    /// Most connections served at once; further ones wait in the listen backlog.
    pub max_connections: usize,
    /// Time allowed to send the request head, in milliseconds (slow clients are cut).
    /// A new connection must also start its first request within this time.
    pub header_timeout_ms: u64,
    /// How long a connection may stay open with no request in flight, in milliseconds
    /// (HTTP/1 keep-alive and HTTP/2 alike); then it is closed (HTTP/2 with `GOAWAY`).
    /// HTTP/2 keep-alive pings do not count as activity.
    pub idle_timeout_ms: u64,
    /// Most HTTP/2 streams (requests) a client may have open at once on one connection,
    /// advertised as `SETTINGS_MAX_CONCURRENT_STREAMS`; streams beyond it are refused
    /// (`REFUSED_STREAM`).
    pub http2_max_concurrent_streams: u32,
    /// Largest HTTP/1 request head (request line and headers), in bytes; larger is
    /// answered with 431. It is also the size of each HTTP/1 connection's read buffer,
    /// held for as long as the connection is open. At least 8192. (HTTP/2 header lists
    /// are bounded at 16 KiB.)
    pub max_head_bytes: usize,
    /// Time allowed to send the request body, in milliseconds.
    pub body_timeout_ms: u64,
    /// Largest request body as sent (compressed or not), in bytes; larger is refused
    /// with 413 before it is read. The decompressed size is bounded by
    /// `limits.max_batch_bytes`.
    pub max_body_bytes: usize,
    /// Bytes of request bodies being received at once, across all connections (a body
    /// counts its `Content-Length` from its head on). A body that does not fit is
    /// answered 503 at once. At least `max_body_bytes`.
    pub max_body_memory_bytes: usize,
    /// Most compressed bodies (gzip, zstd) decompressed at once; further ones wait for
    /// their turn. Decompression runs on threads of its own, off the threads that serve
    /// connections, so this bounds how much of the CPU compressed bodies can take from
    /// everything else. 0: half the CPU cores, at least 1.
    pub max_concurrent_decompressions: usize,
    /// Longest wait for the `persisted` or `delivered` level, in milliseconds; then 503.
    pub ack_timeout_ms: u64,
    /// How long a shutdown (SIGTERM, SIGINT) may take, in milliseconds: in-flight
    /// requests finish, then events are delivered or kept in the disk buffer.
    pub shutdown_timeout_ms: u64,
    /// The `Retry-After` value of 429 and 503 answers, in seconds.
    pub retry_after_secs: u64,
    /// Permissions of the Unix socket, in octal (`"0660"`: the agent's user and group
    /// may connect). Set when the socket is created, whatever the umask.
    pub unix_socket_mode: String,
    /// A TCP address (`127.0.0.1:9090`) for an admin listener serving `/metrics` and
    /// `/health/*` only; when set, the public listeners answer those paths with 404.
    /// Empty: they are served on the public listeners.
    pub admin_listen: String,
    /// Addresses (`10.0.0.7`) or networks (`10.0.0.0/8`, `fd00::/8`) of reverse
    /// proxies in front of the agent. For a connection from one of them, the client's
    /// address (for `rate_limit.per_client_*`) is the last address of
    /// `X-Forwarded-For` that is not a trusted proxy; for any other connection it is
    /// the connection's own address, and the header is ignored.
    pub trusted_proxies: Vec<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "127.0.0.1:8088".to_owned(),
            unix_socket: String::new(),
            max_connections: 4096,
            header_timeout_ms: 5_000,
            idle_timeout_ms: 30_000,
            http2_max_concurrent_streams: DEFAULT_HTTP2_MAX_CONCURRENT_STREAMS,
            max_head_bytes: MIN_HEAD_BYTES,
            body_timeout_ms: 10_000,
            max_body_bytes: 4 << 20,
            max_body_memory_bytes: 256 << 20,
            max_concurrent_decompressions: 0,
            ack_timeout_ms: 10_000,
            shutdown_timeout_ms: 30_000,
            retry_after_secs: 1,
            unix_socket_mode: "0660".to_owned(),
            admin_listen: String::new(),
            trusted_proxies: Vec::new(),
        }
    }
}

/// TLS on the TCP listener, with rustls. HTTP/1.1 and HTTP/2 are offered by ALPN.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// PEM certificate chain; TLS is on when set.
    pub cert_file: Option<PathBuf>,
    /// PEM private key of the certificate.
    pub key_file: Option<PathBuf>,
    /// PEM CA certificates: when set, clients must present a certificate signed by one.
    pub client_ca_file: Option<PathBuf>,
    /// Client certificates tied to storefronts: a connection whose certificate carries
    /// one of these DNS names sends as that storefront. When any is listed, a
    /// certificate naming none of them is refused (403).
    pub clients: Vec<TlsClient>,
}

/// A client certificate's name and the storefront it sends as.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsClient {
    /// A DNS name in the certificate's subject alternative names.
    pub name: String,
    /// The storefront: the `source` of the events sent on such a connection.
    pub source: String,
}

/// Who holds a key, and so what it may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum KeyKind {
    /// A secret kept on the storefront's servers: any event type, sent in the
    /// `Authorization` header (or as the Segment and GA4 libraries send theirs).
    #[default]
    Server,
    /// A public key, written into the storefront's pages: only `product_view`, `cart`
    /// and `search` events (and custom events), only from its `origins`, and it may also
    /// be sent as the `key` query parameter, which `navigator.sendBeacon` can do.
    Browser,
}

/// One storefront's write key.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKey {
    /// The storefront it belongs to: the `source` header of its events, and the name
    /// its rate limit is kept under.
    pub source: String,
    /// The secret, sent as `Authorization: Bearer <key>`.
    pub key: String,
    /// `server` (the default) or `browser`.
    #[serde(default)]
    pub kind: KeyKind,
    /// For a browser key, the pages' origins (`https://shop.example.com`) it may be
    /// used from: a request with it must carry one of them in `Origin`. Required for
    /// browser keys; not allowed for server keys.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub origins: Vec<String>,
}

impl ApiKey {
    /// A server key.
    pub fn server(source: impl Into<String>, key: impl Into<String>) -> ApiKey {
        ApiKey {
            source: source.into(),
            key: key.into(),
            kind: KeyKind::Server,
            origins: Vec::new(),
        }
    }
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKey")
            .field("source", &self.source)
            .field("key", &MASK)
            .field("kind", &self.kind)
            .field("origins", &self.origins)
            .finish()
    }
}

/// API keys: when any is configured, every event request needs one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Keys given in the file.
    pub keys: Vec<ApiKey>,
    /// A TOML file with more keys (`[[keys]] source = "..." key = "..."`), so secrets can
    /// live apart from the configuration (e.g. a mounted Kubernetes secret).
    pub keys_file: Option<PathBuf>,
}

/// Token-bucket rate limits, in events per second (a batch counts its events).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    /// Events per second for the whole agent; 0 is unlimited.
    pub global_per_sec: u32,
    /// Burst of the global limit (0: one second's worth).
    pub global_burst: u32,
    /// Events per second per API key; 0 is unlimited.
    pub per_key_per_sec: u32,
    /// Burst of the per-key limit (0: one second's worth).
    pub per_key_burst: u32,
    /// Events per second per client within a key (or, without keys, per client): the
    /// client is the connection's IP address, or the forwarded one behind
    /// `server.trusted_proxies`. A visitor holding a storefront's public browser key
    /// cannot use up the storefront's quota. Clients on the Unix socket are not limited
    /// by it. 0 is unlimited.
    pub per_client_per_sec: u32,
    /// Burst of the per-client limit (0: one second's worth).
    pub per_client_burst: u32,
}

/// CORS for browsers posting straight to the agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CorsConfig {
    /// Origins allowed (`https://shop.example.com`); `"*"` allows any. Empty: no CORS.
    pub allowed_origins: Vec<String>,
    /// How long browsers may cache a preflight answer, in seconds.
    pub max_age_secs: u64,
}

impl Default for CorsConfig {
    fn default() -> Self {
        CorsConfig {
            allowed_origins: Vec::new(),
            max_age_secs: 600,
        }
    }
}

/// Feature flags (docs/edge-agent.md#feature-flags).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FlagsConfig {
    /// The flags file (TOML, or JSON when it ends in `.json`); empty: no flags.
    pub file: String,
    /// How often the file is looked at for changes, in milliseconds.
    pub reload_interval_ms: u64,
}

impl Default for FlagsConfig {
    fn default() -> Self {
        FlagsConfig {
            file: String::new(),
            reload_interval_ms: 2000,
        }
    }
}

/// Avro output (docs/avro.md): the listed event types' topics get Avro records in the
/// Confluent wire format, their schemas registered at start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AvroConfig {
    /// Event types written in Avro (`product_view`, `cart`, `purchase`, `search`);
    /// empty: every topic in JSON.
    pub types: Vec<String>,
    /// The schema registry's Confluent-compatible API (Apicurio:
    /// `http://host:8080/apis/ccompat/v7`).
    pub registry_url: String,
    /// The compatibility a subject's new schema is checked for at start: `backward`,
    /// `backward_transitive`, `forward`, `forward_transitive`, `full`,
    /// `full_transitive` or `none`.
    pub compatibility: String,
    /// Time one request to the registry may take, in milliseconds.
    pub timeout_ms: u64,
}

impl Default for AvroConfig {
    fn default() -> Self {
        AvroConfig {
            types: Vec::new(),
            registry_url: String::new(),
            compatibility: "backward".to_owned(),
            timeout_ms: 5000,
        }
    }
}

/// Log output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `text` or `json` (one object per line).
    pub format: LogFormat,
    /// A `tracing` filter: `info`, `debug`, `edge_agent=debug,librdkafka=warn`, ...
    /// `RUST_LOG` overrides it.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Text,
            level: "info".to_owned(),
        }
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// An invalid agent configuration: which key, where its value came from, and why (the
/// workspace's one configuration error).
pub use ingest_common::ConfigError;

fn invalid(key: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::new(key, reason)
}

/// Overrides from the command line (each optional).
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--listen ADDR`.
    pub listen: Option<String>,
    /// `--unix-socket PATH`.
    pub unix_socket: Option<String>,
    /// `--brokers LIST`.
    pub brokers: Option<String>,
    /// `--buffer-dir DIR`: turns the disk buffer on (`log` engine unless configured).
    pub buffer_dir: Option<PathBuf>,
    /// `--log-format text|json`.
    pub log_format: Option<LogFormat>,
    /// `--create-topics`.
    pub create_topics: bool,
}

impl AgentConfig {
    /// Reads the layers: `file` (if any), then the environment (`vars`, usually
    /// `std::env::vars()`), then the flags.
    ///
    /// # Errors
    ///
    /// When the file cannot be read or parsed, or a variable does not parse.
    pub fn load(
        file: Option<&std::path::Path>,
        vars: impl IntoIterator<Item = (String, String)>,
        overrides: &Overrides,
    ) -> Result<AgentConfig, ConfigError> {
        Ok(AgentConfig::layers(file, vars, overrides)?.config)
    }

    /// As [`load`](Self::load), keeping where each value came from (for
    /// `--check-config` and error messages) and the deprecated variable names used.
    ///
    /// # Errors
    ///
    /// When the file cannot be read or parsed, a variable names no key or does not
    /// parse, or a key is unknown: naming the key and its origin.
    pub fn layers(
        file: Option<&std::path::Path>,
        vars: impl IntoIterator<Item = (String, String)>,
        overrides: &Overrides,
    ) -> Result<Loaded<AgentConfig>, ConfigError> {
        let mut layers = Layers::<AgentConfig>::new()?;
        if let Some(path) = file {
            layers = layers.file(path)?;
        }
        layers = layers.env(ENV_NAMES, vars)?;
        if let Some(listen) = &overrides.listen {
            layers = layers.flag("server.listen", "--listen", listen)?;
        }
        if let Some(path) = &overrides.unix_socket {
            layers = layers.flag("server.unix_socket", "--unix-socket", path)?;
        }
        if let Some(brokers) = &overrides.brokers {
            layers = layers.flag("kafka.brokers", "--brokers", brokers)?;
        }
        if let Some(dir) = &overrides.buffer_dir {
            if layers.current::<BufferType>("buffer.type") == Some(BufferType::Memory) {
                layers = layers.flag("buffer.type", "--buffer-dir", BufferType::Log)?;
            }
            layers = layers.flag("buffer.dir", "--buffer-dir", dir)?;
        }
        if let Some(format) = overrides.log_format {
            layers = layers.flag("log.format", "--log-format", format)?;
        }
        if overrides.create_topics {
            layers = layers.flag("create_topics", "--create-topics", true)?;
        }
        layers.load()
    }

    /// The ingest sections, as `ingest-core` takes them.
    pub fn ingest(&self) -> IngestConfig {
        let mut config = IngestConfig::default();
        config.source.clone_from(&self.source);
        config.kafka = self.kafka.clone();
        config.topics = self.topics.clone();
        config.limits = self.limits.clone();
        config.queue = self.queue.clone();
        config.dead_letter = self.dead_letter.clone();
        config.buffer = self.buffer.clone();
        config.breaker = self.breaker.clone();
        config.telemetry = self.telemetry.clone();
        config
    }

    /// A copy safe to print: API keys and secret-looking Kafka properties masked.
    #[must_use]
    pub fn redacted(&self) -> AgentConfig {
        let mut copy = self.clone();
        copy.kafka = self.ingest().redacted().kafka;
        for key in &mut copy.auth.keys {
            key.key = MASK.to_owned();
        }
        copy.avro.registry_url = ingest_common::secret::mask_url(&self.avro.registry_url);
        copy
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ingest_core::EventKind;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn defaults_run_with_only_brokers() {
        let config = AgentConfig::load(
            None,
            Vec::new(),
            &Overrides {
                brokers: Some("k1:9092".to_owned()),
                ..Overrides::default()
            },
        )
        .expect("loads");
        let settings = config.validate().expect("valid");
        assert_eq!(
            settings.listen,
            Some("127.0.0.1:8088".parse().expect("addr"))
        );
        assert!(!settings.ingest.has_disk_buffer());
        assert_eq!(config.kafka.brokers, "k1:9092");
    }

    fn with_avro(avro: AvroConfig) -> Result<AgentSettings, ConfigError> {
        let mut config = AgentConfig::default();
        config.kafka.brokers = "k1:9092".to_owned();
        config.avro = avro;
        config.validate()
    }

    /// `[avro]` is off until types are listed, then needs a registry URL, known and
    /// distinct types and a known compatibility; each refusal names its key.
    #[test]
    fn avro_output_is_checked_key_by_key() {
        let off = with_avro(AvroConfig {
            registry_url: "http://registry:8081".to_owned(),
            ..AvroConfig::default()
        })
        .expect("valid");
        assert!(off.avro.is_none(), "no types: every topic in JSON");
        let on = with_avro(AvroConfig {
            types: vec!["purchase".to_owned(), " product_view ".to_owned()],
            registry_url: "https://registry:8081/apis/ccompat/v7/".to_owned(),
            compatibility: "FULL_transitive".to_owned(),
            timeout_ms: 250,
        })
        .expect("valid")
        .avro
        .expect("on");
        assert_eq!(on.kinds, [EventKind::Purchase, EventKind::ProductView]);
        assert_eq!(on.registry_url, "https://registry:8081/apis/ccompat/v7");
        assert_eq!(
            on.compatibility,
            ingest_core::compatibility::Compatibility::FullTransitive
        );
        assert_eq!(on.timeout, std::time::Duration::from_millis(250));
        let refused = |avro: AvroConfig| with_avro(avro).expect_err("refused").to_string();
        let types = |names: &[&str]| names.iter().map(|n| (*n).to_owned()).collect();
        let base = AvroConfig {
            types: types(&["cart"]),
            registry_url: "http://registry:8081".to_owned(),
            ..AvroConfig::default()
        };
        for (avro, key, says) in [
            (
                AvroConfig {
                    registry_url: String::new(),
                    ..base.clone()
                },
                "avro.registry_url",
                "must be set",
            ),
            (
                AvroConfig {
                    registry_url: "registry:8081".to_owned(),
                    ..base.clone()
                },
                "avro.registry_url",
                "not an http",
            ),
            (
                AvroConfig {
                    types: types(&["checkout"]),
                    ..base.clone()
                },
                "avro.types",
                "\"checkout\" is not an event type",
            ),
            (
                AvroConfig {
                    types: types(&["cart", "cart"]),
                    ..base.clone()
                },
                "avro.types",
                "listed twice",
            ),
            (
                AvroConfig {
                    compatibility: "sideways".to_owned(),
                    ..base.clone()
                },
                "avro.compatibility",
                "\"sideways\" is not one of",
            ),
            (
                AvroConfig {
                    timeout_ms: 0,
                    ..base.clone()
                },
                "avro.timeout_ms",
                "greater than 0",
            ),
        ] {
            let error = refused(avro);
            assert!(error.contains(key) && error.contains(says), "{error}");
        }
    }

    /// The registry URL's credentials are masked when the configuration is printed.
    #[test]
    fn the_registry_password_is_masked() {
        let mut config = AgentConfig::default();
        config.avro.registry_url = "https://shop:s3cret@registry:8081".to_owned();
        let printed = toml::to_string(&config.redacted()).expect("toml");
        assert!(!printed.contains("s3cret"), "{printed}");
        assert!(printed.contains("registry:8081"), "{printed}");
    }

    /// The earlier single-underscore names still work, each reported as deprecated
    /// with the name that replaces it.
    #[test]
    fn deprecated_names_layer_file_then_environment_then_flags() {
        let dir = tempfile::tempdir().expect("dir");
        let file = dir.path().join("agent.toml");
        std::fs::write(
            &file,
            "source = \"shop\"\n[server]\nlisten = \"127.0.0.1:1\"\nack_timeout_ms = 5\n[kafka]\nlinger_ms = 7\nbrokers = \"file:1\"\n",
        )
        .expect("write");
        let config = AgentConfig::load(
            Some(&file),
            env(&[
                ("EDGE_AGENT_KAFKA_LINGER_MS", "9"),
                ("EDGE_AGENT_SERVER_LISTEN", "127.0.0.1:2"),
                ("EDGE_AGENT_TOPICS_PRODUCT_VIEW_NAME", "views"),
                (
                    "EDGE_AGENT_CORS_ALLOWED_ORIGINS",
                    "https://a.example, https://b.example",
                ),
                ("EDGE_AGENT_BUFFER_DIR", "/var/spool/agent"),
                ("EDGE_AGENT_BUFFER_TYPE", "log"),
                ("OTHER_VARIABLE", "ignored"),
            ]),
            &Overrides {
                listen: Some("127.0.0.1:3".to_owned()),
                ..Overrides::default()
            },
        )
        .expect("loads");
        assert_eq!(config.source, "shop");
        assert_eq!(config.server.ack_timeout_ms, 5, "file");
        assert_eq!(config.kafka.linger_ms, 9, "environment over file");
        assert_eq!(config.kafka.brokers, "file:1");
        assert_eq!(config.server.listen, "127.0.0.1:3", "flag over environment");
        assert_eq!(config.topics.product_view.name, "views");
        assert_eq!(config.cors.allowed_origins.len(), 2);
        assert_eq!(config.buffer.kind, BufferType::Log);
        assert_eq!(
            config.buffer.dir.as_deref(),
            Some(std::path::Path::new("/var/spool/agent"))
        );
        assert!(config.validate().expect("valid").ingest.has_disk_buffer());

        let loaded = AgentConfig::layers(
            Some(&file),
            env(&[
                ("EDGE_AGENT_KAFKA_LINGER_MS", "9"),
                ("EDGE_AGENT_TOPICS_PRODUCT_VIEW_NAME", "views"),
                ("EDGE_AGENT_BUFFER_DIR", "/var/spool/agent"),
            ]),
            &Overrides::default(),
        )
        .expect("loads");
        let renamed: Vec<(&str, &str)> = loaded
            .deprecations()
            .iter()
            .map(|d| (d.variable.as_str(), d.replacement.as_str()))
            .collect();
        assert_eq!(
            renamed,
            [
                ("EDGE_AGENT_BUFFER_DIR", "EDGE_AGENT_BUFFER__DIR"),
                ("EDGE_AGENT_KAFKA_LINGER_MS", "EDGE_AGENT_KAFKA__LINGER_MS"),
                (
                    "EDGE_AGENT_TOPICS_PRODUCT_VIEW_NAME",
                    "EDGE_AGENT_TOPICS__PRODUCT_VIEW__NAME"
                ),
            ]
        );
    }

    #[test]
    fn layers_file_then_environment_then_flags_with_their_origins() {
        let dir = tempfile::tempdir().expect("dir");
        let file = dir.path().join("agent.toml");
        std::fs::write(
            &file,
            "source = \"shop\"\n[server]\nlisten = \"127.0.0.1:1\"\nack_timeout_ms = 5\n[kafka]\nlinger_ms = 7\nbrokers = \"file:1\"\n",
        )
        .expect("write");
        let loaded = AgentConfig::layers(
            Some(&file),
            env(&[
                ("EDGE_AGENT_KAFKA__LINGER_MS", "9"),
                ("EDGE_AGENT_SERVER__LISTEN", "127.0.0.1:2"),
                ("EDGE_AGENT_TOPICS__PRODUCT_VIEW__NAME", "views"),
                (
                    "EDGE_AGENT_CORS__ALLOWED_ORIGINS",
                    "https://a.example, https://b.example",
                ),
                ("EDGE_AGENT_RATE_LIMIT__GLOBAL_PER_SEC", "500"),
                ("EDGE_AGENT_BUFFER__DIR", "/var/spool/agent"),
                ("EDGE_AGENT_BUFFER__TYPE", "sled"),
                ("EDGE_AGENT_CREATE_TOPICS", "true"),
            ]),
            &Overrides {
                listen: Some("127.0.0.1:3".to_owned()),
                log_format: Some(LogFormat::Json),
                ..Overrides::default()
            },
        )
        .expect("loads");
        assert!(loaded.deprecations().is_empty());
        let config = &loaded.config;
        assert_eq!(config.source, "shop");
        assert_eq!(config.server.ack_timeout_ms, 5);
        assert_eq!(config.kafka.linger_ms, 9);
        assert_eq!(config.kafka.brokers, "file:1");
        assert_eq!(config.server.listen, "127.0.0.1:3");
        assert_eq!(config.topics.product_view.name, "views");
        assert_eq!(config.cors.allowed_origins.len(), 2);
        assert_eq!(config.rate_limit.global_per_sec, 500);
        assert_eq!(config.buffer.kind, BufferType::Sled);
        assert_eq!(config.log.format, LogFormat::Json);
        assert!(config.create_topics);
        use ingest_common::Origin;
        assert_eq!(loaded.origin("source"), Origin::File(file.clone()));
        assert_eq!(
            loaded.origin("kafka.linger_ms"),
            Origin::Env("EDGE_AGENT_KAFKA__LINGER_MS".into())
        );
        assert_eq!(
            loaded.origin("server.listen"),
            Origin::Flag("--listen".into())
        );
        assert_eq!(
            loaded.origin("log.format"),
            Origin::Flag("--log-format".into())
        );
        assert_eq!(loaded.origin("server.max_connections"), Origin::Default);

        // Validation errors name the origin of the key.
        let loaded = AgentConfig::layers(
            None,
            env(&[("EDGE_AGENT_SERVER__MAX_HEAD_BYTES", "10")]),
            &Overrides::default(),
        )
        .expect("loads");
        let err = loaded.explain(loaded.config.validate().expect_err("too small"));
        assert_eq!(
            err.to_string(),
            "invalid configuration `server.max_head_bytes` (from environment variable EDGE_AGENT_SERVER__MAX_HEAD_BYTES): must be at least 8192"
        );
    }

    #[test]
    fn the_buffer_dir_flag_keeps_a_configured_disk_engine() {
        let config = AgentConfig::load(
            None,
            env(&[("EDGE_AGENT_BUFFER__TYPE", "sled")]),
            &Overrides {
                buffer_dir: Some("/tmp/spool".into()),
                ..Overrides::default()
            },
        )
        .expect("loads");
        assert_eq!(config.buffer.kind, BufferType::Sled);
    }

    #[test]
    fn every_agent_key_is_documented_and_every_documented_key_exists() {
        let doc = include_str!("../../docs/edge-agent.md");
        let section = ingest_common::layers::markdown_section(doc, "## Configuration", "## ")
            .expect("the configuration section");
        let mut config = AgentConfig::default();
        config.tls.cert_file = Some("/c".into());
        config.tls.key_file = Some("/k".into());
        config.tls.client_ca_file = Some("/ca".into());
        config.auth.keys_file = Some("/keys".into());
        // The ingest sections are documented (and checked) in docs/configuration.md.
        let ingest: std::collections::BTreeSet<String> =
            ingest_common::layers::leaf_keys(&IngestConfig::default())
                .into_iter()
                .map(|k| k.split('.').next().unwrap_or_default().to_owned())
                .collect();
        let in_code = ingest_common::layers::leaf_keys(&config)
            .into_iter()
            .filter(|k| !ingest.contains(k.split('.').next().unwrap_or_default()));
        if let Err(drift) =
            ingest_common::layers::check_documented("docs/edge-agent.md", section, in_code)
        {
            panic!("{drift}");
        }
    }

    #[test]
    fn bad_input_names_the_key() {
        let err = AgentConfig::load(
            None,
            env(&[("EDGE_AGENT_KAFKA_LINGER_MS", "soon")]),
            &Overrides::default(),
        )
        .expect_err("not a number");
        assert!(
            err.to_string().contains("EDGE_AGENT_KAFKA_LINGER_MS"),
            "{err}"
        );
        let err = AgentConfig::load(
            None,
            env(&[("EDGE_AGENT_NOPE", "1")]),
            &Overrides::default(),
        )
        .expect_err("unknown");
        assert!(
            err.to_string().contains("names no configuration key"),
            "{err}"
        );

        let mut config = AgentConfig::default();
        config.server.listen = "localhost".to_owned();
        assert!(config
            .validate()
            .expect_err("addr")
            .to_string()
            .contains("server.listen"));
        let mut config = AgentConfig::default();
        config.auth.keys.push(ApiKey::server("shop", "short"));
        assert!(config
            .validate()
            .expect_err("key")
            .to_string()
            .contains("auth.keys[0].key"));
        let mut config = AgentConfig::default();
        config.tls.cert_file = Some("/c.pem".into());
        assert!(config
            .validate()
            .expect_err("tls")
            .to_string()
            .contains("tls.cert_file"));
        let mut config = AgentConfig::default();
        config.cors.allowed_origins = vec!["shop.example".to_owned()];
        assert!(config
            .validate()
            .expect_err("cors")
            .to_string()
            .contains("cors.allowed_origins"));
        let mut config = AgentConfig::default();
        config.server.max_head_bytes = MIN_HEAD_BYTES - 1;
        assert!(config
            .validate()
            .expect_err("head")
            .to_string()
            .contains("server.max_head_bytes"));
    }

    /// Browser keys need origins, server keys have none; the socket mode is octal; the
    /// admin listener and the trusted proxies are addresses.
    #[test]
    fn access_settings_are_checked() {
        let refused = |change: &dyn Fn(&mut AgentConfig), key: &str| {
            let mut config = AgentConfig::default();
            change(&mut config);
            let err = config.validate().expect_err(key).to_string();
            assert!(err.contains(key), "{key}: {err}");
        };
        let browser = |origins: &[&str]| ApiKey {
            kind: KeyKind::Browser,
            origins: origins.iter().map(|o| (*o).to_owned()).collect(),
            ..ApiKey::server("shop", "pk-0123456789abcdef")
        };
        refused(&|c| c.auth.keys.push(browser(&[])), "auth.keys[0].origins");
        refused(
            &|c| c.auth.keys.push(browser(&["https://shop.example/cart"])),
            "auth.keys[0].origins",
        );
        refused(
            &|c| c.auth.keys.push(browser(&["*"])),
            "auth.keys[0].origins",
        );
        refused(
            &|c| {
                let mut key = ApiKey::server("shop", "sk-0123456789abcdef");
                key.origins = vec!["https://shop.example".to_owned()];
                c.auth.keys.push(key);
            },
            "auth.keys[0].origins",
        );
        for mode in ["rw", "0999", "01777", ""] {
            refused(
                &|c| c.server.unix_socket_mode = mode.to_owned(),
                "server.unix_socket_mode",
            );
        }
        refused(
            &|c| c.server.admin_listen = "localhost:9090".to_owned(),
            "server.admin_listen",
        );
        refused(
            &|c| c.server.admin_listen = c.server.listen.clone(),
            "server.admin_listen",
        );
        refused(
            &|c| c.server.trusted_proxies = vec!["10.0.0.0/40".to_owned()],
            "server.trusted_proxies",
        );
        let client = |name: &str| TlsClient {
            name: name.to_owned(),
            source: "shop".to_owned(),
        };
        refused(&|c| c.tls.clients.push(client("a.internal")), "tls.clients");
        let with_tls = |c: &mut AgentConfig, name: &str| {
            c.tls.cert_file = Some("/c".into());
            c.tls.key_file = Some("/k".into());
            c.tls.client_ca_file = Some("/ca".into());
            c.tls.clients.push(client(name));
        };
        refused(&|c| with_tls(c, "10.0.0.1"), "tls.clients[0].name");
        refused(&|c| with_tls(c, "not a name"), "tls.clients[0].name");
        refused(
            &|c| {
                with_tls(c, "a.internal");
                c.tls.client_ca_file = None;
            },
            "tls.clients",
        );

        let mut config = AgentConfig::default();
        config
            .auth
            .keys
            .push(browser(&["https://shop.example", "http://localhost:3000"]));
        config.server.unix_socket_mode = "0o600".to_owned();
        config.server.admin_listen = "127.0.0.1:9090".to_owned();
        config.server.trusted_proxies = vec!["10.0.0.0/8".to_owned(), "fd00::1".to_owned()];
        let settings = config.validate().expect("valid");
        assert_eq!(settings.unix_socket_mode, 0o600);
        assert_eq!(
            settings.admin_listen,
            Some("127.0.0.1:9090".parse().expect("addr"))
        );
        assert_eq!(settings.trusted_proxies.len(), 2);
        assert_eq!(
            AgentConfig::default()
                .validate()
                .expect("default")
                .unix_socket_mode,
            0o660
        );
    }

    #[test]
    fn buffer_dir_flag_turns_the_disk_buffer_on_and_secrets_are_masked() {
        let mut config = AgentConfig::load(
            None,
            Vec::new(),
            &Overrides {
                buffer_dir: Some("/tmp/spool".into()),
                ..Overrides::default()
            },
        )
        .expect("loads");
        assert_eq!(config.buffer.kind, BufferType::Log);
        config
            .auth
            .keys
            .push(ApiKey::server("shop", "0123456789abcdef-secret"));
        config
            .kafka
            .properties
            .insert("sasl.password".to_owned(), "hunter2".to_owned());
        let shown = toml::to_string(&config.redacted()).expect("toml");
        assert!(
            !shown.contains("secret") && !shown.contains("hunter2"),
            "{shown}"
        );
        assert!(!format!("{config:?}").contains("hunter2"));
        assert!(!format!("{config:?}").contains("0123456789abcdef-secret"));
    }
}
