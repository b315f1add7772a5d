//! The crate's error types.
//!
//! [`ValidationError`] describes what is wrong with one event (a client error; never
//! retryable as is). [`Error`] is everything else a caller of the library can meet.
//! Whether an error is worth retrying is decided here, once, by [`Error::is_retryable`];
//! front ends map errors to their protocol (HTTP statuses in the edge agent) from these
//! predicates rather than by matching on messages.

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use crate::event::EventKind;

/// Why an event (or a batch body) was rejected, as a stable machine-readable code.
///
/// The codes are part of the public contract: they appear in HTTP answers, in the
/// `error_code` header of dead-lettered records and in the `reason` label of metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum ErrorCode {
    /// The body (or a batch element) holds no bytes at all.
    EmptyBody,
    /// The bytes are not well-formed JSON.
    InvalidJson,
    /// The bytes are not valid UTF-8.
    InvalidUtf8,
    /// JSON nesting is deeper than the configured limit.
    TooDeep,
    /// One event is larger than the configured per-event limit.
    EventTooLarge,
    /// A batch body is larger than the configured per-batch limit.
    BatchTooLarge,
    /// A batch holds more events than the configured limit.
    TooManyEvents,
    /// The event is valid JSON but not a JSON object.
    NotAnObject,
    /// A required field is absent (or `null`).
    MissingField,
    /// A field has the wrong JSON type (e.g. a string where a number belongs).
    InvalidType,
    /// A field has the right type but a value outside its allowed set or range.
    InvalidValue,
    /// The same key appears twice in one JSON object.
    DuplicateField,
    /// The `type` field names no known event type.
    UnknownEventType,
    /// The `type` field disagrees with the endpoint the event was sent to.
    TypeMismatch,
    /// A `currency` is not an ISO 4217 code.
    InvalidCurrency,
    /// A `timestamp` is not an RFC 3339 date-time.
    InvalidTimestamp,
    /// A `timestamp` is further in the future or the past than the configured skew allows.
    TimestampOutOfRange,
    /// An `event_id` is not a UUID.
    InvalidEventId,
    /// A string is longer than its field allows.
    TooLong,
    /// The event's type is not one the submitter may send (see
    /// [`SubmitOptions::with_allowed_kinds`](crate::SubmitOptions::with_allowed_kinds):
    /// for example a purchase sent with a browser's public key).
    TypeNotAllowed,
}

impl ErrorCode {
    /// Every code, in declaration order (handy for pre-registering metrics). A slice,
    /// not an array: a new code in a later version changes its length, not its type.
    pub const ALL: &'static [ErrorCode] = &[
        ErrorCode::EmptyBody,
        ErrorCode::InvalidJson,
        ErrorCode::InvalidUtf8,
        ErrorCode::TooDeep,
        ErrorCode::EventTooLarge,
        ErrorCode::BatchTooLarge,
        ErrorCode::TooManyEvents,
        ErrorCode::NotAnObject,
        ErrorCode::MissingField,
        ErrorCode::InvalidType,
        ErrorCode::InvalidValue,
        ErrorCode::DuplicateField,
        ErrorCode::UnknownEventType,
        ErrorCode::TypeMismatch,
        ErrorCode::InvalidCurrency,
        ErrorCode::InvalidTimestamp,
        ErrorCode::TimestampOutOfRange,
        ErrorCode::InvalidEventId,
        ErrorCode::TooLong,
        ErrorCode::TypeNotAllowed,
    ];

    /// The snake_case name used on the wire (`missing_field`, `invalid_currency`, ...).
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorCode::EmptyBody => "empty_body",
            ErrorCode::InvalidJson => "invalid_json",
            ErrorCode::InvalidUtf8 => "invalid_utf8",
            ErrorCode::TooDeep => "too_deep",
            ErrorCode::EventTooLarge => "event_too_large",
            ErrorCode::BatchTooLarge => "batch_too_large",
            ErrorCode::TooManyEvents => "too_many_events",
            ErrorCode::NotAnObject => "not_an_object",
            ErrorCode::MissingField => "missing_field",
            ErrorCode::InvalidType => "invalid_type",
            ErrorCode::InvalidValue => "invalid_value",
            ErrorCode::DuplicateField => "duplicate_field",
            ErrorCode::UnknownEventType => "unknown_event_type",
            ErrorCode::TypeMismatch => "type_mismatch",
            ErrorCode::InvalidCurrency => "invalid_currency",
            ErrorCode::InvalidTimestamp => "invalid_timestamp",
            ErrorCode::TimestampOutOfRange => "timestamp_out_of_range",
            ErrorCode::InvalidEventId => "invalid_event_id",
            ErrorCode::TooLong => "too_long",
            ErrorCode::TypeNotAllowed => "type_not_allowed",
        }
    }

    /// Whether this code concerns the size of the input rather than its content
    /// (front ends answer these with "payload too large" instead of "bad request").
    pub const fn is_size_limit(self) -> bool {
        matches!(
            self,
            ErrorCode::EventTooLarge | ErrorCode::BatchTooLarge | ErrorCode::TooManyEvents
        )
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// What is wrong with one event: a code, the field it concerns (a path such as
/// `items[2].price`, absent for whole-document problems) and a human-readable message.
///
/// Displayed as `code: field: message`, e.g.
/// `invalid_currency: currency: "EURO" is not an ISO 4217 currency code`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationError {
    code: ErrorCode,
    field: Option<Cow<'static, str>>,
    message: String,
    event_kind: Option<EventKind>,
}

impl ValidationError {
    /// Creates an error about a whole document (no particular field).
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ValidationError {
            code,
            field: None,
            message: message.into(),
            event_kind: None,
        }
    }

    /// Creates an error about one field; `field` is its path (`context.ip`, `items[0].price`).
    pub fn field(
        code: ErrorCode,
        field: impl Into<Cow<'static, str>>,
        message: impl Into<String>,
    ) -> Self {
        ValidationError {
            code,
            field: Some(field.into()),
            message: message.into(),
            event_kind: None,
        }
    }

    /// The machine-readable code.
    pub fn code(&self) -> ErrorCode {
        self.code
    }

    /// The path of the offending field, if the error concerns one.
    pub fn field_path(&self) -> Option<&str> {
        self.field.as_deref()
    }

    /// The human-readable explanation.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The type of the rejected event, when validation got far enough to know it (from
    /// the endpoint or a valid `type` field).
    pub fn event_kind(&self) -> Option<EventKind> {
        self.event_kind
    }

    /// Records the type of the rejected event.
    #[must_use]
    pub fn with_event_kind(mut self, kind: EventKind) -> Self {
        self.event_kind = Some(kind);
        self
    }
}

/// How a client-chosen object key appears in a field path: as it is when it is short and
/// plain (ASCII letters, digits, `_`, `-`), otherwise escaped and quoted as a Rust string
/// literal (`"a\tb"`), cut to its first [`KEY_CHARS_SHOWN`] characters (marked `…`).
/// Field paths end up in Kafka headers and HTTP answers, so they never carry raw client
/// text.
pub(crate) fn path_key(key: &str) -> Cow<'_, str> {
    let plain = |b: &u8| b.is_ascii_alphanumeric() || *b == b'_' || *b == b'-';
    if !key.is_empty() && key.len() <= KEY_CHARS_SHOWN && key.as_bytes().iter().all(plain) {
        return Cow::Borrowed(key);
    }
    match key.char_indices().nth(KEY_CHARS_SHOWN) {
        Some((cut, _)) => Cow::Owned(format!("{:?}…", &key[..cut])),
        None => Cow::Owned(format!("{key:?}")),
    }
}

/// The most characters of a client-chosen key shown in a field path.
pub(crate) const KEY_CHARS_SHOWN: usize = 64;

/// A client-sent value as an error message shows it: quoted and escaped as a Rust string
/// literal (`"a\tb"`), cut to its first [`KEY_CHARS_SHOWN`] characters (marked `…`).
/// Messages end up in Kafka headers and HTTP answers, so they never carry raw or
/// unbounded client text.
pub(crate) fn quoted(value: &str) -> String {
    match value.char_indices().nth(KEY_CHARS_SHOWN) {
        Some((cut, _)) => format!("{:?}…", &value[..cut]),
        None => format!("{value:?}"),
    }
}

/// `text` made safe to show in an answer, a header or a log line: control characters
/// (U+0000–U+001F, U+007F–U+009F) and the line and paragraph separators (U+2028,
/// U+2029) escaped as `\u{…}`, and cut so that the result holds at most `max_chars`
/// characters, escapes included, plus a final `…` that marks the cut. Text that needs
/// neither is borrowed as it is.
pub fn printable(text: &str, max_chars: usize) -> Cow<'_, str> {
    let special = |c: char| c.is_control() || matches!(c, '\u{2028}' | '\u{2029}');
    if !text.chars().any(special) && text.char_indices().nth(max_chars).is_none() {
        return Cow::Borrowed(text);
    }
    let mut out = String::new();
    let mut shown = 0;
    for c in text.chars() {
        let escaped = special(c).then(|| format!("\\u{{{:x}}}", u32::from(c)));
        let width = escaped.as_ref().map_or(1, String::len);
        if shown + width > max_chars {
            out.push('…');
            break;
        }
        shown += width;
        match escaped {
            Some(escaped) => out.push_str(&escaped),
            None => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// One step of a path into a document: an object key or an array index.
#[derive(Debug, Clone, Copy)]
pub(crate) enum PathStep<'a> {
    /// A member of an object.
    Key(&'a str),
    /// An element of an array.
    Index(usize),
}

/// The longest field path rendered from steps, in bytes, before it is cut with `…`.
const MAX_PATH_BYTES: usize = 256;

/// A field path from steps: keys joined by `.` (each rendered by [`path_key`]), indices as
/// `[i]`, e.g. `filters.color[1]`; cut with `…` past [`MAX_PATH_BYTES`].
pub(crate) fn render_path(steps: &[PathStep<'_>]) -> String {
    let mut path = String::new();
    for step in steps {
        if path.len() > MAX_PATH_BYTES {
            path.push('…');
            break;
        }
        match step {
            PathStep::Key(key) => {
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(&path_key(key));
            }
            PathStep::Index(index) => {
                path.push('[');
                path.push_str(&index.to_string());
                path.push(']');
            }
        }
    }
    path
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.field {
            Some(field) => write!(f, "{}: {}: {}", self.code, field, self.message),
            None => write!(f, "{}: {}", self.code, self.message),
        }
    }
}

impl std::error::Error for ValidationError {}

/// An invalid configuration: the key (a dotted path), where its value came from when
/// known, and why. Shared with the binaries through `ingest-common`, so every
/// configuration error of the workspace reads the same.
pub use ingest_common::ConfigError;

/// Every failure the library reports, apart from per-event validation details that
/// [`BatchReceipt`](crate::BatchReceipt) lists individually.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The event (or batch body) failed validation. Not retryable as is.
    #[error("invalid event: {0}")]
    Invalid(#[from] ValidationError),

    /// The in-memory queue is at its configured bound: back off and retry.
    #[error("queue full ({queued_events} events, {queued_bytes} bytes queued); retry later")]
    QueueFull {
        /// Events waiting for delivery when the submission was refused.
        queued_events: usize,
        /// Bytes waiting for delivery when the submission was refused.
        queued_bytes: usize,
    },

    /// The ingestor is shutting down and takes no more events.
    #[error("the ingestor is shutting down")]
    ShuttingDown,

    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),

    /// The Kafka client could not be created or an administrative request failed.
    #[error("kafka: {context}")]
    Kafka {
        /// What was being attempted.
        context: String,
        /// The client's error.
        #[source]
        source: KafkaError,
    },

    /// Some events of a receipt could not be delivered to Kafka.
    #[error("{failed} of {total} events not delivered: {reason}")]
    Delivery {
        /// Events of the receipt that failed.
        failed: usize,
        /// Events the receipt covers.
        total: usize,
        /// The first failure's cause, as reported by the Kafka client.
        reason: String,
        /// Whether resubmitting the events may succeed (broker unreachable, timeouts)
        /// rather than fail again (message too large for the topic).
        retryable: bool,
    },

    /// A local resource (a thread, a file) could not be set up or used.
    #[error("{context}: {source}")]
    Io {
        /// What was being attempted.
        context: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },

    /// The disk buffer could not be opened or used.
    #[error("{context}: {source}")]
    Buffer {
        /// What was being attempted.
        context: String,
        /// The buffer's error.
        #[source]
        source: crate::buffer::BufferError,
    },

    /// An operation did not finish within its deadline.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
}

impl Error {
    /// Whether retrying the same call later may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::QueueFull { .. } | Error::ShuttingDown | Error::Timeout(_) => true,
            Error::Delivery { retryable, .. } => *retryable,
            Error::Kafka { .. } | Error::Io { .. } | Error::Buffer { .. } => true,
            Error::Invalid(_) | Error::Config(_) => false,
        }
    }

    /// The validation details, when the error is a validation failure.
    pub fn validation(&self) -> Option<&ValidationError> {
        match self {
            Error::Invalid(e) => Some(e),
            _ => None,
        }
    }

    /// Whether the error is back-pressure: the caller should slow down (HTTP 503/429).
    pub fn is_backpressure(&self) -> bool {
        matches!(self, Error::QueueFull { .. } | Error::ShuttingDown)
    }

    #[cfg(feature = "kafka")]
    pub(crate) fn kafka(context: impl Into<String>, source: rdkafka::error::KafkaError) -> Self {
        Error::Kafka {
            context: context.into(),
            source: KafkaError(source),
        }
    }
}

/// An error of the Kafka client inside. Opaque: its text is the client's message; the
/// client library's own error type is not part of this crate's API, so upgrading the
/// client does not break callers.
#[derive(Debug, Clone)]
pub struct KafkaError(KafkaErrorInner);

/// The client's error; without the `kafka` feature there is no client, so none exists.
#[cfg(feature = "kafka")]
type KafkaErrorInner = rdkafka::error::KafkaError;
#[cfg(not(feature = "kafka"))]
type KafkaErrorInner = std::convert::Infallible;

impl KafkaError {
    /// librdkafka's name of the error code, when the error carries one (e.g.
    /// `TopicAlreadyExists`, `MessageSizeTooLarge`).
    pub fn code_name(&self) -> Option<String> {
        #[cfg(feature = "kafka")]
        return self.0.rdkafka_error_code().map(|code| format!("{code:?}"));
        #[cfg(not(feature = "kafka"))]
        match self.0 {}
    }
}

impl fmt::Display for KafkaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl std::error::Error for KafkaError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        #[cfg(feature = "kafka")]
        return self.0.source();
        #[cfg(not(feature = "kafka"))]
        match self.0 {}
    }
}
