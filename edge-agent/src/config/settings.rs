//! Validation of an [`AgentConfig`] into the [`AgentSettings`] the agent runs on: every
//! value checked, no file read (the key file and the TLS files are read when the agent
//! starts).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ingest_core::compatibility::Compatibility;
use ingest_core::{EventKind, Settings};

use super::{
    invalid, AgentConfig, ApiKey, ConfigError, CorsConfig, KeyKind, LogConfig, RateLimitConfig,
    MIN_HEAD_BYTES,
};
use crate::client::IpNet;

impl AgentConfig {
    /// Checks every value and builds the settings the agent runs on. Reads no file
    /// (`auth.keys_file` and the TLS files are read when the agent starts).
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the first offending key.
    pub fn validate(&self) -> Result<AgentSettings, ConfigError> {
        let ingest = self.ingest().validate()?;
        let avro = self.avro_settings()?;
        if self.flags.reload_interval_ms == 0 {
            return Err(invalid(
                "flags.reload_interval_ms",
                "must be greater than 0",
            ));
        }
        let server = &self.server;
        let listen = if server.listen.trim().is_empty() {
            None
        } else {
            Some(server.listen.trim().parse::<SocketAddr>().map_err(|e| {
                invalid(
                    "server.listen",
                    format!("{:?} is not an IP:port address: {e}", server.listen),
                )
            })?)
        };
        let unix_socket = (!server.unix_socket.trim().is_empty())
            .then(|| PathBuf::from(server.unix_socket.trim()));
        if listen.is_none() && unix_socket.is_none() {
            return Err(invalid(
                "server.listen",
                "nothing to listen on: set server.listen or server.unix_socket",
            ));
        }
        for (key, value) in [
            ("server.max_connections", server.max_connections as u64),
            ("server.header_timeout_ms", server.header_timeout_ms),
            ("server.idle_timeout_ms", server.idle_timeout_ms),
            (
                "server.http2_max_concurrent_streams",
                u64::from(server.http2_max_concurrent_streams),
            ),
            ("server.body_timeout_ms", server.body_timeout_ms),
            ("server.max_body_bytes", server.max_body_bytes as u64),
            ("server.ack_timeout_ms", server.ack_timeout_ms),
            ("server.shutdown_timeout_ms", server.shutdown_timeout_ms),
        ] {
            if value == 0 {
                return Err(invalid(key, "must be greater than 0"));
            }
        }
        if server.max_body_memory_bytes < server.max_body_bytes {
            return Err(invalid(
                "server.max_body_memory_bytes",
                format!(
                    "must be at least server.max_body_bytes ({})",
                    server.max_body_bytes
                ),
            ));
        }
        if server.max_head_bytes < MIN_HEAD_BYTES {
            return Err(invalid(
                "server.max_head_bytes",
                format!("must be at least {MIN_HEAD_BYTES}"),
            ));
        }
        let tls = match (&self.tls.cert_file, &self.tls.key_file) {
            (Some(cert), Some(key)) => Some(TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
                client_ca: self.tls.client_ca_file.clone(),
                clients: self.tls_clients()?,
            }),
            (None, None) if self.tls.client_ca_file.is_none() => None,
            _ => return Err(invalid(
                "tls.cert_file",
                "tls.cert_file and tls.key_file go together (and tls.client_ca_file needs both)",
            )),
        };
        if tls.is_none() && !self.tls.clients.is_empty() {
            return Err(invalid(
                "tls.clients",
                "needs TLS with client certificates (tls.cert_file, tls.key_file, tls.client_ca_file)",
            ));
        }
        if tls.is_some() && listen.is_none() {
            return Err(invalid(
                "tls.cert_file",
                "TLS needs server.listen (it applies to TCP)",
            ));
        }
        let mut seen = BTreeMap::new();
        for (i, key) in self.auth.keys.iter().enumerate() {
            check_key(&format!("auth.keys[{i}]"), key)?;
            if seen.insert(key.key.clone(), i).is_some() {
                return Err(invalid(
                    &format!("auth.keys[{i}].key"),
                    "the same key is listed twice",
                ));
            }
        }
        for origin in &self.cors.allowed_origins {
            if origin != "*" {
                check_origin("cors.allowed_origins", origin)?;
            }
        }
        let unix_socket_mode = parse_mode(&server.unix_socket_mode)?;
        let admin_listen = if server.admin_listen.trim().is_empty() {
            None
        } else {
            Some(
                server
                    .admin_listen
                    .trim()
                    .parse::<SocketAddr>()
                    .map_err(|e| {
                        invalid(
                            "server.admin_listen",
                            format!("{:?} is not an IP:port address: {e}", server.admin_listen),
                        )
                    })?,
            )
        };
        if admin_listen.is_some() && admin_listen == listen {
            return Err(invalid(
                "server.admin_listen",
                "must differ from server.listen",
            ));
        }
        let trusted_proxies = server
            .trusted_proxies
            .iter()
            .map(|text| {
                text.parse::<IpNet>()
                    .map_err(|why| invalid("server.trusted_proxies", format!("{text:?}: {why}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(AgentSettings {
            listen,
            unix_socket,
            unix_socket_mode,
            admin_listen,
            trusted_proxies,
            tls,
            max_connections: server.max_connections,
            header_timeout: Duration::from_millis(server.header_timeout_ms),
            idle_timeout: Duration::from_millis(server.idle_timeout_ms),
            http2_max_concurrent_streams: server.http2_max_concurrent_streams,
            max_head_bytes: server.max_head_bytes,
            body_timeout: Duration::from_millis(server.body_timeout_ms),
            max_body_bytes: server.max_body_bytes,
            max_body_memory_bytes: server.max_body_memory_bytes,
            max_concurrent_decompressions: match server.max_concurrent_decompressions {
                0 => std::thread::available_parallelism()
                    .map_or(1, |n| n.get() / 2)
                    .max(1),
                n => n,
            },
            ack_timeout: Duration::from_millis(server.ack_timeout_ms),
            shutdown_timeout: Duration::from_millis(server.shutdown_timeout_ms),
            retry_after_secs: server.retry_after_secs,
            keys: self.auth.keys.clone(),
            keys_file: self.auth.keys_file.clone(),
            rate_limit: self.rate_limit.clone(),
            cors: self.cors.clone(),
            flags_file: (!self.flags.file.trim().is_empty())
                .then(|| PathBuf::from(self.flags.file.trim())),
            flags_reload_interval: Duration::from_millis(self.flags.reload_interval_ms),
            log: self.log.clone(),
            create_topics: self.create_topics,
            avro,
            ingest,
        })
    }

    /// `tls.clients`, checked: DNS names, storefronts, and a client CA to verify them.
    fn tls_clients(&self) -> Result<Vec<(String, String)>, ConfigError> {
        let clients = &self.tls.clients;
        if !clients.is_empty() && self.tls.client_ca_file.is_none() {
            return Err(invalid(
                "tls.clients",
                "needs tls.client_ca_file: only verified certificates name a storefront",
            ));
        }
        clients
            .iter()
            .enumerate()
            .map(|(i, client)| {
                let name = client.name.trim().to_ascii_lowercase();
                let dns = matches!(
                    rustls_pki_types::ServerName::try_from(name.as_str()),
                    Ok(rustls_pki_types::ServerName::DnsName(_))
                );
                if !dns {
                    return Err(invalid(
                        &format!("tls.clients[{i}].name"),
                        format!("{:?} is not a DNS name", client.name),
                    ));
                }
                if client.source.trim().is_empty() {
                    return Err(invalid(
                        &format!("tls.clients[{i}].source"),
                        "must not be empty",
                    ));
                }
                Ok((name, client.source.trim().to_owned()))
            })
            .collect()
    }

    fn avro_settings(&self) -> Result<Option<AvroSettings>, ConfigError> {
        let avro = &self.avro;
        let url = avro.registry_url.trim();
        if avro.types.is_empty() {
            return Ok(None);
        }
        if url.is_empty() {
            return Err(invalid(
                "avro.registry_url",
                "must be set when avro.types lists event types",
            ));
        }
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(invalid(
                "avro.registry_url",
                format!(
                    "{:?} is not an http:// or https:// URL",
                    ingest_common::secret::mask_url(url)
                ),
            ));
        }
        let mut kinds = Vec::new();
        for name in &avro.types {
            let kind = EventKind::from_name(name.trim()).ok_or_else(|| {
                invalid(
                    "avro.types",
                    format!("{name:?} is not an event type (product_view, cart, purchase, search)"),
                )
            })?;
            if kinds.contains(&kind) {
                return Err(invalid("avro.types", format!("{name:?} is listed twice")));
            }
            kinds.push(kind);
        }
        let compatibility =
            Compatibility::from_name(avro.compatibility.trim()).ok_or_else(|| {
                invalid(
                    "avro.compatibility",
                    format!(
                        "{:?} is not one of backward, backward_transitive, forward, \
                     forward_transitive, full, full_transitive, none",
                        avro.compatibility
                    ),
                )
            })?;
        if avro.timeout_ms == 0 {
            return Err(invalid("avro.timeout_ms", "must be greater than 0"));
        }
        Ok(Some(AvroSettings {
            kinds,
            registry_url: url.trim_end_matches('/').to_owned(),
            compatibility,
            timeout: Duration::from_millis(avro.timeout_ms),
        }))
    }
}

/// Avro output, checked.
#[derive(Debug, Clone)]
pub struct AvroSettings {
    /// The event types written in Avro.
    pub kinds: Vec<EventKind>,
    /// The registry's API, without a trailing `/`.
    pub registry_url: String,
    /// The compatibility checked at start.
    pub compatibility: Compatibility,
    /// Time one request to the registry may take.
    pub timeout: Duration,
}

/// An `Origin` value: `scheme://host[:port]`, nothing after.
fn check_origin(at: &str, origin: &str) -> Result<(), ConfigError> {
    let rest = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"));
    match rest {
        Some(host) if !host.is_empty() && !host.contains(['/', '?', '#', ' ']) => Ok(()),
        _ => Err(invalid(
            at,
            format!("{origin:?} is not an origin (scheme://host[:port], no path)"),
        )),
    }
}

/// An octal file mode such as `0660` (`0o660` too), at most `0777`.
fn parse_mode(text: &str) -> Result<u32, ConfigError> {
    let digits = text.trim().trim_start_matches("0o");
    u32::from_str_radix(digits, 8)
        .ok()
        .filter(|mode| *mode <= 0o777 && !digits.is_empty())
        .ok_or_else(|| {
            invalid(
                "server.unix_socket_mode",
                format!("{text:?} is not an octal mode such as \"0660\""),
            )
        })
}

pub(crate) fn check_key(at: &str, key: &ApiKey) -> Result<(), ConfigError> {
    if key.key.len() < 16 {
        return Err(invalid(
            &format!("{at}.key"),
            "must be at least 16 characters",
        ));
    }
    if key.key.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid(
            &format!("{at}.key"),
            "must not contain spaces or control characters",
        ));
    }
    if key.source.trim().is_empty() {
        return Err(invalid(&format!("{at}.source"), "must not be empty"));
    }
    match key.kind {
        KeyKind::Browser if key.origins.is_empty() => Err(invalid(
            &format!("{at}.origins"),
            "a browser key needs the origins of the pages that use it",
        )),
        KeyKind::Browser => key
            .origins
            .iter()
            .try_for_each(|origin| check_origin(&format!("{at}.origins"), origin)),
        KeyKind::Server if !key.origins.is_empty() => Err(invalid(
            &format!("{at}.origins"),
            "only browser keys (kind = \"browser\") are bound to origins",
        )),
        KeyKind::Server => Ok(()),
    }
}

/// TLS files, read when the agent starts.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// Certificate chain (PEM).
    pub cert: PathBuf,
    /// Private key (PEM).
    pub key: PathBuf,
    /// CA certificates for client authentication (PEM).
    pub client_ca: Option<PathBuf>,
    /// Client certificates' DNS names (lower case) and the storefronts they send as.
    pub clients: Vec<(String, String)>,
}

/// The validated configuration the agent runs on.
#[derive(Debug, Clone)]
pub struct AgentSettings {
    /// TCP listener.
    pub listen: Option<SocketAddr>,
    /// Unix socket listener.
    pub unix_socket: Option<PathBuf>,
    /// Permissions of the Unix socket.
    pub unix_socket_mode: u32,
    /// The admin listener (`/metrics`, `/health/*`); `None`: served on the others.
    pub admin_listen: Option<SocketAddr>,
    /// Reverse proxies whose `X-Forwarded-For` names the client.
    pub trusted_proxies: Vec<IpNet>,
    /// TLS on the TCP listener.
    pub tls: Option<TlsFiles>,
    /// Connections served at once.
    pub max_connections: usize,
    /// Deadline for the request head (and for a new connection's first request).
    pub header_timeout: Duration,
    /// How long a connection may stay open with no request in flight.
    pub idle_timeout: Duration,
    /// Most concurrent HTTP/2 streams per connection.
    pub http2_max_concurrent_streams: u32,
    /// Largest HTTP/1 request head; the size of a connection's read buffer.
    pub max_head_bytes: usize,
    /// Deadline for the request body.
    pub body_timeout: Duration,
    /// Largest body as sent.
    pub max_body_bytes: usize,
    /// Bytes of bodies being received at once.
    pub max_body_memory_bytes: usize,
    /// Most bodies decompressed at once (0 in the file resolved to half the cores).
    pub max_concurrent_decompressions: usize,
    /// Longest wait for `persisted` / `delivered`.
    pub ack_timeout: Duration,
    /// Deadline of a shutdown.
    pub shutdown_timeout: Duration,
    /// `Retry-After` of 429 and 503.
    pub retry_after_secs: u64,
    /// API keys from the file.
    pub keys: Vec<ApiKey>,
    /// More API keys, read at start.
    pub keys_file: Option<PathBuf>,
    /// Rate limits.
    pub rate_limit: RateLimitConfig,
    /// CORS.
    pub cors: CorsConfig,
    /// The feature flags file, read at start and again when it changes.
    pub flags_file: Option<PathBuf>,
    /// How often the flags file is looked at.
    pub flags_reload_interval: Duration,
    /// Avro output; `None`: every topic in JSON.
    pub avro: Option<AvroSettings>,
    /// Logs.
    pub log: LogConfig,
    /// Create the topics at start.
    pub create_topics: bool,
    /// `ingest-core`'s settings.
    pub ingest: Settings,
}
