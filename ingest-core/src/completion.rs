//! [`CompletionQueue`]: acknowledgements for event loops, keyed by the caller's tags.
//!
//! A host that runs its own event loop (a C program around `poll(2)`, a language
//! runtime's loop) registers what it waits for — a [`Receipt`] at an [`Ack`] level, or
//! a flush — under a `u64` tag of its choosing, and later takes the finished ones off
//! the queue, from any thread, without blocking ([`CompletionQueue::poll`]) or with a
//! bounded wait ([`CompletionQueue::wait`]). The library never calls into the host:
//! no foreign callback runs on a library thread, so the host keeps control of its own
//! threads, locks and re-entrancy.
//!
//! Waiting happens on one background thread, `ingest-runtime`, a single-worker tokio
//! runtime the library starts the first time a queue has to wait for something (a
//! receipt already settled is queued at once, without it). It lives for the rest of
//! the process.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use crate::delivery::{Ack, Receipt};
use crate::error::Error;
use crate::ingestor::Ingestor;

/// The completion queue's default bound: registrations not yet taken off the queue.
pub const DEFAULT_COMPLETION_CAPACITY: usize = 65_536;

/// What finished: the tag given when it was registered, and its outcome.
#[derive(Debug)]
#[non_exhaustive]
pub struct Completion {
    /// The caller's tag.
    pub tag: u64,
    /// `Ok` when the events reached the level asked for (or the flush finished);
    /// otherwise the error [`Receipt::wait`] or [`Ingestor::flush`] would have returned,
    /// or [`Error::Timeout`] when the registration's own timeout passed first.
    pub result: Result<(), Error>,
}

/// A queue of finished waits, keyed by caller-supplied tags. Cheap to clone (clones
/// share the queue); `Send` and `Sync`.
///
/// A host that runs its own event loop registers what it waits for (a [`Receipt`] at
/// an [`Ack`] level, or a flush) under a `u64` tag of its choosing, and later takes the
/// finished ones off the queue, from any thread, without blocking ([`poll`](Self::poll))
/// or with a bounded wait ([`wait`](Self::wait)). The library never calls into the
/// host: no foreign callback runs on a library thread, so the host keeps control of its
/// threads, locks and re-entrancy.
///
/// Waiting happens on one background thread, `ingest-runtime` (a single-worker tokio
/// runtime), which the library starts the first time a queue has to wait; a receipt
/// already settled is queued at once without it. The thread lives as long as the
/// process.
///
/// # Examples
///
/// ```no_run
/// use bytes::Bytes;
/// use ingest_core::{Ack, CompletionQueue, EventKind, Ingestor};
/// use std::time::Duration;
///
/// # fn run() -> Result<(), ingest_core::Error> {
/// let ingestor = Ingestor::builder().brokers("127.0.0.1:9092").build()?;
/// let completions = CompletionQueue::new();
/// let body = Bytes::from_static(br#"{"user_id":"u1","product_id":"sku-1"}"#);
/// let receipt = ingestor.submit(EventKind::ProductView, body)?;
/// completions.watch(&receipt, Ack::Delivered, Some(Duration::from_secs(30)), 42)?;
/// // ... later, in the event loop:
/// if let Some(done) = completions.wait(Duration::from_millis(10)) {
///     assert_eq!(done.tag, 42);
///     done.result?;
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct CompletionQueue {
    shared: Arc<Shared>,
}

struct Shared {
    state: Mutex<State>,
    ready: Condvar,
    capacity: usize,
}

#[derive(Default)]
struct State {
    finished: VecDeque<Completion>,
    /// Registrations still waiting.
    waiting: usize,
}

impl std::fmt::Debug for CompletionQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.shared.lock();
        f.debug_struct("CompletionQueue")
            .field("waiting", &state.waiting)
            .field("finished", &state.finished.len())
            .field("capacity", &self.shared.capacity)
            .finish()
    }
}

impl Default for CompletionQueue {
    fn default() -> Self {
        CompletionQueue::new()
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // The state stays consistent across a panic elsewhere: every update is one step.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn finish(&self, completion: Completion, was_waiting: bool) {
        let mut state = self.lock();
        if was_waiting {
            state.waiting -= 1;
        }
        state.finished.push_back(completion);
        drop(state);
        self.ready.notify_one();
    }
}

impl CompletionQueue {
    /// A queue holding at most [`DEFAULT_COMPLETION_CAPACITY`] registrations.
    pub fn new() -> Self {
        CompletionQueue::with_capacity(DEFAULT_COMPLETION_CAPACITY)
    }

    /// A queue holding at most `capacity` registrations (waiting, or finished and not
    /// yet taken); at least one.
    pub fn with_capacity(capacity: usize) -> Self {
        CompletionQueue {
            shared: Arc::new(Shared {
                state: Mutex::new(State::default()),
                ready: Condvar::new(),
                capacity: capacity.max(1),
            }),
        }
    }

    /// Registers `tag` to complete when the events of `receipt` reach `ack` (or fail
    /// to), or when `timeout` passes first (`None`: no limit). The receipt may be
    /// dropped afterwards; the queue keeps what it needs.
    ///
    /// # Errors
    ///
    /// [`Error::QueueFull`] when the queue holds its capacity of registrations (take
    /// finished ones off first); [`Error::Io`] if the background thread cannot start.
    pub fn watch(
        &self,
        receipt: &Receipt,
        ack: Ack,
        timeout: Option<Duration>,
        tag: u64,
    ) -> Result<(), Error> {
        self.admit()?;
        if let Some(result) = receipt.try_wait(ack) {
            self.shared.finish(Completion { tag, result }, false);
            return Ok(());
        }
        let receipt = receipt.clone();
        self.spawn(
            tag,
            async move { bounded(timeout, receipt.wait(ack)).await },
        )
    }

    /// Registers `tag` to complete when [`Ingestor::flush`] with `timeout` finishes.
    ///
    /// # Errors
    ///
    /// As [`watch`](Self::watch).
    pub fn watch_flush(
        &self,
        ingestor: &Ingestor,
        timeout: Duration,
        tag: u64,
    ) -> Result<(), Error> {
        self.admit()?;
        let ingestor = ingestor.clone();
        // Bounded here too: the delivery thread may not take the flush's command in time.
        self.spawn(tag, async move {
            bounded(Some(timeout), ingestor.flush(timeout)).await
        })
    }

    /// Takes one finished registration off the queue, if there is one; never blocks.
    pub fn poll(&self) -> Option<Completion> {
        self.shared.lock().finished.pop_front()
    }

    /// Takes one finished registration off the queue, waiting up to `timeout` for one.
    pub fn wait(&self, timeout: Duration) -> Option<Completion> {
        let deadline = Instant::now().checked_add(timeout);
        let mut state = self.shared.lock();
        loop {
            if let Some(done) = state.finished.pop_front() {
                return Some(done);
            }
            let left = match deadline {
                Some(deadline) => deadline.saturating_duration_since(Instant::now()),
                None => Duration::from_secs(3600),
            };
            if left.is_zero() {
                return None;
            }
            state = self
                .shared
                .ready
                .wait_timeout(state, left)
                .map(|(state, _)| state)
                .unwrap_or_else(|e| e.into_inner().0);
        }
    }

    /// Registrations still waiting.
    pub fn waiting(&self) -> usize {
        self.shared.lock().waiting
    }

    /// Finished registrations not yet taken off the queue.
    pub fn finished(&self) -> usize {
        self.shared.lock().finished.len()
    }

    /// Refuses a registration past the capacity.
    fn admit(&self) -> Result<(), Error> {
        let state = self.shared.lock();
        let held = state.waiting + state.finished.len();
        if held >= self.shared.capacity {
            return Err(Error::QueueFull {
                queued_events: held,
                queued_bytes: 0,
            });
        }
        Ok(())
    }

    fn spawn(
        &self,
        tag: u64,
        wait: impl std::future::Future<Output = Result<(), Error>> + Send + 'static,
    ) -> Result<(), Error> {
        let runtime = runtime()?;
        self.shared.lock().waiting += 1;
        let shared = self.shared.clone();
        runtime.spawn(async move {
            let result = wait.await;
            shared.finish(Completion { tag, result }, true);
        });
        Ok(())
    }
}

/// `wait`, or [`Error::Timeout`] once `timeout` passes.
async fn bounded(
    timeout: Option<Duration>,
    wait: impl std::future::Future<Output = Result<(), Error>>,
) -> Result<(), Error> {
    match timeout {
        None => wait.await,
        Some(limit) => tokio::time::timeout(limit, wait)
            .await
            .unwrap_or(Err(Error::Timeout(limit))),
    }
}

/// The library's own runtime: one worker thread, `ingest-runtime`, started on first use.
fn runtime() -> Result<&'static tokio::runtime::Handle, Error> {
    static RUNTIME: OnceLock<Result<tokio::runtime::Runtime, String>> = OnceLock::new();
    let built = RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .max_blocking_threads(1)
            .thread_name("ingest-runtime")
            .enable_time()
            .build()
            .map_err(|e| e.to_string())
    });
    match built {
        Ok(runtime) => Ok(runtime.handle()),
        Err(reason) => Err(Error::Io {
            context: "starting the ingest-runtime thread".to_owned(),
            source: std::io::Error::other(reason.clone()),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::Tracker;

    #[test]
    fn a_settled_receipt_completes_at_once_and_others_when_they_settle() {
        let queue = CompletionQueue::new();
        let done = Receipt::new(Tracker::new(0, false), None);
        queue.watch(&done, Ack::Delivered, None, 1).expect("watch");
        let first = queue.poll().expect("finished at once");
        assert_eq!(first.tag, 1);
        assert!(first.result.is_ok());

        let tracker = Tracker::new(1, false);
        let receipt = Receipt::new(tracker.clone(), None);
        queue
            .watch(&receipt, Ack::Delivered, None, 2)
            .expect("watch");
        drop(receipt);
        assert_eq!(queue.waiting(), 1);
        assert!(queue.poll().is_none());
        assert!(queue.wait(Duration::from_millis(20)).is_none());
        tracker.complete(Some(("Message timed out".to_owned(), true)));
        let second = queue.wait(Duration::from_secs(10)).expect("completes");
        assert_eq!(second.tag, 2);
        assert!(matches!(
            second.result,
            Err(Error::Delivery { failed: 1, .. })
        ));
        assert_eq!((queue.waiting(), queue.finished()), (0, 0));
    }

    #[test]
    fn a_registration_times_out_on_its_own() {
        let queue = CompletionQueue::new();
        let tracker = Tracker::new(1, false);
        let receipt = Receipt::new(tracker.clone(), None);
        queue
            .watch(&receipt, Ack::Delivered, Some(Duration::from_millis(10)), 7)
            .expect("watch");
        let done = queue.wait(Duration::from_secs(10)).expect("times out");
        assert_eq!(done.tag, 7);
        assert!(matches!(done.result, Err(Error::Timeout(_))));
    }

    #[test]
    fn refuses_past_its_capacity_until_completions_are_taken() {
        let queue = CompletionQueue::with_capacity(2);
        let tracker = Tracker::new(1, false);
        let receipt = Receipt::new(tracker.clone(), None);
        queue
            .watch(&receipt, Ack::Delivered, None, 1)
            .expect("first");
        queue
            .watch(&receipt, Ack::Delivered, None, 2)
            .expect("second");
        let full = queue
            .watch(&receipt, Ack::Delivered, None, 3)
            .expect_err("full");
        assert!(matches!(
            full,
            Error::QueueFull {
                queued_events: 2,
                ..
            }
        ));
        tracker.complete(None);
        let mut tags = [
            queue.wait(Duration::from_secs(10)).expect("one").tag,
            queue.wait(Duration::from_secs(10)).expect("two").tag,
        ];
        tags.sort_unstable();
        assert_eq!(tags, [1, 2]);
        queue
            .watch(&receipt, Ack::Delivered, None, 3)
            .expect("room again");
    }

    #[test]
    fn completes_from_threads_other_than_the_waiter() {
        let queue = CompletionQueue::new();
        let trackers: Vec<_> = (0..8).map(|_| Tracker::new(1, true)).collect();
        for (tag, tracker) in trackers.iter().enumerate() {
            let receipt = Receipt::new(tracker.clone(), None);
            queue
                .watch(&receipt, Ack::Persisted, None, tag as u64)
                .expect("watch");
        }
        let completers: Vec<_> = trackers
            .into_iter()
            .map(|t| std::thread::spawn(move || t.persisted(1)))
            .collect();
        let mut tags: Vec<u64> = (0..8)
            .map(|_| queue.wait(Duration::from_secs(10)).expect("done").tag)
            .collect();
        tags.sort_unstable();
        assert_eq!(tags, (0..8).collect::<Vec<_>>());
        for c in completers {
            c.join().expect("joins");
        }
    }
}
