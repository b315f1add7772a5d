//! Answers: every error the agent can give and its HTTP status, decided here and only
//! here, and the JSON bodies of the contract (`openapi/edge-agent.yaml`).

use std::borrow::Cow;

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{Response, StatusCode};
use http_body_util::Full;
use ingest_core::{printable, Error, ErrorCode, ValidationError};
use serde::Serialize;

/// The body type of every answer.
pub type Body = Full<Bytes>;

/// Why a request was not (fully) served.
#[derive(Debug)]
pub enum ApiError {
    /// The event or batch body is invalid as a whole.
    Invalid(ValidationError),
    /// No API key, or an unknown one, while keys are configured.
    Unauthorized,
    /// The key or the request's origin does not allow this request (403).
    Forbidden {
        /// The stable code (`origin_not_allowed`, `type_not_allowed`).
        code: &'static str,
        /// What is not allowed.
        message: &'static str,
    },
    /// The body as sent is larger than `server.max_body_bytes`.
    BodyTooLarge {
        /// The bound.
        limit: usize,
    },
    /// `Content-Type` or `Content-Encoding` not accepted.
    UnsupportedMediaType(String),
    /// A request header has a value outside its allowed set.
    InvalidHeader {
        /// The header.
        name: &'static str,
        /// Why.
        message: String,
    },
    /// A rate limit is exceeded.
    RateLimited,
    /// The events cannot be taken or acknowledged now.
    Unavailable(String),
    /// No such path.
    NotFound,
    /// The path exists, the method does not.
    MethodNotAllowed(&'static str),
    /// The client did not send the body in time.
    BodyTimeout,
    /// A zstd body declares a decoding window over the accepted size.
    WindowTooLarge {
        /// The largest window accepted, in bytes.
        max_bytes: usize,
    },
    /// A Segment or GA4 request that cannot be translated (`crate::intake`).
    Mapping(crate::intake::MapError),
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorDetail<'a>,
}

/// The most characters of an answer's `message` or `field`: whatever an error holds,
/// an answer never echoes unbounded text, and never a control character.
pub const MAX_SHOWN_CHARS: usize = 512;

/// One error, as in answers and in a batch's `rejected` list. Its `message` and `field`
/// are [`printable`]: control characters escaped, cut at [`MAX_SHOWN_CHARS`].
#[derive(Serialize)]
pub struct ErrorDetail<'a> {
    code: &'a str,
    message: Cow<'a, str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<Cow<'a, str>>,
}

impl<'a> ErrorDetail<'a> {
    fn new(code: &'a str, message: &'a str, field: Option<&'a str>) -> Self {
        ErrorDetail {
            code,
            message: printable(message, MAX_SHOWN_CHARS),
            field: field.map(|f| printable(f, MAX_SHOWN_CHARS)),
        }
    }

    /// The detail of a Segment or GA4 message that cannot be translated.
    pub fn of_mapping(error: &'a crate::intake::MapError) -> Self {
        ErrorDetail::new(error.code, &error.message, error.field.as_deref())
    }

    /// The detail of a validation error.
    pub fn of(error: &'a ValidationError) -> Self {
        ErrorDetail::new(error.code().as_str(), error.message(), error.field_path())
    }
}

impl From<Error> for ApiError {
    fn from(error: Error) -> Self {
        match error {
            Error::Invalid(e) => ApiError::Invalid(e),
            Error::QueueFull { .. } => {
                ApiError::Unavailable("queue full, try again later".to_owned())
            }
            Error::ShuttingDown => ApiError::Unavailable("shutting down".to_owned()),
            // The detail (a file path, the Kafka client's words) is for the log only.
            other => {
                let kind = other.code();
                tracing::warn!(error = %other, ?kind, "an event request failed inside the agent");
                ApiError::Unavailable(internal_message("the events could not be taken", kind))
            }
        }
    }
}

/// The answer's message for a failure inside the agent: what failed, and the
/// [`ErrorKind`](ingest_core::ErrorKind) that the agent's log line names too; never the
/// error's own text.
pub fn internal_message(what: &str, kind: ingest_core::ErrorKind) -> String {
    format!(
        "{what} ({kind:?} error, number {}; the agent's log has the details)",
        kind.number()
    )
}

fn status_of_code(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::EventTooLarge | ErrorCode::BatchTooLarge | ErrorCode::TooManyEvents => {
            StatusCode::PAYLOAD_TOO_LARGE
        }
        _ => StatusCode::BAD_REQUEST,
    }
}

impl ApiError {
    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Invalid(e) => status_of_code(e.code()),
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden { .. } => StatusCode::FORBIDDEN,
            ApiError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::InvalidHeader { .. } => StatusCode::BAD_REQUEST,
            ApiError::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            ApiError::WindowTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Mapping(_) => StatusCode::BAD_REQUEST,
        }
    }

    /// The stable code, a label for metrics too.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Invalid(e) => e.code().as_str(),
            ApiError::Unauthorized => "unauthorized",
            ApiError::Forbidden { code, .. } => code,
            ApiError::BodyTooLarge { .. } => "batch_too_large",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::InvalidHeader { .. } => "invalid_value",
            ApiError::RateLimited => "rate_limited",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::NotFound => "not_found",
            ApiError::MethodNotAllowed(_) => "method_not_allowed",
            ApiError::BodyTimeout => "request_timeout",
            ApiError::WindowTooLarge { .. } => "window_too_large",
            ApiError::Mapping(e) => e.code,
        }
    }

    /// The answer, with `Retry-After` (429, 503) as given.
    pub fn into_response(self, retry_after_secs: u64) -> Response<Body> {
        let status = self.status();
        let message;
        let (message, field): (&str, Option<&str>) = match &self {
            ApiError::Invalid(e) => (e.message(), e.field_path()),
            ApiError::Unauthorized => ("missing or invalid API key", None),
            ApiError::Forbidden { message, .. } => (*message, None),
            ApiError::BodyTooLarge { limit } => {
                message = format!("request body larger than {limit} bytes");
                (&message, None)
            }
            ApiError::UnsupportedMediaType(m) | ApiError::Unavailable(m) => (m, None),
            ApiError::InvalidHeader { name, message } => (message, Some(*name)),
            ApiError::RateLimited => ("rate limit exceeded", None),
            ApiError::NotFound => ("no such endpoint", None),
            ApiError::MethodNotAllowed(_) => ("method not allowed on this endpoint", None),
            ApiError::BodyTimeout => ("the request body did not arrive in time", None),
            ApiError::WindowTooLarge { max_bytes } => {
                message = format!(
                    "the zstd body needs a decoding window larger than {max_bytes} bytes; \
                     compress with a smaller window (a level up to 19, without long-distance mode)"
                );
                (&message, Some("Content-Encoding"))
            }
            ApiError::Mapping(e) => (&e.message, e.field.as_deref()),
        };
        let body = ErrorBody {
            error: ErrorDetail::new(self.code(), message, field),
        };
        let mut response = json(status, &body);
        let headers = response.headers_mut();
        match self {
            ApiError::RateLimited | ApiError::Unavailable(_) => {
                headers.insert(RETRY_AFTER, HeaderValue::from(retry_after_secs));
            }
            ApiError::Unauthorized => {
                headers.insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            ApiError::MethodNotAllowed(allow) => {
                headers.insert(http::header::ALLOW, HeaderValue::from_static(allow));
            }
            _ => {}
        }
        response
    }
}

/// A JSON answer.
pub fn json<T: Serialize>(status: StatusCode, value: &T) -> Response<Body> {
    let bytes = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
    let mut response = Response::new(Full::new(Bytes::from(bytes)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// A plain-text answer.
pub fn text(status: StatusCode, body: String, content_type: &'static str) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn body_of(response: Response<Body>) -> serde_json::Value {
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        serde_json::from_slice(&bytes).expect("JSON")
    }

    #[tokio::test]
    async fn statuses_and_bodies_follow_the_contract() {
        let v = ingest_core::Validator::new(ingest_core::Limits::default());
        let invalid = v
            .validate(
                Some(ingest_core::EventKind::Cart),
                Bytes::from_static(b"{\"user_id\":\"u\",\"action\":\"zap\"}"),
            )
            .expect_err("invalid");
        let response = ApiError::Invalid(invalid).into_response(1);
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        let body = body_of(response).await;
        assert_eq!(body["error"]["code"], "invalid_value");
        assert_eq!(body["error"]["field"], "action");

        let response = ApiError::Unavailable("queue full".to_owned()).into_response(3);
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[RETRY_AFTER], "3");
        let response = ApiError::RateLimited.into_response(2);
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[RETRY_AFTER], "2");
        let response = ApiError::Unauthorized.into_response(1);
        assert_eq!(response.headers()[WWW_AUTHENTICATE], "Bearer");
        let body = body_of(response).await;
        assert_eq!(body["error"]["code"], "unauthorized");
        assert!(body["error"].get("field").is_none());
        let response = ApiError::InvalidHeader {
            name: "Ingest-Ack",
            message: "nope".to_owned(),
        }
        .into_response(1);
        assert_eq!(body_of(response).await["error"]["field"], "Ingest-Ack");
    }

    /// An internal error's own text (a file path, the Kafka client's words) stays out of
    /// the answer, which names only its kind.
    #[tokio::test]
    async fn internal_errors_answer_a_generic_message() {
        let error = Error::Io {
            context: "opening /var/lib/private/spool/00000000000000000042.seg".to_owned(),
            source: std::io::Error::other("Permission denied (os error 13)"),
        };
        let response = ApiError::from(error).into_response(1);
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body = body_of(response).await;
        let message = body["error"]["message"].as_str().expect("message");
        assert!(
            !message.contains("/var/lib") && !message.contains("denied"),
            "{message}"
        );
        assert!(message.contains("Io error, number 7"), "{message}");
    }

    /// Client text in an error (a 100 KB key holding NUL, CR, LF and ESC) is answered
    /// escaped and cut, in `message` and `field` alike.
    #[tokio::test]
    async fn answers_never_echo_unbounded_or_control_text() {
        let raw = format!("\0\r\nFake: 1\u{1b}[31m{}", "k".repeat(100_000));
        let error = ValidationError::field(ErrorCode::DuplicateField, raw.clone(), raw);
        let detail = serde_json::to_value(ErrorDetail::of(&error)).expect("JSON");
        let body = body_of(ApiError::Invalid(error).into_response(1)).await;
        for shown in [&body["error"], &detail] {
            for key in ["message", "field"] {
                let text = shown[key].as_str().expect(key);
                assert!(text.chars().count() <= MAX_SHOWN_CHARS + 1, "{key}");
                assert!(!text.chars().any(char::is_control), "{text:?}");
                assert!(text.starts_with("\\u{0}\\u{d}\\u{a}Fake: 1"), "{text}");
            }
        }
    }

    #[test]
    fn every_library_error_maps_to_a_status() {
        let full = ApiError::from(Error::QueueFull {
            queued_events: 1,
            queued_bytes: 1,
        });
        assert_eq!(full.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            ApiError::from(Error::ShuttingDown).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        let big = ApiError::Invalid(ValidationError::new(ErrorCode::BatchTooLarge, "big"));
        assert_eq!(big.status(), StatusCode::PAYLOAD_TOO_LARGE);
    }
}
