//! `processor`: see the library documentation and `docs/processor.md`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use processor::{Error, Overrides, ProcessorConfig};

/// Consumes the event topics and serves real-time analytics.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Configuration file: TOML, or JSON when its name ends in `.json`.
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
    /// Validate the configuration, print it (secrets masked, each value's origin) and
    /// exit.
    #[arg(long)]
    check_config: bool,
}

// mimalloc for Rust's allocations, and (built with its `override` feature) for the C
// libraries' too, librdkafka's included: glibc's allocator handles the hot path's
// cross-thread frees poorly. See docs/decisions.md, 14 and 17.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args = Args::parse();
    let overrides = Overrides {
        listen: args.listen.clone(),
        brokers: args.brokers.clone(),
        postgres: args.postgres.clone(),
        redis: args.redis.clone(),
    };
    let loaded = match ProcessorConfig::load(args.config.as_deref(), std::env::vars(), &overrides) {
        Ok(loaded) => loaded,
        Err(error) => {
            eprintln!("processor: {error}");
            return ExitCode::from(2);
        }
    };
    let settings = match loaded.config.validate() {
        Ok(settings) => settings,
        Err(Error::Config(error)) => {
            eprintln!("processor: {}", loaded.explain(error));
            return ExitCode::from(2);
        }
        Err(error) => {
            eprintln!("processor: {error}");
            return ExitCode::from(2);
        }
    };
    if args.check_config {
        return match loaded.check_config_report("processor", &loaded.config.masked()) {
            Ok(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("processor: {error}");
                ExitCode::from(1)
            }
        };
    }
    match run(settings) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            eprintln!("processor: {error:#}");
            ExitCode::from(1)
        }
    }
}

fn run(settings: processor::Settings) -> anyhow::Result<()> {
    ingest_common::telemetry::init_logs("info", false);
    let metrics = ingest_common::telemetry::install_prometheus(false)
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
