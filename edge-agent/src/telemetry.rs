//! Logs (`tracing`, text or JSON) and metrics (Prometheus text format on `/metrics`).
//!
//! | name | type | labels | meaning |
//! |---|---|---|---|
//! | `edge_http_requests_total` | counter | `endpoint`, `status` | answered requests |
//! | `edge_http_request_duration_seconds` | histogram | `endpoint` | from the request head to the answer |
//! | `edge_http_received_bytes_total` | counter | `endpoint` | request body bytes as sent (before decompression) |
//! | `edge_http_connections` | gauge | | open connections |
//! | `edge_http_idle_closed_total` | counter | | connections closed for being idle |
//! | `edge_http_rejected_total` | counter | `endpoint`, `code` | requests refused (the error code of the answer) |
//!
//! The Prometheus recorder (with latency buckets for `_seconds` histograms) and its
//! upkeep task are set up by `ingest-common`'s `telemetry` module, shared with the
//! processor.
//!
//! Everything `ingest-core` exports (`ingest_*`: events accepted and rejected by reason,
//! delivery, queue, disk buffer, breaker) is on the same page.

use std::sync::OnceLock;
use std::time::Duration;

use metrics::{counter, histogram, Counter, Histogram};

use crate::config::{LogConfig, LogFormat};

/// Starts logging to stderr as `config` says (the workspace's one log setup,
/// [`ingest_common::telemetry::init_logs`]).
pub fn init_logs(config: &LogConfig) {
    ingest_common::telemetry::init_logs(&config.level, config.format == LogFormat::Json);
}

/// The endpoints, as metric labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `POST /api/events/product-view`.
    ProductView,
    /// `POST /api/events/cart`.
    Cart,
    /// `POST /api/events/purchase`.
    Purchase,
    /// `POST /api/events/search`.
    Search,
    /// `POST /api/events/batch`.
    Batch,
    /// `POST /v1/*`: Segment's tracking API.
    Segment,
    /// `POST /mp/collect`: GA4's Measurement Protocol.
    Ga4,
    /// `GET /api/flags`.
    Flags,
    /// `OPTIONS /api/events/*`.
    Preflight,
    /// `GET /metrics`.
    Metrics,
    /// `GET /health/*`.
    Health,
    /// Anything else.
    Other,
}

impl Endpoint {
    /// Whether browsers call it: such endpoints get CORS headers and have the request's
    /// `Origin` checked.
    pub const fn is_browser_facing(self) -> bool {
        matches!(
            self,
            Endpoint::ProductView
                | Endpoint::Cart
                | Endpoint::Purchase
                | Endpoint::Search
                | Endpoint::Batch
                | Endpoint::Segment
                | Endpoint::Ga4
                | Endpoint::Flags
        )
    }

    /// The label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Endpoint::ProductView => "product_view",
            Endpoint::Cart => "cart",
            Endpoint::Purchase => "purchase",
            Endpoint::Search => "search",
            Endpoint::Batch => "batch",
            Endpoint::Segment => "segment",
            Endpoint::Ga4 => "ga4",
            Endpoint::Flags => "flags",
            Endpoint::Preflight => "preflight",
            Endpoint::Metrics => "metrics",
            Endpoint::Health => "health",
            Endpoint::Other => "other",
        }
    }

    const ALL: [Endpoint; 12] = [
        Endpoint::ProductView,
        Endpoint::Cart,
        Endpoint::Purchase,
        Endpoint::Search,
        Endpoint::Batch,
        Endpoint::Segment,
        Endpoint::Ga4,
        Endpoint::Flags,
        Endpoint::Preflight,
        Endpoint::Metrics,
        Endpoint::Health,
        Endpoint::Other,
    ];

    const fn index(self) -> usize {
        self as usize
    }
}

/// The statuses of successful answers, whose request counters are looked up once and
/// kept (every other status is rare and looked up per answer).
const SUCCESS_STATUSES: [u16; 3] = [200, 202, 204];

/// Per-endpoint handles, resolved once.
pub struct RequestMetrics {
    duration: Vec<Histogram>,
    bytes: Vec<Counter>,
    /// `edge_http_requests_total` by endpoint and success status, registered on first
    /// use so that no series exists for a combination that never happens.
    successes: Vec<[OnceLock<Counter>; SUCCESS_STATUSES.len()]>,
}

impl RequestMetrics {
    /// Resolves the handles (after the recorder is installed).
    pub fn new() -> Self {
        RequestMetrics {
            duration: Endpoint::ALL
                .iter()
                .map(|e| histogram!("edge_http_request_duration_seconds", "endpoint" => e.as_str()))
                .collect(),
            bytes: Endpoint::ALL
                .iter()
                .map(|e| counter!("edge_http_received_bytes_total", "endpoint" => e.as_str()))
                .collect(),
            successes: Endpoint::ALL.iter().map(|_| Default::default()).collect(),
        }
    }

    /// Records one answered request.
    pub fn answered(&self, endpoint: Endpoint, status: u16, elapsed: Duration) {
        self.duration[endpoint.index()].record(elapsed.as_secs_f64());
        let requests = |status: u16| counter!("edge_http_requests_total", "endpoint" => endpoint.as_str(), "status" => status.to_string());
        match SUCCESS_STATUSES.iter().position(|&s| s == status) {
            Some(slot) => self.successes[endpoint.index()][slot]
                .get_or_init(|| requests(status))
                .increment(1),
            None => requests(status).increment(1),
        }
    }

    /// Records body bytes received.
    pub fn received(&self, endpoint: Endpoint, bytes: usize) {
        self.bytes[endpoint.index()].increment(bytes as u64);
    }

    /// Records a refused request.
    pub fn rejected(endpoint: Endpoint, code: &'static str) {
        counter!("edge_http_rejected_total", "endpoint" => endpoint.as_str(), "code" => code)
            .increment(1);
    }
}

impl Default for RequestMetrics {
    fn default() -> Self {
        Self::new()
    }
}
