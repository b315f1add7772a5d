//! Dead letters: records the processor cannot count, sent to the dead-letter topic with
//! the reason, exactly as they were read.
//!
//! ## Once per record, never in the consume loop
//!
//! The consume loop only collects a dead letter (a copy of the record and why); the
//! checkpoint that moves the record's partition past it also inserts it into the
//! `dead_letter_outbox` table, in the same transaction, keyed by (topic, partition,
//! offset). A failed or repeated checkpoint therefore queues nothing twice, and a
//! record is queued whatever happens to the process. The [`Publisher`] (a background
//! task) takes queued letters (locked, so instances share the work without overlap),
//! produces them with the idempotent producer and deletes each row once Kafka has
//! acknowledged it. A dead-letter topic that is down delays the letters, never the
//! analytics. Should the process die between Kafka's acknowledgement and the delete, a
//! letter is produced again: its `source_topic`, `source_partition` and
//! `source_offset` headers identify the record for consumers that must not see it twice.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio::sync::{watch, Notify};

use crate::config::Backoff;
use crate::error::Error;
use crate::record::Record;
use crate::store::Store;

/// Why a record was dead-lettered (`error_code` header, `reason` metric label).
pub mod reason {
    /// The `event_type` header names no event type.
    pub const UNKNOWN_EVENT_TYPE: &str = "unknown_event_type";
    /// No `event_type` header and a topic that implies none.
    pub const MISSING_EVENT_TYPE: &str = "missing_event_type";
    /// A `schema` header naming a version of the event's type this processor does not
    /// read (`json:<type>/v1` is the one it reads).
    pub const UNKNOWN_SCHEMA: &str = "unknown_schema";
    /// The value is not an event of its type (for Avro: not in the wire format, or not a
    /// datum of the schema its id names).
    pub const UNDECODABLE: &str = "undecodable";
    /// An Avro record whose schema id the registry does not have.
    pub const UNKNOWN_SCHEMA_ID: &str = "unknown_schema_id";
    /// An Avro record whose schema could not be fetched: no registry configured
    /// (`schema_registry.url`), or the registry unreachable or failing.
    pub const SCHEMA_UNAVAILABLE: &str = "schema_unavailable";
    /// Neither `user_id` nor `anonymous_id`.
    pub const MISSING_IDENTITY: &str = "missing_identity";
    /// A value the stores cannot hold or that breaks the contract's limits (found by the
    /// content check before storing, or refused by PostgreSQL and isolated).
    pub const UNSTORABLE: &str = "unstorable";
}

/// A record to dead-letter, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// Where it was read.
    pub topic: String,
    /// Its partition.
    pub partition: i32,
    /// Its offset.
    pub offset: i64,
    /// A [`reason`] code.
    pub reason: String,
    /// What exactly was wrong.
    pub message: String,
    /// The record's key.
    pub key: Option<Vec<u8>>,
    /// The record's value.
    pub payload: Vec<u8>,
    /// The record's headers, in order.
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

impl DeadLetter {
    /// A copy of `record`, to be dead-lettered for `reason`.
    pub fn of(record: &Record, reason: &str, message: String) -> DeadLetter {
        let headers = record
            .headers()
            .map(|(key, value)| {
                (
                    String::from_utf8_lossy(key).into_owned(),
                    value.map(<[u8]>::to_vec),
                )
            })
            .collect();
        DeadLetter {
            topic: record.topic().to_owned(),
            partition: record.partition(),
            offset: record.offset(),
            reason: reason.to_owned(),
            message,
            key: record.key().map(<[u8]>::to_vec),
            payload: record.payload().unwrap_or_default().to_vec(),
            headers,
        }
    }

    /// Bytes it holds (for the pending-bytes bound).
    pub fn size(&self) -> usize {
        self.payload.len()
            + self.key.as_ref().map_or(0, Vec::len)
            + self.message.len()
            + self
                .headers
                .iter()
                .map(|(k, v)| k.len() + v.as_ref().map_or(0, Vec::len))
                .sum::<usize>()
    }

    /// The headers of the dead-letter record: the original ones but any `error_*`, then
    /// `error_code`, `error_message`, `source_topic`, `source_partition`,
    /// `source_offset`; with `payload_dropped` when the value was left out.
    fn record_headers(&self, payload_dropped: bool) -> OwnedHeaders {
        let mut headers = OwnedHeaders::new_with_capacity(self.headers.len() + 6);
        for (key, value) in &self.headers {
            if !key.starts_with("error_") {
                headers = headers.insert(Header {
                    key,
                    value: value.as_deref(),
                });
            }
        }
        let partition = self.partition.to_string();
        let offset = self.offset.to_string();
        headers = headers
            .insert(Header {
                key: "error_code",
                value: Some(&self.reason),
            })
            .insert(Header {
                key: "error_message",
                value: Some(&self.message),
            })
            .insert(Header {
                key: "source_topic",
                value: Some(&self.topic),
            })
            .insert(Header {
                key: "source_partition",
                value: Some(&partition),
            })
            .insert(Header {
                key: "source_offset",
                value: Some(&offset),
            });
        if payload_dropped {
            headers = headers.insert(Header {
                key: "payload_dropped",
                value: Some("too_large"),
            });
        }
        headers
    }
}

/// How the [`Publisher`] works.
#[derive(Debug, Clone)]
pub struct PublisherSettings {
    /// The dead-letter topic.
    pub topic: String,
    /// PostgreSQL, where the outbox is (`Debug` masks its password).
    pub postgres_url: ingest_common::secret::SecretUrl,
    /// Its connect time-out.
    pub postgres_connect_timeout: Duration,
    /// Time Kafka may take to acknowledge one letter.
    pub timeout: Duration,
    /// Wait between failed rounds.
    pub backoff: Backoff,
}

/// Letters produced per round at most.
const LETTERS_PER_ROUND: i64 = 500;

/// Produces the queued dead letters (see the module documentation).
pub struct Publisher {
    settings: PublisherSettings,
    producer: FutureProducer,
    wake: Arc<Notify>,
}

impl Publisher {
    /// A publisher producing with `producer` (idempotent, `acks=all`).
    pub fn new(settings: PublisherSettings, producer: FutureProducer) -> Publisher {
        Publisher {
            settings,
            producer,
            wake: Arc::new(Notify::new()),
        }
    }

    /// A handle that makes the publisher look at the outbox now (after a checkpoint that
    /// queued letters) instead of at its next poll.
    pub fn waker(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    /// Runs until `shutdown` turns true, then makes one last round. Never returns an
    /// error: failures are logged, counted and retried with backoff; letters not
    /// produced stay queued for the next round or the next start.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut store: Option<Store> = None;
        let mut failures: u32 = 0;
        loop {
            let stopping = *shutdown.borrow();
            match self.round(&mut store).await {
                Ok(produced) => {
                    failures = 0;
                    if produced == LETTERS_PER_ROUND as usize && !stopping {
                        continue;
                    }
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    metrics::counter!("processor_dead_letter_failures_total").increment(1);
                    let delay = self.settings.backoff.jittered(failures);
                    tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64,
                        "producing dead letters failed; they stay queued");
                    if e.is_retryable() && matches!(e, Error::Postgres(_) | Error::Timeout(_)) {
                        store = None;
                    }
                }
            }
            if stopping {
                return;
            }
            let wait = if failures == 0 {
                Duration::from_secs(1)
            } else {
                self.settings.backoff.jittered(failures)
            };
            tokio::select! {
                _ = shutdown.changed() => {}
                _ = self.wake.notified(), if failures == 0 => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Produces up to [`LETTERS_PER_ROUND`] letters; returns how many were claimed.
    async fn round(&self, store: &mut Option<Store>) -> Result<usize, Error> {
        let store = Store::reopen(
            store,
            &self.settings.postgres_url,
            self.settings.postgres_connect_timeout,
        )
        .await?;
        let claimed = store.claim_dead_letters(LETTERS_PER_ROUND).await?;
        let count = claimed.letters.len();
        if count == 0 {
            claimed.done(&[]).await?;
            return Ok(0);
        }
        let mut acked = Vec::with_capacity(count);
        let mut failure = None;
        for (seq, letter) in &claimed.letters {
            match self.produce(letter).await {
                Ok(()) => {
                    acked.push(*seq);
                    metrics::counter!("processor_dead_letters_produced_total", "reason" => letter.reason.clone())
                        .increment(1);
                }
                Err(e) => {
                    // Later letters wait for this one: the topic keeps their order.
                    failure = Some(e);
                    break;
                }
            }
        }
        claimed.done(&acked).await?;
        match failure {
            Some(e) => Err(e),
            None => Ok(count),
        }
    }

    /// Produces one letter and waits for Kafka's acknowledgement. A value larger than
    /// the topic accepts is left out (`payload_dropped` header) rather than block the
    /// queue for ever.
    async fn produce(&self, letter: &DeadLetter) -> Result<(), Error> {
        let mut dropped = false;
        loop {
            let headers = letter.record_headers(dropped);
            let payload: &[u8] = if dropped { &[] } else { &letter.payload };
            let mut record = FutureRecord::to(&self.settings.topic)
                .payload(payload)
                .headers(headers);
            if let Some(key) = &letter.key {
                record = record.key(key.as_slice());
            }
            match self.producer.send(record, self.settings.timeout).await {
                Ok(_) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge), _))
                    if !dropped =>
                {
                    tracing::warn!(
                        topic = %letter.topic, partition = letter.partition, offset = letter.offset,
                        "dead letter too large for the topic: sent without its value"
                    );
                    dropped = true;
                }
                Err((e, _)) => return Err(Error::Kafka(e)),
            }
        }
    }
}
