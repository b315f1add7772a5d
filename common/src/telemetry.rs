//! Log and metrics setup shared by the binaries (feature `telemetry`).
//!
//! The Prometheus recorder is installed without its HTTP listener (each binary serves
//! `/metrics` itself), so nothing drains histogram samples into their buckets unless
//! [`spawn_upkeep`] runs: without it every sample is kept until a scrape, and memory
//! grows without bound while nobody scrapes.

use std::ffi::OsStr;
use std::io::IsTerminal as _;
use std::time::Duration;

use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

/// Histogram buckets for latencies in seconds, 50 µs to 10 s.
pub const LATENCY_BUCKETS: [f64; 17] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0,
];

/// How often [`spawn_upkeep`] drains histogram samples.
pub const UPKEEP_INTERVAL: Duration = Duration::from_secs(1);

/// Starts logging to stderr with `filter` (a `tracing` filter such as `info` or
/// `edge_agent=debug`; `RUST_LOG` overrides it; an invalid one falls back to `info`),
/// one JSON object per line when `json`. Text lines are coloured only when stderr is a
/// terminal and `NO_COLOR` is unset or empty ([`use_colours`]): a container's log
/// collector would store the escape codes. Does nothing when a subscriber is installed
/// already.
///
/// A line that cannot be written (stderr on a full disk, a closed pipe) is lost without
/// a word: the formatter's own report of it would go through `eprintln!`, which panics
/// when stderr fails, and a panic aborts the process with the events it holds.
pub fn init_logs(filter: &str, json: bool) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(filter))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(use_colours(
            std::io::stderr().is_terminal(),
            std::env::var_os("NO_COLOR").as_deref(),
        ))
        .log_internal_errors(false);
    let _ = if json {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
}

/// Whether log lines get ANSI colours: only on a terminal, and not when `no_color` (the
/// `NO_COLOR` environment variable, <https://no-color.org>) is set to a non-empty value.
pub fn use_colours(is_terminal: bool, no_color: Option<&OsStr>) -> bool {
    is_terminal && no_color.is_none_or(OsStr::is_empty)
}

/// Installs the Prometheus recorder (before anything resolves metric handles, so they
/// attach to it) and returns the handle that renders `/metrics`. Metrics whose names
/// end in `_seconds` get [`LATENCY_BUCKETS`] when `latency_buckets`; otherwise
/// histograms are rendered as summaries.
///
/// # Errors
///
/// When another recorder is installed already.
pub fn install_prometheus(latency_buckets: bool) -> Result<PrometheusHandle, BuildError> {
    let mut builder = PrometheusBuilder::new();
    if latency_buckets {
        builder = builder
            .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), &LATENCY_BUCKETS)?;
    }
    builder.install_recorder()
}

/// Drains histogram samples every [`UPKEEP_INTERVAL`] on the current tokio runtime, for
/// as long as the runtime runs. Call it once, right after [`install_prometheus`].
pub fn spawn_upkeep(handle: PrometheusHandle) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(UPKEEP_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            handle.run_upkeep();
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colours_only_on_a_terminal_without_no_color() {
        assert!(use_colours(true, None));
        assert!(
            use_colours(true, Some(OsStr::new(""))),
            "an empty NO_COLOR is unset"
        );
        assert!(!use_colours(true, Some(OsStr::new("1"))));
        assert!(
            !use_colours(false, None),
            "a pipe or a container's log gets none"
        );
        assert!(!use_colours(false, Some(OsStr::new("1"))));
    }
}
