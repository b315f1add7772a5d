//! The processor's one error type, and the one place that decides what a failure means:
//! try again, isolate the record, or stop.

use std::fmt;

/// Everything that can go wrong in the processor.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration is not acceptable: the key, its origin when known, and why.
    #[error("{0}")]
    Config(#[from] ingest_common::ConfigError),
    /// PostgreSQL failed (connection, statement or transaction); the message carries the
    /// SQLSTATE and the server's message.
    #[error("postgres: {}", PgCause(.0))]
    Postgres(#[from] tokio_postgres::Error),
    /// Redis failed.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// Kafka failed.
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// A migration file could not be applied.
    #[error("migration {name}: {}", PgCause(.source))]
    Migration {
        /// The file.
        name: String,
        /// Why.
        #[source]
        source: tokio_postgres::Error,
    },
    /// Another consumer advanced a partition this instance was about to commit: the
    /// checkpoint was rolled back and the partitions are re-read from the stored offsets.
    #[error("partition {topic}/{partition} was committed by another consumer")]
    Fenced {
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
    },
    /// Another instance committed users of a partition number since this instance
    /// loaded their state ([`crate::user_state`]): the checkpoint was rolled back, and
    /// the state is loaded again and the partitions re-read.
    #[error("users of partition number {partition} were committed by another consumer")]
    StateFenced {
        /// The partition number.
        partition: i32,
    },
    /// A checkpoint failed for a reason no single record explains (the records a store
    /// refused would be more than the configured share of the batch, or the batch fails
    /// although each part of it is stored alone): the processor stops rather than
    /// dead-letter good records.
    #[error("checkpoint cannot be stored and no record can be blamed: {0}")]
    Unattributable(Box<Error>),
    /// The HTTP listener could not be bound or failed.
    #[error("http: {0}")]
    Http(#[source] std::io::Error),
    /// The search index refused a request or could not be reached (the message says
    /// which); the documents stay queued.
    #[error("search index: {0}")]
    Index(String),
    /// The time-out of an operation passed.
    #[error("timed out: {0}")]
    Timeout(&'static str),
    /// State the processor stored cannot be read back (a `dedup_log` row damaged, or
    /// written by a newer version): it stops rather than count resends twice.
    #[error("stored state cannot be read: {0}")]
    Corrupt(String),
    /// A stage of the processor panicked (a bug); nothing of the batch it held was
    /// committed. The processor stops.
    #[error("{0}")]
    Crashed(String),
}

/// What a failure calls for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Transient (a connection, a deadlock, a server restarting): try again later.
    Retry,
    /// A store refused the data itself (a value it cannot hold): the record responsible
    /// is isolated and dead-lettered; retrying the same data would fail forever.
    Data,
    /// Neither: a bug, a schema that drifted, a configuration that cannot work. The
    /// processor stops with this error rather than retry or dead-letter.
    Halt,
}

impl Error {
    /// What this failure calls for, decided once for every caller.
    ///
    /// PostgreSQL errors are classified by SQLSTATE: classes 22 (data exception), 23
    /// (integrity constraint) and 54 (program limit, e.g. an index row too big) are
    /// [`Disposition::Data`]; 40001/40P01 (serialization failure, deadlock), 08
    /// (connection), 53 (insufficient resources), 57 (operator intervention: shutdown,
    /// statement time-out) and 58 (system error), and errors without a SQLSTATE (the
    /// connection broke), are [`Disposition::Retry`]; everything else (42 syntax or
    /// undefined object, 25 transaction state, XX internal, ...) is [`Disposition::Halt`].
    pub fn disposition(&self) -> Disposition {
        match self {
            Error::Postgres(e) => match e.code() {
                None => Disposition::Retry,
                Some(code) => sqlstate_disposition(code.code()),
            },
            Error::Redis(_)
            | Error::Kafka(_)
            | Error::Fenced { .. }
            | Error::StateFenced { .. }
            | Error::Index(_)
            | Error::Timeout(_) => Disposition::Retry,
            Error::Config(_)
            | Error::Migration { .. }
            | Error::Unattributable(_)
            | Error::Http(_)
            | Error::Corrupt(_)
            | Error::Crashed(_) => Disposition::Halt,
        }
    }

    /// Whether trying again later can succeed (the stores or Kafka may come back, a fence
    /// is resolved by re-reading); configuration and migration errors never do.
    pub fn is_retryable(&self) -> bool {
        self.disposition() == Disposition::Retry
    }

    /// The SQLSTATE of a PostgreSQL error the server reported, e.g. `"22021"`.
    pub fn sqlstate(&self) -> Option<&str> {
        match self {
            Error::Postgres(e) | Error::Migration { source: e, .. } => e.code().map(|c| c.code()),
            Error::Unattributable(inner) => inner.sqlstate(),
            _ => None,
        }
    }
}

/// The disposition of a SQLSTATE (five characters; the first two are its class).
fn sqlstate_disposition(code: &str) -> Disposition {
    match code {
        "40001" | "40P01" => return Disposition::Retry,
        _ => {}
    }
    match code.get(..2) {
        Some("22" | "23" | "54") => Disposition::Data,
        Some("08" | "53" | "57" | "58") => Disposition::Retry,
        _ => Disposition::Halt,
    }
}

/// A PostgreSQL error as operators need it: the SQLSTATE, the server's message and the
/// constraint for errors the server reported (never the detail, which holds row
/// values); the chain of causes for the others (`db error` alone says nothing).
struct PgCause<'a>(&'a tokio_postgres::Error);

impl fmt::Display for PgCause<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(db) = self.0.as_db_error() {
            write!(
                f,
                "SQLSTATE {} {}: {}",
                db.code().code(),
                db.severity(),
                db.message()
            )?;
            if let Some(constraint) = db.constraint() {
                write!(f, " (constraint {constraint})")?;
            }
            return Ok(());
        }
        write!(f, "{}", self.0)?;
        let mut cause = std::error::Error::source(self.0);
        while let Some(e) = cause {
            write!(f, ": {e}")?;
            cause = e.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlstates_are_classified_by_class() {
        for data in ["22021", "22P05", "22003", "22001", "23505", "54000"] {
            assert_eq!(sqlstate_disposition(data), Disposition::Data, "{data}");
        }
        for retry in [
            "40001", "40P01", "08006", "57P01", "57014", "53100", "58030",
        ] {
            assert_eq!(sqlstate_disposition(retry), Disposition::Retry, "{retry}");
        }
        for halt in ["42P01", "42703", "25P02", "XX000", "0A000", "40002", ""] {
            assert_eq!(sqlstate_disposition(halt), Disposition::Halt, "{halt}");
        }
    }

    #[test]
    fn other_errors_are_classified_once() {
        assert_eq!(Error::Timeout("x").disposition(), Disposition::Retry);
        assert!(Error::Fenced {
            topic: "t".into(),
            partition: 0
        }
        .is_retryable());
        assert_eq!(
            Error::Config(ingest_common::ConfigError::new("x", "y")).disposition(),
            Disposition::Halt
        );
        let inner = Error::Timeout("x");
        assert_eq!(
            Error::Unattributable(Box::new(inner)).disposition(),
            Disposition::Halt
        );
    }
}
