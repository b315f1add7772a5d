//! The spool: takes records off the bounded queue and appends them to the disk buffer,
//! everything queued at that moment in one append, so concurrent submissions share one
//! `fdatasync` (group commit). An append that returns resolves `Ack::Persisted`.
//!
//! When the buffer is full, `when_full` decides: `block` holds the records (the queue
//! fills and callers get [`Error::QueueFull`](crate::Error::QueueFull)) until space
//! frees up or `full_timeout` passes; `drop_newest` fails them at once and counts them.
//! Dead letters are not buffered: they go straight to the producer, best effort.

use std::ops::Range;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::budget::QueueBudget;
use super::context::Sent;
use super::disk::{DiskState, FlushRequest, ShutdownRequest};
use super::receipt::Tracker;
use super::record::{Destination, Record};
use super::sender::{Outgoing, Sender};
use super::shutdown::ShutdownReport;
use super::stored;
use super::worker::{publish_queue, Command, DROP_FLUSH_TIMEOUT};
use crate::buffer::BufferError;
use crate::config::WhenFull;
use crate::telemetry::Telemetry;

/// Most records per append.
const CHUNK_RECORDS: usize = 10_000;
/// How long a blocked spool sleeps before trying an append again.
const FULL_RETRY: Duration = Duration::from_millis(10);

pub(crate) struct Spool {
    pub(crate) disk: Arc<DiskState>,
    pub(crate) sender: Arc<Sender>,
    pub(crate) budget: Arc<QueueBudget>,
    pub(crate) dead_letter_budget: Arc<QueueBudget>,
    pub(crate) telemetry: Telemetry,
    pub(crate) stop_by: Arc<OnceLock<Instant>>,
    pending: Vec<Record>,
    pending_bytes: usize,
    chunk_bytes: usize,
    scratch: Vec<u8>,
    ranges: Vec<Range<usize>>,
}

impl Spool {
    pub(crate) fn new(
        disk: Arc<DiskState>,
        sender: Arc<Sender>,
        budget: Arc<QueueBudget>,
        dead_letter_budget: Arc<QueueBudget>,
        telemetry: Telemetry,
        stop_by: Arc<OnceLock<Instant>>,
    ) -> Self {
        // A chunk must fit the buffer several times over, or one chunk could wait for
        // space that only its own delivery would free.
        let chunk_bytes = usize::try_from(disk.settings.max_bytes / 4)
            .unwrap_or(usize::MAX)
            .min(4 << 20);
        Spool {
            disk,
            sender,
            budget,
            dead_letter_budget,
            telemetry,
            stop_by,
            pending: Vec::new(),
            pending_bytes: 0,
            chunk_bytes,
            scratch: Vec::new(),
            ranges: Vec::new(),
        }
    }

    pub(crate) fn run(mut self, commands: flume::Receiver<Command>) {
        loop {
            let Ok(first) = commands.recv() else {
                // Every handle was dropped without a shutdown: deliver what we can.
                self.persist();
                self.request_shutdown(Instant::now() + DROP_FLUSH_TIMEOUT, None);
                return;
            };
            let mut next = Some(first);
            while let Some(command) = next.take().or_else(|| commands.try_recv().ok()) {
                match command {
                    Command::Send(record) => self.take(record),
                    Command::SendMany(records) => records.into_iter().for_each(|r| self.take(r)),
                    Command::Flush { timeout, done } => {
                        self.persist();
                        let request = FlushRequest {
                            target: self.disk.appended_end(),
                            deadline: Instant::now() + timeout,
                            done,
                        };
                        let mut requests = self.disk.requests();
                        // Without the forwarder the flush cannot finish: it fails now.
                        if !requests.forwarder_gone {
                            requests.flushes.push(request);
                        }
                        drop(requests);
                        self.disk.wake();
                    }
                    Command::Shutdown { timeout, done } => {
                        // Everything queued before the shutdown goes to disk first.
                        for command in commands.drain() {
                            match command {
                                Command::Send(record) => self.take(record),
                                Command::SendMany(records) => {
                                    records.into_iter().for_each(|r| self.take(r));
                                }
                                Command::Flush { .. } | Command::Shutdown { .. } => {}
                            }
                        }
                        self.persist();
                        let deadline = *self.stop_by.get_or_init(|| Instant::now() + timeout);
                        self.request_shutdown(deadline, Some(done));
                        return;
                    }
                }
            }
            self.persist();
        }
    }

    fn request_shutdown(&self, deadline: Instant, done: Option<oneshot::Sender<ShutdownReport>>) {
        if let Err(error) = self.disk.engine.sync() {
            tracing::error!(%error, "disk buffer sync at shutdown failed");
        }
        let request = ShutdownRequest {
            started: Instant::now(),
            deadline,
            done,
        };
        let mut requests = self.disk.requests();
        if requests.forwarder_gone {
            drop(requests);
            self.disk.shutdown_without_forwarder(request);
            return;
        }
        requests.shutdown = Some(request);
        drop(requests);
        self.disk.wake();
    }

    fn take(&mut self, mut record: Record) {
        if let Destination::DeadLetter { .. } = record.destination {
            self.send_dead_letter(&mut record);
            return;
        }
        self.pending_bytes += record.payload.len();
        self.pending.push(record);
        if self.pending.len() >= CHUNK_RECORDS || self.pending_bytes >= self.chunk_bytes {
            self.persist();
        }
    }

    /// Dead letters skip the buffer: one attempt to hand them to the producer.
    fn send_dead_letter(&self, record: &mut Record) {
        let len = record.payload.len();
        if let Some(tracker) = record.take_tracker() {
            let sent = Sent::waited_for(tracker);
            if let Err((error, back)) = self.sender.try_send(&Outgoing::of_record(record), sent) {
                self.telemetry.dead_letter_dropped("producer_queue_full", 1);
                super::worker::complete(*back, error.to_string(), true);
            }
        }
        self.dead_letter_budget.release(1, len);
    }

    /// Appends the pending records, waiting for space or dropping them as configured.
    fn persist(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        self.scratch.clear();
        self.ranges.clear();
        for record in &self.pending {
            let start = self.scratch.len();
            stored::encode(record, &mut self.scratch);
            self.ranges.push(start..self.scratch.len());
        }
        let outcome = self.append();
        let mut records = std::mem::take(&mut self.pending);
        let (events, bytes) = (records.len(), self.pending_bytes);
        self.pending_bytes = 0;
        match outcome {
            Ok(seqs) => {
                let mut trackers = Vec::with_capacity(records.len());
                for (seq, record) in seqs.clone().zip(records.iter_mut()) {
                    if let Some(tracker) = record.take_tracker() {
                        trackers.push((seq, tracker));
                    }
                }
                mark_persisted(&trackers);
                self.disk.appended(trackers, seqs.end);
            }
            Err((reason, message)) => {
                self.disk.telemetry.dropped(reason, events as u64);
                for record in &mut records {
                    record.abandon(message.clone());
                }
            }
        }
        self.budget.release(events, bytes);
        publish_queue(&self.budget, &self.telemetry);
        self.pending = records;
        self.pending.clear();
    }

    /// The append, retried while the buffer is full (`block`) or failing, up to
    /// `full_timeout` or the shutdown deadline. On failure: the drop reason (a metric
    /// label) and the receipts' message.
    fn append(&self) -> Result<Range<u64>, (&'static str, String)> {
        let payloads: Vec<&[u8]> = self
            .ranges
            .iter()
            .map(|r| &self.scratch[r.clone()])
            .collect();
        let settings = &self.disk.settings;
        let started = Instant::now();
        let mut logged = false;
        loop {
            let error = match self.disk.engine.append(&payloads) {
                Ok(seqs) => return Ok(seqs),
                Err(error) => error,
            };
            let full = error.is_full();
            if full && settings.when_full == WhenFull::DropNewest {
                tracing::debug!(%error, events = payloads.len(), "disk buffer full: events dropped");
                return Err((
                    "full",
                    format!("dropped: the disk buffer is full ({error})"),
                ));
            }
            if !logged {
                if let Some(suppressed) = self.disk.record_log.allow() {
                    log_append_error(&error, full, suppressed);
                }
                logged = true;
            }
            let now = Instant::now();
            let stopping = self.stop_by.get().is_some_and(|d| now >= *d);
            if stopping || now.duration_since(started) >= settings.full_timeout {
                let reason = if full {
                    "full_timeout"
                } else {
                    "storage_error"
                };
                if let Some(suppressed) = self.disk.record_log.allow() {
                    tracing::error!(%error, events = payloads.len(), waited = ?now.duration_since(started), suppressed, "events dropped: the disk buffer did not take them in time");
                }
                return Err((
                    reason,
                    format!(
                        "not persisted within {:?}: {error}",
                        now.duration_since(started)
                    ),
                ));
            }
            std::thread::sleep(FULL_RETRY);
        }
    }
}

fn log_append_error(error: &BufferError, full: bool, suppressed: u64) {
    if full {
        tracing::warn!(%error, suppressed, "disk buffer full: holding events until deliveries free space (callers see back-pressure)");
    } else {
        tracing::error!(%error, suppressed, "disk buffer append failed; retrying");
    }
}

/// Resolves `Ack::Persisted` for appended records, once per run of records of one
/// submission.
fn mark_persisted(trackers: &[(u64, Arc<Tracker>)]) {
    let mut run: Option<(&Arc<Tracker>, usize)> = None;
    for (_, tracker) in trackers {
        match &mut run {
            Some((current, n)) if Arc::ptr_eq(current, tracker) => *n += 1,
            _ => {
                if let Some((current, n)) = run {
                    current.persisted(n);
                }
                run = Some((tracker, 1));
            }
        }
    }
    if let Some((current, n)) = run {
        current.persisted(n);
    }
}
