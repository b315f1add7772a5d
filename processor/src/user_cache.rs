//! The committed per-user state this instance wrote last, kept in memory so that a
//! checkpoint need not read it back from PostgreSQL.
//!
//! ## Why it is safe with several instances
//!
//! Every write of a user's row (`user_activity`) sets its `version` to the writing
//! transaction's id, which no other transaction shares. An entry here holds the state
//! and the version this instance committed. A checkpoint aggregates cached users from
//! the entry without reading or locking their rows, and its write updates a row only
//! where the stored version is still the entry's (see [`crate::store`]): when another
//! instance, a rebalance, a paused zombie's successor or the pruning job changed or
//! deleted the row since, the write finds fewer rows than it wrote, the checkpoint's
//! data is rolled back to its savepoint and written again from the locked rows. So an
//! entry can be stale but never wrong: it is checked by the database at every use.
//! Transaction ids are never reused, so a row deleted and re-created in between never
//! matches an old entry (unlike a per-row counter).
//!
//! ## Memory
//!
//! Bounded by `checkpoint.user_state_cache_mib`; the size of an entry is estimated
//! from its times and product ids. Past the bound, arbitrary entries are dropped (a
//! dropped user is read from PostgreSQL at its next event). Users of the partitions an
//! instance owns come back to it, so their entries are the ones used.

use std::collections::HashMap;

use crate::recommend::Recent;
use crate::sessions::Activity;

/// Bytes an entry costs besides its contents: the map slot, the key's and vectors'
/// headers.
const ENTRY_OVERHEAD: usize = 160;

/// One user's committed state, as this instance wrote it.
#[derive(Debug, Clone)]
pub struct CachedState {
    /// The row's `version` after that write.
    pub version: i64,
    /// Event times, for sessions.
    pub activity: Activity,
    /// Recent products, for recommendations.
    pub recent: Recent,
}

impl CachedState {
    fn size(&self, member: &str) -> usize {
        let ids = |list: &[String]| list.iter().map(|s| s.len() + 24).sum::<usize>();
        ENTRY_OVERHEAD
            + member.len()
            + self.activity.times().len() * 8
            + ids(&self.recent.viewed)
            + ids(&self.recent.bought)
    }
}

/// Per-user state committed by this instance, bounded in bytes.
#[derive(Debug)]
pub struct UserStateCache {
    entries: HashMap<String, CachedState>,
    bytes: usize,
    max_bytes: usize,
}

impl UserStateCache {
    /// An empty cache of at most `max_bytes` (0: caches nothing).
    pub fn new(max_bytes: usize) -> Self {
        UserStateCache {
            entries: HashMap::new(),
            bytes: 0,
            max_bytes,
        }
    }

    /// The entry of `member`, if held.
    pub fn get(&self, member: &str) -> Option<&CachedState> {
        self.entries.get(member)
    }

    /// Records what a committed checkpoint wrote for `member`.
    pub fn store(&mut self, member: &str, state: CachedState) {
        if self.max_bytes == 0 {
            return;
        }
        let size = state.size(member);
        if let Some(old) = self.entries.get_mut(member) {
            self.bytes = self.bytes - old.size(member) + size;
            *old = state;
        } else {
            self.bytes += size;
            self.entries.insert(member.to_owned(), state);
        }
    }

    /// Drops entries until the cache is within its bound, with a tenth to spare so that
    /// it is not trimmed again at every checkpoint. Returns the entries dropped.
    pub fn trim(&mut self) -> usize {
        if self.bytes <= self.max_bytes {
            return 0;
        }
        let target = self.max_bytes - self.max_bytes / 10;
        let mut dropped = Vec::new();
        let mut bytes = self.bytes;
        for (member, state) in &self.entries {
            if bytes <= target {
                break;
            }
            bytes -= state.size(member);
            dropped.push(member.clone());
        }
        for member in &dropped {
            self.entries.remove(member);
        }
        self.bytes = bytes;
        dropped.len()
    }

    /// Users held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no user is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The estimated bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(version: i64, times: usize) -> CachedState {
        CachedState {
            version,
            activity: Activity::from_times((0..times as i64).collect()),
            recent: Recent {
                viewed: vec!["p-1".to_owned()],
                bought: Vec::new(),
            },
        }
    }

    #[test]
    fn a_stored_state_replaces_the_previous_one_and_its_size() {
        let mut cache = UserStateCache::new(1 << 20);
        cache.store("u-1", state(5, 10));
        let small = cache.bytes();
        cache.store("u-1", state(6, 100));
        assert_eq!(cache.len(), 1);
        assert_eq!(cache.get("u-1").map(|s| s.version), Some(6));
        assert_eq!(cache.bytes(), small + 90 * 8);
    }

    #[test]
    fn trimming_brings_the_cache_under_its_bound_with_room_to_spare() {
        let one = state(1, 50).size("u-000");
        let mut cache = UserStateCache::new(one * 10);
        for i in 0..30 {
            cache.store(&format!("u-{i:03}"), state(1, 50));
        }
        assert_eq!(cache.len(), 30);
        let dropped = cache.trim();
        assert_eq!(dropped, 21, "down to nine tenths of the bound");
        assert_eq!(cache.len(), 9);
        assert_eq!(cache.bytes(), one * 9);
        assert_eq!(cache.trim(), 0, "within the bound: nothing more to drop");
    }

    #[test]
    fn a_cache_without_room_holds_nothing() {
        let mut cache = UserStateCache::new(0);
        cache.store("u-1", state(1, 1));
        assert!(cache.is_empty());
        assert_eq!(cache.trim(), 0);
    }
}
