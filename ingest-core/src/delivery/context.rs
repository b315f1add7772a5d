//! The producer client's callbacks: delivery reports, logs and client errors.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{DeliveryResult, ProducerContext};

use super::receipt::Tracker;
use crate::telemetry::Telemetry;

/// Routes delivery reports to receipts and metrics, and librdkafka's logs to `tracing`.
pub(crate) struct DeliveryContext {
    telemetry: Telemetry,
    failure_log: LogThrottle,
}

impl DeliveryContext {
    pub(crate) fn new(telemetry: Telemetry) -> Self {
        DeliveryContext {
            telemetry,
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

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(target: "librdkafka", %error, "kafka client error: {reason}");
    }
}

impl ProducerContext for DeliveryContext {
    type DeliveryOpaque = Arc<Tracker>;

    fn delivery(&self, result: &DeliveryResult<'_>, tracker: Arc<Tracker>) {
        match result {
            Ok(message) => {
                self.telemetry.delivered(message.topic());
                self.telemetry
                    .delivery_latency
                    .record(tracker.accepted_at().elapsed().as_secs_f64());
                tracker.complete(None);
            }
            Err((error, message)) => {
                let reason = reason_label(error);
                Telemetry::failed(message.topic(), &reason);
                if let Some(suppressed) = self.failure_log.allow() {
                    tracing::warn!(
                        topic = message.topic(),
                        %error,
                        suppressed,
                        "record not delivered to Kafka"
                    );
                }
                tracker.complete(Some((error.to_string(), is_retryable(error))));
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
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
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
