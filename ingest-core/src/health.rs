//! [`Health`]: what a readiness check needs to know about an [`Ingestor`](crate::Ingestor).

use crate::delivery::BreakerState;

/// A snapshot of an ingestor's health, from [`Ingestor::health`](crate::Ingestor::health).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Health {
    /// The circuit breaker around delivery: `Open` while Kafka is unreachable.
    pub breaker: BreakerState,
    /// Events waiting in the in-memory queue.
    pub queue_events: usize,
    /// Bytes waiting in the in-memory queue.
    pub queue_bytes: usize,
    /// The disk buffer, if one is configured.
    pub buffer: Option<BufferHealth>,
    /// Whether a shutdown has begun (no more events are taken).
    pub shutting_down: bool,
    /// Background threads that have died (a panic, with `panic = "unwind"`) by name:
    /// `ingest-delivery` (memory queue), `ingest-spool` and `ingest-forward` (disk
    /// buffer). Events no longer move past a dead thread; only a restart helps.
    pub dead_threads: Vec<&'static str>,
}

/// The disk buffer's fill level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct BufferHealth {
    /// Events in the buffer not yet acknowledged by Kafka.
    pub entries: u64,
    /// Bytes the buffer holds (what `buffer.max_bytes` bounds).
    pub bytes: u64,
    /// The configured bound.
    pub max_bytes: u64,
}

impl BufferHealth {
    /// Whether the buffer is below 95 % of its bound.
    pub fn has_room(&self) -> bool {
        self.bytes.saturating_mul(100) < self.max_bytes.saturating_mul(95)
    }
}

impl Health {
    /// Whether Kafka is taking records (the breaker is not open).
    pub fn kafka_reachable(&self) -> bool {
        self.breaker != BreakerState::Open
    }

    /// Whether every background thread is running ([`dead_threads`](Self::dead_threads)
    /// is empty).
    pub fn threads_alive(&self) -> bool {
        self.dead_threads.is_empty()
    }

    /// Whether new events can be taken now: not shutting down, every background
    /// thread alive, and Kafka reachable or the disk buffer has room. A load balancer
    /// should send traffic only while this holds.
    pub fn is_ready(&self) -> bool {
        !self.shutting_down
            && self.threads_alive()
            && (self.kafka_reachable() || self.buffer.is_some_and(|b| b.has_room()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn health(breaker: BreakerState, buffer: Option<(u64, u64)>) -> Health {
        Health {
            breaker,
            queue_events: 0,
            queue_bytes: 0,
            buffer: buffer.map(|(bytes, max_bytes)| BufferHealth {
                entries: 1,
                bytes,
                max_bytes,
            }),
            shutting_down: false,
            dead_threads: Vec::new(),
        }
    }

    #[test]
    fn ready_while_kafka_is_reachable_or_the_buffer_has_room() {
        assert!(health(BreakerState::Closed, None).is_ready());
        assert!(health(BreakerState::HalfOpen, None).is_ready());
        assert!(!health(BreakerState::Open, None).is_ready());
        assert!(health(BreakerState::Open, Some((50, 100))).is_ready());
        assert!(!health(BreakerState::Open, Some((96, 100))).is_ready());
        let mut stopping = health(BreakerState::Closed, None);
        stopping.shutting_down = true;
        assert!(!stopping.is_ready());
        let mut dead = health(BreakerState::Closed, Some((0, 100)));
        dead.dead_threads.push("ingest-forward");
        assert!(!dead.threads_alive() && !dead.is_ready());
    }
}
