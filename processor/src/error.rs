//! The processor's one error type.

/// Everything that can go wrong in the processor.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration is not acceptable (the message names the key).
    #[error("configuration: {0}")]
    Config(String),
    /// PostgreSQL failed (connection, statement or transaction).
    #[error("postgres: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    /// Redis failed.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// Kafka failed.
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// A migration file could not be applied.
    #[error("migration {name}: {source}")]
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
    /// A dead letter could not be written after every attempt.
    #[error("dead-letter topic unreachable after {attempts} attempts: {source}")]
    DeadLetter {
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        #[source]
        source: rdkafka::error::KafkaError,
    },
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
}

impl Error {
    /// Whether trying again later can succeed (the stores or Kafka may come back, a fence
    /// is resolved by re-reading); configuration and migration errors never do.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Error::Postgres(_)
                | Error::Redis(_)
                | Error::Kafka(_)
                | Error::Fenced { .. }
                | Error::Index(_)
                | Error::Timeout(_)
        )
    }
}
