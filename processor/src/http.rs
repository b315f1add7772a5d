//! The HTTP API (hyper 1, HTTP/1.1): analytics, Prometheus metrics, health.
//! Errors answer `{"error":{"code","message","field"}}` like the edge agent's.

use std::convert::Infallible;
use std::sync::Arc;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::live::LiveView;
use crate::pipeline::Health;
use crate::report::{self, Window};

/// What the handlers share.
pub struct ApiState {
    /// The live view.
    pub live: LiveView,
    /// Reporting currency.
    pub currency: String,
    /// Top list length.
    pub top_n: usize,
    /// Products per recommendation answer.
    pub recommendations_top_n: usize,
    /// Partners per product recommendations draw on.
    pub recommendations_partners: usize,
    /// The API's own PostgreSQL connection (opened on first use, re-opened when lost).
    pub store: tokio::sync::Mutex<Option<crate::store::Store>>,
    /// Where to open it.
    pub postgres_url: String,
    /// Its connect timeout.
    pub postgres_connect_timeout: std::time::Duration,
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

async fn real_time(state: &ApiState, query: Option<&str>) -> Response<Full<Bytes>> {
    let window = match query_param(query, "window") {
        None | Some("") => Window::FiveMinutes,
        Some(w) => match Window::parse(w) {
            Some(w) => w,
            None => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "invalid_window",
                    "window must be 1m, 5m, 15m or 1h",
                    Some("window"),
                )
            }
        },
    };
    let to = match query_param(query, "to") {
        None | Some("") => floor_minute(time::OffsetDateTime::now_utc().unix_timestamp()) + 60,
        Some(text) => {
            let text = text.replace("%3A", ":").replace("%3a", ":");
            match time::OffsetDateTime::parse(&text, &time::format_description::well_known::Rfc3339)
            {
                Ok(t) => floor_minute(t.unix_timestamp()),
                Err(_) => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "invalid_to",
                        "to must be an RFC 3339 time",
                        Some("to"),
                    )
                }
            }
        }
    };
    match state.live.snapshot(&window.minute_starts(to)).await {
        Ok(snapshot) => {
            let answer = report::compute(window, to, &snapshot, &state.currency, state.top_n);
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
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                "the live view cannot be read",
                None,
            )
        }
    }
}

async fn recommendations(state: &ApiState, user: &str) -> Response<Full<Bytes>> {
    let user = percent_decode(user);
    let mut guard = state.store.lock().await;
    if guard.as_ref().is_none_or(|s| s.is_closed()) {
        match crate::store::Store::connect(&state.postgres_url, state.postgres_connect_timeout)
            .await
        {
            Ok(store) => *guard = Some(store),
            Err(e) => {
                tracing::warn!(error = %e, "recommendations: PostgreSQL unreachable");
                return error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "store_unavailable",
                    "recommendations cannot be read",
                    None,
                );
            }
        }
    }
    let Some(store) = guard.as_ref() else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            "recommendations cannot be read",
            None,
        );
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
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                "recommendations cannot be read",
                None,
            )
        }
    }
}

/// Decodes `%XX` escapes of a path segment (invalid ones are kept as they are).
fn percent_decode(text: &str) -> String {
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
    String::from_utf8_lossy(&out).into_owned()
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
        assert_eq!(percent_decode("user%2D1%20x"), "user-1 x");
        assert_eq!(percent_decode("a%2"), "a%2");
        assert_eq!(percent_decode("%zz"), "%zz");
    }
}
