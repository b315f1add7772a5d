//! Co-partitioned assignment: partition `p` of every event topic held by one instance.
//!
//! The agent keys records by user, and the four event topics have as many partitions
//! each, so a user's events of every kind sit in partitions of one number. The
//! processor's consumer uses Kafka's range assignor, which, for consumers with the same
//! subscription to topics with the same partition count, gives each consumer the same
//! partition numbers of every topic. An instance then holds whole partition numbers:
//! it owns the state of their users in memory ([`crate::user_state`]).
//!
//! Results stay exact when the assignment is not co-partitioned (topics created with
//! different partition counts, instances subscribed to different topics during a
//! change): every checkpoint moves its partition numbers' sequences, so two instances
//! holding one number fence each other and load its state again after each other's
//! commits. That costs a retry per checkpoint, so the split is reported
//! (`processor_split_partition_numbers`) and logged.

use std::collections::{BTreeMap, BTreeSet};

/// The partition numbers of `assigned` that this instance does not hold for every
/// one of `topics` (those not subscribed are left out): empty when the assignment is
/// co-partitioned.
pub fn split_partition_numbers<'a>(
    assigned: impl IntoIterator<Item = (&'a str, i32)>,
    topics: &[&str],
) -> BTreeSet<i32> {
    let mut held: BTreeMap<i32, BTreeSet<&str>> = BTreeMap::new();
    for (topic, partition) in assigned {
        if topics.contains(&topic) {
            held.entry(partition).or_default().insert(topic);
        }
    }
    held.into_iter()
        .filter(|(_, held)| topics.iter().any(|t| !held.contains(t)))
        .map(|(partition, _)| partition)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOPICS: [&str; 4] = ["views", "carts", "purchases", "searches"];

    fn all(partitions: impl IntoIterator<Item = i32>) -> Vec<(&'static str, i32)> {
        partitions
            .into_iter()
            .flat_map(|p| TOPICS.iter().map(move |t| (*t, p)))
            .collect()
    }

    #[test]
    fn whole_partition_numbers_are_co_partitioned() {
        assert!(split_partition_numbers(all([0, 2, 3]), &TOPICS).is_empty());
        assert!(split_partition_numbers([], &TOPICS).is_empty());
    }

    #[test]
    fn a_number_missing_one_topic_is_split() {
        let mut assigned = all([0, 1]);
        assigned.retain(|&(t, p)| !(t == "purchases" && p == 1));
        assigned.push(("views", 5));
        assert_eq!(
            split_partition_numbers(assigned, &TOPICS),
            BTreeSet::from([1, 5])
        );
    }

    #[test]
    fn topics_not_subscribed_are_left_out() {
        let mut assigned = all([0]);
        assigned.push(("other", 7));
        assert!(split_partition_numbers(assigned, &TOPICS).is_empty());
    }
}
