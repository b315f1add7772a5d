//! Fixed numeric codes for errors, for hosts that cross a language boundary (the C ABI,
//! and the bindings built on it or on this crate) and need numbers that never change.
//!
//! [`Error::code`] gives an error's [`ErrorKind`]; [`ErrorCode::number`] gives a
//! validation code's number. Both tables are append-only: a value, once published,
//! keeps its meaning, and new variants take new numbers.
//!
//! | [`ErrorKind`] | number | meaning |
//! |---|---|---|
//! | `Invalid` | 1 | the event or batch body failed validation |
//! | `QueueFull` | 2 | back-pressure: the in-memory queue is at its bound |
//! | `ShuttingDown` | 3 | the ingestor is closed or closing |
//! | `Config` | 4 | the configuration is invalid |
//! | `Kafka` | 5 | the Kafka client could not be created or an admin request failed |
//! | `Delivery` | 6 | some events of a receipt did not reach the level asked for |
//! | `Io` | 7 | a thread or file could not be set up or used |
//! | `Buffer` | 8 | the disk buffer could not be opened or used |
//! | `Timeout` | 9 | an operation did not finish within its deadline |
//!
//! | [`ErrorCode`] | number | | [`ErrorCode`] | number |
//! |---|---|---|---|---|
//! | `empty_body` | 1 | | `invalid_value` | 11 |
//! | `invalid_json` | 2 | | `duplicate_field` | 12 |
//! | `invalid_utf8` | 3 | | `unknown_event_type` | 13 |
//! | `too_deep` | 4 | | `type_mismatch` | 14 |
//! | `event_too_large` | 5 | | `invalid_currency` | 15 |
//! | `batch_too_large` | 6 | | `invalid_timestamp` | 16 |
//! | `too_many_events` | 7 | | `timestamp_out_of_range` | 17 |
//! | `not_an_object` | 8 | | `invalid_event_id` | 18 |
//! | `missing_field` | 9 | | `too_long` | 19 |
//! | `invalid_type` | 10 | | `type_not_allowed` | 20 |

use std::fmt;

use crate::error::{Error, ErrorCode};

/// The class of an [`Error`], with a fixed number (see the [module table](self)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
#[repr(u16)]
pub enum ErrorKind {
    /// [`Error::Invalid`].
    Invalid = 1,
    /// [`Error::QueueFull`].
    QueueFull = 2,
    /// [`Error::ShuttingDown`].
    ShuttingDown = 3,
    /// [`Error::Config`].
    Config = 4,
    /// [`Error::Kafka`].
    Kafka = 5,
    /// [`Error::Delivery`].
    Delivery = 6,
    /// [`Error::Io`].
    Io = 7,
    /// [`Error::Buffer`].
    Buffer = 8,
    /// [`Error::Timeout`].
    Timeout = 9,
}

impl ErrorKind {
    /// The fixed number of this kind.
    pub const fn number(self) -> u16 {
        self as u16
    }

    /// The kind with this number, if there is one.
    pub const fn from_number(number: u16) -> Option<ErrorKind> {
        Some(match number {
            1 => ErrorKind::Invalid,
            2 => ErrorKind::QueueFull,
            3 => ErrorKind::ShuttingDown,
            4 => ErrorKind::Config,
            5 => ErrorKind::Kafka,
            6 => ErrorKind::Delivery,
            7 => ErrorKind::Io,
            8 => ErrorKind::Buffer,
            9 => ErrorKind::Timeout,
            _ => return None,
        })
    }

    /// A snake_case name (`queue_full`, `shutting_down`, ...), for logs and for
    /// languages whose errors carry a string code.
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Invalid => "invalid",
            ErrorKind::QueueFull => "queue_full",
            ErrorKind::ShuttingDown => "shutting_down",
            ErrorKind::Config => "config",
            ErrorKind::Kafka => "kafka",
            ErrorKind::Delivery => "delivery",
            ErrorKind::Io => "io",
            ErrorKind::Buffer => "buffer",
            ErrorKind::Timeout => "timeout",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl Error {
    /// The error's class, with a fixed number ([`ErrorKind::number`]).
    ///
    /// ```
    /// use ingest_core::{Error, ErrorKind};
    ///
    /// assert_eq!(Error::ShuttingDown.code(), ErrorKind::ShuttingDown);
    /// assert_eq!(Error::ShuttingDown.code().number(), 3);
    /// ```
    pub fn code(&self) -> ErrorKind {
        match self {
            Error::Invalid(_) => ErrorKind::Invalid,
            Error::QueueFull { .. } => ErrorKind::QueueFull,
            Error::ShuttingDown => ErrorKind::ShuttingDown,
            Error::Config(_) => ErrorKind::Config,
            Error::Kafka { .. } => ErrorKind::Kafka,
            Error::Delivery { .. } => ErrorKind::Delivery,
            Error::Io { .. } => ErrorKind::Io,
            Error::Buffer { .. } => ErrorKind::Buffer,
            Error::Timeout(_) => ErrorKind::Timeout,
        }
    }
}

impl ErrorCode {
    /// The code's fixed number (see the [module table](crate::codes)), for hosts that
    /// pass codes as integers.
    ///
    /// ```
    /// use ingest_core::ErrorCode;
    ///
    /// assert_eq!(ErrorCode::MissingField.number(), 9);
    /// assert_eq!(ErrorCode::from_number(9), Some(ErrorCode::MissingField));
    /// ```
    pub const fn number(self) -> u16 {
        match self {
            ErrorCode::EmptyBody => 1,
            ErrorCode::InvalidJson => 2,
            ErrorCode::InvalidUtf8 => 3,
            ErrorCode::TooDeep => 4,
            ErrorCode::EventTooLarge => 5,
            ErrorCode::BatchTooLarge => 6,
            ErrorCode::TooManyEvents => 7,
            ErrorCode::NotAnObject => 8,
            ErrorCode::MissingField => 9,
            ErrorCode::InvalidType => 10,
            ErrorCode::InvalidValue => 11,
            ErrorCode::DuplicateField => 12,
            ErrorCode::UnknownEventType => 13,
            ErrorCode::TypeMismatch => 14,
            ErrorCode::InvalidCurrency => 15,
            ErrorCode::InvalidTimestamp => 16,
            ErrorCode::TimestampOutOfRange => 17,
            ErrorCode::InvalidEventId => 18,
            ErrorCode::TooLong => 19,
            ErrorCode::TypeNotAllowed => 20,
        }
    }

    /// The code with this number, if there is one.
    pub fn from_number(number: u16) -> Option<ErrorCode> {
        ErrorCode::ALL
            .iter()
            .copied()
            .find(|c| c.number() == number)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_numbers_are_unique_and_round_trip() {
        let mut seen = std::collections::HashSet::new();
        for &code in ErrorCode::ALL {
            assert!(seen.insert(code.number()), "{code} reuses a number");
            assert_eq!(ErrorCode::from_number(code.number()), Some(code));
        }
        assert_eq!(ErrorCode::from_number(0), None);
    }

    #[test]
    fn kind_numbers_round_trip_and_match_the_table() {
        for number in 1..=9 {
            let kind = ErrorKind::from_number(number).expect("1..=9 are assigned");
            assert_eq!(kind.number(), number);
        }
        assert_eq!(ErrorKind::from_number(10), None);
        let kinds = [
            (
                Error::QueueFull {
                    queued_events: 1,
                    queued_bytes: 1,
                },
                2,
            ),
            (Error::Timeout(std::time::Duration::ZERO), 9),
            (
                Error::Delivery {
                    failed: 1,
                    total: 1,
                    reason: String::new(),
                    retryable: true,
                },
                6,
            ),
        ];
        for (error, number) in kinds {
            assert_eq!(error.code().number(), number, "{error}");
        }
    }
}
