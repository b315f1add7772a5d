//! The models. Each runs under `loom::model`: every interleaving of its threads.

use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::sync::Arc;
use loom::thread;

use crate::budget::QueueBudget;
use crate::doorbell::{Doorbell, GATHERING, IDLE, WAKE_AT_EVENTS};
use crate::progress::{Progress, Stage};

/// Two submissions race for room for one: exactly one is admitted, and once it is
/// released the budget is back to empty (the loser's reservation was undone).
#[test]
fn the_queue_budget_admits_exactly_one_of_two_for_the_last_slot() {
    loom::model(|| {
        let budget = Arc::new(QueueBudget::new(1, 1 << 20));
        let other = {
            let budget = budget.clone();
            thread::spawn(move || budget.try_reserve(1, 10).is_ok())
        };
        let mine = budget.try_reserve(1, 10).is_ok();
        let theirs = other.join().expect("no panic");
        assert!(mine != theirs, "admitted: mine {mine}, theirs {theirs}");
        budget.release(1, 10);
        assert_eq!(budget.queued(), (0, 0));
    });
}

/// The byte bound holds under a race too: two batches that each fit alone but not
/// together are never both admitted, and a refusal leaves nothing reserved.
#[test]
fn the_queue_budget_never_admits_past_its_byte_bound() {
    loom::model(|| {
        let budget = Arc::new(QueueBudget::new(100, 100));
        let other = {
            let budget = budget.clone();
            thread::spawn(move || budget.try_reserve(3, 60).is_ok())
        };
        let mine = budget.try_reserve(2, 60).is_ok();
        let theirs = other.join().expect("no panic");
        assert!(!(mine && theirs), "both admitted: 120 bytes of 100");
        let expected = match (mine, theirs) {
            (true, _) => (2, 60),
            (_, true) => (3, 60),
            _ => (0, 0),
        };
        assert_eq!(budget.queued(), expected);
    });
}

/// The delivery thread parks in `state` until `wake_at` events are queued; a
/// submitter queues them, then rings. Whatever the interleaving, the thread either sees
/// them before it parks or is unparked: no wake-up is lost (a lost one deadlocks the
/// model: loom's park has no timeout to fall back on).
fn never_misses_a_ring(state: u8, wake_at: usize) {
    loom::model(move || {
        let doorbell = Arc::new(Doorbell::new());
        let queued = Arc::new(AtomicUsize::new(0));
        let delivery = {
            let (doorbell, queued) = (doorbell.clone(), queued.clone());
            thread::spawn(move || {
                let waiting = || queued.load(Ordering::Relaxed) < wake_at;
                while waiting() {
                    doorbell.park(state, std::time::Duration::from_millis(100), waiting);
                }
            })
        };
        doorbell.set_thread(delivery.thread().clone());
        queued.store(wake_at, Ordering::Relaxed);
        doorbell.ring(wake_at);
        delivery.join().expect("no panic");
    });
}

/// An idle thread is woken by the first submission.
#[test]
fn an_idle_delivery_thread_never_misses_a_submission() {
    never_misses_a_ring(IDLE, 1);
}

/// A gathering thread is woken early once a large group is queued.
#[test]
fn a_gathering_delivery_thread_never_misses_a_large_group() {
    never_misses_a_ring(GATHERING, WAKE_AT_EVENTS);
}

/// Two events settle on two threads (one failed) while a waiter looks: exactly one
/// completion reports the last (so waiters are woken once), and a waiter that sees the
/// submission settled also sees its failure.
#[test]
fn the_last_completion_is_reported_once_and_failures_are_seen_with_it() {
    loom::model(|| {
        let progress = Arc::new(Progress::new(2));
        let failing = {
            let progress = progress.clone();
            thread::spawn(move || progress.complete(Some(("timed out".to_owned(), true))))
        };
        let waiter = {
            let progress = progress.clone();
            thread::spawn(move || {
                if progress.is_done(Stage::Settled) {
                    assert_eq!(
                        progress.failed(Stage::Settled),
                        1,
                        "settled, failure unseen"
                    );
                }
            })
        };
        let mine = progress.complete(None);
        let theirs = failing.join().expect("no panic");
        waiter.join().expect("no panic");
        assert!(
            mine != theirs,
            "the last completion is reported exactly once"
        );
        assert!(progress.is_done(Stage::Settled));
        assert_eq!(progress.failed(Stage::Settled), 1);
        assert_eq!(
            progress.first_failure().map(|f| f.0.as_str()),
            Some("timed out")
        );
    });
}

/// With a disk buffer: one event is persisted then delivered while the other is
/// abandoned (buffer full). Each count reaches zero exactly once, and a waiter for
/// `Persisted` that sees it done also sees the abandoned event as failed.
#[test]
fn persisted_and_abandoned_events_reach_zero_once_with_the_failure_visible() {
    loom::model(|| {
        let progress = Arc::new(Progress::new(2));
        let delivered = {
            let progress = progress.clone();
            thread::spawn(move || (progress.persisted(1), progress.complete(None)))
        };
        let waiter = {
            let progress = progress.clone();
            thread::spawn(move || {
                if progress.is_done(Stage::Persisted) {
                    assert_eq!(progress.failed(Stage::Persisted), 1, "failure unseen");
                }
            })
        };
        let abandoned = progress.abandon("disk buffer full".to_owned(), true);
        let (persisted_last, settled_last) = delivered.join().expect("no panic");
        waiter.join().expect("no panic");
        assert_eq!(
            usize::from(persisted_last) + usize::from(abandoned.persisted),
            1,
            "persisted: zero reached once"
        );
        assert_eq!(
            usize::from(settled_last) + usize::from(abandoned.settled),
            1,
            "settled: zero reached once"
        );
        assert_eq!(progress.failed(Stage::Persisted), 1);
        assert_eq!(progress.failed(Stage::Settled), 1);
    });
}
