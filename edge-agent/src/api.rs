//! The HTTP API (`openapi/edge-agent.yaml`): routing and the handlers. Everything about
//! events is `ingest-core`'s; this module adds the HTTP layer: keys, rate limits, media
//! types, compression, CORS, acknowledgement levels, and the answers. The Segment and
//! GA4 endpoints are in the `compat` submodule (`api/compat.rs`).

mod compat;

use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use ingest_core::{
    contract, Ack, ErrorCode, EventKind, Ingestor, Receipt, SubmitOptions, ValidationError,
};
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Serialize;

use crate::auth::{ApiKeys, Grant};
use crate::body;
use crate::client::{client_of, IpNet};
use crate::cors::Cors;
use crate::rate_limit::RateLimiter;
use crate::response::{json, text, ApiError, Body, ErrorDetail};
use crate::telemetry::{Endpoint, RequestMetrics};
use crate::tls::Certificate;

/// Media types of the single-event endpoints (`text/plain` is what `sendBeacon` sends).
const SINGLE_TYPES: &[&str] = &["application/json", "text/plain"];
/// Bodies larger than this are validated (and translated) on the body threads
/// (`body::Decompressors`), not on the threads that serve connections. At this size the
/// work takes about a millisecond, which other connections can wait; above it, a 4 MiB
/// body would hold them for tens. Usual batches (100 events, 30-70 KiB) stay on the
/// connection threads, which all the cores share, not the fewer body threads.
const INLINE_VALIDATION_BYTES: usize = 256 * 1024;

/// Media types of the batch endpoint.
const BATCH_TYPES: &[&str] = &[
    "application/x-ndjson",
    "application/jsonl",
    "application/json",
    "text/plain",
];

/// Everything a request needs, shared by all connections.
pub struct Api {
    /// The ingest library.
    pub ingestor: Ingestor,
    /// API keys.
    pub keys: ApiKeys,
    /// Rate limits.
    pub limiter: RateLimiter,
    /// CORS.
    pub cors: Cors,
    /// Feature flags for `GET /api/flags`; `None` when no file is configured.
    pub flags: Option<crate::flags::Flags>,
    /// `/metrics` renderer.
    pub prometheus: Option<PrometheusHandle>,
    /// Request metrics.
    pub metrics: RequestMetrics,
    /// Largest body as sent.
    pub max_body_bytes: usize,
    /// Bytes of bodies being received at once.
    pub body_budget: body::BodyBudget,
    /// The threads that decompress bodies.
    pub decompressors: body::Decompressors,
    /// Deadline for the body.
    pub body_timeout: Duration,
    /// Longest wait for an acknowledgement level.
    pub ack_timeout: Duration,
    /// `Retry-After` of 429 and 503.
    pub retry_after_secs: u64,
    /// Reverse proxies whose `X-Forwarded-For` names the client.
    pub trusted_proxies: Vec<IpNet>,
}

/// The event types a browser key may send: what a page sees its visitor do. Purchases
/// are reported by the storefront's servers, with a server key, so that a public key
/// cannot forge revenue.
pub const BROWSER_KINDS: [EventKind; 3] =
    [EventKind::ProductView, EventKind::Cart, EventKind::Search];

/// Which paths a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Everything (no admin listener is configured).
    All,
    /// The API, without `/metrics` and `/health/*`.
    Public,
    /// `/metrics` and `/health/*` only.
    Admin,
}

/// The connection a request came on.
#[derive(Debug, Clone)]
pub struct Connection {
    /// The peer's address; `None` on the Unix socket.
    pub peer: Option<IpAddr>,
    /// What the listener serves.
    pub role: Role,
    /// The storefront its client certificate names, if `tls.clients` ties any.
    pub certificate: Certificate,
}

/// The key a request presented: what it grants (or why it does not), and whether any
/// was presented at all (a request on a connection whose certificate names a storefront
/// needs none).
struct Presented {
    grant: Result<Option<Arc<Grant>>, ApiError>,
    any: bool,
}

/// Who sends a request: what its key grants, and the client it is counted as.
struct Caller {
    grant: Option<Arc<Grant>>,
    client: Option<IpAddr>,
}

impl Caller {
    fn source(&self) -> Option<&Arc<str>> {
        self.grant.as_ref().map(|grant| &grant.source)
    }

    fn is_browser(&self) -> bool {
        self.grant
            .as_ref()
            .is_some_and(|grant| grant.browser_origins.is_some())
    }
}

#[derive(Serialize)]
struct Accepted<'a> {
    accepted: usize,
    event_ids: [&'a str; 1],
}

#[derive(Serialize)]
struct BatchResult<'a> {
    accepted: usize,
    rejected: Vec<Rejected<'a>>,
}

#[derive(Serialize)]
struct Rejected<'a> {
    index: usize,
    error: ErrorDetail<'a>,
}

#[derive(Serialize)]
struct Readiness {
    status: &'static str,
    kafka: &'static str,
    buffer: &'static str,
    /// Background threads of the ingestor that died (empty while all run).
    dead_threads: Vec<&'static str>,
}

fn route(method: &Method, path: &str) -> (Endpoint, Option<EventKind>) {
    let _ = method;
    match path {
        "/api/events/product-view" => (Endpoint::ProductView, Some(EventKind::ProductView)),
        "/api/events/cart" => (Endpoint::Cart, Some(EventKind::Cart)),
        "/api/events/purchase" => (Endpoint::Purchase, Some(EventKind::Purchase)),
        "/api/events/search" => (Endpoint::Search, Some(EventKind::Search)),
        "/api/events/batch" => (Endpoint::Batch, None),
        "/mp/collect" => (Endpoint::Ga4, None),
        "/api/flags" => (Endpoint::Flags, None),
        _ if compat::segment_route(path).is_some() => (Endpoint::Segment, None),
        "/metrics" => (Endpoint::Metrics, None),
        "/health/live" | "/health/ready" => (Endpoint::Health, None),
        _ => (Endpoint::Other, None),
    }
}

impl Api {
    /// Serves one request. Never fails: every problem is an answer.
    pub async fn serve(
        self: Arc<Self>,
        request: Request<Incoming>,
        connection: Arc<Connection>,
    ) -> Result<Response<Body>, Infallible> {
        let started = Instant::now();
        let (endpoint, kind) = route(request.method(), request.uri().path());
        let admin = matches!(endpoint, Endpoint::Metrics | Endpoint::Health);
        let endpoint = match connection.role {
            Role::Public if admin => Endpoint::Other,
            Role::Admin if !admin => Endpoint::Other,
            _ => endpoint,
        };
        let endpoint = if request.method() == Method::OPTIONS
            && (request.uri().path().starts_with("/api/events/")
                || matches!(
                    endpoint,
                    Endpoint::Segment | Endpoint::Ga4 | Endpoint::Flags
                )) {
            Endpoint::Preflight
        } else {
            endpoint
        };
        let origin = self.cors.allow_origin(request.headers());
        let served = if self.refuses_origin(endpoint, request.headers()) {
            Err(ApiError::Forbidden {
                code: "origin_not_allowed",
                message: "requests from this Origin are not accepted (cors.allowed_origins)",
            })
        } else {
            self.dispatch(endpoint, kind, request, &connection).await
        };
        let mut response = match served {
            Ok(response) => response,
            Err(error) => {
                RequestMetrics::rejected(endpoint, error.code());
                error.into_response(self.retry_after_secs)
            }
        };
        if endpoint.is_browser_facing() {
            self.cors.decorate(origin, &mut response);
        }
        self.metrics
            .answered(endpoint, response.status().as_u16(), started.elapsed());
        Ok(response)
    }

    /// Whether a browser request must be refused for its origin: the server enforces
    /// what CORS only asks browsers to enforce, since a page of any site can make its
    /// visitors' browsers post to the agent (a simple `text/plain` request needs no
    /// preflight). A request without `Origin` (a server, an SDK) is not concerned.
    fn refuses_origin(&self, endpoint: Endpoint, headers: &HeaderMap) -> bool {
        endpoint.is_browser_facing()
            && headers.contains_key(http::header::ORIGIN)
            && self.cors.allow_origin(headers).is_none()
    }

    async fn dispatch(
        &self,
        endpoint: Endpoint,
        kind: Option<EventKind>,
        request: Request<Incoming>,
        connection: &Connection,
    ) -> Result<Response<Body>, ApiError> {
        let method = request.method().clone();
        match (endpoint, method) {
            (Endpoint::Preflight, _) => Ok(self.cors.preflight(request.headers())),
            (
                Endpoint::ProductView | Endpoint::Cart | Endpoint::Purchase | Endpoint::Search,
                Method::POST,
            ) => {
                let kind = kind.ok_or(ApiError::NotFound)?;
                self.single(endpoint, kind, request, connection).await
            }
            (Endpoint::Batch, Method::POST) => self.batch(request, connection).await,
            (Endpoint::Segment, Method::POST) => {
                let route =
                    compat::segment_route(request.uri().path()).ok_or(ApiError::NotFound)?;
                self.segment(route, request, connection).await
            }
            (Endpoint::Ga4, Method::POST) => self.ga4(request, connection).await,
            (Endpoint::Flags, Method::GET) => self.flags_of(&request, connection),
            (Endpoint::Metrics, Method::GET) => Ok(self.render_metrics()),
            (Endpoint::Health, Method::GET) => Ok(self.health(request.uri().path())),
            (Endpoint::Other, _) => Err(ApiError::NotFound),
            (Endpoint::Metrics | Endpoint::Health, _) => Err(ApiError::MethodNotAllowed("GET")),
            (Endpoint::Flags, _) => Err(ApiError::MethodNotAllowed("GET, OPTIONS")),
            _ => Err(ApiError::MethodNotAllowed("POST, OPTIONS")),
        }
    }

    /// The checks every native event request passes before its body is read: the key
    /// (of `kind`'s type when the endpoint names one), one event's worth of the rate
    /// limits (a client over its limit is refused before it sends a body), the
    /// acknowledgement level, the media type and the encoding.
    fn admit(
        &self,
        request: &Request<Incoming>,
        connection: &Connection,
        types: &[&str],
        kind: Option<EventKind>,
    ) -> Result<(Caller, Ack, body::Encoding), ApiError> {
        let headers = request.headers();
        let caller = self.caller(self.native_key(request), headers, connection, kind)?;
        self.take(&caller, 1)?;
        let ack = ack_level(headers)?;
        body::check_media_type(headers, types)?;
        let encoding = body::encoding(headers)?;
        Ok((caller, ack, encoding))
    }

    /// The key of a native request (`Authorization`, or a browser key's `key` query
    /// parameter), and whether one was presented.
    fn native_key(&self, request: &Request<Incoming>) -> Presented {
        let query = request.uri().query();
        Presented {
            any: request.headers().contains_key(http::header::AUTHORIZATION)
                || form_urlencoded::parse(query.unwrap_or("").as_bytes())
                    .any(|(name, _)| name == "key"),
            grant: self.keys.authenticate(request.headers(), query),
        }
    }

    /// The caller of a request that presented `key`, on `connection`. A client
    /// certificate tied to a storefront sends as it (a key, if presented too, must be
    /// that storefront's). A browser key's request with an `Origin` must come from one
    /// of its origins, and an endpoint of `kind` must be one a browser may send.
    fn caller(
        &self,
        key: Presented,
        headers: &HeaderMap,
        connection: &Connection,
        kind: Option<EventKind>,
    ) -> Result<Caller, ApiError> {
        let grant =
            match &connection.certificate {
                Certificate::Untied => key.grant?,
                Certificate::Unlisted => {
                    return Err(ApiError::Forbidden {
                        code: "certificate_not_allowed",
                        message: "this client certificate names no storefront (tls.clients)",
                    })
                }
                Certificate::Storefront(source) => match key.grant {
                    Ok(Some(grant)) if grant.source == *source => Some(grant),
                    Ok(Some(_)) => return Err(ApiError::Forbidden {
                        code: "certificate_mismatch",
                        message:
                            "the API key belongs to another storefront than the client certificate",
                    }),
                    Err(error) if key.any => return Err(error),
                    Ok(None) | Err(_) => Some(Arc::new(Grant {
                        source: source.clone(),
                        browser_origins: None,
                    })),
                },
            };
        let caller = Caller {
            grant,
            client: client_of(connection.peer, headers, &self.trusted_proxies),
        };
        if let Some(grant) = caller.grant.as_deref().filter(|_| caller.is_browser()) {
            let origin = headers
                .get(http::header::ORIGIN)
                .and_then(|v| v.to_str().ok());
            if !grant.allows_origin(origin) {
                return Err(ApiError::Forbidden {
                    code: "origin_not_allowed",
                    message: "this browser key may only be used from its origins",
                });
            }
            if kind.is_some_and(|kind| !BROWSER_KINDS.contains(&kind)) {
                return Err(ApiError::Forbidden {
                    code: ErrorCode::TypeNotAllowed.as_str(),
                    message: "a browser key may send product_view, cart and search events; \
                              purchases are sent with a server key",
                });
            }
        }
        Ok(caller)
    }

    /// Takes `events` from the caller's rate limits.
    fn take(&self, caller: &Caller, events: usize) -> Result<(), ApiError> {
        let events = u32::try_from(events).unwrap_or(u32::MAX);
        self.limiter.check(caller.source(), caller.client, events)
    }

    /// The options of a request's events: the key's source, the types a browser key may
    /// send, and the flags in force, so that an event naming no experiments carries its
    /// user's assignments (the `experiments` record header).
    fn submit_options(&self, caller: &Caller) -> SubmitOptions {
        let mut options = SubmitOptions::default();
        if let Some(source) = caller.source() {
            options = options.with_source(source.clone());
        }
        if caller.is_browser() {
            options = options.with_allowed_kinds(BROWSER_KINDS);
        }
        if let Some(flags) = &self.flags {
            let set = flags.get();
            if !set.is_empty() {
                options = options.with_flags(set);
            }
        }
        options
    }

    async fn read_body(
        &self,
        endpoint: Endpoint,
        request: Request<Incoming>,
        encoding: body::Encoding,
        max_out: usize,
        too_large: ErrorCode,
    ) -> Result<Bytes, ApiError> {
        let (parts, incoming) = request.into_parts();
        let raw = body::read(
            incoming,
            &parts.headers,
            self.max_body_bytes,
            self.body_timeout,
            &self.body_budget,
        )
        .await?;
        self.metrics.received(endpoint, raw.len());
        if encoding == body::Encoding::Identity {
            return Ok(raw);
        }
        // Decompressing 4 MiB takes milliseconds of CPU: on the threads that serve
        // connections it would stall every other request behind it, so it runs on
        // threads of its own.
        self.decompressors
            .run(move || body::decompress(raw, encoding, max_out, too_large))
            .await
            .ok_or_else(|| {
                ApiError::Unavailable("the body could not be decompressed now".to_owned())
            })?
    }

    async fn single(
        &self,
        endpoint: Endpoint,
        kind: EventKind,
        request: Request<Incoming>,
        connection: &Connection,
    ) -> Result<Response<Body>, ApiError> {
        let (caller, ack, encoding) = self.admit(&request, connection, SINGLE_TYPES, Some(kind))?;
        let options = self.submit_options(&caller);
        let limits = self.ingestor.settings().limits();
        let (max_out, too_large) = (limits.max_event_bytes, ErrorCode::EventTooLarge);
        let bytes = self
            .read_body(endpoint, request, encoding, max_out, too_large)
            .await?;
        let receipt = self.ingestor.submit_with(kind, bytes, &options)?;
        self.wait(&receipt, ack).await?;
        let mut buf = [0u8; 36];
        let id = receipt
            .event_id()
            .map_or("", |id| id.hyphenated().encode_lower(&mut buf));
        Ok(json(
            StatusCode::ACCEPTED,
            &Accepted {
                accepted: 1,
                event_ids: [id],
            },
        ))
    }

    async fn batch(
        &self,
        request: Request<Incoming>,
        connection: &Connection,
    ) -> Result<Response<Body>, ApiError> {
        let (caller, ack, encoding) = self.admit(&request, connection, BATCH_TYPES, None)?;
        let options = self.submit_options(&caller);
        let limits = self.ingestor.settings().limits().clone();
        let bytes = self
            .read_body(
                Endpoint::Batch,
                request,
                encoding,
                limits.max_batch_bytes,
                ErrorCode::BatchTooLarge,
            )
            .await?;
        if self.limiter.enabled() {
            // Limits count events (one was taken before the body); splitting is cheap
            // next to validation.
            let events = ingest_core::split_batch(&bytes, &limits).map_or(1, |e| e.len());
            self.take(&caller, events.saturating_sub(1))?;
        }
        let ingestor = self.ingestor.clone();
        let result = self
            .heavy(bytes.len(), move || {
                ingestor.submit_batch_with(bytes, &options)
            })
            .await??;
        self.wait(&result.receipt, ack).await?;
        let rejected = result
            .rejected
            .iter()
            .map(|r| Rejected {
                index: r.index,
                error: ErrorDetail::of(&r.error),
            })
            .collect();
        Ok(json(
            StatusCode::OK,
            &BatchResult {
                accepted: result.accepted,
                rejected,
            },
        ))
    }

    /// Runs `work` on a body of `size` bytes: here when it is small, on the body threads
    /// when it is larger than [`INLINE_VALIDATION_BYTES`]. Validating or translating a
    /// 4 MiB body takes milliseconds of CPU, which would stall every other connection
    /// served by this thread meanwhile; on the body threads (as many as
    /// `server.max_concurrent_decompressions`) large bodies wait for each other instead.
    async fn heavy<T: Send + 'static>(
        &self,
        size: usize,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, ApiError> {
        run_heavy(&self.decompressors, size, work).await
    }

    /// Waits for the acknowledgement level, at most `ack_timeout`.
    async fn wait(&self, receipt: &Receipt, ack: Ack) -> Result<(), ApiError> {
        if ack == Ack::Accepted {
            return Ok(());
        }
        ack_outcome(
            tokio::time::timeout(self.ack_timeout, receipt.wait(ack)).await,
            ack,
            self.ack_timeout,
        )
    }

    /// `GET /api/flags?user_id=...`: the user's variant of every flag, for the
    /// storefront to render it and to report it in `context.experiments`. A visitor
    /// without a user id is assigned by their anonymous id, passed as `user_id`.
    fn flags_of(
        &self,
        request: &Request<Incoming>,
        connection: &Connection,
    ) -> Result<Response<Body>, ApiError> {
        let headers = request.headers();
        let caller = self.caller(self.native_key(request), headers, connection, None)?;
        self.take(&caller, 1)?;
        let user = form_urlencoded::parse(request.uri().query().unwrap_or("").as_bytes())
            .find(|(name, _)| name == "user_id")
            .map(|(_, value)| value.into_owned())
            .ok_or_else(|| {
                ApiError::Invalid(ValidationError::field(
                    ErrorCode::MissingField,
                    "user_id",
                    "the user_id query parameter is required",
                ))
            })?;
        contract::check_identifier(&user).map_err(|why| {
            ApiError::Invalid(ValidationError::field(
                ErrorCode::InvalidValue,
                "user_id",
                format!("user_id {why}"),
            ))
        })?;
        let set = self.flags.as_ref().map(crate::flags::Flags::get);
        let assigned: serde_json::Map<String, serde_json::Value> = set
            .as_deref()
            .map(|set| set.assign(&user))
            .unwrap_or_default()
            .into_iter()
            .map(|(flag, variant)| (flag.to_owned(), variant.into()))
            .collect();
        let mut body = serde_json::Map::new();
        body.insert("user_id".to_owned(), user.into());
        body.insert("flags".to_owned(), assigned.into());
        Ok(json(StatusCode::OK, &body))
    }

    fn render_metrics(&self) -> Response<Body> {
        let body = self
            .prometheus
            .as_ref()
            .map(PrometheusHandle::render)
            .unwrap_or_default();
        text(StatusCode::OK, body, "text/plain; version=0.0.4")
    }

    fn health(&self, path: &str) -> Response<Body> {
        let health = self.ingestor.health();
        if path == "/health/live" {
            // A dead delivery thread never comes back: only a restart helps.
            if !health.threads_alive() {
                return json(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &serde_json::json!({"status": "dead", "dead_threads": health.dead_threads}),
                );
            }
            return json(StatusCode::OK, &serde_json::json!({"status": "alive"}));
        }
        let room = match health.buffer {
            Some(buffer) => buffer.has_room(),
            None => {
                let queue = &self.ingestor.settings().config().queue;
                health.queue_events.saturating_mul(100) < queue.max_events.saturating_mul(95)
                    && health.queue_bytes.saturating_mul(100) < queue.max_bytes.saturating_mul(95)
            }
        };
        // Without a disk buffer, an unreachable Kafka means events would only pile up
        // in memory and fail: not ready, whatever room the queue has.
        let ready = health.is_ready();
        let body = Readiness {
            status: if ready { "ready" } else { "not_ready" },
            kafka: if health.kafka_reachable() {
                "reachable"
            } else {
                "unreachable"
            },
            buffer: if room { "ok" } else { "full" },
            dead_threads: health.dead_threads.clone(),
        };
        let status = if ready {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        json(status, &body)
    }
}

/// [`Api::heavy`]'s work, on `threads`.
async fn run_heavy<T: Send + 'static>(
    threads: &body::Decompressors,
    size: usize,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    if size <= INLINE_VALIDATION_BYTES {
        return Ok(work());
    }
    threads
        .run(work)
        .await
        .ok_or_else(|| ApiError::Unavailable("the body could not be processed now".to_owned()))
}

/// The acknowledgement level the request asks for (`Ingest-Ack`; `accepted` without it).
fn ack_level(headers: &HeaderMap) -> Result<Ack, ApiError> {
    match headers.get("ingest-ack") {
        None => Ok(Ack::Accepted),
        Some(value) => value
            .to_str()
            .ok()
            .and_then(|v| v.parse::<Ack>().ok())
            .ok_or_else(|| ApiError::InvalidHeader {
                name: "Ingest-Ack",
                message: "must be accepted, persisted or delivered".to_owned(),
            }),
    }
}

/// The answer to a wait for `ack` that was given `timeout`.
fn ack_outcome(
    waited: Result<Result<(), ingest_core::Error>, tokio::time::error::Elapsed>,
    ack: Ack,
    timeout: Duration,
) -> Result<(), ApiError> {
    match waited {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => {
            // The detail (the Kafka client's words, a file path) is for the log only.
            let kind = error.code();
            tracing::info!(%error, ?kind, %ack, "acknowledgement level not reached");
            Err(ApiError::Unavailable(format!(
                "{}; the events may still arrive, resend with the same event_id",
                crate::response::internal_message(&format!("not {ack}"), kind)
            )))
        }
        Err(_) => Err(ApiError::Unavailable(format!(
            "not {ack} within {timeout:?}; the events may still arrive, resend with the same event_id"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Small bodies are worked on where they arrive; large ones on the body threads.
    #[tokio::test]
    async fn large_bodies_are_worked_on_off_the_connection_threads() {
        let threads = body::Decompressors::start(1).expect("threads");
        let name = || std::thread::current().name().unwrap_or("").to_owned();
        let here = name();
        let small = run_heavy(&threads, INLINE_VALIDATION_BYTES, name).await;
        assert_eq!(small.expect("ran"), here);
        let large = run_heavy(&threads, INLINE_VALIDATION_BYTES + 1, name).await;
        let large = large.expect("ran");
        assert!(large.starts_with("edge-decompress"), "{large}");
        assert_ne!(large, here);
    }

    /// A failed acknowledgement answers 503 with the level and the error's kind, never
    /// the Kafka client's message.
    #[test]
    fn a_failed_acknowledgement_does_not_echo_the_kafka_error() {
        let failed = ingest_core::Error::Delivery {
            failed: 1,
            total: 1,
            reason: "Broker: Topic authorization failed (kafka-1.internal:9093)".to_owned(),
            retryable: true,
        };
        let error = ack_outcome(Ok(Err(failed)), Ack::Delivered, Duration::from_secs(1))
            .expect_err("not delivered");
        let ApiError::Unavailable(message) = &error else {
            panic!("{error:?}");
        };
        assert!(
            !message.contains("Broker") && !message.contains("kafka-1"),
            "{message}"
        );
        assert!(
            message.starts_with("not delivered (Delivery error"),
            "{message}"
        );
        assert!(
            message.contains("resend with the same event_id"),
            "{message}"
        );
    }
}
