//! The delivery thread: takes records off the bounded queue and hands them to the
//! producer client, which batches, compresses, retries and reports each record's fate
//! through [`DeliveryContext`](super::context::DeliveryContext).
//!
//! One thread feeds the producer so that records of one key enter it in submission
//! order; with the idempotent producer, that is the order they land in their partition.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{Producer, PurgeConfig};
use tokio::sync::oneshot;

use super::breaker::Breaker;
use super::context::{is_retryable, reason_label, Sent};
use super::record::{Destination, Record};
use super::sender::{Outgoing, Sender};
use crate::error::Error;
use crate::telemetry::Telemetry;

/// How long an ingestor dropped without [`shutdown`](crate::Ingestor::shutdown) keeps
/// trying to deliver what it holds.
pub(crate) const DROP_FLUSH_TIMEOUT: Duration = Duration::from_secs(10);

/// What the delivery thread is asked to do, in queue order.
pub(crate) enum Command {
    Send(Record),
    SendMany(Vec<Record>),
    /// Deliver everything queued before this command.
    Flush {
        timeout: Duration,
        done: oneshot::Sender<bool>,
    },
    /// Deliver what can be delivered within the timeout, then stop.
    Shutdown {
        timeout: Duration,
        done: oneshot::Sender<ShutdownReport>,
    },
}

/// What [`Ingestor::shutdown`](crate::Ingestor::shutdown) achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Records Kafka had not acknowledged by the deadline; the receipts of those events
    /// resolved with an error. With a disk buffer these are the records kept in it.
    pub undelivered: usize,
    /// Of those, the records kept in the disk buffer: the next start delivers them
    /// (always zero without a disk buffer).
    pub kept_in_buffer: usize,
    /// How long the shutdown took.
    pub elapsed: Duration,
}

/// Admission control for the in-memory queue: bounds events and bytes together, and
/// reserves a whole batch at once so a batch is queued entirely or not at all.
pub(crate) struct QueueBudget {
    events: AtomicUsize,
    bytes: AtomicUsize,
    max_events: usize,
    max_bytes: usize,
}

impl ShutdownReport {
    /// Records neither delivered nor kept in the disk buffer: lost.
    pub fn lost(&self) -> usize {
        self.undelivered.saturating_sub(self.kept_in_buffer)
    }
}

/// Resolves the receipt of a record that never reached the producer.
pub(crate) fn complete(sent: Sent, reason: String, retryable: bool) {
    if let Some(tracker) = sent.tracker {
        tracker.complete(Some((reason, retryable)));
    }
}

impl QueueBudget {
    pub(crate) fn new(max_events: usize, max_bytes: usize) -> Self {
        QueueBudget {
            events: AtomicUsize::new(0),
            bytes: AtomicUsize::new(0),
            max_events,
            max_bytes,
        }
    }

    pub(crate) fn try_reserve(&self, events: usize, bytes: usize) -> Result<(), Error> {
        let queued_events = self.events.fetch_add(events, Ordering::AcqRel);
        let queued_bytes = self.bytes.fetch_add(bytes, Ordering::AcqRel);
        if queued_events + events > self.max_events || queued_bytes + bytes > self.max_bytes {
            self.release(events, bytes);
            return Err(Error::QueueFull {
                queued_events,
                queued_bytes,
            });
        }
        Ok(())
    }

    /// Events and bytes queued now.
    pub(crate) fn queued(&self) -> (usize, usize) {
        (
            self.events.load(Ordering::Relaxed),
            self.bytes.load(Ordering::Relaxed),
        )
    }

    pub(crate) fn release(&self, events: usize, bytes: usize) {
        self.events.fetch_sub(events, Ordering::AcqRel);
        self.bytes.fetch_sub(bytes, Ordering::AcqRel);
    }

    pub(crate) fn publish(&self, telemetry: &Telemetry) {
        telemetry
            .queue_events
            .set(self.events.load(Ordering::Relaxed) as f64);
        telemetry
            .queue_bytes
            .set(self.bytes.load(Ordering::Relaxed) as f64);
    }
}

/// Closes the queue to new submissions without losing one that is half-way in.
///
/// A submitter marks itself busy, then checks `closed`; shutdown sets `closed`, then
/// waits for busy submitters to finish. With sequentially consistent operations on
/// both sides, every submission either sees `closed` or is waited for, so nothing can
/// slip into the queue after the delivery thread's final drain.
pub(crate) struct Gate {
    closed: AtomicBool,
    busy: AtomicUsize,
}

pub(crate) struct Pass<'a>(&'a Gate);

impl Drop for Pass<'_> {
    fn drop(&mut self) {
        self.0.busy.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Gate {
    pub(crate) fn new() -> Self {
        Gate {
            closed: AtomicBool::new(false),
            busy: AtomicUsize::new(0),
        }
    }

    pub(crate) fn enter(&self) -> Result<Pass<'_>, Error> {
        self.busy.fetch_add(1, Ordering::SeqCst);
        let pass = Pass(self);
        if self.closed.load(Ordering::SeqCst) {
            return Err(Error::ShuttingDown);
        }
        Ok(pass)
    }

    /// Closes the gate; `false` if it was already closed.
    pub(crate) fn close(&self) -> bool {
        let first = !self.closed.swap(true, Ordering::SeqCst);
        while self.busy.load(Ordering::SeqCst) > 0 {
            thread::yield_now();
        }
        first
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }
}

pub(crate) struct Worker {
    pub(crate) sender: Arc<Sender>,
    pub(crate) breaker: Arc<Breaker>,
    /// Set by shutdown before its command is queued, so a thread waiting on a full
    /// producer queue gives up in time instead of holding the shutdown back.
    pub(crate) stop_by: Arc<OnceLock<Instant>>,
    pub(crate) budget: Arc<QueueBudget>,
    /// Dead-letter records have a budget of their own, so a flood of invalid events
    /// can never take queue room from valid ones.
    pub(crate) dead_letter_budget: Arc<QueueBudget>,
    pub(crate) telemetry: Telemetry,
    /// Records failed because the shutdown deadline passed before the producer had
    /// room for them (they never reached it, so its in-flight count misses them).
    pub(crate) expired: Cell<usize>,
}

/// How often an idle delivery thread looks whether the breaker wants a probe.
pub(crate) const IDLE_TICK: Duration = Duration::from_millis(100);

/// Probes the cluster if the breaker is open and a probe is due. The probe (a metadata
/// request, up to `breaker.probe_timeout_ms`) runs on a thread of its own, so the
/// delivery thread stays free to serve flushes and shutdown meanwhile.
pub(crate) fn probe_if_due(sender: &Arc<Sender>, breaker: &Arc<Breaker>) {
    if breaker.until_probe() != Some(Duration::ZERO) || !breaker.start_probe() {
        return;
    }
    let (sender, prober) = (sender.clone(), breaker.clone());
    let spawned = thread::Builder::new()
        .name("ingest-probe".to_owned())
        .spawn(move || {
            let answered = sender
                .producer
                .client()
                .fetch_metadata(None, prober.probe_timeout())
                .is_ok();
            prober.probed(answered);
        });
    if spawned.is_err() {
        // No thread for it now: count it as unanswered and try again after the backoff.
        breaker.probed(false);
    }
}

impl Worker {
    pub(crate) fn run(self, commands: flume::Receiver<Command>) {
        loop {
            let waiting = self.sender.producer.in_flight_count() > 0;
            self.breaker.check_stalled(waiting);
            let command = match commands.recv_timeout(IDLE_TICK) {
                Ok(command) => command,
                Err(flume::RecvTimeoutError::Timeout) => {
                    probe_if_due(&self.sender, &self.breaker);
                    continue;
                }
                Err(flume::RecvTimeoutError::Disconnected) => break,
            };
            self.breaker.sending(waiting);
            match command {
                Command::Send(record) => self.send_all(std::iter::once(record)),
                Command::SendMany(records) => self.send_all(records),
                Command::Flush { timeout, done } => {
                    let _ = done.send(self.sender.producer.flush(timeout).is_ok());
                }
                Command::Shutdown { timeout, done } => {
                    let report = self.finish(&commands, timeout);
                    drop(self);
                    let _ = done.send(report);
                    return;
                }
            }
        }
        // Every handle was dropped without a shutdown: still deliver what we hold.
        let report = self.finish(&commands, DROP_FLUSH_TIMEOUT);
        if report.undelivered > 0 {
            tracing::error!(
                undelivered = report.undelivered,
                "ingestor dropped with undelivered events"
            );
        }
    }

    fn send_all(&self, records: impl IntoIterator<Item = Record>) {
        // [events, dead letters] × [count, bytes], released in one go per command.
        let mut taken = [(0, 0); 2];
        for record in records {
            let slot = usize::from(matches!(record.destination, Destination::DeadLetter { .. }));
            taken[slot].0 += 1;
            taken[slot].1 += record.payload.len();
            self.send(record);
        }
        self.budget.release(taken[0].0, taken[0].1);
        self.dead_letter_budget.release(taken[1].0, taken[1].1);
        self.budget.publish(&self.telemetry);
    }

    fn send(&self, mut record: Record) {
        let Some(tracker) = record.take_tracker() else {
            return;
        };
        let outgoing = Outgoing::of_record(&record);
        let topic = self.sender.topic(&record.destination);
        let mut sent = Box::new(Sent {
            tracker: Some(tracker),
            seq: None,
        });
        loop {
            match self.sender.try_send(&outgoing, sent) {
                Ok(()) => return,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    // The client's own bounded queue is full: wait for deliveries to
                    // drain it. Our queue fills meanwhile, which is the back-pressure
                    // callers see.
                    self.telemetry.producer_queue_full.increment(1);
                    self.breaker.check_stalled(true);
                    if self.stop_by.get().is_some_and(|d| Instant::now() >= *d) {
                        self.expired.set(self.expired.get() + 1);
                        Telemetry::failed(topic, "ShutdownDeadline");
                        complete(
                            *back,
                            "shutdown deadline reached before delivery".to_owned(),
                            true,
                        );
                        return;
                    }
                    thread::sleep(Duration::from_millis(1));
                    sent = back;
                }
                Err((error, back)) => {
                    Telemetry::failed(topic, &reason_label(&error));
                    tracing::warn!(topic, %error, "record refused by the Kafka client");
                    complete(*back, error.to_string(), is_retryable(&error));
                    return;
                }
            }
        }
    }

    /// Sends everything still queued, waits for Kafka until `timeout`, and fails the
    /// receipts of whatever is left so nobody waits forever.
    fn finish(&self, commands: &flume::Receiver<Command>, timeout: Duration) -> ShutdownReport {
        let started = Instant::now();
        let deadline = *self.stop_by.get_or_init(|| started + timeout);
        for command in commands.drain() {
            match command {
                Command::Send(record) => self.send_all(std::iter::once(record)),
                Command::SendMany(records) => self.send_all(records),
                // Waiters of these learn from the dropped sender that the ingestor stopped.
                Command::Flush { .. } | Command::Shutdown { .. } => {}
            }
        }
        let producer = &self.sender.producer;
        let _ = producer.flush(deadline.saturating_duration_since(Instant::now()));
        let in_flight = usize::try_from(producer.in_flight_count()).unwrap_or(0);
        let undelivered = in_flight + self.expired.get();
        if in_flight > 0 {
            tracing::warn!(
                undelivered,
                "shutdown deadline reached; purging undelivered records"
            );
            producer.purge(PurgeConfig::default().queue().inflight());
            // Purged records come back as failed delivery reports; serve them.
            let _ = producer.flush(Duration::from_secs(5));
        }
        ShutdownReport {
            undelivered,
            kept_in_buffer: 0,
            elapsed: started.elapsed(),
        }
    }
}
