//! Sessions per user with an inactivity timeout, independent of the order events arrive.
//!
//! A user's sessions are defined by the multiset of the event times of their counted
//! events: sorted, a new session starts at the first event and at every event that comes
//! more than the inactivity timeout after the one before it. That definition does not
//! depend on which topic or partition was read first, so a replay, a rebalance or two
//! instances give the same count.
//!
//! Kept incrementally: each user's recent event times (bounded in time and number) are
//! state committed with the checkpoint. Inserting a time changes at most two session
//! starts (the new event's, and its successor's), so [`Activity::insert`] returns the
//! changes as (time, ±1) deltas, which are added to the `sessions` counter of those
//! minutes.

/// One user's recent event times, sorted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Activity {
    times: Vec<i64>,
}

impl Activity {
    /// From stored times (sorted here).
    pub fn from_times(mut times: Vec<i64>) -> Self {
        times.sort_unstable();
        Activity { times }
    }

    /// The times, sorted.
    pub fn times(&self) -> &[i64] {
        &self.times
    }

    /// Adds an event at `time_ms`; returns the session-start changes (event time, +1 or
    /// -1) with `timeout_ms` of allowed inactivity.
    pub fn insert(&mut self, time_ms: i64, timeout_ms: i64) -> Vec<(i64, i64)> {
        // After any equal times, so ties are consecutive (a gap of 0 starts nothing).
        let at = self.times.partition_point(|&t| t <= time_ms);
        let before = at.checked_sub(1).map(|i| self.times[i]);
        let after = self.times.get(at).copied();
        let starts = |prev: Option<i64>, t: i64| prev.is_none_or(|p| t - p > timeout_ms);
        let mut changes = Vec::new();
        if starts(before, time_ms) {
            changes.push((time_ms, 1));
        }
        if let Some(next) = after {
            let was = starts(before, next);
            let is = starts(Some(time_ms), next);
            if was && !is {
                changes.push((next, -1));
            }
        }
        self.times.insert(at, time_ms);
        changes
    }

    /// Forgets times before `oldest_ms` and keeps the newest `max_times` at most.
    pub fn prune(&mut self, oldest_ms: i64, max_times: usize) {
        let cut = self.times.partition_point(|&t| t < oldest_ms);
        let cut = cut.max(self.times.len().saturating_sub(max_times));
        self.times.drain(..cut);
    }
}

/// Session starts of a multiset of times, counted directly (the definition).
pub fn count_starts(times: &[i64], timeout_ms: i64) -> usize {
    let mut sorted = times.to_vec();
    sorted.sort_unstable();
    sorted
        .iter()
        .enumerate()
        .filter(|(i, &t)| *i == 0 || t - sorted[i - 1] > timeout_ms)
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_gap_longer_than_the_timeout_starts_a_session() {
        let mut a = Activity::default();
        assert_eq!(a.insert(0, 10), vec![(0, 1)]);
        assert_eq!(a.insert(10, 10), vec![]);
        assert_eq!(a.insert(21, 10), vec![(21, 1)]);
        // An event filling the gap merges the two sessions.
        assert_eq!(a.insert(15, 10), vec![(21, -1)]);
        // An earlier event becomes the start; the old start is no longer one.
        assert_eq!(a.insert(-5, 10), vec![(-5, 1), (0, -1)]);
        assert_eq!(a.insert(-5, 10), vec![]);
        a.prune(0, 100);
        assert_eq!(a.times(), &[0, 10, 15, 21]);
        a.prune(i64::MIN, 2);
        assert_eq!(a.times(), &[15, 21]);
    }

    proptest! {
        #[test]
        fn incremental_changes_sum_to_the_definition_in_any_order(
            times in proptest::collection::vec(0i64..200, 1..40),
            timeout in 0i64..30,
        ) {
            let mut a = Activity::default();
            let mut total = 0i64;
            for &t in &times {
                total += a.insert(t, timeout).iter().map(|c| c.1).sum::<i64>();
            }
            prop_assert_eq!(total as usize, count_starts(&times, timeout));
        }
    }
}
