//! Delivery: from a validated event to a record acknowledged by Kafka.
//!
//! ```text
//! submit (caller's thread)          delivery thread             producer client threads
//! validate → admit (QueueBudget) →  bounded queue → send  →     batch, compress, retry
//!          → Record + Tracker        (in groups)                → delivery report
//!                                                               → Tracker::complete
//! ```
//!
//! A single submission that finds nothing queued ahead of it skips the queue: the
//! submitter hands it to the producer itself, under the lock the delivery thread also
//! holds while it feeds the producer, so records still enter the producer in submission
//! order (see `Sender::send_first`). When something is queued, or the producer's queue
//! is full, the record is queued as above. The delivery thread takes the queue in
//! groups and is woken once per group, not per event (see `Doorbell` in `worker.rs`),
//! and hands each group over sorted by the partition each record will go to (see
//! `layout.rs`: one key's records keep their order).
//!
//! With a disk buffer (see [`disk`]), a spool thread takes the queue's place as its
//! consumer and appends to the buffer; a forwarder thread reads the buffer in order
//! and feeds the producer; delivery reports acknowledge records in the buffer.
//!
//! Guarantees:
//! - The queue is bounded in events and bytes; a submission that does not fit is
//!   refused with [`Error::QueueFull`](crate::Error::QueueFull), never blocked and never
//!   dropped silently. The producer client's own queue is bounded too; when it is full
//!   the delivery thread waits, the queue fills, and callers see back-pressure.
//! - The producer is idempotent with `acks=all`: retries never duplicate or reorder
//!   records within a partition.
//! - Every queued record is resolved exactly once: by its delivery report, by a send
//!   error, or, if it is dropped unsent when the ingestor stops, by its `Drop`.

mod breaker;
mod budget;
mod context;
mod disk;
mod doorbell;
mod forwarder;
mod layout;
mod progress;
mod receipt;
mod record;
mod sender;
mod shutdown;
mod spool;
mod stats;
mod stored;
mod sync;
mod throttle;
mod worker;

pub use breaker::BreakerState;
pub use receipt::{Ack, BatchReceipt, ParseAckError, Receipt, Rejection};
pub use shutdown::ShutdownReport;

pub(crate) use breaker::Breaker;
pub(crate) use budget::QueueBudget;
pub(crate) use context::DeliveryContext;
pub(crate) use disk::DiskState;
pub(crate) use doorbell::Doorbell;
pub(crate) use forwarder::Forwarder;
pub(crate) use layout::Layout;
pub(crate) use receipt::Tracker;
pub(crate) use record::{CustomRoute, Destination, Record};
pub(crate) use sender::Sender;
pub(crate) use spool::Spool;
pub(crate) use worker::{gather_window, Command, Gate, Worker};
