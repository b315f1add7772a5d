//! asyncio: futures resolved when ingest-core's receipts settle, without polling.
//!
//! An `*_async` call creates a future on the running loop, registers the receipt (or
//! flush) with a process-wide [`CompletionQueue`] under a fresh tag, and returns the
//! future. One thread, `ingest-asyncio`, blocks on the queue; for each completion it
//! takes the GIL (holding no library lock) and schedules `ingest_core._aio._resolve`
//! on the future's loop with `loop.call_soon_threadsafe`, so the future is resolved on
//! the loop's own thread. A loop closed meanwhile is skipped; a cancelled future is
//! left alone.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, Once, OnceLock};
use std::time::Duration;

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;

use ingest_core::{Ack, CompletionQueue, Error, Ingestor, Receipt};

use crate::errors::to_py;

/// Completions registered and not yet taken off the queue, at most.
const CAPACITY: usize = 1 << 20;

/// What a completion resolves: the future, its loop, and the value on success.
struct Pending {
    event_loop: Py<PyAny>,
    future: Py<PyAny>,
    value: Py<PyAny>,
}

static PENDING: OnceLock<Mutex<HashMap<u64, Pending>>> = OnceLock::new();
static QUEUE: OnceLock<CompletionQueue> = OnceLock::new();
static NEXT_TAG: AtomicU64 = AtomicU64::new(1);
static STOPPED: AtomicBool = AtomicBool::new(false);
static DRAIN: Once = Once::new();

fn pending() -> MutexGuard<'static, HashMap<u64, Pending>> {
    PENDING
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn queue() -> &'static CompletionQueue {
    QUEUE.get_or_init(|| CompletionQueue::with_capacity(CAPACITY))
}

/// What an `*_async` call waits for.
pub(crate) enum Wait<'a> {
    /// A receipt reaching an acknowledgement level, within an optional timeout.
    Receipt(&'a Receipt, Ack, Option<Duration>),
    /// A flush of the ingestor, within a timeout.
    Flush(&'a Ingestor, Duration),
}

/// A future of the running loop that resolves to `value` when `wait` succeeds, or
/// fails with its error.
pub(crate) fn future<'py>(
    py: Python<'py>,
    wait: Wait<'_>,
    value: Py<PyAny>,
) -> PyResult<Bound<'py, PyAny>> {
    let event_loop = py.import("asyncio")?.call_method0("get_running_loop")?;
    let future = event_loop.call_method0("create_future")?;
    if let Wait::Receipt(receipt, ack, _) = &wait {
        if let Some(outcome) = receipt.try_wait(*ack) {
            match outcome {
                Ok(()) => future.call_method1("set_result", (value,))?,
                Err(error) => {
                    future.call_method1("set_exception", (to_py(py, error).value(py),))?
                }
            };
            return Ok(future);
        }
    }
    start_drain()?;
    let tag = NEXT_TAG.fetch_add(1, Ordering::Relaxed);
    pending().insert(
        tag,
        Pending {
            event_loop: event_loop.unbind(),
            future: future.clone().unbind(),
            value,
        },
    );
    let registered = match wait {
        Wait::Receipt(receipt, ack, timeout) => queue().watch(receipt, ack, timeout, tag),
        Wait::Flush(ingestor, timeout) => queue().watch_flush(ingestor, timeout, tag),
    };
    if let Err(error) = registered {
        pending().remove(&tag);
        return Err(to_py(py, error));
    }
    Ok(future)
}

/// Stops resolving futures (the interpreter is exiting).
pub(crate) fn stop() {
    STOPPED.store(true, Ordering::Release);
}

fn start_drain() -> PyResult<()> {
    let mut started = Ok(());
    DRAIN.call_once(|| {
        started = std::thread::Builder::new()
            .name("ingest-asyncio".to_owned())
            .spawn(drain)
            .map(|_| ());
    });
    started.map_err(Into::into)
}

/// The `ingest-asyncio` thread.
fn drain() {
    let queue = queue();
    loop {
        let Some(first) = queue.wait(Duration::from_secs(3600)) else {
            continue;
        };
        let mut done = vec![first];
        while done.len() < 1024 {
            match queue.poll() {
                Some(next) => done.push(next),
                None => break,
            }
        }
        if STOPPED.load(Ordering::Acquire) {
            continue;
        }
        let resolved = done
            .into_iter()
            .filter_map(|completion| {
                pending()
                    .remove(&completion.tag)
                    .map(|p| (p, completion.result))
            })
            .collect::<Vec<(Pending, Result<(), Error>)>>();
        let _ = Python::try_attach(|py| {
            for (pending, result) in resolved {
                // Errors here (the loop was closed) concern a future nobody awaits.
                let _ = resolve(py, pending, result);
            }
        });
    }
}

fn resolve(py: Python<'_>, pending: Pending, result: Result<(), Error>) -> PyResult<()> {
    static RESOLVE: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    let resolve = RESOLVE.import(py, "ingest_core._aio", "_resolve")?;
    let (value, error) = match result {
        Ok(()) => (pending.value, py.None()),
        Err(error) => (py.None(), to_py(py, error).into_value(py).into_any()),
    };
    pending.event_loop.bind(py).call_method1(
        "call_soon_threadsafe",
        (resolve, pending.future, value, error),
    )?;
    Ok(())
}
