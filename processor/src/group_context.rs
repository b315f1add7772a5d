//! The context of the processor's Kafka consumers (the pipeline's and the search
//! indexer's): librdkafka's rebalance callbacks collect the revoked partitions for the
//! consume loop to forget, and its statistics set the group's lag gauges
//! ([`crate::lag`]).

use std::sync::Mutex;

use rdkafka::consumer::{BaseConsumer, ConsumerContext, Rebalance};
use rdkafka::ClientContext;

use crate::lag::LagGauges;
use crate::stream::TopicPartition;

/// Revoked partitions and lag gauges of one consumer group.
pub struct GroupContext {
    /// Named in the log lines of rebalances (`processor`, `search indexer`).
    consumer: &'static str,
    revoked: Mutex<Vec<TopicPartition>>,
    lag: LagGauges,
}

impl GroupContext {
    /// A context for `consumer`, its lag reported as gauges named `lag_metric`.
    pub fn new(consumer: &'static str, lag_metric: &'static str) -> GroupContext {
        GroupContext {
            consumer,
            revoked: Mutex::new(Vec::new()),
            lag: LagGauges::new(lag_metric),
        }
    }

    /// The partitions revoked since the last call.
    pub fn take_revoked(&self) -> Vec<TopicPartition> {
        std::mem::take(
            &mut *self
                .revoked
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }
}

impl ClientContext for GroupContext {
    fn stats(&self, statistics: rdkafka::Statistics) {
        self.lag.report(&statistics);
    }
}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(list) = rebalance {
            self.lag.revoked(list);
            tracing::info!(
                consumer = self.consumer,
                count = list.count(),
                "partitions revoked"
            );
            self.revoked
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .extend(
                    list.elements()
                        .iter()
                        .map(|e| TopicPartition::new(e.topic(), e.partition())),
                );
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(list) = rebalance {
            self.lag.assigned(list);
            tracing::info!(
                consumer = self.consumer,
                count = list.count(),
                "partitions assigned"
            );
        }
    }
}
