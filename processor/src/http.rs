//! The HTTP API (axum on hyper 1, HTTP/1.1): analytics, Prometheus metrics, health, and
//! the live page ([`crate::live_page`]) at `/`.
//! Errors answer `{"error":{"code","message","field"}}` like the edge agent's.
//!
//! [`router`] holds the routes; [`serve`] runs the accept loop around it, with the
//! connection bounds below and a draining stop. Another route is one more
//! `.route(..)`, or a `Router` merged into the one [`router`] returns.
//!
//! ## Bounds
//!
//! - Connections: at most `api.max_connections` served at once (beyond them clients
//!   wait in the listen backlog), each with `api.header_read_timeout_ms` to send its
//!   request headers.
//! - Analytics: at most `api.max_concurrent_queries` answers are computed at once; a
//!   request beyond them is answered 503 `overloaded` with `Retry-After` at once, not
//!   queued. Each answer costs bounded memory whatever the data ([`LiveView::snapshot`]).
//! - Recommendations: the user id (percent-decoded) must be 1 to 128 characters of
//!   UTF-8 without control characters, else 400 `invalid_user_id` before any query. The
//!   queries run on a [`StorePool`] of `api.postgres_connections` connections with
//!   `api.statement_timeout_ms`; a timeout or an unreachable database is 503
//!   `store_unavailable` with `Retry-After`.
//!
//! ## Decoding
//!
//! Query values are `application/x-www-form-urlencoded` (`+` is a space, `%XX` a
//! byte), path segments percent-encoded (`+` is itself). A `%` not followed by two hex
//! digits, or escapes that do not decode to UTF-8, are the client's error: 400 with the
//! parameter's code and a message saying so.
//!
//! ## Stopping
//!
//! When `shutdown` turns true the listener is closed at once (new connections are
//! refused), idle keep-alive connections are closed, and requests in flight get up to
//! `api.drain_timeout_ms` to be answered; connections still open then are cut.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, MethodRouter};
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::live::{LiveView, ReadLimits};
use crate::pipeline::Health;
use crate::report::{self, Window};
use crate::store_pool::StorePool;

/// The longest user id the recommendations endpoint accepts (characters), as the event
/// schema's.
pub const MAX_USER_ID_CHARS: usize = 128;

/// Seconds a client is asked to wait after a 503 (`Retry-After`).
const RETRY_AFTER_SECS: &str = "1";

/// The path below which the recommendations endpoint takes the (encoded) user id.
const RECOMMENDATIONS_PREFIX: &str = "/api/recommendations/";

/// What the handlers share.
pub struct ApiState {
    /// The live view.
    pub live: LiveView,
    /// Reporting currency.
    pub currency: String,
    /// What one analytics answer may hold (top list length, experiment pairs).
    pub limits: ReadLimits,
    /// Analytics answers computed at once (`api.max_concurrent_queries` permits).
    pub queries: tokio::sync::Semaphore,
    /// Products per recommendation answer.
    pub recommendations_top_n: usize,
    /// Partners per product recommendations draw on.
    pub recommendations_partners: usize,
    /// The API's own PostgreSQL connections (opened on first use, re-opened when lost).
    pub stores: StorePool,
    /// Prometheus registry.
    pub metrics: PrometheusHandle,
    /// Readiness.
    pub health: Arc<Health>,
}

/// The bounds of the accept loop ([`serve`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Connections served at once.
    pub max_connections: usize,
    /// Time a client has to send its request headers.
    pub header_read_timeout: Duration,
    /// Time requests in flight have to be answered after the stop signal.
    pub drain_timeout: Duration,
}

fn json(status: StatusCode, body: String) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

fn error(status: StatusCode, code: &str, message: &str, field: Option<&str>) -> Response {
    let mut detail = serde_json::json!({"code": code, "message": message});
    if let Some(field) = field {
        detail["field"] = serde_json::json!(field);
    }
    let body = serde_json::json!({ "error": detail });
    json(status, body.to_string())
}

/// 503 with `Retry-After`.
fn unavailable(code: &str, message: &str) -> Response {
    let mut response = error(StatusCode::SERVICE_UNAVAILABLE, code, message, None);
    response.headers_mut().insert(
        header::RETRY_AFTER,
        HeaderValue::from_static(RETRY_AFTER_SECS),
    );
    response
}

/// A request refused with 400: the error code, its message and the field at fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Invalid {
    code: &'static str,
    message: &'static str,
    field: &'static str,
}

impl Invalid {
    fn response(self) -> Response {
        error(
            StatusCode::BAD_REQUEST,
            self.code,
            self.message,
            Some(self.field),
        )
    }
}

/// Escapes that do not decode: a `%` without two hex digits, or bytes that are not
/// UTF-8.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct MalformedEncoding;

/// Decodes a percent-encoded component; with `plus_is_space` (query strings) `+` is a
/// space.
fn decode(text: &str, plus_is_space: bool) -> Result<String, MalformedEncoding> {
    let bytes = text.as_bytes();
    let well_formed = bytes.iter().enumerate().all(|(i, &b)| {
        b != b'%'
            || (bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
    });
    if !well_formed {
        return Err(MalformedEncoding);
    }
    let spaced;
    let text = if plus_is_space && text.contains('+') {
        spaced = text.replace('+', " ");
        &spaced
    } else {
        text
    };
    percent_encoding::percent_decode_str(text)
        .decode_utf8()
        .map(|decoded| decoded.into_owned())
        .map_err(|_| MalformedEncoding)
}

/// The decoded value of query parameter `name` (the first if repeated; a parameter
/// without `=` has the empty value). Names are compared decoded.
fn query_param(query: Option<&str>, name: &str) -> Option<Result<String, MalformedEncoding>> {
    query?
        .split('&')
        .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
        .find(|(key, _)| decode(key, true).is_ok_and(|key| key == name))
        .map(|(_, value)| decode(value, true))
}

/// The minute start at or before `unix_secs`.
fn floor_minute(unix_secs: i64) -> i64 {
    unix_secs.div_euclid(60) * 60
}

const INVALID_WINDOW: Invalid = Invalid {
    code: "invalid_window",
    message: "window must be 1m, 5m, 15m or 1h",
    field: "window",
};

const MALFORMED_WINDOW: Invalid = Invalid {
    code: "invalid_window",
    message: "window is not valid percent-encoding (%XX escapes decoding to UTF-8)",
    field: "window",
};

const INVALID_TO: Invalid = Invalid {
    code: "invalid_to",
    message: "to must be an RFC 3339 time",
    field: "to",
};

const MALFORMED_TO: Invalid = Invalid {
    code: "invalid_to",
    message: "to is not valid percent-encoding (%XX escapes decoding to UTF-8)",
    field: "to",
};

/// The window and its end (a minute start) an analytics request asks for; `now` (Unix
/// seconds) makes the default end, the minute after the current one.
fn analytics_request(query: Option<&str>, now: i64) -> Result<(Window, i64), Invalid> {
    let window = match query_param(query, "window") {
        None => Window::FiveMinutes,
        Some(Err(MalformedEncoding)) => return Err(MALFORMED_WINDOW),
        Some(Ok(w)) if w.is_empty() => Window::FiveMinutes,
        Some(Ok(w)) => Window::parse(&w).ok_or(INVALID_WINDOW)?,
    };
    let to = match query_param(query, "to") {
        None => floor_minute(now) + 60,
        Some(Err(MalformedEncoding)) => return Err(MALFORMED_TO),
        Some(Ok(text)) if text.is_empty() => floor_minute(now) + 60,
        Some(Ok(text)) => {
            let t =
                time::OffsetDateTime::parse(&text, &time::format_description::well_known::Rfc3339)
                    .map_err(|_| INVALID_TO)?;
            floor_minute(t.unix_timestamp())
        }
    };
    Ok((window, to))
}

async fn real_time(State(state): State<Arc<ApiState>>, RawQuery(query): RawQuery) -> Response {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let (window, to) = match analytics_request(query.as_deref(), now) {
        Ok(request) => request,
        Err(invalid) => return invalid.response(),
    };
    let Ok(_slot) = state.queries.try_acquire() else {
        return unavailable(
            "overloaded",
            "too many analytics requests at once; try again shortly",
        );
    };
    match state
        .live
        .snapshot(&window.minute_starts(to), state.limits)
        .await
    {
        Ok(snapshot) => {
            let answer =
                report::compute(window, to, &snapshot, &state.currency, state.limits.top_n);
            match serde_json::to_string(&answer) {
                Ok(body) => json(StatusCode::OK, body),
                Err(e) => error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    &e.to_string(),
                    None,
                ),
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "analytics read failed");
            unavailable("store_unavailable", "the live view cannot be read")
        }
    }
}

const INVALID_USER_ID: Invalid = Invalid {
    code: "invalid_user_id",
    message: "user_id must be 1 to 128 characters of UTF-8 without control characters",
    field: "user_id",
};

const MALFORMED_USER_ID: Invalid = Invalid {
    code: "invalid_user_id",
    message: "user_id is not valid percent-encoding (%XX escapes decoding to UTF-8)",
    field: "user_id",
};

/// The user id of a recommendations path segment: percent-decoded, 1 to
/// [`MAX_USER_ID_CHARS`] characters, no control character (C0, DEL, C1).
fn user_id(segment: &str) -> Result<String, Invalid> {
    let id = decode(segment, false).map_err(|MalformedEncoding| MALFORMED_USER_ID)?;
    let chars = id.chars().count();
    if chars == 0 || chars > MAX_USER_ID_CHARS || id.chars().any(char::is_control) {
        return Err(INVALID_USER_ID);
    }
    Ok(id)
}

/// `GET /api/recommendations/{user_id}`; the id is taken from the raw path (everything
/// after the prefix, `/` included), so that its decoding and its errors are ours.
async fn recommendations(State(state): State<Arc<ApiState>>, uri: Uri) -> Response {
    let segment = match uri.path().strip_prefix(RECOMMENDATIONS_PREFIX) {
        Some(segment) if !segment.is_empty() => segment,
        _ => return no_such_endpoint(),
    };
    let user = match user_id(segment) {
        Ok(user) => user,
        Err(invalid) => return invalid.response(),
    };
    let store = match state.stores.get().await {
        Ok(store) => store,
        Err(e) => {
            tracing::warn!(error = %e, "recommendations: no PostgreSQL connection");
            return unavailable("store_unavailable", "recommendations cannot be read");
        }
    };
    let partners = i64::try_from(state.recommendations_partners).unwrap_or(i64::MAX);
    match store
        .recommendations(&user, state.recommendations_top_n, partners)
        .await
    {
        Ok(Some(products)) => {
            let body = serde_json::json!({"user_id": user, "products": products});
            json(StatusCode::OK, body.to_string())
        }
        Ok(None) => error(
            StatusCode::NOT_FOUND,
            "unknown_user",
            "no events of this user were counted",
            Some("user_id"),
        ),
        Err(e) => {
            tracing::warn!(error = %e, "recommendations read failed");
            unavailable("store_unavailable", "recommendations cannot be read")
        }
    }
}

async fn metrics(State(state): State<Arc<ApiState>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4"),
        )],
        state.metrics.render(),
    )
        .into_response()
}

async fn live() -> Response {
    json(StatusCode::OK, r#"{"status":"live"}"#.to_owned())
}

async fn ready(State(state): State<Arc<ApiState>>) -> Response {
    if state.health.is_ready() && state.live.ping().await.is_ok() {
        json(StatusCode::OK, r#"{"status":"ready"}"#.to_owned())
    } else {
        json(
            StatusCode::SERVICE_UNAVAILABLE,
            r#"{"status":"not_ready"}"#.to_owned(),
        )
    }
}

/// Any path no route names: a file of the live page ([`crate::live_page`]) for GET (and
/// HEAD), else 404 `not_found`.
async fn not_found(method: Method, uri: Uri) -> Response {
    let asset = (method == Method::GET || method == Method::HEAD)
        .then(|| crate::live_page::asset(uri.path()))
        .flatten();
    let Some(asset) = asset else {
        return no_such_endpoint();
    };
    let mut response = Response::new(axum::body::Body::from(asset.body));
    let headers = response.headers_mut();
    for (name, value) in [
        ("content-type", asset.content_type),
        ("cache-control", "no-cache"),
        ("x-content-type-options", "nosniff"),
        (
            "content-security-policy",
            crate::live_page::CONTENT_SECURITY_POLICY,
        ),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

fn no_such_endpoint() -> Response {
    error(StatusCode::NOT_FOUND, "not_found", "no such endpoint", None)
}

async fn method_not_allowed() -> Response {
    error(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "only GET",
        None,
    )
}

/// A GET-only route: other methods are answered 405 in the API's error shape.
fn get_only<H, T>(handler: H) -> MethodRouter<Arc<ApiState>>
where
    H: axum::handler::Handler<T, Arc<ApiState>>,
    T: 'static,
{
    get(handler).fallback(method_not_allowed)
}

/// The API's routes, with `state` applied; unknown paths are answered 404 `not_found`.
pub fn router(state: Arc<ApiState>) -> Router {
    Router::new()
        .route("/api/analytics/real-time", get_only(real_time))
        // Any method other than GET below this prefix is not an endpoint (404), as the
        // path names no fixed resource.
        .route(
            "/api/recommendations/{*user_id}",
            get(recommendations).fallback(not_found),
        )
        .route("/metrics", get_only(metrics))
        .route("/health/live", get_only(live))
        .route("/health/ready", get_only(ready))
        .fallback(not_found)
        .with_state(state)
}

/// Serves `app` on `listener` until `shutdown` turns true (or its sender is dropped),
/// then drains: see the module's "Stopping". Returns when every connection is closed.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    mut shutdown: watch::Receiver<bool>,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut connections = JoinSet::new();
    loop {
        // Finished connections' tasks, reaped so that the set stays bounded.
        while connections.try_join_next().is_some() {}
        // A free slot first: beyond `max_connections` clients wait in the listen backlog.
        let slot = tokio::select! {
            _ = shutdown.changed() => break,
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
        };
        let accepted = tokio::select! {
            _ = shutdown.changed() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, _) = match accepted {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone()));
        let connection = graceful.watch(connection);
        connections.spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            drop(slot);
        });
    }
    // New connections are refused from here on.
    drop(listener);
    let open = connections.len();
    match tokio::time::timeout(limits.drain_timeout, graceful.shutdown()).await {
        Ok(()) => tracing::info!(connections = open, "HTTP API stopped; connections drained"),
        Err(_) => {
            tracing::warn!(
                drain_timeout_ms = limits.drain_timeout.as_millis() as u64,
                "HTTP API stopped; requests still in flight after the drain time-out are cut"
            );
            connections.shutdown().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn query_values_are_form_decoded() {
        assert_eq!(
            query_param(Some("window=1h&to=x"), "to"),
            Some(Ok("x".into()))
        );
        assert_eq!(
            query_param(Some("window"), "window"),
            Some(Ok(String::new()))
        );
        assert_eq!(query_param(None, "window"), None);
        assert_eq!(query_param(Some("to=x"), "window"), None);
        // `%20` and `+` are spaces, escapes of UTF-8 its characters; names decode too.
        assert_eq!(
            query_param(Some("q=a%20b+c%C3%A9%2B&%74o=1"), "q"),
            Some(Ok("a b cé+".into()))
        );
        assert_eq!(query_param(Some("%74o=1"), "to"), Some(Ok("1".into())));
        for malformed in ["a%2", "%zz", "%", "%FF", "%C3", "%G0"] {
            assert_eq!(
                query_param(Some(&format!("q={malformed}")), "q"),
                Some(Err(MalformedEncoding)),
                "{malformed}"
            );
        }
        assert_eq!(floor_minute(119), 60);
        // In a path `+` is itself.
        assert_eq!(decode("a+b%2B", false).as_deref(), Ok("a+b+"));
    }

    #[test]
    fn analytics_queries_parse_or_answer_400() {
        let now = 1_795_514_430;
        assert_eq!(
            analytics_request(None, now),
            Ok((Window::FiveMinutes, 1_795_514_460))
        );
        assert_eq!(
            analytics_request(Some("window=&to="), now),
            Ok((Window::FiveMinutes, 1_795_514_460))
        );
        assert_eq!(
            analytics_request(Some("window=1h&to=2026-11-24T10:00:59Z"), now),
            Ok((Window::OneHour, 1_795_514_400))
        );
        assert_eq!(
            analytics_request(
                Some("to=2026-11-24T11%3A00%3A00%2B01%3A00&window=%31m"),
                now
            ),
            Ok((Window::OneMinute, 1_795_514_400))
        );
        for (query, invalid) in [
            ("window=2m", INVALID_WINDOW),
            ("window=1h%00", INVALID_WINDOW),
            ("window=+1h", INVALID_WINDOW),
            ("window=%FF", MALFORMED_WINDOW),
            ("window=1h%2", MALFORMED_WINDOW),
            ("to=yesterday", INVALID_TO),
            ("to=2026-11-24T10:00:00Z%00", INVALID_TO),
            ("to=%FF", MALFORMED_TO),
            ("to=%zz", MALFORMED_TO),
            ("to=2026-13-24T10:00:00Z", INVALID_TO),
        ] {
            assert_eq!(analytics_request(Some(query), now), Err(invalid), "{query}");
        }
    }

    #[test]
    fn user_ids_without_control_characters_up_to_128_characters() {
        assert_eq!(user_id("user-1").as_deref(), Ok("user-1"));
        assert_eq!(user_id("caf%C3%A9%20x+y").as_deref(), Ok("café x+y"));
        let longest = "é".repeat(MAX_USER_ID_CHARS);
        assert_eq!(user_id(&longest).as_deref(), Ok(longest.as_str()));
        for bad in [
            "a%00b".to_owned(),
            "%00".to_owned(),
            "a%0Ab".to_owned(),
            "a%7Fb".to_owned(),
            // U+0085 (NEL), a C1 control character.
            "a%C2%85b".to_owned(),
            "x".repeat(MAX_USER_ID_CHARS + 1),
            String::new(),
        ] {
            assert_eq!(user_id(&bad), Err(INVALID_USER_ID), "{bad:?}");
        }
        for malformed in ["%FF", "a%2", "%zz"] {
            assert_eq!(user_id(malformed), Err(MALFORMED_USER_ID), "{malformed:?}");
        }
    }

    /// A router whose `/slow` answers `done` after `delay`, telling `started` when the
    /// request has arrived.
    fn slow_app(delay: Duration, started: Arc<tokio::sync::Notify>) -> Router {
        Router::new().route(
            "/slow",
            get(move || async move {
                started.notify_one();
                tokio::time::sleep(delay).await;
                "done"
            }),
        )
    }

    async fn start_slow_server(
        delay: Duration,
        drain_timeout: Duration,
    ) -> (
        std::net::SocketAddr,
        Arc<tokio::sync::Notify>,
        watch::Sender<bool>,
        tokio::task::JoinHandle<()>,
    ) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let started = Arc::new(tokio::sync::Notify::new());
        let (stop, shutdown) = watch::channel(false);
        let limits = ConnectionLimits {
            max_connections: 8,
            header_read_timeout: Duration::from_secs(5),
            drain_timeout,
        };
        let server = tokio::spawn(serve(
            listener,
            slow_app(delay, started.clone()),
            limits,
            shutdown,
        ));
        (addr, started, stop, server)
    }

    async fn send_slow_request(addr: std::net::SocketAddr) -> tokio::net::TcpStream {
        let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        stream
            .write_all(b"GET /slow HTTP/1.1\r\nHost: test\r\n\r\n")
            .await
            .expect("request sent");
        stream
    }

    #[tokio::test]
    async fn a_stop_lets_the_request_in_flight_finish_and_refuses_new_connections() {
        let delay = Duration::from_millis(800);
        let (addr, started, stop, server) = start_slow_server(delay, Duration::from_secs(10)).await;
        let mut in_flight = send_slow_request(addr).await;
        started.notified().await;
        let stopped_at = std::time::Instant::now();
        stop.send(true).expect("server listening");
        // The listener closes at once, while the request is still being answered.
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        loop {
            match tokio::net::TcpStream::connect(addr).await {
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => break,
                // A connection queued in the backlog as the listener closed is reset.
                Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
                Ok(_) => assert!(
                    std::time::Instant::now() < deadline,
                    "new connections still accepted 2 s after the stop"
                ),
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(
            stopped_at.elapsed() < delay,
            "the listener closed only after the request in flight was answered"
        );
        let mut answer = String::new();
        tokio::time::timeout(
            Duration::from_secs(5),
            in_flight.read_to_string(&mut answer),
        )
        .await
        .expect("answered within 5 s")
        .expect("read");
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.ends_with("done"), "{answer}");
        // The connection is closed after its answer, and the server returns.
        tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .expect("server stopped")
            .expect("server task");
    }

    #[tokio::test]
    async fn a_request_longer_than_the_drain_timeout_is_cut_at_its_end() {
        let drain = Duration::from_millis(300);
        let (addr, started, stop, server) = start_slow_server(Duration::from_secs(60), drain).await;
        let mut in_flight = send_slow_request(addr).await;
        started.notified().await;
        let stopped_at = std::time::Instant::now();
        stop.send(true).expect("server listening");
        tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .expect("server stopped within the drain time-out")
            .expect("server task");
        let took = stopped_at.elapsed();
        assert!(
            took >= drain,
            "stopped after {took:?}, before the drain time-out"
        );
        assert!(
            took < drain + Duration::from_secs(2),
            "stopped after {took:?}"
        );
        let mut answer = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), in_flight.read_to_end(&mut answer))
            .await
            .expect("the connection is closed");
        assert!(read.is_err() || answer.is_empty(), "{answer:?}");
    }
}
