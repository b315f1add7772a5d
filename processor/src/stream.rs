//! Positions in the input stream, shared by aggregation and de-duplication: the topic
//! partition a record came from, and the minute its event time falls in.

/// A topic partition.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
}

impl TopicPartition {
    /// A topic partition.
    pub fn new(topic: &str, partition: i32) -> Self {
        TopicPartition {
            topic: topic.to_owned(),
            partition,
        }
    }
}

/// The start (Unix seconds) of the minute holding `unix_ms`.
pub fn minute_of(unix_ms: i64) -> i64 {
    unix_ms.div_euclid(60_000) * 60
}
