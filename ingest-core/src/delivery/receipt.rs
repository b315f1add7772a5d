//! Receipts: how a caller learns what became of the events it submitted.

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use uuid::Uuid;

use super::progress::{Progress, Stage};
use crate::error::{Error, ValidationError};

/// How far an event must have travelled before a [`Receipt`] resolves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum Ack {
    /// Validated and queued in memory (the default: the fastest answer).
    #[default]
    Accepted,
    /// Written to the disk buffer and synced as its sync policy says. Without a disk
    /// buffer, Kafka is the first durable place, so this resolves when the events are
    /// delivered.
    Persisted,
    /// Acknowledged by Kafka with `acks=all`.
    Delivered,
}

impl Ack {
    /// The level's name, as in the `Ingest-Ack` request header.
    pub const fn as_str(self) -> &'static str {
        match self {
            Ack::Accepted => "accepted",
            Ack::Persisted => "persisted",
            Ack::Delivered => "delivered",
        }
    }
}

impl fmt::Display for Ack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// The error of parsing an [`Ack`] from text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown acknowledgement level {0:?}: expected accepted, persisted or delivered")]
pub struct ParseAckError(String);

impl FromStr for Ack {
    type Err = ParseAckError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "accepted" => Ok(Ack::Accepted),
            "persisted" => Ok(Ack::Persisted),
            "delivered" => Ok(Ack::Delivered),
            _ => Err(ParseAckError(s.to_owned())),
        }
    }
}

/// Shared progress of the events of one submission: its [`Progress`] counters, and
/// the waiters to wake when one reaches zero.
///
/// Every event ends in exactly one of two ways: handed on (to the producer, or to the
/// disk buffer and then the producer) and later [`complete`](Self::complete)d, or
/// [`abandon`](Self::abandon)ed before it left the queue. With a disk buffer, handing
/// on first marks it [`persisted`](Self::persisted).
pub(crate) struct Tracker {
    progress: Progress,
    notify: Notify,
    accepted_at: Instant,
    /// Whether `Ack::Persisted` means the disk buffer (else it means Kafka).
    disk: bool,
    /// Live [`Receipt`]s, counting from creation the one the submission returns (its
    /// records can reach the disk buffer before `submit` returns it). At zero nobody can
    /// learn the outcome, and the disk path need not keep the tracker for its records.
    watchers: AtomicUsize,
}

impl Tracker {
    pub(crate) fn new(total: usize, disk: bool) -> Arc<Self> {
        Arc::new(Tracker {
            progress: Progress::new(total),
            notify: Notify::new(),
            accepted_at: Instant::now(),
            disk,
            watchers: AtomicUsize::new(1),
        })
    }

    /// Whether a [`Receipt`] of this submission is still alive.
    pub(crate) fn is_watched(&self) -> bool {
        self.watchers.load(Ordering::Acquire) > 0
    }

    pub(crate) fn accepted_at(&self) -> Instant {
        self.accepted_at
    }

    /// Records that `n` events were written to the disk buffer.
    pub(crate) fn persisted(&self, n: usize) {
        if self.progress.persisted(n) {
            self.notify.notify_waiters();
        }
    }

    /// Records that one event that left the queue reached its final state.
    pub(crate) fn complete(&self, failure: Option<(String, bool)>) {
        if self.progress.complete(failure) {
            self.notify.notify_waiters();
        }
    }

    /// Records that one event failed before it left the queue (never persisted, never
    /// sent).
    pub(crate) fn abandon(&self, reason: String, retryable: bool) {
        let reached = self.progress.abandon(reason, retryable);
        if reached.persisted {
            self.notify.notify_waiters();
        }
        if reached.settled {
            self.notify.notify_waiters();
        }
    }

    /// The stage of the counters that `ack` waits for.
    fn stage(&self, ack: Ack) -> Stage {
        if ack == Ack::Persisted && self.disk {
            Stage::Persisted
        } else {
            Stage::Settled
        }
    }

    fn is_done(&self, ack: Ack) -> bool {
        self.progress.is_done(self.stage(ack))
    }

    fn outcome(&self, ack: Ack) -> Result<(), Error> {
        let failed = self.progress.failed(self.stage(ack));
        if failed == 0 {
            return Ok(());
        }
        let (reason, retryable) = self
            .progress
            .first_failure()
            .cloned()
            .unwrap_or_else(|| ("unknown".to_owned(), true));
        Err(Error::Delivery {
            failed,
            total: self.progress.total(),
            reason,
            retryable,
        })
    }
}

/// What became of a submission: resolves at the acknowledgement level the caller asks
/// for. Dropping a receipt does not affect delivery (with a disk buffer it frees the
/// memory that kept the outcome for it).
pub struct Receipt {
    tracker: Arc<Tracker>,
    event_id: Option<Uuid>,
}

impl fmt::Debug for Receipt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Receipt")
            .field("events", &self.tracker.progress.total())
            .field("pending", &self.tracker.progress.pending())
            .field("event_id", &self.event_id)
            .finish()
    }
}

impl Clone for Receipt {
    fn clone(&self) -> Self {
        self.tracker.watchers.fetch_add(1, Ordering::AcqRel);
        Receipt {
            tracker: self.tracker.clone(),
            event_id: self.event_id,
        }
    }
}

impl Drop for Receipt {
    fn drop(&mut self) {
        self.tracker.watchers.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Receipt {
    /// The receipt of a new tracker's submission; call once per tracker (it takes
    /// over the watch the tracker was created with).
    pub(crate) fn new(tracker: Arc<Tracker>, event_id: Option<Uuid>) -> Self {
        Receipt { tracker, event_id }
    }

    /// The event id, for a single-event submission.
    pub fn event_id(&self) -> Option<Uuid> {
        self.event_id
    }

    /// How many events this receipt covers.
    pub fn event_count(&self) -> usize {
        self.tracker.progress.total()
    }

    /// Whether every event has reached its final state (delivered or failed).
    pub fn is_settled(&self) -> bool {
        self.tracker.is_done(Ack::Delivered)
    }

    /// Waits until the events reach `ack`.
    ///
    /// # Errors
    ///
    /// [`Error::Delivery`] when some events did not reach `ack` (it says how many and
    /// why): not delivered in time, dropped because the disk buffer was full, or, at
    /// shutdown, kept in the disk buffer for the next start (which delivers them). A
    /// receipt of zero events resolves at once.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping the future only stops waiting.
    pub async fn wait(&self, ack: Ack) -> Result<(), Error> {
        if ack == Ack::Accepted {
            return Ok(());
        }
        loop {
            let notified = self.tracker.notify.notified();
            tokio::pin!(notified);
            // Register before checking, so a completion in between is not missed.
            notified.as_mut().enable();
            if self.tracker.is_done(ack) {
                return self.tracker.outcome(ack);
            }
            notified.await;
        }
    }

    /// Whether the events have reached `ack`, without waiting: `None` while some are
    /// still on their way, else the outcome [`wait`](Self::wait) would return. For
    /// hosts that poll from their own event loop.
    ///
    /// ```
    /// # fn check(receipt: &ingest_core::Receipt) {
    /// use ingest_core::Ack;
    /// match receipt.try_wait(Ack::Delivered) {
    ///     None => { /* not yet: ask again later */ }
    ///     Some(Ok(())) => { /* delivered */ }
    ///     Some(Err(error)) => eprintln!("{error}"),
    /// }
    /// # }
    /// ```
    pub fn try_wait(&self, ack: Ack) -> Option<Result<(), Error>> {
        if ack == Ack::Accepted {
            return Some(Ok(()));
        }
        self.tracker.is_done(ack).then(|| self.tracker.outcome(ack))
    }

    /// [`wait`](Self::wait) on the calling thread, for hosts without an async runtime:
    /// blocks until the events reach `ack` or `timeout` passes (`None`: no limit). No
    /// runtime is needed; any thread may call it.
    ///
    /// # Errors
    ///
    /// As [`wait`](Self::wait), and [`Error::Timeout`] when `timeout` passes first (the
    /// events are still on their way; wait again or [`try_wait`](Self::try_wait) later).
    pub fn wait_blocking(&self, ack: Ack, timeout: Option<Duration>) -> Result<(), Error> {
        crate::blocking::block_on(self.wait(ack), timeout)
            .unwrap_or_else(|| Err(Error::Timeout(timeout.unwrap_or_default())))
    }
}

/// One event of a batch that failed validation.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Rejection {
    /// Position of the event in the batch (0-based).
    pub index: usize,
    /// Why it was rejected.
    pub error: ValidationError,
}

/// The outcome of a batch submission: valid events are queued even when others are not.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct BatchReceipt {
    /// Tracks the accepted events.
    pub receipt: Receipt,
    /// How many events were accepted.
    pub accepted: usize,
    /// The ids of the accepted events (the client's `event_id`, or the generated one),
    /// in batch order.
    pub event_ids: Vec<Uuid>,
    /// The events that were not, in batch order.
    pub rejected: Vec<Rejection>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn resolves_when_all_events_settle_and_reports_failures() {
        let tracker = Tracker::new(3, false);
        let receipt = Receipt::new(tracker.clone(), None);
        assert!(receipt.wait(Ack::Accepted).await.is_ok());
        let waiter = tokio::spawn({
            let receipt = receipt.clone();
            async move { receipt.wait(Ack::Delivered).await }
        });
        tracker.complete(None);
        tracker.complete(Some(("Message timed out".to_owned(), true)));
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished(), "one event is still pending");
        tracker.complete(None);
        let err = waiter.await.expect("joins").expect_err("one failed");
        match err {
            Error::Delivery {
                failed,
                total,
                reason,
                retryable,
            } => {
                assert_eq!((failed, total, retryable), (1, 3, true));
                assert!(reason.contains("timed out"));
            }
            other => panic!("unexpected {other}"),
        }
    }

    #[tokio::test]
    async fn empty_receipt_resolves_at_once() {
        let receipt = Receipt::new(Tracker::new(0, true), None);
        assert!(receipt.wait(Ack::Delivered).await.is_ok());
    }

    #[tokio::test]
    async fn with_a_disk_buffer_persisted_resolves_before_delivered() {
        let tracker = Tracker::new(2, true);
        let receipt = Receipt::new(tracker.clone(), None);
        tracker.persisted(1);
        tracker.abandon("disk buffer full".to_owned(), true);
        let err = receipt.wait(Ack::Persisted).await.expect_err("one dropped");
        assert!(
            matches!(
                err,
                Error::Delivery {
                    failed: 1,
                    total: 2,
                    ..
                }
            ),
            "{err}"
        );
        assert!(
            !receipt.is_settled(),
            "the persisted one is still on its way"
        );
        tracker.complete(None);
        let err = receipt.wait(Ack::Delivered).await.expect_err("one dropped");
        assert!(err.to_string().contains("disk buffer full"), "{err}");

        let tracker = Tracker::new(1, true);
        let receipt = Receipt::new(tracker.clone(), None);
        tracker.persisted(1);
        receipt.wait(Ack::Persisted).await.expect("persisted");
    }

    #[test]
    fn a_tracker_is_watched_until_its_receipts_are_gone() {
        let tracker = Tracker::new(1, true);
        assert!(
            tracker.is_watched(),
            "by the receipt its submission returns"
        );
        let receipt = Receipt::new(tracker.clone(), None);
        let copy = receipt.clone();
        drop(receipt);
        assert!(tracker.is_watched(), "the clone still watches");
        drop(copy);
        assert!(!tracker.is_watched());
    }

    #[test]
    fn ack_parses_case_insensitively() {
        assert_eq!("Persisted".parse::<Ack>(), Ok(Ack::Persisted));
        assert_eq!(" delivered ".parse::<Ack>(), Ok(Ack::Delivered));
        assert!("now".parse::<Ack>().is_err());
    }
}

#[cfg(test)]
mod host_tests {
    use super::*;

    #[test]
    fn try_wait_answers_without_waiting() {
        let tracker = Tracker::new(2, false);
        let receipt = Receipt::new(tracker.clone(), None);
        assert!(matches!(receipt.try_wait(Ack::Accepted), Some(Ok(()))));
        assert!(receipt.try_wait(Ack::Delivered).is_none());
        tracker.complete(None);
        assert!(receipt.try_wait(Ack::Persisted).is_none(), "no disk: Kafka");
        tracker.complete(Some(("Message timed out".to_owned(), true)));
        let outcome = receipt.try_wait(Ack::Delivered).expect("settled");
        assert!(matches!(outcome, Err(Error::Delivery { failed: 1, .. })));
    }

    #[test]
    fn wait_blocking_times_out_then_resolves_from_another_thread() {
        let tracker = Tracker::new(1, true);
        let receipt = Receipt::new(tracker.clone(), None);
        let err = receipt
            .wait_blocking(Ack::Persisted, Some(Duration::from_millis(10)))
            .expect_err("nothing persisted yet");
        assert!(matches!(err, Error::Timeout(_)), "{err}");
        let completer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            tracker.persisted(1);
            tracker.complete(None);
        });
        receipt
            .wait_blocking(Ack::Persisted, None)
            .expect("persisted");
        receipt
            .wait_blocking(Ack::Delivered, Some(Duration::from_secs(10)))
            .expect("delivered");
        completer.join().expect("joins");
    }
}
