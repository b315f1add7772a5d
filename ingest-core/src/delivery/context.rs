//! The producer client's callbacks: delivery reports, logs and client errors.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{DeliveryResult, ProducerContext};

use super::breaker::Breaker;
use super::disk::DiskState;
use super::receipt::Tracker;
use crate::ingestor::unix_millis;
use crate::telemetry::Telemetry;

/// What travels with a record through the producer client and comes back in its
/// delivery report.
pub(crate) struct Sent {
    /// The receipt to resolve; `None` for records replayed from the disk buffer after a
    /// restart (their submitters are gone).
    pub(crate) tracker: Option<Arc<Tracker>>,
    /// The record's place in the disk buffer, to acknowledge there.
    pub(crate) seq: Option<u64>,
    /// When a buffered record nobody waits for any more was accepted (Unix ms), for
    /// the delivery latency; records with a tracker take it from the tracker.
    pub(crate) received_at_ms: Option<i64>,
}

impl Sent {
    /// A record from the memory queue, whose submitter may be waiting.
    pub(crate) fn waited_for(tracker: Arc<Tracker>) -> Box<Sent> {
        Box::new(Sent {
            tracker: Some(tracker),
            seq: None,
            received_at_ms: None,
        })
    }

    /// Seconds from acceptance until now, when known.
    fn latency(&self) -> Option<f64> {
        match (&self.tracker, self.received_at_ms) {
            (Some(tracker), _) => Some(tracker.accepted_at().elapsed().as_secs_f64()),
            (None, Some(at)) => Some((unix_millis() - at).max(0) as f64 / 1000.0),
            (None, None) => None,
        }
    }
}

/// Routes delivery reports to receipts, the disk buffer, the breaker and metrics, and
/// librdkafka's logs to `tracing`.
pub(crate) struct DeliveryContext {
    telemetry: Telemetry,
    breaker: Arc<Breaker>,
    disk: Option<Arc<DiskState>>,
    failure_log: LogThrottle,
}

impl DeliveryContext {
    pub(crate) fn new(
        telemetry: Telemetry,
        breaker: Arc<Breaker>,
        disk: Option<Arc<DiskState>>,
    ) -> Self {
        DeliveryContext {
            telemetry,
            breaker,
            disk,
            failure_log: LogThrottle::new(),
        }
    }
}

/// Whether a failed record may succeed if sent again later. Errors about the record
/// itself (too large, invalid) never will; the rest (timeouts, unreachable brokers,
/// purges at shutdown) may.
pub(crate) fn is_retryable(error: &KafkaError) -> bool {
    !matches!(
        error.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::MessageSizeTooLarge
                | RDKafkaErrorCode::InvalidMessage
                | RDKafkaErrorCode::InvalidMessageSize
                | RDKafkaErrorCode::InvalidRecord
                | RDKafkaErrorCode::TopicAuthorizationFailed
                | RDKafkaErrorCode::UnknownTopic
                | RDKafkaErrorCode::UnknownTopicOrPartition
        )
    )
}

/// A short, stable reason label for metrics.
pub(crate) fn reason_label(error: &KafkaError) -> String {
    match error.rdkafka_error_code() {
        Some(code) => format!("{code:?}"),
        None => "client".to_owned(),
    }
}

impl ClientContext for DeliveryContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => {
                tracing::error!(target: "librdkafka", facility, "{message}");
            }
            RDKafkaLogLevel::Warning => tracing::warn!(target: "librdkafka", facility, "{message}"),
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(target: "librdkafka", facility, "{message}");
            }
            RDKafkaLogLevel::Debug => tracing::debug!(target: "librdkafka", facility, "{message}"),
        }
    }

    fn stats(&self, statistics: rdkafka::statistics::Statistics) {
        super::stats::export(&statistics, &self.telemetry.instance());
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::AllBrokersDown) {
            self.breaker.trip("all brokers are down");
        }
        tracing::warn!(target: "librdkafka", %error, "kafka client error: {reason}");
    }
}

impl ProducerContext for DeliveryContext {
    type DeliveryOpaque = Box<Sent>;

    fn delivery(&self, result: &DeliveryResult<'_>, sent: Box<Sent>) {
        let latency = sent.latency();
        let Sent { tracker, seq, .. } = *sent;
        match result {
            Ok(message) => {
                self.breaker.success();
                if let (Some(disk), Some(seq)) = (&self.disk, seq) {
                    disk.acked(seq);
                }
                self.telemetry.delivered(message.topic());
                if let Some(latency) = latency {
                    self.telemetry.delivery_latency.record(latency);
                }
                if let Some(tracker) = tracker {
                    tracker.complete(None);
                }
            }
            Err((error, message)) => {
                let reason = reason_label(error);
                let retryable = is_retryable(error);
                if retryable {
                    self.breaker.trip(&reason);
                }
                if let Some(suppressed) = self.failure_log.allow() {
                    tracing::warn!(
                        topic = message.topic(),
                        %error,
                        suppressed,
                        "record not delivered to Kafka"
                    );
                }
                if let (Some(disk), Some(seq)) = (&self.disk, seq) {
                    if retryable {
                        // It stays in the buffer and is sent again after a rewind.
                        self.telemetry.retried(reason);
                        disk.redeliver(seq, tracker);
                        return;
                    }
                    // Kafka will never take it: holding it would block the buffer.
                    if let Some(suppressed) = disk.record_log.allow() {
                        tracing::error!(topic = message.topic(), %error, suppressed, "Kafka refused a buffered record for good; it is dropped from the disk buffer");
                    }
                    disk.telemetry.dropped("rejected_by_kafka", 1);
                    disk.acked(seq);
                }
                self.telemetry.failed(message.topic(), &reason);
                if let Some(tracker) = tracker {
                    tracker.complete(Some((error.to_string(), retryable)));
                }
            }
        }
    }
}

/// Lets one log line through per second and counts the ones it held back, so a broker
/// outage produces a steady trickle of warnings instead of one per record.
pub(crate) struct LogThrottle {
    last_second: AtomicU64,
    suppressed: AtomicU64,
}

impl LogThrottle {
    pub(crate) fn new() -> Self {
        LogThrottle {
            last_second: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// `Some(suppressed since the last line)` if a line may be logged now.
    pub(crate) fn allow(&self) -> Option<u64> {
        let now = ingest_common::clock::unix_secs();
        let last = self.last_second.load(Ordering::Relaxed);
        if now != last
            && self
                .last_second
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            Some(self.suppressed.swap(0, Ordering::Relaxed))
        } else {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttle_lets_one_line_per_second_through() {
        let throttle = LogThrottle::new();
        assert_eq!(throttle.allow(), Some(0));
        let held: usize = (0..10).filter(|_| throttle.allow().is_none()).count();
        // All ten fall in the same second unless the clock ticked over in between.
        assert!(held >= 9, "held back {held}");
    }

    #[test]
    fn classifies_record_errors_as_permanent() {
        let too_big = KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge);
        let timeout = KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut);
        assert!(!is_retryable(&too_big));
        assert!(is_retryable(&timeout));
        assert_eq!(reason_label(&timeout), "MessageTimedOut");
    }
}
