//! # ingest-ffi: the C ABI of ingest-core
//!
//! `include/ingest.h` (generated from this crate by cbindgen, committed, checked for
//! drift) declares everything here. A C program, or a language that calls C (Go's cgo),
//! links `libingest.a` or `libingest.so` and gets the library's validation, disk buffer,
//! acknowledgement levels and delivery guarantees in-process.
//!
//! ## Conventions
//!
//! - Every function returns an [`ingest_status`] (or a value that cannot fail) and
//!   writes its results through out-pointers. On failure the message is kept per thread:
//!   [`ingest_last_error_message`] (borrowed) or [`ingest_last_error_copy`] (into a
//!   caller's buffer); a rejected event's code, field and message through
//!   [`ingest_last_rejection`]. They stay valid until the next call on the same thread
//!   that fails.
//! - Every object the library returns has a free function (`ingest_client_free`,
//!   `ingest_receipt_free`, `ingest_batch_free`, `ingest_completions_free`,
//!   `ingest_flags_free`); each accepts NULL. Strings the library returns are borrowed
//!   and never freed by the caller, except those written through a `char **`
//!   out-pointer ([`ingest_flags_assign`], [`ingest_flags_variant`]): the caller owns
//!   them and frees them with [`ingest_string_free`].
//! - Pointers are checked for NULL and lengths for sense; a bad argument is
//!   `INGEST_ERR_INVALID_ARGUMENT`, never a crash. Enumerations travel as `uint32_t`,
//!   so an unknown value is an error rather than undefined behaviour.
//! - Every function runs inside a panic boundary: a bug inside the library becomes
//!   `INGEST_ERR_PANIC` with a message, and the host process lives on. This needs a build
//!   that unwinds: the workspace's `release` profile aborts on panic, so release builds
//!   of this library use the `release-ffi` profile (`cargo build --profile release-ffi
//!   -p ingest-ffi`).
//! - Timeouts are milliseconds; [`INGEST_NO_TIMEOUT`] waits without limit.
//!
//! ## Threads
//!
//! An `ingest_client` is thread-safe: any thread may submit, wait, flush or close at
//! the same time as others. It starts, and stops on close:
//! - without a disk buffer, one delivery thread (`ingest-delivery`); with one, a spool
//!   thread (`ingest-spool`), a forwarder (`ingest-forward`) and the log buffer's sync
//!   thread (`ingest-buffer`);
//! - librdkafka's own threads (a main thread and one per broker).
//!
//! Validation runs on the submitting thread. The first completion queue that has to
//! wait starts one more thread, `ingest-runtime` (a single-worker tokio runtime), shared
//! by the process and kept until it exits. Blocking waits park the calling thread. The
//! library never calls into the host from its threads except for the log callback the
//! host registers ([`ingest_set_log_callback`]).
//!
//! ## Memory
//!
//! The library allocates its own memory with mimalloc (feature `mimalloc`, on by
//! default), not with the host's `malloc`: events are allocated on the submitting
//! thread and freed on the delivery threads, a pattern that costs glibc's allocator
//! its arena locks. The host's `malloc` is not replaced. Everything the library hands
//! out is still released only by its own free functions.

#![deny(missing_docs)]

/// The library's allocator (see "Memory" above).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod batch;
mod boundary;
mod client;
mod completions;
mod flags;
mod log;
mod receipt;
mod types;

pub use batch::*;
pub use boundary::*;
pub use client::*;
pub use completions::*;
pub use flags::*;
pub use log::*;
pub use receipt::*;
pub use types::*;
