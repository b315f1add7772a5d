//! Intake compatible with the tools shops already use: Segment's HTTP tracking API
//! (`POST /v1/track`, `/v1/page`, ..., `/v1/batch`) and GA4's Measurement Protocol
//! (`POST /mp/collect`). The translation is `crate::intake`'s; this module adds the HTTP
//! side: keys as those SDKs send them, body limits, submission of the translated events
//! (e-commerce ones to their topics, the rest to the custom-events topic), and answers
//! shaped as those services answer (docs/intake.md).

use bytes::Bytes;
use http::header::AUTHORIZATION;
use http::{HeaderMap, Request, Response, StatusCode};
use hyper::body::Incoming;
use ingest_core::{
    Ack, CustomEvent, Error, ErrorCode, EventKind, Ingestor, Receipt, SubmitOptions,
};
use serde::{Deserialize, Serialize};

use super::{Api, Connection, Presented, Rejected};
use crate::body;
use crate::intake::{self, Mapped, SegmentCall};
use crate::response::{json, ApiError, Body, ErrorDetail};
use crate::telemetry::Endpoint;

/// Media types of the Segment and GA4 endpoints: their libraries send JSON, and
/// browsers `text/plain` (no CORS preflight).
const MEDIA_TYPES: &[&str] = &["application/json", "text/plain"];

/// Which Segment endpoint a path names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SegmentRoute {
    /// One call: `/v1/track`, `/v1/page`, ... (and analytics.js's short forms `/v1/t`, ...).
    Single(SegmentCall),
    /// `/v1/batch` (also `/v1/import` and `/v1/b`).
    Batch,
}

/// The Segment endpoint of `path`, if it is one.
pub(super) fn segment_route(path: &str) -> Option<SegmentRoute> {
    let call = match path.strip_prefix("/v1/")? {
        "track" | "t" => SegmentCall::Track,
        "page" | "p" => SegmentCall::Page,
        "screen" | "s" => SegmentCall::Screen,
        "identify" | "i" => SegmentCall::Identify,
        "group" | "g" => SegmentCall::Group,
        "alias" | "a" => SegmentCall::Alias,
        "batch" | "import" | "b" => return Some(SegmentRoute::Batch),
        _ => return None,
    };
    Some(SegmentRoute::Single(call))
}

/// Segment's answer: `{"success": true}`, with this project's account of a batch.
#[derive(Serialize)]
struct SegmentAnswer<'a> {
    success: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    accepted: Option<usize>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    rejected: Vec<Rejected<'a>>,
}

/// A single call refused: `{"success": false, "error": {...}}`.
#[derive(Serialize)]
struct SegmentRefusal<'a> {
    success: bool,
    error: ErrorDetail<'a>,
}

/// GA4 answers 204 with no body; a request with refused events gets their list.
#[derive(Serialize)]
struct Ga4Answer<'a> {
    accepted: usize,
    rejected: Vec<Rejected<'a>>,
}

/// The `writeKey` a browser's analytics.js puts in the body instead of a header.
#[derive(Deserialize)]
struct BodyWriteKey {
    #[serde(rename = "writeKey")]
    write_key: Option<String>,
}

/// Why one translated message was not taken.
enum Refusal {
    Mapping(intake::MapError),
    Invalid(ingest_core::ValidationError),
}

impl Refusal {
    fn detail(&self) -> ErrorDetail<'_> {
        match self {
            Refusal::Mapping(e) => ErrorDetail::of_mapping(e),
            Refusal::Invalid(e) => ErrorDetail::of(e),
        }
    }
}

/// What became of a request's messages.
struct Submitted {
    accepted: usize,
    receipts: Vec<Receipt>,
    /// By index in the request, in order.
    refused: Vec<(usize, Refusal)>,
}

impl Submitted {
    /// Whether a message could not be translated.
    fn untranslated(&self) -> bool {
        self.refused
            .iter()
            .any(|(_, refusal)| matches!(refusal, Refusal::Mapping(_)))
    }
}

impl Api {
    /// `POST /v1/*`.
    pub(super) async fn segment(
        &self,
        route: SegmentRoute,
        request: Request<Incoming>,
        connection: &Connection,
    ) -> Result<Response<Body>, ApiError> {
        let headers = request.headers().clone();
        let (ack, encoding) = self.intake_headers(&headers)?;
        // A key in a header is checked, and one message's worth of the rate limits
        // taken, before the body is read; a `writeKey` in the body only after.
        let early = if !self.keys.enabled() || headers.contains_key(AUTHORIZATION) {
            let key = Presented {
                grant: self.keys.authenticate_segment(&headers, None),
                any: headers.contains_key(AUTHORIZATION),
            };
            let caller = self.caller(key, &headers, connection, None)?;
            self.take(&caller, 1)?;
            Some(caller)
        } else {
            None
        };
        let limits = self.ingestor.settings().limits().clone();
        let (max_out, too_large) = match route {
            SegmentRoute::Batch => (limits.max_batch_bytes, ErrorCode::BatchTooLarge),
            SegmentRoute::Single(_) => (limits.max_event_bytes, ErrorCode::EventTooLarge),
        };
        let bytes = self
            .read_body(Endpoint::Segment, request, encoding, max_out, too_large)
            .await?;
        let caller = match early {
            Some(caller) => caller,
            None => {
                // The body's writeKey counts only without an Authorization header.
                let write_key = serde_json::from_slice::<BodyWriteKey>(&bytes)
                    .ok()
                    .and_then(|b| b.write_key);
                let key = Presented {
                    grant: self
                        .keys
                        .authenticate_segment(&headers, write_key.as_deref()),
                    any: write_key.is_some(),
                };
                let caller = self.caller(key, &headers, connection, None)?;
                self.take(&caller, 1)?;
                caller
            }
        };
        let options = self.submit_options(&caller);
        let body = bytes.clone();
        let max_events = limits.max_batch_events;
        let translated = self
            .heavy(bytes.len(), move || match route {
                SegmentRoute::Batch => intake::segment_batch(&body, max_events),
                SegmentRoute::Single(call) => Ok(vec![intake::segment_single(call, &body)]),
            })
            .await?;
        let messages =
            translated.map_err(|e| self.refuse_request(&kept_segment(&bytes), e, &options))?;
        self.take(&caller, messages.len().saturating_sub(1))?;
        let submitted = self.submit(bytes.len(), messages, &options).await?;
        if submitted.untranslated() {
            // Split once, and only when a message failed translation.
            let split = match route {
                SegmentRoute::Batch => segment_messages(&bytes),
                SegmentRoute::Single(_) => None,
            };
            self.dead_letter_untranslated(&submitted, &options, |index| {
                let message = split.as_ref().and_then(|messages| messages.get(index));
                kept_segment(message.unwrap_or(&bytes))
            });
        }
        self.wait_all(&submitted.receipts, ack).await?;
        if let SegmentRoute::Single(_) = route {
            if let Some((_, refusal)) = submitted.refused.first() {
                return Ok(json(
                    StatusCode::BAD_REQUEST,
                    &SegmentRefusal {
                        success: false,
                        error: refusal.detail(),
                    },
                ));
            }
            return Ok(json(
                StatusCode::OK,
                &SegmentAnswer {
                    success: true,
                    accepted: None,
                    rejected: Vec::new(),
                },
            ));
        }
        Ok(json(
            StatusCode::OK,
            &SegmentAnswer {
                success: true,
                accepted: Some(submitted.accepted),
                rejected: rejected(&submitted.refused),
            },
        ))
    }

    /// `POST /mp/collect?measurement_id=...&api_secret=...`.
    pub(super) async fn ga4(
        &self,
        request: Request<Incoming>,
        connection: &Connection,
    ) -> Result<Response<Body>, ApiError> {
        let (mut measurement_id, mut api_secret) = (None, None);
        for (name, value) in form_urlencoded::parse(request.uri().query().unwrap_or("").as_bytes())
        {
            match &*name {
                "measurement_id" => measurement_id = Some(value.into_owned()),
                "api_secret" => api_secret = Some(value.into_owned()),
                _ => {}
            }
        }
        let key = Presented {
            grant: self.keys.authenticate_secret(api_secret.as_deref()),
            any: api_secret.is_some(),
        };
        let caller = self.caller(key, request.headers(), connection, None)?;
        self.take(&caller, 1)?;
        if measurement_id.as_deref().is_none_or(str::is_empty) {
            return Err(ApiError::Mapping(intake::MapError {
                code: ErrorCode::MissingField.as_str(),
                message: "the measurement_id query parameter is required".to_owned(),
                field: Some("measurement_id".to_owned()),
            }));
        }
        let (ack, encoding) = self.intake_headers(request.headers())?;
        let limits = self.ingestor.settings().limits().clone();
        let bytes = self
            .read_body(
                Endpoint::Ga4,
                request,
                encoding,
                limits.max_batch_bytes,
                ErrorCode::BatchTooLarge,
            )
            .await?;
        let options = self.submit_options(&caller);
        let body = bytes.clone();
        let max_events = limits.max_batch_events;
        let messages = self
            .heavy(bytes.len(), move || intake::ga4_collect(&body, max_events))
            .await?
            .map_err(|e| self.refuse_request(&bytes, e, &options))?;
        self.take(&caller, messages.len().saturating_sub(1))?;
        let submitted = self.submit(bytes.len(), messages, &options).await?;
        // A GA4 event may become several native events: the dead letter holds the
        // request, and its field path names the event (`events[2].params...`).
        if submitted.untranslated() {
            self.dead_letter_untranslated(&submitted, &options, |_| bytes.clone());
        }
        self.wait_all(&submitted.receipts, ack).await?;
        if submitted.refused.is_empty() {
            let mut response = Response::new(Body::new(Bytes::new()));
            *response.status_mut() = StatusCode::NO_CONTENT;
            return Ok(response);
        }
        Ok(json(
            StatusCode::OK,
            &Ga4Answer {
                accepted: submitted.accepted,
                rejected: rejected(&submitted.refused),
            },
        ))
    }

    /// The request headers both endpoints check before the body: `Ingest-Ack`, the
    /// media type and the encoding. (The key is checked by each endpoint: Segment's may
    /// be in the body.)
    fn intake_headers(&self, headers: &HeaderMap) -> Result<(Ack, body::Encoding), ApiError> {
        let ack = super::ack_level(headers)?;
        body::check_media_type(headers, MEDIA_TYPES)?;
        Ok((ack, body::encoding(headers)?))
    }

    /// Submits the translated messages: the e-commerce events together as one batch
    /// (one queue reservation and one receipt, all or nothing, as on the native batch
    /// endpoint), then the others to the custom-events topic. A message that cannot be
    /// translated or is refused by validation is listed and the others go on; a full
    /// queue or a shutdown refuses the rest of the request (503: a resend carries the
    /// same ids). A request body (`size`) over 256 KiB is submitted on the body threads
    /// ([`Api::heavy`]).
    async fn submit(
        &self,
        size: usize,
        messages: Vec<Result<Mapped, intake::MapError>>,
        options: &SubmitOptions,
    ) -> Result<Submitted, ApiError> {
        let (ingestor, options) = (self.ingestor.clone(), options.clone());
        self.heavy(size, move || submit_mapped(&ingestor, messages, &options))
            .await?
    }

    /// A request that cannot be translated at all: its body goes to the dead-letter
    /// topic, as a native batch that cannot be split does, and the error is the answer.
    fn refuse_request(
        &self,
        body: &Bytes,
        error: intake::MapError,
        options: &SubmitOptions,
    ) -> ApiError {
        let dead = vec![(body.clone(), error.to_validation_error())];
        self.ingestor.dead_letter_with(dead, options);
        ApiError::Mapping(error)
    }

    /// Sends the messages that could not be translated to the dead-letter topic, as
    /// invalid native events go there (the validator's refusals already have): what
    /// `raw` gives for each one's index, with its error.
    fn dead_letter_untranslated(
        &self,
        submitted: &Submitted,
        options: &SubmitOptions,
        raw: impl Fn(usize) -> Bytes,
    ) {
        let untranslated = submitted
            .refused
            .iter()
            .filter_map(|(index, refusal)| match refusal {
                Refusal::Mapping(error) => Some((raw(*index), error.to_validation_error())),
                Refusal::Invalid(_) => None,
            })
            .collect();
        self.ingestor.dead_letter_with(untranslated, options);
    }

    /// Waits for `ack` on every receipt, within one `ack_timeout` in all.
    async fn wait_all(&self, receipts: &[Receipt], ack: Ack) -> Result<(), ApiError> {
        if ack == Ack::Accepted {
            return Ok(());
        }
        let all = async {
            for receipt in receipts {
                receipt.wait(ack).await?;
            }
            Ok::<(), Error>(())
        };
        super::ack_outcome(
            tokio::time::timeout(self.ack_timeout, all).await,
            ack,
            self.ack_timeout,
        )
    }
}

/// [`Api::submit`]'s work.
fn submit_mapped(
    ingestor: &Ingestor,
    messages: Vec<Result<Mapped, intake::MapError>>,
    options: &SubmitOptions,
) -> Result<Submitted, ApiError> {
    let mut submitted = Submitted {
        accepted: 0,
        receipts: Vec::new(),
        refused: Vec::new(),
    };
    let mut batch = Vec::new();
    let mut batch_index = Vec::new();
    let mut customs = Vec::new();
    for (index, message) in messages.into_iter().enumerate() {
        match message {
            Err(error) => submitted.refused.push((index, Refusal::Mapping(error))),
            Ok(Mapped::Event { kind, json }) => {
                append_typed(&mut batch, kind, &json);
                batch_index.push(index);
            }
            Ok(Mapped::Custom(custom)) => customs.push((index, custom)),
        }
    }
    if !batch_index.is_empty() {
        let result = ingestor.submit_batch_with(Bytes::from(batch), options)?;
        submitted.accepted += result.accepted;
        submitted.receipts.push(result.receipt);
        for rejection in result.rejected {
            submitted.refused.push((
                batch_index[rejection.index],
                Refusal::Invalid(rejection.error),
            ));
        }
    }
    for (index, custom) in customs {
        let event = CustomEvent {
            name: custom.name,
            key: custom.key,
            event_id: Some(custom.event_id),
            body: custom.body,
        };
        match ingestor.submit_custom_with(event, options) {
            Ok(receipt) => {
                submitted.accepted += 1;
                submitted.receipts.push(receipt);
            }
            Err(Error::Invalid(error)) => {
                submitted.refused.push((index, Refusal::Invalid(error)));
            }
            Err(other) => return Err(other.into()),
        }
    }
    submitted.refused.sort_by_key(|(index, _)| *index);
    Ok(submitted)
}

/// What of a Segment body or message may go to the dead-letter topic: all of it but a
/// `writeKey` (a credential), or nothing when the key cannot be taken out (the error
/// headers still say what was refused).
fn kept_segment(bytes: &Bytes) -> Bytes {
    intake::segment_without_write_key(bytes).unwrap_or_default()
}

/// The messages of a Segment batch body, each its bytes as sent (slices of the body);
/// `None` when it cannot be split.
fn segment_messages(body: &Bytes) -> Option<Vec<Bytes>> {
    #[derive(Deserialize)]
    struct Messages<'a> {
        #[serde(borrow)]
        batch: Vec<&'a serde_json::value::RawValue>,
    }
    let messages = serde_json::from_slice::<Messages<'_>>(body).ok()?;
    Some(
        messages
            .batch
            .iter()
            .map(|raw| body.slice_ref(raw.get().as_bytes()))
            .collect(),
    )
}

/// Appends `json` (an object) to an NDJSON batch, with the `type` field a batch event
/// carries spliced in front of its own fields.
fn append_typed(batch: &mut Vec<u8>, kind: EventKind, json: &[u8]) {
    batch.extend_from_slice(b"{\"type\":\"");
    batch.extend_from_slice(kind.as_str().as_bytes());
    batch.push(b'"');
    let fields = json.strip_prefix(b"{").unwrap_or(json).trim_ascii_start();
    if !fields.starts_with(b"}") {
        batch.push(b',');
    }
    batch.extend_from_slice(fields);
    batch.push(b'\n');
}

fn rejected(refused: &[(usize, Refusal)]) -> Vec<Rejected<'_>> {
    refused
        .iter()
        .map(|(index, refusal)| Rejected {
            index: *index,
            error: refusal.detail(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn translated_events_become_typed_ndjson_lines() {
        let mut batch = Vec::new();
        append_typed(
            &mut batch,
            EventKind::Search,
            br#"{"user_id":"u","query":"q"}"#,
        );
        append_typed(&mut batch, EventKind::Cart, b"{ }");
        assert_eq!(
            batch,
            b"{\"type\":\"search\",\"user_id\":\"u\",\"query\":\"q\"}\n{\"type\":\"cart\"}\n"
        );
    }

    #[test]
    fn segment_paths_and_analytics_js_short_forms_are_routed() {
        assert_eq!(
            segment_route("/v1/track"),
            Some(SegmentRoute::Single(SegmentCall::Track))
        );
        assert_eq!(
            segment_route("/v1/t"),
            Some(SegmentRoute::Single(SegmentCall::Track))
        );
        assert_eq!(
            segment_route("/v1/identify"),
            Some(SegmentRoute::Single(SegmentCall::Identify))
        );
        assert_eq!(segment_route("/v1/batch"), Some(SegmentRoute::Batch));
        assert_eq!(segment_route("/v1/import"), Some(SegmentRoute::Batch));
        assert_eq!(segment_route("/v1/other"), None);
        assert_eq!(segment_route("/v2/track"), None);
    }
}
