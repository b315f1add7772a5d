//! The maps of the checkpoint's hot path: keyed by user, product, query or partition
//! and looked up several times per event.
//!
//! They hash with foldhash instead of the standard library's SipHash, which was about a
//! twentieth of the processor's time in a profile of the processor row. Keys come
//! from producers, so the hasher is still seeded per map (foldhash's `RandomState`):
//! an input crafted to collide in one process does not collide in another.

/// A `HashMap` with the hot path's hasher.
pub type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// A `HashSet` with the hot path's hasher.
pub type FastSet<T> = std::collections::HashSet<T, foldhash::fast::RandomState>;
