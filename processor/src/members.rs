//! The per-minute set members this instance has committed, so that a checkpoint writes
//! only the members new to their minute.
//!
//! Every counted event adds its user to a few per-minute sets (users, viewers, buyers,
//! experiment variants: [`crate::aggregate::set`]). A set is exact (the arrays of
//! `rollup_member_blocks`, read as distinct members, and the live view's Redis sets),
//! and writing a member again changes nothing a reader sees, so at high rates most of a
//! checkpoint's members were writes of members an earlier checkpoint of the same minute
//! had already committed: at 100,000 shoppers, most of every checkpoint's members.
//!
//! Only members of committed checkpoints are noted ([`CommittedMembers::note`] after
//! the commit), and rows are never removed within the minutes held, so a member found
//! here is in PostgreSQL. Forgetting is always safe: a forgotten member is written
//! again, which changes nothing. So the set holds the most recent minutes only (a minute
//! more than the allowed lateness behind the newest one receives no more events) and at
//! most [`MAX_MEMBERS`] keys, dropping its oldest minutes first.
//!
//! Keys are the 128-bit XXH3 hash of the set name and the member, as the
//! de-duplication keys: two different members collide with probability 2⁻¹²⁸.

use std::collections::{BTreeMap, HashSet};
use std::hash::BuildHasherDefault;

use crate::dedup::KeyHasher;

/// Keys held at most, over all minutes: about 40 MB.
pub const MAX_MEMBERS: usize = 1_000_000;

/// A member of a set, hashed.
pub type MemberKey = u128;

/// The key of `member` in set `set`.
pub fn key_of(set: &str, member: &str) -> MemberKey {
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    hasher.update(set.as_bytes());
    // A separator no set name holds, so that ("a", "bc") and ("ab", "c") differ.
    hasher.update(&[0]);
    hasher.update(member.as_bytes());
    hasher.digest128()
}

type KeySet = HashSet<MemberKey, BuildHasherDefault<KeyHasher>>;

/// Members committed per minute (see the module documentation).
#[derive(Debug, Default)]
pub struct CommittedMembers {
    minutes: BTreeMap<i64, KeySet>,
    len: usize,
}

impl CommittedMembers {
    /// Whether `key` is known to be committed in `minute`.
    pub fn contains(&self, minute: i64, key: MemberKey) -> bool {
        self.minutes
            .get(&minute)
            .is_some_and(|set| set.contains(&key))
    }

    /// Notes committed members `(minute, set, member)`; then forgets the minutes more
    /// than `horizon_secs` before the newest one held, and the oldest minutes while more
    /// than `max` keys are held.
    pub fn note<'a>(
        &mut self,
        committed: impl IntoIterator<Item = (i64, &'a str, &'a str)>,
        horizon_secs: i64,
        max: usize,
    ) {
        for (minute, set, member) in committed {
            if self
                .minutes
                .entry(minute)
                .or_default()
                .insert(key_of(set, member))
            {
                self.len += 1;
            }
        }
        let Some(&newest) = self.minutes.keys().next_back() else {
            return;
        };
        while let Some((&oldest, _)) = self.minutes.first_key_value() {
            if oldest >= newest.saturating_sub(horizon_secs) && self.len <= max {
                break;
            }
            if let Some(set) = self.minutes.remove(&oldest) {
                self.len -= set.len();
            }
        }
    }

    /// Keys held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn committed_members_are_known_per_minute_and_set() {
        let mut members = CommittedMembers::default();
        members.note([(60, "users", "u1"), (60, "viewers", "u1")], 600, 100);
        assert!(members.contains(60, key_of("users", "u1")));
        assert!(members.contains(60, key_of("viewers", "u1")));
        assert!(
            !members.contains(120, key_of("users", "u1")),
            "another minute"
        );
        assert!(!members.contains(60, key_of("buyers", "u1")), "another set");
        assert_ne!(key_of("a", "bc"), key_of("ab", "c"));
        members.note([(60, "users", "u1")], 600, 100);
        assert_eq!(members.len(), 2, "noted once");
    }

    #[test]
    fn old_minutes_and_the_oldest_beyond_the_bound_are_forgotten() {
        let mut members = CommittedMembers::default();
        members.note([(0, "users", "a"), (60, "users", "a")], 60, 100);
        assert_eq!(members.len(), 2);
        members.note([(180, "users", "a")], 60, 100);
        assert!(!members.contains(0, key_of("users", "a")));
        assert!(!members.contains(60, key_of("users", "a")), "180 - 60 > 60");
        assert!(members.contains(180, key_of("users", "a")));
        members.note([(240, "users", "a"), (240, "users", "b")], 600, 2);
        assert_eq!(
            members.len(),
            2,
            "the bound drops whole minutes, oldest first"
        );
        assert!(members.contains(240, key_of("users", "b")));
        members.note(
            [
                (300, "users", "a"),
                (300, "users", "b"),
                (300, "users", "c"),
            ],
            600,
            2,
        );
        assert!(
            members.is_empty(),
            "a minute alone over the bound is dropped too"
        );
    }
}
