//! The results the load tools write: one JSON object per line, so that `scripts/bench`
//! can collect every run of a session into one file and render BENCHMARKS.md from it.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::Write as _;

use serde::Serialize;

/// Latency percentiles of one run, in microseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Slowest request.
    pub max: u64,
}

/// How what Kafka holds compares with what the server acknowledged.
#[derive(Debug, Clone, Serialize)]
pub struct Verification {
    /// Distinct events the server acknowledged.
    pub acknowledged: u64,
    /// Distinct events of this run found in Kafka.
    pub in_kafka: u64,
    /// Acknowledged events not in Kafka: lost (must be 0).
    pub missing: u64,
    /// Extra copies of events in Kafka (at-least-once delivery allows them).
    pub duplicates: u64,
    /// Events in Kafka whose request did not get a success answer (timeouts, 503).
    pub unacknowledged_in_kafka: u64,
}

/// One HTTP load run.
#[derive(Debug, Clone, Serialize)]
pub struct LoadResult {
    /// Name of the configuration.
    pub label: String,
    /// TCP connections.
    pub connections: u64,
    /// Whether HTTP/2 (h2c) was spoken.
    pub http2: bool,
    /// Events per request.
    pub batch: u64,
    /// Whether bodies were gzip-compressed.
    pub gzip: bool,
    /// The `Ingest-Ack` header sent, if any.
    pub ack: Option<String>,
    /// Measured seconds (after warm-up).
    pub seconds: f64,
    /// Requests completed in the measured time.
    pub requests: u64,
    /// Of those, answered with a 2xx status.
    pub ok_requests: u64,
    /// Failed requests by cause (`status 503`, `request: ...`).
    pub errors: BTreeMap<String, u64>,
    /// Successful requests per second.
    pub requests_per_s: f64,
    /// Acknowledged events per second.
    pub events_per_s: f64,
    /// Acknowledged payload (uncompressed) in MB per second.
    pub mb_per_s: f64,
    /// Latency of all measured requests.
    pub latency_us: Latency,
    /// The Kafka check, when asked for.
    pub verification: Option<Verification>,
}

impl LoadResult {
    /// One human-readable line.
    pub fn summary(&self) -> String {
        let errors: u64 = self.errors.values().sum();
        let mut line = format!(
            "{}: {:.0} req/s, {:.0} events/s, {:.1} MB/s, p50 {} us, p99 {} us, p99.9 {} us, max {} us, {} errors",
            self.label,
            self.requests_per_s,
            self.events_per_s,
            self.mb_per_s,
            self.latency_us.p50,
            self.latency_us.p99,
            self.latency_us.p999,
            self.latency_us.max,
            errors
        );
        if errors > 0 {
            line.push_str(&format!(" {:?}", self.errors));
        }
        if let Some(v) = &self.verification {
            line.push_str(&format!(
                "; kafka: {} acknowledged, {} found, {} missing, {} duplicates, {} unacknowledged found",
                v.acknowledged, v.in_kafka, v.missing, v.duplicates, v.unacknowledged_in_kafka
            ));
        }
        line
    }

    /// Appends the result as one JSON line to `path`.
    pub fn append_to(&self, path: &str) -> std::io::Result<()> {
        append_json(path, self)
    }
}

/// Appends any result as one JSON line to `path`.
pub fn append_json(path: &str, value: &impl Serialize) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(value).map_err(std::io::Error::other)?;
    line.push(b'\n');
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?
        .write_all(&line)
}
