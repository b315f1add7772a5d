//! `processor`: see the library documentation and `docs/processor.md`.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use processor::{Overrides, ProcessorConfig};

/// Consumes the event topics and serves real-time analytics.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// TOML configuration file.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// HTTP API address (overrides `listen`).
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// Kafka bootstrap servers (overrides `kafka.brokers`).
    #[arg(long, value_name = "LIST")]
    brokers: Option<String>,
    /// PostgreSQL URL (overrides `postgres.url`).
    #[arg(long, value_name = "URL")]
    postgres: Option<String>,
    /// Redis URL (overrides `redis.url`).
    #[arg(long, value_name = "URL")]
    redis: Option<String>,
    /// Validate the configuration, print it (secrets masked) and exit.
    #[arg(long)]
    check_config: bool,
}

// mimalloc for Rust's allocations, and (built with its `override` feature) for the C
// libraries' too, librdkafka's included: glibc's allocator handles the hot path's
// cross-thread frees poorly. See docs/decisions.md, 14 and 17.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let file = match &args.config {
        Some(path) => Some(
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?,
        ),
        None => None,
    };
    let overrides = Overrides {
        listen: args.listen.clone(),
        brokers: args.brokers.clone(),
        postgres: args.postgres.clone(),
        redis: args.redis.clone(),
    };
    let config = ProcessorConfig::layered(file.as_deref(), std::env::vars(), &overrides)?;
    let settings = config.validate()?;
    if args.check_config {
        print!("{}", config.masked_toml());
        return Ok(());
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // A log line that cannot be written is dropped; reporting it would panic.
        .log_internal_errors(false)
        .init();
    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .context("installing the Prometheus recorder")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async move {
        let (stop, shutdown) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("signal received: stopping");
            let _ = stop.send(true);
        });
        processor::run(settings, metrics, shutdown).await
    })?;
    Ok(())
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {},
                    _ = term.recv() => {},
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
