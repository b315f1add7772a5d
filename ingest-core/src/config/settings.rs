//! Validation of an [`IngestConfig`] into the [`Settings`] an ingestor runs on: every
//! value checked, the librdkafka properties this crate owns or forbids refused, the
//! typed settings built. Does no I/O. The producer's librdkafka settings are built in
//! `producer.rs` (with the `kafka` feature only).

use std::sync::Arc;
use std::time::Duration;

#[cfg(feature = "kafka")]
use rdkafka::ClientConfig;

use super::{
    sled_not_built, BreakerConfig, BufferConfig, BufferSync, BufferType, DeadLetterConfig,
    IngestConfig, QueueConfig, TopicConfig, WhenFull,
};
use crate::error::ConfigError;
use crate::event::EventKind;
use crate::validate::Limits;

/// A validated disk buffer.
// Read by the ingestor, which is built with the `kafka` feature only.
#[cfg_attr(not(feature = "kafka"), allow(dead_code))]
#[derive(Debug, Clone)]
pub(crate) struct DiskBufferSettings {
    pub(crate) kind: BufferType,
    pub(crate) dir: std::path::PathBuf,
    pub(crate) max_bytes: u64,
    pub(crate) segment_bytes: u64,
    pub(crate) sync: crate::buffer::SyncPolicy,
    pub(crate) when_full: WhenFull,
    pub(crate) full_timeout: Duration,
}

/// Validated breaker settings.
// Read by the ingestor, which is built with the `kafka` feature only.
#[cfg_attr(not(feature = "kafka"), allow(dead_code))]
#[derive(Debug, Clone, Copy)]
pub(crate) struct BreakerSettings {
    pub(crate) min_backoff: Duration,
    pub(crate) max_backoff: Duration,
    pub(crate) probe_timeout: Duration,
    pub(crate) stall_timeout: Duration,
}

impl BufferConfig {
    /// `None` for the memory buffer.
    fn validate(&self, limits: &Limits) -> Result<Option<DiskBufferSettings>, ConfigError> {
        if self.kind == BufferType::Memory {
            return Ok(None);
        }
        let dir = match &self.dir {
            Some(dir) if !dir.as_os_str().is_empty() => dir.clone(),
            _ => {
                return Err(ConfigError::new(
                    "buffer.dir",
                    "is required for a disk buffer (type log or sled)",
                ))
            }
        };
        // A stored record is the payload plus a small header (ids, key, source) and the
        // buffer's framing.
        let largest = (limits.max_event_bytes + crate::stored_size::MAX_OVERHEAD + 64) as u64;
        if self.max_bytes < largest.max(1 << 20) {
            return Err(ConfigError::new(
                "buffer.max_bytes",
                format!(
                    "must be at least 1 MiB and hold the largest event ({largest} bytes with its header)"
                ),
            ));
        }
        if self.kind == BufferType::Log
            && (self.segment_bytes < largest || self.segment_bytes > self.max_bytes)
        {
            return Err(ConfigError::new(
                "buffer.segment_bytes",
                format!("must be between {largest} (the largest record) and buffer.max_bytes"),
            ));
        }
        if largest > u64::from(crate::buffer::MAX_RECORD_BYTES) {
            return Err(ConfigError::new(
                "limits.max_event_bytes",
                "is too large for a disk buffer record (16 MiB with its header)",
            ));
        }
        if self.kind == BufferType::Sled && !cfg!(feature = "sled-buffer") {
            return Err(sled_not_built());
        }
        let sync = match self.sync {
            BufferSync::Always => crate::buffer::SyncPolicy::Always,
            BufferSync::Interval => crate::buffer::SyncPolicy::IntervalMs(positive(
                "buffer.sync_interval_ms",
                self.sync_interval_ms,
            )?),
            BufferSync::Never => crate::buffer::SyncPolicy::Never,
        };
        Ok(Some(DiskBufferSettings {
            kind: self.kind,
            dir,
            max_bytes: self.max_bytes,
            segment_bytes: self.segment_bytes,
            sync,
            when_full: self.when_full,
            full_timeout: Duration::from_millis(self.full_timeout_ms),
        }))
    }
}

impl BreakerConfig {
    fn validate(&self) -> Result<BreakerSettings, ConfigError> {
        let min = positive("breaker.probe_min_backoff_ms", self.probe_min_backoff_ms)?;
        if self.probe_max_backoff_ms < min {
            return Err(ConfigError::new(
                "breaker.probe_max_backoff_ms",
                "must be at least breaker.probe_min_backoff_ms",
            ));
        }
        Ok(BreakerSettings {
            min_backoff: Duration::from_millis(min),
            max_backoff: Duration::from_millis(self.probe_max_backoff_ms),
            probe_timeout: Duration::from_millis(positive(
                "breaker.probe_timeout_ms",
                self.probe_timeout_ms,
            )?),
            stall_timeout: Duration::from_millis(positive(
                "breaker.stall_timeout_ms",
                self.stall_timeout_ms,
            )?),
        })
    }
}

/// librdkafka properties this crate sets itself, with the key to use instead.
const OWNED_PROPERTIES: &[(&str, &str)] = &[
    ("bootstrap.servers", "kafka.brokers"),
    ("metadata.broker.list", "kafka.brokers"),
    ("client.id", "kafka.client_id"),
    ("compression.type", "kafka.compression"),
    ("compression.codec", "kafka.compression"),
    ("linger.ms", "kafka.linger_ms"),
    ("queue.buffering.max.ms", "kafka.linger_ms"),
    ("batch.size", "kafka.batch_max_bytes"),
    ("batch.num.messages", "kafka.batch_max_records"),
    ("message.timeout.ms", "kafka.message_timeout_ms"),
    ("delivery.timeout.ms", "kafka.message_timeout_ms"),
    ("request.timeout.ms", "kafka.request_timeout_ms"),
    (
        "queue.buffering.max.messages",
        "kafka.producer_queue_max_records",
    ),
    (
        "queue.buffering.max.kbytes",
        "kafka.producer_queue_max_bytes",
    ),
    ("statistics.interval.ms", "telemetry.statistics_interval_ms"),
];

/// Properties that would break the delivery guarantees.
const FORBIDDEN_PROPERTIES: &[&str] = &[
    // Receipts wait for a report per record; without success reports they never resolve.
    "delivery.report.only.error",
    "enable.idempotence",
    "acks",
    "request.required.acks",
    "enable.gapless.guarantee",
    "transactional.id",
];

/// Validated settings an [`Ingestor`](crate::Ingestor) runs on. Built by
/// [`IngestConfig::validate`]. `Debug` shows the (redacted) configuration only.
// Read by the ingestor, which is built with the `kafka` feature only.
#[cfg_attr(not(feature = "kafka"), allow(dead_code))]
#[derive(Clone)]
pub struct Settings {
    pub(crate) limits: Limits,
    pub(crate) topics: [Arc<str>; 4],
    pub(crate) dead_letter_topic: Arc<str>,
    pub(crate) custom_topic: Arc<str>,
    pub(crate) dead_letter: DeadLetterConfig,
    pub(crate) queue: QueueConfig,
    /// `None`: events wait in memory only.
    pub(crate) disk_buffer: Option<DiskBufferSettings>,
    pub(crate) breaker: BreakerSettings,
    /// `None`: the host name, looked up by the ingestor when it starts.
    pub(crate) source: Option<Arc<str>>,
    /// The `ingestor` metric label; `None`: numbered when the ingestor starts.
    pub(crate) instance: Option<Arc<str>>,
    #[cfg(feature = "kafka")]
    pub(crate) producer: ClientConfig,
    pub(crate) raw: IngestConfig,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("config", &self.raw)
            .finish_non_exhaustive()
    }
}

impl Settings {
    /// The limits events are checked against.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The topic an event kind is written to.
    pub fn topic(&self, kind: EventKind) -> &str {
        &self.topics[kind.index()]
    }

    /// The topic custom events are written to.
    pub fn custom_topic(&self) -> &str {
        &self.custom_topic
    }

    /// Whether accepted events are held in a disk buffer until Kafka acknowledges them.
    pub fn has_disk_buffer(&self) -> bool {
        self.disk_buffer.is_some()
    }

    /// The configuration these settings were built from.
    pub fn config(&self) -> &IngestConfig {
        &self.raw
    }
}

fn positive<T: PartialOrd + Default + std::fmt::Display>(
    key: &str,
    value: T,
) -> Result<T, ConfigError> {
    if value > T::default() {
        Ok(value)
    } else {
        Err(ConfigError::new(
            key,
            format!("must be greater than 0, got {value}"),
        ))
    }
}

fn check_topic(key: &str, topic: &TopicConfig) -> Result<(), ConfigError> {
    let name = &topic.name;
    let legal = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if name.is_empty()
        || name.len() > 249
        || name == "."
        || name == ".."
        || !name.chars().all(legal)
    {
        return Err(ConfigError::new(
            format!("{key}.name"),
            format!("{name:?} is not a legal Kafka topic name (1-249 of [a-zA-Z0-9._-])"),
        ));
    }
    positive(&format!("{key}.partitions"), topic.partitions)?;
    positive(
        &format!("{key}.replication_factor"),
        topic.replication_factor,
    )?;
    Ok(())
}

impl IngestConfig {
    /// Checks every value and builds the typed [`Settings`].
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the first offending key.
    pub fn validate(&self) -> Result<Settings, ConfigError> {
        let kafka = &self.kafka;
        if kafka.brokers.split(',').any(|b| b.trim().is_empty()) {
            return Err(ConfigError::new(
                "kafka.brokers",
                "must list host:port pairs separated by commas",
            ));
        }
        positive("kafka.batch_max_bytes", kafka.batch_max_bytes)?;
        positive("kafka.batch_max_records", kafka.batch_max_records)?;
        positive("kafka.message_timeout_ms", kafka.message_timeout_ms)?;
        positive("kafka.request_timeout_ms", kafka.request_timeout_ms)?;
        if kafka.message_timeout_ms <= kafka.linger_ms {
            return Err(ConfigError::new(
                "kafka.message_timeout_ms",
                "must be greater than kafka.linger_ms, or records time out while they wait for their batch",
            ));
        }
        positive(
            "kafka.producer_queue_max_records",
            kafka.producer_queue_max_records,
        )?;
        if kafka.producer_queue_max_bytes < 1024 {
            return Err(ConfigError::new(
                "kafka.producer_queue_max_bytes",
                "must be at least 1024",
            ));
        }
        for key in kafka.properties.keys() {
            if let Some((_, instead)) = OWNED_PROPERTIES.iter().find(|(p, _)| p == key) {
                return Err(ConfigError::new(
                    format!("kafka.properties.{key}"),
                    format!("set `{instead}` instead"),
                ));
            }
            if FORBIDDEN_PROPERTIES.contains(&key.as_str()) {
                return Err(ConfigError::new(
                    format!("kafka.properties.{key}"),
                    "cannot be changed: the producer is always idempotent, with acks=all and a delivery report for every record",
                ));
            }
        }

        for (key, topic) in self.topics.all() {
            check_topic(key, topic)?;
        }
        let dead_letter = &self.topics.dead_letter.name;
        if EventKind::ALL
            .iter()
            .any(|k| &self.topics.for_kind(*k).name == dead_letter)
        {
            return Err(ConfigError::new(
                "topics.dead_letter.name",
                "must differ from every event topic",
            ));
        }
        let custom = &self.topics.custom.name;
        if custom == dead_letter
            || EventKind::ALL
                .iter()
                .any(|k| &self.topics.for_kind(*k).name == custom)
        {
            return Err(ConfigError::new(
                "topics.custom.name",
                "must differ from every event topic and from the dead-letter topic",
            ));
        }

        let l = &self.limits;
        let limits = Limits {
            max_event_bytes: positive("limits.max_event_bytes", l.max_event_bytes)?,
            max_batch_bytes: positive("limits.max_batch_bytes", l.max_batch_bytes)?,
            max_batch_events: positive("limits.max_batch_events", l.max_batch_events)?,
            max_depth: positive("limits.max_depth", l.max_depth)?,
            max_future_skew: Duration::from_secs(l.max_future_skew_secs),
            max_past_age: Duration::from_secs(l.max_past_age_secs),
        };
        if limits.max_depth > 1024 {
            return Err(ConfigError::new("limits.max_depth", "must be at most 1024"));
        }
        if limits.max_event_bytes > limits.max_batch_bytes {
            return Err(ConfigError::new(
                "limits.max_event_bytes",
                "must not exceed limits.max_batch_bytes",
            ));
        }
        positive("queue.max_events", self.queue.max_events)?;
        if self.queue.max_bytes < limits.max_batch_bytes {
            return Err(ConfigError::new(
                "queue.max_bytes",
                "must be at least limits.max_batch_bytes, or the largest batch could never be queued",
            ));
        }
        if self.queue.max_events < limits.max_batch_events {
            return Err(ConfigError::new(
                "queue.max_events",
                "must be at least limits.max_batch_events, or the largest batch could never be queued",
            ));
        }

        let disk_buffer = self.buffer.validate(&limits)?;
        let breaker = self.breaker.validate()?;

        let topic = |kind| Arc::<str>::from(self.topics.for_kind(kind).name.as_str());
        Ok(Settings {
            limits,
            topics: EventKind::ALL.map(topic),
            dead_letter_topic: Arc::from(dead_letter.as_str()),
            custom_topic: Arc::from(custom.as_str()),
            dead_letter: self.dead_letter.clone(),
            queue: self.queue.clone(),
            disk_buffer,
            breaker,
            source: (!self.source.is_empty()).then(|| Arc::from(self.source.as_str())),
            instance: (!self.telemetry.instance.is_empty())
                .then(|| Arc::from(self.telemetry.instance.as_str())),
            #[cfg(feature = "kafka")]
            producer: self.producer_config(),
            raw: self.clone(),
        })
    }
}
