//! The delivery thread: takes records off the bounded queue and hands them to the
//! producer client, which batches, compresses, retries and reports each record's fate
//! through [`DeliveryContext`](super::context::DeliveryContext).
//!
//! One thread feeds the producer so that records of one key enter it in submission
//! order; with the idempotent producer, that is the order they land in their partition.
//!
//! The thread takes what is queued in groups: it drains the queue (up to
//! [`MAX_GROUP`] commands), hands the records to the producer, releases their queue
//! budget once per group, and then lets the next group gather for a short window (a
//! tenth of `kafka.linger_ms`, see [`Doorbell`]) before it looks again. Submitters wake
//! it only when it is idle or when a group has grown large, so under load it is woken
//! once per group, not once per event. The producer holds records for `linger_ms`
//! anyway to fill its batches, so the window adds little to delivery latency; with
//! `linger_ms = 0` there is no window.

use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{Producer, PurgeConfig};
use tokio::sync::oneshot;

use super::breaker::Breaker;
use super::budget::QueueBudget;
use super::context::{is_retryable, reason_label, Sent};
use super::doorbell::{Doorbell, GATHERING, IDLE};
use super::layout::Layout;
use super::record::{Destination, Record};
use super::sender::{Outgoing, Sender};
use super::shutdown::ShutdownReport;
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

/// Sets the queue gauges from `budget`.
pub(crate) fn publish_queue(budget: &QueueBudget, telemetry: &Telemetry) {
    let (events, bytes) = budget.queued();
    telemetry.queue_events.set(events as f64);
    telemetry.queue_bytes.set(bytes as f64);
}

/// Resolves the receipt of a record that never reached the producer.
pub(crate) fn complete(sent: Sent, reason: String, retryable: bool) {
    if let Some(tracker) = sent.tracker {
        tracker.complete(Some((reason, retryable)));
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

/// Most commands the delivery thread takes off the queue in one group.
pub(crate) const MAX_GROUP: usize = 4096;

/// How long the delivery thread lets a group gather: a tenth of the producer's
/// `linger_ms`, at most 1 ms (zero when `linger_ms` is zero).
pub(crate) fn gather_window(linger_ms: u64) -> Duration {
    Duration::from_micros(linger_ms.saturating_mul(100)).min(Duration::from_millis(1))
}

/// Records taken from the queue and not yet released from its budgets:
/// [events, dead letters] × [count, bytes].
#[derive(Default)]
struct Taken([(usize, usize); 2]);

impl Taken {
    fn add(&mut self, record: &Record) {
        let slot = usize::from(matches!(record.destination, Destination::DeadLetter { .. }));
        self.0[slot].0 += 1;
        self.0[slot].1 += record.payload.len();
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
    pub(crate) doorbell: Arc<Doorbell>,
    /// See [`gather_window`].
    pub(crate) gather: Duration,
    /// The order records of a group are handed to the producer in.
    pub(crate) layout: Arc<Layout>,
    /// Flushes waiting for the producer to have nothing in flight. The thread serves
    /// them between groups instead of blocking in the producer's own flush, so a long
    /// flush holds back neither new records nor a shutdown.
    pub(crate) flushes: RefCell<Vec<PendingFlush>>,
}

/// A flush the delivery thread answers once nothing is in flight, or at its deadline.
pub(crate) struct PendingFlush {
    deadline: Instant,
    done: oneshot::Sender<bool>,
}

/// How often the delivery thread looks at the producer while a flush waits.
const FLUSH_TICK: Duration = Duration::from_millis(2);

/// Most records a group holds before they are handed to the producer.
pub(crate) const MAX_HELD: usize = 8192;

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
        // Whether the last look found work: then the next group may gather first.
        let mut busy = false;
        loop {
            self.layout.refresh_if_due(&self.sender);
            let waiting = self.sender.producer.in_flight_count() > 0;
            self.breaker.check_stalled(waiting);
            self.serve_flushes(waiting);
            let first = match commands.try_recv() {
                Ok(command) => command,
                Err(flume::TryRecvError::Empty) => {
                    if !self.flushes.borrow().is_empty() {
                        self.doorbell.park(IDLE, FLUSH_TICK, || commands.is_empty());
                    } else if busy && !self.gather.is_zero() {
                        self.doorbell
                            .park(GATHERING, self.gather, || commands.is_empty());
                    } else {
                        self.doorbell.park(IDLE, IDLE_TICK, || commands.is_empty());
                        probe_if_due(&self.sender, &self.breaker);
                    }
                    busy = false;
                    continue;
                }
                Err(flume::TryRecvError::Disconnected) => break,
            };
            busy = true;
            self.breaker.sending(waiting);
            if let Some((timeout, done)) = self.take_group(first, &commands) {
                let report = self.finish(&commands, timeout);
                drop(self);
                let _ = done.send(report);
                return;
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

    /// Answers the flushes that are done (nothing in flight) or past their deadline.
    fn serve_flushes(&self, in_flight: bool) {
        let mut flushes = self.flushes.borrow_mut();
        if flushes.is_empty() {
            return;
        }
        let now = Instant::now();
        for flush in flushes.extract_if(.., |flush| !in_flight || now >= flush.deadline) {
            let _ = flush.done.send(!in_flight);
        }
    }

    /// Serves `first` and whatever else is queued, up to [`MAX_GROUP`] commands or
    /// [`MAX_HELD`] records, releasing their queue budget once at the end. The records
    /// go to the producer in the order of [`Layout::order`] (each key's in queue order),
    /// all of them before a flush or a shutdown met in the queue. Returns the shutdown
    /// command if it met one (what was queued after it stays queued).
    fn take_group(
        &self,
        first: Command,
        commands: &flume::Receiver<Command>,
    ) -> Option<(Duration, oneshot::Sender<ShutdownReport>)> {
        // Held until the group is handed on and released (declared first, dropped last).
        let _feed = self.sender.feed();
        let mut taken = Taken::default();
        let mut next = Some(first);
        let mut served = 0;
        let mut shutdown = None;
        let mut held = Vec::new();
        while let Some(command) = next.take() {
            match command {
                Command::Send(record) => held.push(record),
                Command::SendMany(records) => held.extend(records),
                Command::Flush { timeout, done } => {
                    self.send_held(&mut held, &mut taken);
                    self.release(&mut taken);
                    let deadline = Instant::now() + timeout;
                    self.flushes
                        .borrow_mut()
                        .push(PendingFlush { deadline, done });
                }
                Command::Shutdown { timeout, done } => {
                    shutdown = Some((timeout, done));
                    break;
                }
            }
            served += 1;
            if served < MAX_GROUP && held.len() < MAX_HELD {
                next = commands.try_recv().ok();
            }
        }
        self.send_held(&mut held, &mut taken);
        self.release(&mut taken);
        shutdown
    }

    /// Hands the records held so far to the producer, in [`Layout::order`].
    fn send_held(&self, held: &mut Vec<Record>, taken: &mut Taken) {
        self.layout.order(held);
        for record in held.drain(..) {
            self.send(record, taken);
        }
    }

    /// Gives the queue budget of the records taken back to submitters.
    fn release(&self, taken: &mut Taken) {
        let [events, dead_letters] = std::mem::take(&mut taken.0);
        if events == (0, 0) && dead_letters == (0, 0) {
            return;
        }
        self.budget.release(events.0, events.1);
        self.dead_letter_budget
            .release(dead_letters.0, dead_letters.1);
        publish_queue(&self.budget, &self.telemetry);
    }

    /// Hands one record to the producer (waiting while its queue is full) and counts
    /// it in `taken`.
    fn send(&self, mut record: Record, taken: &mut Taken) {
        taken.add(&record);
        let Some(tracker) = record.take_tracker() else {
            return;
        };
        let outgoing = Outgoing::of_record(&record);
        let topic = self.sender.topic(&record.destination);
        let mut sent = Sent::waited_for(tracker);
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
                        self.telemetry.failed(topic, "ShutdownDeadline");
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
                    self.telemetry.failed(topic, &reason_label(&error));
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
        let feed = self.sender.feed();
        let mut taken = Taken::default();
        for command in commands.drain() {
            match command {
                Command::Send(record) => self.send(record, &mut taken),
                Command::SendMany(records) => {
                    for record in records {
                        self.send(record, &mut taken);
                    }
                }
                // Waiters of these learn from the dropped sender that the ingestor stopped.
                Command::Flush { .. } | Command::Shutdown { .. } => {}
            }
        }
        self.release(&mut taken);
        drop(feed);
        let producer = &self.sender.producer;
        let _ = producer.flush(deadline.saturating_duration_since(Instant::now()));
        let in_flight = usize::try_from(producer.in_flight_count()).unwrap_or(0);
        // Flushes still waiting end with the shutdown: done if everything got there,
        // else their senders drop and they fail with `ShuttingDown`.
        for flush in self.flushes.take() {
            if in_flight == 0 {
                let _ = flush.done.send(true);
            }
        }
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

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use bytes::Bytes;
    use rdkafka::config::FromClientConfigAndContext;
    use rdkafka::producer::ThreadedProducer;
    use uuid::Uuid;

    use super::*;
    use crate::config::IngestConfig;
    use crate::delivery::doorbell::{RUNNING, WAKE_AT_EVENTS};
    use crate::delivery::{DeliveryContext, Receipt, Tracker};
    use crate::event::EventKind;

    /// Parks a thread on `doorbell` in `state` for up to 5 s; the channel says when it
    /// woke.
    fn parked(doorbell: &Arc<Doorbell>, state: u8) -> mpsc::Receiver<Duration> {
        let (woke, rx) = mpsc::channel();
        let bell = doorbell.clone();
        let (ready, is_ready) = mpsc::channel();
        let thread = thread::spawn(move || {
            ready.send(()).expect("test waits");
            let started = Instant::now();
            bell.park(state, Duration::from_secs(5), || true);
            let _ = woke.send(started.elapsed());
        });
        doorbell.set_thread(thread.thread().clone());
        is_ready.recv().expect("thread started");
        // Let it announce its state and park.
        while doorbell.state() != state {
            thread::yield_now();
        }
        rx
    }

    #[test]
    fn an_idle_thread_is_woken_by_the_first_submission() {
        let doorbell = Arc::new(Doorbell::new());
        let woke = parked(&doorbell, IDLE);
        doorbell.ring(1);
        let waited = woke.recv().expect("woke");
        assert!(waited < Duration::from_secs(4), "woken, not timed out");
        assert_eq!(doorbell.state(), RUNNING);
    }

    #[test]
    fn a_gathering_thread_is_woken_only_by_a_large_group() {
        let doorbell = Arc::new(Doorbell::new());
        let woke = parked(&doorbell, GATHERING);
        doorbell.ring(WAKE_AT_EVENTS - 1);
        assert!(
            woke.recv_timeout(Duration::from_millis(200)).is_err(),
            "a small group keeps gathering"
        );
        doorbell.ring(WAKE_AT_EVENTS);
        assert!(woke.recv().expect("woke") < Duration::from_secs(4));
    }
    #[test]
    fn the_gather_window_is_a_tenth_of_linger_capped() {
        assert_eq!(gather_window(0), Duration::ZERO);
        assert_eq!(gather_window(5), Duration::from_micros(500));
        assert_eq!(gather_window(1_000), Duration::from_millis(1));
    }

    fn offline_worker(budget: Arc<QueueBudget>) -> Worker {
        let mut config = IngestConfig::default();
        // Nothing listens there: records stay in the producer until purged.
        config.kafka.brokers = "127.0.0.1:9".to_owned();
        let settings = config.validate().expect("valid");
        let telemetry = Telemetry::new(&settings.topics, "test".into());
        let breaker = Arc::new(Breaker::new(settings.breaker, &telemetry));
        let producer = ThreadedProducer::from_config_and_context(
            &settings.producer,
            DeliveryContext::new(telemetry.clone(), breaker.clone(), None),
        )
        .expect("producer");
        Worker {
            flushes: Default::default(),
            sender: Arc::new(Sender::new(
                producer,
                settings.topics.clone(),
                settings.dead_letter_topic.clone(),
                settings.custom_topic.clone(),
                telemetry.clone(),
            )),
            breaker,
            stop_by: Arc::new(OnceLock::new()),
            budget,
            dead_letter_budget: Arc::new(QueueBudget::new(10, 1 << 20)),
            telemetry,
            expired: Cell::new(0),
            doorbell: Arc::new(Doorbell::new()),
            gather: gather_window(5),
            layout: Arc::new(Layout::new(None)),
        }
    }

    fn record(tracker: &Arc<Tracker>) -> Record {
        Record::new(
            Destination::Event {
                kind: EventKind::Search,
                event_id: Uuid::new_v4(),
                version: 1,
            },
            Some(Bytes::from_static(b"u")),
            Bytes::from_static(br#"{"user_id":"u","query":"q"}"#),
            0,
            Arc::from("test"),
            tracker.clone(),
        )
    }

    #[test]
    fn a_group_stops_at_shutdown_releases_its_budget_and_every_record_resolves() {
        let budget = Arc::new(QueueBudget::new(100, 1 << 20));
        let worker = offline_worker(budget.clone());
        let (commands, queue) = flume::bounded(16);
        // One share more than queued: dropping the record that measures the payload
        // resolves one.
        let tracker = Tracker::new(5, false);
        let payload = record(&tracker).payload.len();
        budget.try_reserve(4, 4 * payload).expect("room");
        commands
            .send(Command::Send(record(&tracker)))
            .expect("queued");
        commands
            .send(Command::SendMany(vec![record(&tracker), record(&tracker)]))
            .expect("queued");
        let (done, _report) = oneshot::channel();
        commands
            .send(Command::Shutdown {
                timeout: Duration::ZERO,
                done,
            })
            .expect("queued");
        commands
            .send(Command::Send(record(&tracker)))
            .expect("queued");
        let first = queue.try_recv().expect("queued");
        let shutdown = worker.take_group(first, &queue);
        assert!(shutdown.is_some(), "the group ends at the shutdown command");
        assert_eq!(budget.queued(), (1, payload), "three released at once");
        assert_eq!(queue.len(), 1, "what follows the shutdown stays queued");
        let receipt = Receipt::new(tracker, None);
        assert!(!receipt.is_settled());
        let report = worker.finish(&queue, Duration::ZERO);
        assert_eq!(budget.queued(), (0, 0));
        // The client's queue length may also count its own pending events (errors
        // about the refused connection), hence at least.
        assert!(report.undelivered >= 4, "never delivered: nothing listens");
        drop(worker);
        assert!(receipt.is_settled(), "every record resolved");
    }
}
