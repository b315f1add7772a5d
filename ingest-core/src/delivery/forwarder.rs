//! The forwarder: reads the disk buffer in sequence order and feeds the producer.
//!
//! One thread, one cursor. Records before the cursor have been handed to the producer;
//! a record leaves the buffer when its delivery report says Kafka has it. Three things
//! move the cursor other than forwarding:
//!
//! - **Start:** it begins at the oldest unacknowledged record, so what an earlier run
//!   left behind is sent before anything new (replay, in order).
//! - **Rewind:** a retryable failure leaves the record in the buffer. The forwarder then
//!   purges what the producer still holds (so no later record of the same partition
//!   overtakes the failed one), waits until every outstanding report is in, and moves
//!   the cursor back to the oldest unacknowledged record.
//! - **Breaker open:** it stops forwarding (events keep arriving on disk) and probes the
//!   cluster with backoff; a probe that is answered resumes forwarding at the cursor.
//!
//! At shutdown it delivers what it can by the deadline (nothing, at once, when the
//! breaker is open: the records are safe on disk), purges the rest, fails the waiting
//! receipts with "kept in the disk buffer", and syncs the buffer.

use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{Producer, PurgeConfig};

use super::breaker::{Breaker, BreakerState};
use super::context::{is_retryable, Sent};
use super::disk::{DiskState, KEPT};
use super::sender::{Outgoing, Sender};
use super::shutdown::ShutdownReport;
use super::stored;
use super::worker::{probe_if_due, IDLE_TICK};
use crate::telemetry::Telemetry;

/// Most records read from the buffer at a time.
const READ_RECORDS: usize = 1024;
/// Most payload bytes read from the buffer at a time.
const READ_BYTES: usize = 4 << 20;
/// How often the buffer gauges are refreshed.
const STATS_EVERY: Duration = Duration::from_secs(1);
/// Longest wait for purged records' reports during a rewind.
const REWIND_DRAIN: Duration = Duration::from_secs(10);

pub(crate) struct Forwarder {
    pub(crate) disk: Arc<DiskState>,
    pub(crate) sender: Arc<Sender>,
    pub(crate) breaker: Arc<Breaker>,
    pub(crate) telemetry: Telemetry,
    cursor: u64,
    /// Records below it were in the buffer when it was opened.
    replay_end: u64,
    /// One past the highest record forwarded so far (replays are counted once).
    forwarded_end: u64,
    stats_at: Instant,
}

/// What stopped a run of forwarding early.
enum Stop {
    /// The producer is full and something else needs attention.
    Interrupted,
    /// A storage or client error; try again after a pause.
    Failed,
}

impl Forwarder {
    pub(crate) fn new(
        disk: Arc<DiskState>,
        sender: Arc<Sender>,
        breaker: Arc<Breaker>,
        telemetry: Telemetry,
    ) -> Self {
        let stats = disk.engine.stats();
        let cursor = stats.oldest_unacked_seq.unwrap_or(stats.next_seq);
        if stats.entries > 0 {
            tracing::info!(
                entries = stats.entries,
                from_seq = cursor,
                "replaying the disk buffer before new events"
            );
        }
        Forwarder {
            disk,
            sender,
            breaker,
            telemetry,
            cursor,
            replay_end: stats.next_seq,
            forwarded_end: cursor,
            stats_at: Instant::now() - STATS_EVERY,
        }
    }

    pub(crate) fn run(mut self) {
        let _notice = DeathNotice(self.disk.clone());
        loop {
            #[cfg(test)]
            if self
                .disk
                .fail_forwarder
                .load(std::sync::atomic::Ordering::SeqCst)
            {
                panic!("injected forwarder failure");
            }
            self.publish_stats();
            self.serve_flushes();
            self.breaker
                .check_stalled(self.sender.producer.in_flight_count() > 0);
            if let Some(deadline) = self.shutdown_deadline() {
                if Instant::now() >= deadline || self.caught_up() || self.breaker_open() {
                    self.finish();
                    return;
                }
            }
            if self.disk.take_rewind() {
                self.rewind();
                continue;
            }
            if let Some(wait) = self.breaker.until_probe() {
                if wait.is_zero() {
                    probe_if_due(&self.sender, &self.breaker);
                } else {
                    thread::park_timeout(wait.min(IDLE_TICK));
                }
                continue;
            }
            let end = self.disk.appended_end();
            if self.cursor >= end {
                thread::park_timeout(IDLE_TICK);
                continue;
            }
            if let Err(Stop::Failed) = self.forward(end) {
                thread::sleep(IDLE_TICK);
            }
        }
    }

    fn breaker_open(&self) -> bool {
        self.breaker.state() == BreakerState::Open
    }

    fn shutdown_deadline(&self) -> Option<Instant> {
        self.disk.requests().shutdown.as_ref().map(|s| s.deadline)
    }

    /// Everything persisted has been forwarded and reported.
    fn caught_up(&self) -> bool {
        self.cursor >= self.disk.appended_end()
            && !self.disk.rewind_pending()
            && self.sender.producer.in_flight_count() == 0
    }

    /// Forwards records from the cursor up to (not including) `end`.
    fn forward(&mut self, end: u64) -> Result<(), Stop> {
        let records = match self.disk.engine.read(self.cursor, READ_RECORDS, READ_BYTES) {
            Ok(records) => records,
            Err(error) => {
                if let Some(suppressed) = self.disk.record_log.allow() {
                    tracing::error!(%error, seq = self.cursor, suppressed, "reading the disk buffer failed; retrying");
                }
                return Err(Stop::Failed);
            }
        };
        if records.first().is_none_or(|(seq, _)| *seq >= end) {
            // Everything up to `end` was acknowledged meanwhile.
            self.cursor = end;
            return Ok(());
        }
        self.breaker
            .sending(self.sender.producer.in_flight_count() > 0);
        for (seq, bytes) in records {
            if seq >= end {
                break;
            }
            let event = match stored::decode(&bytes) {
                Ok(event) => event,
                Err(error) => {
                    if let Some(suppressed) = self.disk.record_log.allow() {
                        tracing::error!(seq, %error, suppressed, "undecodable record in the disk buffer; dropped");
                    }
                    self.disk.telemetry.dropped("undecodable", 1);
                    if let Some(tracker) = self.disk.take_tracker(seq) {
                        tracker
                            .complete(Some((format!("stored record unreadable: {error}"), false)));
                    }
                    self.disk.acked(seq);
                    self.cursor = seq + 1;
                    continue;
                }
            };
            let destination = event.destination();
            let outgoing = Outgoing::of_stored(&event, &destination);
            let tracker = self.disk.take_tracker(seq);
            // Records accepted by this run have their latency measured; replays do not.
            let accepted_here = tracker.is_none() && seq >= self.replay_end;
            let mut sent = Box::new(Sent {
                tracker,
                seq: Some(seq),
                received_at_ms: accepted_here.then_some(event.received_at_ms),
            });
            loop {
                match self.sender.try_send(&outgoing, sent) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        self.telemetry.producer_queue_full.increment(1);
                        self.breaker.check_stalled(true);
                        if self.disk.rewind_pending()
                            || self.breaker_open()
                            || self
                                .shutdown_deadline()
                                .is_some_and(|d| Instant::now() >= d)
                        {
                            self.put_back(seq, *back);
                            return Err(Stop::Interrupted);
                        }
                        thread::sleep(Duration::from_millis(1));
                        sent = back;
                    }
                    Err((error, back)) if is_retryable(&error) => {
                        if let Some(suppressed) = self.disk.record_log.allow() {
                            tracing::warn!(seq, %error, suppressed, "the Kafka client refused a buffered record; retrying");
                        }
                        self.put_back(seq, *back);
                        return Err(Stop::Failed);
                    }
                    Err((error, back)) => {
                        let topic = self.sender.topic(&destination);
                        if let Some(suppressed) = self.disk.record_log.allow() {
                            tracing::error!(seq, topic, %error, suppressed, "the Kafka client refused a buffered record for good; dropped from the disk buffer");
                        }
                        self.telemetry.failed(topic, "refused");
                        self.disk.telemetry.dropped("rejected_by_kafka", 1);
                        self.disk.acked(seq);
                        super::worker::complete(*back, error.to_string(), false);
                        break;
                    }
                }
            }
            if seq < self.replay_end && seq >= self.forwarded_end {
                self.telemetry_replayed();
            }
            self.cursor = seq + 1;
            self.forwarded_end = self.forwarded_end.max(self.cursor);
        }
        Ok(())
    }

    fn telemetry_replayed(&self) {
        self.disk.telemetry.replayed.increment(1);
    }

    /// A record that did not reach the producer keeps its receipt for the next try.
    fn put_back(&self, seq: u64, sent: Sent) {
        if let Some(tracker) = sent.tracker {
            self.disk.restore_tracker(seq, tracker);
        }
    }

    /// Moves the cursor back to the oldest unacknowledged record, once nothing the
    /// producer holds can overtake the records sent again.
    fn rewind(&mut self) {
        let producer = &self.sender.producer;
        producer.purge(PurgeConfig::default().queue().inflight());
        let deadline = Instant::now() + REWIND_DRAIN;
        while producer.in_flight_count() > 0 && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(5));
        }
        // The purged records' reports asked for this rewind again; it is this one.
        self.disk.take_rewind();
        let stats = self.disk.engine.stats();
        let oldest = stats.oldest_unacked_seq.unwrap_or(stats.next_seq);
        if oldest < self.cursor {
            tracing::info!(
                from_seq = oldest,
                to_seq = self.cursor,
                "delivery failed: sending the unacknowledged records again, in order"
            );
            self.cursor = oldest;
        }
    }

    fn serve_flushes(&self) {
        let mut requests = self.disk.requests();
        if requests.flushes.is_empty() {
            return;
        }
        let stats = self.disk.engine.stats();
        let now = Instant::now();
        let mut i = 0;
        while i < requests.flushes.len() {
            let request = &requests.flushes[i];
            let delivered = stats
                .oldest_unacked_seq
                .is_none_or(|oldest| oldest >= request.target);
            if delivered || now >= request.deadline {
                let request = requests.flushes.swap_remove(i);
                let _ = request.done.send(delivered);
            } else {
                i += 1;
            }
        }
    }

    fn publish_stats(&mut self) {
        if self.stats_at.elapsed() < STATS_EVERY {
            return;
        }
        self.stats_at = Instant::now();
        let stats = self.disk.engine.stats();
        let telemetry = &self.disk.telemetry;
        telemetry.bytes.set(stats.bytes as f64);
        telemetry.entries.set(stats.entries as f64);
        let age = stats
            .oldest_unacked_seq
            .and_then(|seq| self.disk.engine.read(seq, 1, 0).ok())
            .and_then(|records| records.first().and_then(|(_, b)| stored::received_at_ms(b)))
            .map_or(0.0, |at| {
                (ingest_common::clock::unix_ms() - at).max(0) as f64 / 1000.0
            });
        telemetry.oldest_age.set(age);
        self.disk.forget_unwatched();
    }

    fn finish(self) {
        let Some(request) = self.disk.requests().shutdown.take() else {
            return;
        };
        let producer = &self.sender.producer;
        if !self.breaker_open() {
            let _ = producer.flush(request.deadline.saturating_duration_since(Instant::now()));
        }
        if producer.in_flight_count() > 0 {
            producer.purge(PurgeConfig::default().queue().inflight());
            // Purged records come back as failed reports and keep their place in the
            // buffer; serve the reports.
            let _ = producer.flush(Duration::from_secs(5));
        }
        let failed = self.disk.fail_waiting(KEPT);
        if let Err(error) = self.disk.engine.sync() {
            tracing::error!(%error, "disk buffer sync at shutdown failed");
        }
        let kept = usize::try_from(self.disk.engine.stats().entries).unwrap_or(usize::MAX);
        if kept > 0 {
            tracing::info!(
                kept,
                receipts_failed = failed,
                "undelivered events kept in the disk buffer; the next start delivers them"
            );
        }
        self.publish_final_stats();
        let report = ShutdownReport {
            undelivered: kept,
            kept_in_buffer: kept,
            elapsed: request.started.elapsed(),
        };
        if let Some(done) = request.done {
            let _ = done.send(report);
        }
    }

    fn publish_final_stats(mut self) {
        self.stats_at = Instant::now() - STATS_EVERY;
        self.publish_stats();
    }
}

/// Answers the forwarder's pending and future requests if its thread dies by a panic.
struct DeathNotice(Arc<DiskState>);

impl Drop for DeathNotice {
    fn drop(&mut self) {
        if thread::panicking() {
            self.0.forwarder_died();
        }
    }
}
