//! Waking the delivery thread: [`Doorbell`], lock-free.
//!
//! Its atomics and parking come from [`super::sync`], so that the loom model checker
//! (crate `ingest-loom`) runs this file against its own.

use std::time::Duration;

use super::sync::{fence, park_timeout, AtomicU8, OnceLock, Ordering, Thread};

/// Queued events at which a submitter wakes a delivery thread that is letting a group
/// gather, so a burst does not wait out the whole window.
pub(crate) const WAKE_AT_EVENTS: usize = 1024;

/// The delivery thread's states (see [`Doorbell`]).
pub(crate) const RUNNING: u8 = 0;
pub(crate) const GATHERING: u8 = 1;
pub(crate) const IDLE: u8 = 2;

/// How submitters wake the delivery thread, and only when it needs waking.
///
/// The thread is running (taking commands), gathering (parked for the gather window
/// after a group; woken early only once [`WAKE_AT_EVENTS`] are queued) or idle (parked
/// because the queue was empty after a window; the first submission wakes it). The
/// thread announces its state, then looks at the queue once more before parking;
/// submitters queue, then look at the state. With a sequentially consistent fence on
/// both sides, either the thread sees the new command or the submitter sees the state
/// and wakes it: no command waits longer than the window.
pub(crate) struct Doorbell {
    state: AtomicU8,
    thread: OnceLock<Thread>,
}

impl Doorbell {
    pub(crate) fn new() -> Self {
        Doorbell {
            state: AtomicU8::new(RUNNING),
            thread: OnceLock::new(),
        }
    }

    /// Names the thread to wake (the delivery thread, once spawned).
    pub(crate) fn set_thread(&self, thread: Thread) {
        let _ = self.thread.set(thread);
    }

    /// After queueing records, with `queued_events` now queued: wakes the delivery
    /// thread if it is idle, or gathering and the group is large.
    pub(crate) fn ring(&self, queued_events: usize) {
        fence(Ordering::SeqCst);
        match self.state.load(Ordering::Relaxed) {
            IDLE => self.wake(),
            GATHERING if queued_events >= WAKE_AT_EVENTS => self.wake(),
            _ => {}
        }
    }

    /// The state the delivery thread last announced.
    #[cfg(test)]
    pub(crate) fn state(&self) -> u8 {
        self.state.load(Ordering::SeqCst)
    }

    /// Wakes the delivery thread whatever its state (control commands).
    pub(crate) fn wake(&self) {
        if let Some(thread) = self.thread.get() {
            thread.unpark();
        }
    }

    /// Parks the calling (delivery) thread for up to `timeout` in `state`, unless
    /// `is_empty` (checked after the state is announced) says there is work.
    pub(crate) fn park(&self, state: u8, timeout: Duration, is_empty: impl FnOnce() -> bool) {
        self.state.store(state, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        if is_empty() {
            park_timeout(timeout);
        }
        self.state.store(RUNNING, Ordering::Relaxed);
    }
}
