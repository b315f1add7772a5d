//! The context of the processor's Kafka consumers (the pipeline's and the search
//! indexer's): librdkafka's rebalance callbacks collect the revoked partitions for the
//! consume loop to forget, and its statistics set the group's lag gauges
//! ([`crate::lag`]). The pipeline's context also checks that each assignment holds
//! whole partition numbers ([`crate::copartition`]).

use std::sync::Mutex;

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::ClientContext;

use crate::copartition;
use crate::lag::LagGauges;
use crate::stream::TopicPartition;

/// Revoked partitions and lag gauges of one consumer group.
pub struct GroupContext {
    /// Named in the log lines of rebalances (`processor`, `search indexer`).
    consumer: &'static str,
    revoked: Mutex<Vec<TopicPartition>>,
    lag: LagGauges,
    /// Topics whose partitions of one number must be assigned together (none: not
    /// checked).
    copartitioned: Vec<String>,
}

impl GroupContext {
    /// A context for `consumer`, its lag reported as gauges named `lag_metric`.
    pub fn new(consumer: &'static str, lag_metric: &'static str) -> GroupContext {
        GroupContext {
            consumer,
            revoked: Mutex::new(Vec::new()),
            lag: LagGauges::new(lag_metric),
            copartitioned: Vec::new(),
        }
    }

    /// Checks every assignment for partition numbers not held for all of `topics`
    /// (`processor_assigned_partitions`, `processor_split_partition_numbers`).
    pub fn checking_copartitions(mut self, topics: &[&str]) -> GroupContext {
        self.copartitioned = topics.iter().map(|t| (*t).to_owned()).collect();
        self
    }

    /// Reports the assignment after a rebalance.
    fn check_copartitions(&self, list: &rdkafka::TopicPartitionList) {
        if self.copartitioned.is_empty() {
            return;
        }
        let topics: Vec<&str> = self.copartitioned.iter().map(String::as_str).collect();
        let elements = list.elements();
        let split = copartition::split_partition_numbers(
            elements.iter().map(|e| (e.topic(), e.partition())),
            &topics,
        );
        metrics::gauge!("processor_assigned_partitions").set(elements.len() as f64);
        metrics::gauge!("processor_split_partition_numbers").set(split.len() as f64);
        if !split.is_empty() {
            tracing::warn!(
                consumer = self.consumer,
                partitions = ?split,
                "these partition numbers are not assigned for every event topic: the \
                 topics' partition counts differ, or instances subscribe to different \
                 topics; results stay exact, but instances contend for the same users"
            );
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

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        // Only consumers that check co-partitioning (not the search indexer) ask for the
        // whole assignment.
        if !self.copartitioned.is_empty() && !matches!(rebalance, Rebalance::Error(_)) {
            match consumer.assignment() {
                Ok(assignment) => self.check_copartitions(&assignment),
                Err(e) => tracing::debug!(error = %e, "assignment unknown"),
            }
        }
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
