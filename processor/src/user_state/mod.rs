//! Each user's committed state (event times for sessions, recent products for
//! recommendations), held in memory by the instance that owns the user's partition
//! number, and made durable as a log.
//!
//! ## Ownership
//!
//! Records are keyed by user and the event topics have as many partitions each, so a
//! user's events of every kind fall into one partition number, and the range assignor
//! ([`crate::copartition`]) gives partition `p` of every topic to one instance. That
//! instance loads the state of number `p` on its first checkpoint of it and from then
//! on reads nothing back: a checkpoint takes the users' state from memory.
//!
//! ## The log and its fence
//!
//! `partition_state(group_id, partition, seq)` holds one sequence per partition number.
//! Every checkpoint that commits records of number `p` moves `p`'s sequence from the
//! value this instance loaded to the next one, in the same transaction, or fails
//! ([`crate::error::Error::StateFenced`]): another instance (a rebalance, a paused
//! zombie's successor) committed users of `p` meanwhile, so this instance's state of
//! `p` is dropped and loaded again. The checkpoint also writes one `user_state_log` row
//! for `p` at the new sequence with the state of the users it changed ([`codec`]);
//! when the rows since the last snapshot outweigh it, the row is a snapshot of all of
//! `p`'s users instead, and the rows before it are deleted. Loading reads the last
//! snapshot and the rows after it up to the sequence, in one repeatable-read
//! transaction ([`crate::store`]).
//!
//! Records a foreign producer keyed otherwise may put one user into several numbers:
//! the user then has a state in each (sessions counted per number); counts stay exact.
//!
//! ## Memory
//!
//! Every user of the numbers an instance owns whose newest event is within
//! `sessions.retention_minutes`; a snapshot leaves out the others (and so forgets
//! them). About 100 bytes per user plus 8 per event time and the products' ids.

pub mod codec;

use std::collections::HashMap;

use crate::aggregate::Incoming;
use crate::fast_hash::FastMap;
use crate::recommend::Recent;
use crate::sessions::Activity;
use codec::{Corrupt, Encoder};

/// One user's committed state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserState {
    /// Event times, for sessions.
    pub activity: Activity,
    /// Recent products, for recommendations.
    pub recent: Recent,
}

impl UserState {
    /// The time of the user's newest event (`i64::MIN`: none).
    pub fn newest_ms(&self) -> i64 {
        newest_ms(&self.activity)
    }
}

fn newest_ms(activity: &Activity) -> i64 {
    activity.times().last().copied().unwrap_or(i64::MIN)
}

fn encode_into(member: &str, activity: &Activity, recent: &Recent, encoder: &mut Encoder) {
    encoder.push(member, activity.times(), &recent.viewed, &recent.bought);
}

/// The `(partition number, user)` of each of `events` that names a user.
pub fn users_of<'a>(events: &[&'a Incoming]) -> Vec<(i32, &'a str)> {
    events
        .iter()
        .filter_map(|e| Some((e.source.partition, e.event.common().identity()?)))
        .collect()
}

/// A batch's distinct `(partition number, user)` pairs, grouped by number: each
/// number's users are [`UsersByNumber::of`].
#[derive(Debug)]
pub struct UsersByNumber<'a> {
    pairs: Vec<(i32, &'a str)>,
}

impl<'a> UsersByNumber<'a> {
    /// Groups `users` (repeats allowed).
    pub fn new(users: &[(i32, &'a str)]) -> Self {
        let mut pairs = users.to_vec();
        pairs.sort_unstable();
        pairs.dedup();
        UsersByNumber { pairs }
    }

    /// The numbers, in order.
    pub fn numbers(&self) -> impl Iterator<Item = i32> + '_ {
        self.pairs
            .chunk_by(|a, b| a.0 == b.0)
            .map(|chunk| chunk[0].0)
    }

    /// The users of `number`, in order.
    pub fn of(&self, number: i32) -> impl Iterator<Item = &'a str> + '_ {
        let from = self.pairs.partition_point(|p| p.0 < number);
        let to = self.pairs.partition_point(|p| p.0 <= number);
        self.pairs[from..to].iter().map(|&(_, user)| user)
    }

    /// All pairs, by number then user.
    pub fn pairs(&self) -> &[(i32, &'a str)] {
        &self.pairs
    }
}

/// The users of every partition number this instance (or one partition group of it)
/// owns, each number loaded on its first checkpoint.
#[derive(Debug, Default)]
pub struct OwnedUsers {
    numbers: HashMap<i32, PartitionUsers>,
}

impl OwnedUsers {
    /// The committed state of `member` in partition number `number`, if any.
    pub fn get(&self, number: i32, member: &str) -> Option<&UserState> {
        self.numbers.get(&number)?.get(member)
    }

    /// The users of `number`, if loaded.
    pub fn number(&self, number: i32) -> Option<&PartitionUsers> {
        self.numbers.get(&number)
    }

    /// The users of `number` (loaded or not), to change after a commit.
    pub fn number_mut(&mut self, number: i32) -> &mut PartitionUsers {
        self.numbers.entry(number).or_default()
    }

    /// Holds `users` as number `number`'s state.
    pub fn insert(&mut self, number: i32, users: PartitionUsers) {
        self.numbers.insert(number, users);
    }

    /// Drops number `number`'s state (loaded again before its next checkpoint).
    pub fn forget(&mut self, number: i32) {
        self.numbers.remove(&number);
    }

    /// `(number, seq)` of every number held, sorted.
    pub fn sequences(&self) -> Vec<(i32, i64)> {
        let mut numbers: Vec<(i32, i64)> = self.numbers.iter().map(|(n, u)| (*n, u.seq)).collect();
        numbers.sort_unstable();
        numbers
    }

    /// Users held, over all numbers.
    pub fn users(&self) -> usize {
        self.numbers.values().map(|n| n.users.len()).sum()
    }
}

/// The committed users of one partition number.
#[derive(Debug, Default)]
pub struct PartitionUsers {
    /// The number's sequence this state is at (0: nothing was ever committed).
    pub seq: i64,
    /// The sequence up to which the users' recent products were copied to
    /// `user_activity` when it was loaded.
    pub copied_seq: i64,
    /// The users, by id.
    pub users: FastMap<String, UserState>,
    /// Bytes of the rows written after the last snapshot.
    log_bytes: usize,
    /// Bytes of the last snapshot.
    snapshot_bytes: usize,
}

impl PartitionUsers {
    /// The state the log's rows describe at `seq`: `rows` in sequence order, the first
    /// the last snapshot unless there is none; `(snapshot, bytes)` each.
    ///
    /// # Errors
    ///
    /// [`Corrupt`] for a row that cannot be read.
    pub fn from_log<'r>(
        seq: i64,
        rows: impl IntoIterator<Item = (bool, &'r [u8])>,
    ) -> Result<PartitionUsers, Corrupt> {
        let mut loaded = PartitionUsers {
            seq,
            ..PartitionUsers::default()
        };
        for (snapshot, row) in rows {
            if snapshot {
                loaded.users.clear();
                loaded.snapshot_bytes = row.len();
                loaded.log_bytes = 0;
            } else {
                loaded.log_bytes += row.len();
            }
            for (member, stored) in codec::decode(row)? {
                let state = UserState {
                    activity: Activity::from_times(stored.times),
                    recent: Recent {
                        viewed: stored.viewed,
                        bought: stored.bought,
                    },
                };
                loaded.users.insert(member, state);
            }
        }
        Ok(loaded)
    }

    /// The committed state of `member`, if any.
    pub fn get(&self, member: &str) -> Option<&UserState> {
        self.users.get(member)
    }

    /// The log row of a checkpoint that changes `changed` (their new state): just them,
    /// or, once the rows since the last snapshot would outweigh it and `min_log_bytes`,
    /// a snapshot of every user whose newest event is at or after `cutoff_ms`.
    pub fn log_row<'u>(
        &self,
        changed: impl IntoIterator<Item = (&'u str, &'u Activity, &'u Recent)> + Clone,
        cutoff_ms: i64,
        min_log_bytes: usize,
    ) -> LogRow {
        let mut delta = Encoder::default();
        for (member, activity, recent) in changed.clone() {
            encode_into(member, activity, recent, &mut delta);
        }
        let delta = delta.finish();
        let threshold = self.snapshot_bytes.max(min_log_bytes);
        if self.log_bytes + delta.len() <= threshold {
            return LogRow {
                snapshot: false,
                bytes: delta,
                cutoff_ms,
            };
        }
        let mut snapshot = Encoder::default();
        let mut written: std::collections::HashSet<&str> = std::collections::HashSet::new();
        for (member, activity, recent) in changed {
            if written.insert(member) && newest_ms(activity) >= cutoff_ms {
                encode_into(member, activity, recent, &mut snapshot);
            }
        }
        for (member, state) in &self.users {
            if !written.contains(member.as_str()) && state.newest_ms() >= cutoff_ms {
                encode_into(member, &state.activity, &state.recent, &mut snapshot);
            }
        }
        LogRow {
            snapshot: true,
            bytes: snapshot.finish(),
            cutoff_ms,
        }
    }

    /// Takes in what a committed checkpoint wrote: its row, and the new state of the
    /// users it changed.
    pub fn committed<'m>(
        &mut self,
        row: &LogRow,
        changed: impl IntoIterator<Item = (&'m str, UserState)>,
    ) {
        self.seq += 1;
        for (member, state) in changed {
            // A known user's entry is updated in place: its key stays allocated.
            match self.users.get_mut(member) {
                Some(known) => *known = state,
                None => {
                    self.users.insert(member.to_owned(), state);
                }
            }
        }
        if row.snapshot {
            self.users
                .retain(|_, state| state.newest_ms() >= row.cutoff_ms);
            self.snapshot_bytes = row.bytes.len();
            self.log_bytes = 0;
        } else {
            self.log_bytes += row.bytes.len();
        }
    }
}

/// One `user_state_log` row to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRow {
    /// Whether it holds every user of its number (the rows before it are deleted).
    pub snapshot: bool,
    /// The row ([`codec`]).
    pub bytes: Vec<u8>,
    /// A snapshot leaves out the users whose newest event is before this.
    pub cutoff_ms: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(times: &[i64], viewed: &[&str]) -> UserState {
        UserState {
            activity: Activity::from_times(times.to_vec()),
            recent: Recent {
                viewed: viewed.iter().map(|s| (*s).to_owned()).collect(),
                bought: Vec::new(),
            },
        }
    }

    /// Commits `changed` to `users` and returns the row, as a checkpoint does.
    fn commit(users: &mut PartitionUsers, changed: &[(&str, UserState)], cutoff: i64) -> LogRow {
        let row = users.log_row(
            changed.iter().map(|(m, s)| (*m, &s.activity, &s.recent)),
            cutoff,
            1 << 20,
        );
        users.committed(&row, changed.iter().map(|(m, s)| (*m, s.clone())));
        row
    }

    #[test]
    fn small_changes_are_logged_as_deltas_and_read_back_in_order() {
        let mut users = PartitionUsers::default();
        let a = commit(&mut users, &[("u1", state(&[10], &["p1"]))], 0);
        let b = commit(
            &mut users,
            &[
                ("u1", state(&[10, 20], &["p2", "p1"])),
                ("u2", state(&[15], &[])),
            ],
            0,
        );
        assert!(!a.snapshot && !b.snapshot);
        assert_eq!(users.seq, 2);
        let loaded = PartitionUsers::from_log(2, [(false, &a.bytes[..]), (false, &b.bytes[..])])
            .expect("a valid row");
        assert_eq!(loaded.users, users.users, "the later row wins");
        assert_eq!(loaded.users["u1"], state(&[10, 20], &["p2", "p1"]));
    }

    #[test]
    fn a_snapshot_follows_once_the_log_outweighs_it_and_leaves_out_expired_users() {
        let mut users = PartitionUsers::default();
        // Gaps zstd cannot shrink, about 750 KB a row: the second takes the log past
        // the minimum size.
        let mut t = 10i64;
        let long: Vec<i64> = (0..250_000u64)
            .map(|i| {
                t += (i.wrapping_mul(6_364_136_223_846_793_005) >> 44) as i64 + 1;
                t
            })
            .collect();
        let first = commit(
            &mut users,
            &[("old", state(&[5], &[])), ("big", state(&long, &[]))],
            0,
        );
        assert!(!first.snapshot);
        let second = commit(&mut users, &[("big", state(&long, &["p"]))], 6);
        assert!(second.snapshot, "log of {} bytes", first.bytes.len());
        assert!(
            !users.users.contains_key("old"),
            "expired: newest event before the cutoff"
        );
        let loaded =
            PartitionUsers::from_log(users.seq, [(true, &second.bytes[..])]).expect("a valid row");
        assert_eq!(loaded.users, users.users);
        // The next small change is a delta again: the snapshot is as large as the log.
        let third = commit(&mut users, &[("new", state(&[7], &[]))], 6);
        assert!(!third.snapshot);
    }

    #[test]
    fn users_are_grouped_by_number_once_each() {
        let grouped = UsersByNumber::new(&[(3, "b"), (1, "a"), (3, "a"), (3, "b"), (1, "a")]);
        assert_eq!(grouped.numbers().collect::<Vec<_>>(), vec![1, 3]);
        assert_eq!(grouped.of(3).collect::<Vec<_>>(), vec!["a", "b"]);
        assert_eq!(grouped.of(1).collect::<Vec<_>>(), vec!["a"]);
        assert_eq!(grouped.of(2).count(), 0);
    }

    #[test]
    fn a_corrupt_row_fails_the_load() {
        assert!(PartitionUsers::from_log(1, [(false, &[9u8][..])]).is_err());
    }
}
