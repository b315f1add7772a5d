//! # ingest_core._native: the Python extension module of ingest-core
//!
//! Built by maturin into the `ingest_core` package (`bindings/python/python/ingest_core`
//! holds the Python side: the exception classes, the asyncio helper, the type stubs).
//! It wraps [`ingest_core::Ingestor`] and [`ingest_core::flags::FlagSet`] directly.
//!
//! ## Threads and the GIL
//!
//! Every call that waits (an acknowledgement, `flush`, `close`, creating a client with
//! a disk buffer, validating a batch) releases the GIL. Library threads never take the
//! GIL: two threads of this module do, and hold no library lock while they do:
//! `ingest-log` (log records to Python's `logging`, see `logs.rs`) and `ingest-asyncio`
//! (asyncio futures resolved through `loop.call_soon_threadsafe`, see `aio.rs`). Both
//! start on first use and stop calling into Python when the interpreter exits.
//!
//! ## Panics
//!
//! PyO3 turns a panic inside a call into `pyo3_runtime.PanicException`; the library's
//! threads report theirs through `Client.health()["dead_threads"]`. The module must be
//! built with unwinding (the `dev` or `release-ffi` profile), never with the
//! workspace's `release` profile, which aborts the interpreter on a panic.

use pyo3::prelude::*;

mod aio;
mod client;
mod config;
mod errors;
mod flags;
mod logs;
mod payload;

/// The module `ingest_core._native`.
#[pymodule]
fn _native(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_class::<client::Client>()?;
    module.add_class::<client::BatchResult>()?;
    module.add_class::<client::Rejection>()?;
    module.add_class::<flags::Flags>()?;
    module.add("__version__", env!("CARGO_PKG_VERSION"))?;
    module.add("EVENT_KINDS", client::EVENT_KINDS.to_vec())?;
    module.add("ACKS", client::ACKS.to_vec())?;
    module.add_function(wrap_pyfunction!(logs::refresh_log_level, module)?)?;
    module.add_function(wrap_pyfunction!(before_exit, module)?)?;
    logs::install(module.py())?;
    Ok(())
}

/// Registered with `atexit` by the package: the module's threads stop calling into
/// Python before the interpreter shuts down.
#[pyfunction]
#[pyo3(name = "_before_exit")]
fn before_exit() {
    logs::stop();
    aio::stop();
}
