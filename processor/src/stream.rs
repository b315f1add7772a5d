//! Positions in the input stream, shared by aggregation and de-duplication: the topic
//! partition a record came from, and the minute its event time falls in.

use std::sync::Arc;

/// A topic partition.
///
/// The name is shared: every decoded event carries its partition, and a copy of the
/// name per event was an allocation per event.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    /// The topic.
    pub topic: Arc<str>,
    /// The partition.
    pub partition: i32,
}

impl TopicPartition {
    /// A topic partition.
    pub fn new(topic: &str, partition: i32) -> Self {
        TopicPartition {
            topic: Arc::from(topic),
            partition,
        }
    }

    /// A topic partition whose topic name is already shared.
    pub fn shared(topic: Arc<str>, partition: i32) -> Self {
        TopicPartition { topic, partition }
    }
}

/// The start (Unix seconds) of the minute holding `unix_ms`.
pub fn minute_of(unix_ms: i64) -> i64 {
    unix_ms.div_euclid(60_000) * 60
}
