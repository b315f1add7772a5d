//! # edge-agent
//!
//! The HTTP sidecar for storefronts: takes e-commerce events over local HTTP (TCP,
//! optionally TLS, or a Unix socket; HTTP/1.1 and HTTP/2), and hands them to
//! [`ingest_core`], which validates, batches, buffers and delivers them to Kafka. All
//! event logic is `ingest-core`'s; this crate is the HTTP layer: the contract in
//! `openapi/edge-agent.yaml`, API keys, rate limits, CORS, body limits and timeouts,
//! acknowledgement levels, metrics, health, and a graceful shutdown.
//!
//! ```text
//! listener (TCP/TLS/UDS) → hyper (h1/h2) → Api::serve: route → keys → Ingest-Ack →
//!   media type → body (bounded, deadline, decompressed) → rate limit →
//!   Ingestor::submit / submit_batch → Receipt::wait(level) → answer
//! ```

pub mod api;
pub mod auth;
pub mod body;
pub mod buffer_cmd;
pub mod client;
pub mod config;
pub mod cors;
pub mod flags;
pub mod intake;
pub mod rate_limit;
pub mod response;
pub mod server;
pub mod telemetry;
pub mod tls;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use ingest_core::{Ingestor, ShutdownReport};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

use crate::api::{Api, Role};
use crate::auth::ApiKeys;
use crate::config::AgentSettings;
use crate::cors::Cors;
use crate::rate_limit::RateLimiter;
use crate::server::{Listener, Server};
use crate::telemetry::RequestMetrics;

/// Connections the admin listener serves at once: probes and scrapers, a handful.
const ADMIN_MAX_CONNECTIONS: usize = 64;

/// Registers the schemas of the Avro event types with the registry, each checked
/// against its subject's latest schema at the configured compatibility; their ids.
///
/// # Errors
///
/// An unreachable registry, or its refusal (an incompatible schema: the fields that
/// break it are named).
async fn register_avro(
    avro: &config::AvroSettings,
    ingest: &ingest_core::Settings,
) -> anyhow::Result<ingest_core::avro::AvroTopics> {
    let registry = ingest_common::secret::mask_url(&avro.registry_url);
    let client = ingest_core::avro::RegistryClient::new(&avro.registry_url, avro.timeout, 16)
        .with_context(|| format!("the schema registry client for {registry}"))?;
    let topics: Vec<(ingest_core::EventKind, &str)> = avro
        .kinds
        .iter()
        .map(|kind| (*kind, ingest.topic(*kind)))
        .collect();
    let registered = ingest_core::avro::AvroTopics::register(&client, &topics, avro.compatibility)
        .await
        .with_context(|| format!("registering the Avro schemas with the schema registry at {registry} (avro.registry_url)"))?;
    for (kind, topic) in &topics {
        tracing::info!(
            event_type = kind.as_str(),
            topic,
            schema_id = registered.id(*kind),
            compatibility = avro.compatibility.as_str(),
            "Avro output"
        );
    }
    Ok(registered)
}

/// Runs the agent until `shutdown` completes, then stops taking connections, lets
/// in-flight requests finish, and shuts the ingestor down (delivering what it can and
/// keeping the rest in the disk buffer), all within `settings.shutdown_timeout`.
///
/// # Errors
///
/// When a listener cannot be bound, a TLS or key file cannot be read, or the ingestor
/// cannot start (e.g. its disk buffer cannot be opened).
pub async fn run(
    settings: AgentSettings,
    prometheus: Option<PrometheusHandle>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<ShutdownReport> {
    let keys = ApiKeys::load(&settings.keys, settings.keys_file.as_deref())?;
    let flags = match &settings.flags_file {
        Some(path) => {
            let flags = flags::Flags::load(path)
                .map_err(anyhow::Error::msg)
                .context("reading the feature flags (flags.file)")?;
            metrics::gauge!("edge_flags").set(flags.get().len() as f64);
            flags.watch(path.clone(), settings.flags_reload_interval);
            Some(flags)
        }
        None => None,
    };
    let tls = settings.tls.as_ref().map(tls::acceptor).transpose()?;
    let client_names = settings
        .tls
        .as_ref()
        .map(tls::ClientNames::new)
        .unwrap_or_default();
    let mut listeners = Vec::new();
    if let Some(addr) = settings.listen {
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding {addr}"))?;
        tracing::info!(address = %listener.local_addr()?, tls = tls.is_some(), "listening on TCP");
        listeners.push(Listener::Tcp(listener));
    }
    if let Some(path) = &settings.unix_socket {
        listeners.push(Listener::unix(path.clone(), settings.unix_socket_mode)?);
        tracing::info!(path = %path.display(), mode = format!("{:o}", settings.unix_socket_mode), "listening on a Unix socket");
    }
    let admin_listener = match settings.admin_listen {
        Some(addr) => {
            let listener = TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding the admin listener {addr}"))?;
            tracing::info!(address = %listener.local_addr()?, "admin listener (/metrics, /health) on TCP");
            Some(Listener::Tcp(listener))
        }
        None => None,
    };
    if settings.create_topics {
        for status in ingest_core::ensure_topics(&settings.ingest, Duration::from_secs(60))
            .await
            .context("creating the topics")?
        {
            tracing::info!(
                topic = %status.name,
                partitions = status.partitions,
                replication_factor = status.replication_factor,
                created = status.created,
                "topic ready"
            );
        }
    }
    let mut builder = Ingestor::builder().config(settings.ingest.config().clone());
    if let Some(avro) = &settings.avro {
        builder = builder.avro_topics(register_avro(avro, &settings.ingest).await?);
    }
    let ingestor = builder.build().context("starting the ingestor")?;
    if let Some(handle) = &prometheus {
        ingest_common::telemetry::spawn_upkeep(handle.clone());
    }
    let limiter = RateLimiter::new(&settings.rate_limit);
    if limiter.enabled() {
        let limiter = limiter.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            loop {
                tick.tick().await;
                limiter.housekeeping();
            }
        });
    }
    tracing::info!(
        api_keys = keys.len(),
        rate_limits = limiter.enabled(),
        disk_buffer = settings.ingest.has_disk_buffer(),
        "edge agent ready"
    );
    let cors = Cors::new(&settings.cors, keys.browser_origins());
    let api = Arc::new(Api {
        ingestor: ingestor.clone(),
        keys,
        limiter,
        cors,
        flags,
        prometheus,
        metrics: RequestMetrics::new(),
        max_body_bytes: settings.max_body_bytes,
        body_budget: body::BodyBudget::new(settings.max_body_memory_bytes),
        decompressors: body::Decompressors::start(settings.max_concurrent_decompressions)
            .context("starting the decompression threads")?,
        body_timeout: settings.body_timeout,
        ack_timeout: settings.ack_timeout,
        retry_after_secs: settings.retry_after_secs,
        trusted_proxies: settings.trusted_proxies.clone(),
    });
    let server = Arc::new(Server {
        api,
        connections: Arc::new(Semaphore::new(settings.max_connections)),
        header_timeout: settings.header_timeout,
        idle_timeout: settings.idle_timeout,
        http2_max_concurrent_streams: settings.http2_max_concurrent_streams,
        max_head_bytes: settings.max_head_bytes,
        tls,
        client_names,
        role: if admin_listener.is_some() {
            Role::Public
        } else {
            Role::All
        },
    });
    let (stop, stopped) = watch::channel(false);
    // In-flight requests get half the shutdown time; the ingestor the rest.
    let drain = settings.shutdown_timeout / 2;
    let mut tasks: Vec<_> = listeners
        .into_iter()
        .map(|listener| tokio::spawn(server.clone().run(listener, stopped.clone(), drain)))
        .collect();
    if let Some(listener) = admin_listener {
        // Connection slots of its own: probes and scrapes get through while the public
        // listener is full. Plain HTTP, no TLS: it is meant for a private network.
        let admin = Arc::new(Server {
            api: server.api.clone(),
            connections: Arc::new(Semaphore::new(ADMIN_MAX_CONNECTIONS)),
            header_timeout: settings.header_timeout,
            idle_timeout: settings.idle_timeout,
            http2_max_concurrent_streams: settings.http2_max_concurrent_streams,
            max_head_bytes: settings.max_head_bytes,
            tls: None,
            client_names: tls::ClientNames::default(),
            role: Role::Admin,
        });
        tasks.push(tokio::spawn(admin.run(listener, stopped.clone(), drain)));
    }

    shutdown.await;
    let started = Instant::now();
    tracing::info!("shutting down: no new connections, finishing requests in flight");
    let _ = stop.send(true);
    for task in tasks {
        let _ = task.await;
    }
    let remaining = settings.shutdown_timeout.saturating_sub(started.elapsed());
    let report = ingestor.shutdown(remaining).await?;
    tracing::info!(
        undelivered = report.undelivered,
        kept_in_buffer = report.kept_in_buffer,
        lost = report.lost(),
        elapsed = ?started.elapsed(),
        "edge agent stopped"
    );
    Ok(report)
}
