//! Errors as JavaScript sees them from this layer: `Error` objects whose message is
//! [`MARKER`] followed by a JSON description, turned into `IngestError` subclasses by
//! `index.js` (which must agree on the marker and the fields).

use napi::Status;
use serde_json::json;

/// Starts the message of every error this layer raises on purpose.
pub(crate) const MARKER: &str = "ingest-core:";

/// An error of ingest-core, described for `index.js`: `kind` (the [`ErrorKind`]
/// name and number), and for validation errors the `ErrorCode` name and number, the
/// field path and the message.
///
/// [`ErrorKind`]: ingest_core::ErrorKind
pub(crate) fn ingest(error: &ingest_core::Error) -> napi::Error {
    let kind = error.code();
    let mut description = json!({
        "kind": kind.as_str(),
        "kindNumber": kind.number(),
        "message": error.to_string(),
        "retryable": error.is_retryable(),
    });
    if let Some(invalid) = error.validation() {
        description["code"] = json!(invalid.code().as_str());
        description["codeNumber"] = json!(invalid.code().number());
        description["field"] = json!(invalid.field_path());
        description["message"] = json!(invalid.message());
    }
    described(&description)
}

/// Flags refused by ingest-core (`index.js` raises a `ConfigError`): `field` is where
/// in the file the fault is (`flags[0].variants`, or `flags file` when the text does
/// not parse).
pub(crate) fn flags_refused(error: &ingest_core::flags::FlagsError) -> napi::Error {
    described(&json!({
        "kind": ingest_core::ErrorKind::Config.as_str(),
        "kindNumber": ingest_core::ErrorKind::Config.number(),
        "message": error.to_string(),
        "field": error.path,
        "retryable": false,
    }))
}

/// A misuse the caller can fix (an unknown event kind or ack level, a bad format).
pub(crate) fn invalid_argument(message: impl Into<String>) -> napi::Error {
    described(&json!({
        "kind": "invalid_argument",
        "kindNumber": 0,
        "message": message.into(),
        "retryable": false,
    }))
}

fn described(description: &serde_json::Value) -> napi::Error {
    napi::Error::new(Status::GenericFailure, format!("{MARKER}{description}"))
}
