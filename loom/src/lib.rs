//! Model checks of the lock-free parts of `ingest-core`'s delivery path with loom,
//! which runs a test under every interleaving of its threads (up to a bound) and every
//! outcome of the memory orderings it models.
//!
//! The checked files are `ingest-core`'s own (`delivery/budget.rs`,
//! `delivery/doorbell.rs`, `delivery/progress.rs`: the counters of a receipt's
//! tracker), compiled here with a `sync` module that gives them loom's
//! atomics and parking where `ingest-core` gives them std's. Nothing else of
//! `ingest-core` is built, so the checks cost seconds, not a rebuild of the workspace
//! under `--cfg loom`.

#[cfg(test)]
mod sync {
    //! loom's versions of what `ingest-core/src/delivery/sync.rs` names.
    pub(crate) use loom::sync::atomic::{fence, AtomicU8, AtomicUsize, Ordering};
    pub(crate) use loom::thread::Thread;
    // loom has none. std's is used as is: loom runs one model thread at a time and has
    // no switch point inside it, so it is never contended here; what the models check
    // is the counters' ordering around it.
    pub(crate) use std::sync::OnceLock;

    /// loom models no clocks: a park that times out is a park that only an unpark
    /// ends, so a lost wake-up shows as a deadlock instead of a late wake-up.
    pub(crate) fn park_timeout(_timeout: std::time::Duration) {
        loom::thread::park();
    }
}

#[cfg(test)]
#[allow(dead_code, unreachable_pub)]
#[path = "../../ingest-core/src/delivery/budget.rs"]
mod budget;

#[cfg(test)]
#[allow(dead_code, unreachable_pub)]
#[path = "../../ingest-core/src/delivery/doorbell.rs"]
mod doorbell;

#[cfg(test)]
#[allow(dead_code, unreachable_pub)]
#[path = "../../ingest-core/src/delivery/progress.rs"]
mod progress;

#[cfg(test)]
mod tests;
