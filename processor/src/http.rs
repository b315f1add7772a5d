//! The HTTP API (hyper 1, HTTP/1.1): analytics, Prometheus metrics, health, and the
//! live page ([`crate::live_page`]) at `/`.
//! Errors answer `{"error":{"code","message","field"}}` like the edge agent's.
//!
//! ## Bounds
//!
//! - Analytics: at most `api.max_concurrent_queries` answers are computed at once; a
//!   request beyond them is answered 503 `overloaded` with `Retry-After` at once, not
//!   queued. Each answer costs bounded memory whatever the data ([`LiveView::snapshot`]).
//! - Recommendations: the user id (percent-decoded) must be 1 to 128 characters of
//!   UTF-8 without control characters, else 400 `invalid_user_id` before any query. The
//!   queries run on a [`StorePool`] of `api.postgres_connections` connections with
//!   `api.statement_timeout_ms`; a timeout or an unreachable database is 503
//!   `store_unavailable` with `Retry-After`.

use std::convert::Infallible;
use std::sync::Arc;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::live::{LiveView, ReadLimits};
use crate::pipeline::Health;
use crate::report::{self, Window};
use crate::store_pool::StorePool;

/// The longest user id the recommendations endpoint accepts (characters), as the event
/// schema's.
pub const MAX_USER_ID_CHARS: usize = 128;

/// Seconds a client is asked to wait after a 503 (`Retry-After`).
const RETRY_AFTER_SECS: &str = "1";

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
    /// Connections served at once.
    pub max_connections: usize,
    /// Time a client has to send its request headers.
    pub header_read_timeout: std::time::Duration,
    /// Prometheus registry.
    pub metrics: PrometheusHandle,
    /// Readiness.
    pub health: Arc<Health>,
}

fn json(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        "content-type",
        hyper::header::HeaderValue::from_static("application/json"),
    );
    response
}

fn error(
    status: StatusCode,
    code: &str,
    message: &str,
    field: Option<&str>,
) -> Response<Full<Bytes>> {
    let mut detail = serde_json::json!({"code": code, "message": message});
    if let Some(field) = field {
        detail["field"] = serde_json::json!(field);
    }
    let body = serde_json::json!({ "error": detail });
    json(status, body.to_string())
}

/// 503 with `Retry-After`.
fn unavailable(code: &str, message: &str) -> Response<Full<Bytes>> {
    let mut response = error(StatusCode::SERVICE_UNAVAILABLE, code, message, None);
    response.headers_mut().insert(
        hyper::header::RETRY_AFTER,
        hyper::header::HeaderValue::from_static(RETRY_AFTER_SECS),
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
    fn response(self) -> Response<Full<Bytes>> {
        error(
            StatusCode::BAD_REQUEST,
            self.code,
            self.message,
            Some(self.field),
        )
    }
}

/// The raw value of query parameter `name` (the first if repeated).
fn query_param<'a>(query: Option<&'a str>, name: &str) -> Option<&'a str> {
    query?
        .split('&')
        .filter_map(|pair| pair.split_once('=').or(Some((pair, ""))))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
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

const INVALID_TO: Invalid = Invalid {
    code: "invalid_to",
    message: "to must be an RFC 3339 time",
    field: "to",
};

/// The window and its end (a minute start) an analytics request asks for; `now` (Unix
/// seconds) makes the default end, the minute after the current one.
fn analytics_request(query: Option<&str>, now: i64) -> Result<(Window, i64), Invalid> {
    let window = match query_param(query, "window") {
        None | Some("") => Window::FiveMinutes,
        Some(w) => percent_decode(w)
            .as_deref()
            .and_then(Window::parse)
            .ok_or(INVALID_WINDOW)?,
    };
    let to = match query_param(query, "to") {
        None | Some("") => floor_minute(now) + 60,
        Some(text) => {
            let text = percent_decode(text).ok_or(INVALID_TO)?;
            let t =
                time::OffsetDateTime::parse(&text, &time::format_description::well_known::Rfc3339)
                    .map_err(|_| INVALID_TO)?;
            floor_minute(t.unix_timestamp())
        }
    };
    Ok((window, to))
}

async fn real_time(state: &ApiState, query: Option<&str>) -> Response<Full<Bytes>> {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let (window, to) = match analytics_request(query, now) {
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

/// The user id of a recommendations path segment: percent-decoded, 1 to
/// [`MAX_USER_ID_CHARS`] characters, no control character (C0, DEL, C1).
fn user_id(segment: &str) -> Result<String, Invalid> {
    let id = percent_decode(segment).ok_or(INVALID_USER_ID)?;
    let chars = id.chars().count();
    if chars == 0 || chars > MAX_USER_ID_CHARS || id.chars().any(char::is_control) {
        return Err(INVALID_USER_ID);
    }
    Ok(id)
}

async fn recommendations(state: &ApiState, segment: &str) -> Response<Full<Bytes>> {
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

/// Decodes `%XX` escapes (invalid ones are kept as they are); `None` when the result is
/// not UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// A file of the live page ([`crate::live_page`]), or 404.
fn live_page(path: &str) -> Response<Full<Bytes>> {
    let Some(asset) = crate::live_page::asset(path) else {
        return error(StatusCode::NOT_FOUND, "not_found", "no such endpoint", None);
    };
    let mut response = Response::new(Full::new(Bytes::from_static(asset.body)));
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
        headers.insert(name, hyper::header::HeaderValue::from_static(value));
    }
    response
}

async fn route(
    state: Arc<ApiState>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = request.uri().path();
    let query = request.uri().query();
    let response = match (request.method(), path) {
        (&Method::GET, "/api/analytics/real-time") => real_time(&state, query).await,
        (&Method::GET, p) if p.starts_with("/api/recommendations/") && p.len() > 21 => {
            recommendations(&state, &p["/api/recommendations/".len()..]).await
        }
        (&Method::GET, "/metrics") => {
            let mut r = Response::new(Full::new(Bytes::from(state.metrics.render())));
            r.headers_mut().insert(
                "content-type",
                hyper::header::HeaderValue::from_static("text/plain; version=0.0.4"),
            );
            r
        }
        (&Method::GET, "/health/live") => json(StatusCode::OK, r#"{"status":"live"}"#.to_owned()),
        (&Method::GET, "/health/ready") => {
            let ready = state.health.is_ready() && state.live.ping().await.is_ok();
            if ready {
                json(StatusCode::OK, r#"{"status":"ready"}"#.to_owned())
            } else {
                json(
                    StatusCode::SERVICE_UNAVAILABLE,
                    r#"{"status":"not_ready"}"#.to_owned(),
                )
            }
        }
        (&Method::GET, p) if crate::live_page::asset(p).is_some() => live_page(p),
        (_, "/api/analytics/real-time" | "/metrics" | "/health/live" | "/health/ready") => error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "only GET",
            None,
        ),
        _ => error(StatusCode::NOT_FOUND, "not_found", "no such endpoint", None),
    };
    Ok(response)
}

/// Serves until `shutdown` turns true.
pub async fn serve(
    listener: TcpListener,
    state: Arc<ApiState>,
    mut shutdown: watch::Receiver<bool>,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(state.max_connections));
    loop {
        // A free slot first: beyond `max_connections` clients wait in the listen backlog.
        let slot = tokio::select! {
            _ = shutdown.changed() => return,
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => return,
            },
        };
        let accepted = tokio::select! {
            _ = shutdown.changed() => return,
            accepted = listener.accept() => accepted,
        };
        let (stream, _) = match accepted {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let state = state.clone();
        tokio::spawn(async move {
            let timeout = state.header_read_timeout;
            let service = hyper::service::service_fn(move |req| route(state.clone(), req));
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(timeout)
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            drop(slot);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_query_parameters() {
        assert_eq!(query_param(Some("window=1h&to=x"), "to"), Some("x"));
        assert_eq!(query_param(Some("window"), "window"), Some(""));
        assert_eq!(query_param(None, "window"), None);
        assert_eq!(floor_minute(119), 60);
        assert_eq!(percent_decode("user%2D1%20x").as_deref(), Some("user-1 x"));
        assert_eq!(percent_decode("a%2").as_deref(), Some("a%2"));
        assert_eq!(percent_decode("%zz").as_deref(), Some("%zz"));
        assert_eq!(percent_decode("%C3%A9").as_deref(), Some("é"));
        assert_eq!(percent_decode("%FF"), None);
    }

    #[test]
    fn analytics_queries_parse_or_answer_400() {
        let now = 1_795_514_430;
        assert_eq!(
            analytics_request(None, now),
            Ok((Window::FiveMinutes, 1_795_514_460))
        );
        assert_eq!(
            analytics_request(Some("window=1h&to=2026-11-24T10:00:59Z"), now),
            Ok((Window::OneHour, 1_795_514_400))
        );
        assert_eq!(
            analytics_request(Some("to=2026-11-24T11%3A00%3A00%2B01%3A00&window=1m"), now),
            Ok((Window::OneMinute, 1_795_514_400))
        );
        for (query, invalid) in [
            ("window=2m", INVALID_WINDOW),
            ("window=1h%00", INVALID_WINDOW),
            ("window=%FF", INVALID_WINDOW),
            ("to=yesterday", INVALID_TO),
            ("to=2026-11-24T10:00:00Z%00", INVALID_TO),
            ("to=%FF", INVALID_TO),
            ("to=2026-13-24T10:00:00Z", INVALID_TO),
        ] {
            assert_eq!(analytics_request(Some(query), now), Err(invalid), "{query}");
        }
    }

    #[test]
    fn user_ids_without_control_characters_up_to_128_characters() {
        assert_eq!(user_id("user-1").as_deref(), Ok("user-1"));
        assert_eq!(user_id("caf%C3%A9%20x").as_deref(), Ok("café x"));
        let longest = "é".repeat(MAX_USER_ID_CHARS);
        assert_eq!(user_id(&longest).as_deref(), Ok(longest.as_str()));
        for bad in [
            "a%00b".to_owned(),
            "%00".to_owned(),
            "a%0Ab".to_owned(),
            "a%7Fb".to_owned(),
            // U+0085 (NEL), a C1 control character.
            "a%C2%85b".to_owned(),
            "%FF".to_owned(),
            "x".repeat(MAX_USER_ID_CHARS + 1),
            String::new(),
        ] {
            assert_eq!(user_id(&bad), Err(INVALID_USER_ID), "{bad:?}");
        }
    }
}
