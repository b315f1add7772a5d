//! The atomics and thread parking of the lock-free parts of delivery (`budget.rs`,
//! `doorbell.rs`, `progress.rs`), named in one place: the loom model checker (crate
//! `ingest-loom`) compiles those files with its own module of these names, loom's
//! versions.

pub(crate) use std::sync::atomic::{fence, AtomicU8, AtomicUsize, Ordering};
pub(crate) use std::sync::OnceLock;
pub(crate) use std::thread::{park_timeout, Thread};
