//! The producer client's callbacks: delivery reports, logs and client errors.

use std::sync::Arc;

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{DeliveryResult, ProducerContext};

use super::breaker::Breaker;
use super::disk::DiskState;
use super::receipt::Tracker;
use super::throttle::LogThrottle;
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
            (None, Some(at)) => Some((ingest_common::clock::unix_ms() - at).max(0) as f64 / 1000.0),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_record_errors_as_permanent() {
        let too_big = KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge);
        let timeout = KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut);
        assert!(!is_retryable(&too_big));
        assert!(is_retryable(&timeout));
        assert_eq!(reason_label(&timeout), "MessageTimedOut");
    }
}
