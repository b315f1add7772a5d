//! `edge-agent`: parse the command line and configuration, run, map the outcome to an
//! exit status (0 stopped cleanly, 1 failed or lost events at shutdown, 2 bad
//! configuration).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use edge_agent::buffer_cmd::{self, BufferAction};
use edge_agent::config::{AgentConfig, LogFormat, Overrides};
use edge_agent::telemetry;

/// How many tasks a runtime thread runs between two looks at the sockets (tokio's
/// default is 61). A connection with pipelined requests stays runnable for as long as
/// it has requests buffered; with the default, two such connections kept the threads
/// from seeing other clients' requests for up to a hundred milliseconds.
const EVENT_INTERVAL: u32 = 7;

/// The HTTP sidecar that takes e-commerce events and delivers them to Kafka.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// TOML configuration file (every key documented in docs/edge-agent.md).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// TCP address to listen on (`server.listen`).
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// Unix socket to listen on (`server.unix_socket`).
    #[arg(long, value_name = "PATH")]
    unix_socket: Option<String>,
    /// Kafka bootstrap brokers, `host:port,...` (`kafka.brokers`).
    #[arg(long, value_name = "LIST")]
    brokers: Option<String>,
    /// Turns the disk buffer on in DIR (`buffer.dir`, engine `log` unless configured).
    #[arg(long, value_name = "DIR")]
    buffer_dir: Option<PathBuf>,
    /// Log format: text or json (`log.format`).
    #[arg(long, value_name = "FORMAT", value_parser = parse_format)]
    log_format: Option<LogFormat>,
    /// Create the configured topics at start (`create_topics`).
    #[arg(long)]
    create_topics: bool,
    /// Validate the configuration, print it (secrets masked) and exit.
    #[arg(long)]
    check_config: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Offline tools for a disk buffer directory (while no agent uses it).
    Buffer {
        #[command(subcommand)]
        action: BufferAction,
        /// The buffer directory.
        #[arg(global = true, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

fn parse_format(value: &str) -> Result<LogFormat, String> {
    match value {
        "text" => Ok(LogFormat::Text),
        "json" => Ok(LogFormat::Json),
        other => Err(format!("{other:?}: expected text or json")),
    }
}

// mimalloc for Rust's allocations, and (built with its `override` feature) for the C
// libraries' too, librdkafka's included: glibc's allocator handles the hot path's
// cross-thread frees poorly. See docs/decisions.md, 14 and 17.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Buffer { action, dir }) = cli.command {
        let Some(dir) = dir else {
            eprintln!("edge-agent buffer: the buffer directory is required");
            return ExitCode::from(2);
        };
        return match buffer_cmd::run(action, &dir) {
            Ok(status) => ExitCode::from(u8::try_from(status).unwrap_or(1)),
            Err(error) => {
                eprintln!("edge-agent buffer: {error:#}");
                ExitCode::from(1)
            }
        };
    }
    let overrides = Overrides {
        listen: cli.listen,
        unix_socket: cli.unix_socket,
        brokers: cli.brokers,
        buffer_dir: cli.buffer_dir,
        log_format: cli.log_format,
        create_topics: cli.create_topics,
    };
    let loaded = match AgentConfig::layers(cli.config.as_deref(), std::env::vars(), &overrides) {
        Ok(loaded) => loaded,
        Err(error) => {
            eprintln!("edge-agent: {error}");
            return ExitCode::from(2);
        }
    };
    let settings = match loaded.config.validate() {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("edge-agent: {}", loaded.explain(error));
            return ExitCode::from(2);
        }
    };
    if cli.check_config {
        for deprecation in loaded.deprecations() {
            eprintln!("edge-agent: warning: {deprecation}");
        }
        return match loaded.check_config_report("edge-agent", &loaded.config.redacted()) {
            Ok(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("edge-agent: {error}");
                ExitCode::from(1)
            }
        };
    }
    telemetry::init_logs(&settings.log);
    for deprecation in loaded.deprecations() {
        tracing::warn!(
            variable = %deprecation.variable,
            replacement = %deprecation.replacement,
            "{deprecation}"
        );
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .event_interval(EVENT_INTERVAL)
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("edge-agent: starting the runtime: {error}");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(async {
        let prometheus = match ingest_common::telemetry::install_prometheus(true) {
            Ok(handle) => Some(handle),
            Err(error) => {
                tracing::error!(%error, "metrics recorder not installed; /metrics will be empty");
                None
            }
        };
        match edge_agent::run(settings, prometheus, stop_signal()).await {
            Ok(report) if report.lost() == 0 => ExitCode::SUCCESS,
            Ok(report) => {
                tracing::error!(lost = report.lost(), "events lost at shutdown");
                ExitCode::from(1)
            }
            Err(error) => {
                tracing::error!("{error:#}");
                eprintln!("edge-agent: {error:#}");
                ExitCode::from(1)
            }
        }
    })
}

/// Resolves on SIGTERM or SIGINT.
async fn stop_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot listen for SIGTERM/SIGINT; stop with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
    }
}
