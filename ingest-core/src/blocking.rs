//! Running the library's futures to completion on the calling thread, for hosts without
//! an async runtime (the blocking forms of [`Receipt`](crate::Receipt),
//! [`Ingestor::flush`](crate::Ingestor::flush), `shutdown` and
//! [`ensure_topics`](crate::ensure_topics)).
//!
//! The futures involved wait on channels and notifications that other threads complete
//! (the delivery threads, the Kafka client's threads); none needs a reactor or a timer
//! of a runtime. So a waker that unparks the waiting thread is all it takes, and the
//! blocking forms work on any thread, inside a runtime's worker or not (though blocking
//! a runtime's worker stalls its other tasks, as any blocking call does).

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::Thread;
use std::time::{Duration, Instant};

/// Wakes the thread that waits in [`block_on`].
struct Unpark(Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

/// Polls `future` on this thread until it is ready, or until `timeout` has passed
/// (`None`: no limit), parking the thread in between.
pub(crate) fn block_on<F: Future>(future: F, timeout: Option<Duration>) -> Option<F::Output> {
    let deadline = timeout.map(|t| Instant::now().checked_add(t));
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut context = Context::from_waker(&waker);
    let mut future = pin!(future);
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut context) {
            return Some(output);
        }
        match deadline {
            // A timeout too large to add to now is no limit.
            None | Some(None) => std::thread::park(),
            Some(Some(deadline)) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return None;
                }
                std::thread::park_timeout(left);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completes_a_future_another_thread_resolves() {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let sender = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            tx.send(7).expect("receiver waits");
        });
        assert_eq!(block_on(rx, None), Some(Ok(7)));
        sender.join().expect("joins");
    }

    #[test]
    fn gives_up_at_the_timeout() {
        let (_tx, rx) = tokio::sync::oneshot::channel::<()>();
        let started = Instant::now();
        assert!(block_on(rx, Some(Duration::from_millis(30))).is_none());
        assert!(started.elapsed() >= Duration::from_millis(30));
        let (_tx, rx) = tokio::sync::oneshot::channel::<()>();
        assert!(
            block_on(rx, Some(Duration::ZERO)).is_none(),
            "zero polls once"
        );
    }

    #[test]
    fn works_inside_a_runtime_too() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let value = runtime.block_on(async { block_on(async { 3 }, None) });
        assert_eq!(value, Some(3));
    }
}
