//! The consume loop: read records, decode, hold them until the next checkpoint, then
//! hand them to the checkpoint stage (`committer`), which aggregates and commits them
//! with their offsets and then writes the live view. Decoding a record is
//! [`crate::decode`], keeping the live view whole after a Redis loss is `live_sync`.
//!
//! ## Checkpoints overlap reading
//!
//! One checkpoint is in flight at a time. While it runs, the loop goes on reading and
//! decoding the next batch, up to `checkpoint.max_pending_events` and
//! `max_pending_bytes`; then it stops reading (librdkafka's own fetch queue is bounded)
//! until the checkpoint ends, and hands the next batch over at once. So at most two
//! batches are held, and a checkpoint always starts from what the previous one
//! committed. The next batch's ranges start where the one in flight ends; should that
//! one fail, the batch being read is dropped with it and every partition is re-read
//! from its committed position. Whatever needs the committed state (loading a
//! partition's position, re-seeking) waits for the checkpoint in flight first.
//!
//! ## Positions come from PostgreSQL
//!
//! The first record read from a partition (after an assignment or a failed checkpoint)
//! makes the loop read that partition's committed position from PostgreSQL and, unless
//! the record is exactly at it, seek there and drop what was read before it. Kafka's own
//! committed offsets are written after each checkpoint only as a hint where to start
//! fetching; they are never trusted. The partition's de-duplication keys are loaded
//! with it ([`crate::dedup`]).
//!
//! ## Rebalances
//!
//! Revoked partitions are forgotten at once, with their records not yet committed: the
//! new owner re-reads them from the committed position. Should this instance still
//! commit a batch holding a partition another instance has committed meanwhile, the
//! offset fence in [`crate::store`] rolls the whole checkpoint back.
//!
//! ## Records that cannot be counted
//!
//! A record that does not decode, or whose content breaks the contract's limits
//! (checked here whoever produced it, with the validator's own rules:
//! [`ingest_core::model::Event::check_content`]), is dead-lettered: collected with the
//! batch and queued in the checkpoint transaction that moves its offset, so it is
//! dead-lettered once whatever happens (see [`crate::dead_letter`]). A record that
//! PostgreSQL still refuses is found and dead-lettered the same way
//! ([`crate::isolate`]).
//!
//! ## Failures
//!
//! A failed checkpoint drops the batch, marks every partition for a re-seek to its
//! committed position, and waits (capped exponential backoff) before the next attempt;
//! a lost PostgreSQL connection is re-opened. Only failures that can pass are retried
//! ([`Error::disposition`]); one that calls for a halt (a schema that drifted, a bug, a
//! refusal no record explains) stops the loop with that error after
//! [`HALT_AFTER_FAILURES`] attempts in a row.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ingest_core::EventKind;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::OwnedMessage;
use rdkafka::producer::FutureProducer;
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use tokio::sync::watch;

use crate::aggregate::{Incoming, TopicPartition};
use crate::config::Settings;
use crate::dead_letter::DeadLetter;
use crate::decode::{Decoder, NoWriter};
use crate::dedup::{self, SeenIds};
use crate::error::{Disposition, Error};
use crate::group_context::GroupContext;
use crate::live::LiveView;
use crate::members::CommittedMembers;
use crate::recommend::active_users::ActiveUsers;
use crate::store::{OffsetRange, Store};
use crate::user_cache::UserStateCache;
use committer::{Batch, Committer};

mod catalog_refresh;
mod committer;
mod live_sync;
mod registry_wait;

/// What the HTTP health endpoints report.
#[derive(Debug, Default)]
pub struct Health {
    started: AtomicBool,
    checkpoint_ok: AtomicBool,
}

impl Health {
    /// Started and the last checkpoint succeeded.
    pub fn is_ready(&self) -> bool {
        self.started.load(Ordering::Relaxed) && self.checkpoint_ok.load(Ordering::Relaxed)
    }
}

/// Where reading a partition stands.
#[derive(Debug, Clone, Copy)]
struct PartitionState {
    /// The offset committed in PostgreSQL (`None`: never), or where the checkpoint in
    /// flight moves it.
    committed: Option<i64>,
    /// Records below this offset are stale (read before a seek) and dropped.
    floor: i64,
}

/// Checkpoints in a row that may fail with an error calling for a halt before the loop
/// stops with it (a transient cause gets this many chances).
pub const HALT_AFTER_FAILURES: u32 = 3;

/// A record held for the next checkpoint: as read (for the dead-letter topic, should
/// PostgreSQL refuse it) and decoded.
struct Held {
    record: OwnedMessage,
    incoming: Incoming,
    /// When the agent took the event (its `received_at` header, else the record's Kafka
    /// timestamp), Unix ms: the start of `processor_commit_latency_seconds`.
    accepted_ms: Option<i64>,
}

/// What a checkpoint gives back: the committer, and the ranges it committed or the
/// error that left the batch uncommitted.
type Outcome = (
    Box<Committer>,
    Result<HashMap<TopicPartition, OffsetRange>, Error>,
);

/// A checkpoint in flight, on a task of its own so that it runs beside the consume loop
/// on another of the runtime's threads.
type InFlight = tokio::task::JoinHandle<Outcome>;

/// The running consumer.
pub struct Pipeline {
    settings: Arc<Settings>,
    decoder: Decoder,
    consumer: StreamConsumer<GroupContext>,
    producer: FutureProducer,
    /// The checkpoint stage when no checkpoint is in flight (then `in_flight` is `None`).
    committer: Option<Box<Committer>>,
    in_flight: Option<InFlight>,
    /// Partitions revoked while a checkpoint was in flight, for the committer to forget.
    revoked_in_flight: Vec<TopicPartition>,
    /// A checkpoint fell due while another was in flight.
    due: bool,
    partitions: HashMap<TopicPartition, PartitionState>,
    stale: HashSet<TopicPartition>,
    /// Partitions paused until the schema registry answers (see [`registry_wait`]).
    registry_waits: HashMap<TopicPartition, registry_wait::Waiting>,
    /// Failed registry lookups in a row, per partition.
    registry_attempts: HashMap<TopicPartition, u32>,
    pending: Vec<Held>,
    /// Records to dead-letter with the next checkpoint.
    letters: Vec<DeadLetter>,
    /// Bytes of the records in `pending` and `letters`.
    pending_bytes: usize,
    /// Records decoded per event kind since the counter was last updated (once per
    /// tick: a registry lookup per record is measurable at these rates).
    decoded: [u64; 4],
    ranges: HashMap<TopicPartition, OffsetRange>,
    health: Arc<Health>,
    failures: u32,
    /// Failed checkpoints in a row whose error calls for a halt.
    halt_failures: u32,
    retry_at: Option<Instant>,
}

/// The Kafka client settings every client of the processor starts from: the operator's
/// `kafka.properties` and the brokers.
pub(crate) fn client_config(settings: &Settings) -> ClientConfig {
    let mut config = ClientConfig::new();
    for (k, v) in &settings.kafka.properties {
        config.set(k, v);
    }
    config.set("bootstrap.servers", &settings.kafka.brokers);
    config
}

impl Pipeline {
    /// Connects to PostgreSQL (applying migrations), Redis and Kafka, and subscribes.
    ///
    /// # Errors
    ///
    /// Any connection or migration error.
    pub async fn start(
        settings: Arc<Settings>,
        live: LiveView,
        health: Arc<Health>,
    ) -> Result<Pipeline, Error> {
        let mut store =
            Store::connect(&settings.postgres_url, settings.postgres_connect_timeout).await?;
        let applied = store.migrate().await?;
        if !applied.is_empty() {
            tracing::info!(?applied, "migrations applied");
        }
        let catalog = store
            .load_catalog(&settings.reporting_currency, settings.max_products)
            .await?;
        tracing::info!(products = catalog.len(), "catalog loaded");
        let catalog = Arc::new(catalog);
        let catalog_updates = catalog_refresh::spawn(
            catalog_refresh::CatalogSource {
                postgres_url: settings.postgres_url.clone(),
                connect_timeout: settings.postgres_connect_timeout,
                reporting_currency: settings.reporting_currency.clone(),
                max_products: settings.max_products,
                interval: settings.catalog_ttl,
            },
            catalog.clone(),
        );
        let user_states = UserStateCache::new(settings.user_state_cache_bytes);
        let mut consumer_config = client_config(&settings);
        if settings.kafka.lag_interval_ms > 0 {
            consumer_config.set(
                "statistics.interval.ms",
                settings.kafka.lag_interval_ms.to_string(),
            );
        }
        let consumer: StreamConsumer<GroupContext> = consumer_config
            .set("group.id", &settings.kafka.group_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("isolation.level", "read_committed")
            .set("partition.assignment.strategy", "cooperative-sticky")
            .set("auto.offset.reset", "earliest")
            .set(
                "session.timeout.ms",
                settings.kafka.session_timeout_ms.to_string(),
            )
            .create_with_context(GroupContext::new("processor", "processor_partition_lag"))?;
        let t = &settings.kafka.topics;
        let topics = [
            t.product_view.as_str(),
            t.cart.as_str(),
            t.purchase.as_str(),
            t.search.as_str(),
        ];
        consumer.subscribe(&topics)?;
        let producer: FutureProducer = client_config(&settings)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set(
                "message.timeout.ms",
                settings.dead_letter_timeout.as_millis().to_string(),
            )
            .create()?;
        let decoder = Decoder::new(
            t,
            settings.experiment_flags.clone(),
            settings.schema_registry.as_ref(),
        )?;
        let mut committer = Box::new(Committer {
            settings: settings.clone(),
            store,
            live,
            catalog,
            catalog_updates,
            seen: SeenIds::default(),
            watermarks: HashMap::new(),
            committed_members: CommittedMembers::default(),
            user_states,
            live_lagging: true,
            dead_letter_waker: None,
            active_users: None,
        });
        committer.resync_live().await;
        let pipeline = Pipeline {
            settings,
            decoder,
            consumer,
            producer,
            committer: Some(committer),
            in_flight: None,
            revoked_in_flight: Vec::new(),
            due: false,
            partitions: HashMap::new(),
            stale: HashSet::new(),
            registry_waits: HashMap::new(),
            registry_attempts: HashMap::new(),
            pending: Vec::new(),
            letters: Vec::new(),
            pending_bytes: 0,
            decoded: [0; 4],
            ranges: HashMap::new(),
            health,
            failures: 0,
            halt_failures: 0,
            retry_at: None,
        };
        pipeline.report_registry_waits();
        pipeline.health.started.store(true, Ordering::Relaxed);
        pipeline.health.checkpoint_ok.store(true, Ordering::Relaxed);
        Ok(pipeline)
    }

    /// Wakes the dead-letter publisher after every checkpoint that queued letters (see
    /// [`crate::dead_letter::Publisher::waker`]).
    pub fn set_dead_letter_waker(&mut self, waker: Arc<tokio::sync::Notify>) {
        if let Some(committer) = &mut self.committer {
            committer.dead_letter_waker = Some(waker);
        }
    }

    /// Notes the users of every committed checkpoint for the recommendations publisher
    /// (see [`crate::recommend::publisher`]).
    pub fn set_active_users(&mut self, active: Arc<ActiveUsers>) {
        if let Some(committer) = &mut self.committer {
            committer.active_users = Some(active);
        }
    }

    /// The pipeline's producer (idempotent, `acks=all`), to share its connections.
    pub fn producer(&self) -> FutureProducer {
        self.producer.clone()
    }

    /// Runs until `shutdown` turns true, then checkpoints what it holds.
    ///
    /// # Errors
    ///
    /// A checkpoint error that calls for a halt ([`Disposition::Halt`]) and persisted
    /// through [`HALT_AFTER_FAILURES`] attempts; the final checkpoint's error. Other
    /// failed checkpoints are retried, not returned.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) -> Result<(), Error> {
        let mut ticker = tokio::time::interval(self.settings.checkpoint_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if *shutdown.borrow() {
                break;
            }
            self.forget_revoked();
            let full = self.is_full();
            tokio::select! {
                biased;
                _ = shutdown.changed() => break,
                outcome = in_flight(&mut self.in_flight), if self.in_flight.is_some() => {
                    self.in_flight = None;
                    self.finish(outcome?)?;
                    if self.due || self.is_full() {
                        self.tick().await?;
                    }
                }
                _ = ticker.tick() => self.tick().await?,
                message = self.consumer.recv(), if !full => {
                    match message {
                        Ok(message) => {
                            let owned = message.detach();
                            self.handle(owned).await?;
                        }
                        Err(e) => {
                            metrics::counter!("processor_kafka_errors_total").increment(1);
                            tracing::warn!(error = %e, "Kafka consumer error");
                        }
                    }
                    if self.is_full() {
                        self.tick().await?;
                    }
                }
            }
        }
        tracing::info!(
            pending = self.pending.len(),
            "shutting down: final checkpoint"
        );
        self.settle().await?;
        self.forget_revoked();
        self.count_decoded();
        let batch = self.take_batch();
        if let Some(committer) = self.committer.take() {
            let (committer, outcome) = committer.run(batch).await;
            self.committer = Some(committer);
            outcome?;
        }
        self.health.started.store(false, Ordering::Relaxed);
        Ok(())
    }

    /// Whether the batch being read is as large as a checkpoint may hold.
    fn is_full(&self) -> bool {
        self.pending.len() + self.letters.len() >= self.settings.max_pending_events
            || self.pending_bytes >= self.settings.max_pending_bytes
    }

    /// Takes the batch read so far; its partitions' next batch starts where it ends.
    fn take_batch(&mut self) -> Batch {
        self.pending_bytes = 0;
        let batch = Batch {
            held: std::mem::take(&mut self.pending),
            letters: std::mem::take(&mut self.letters),
            ranges: std::mem::take(&mut self.ranges),
        };
        for (tp, range) in &batch.ranges {
            if let Some(state) = self.partitions.get_mut(tp) {
                state.committed = Some(range.to);
            }
        }
        batch
    }

    /// Waits for the checkpoint in flight, if any, and takes its outcome in.
    ///
    /// # Errors
    ///
    /// Its failure, when it calls for a halt and persisted (see [`Pipeline::run`]).
    async fn settle(&mut self) -> Result<(), Error> {
        if let Some(mut task) = self.in_flight.take() {
            let outcome = in_flight_outcome(&mut task).await?;
            self.finish(outcome)?;
        }
        Ok(())
    }

    /// Takes in the outcome of a checkpoint and its committer back.
    fn finish(&mut self, (mut committer, outcome): Outcome) -> Result<(), Error> {
        for tp in self.revoked_in_flight.drain(..) {
            committer.forget(&tp);
        }
        self.committer = Some(committer);
        match outcome {
            Ok(ranges) => {
                self.failures = 0;
                self.halt_failures = 0;
                self.health.checkpoint_ok.store(true, Ordering::Relaxed);
                if !ranges.is_empty() {
                    let mut hint = TopicPartitionList::new();
                    for (tp, range) in &ranges {
                        // Only a hint where to start fetching; positions are read from
                        // PostgreSQL.
                        let _ = hint.add_partition_offset(
                            &tp.topic,
                            tp.partition,
                            Offset::Offset(range.to),
                        );
                    }
                    if let Err(e) = self.consumer.commit(&hint, CommitMode::Async) {
                        tracing::debug!(error = %e, "offset hint not committed to Kafka");
                    }
                }
                Ok(())
            }
            Err(e) => self.failed(e),
        }
    }

    /// Periodic work: re-seek stale partitions, then hand the batch read so far to the
    /// committer, or note that it is due when a checkpoint is still in flight.
    ///
    /// # Errors
    ///
    /// A checkpoint failure that calls for a halt and persisted (see [`Pipeline::run`]).
    async fn tick(&mut self) -> Result<(), Error> {
        self.count_decoded();
        if self.in_flight.is_some() {
            self.due = true;
            return Ok(());
        }
        if let Some(at) = self.retry_at {
            if Instant::now() < at {
                return Ok(());
            }
            self.retry_at = None;
        }
        self.due = false;
        if let Some(committer) = &mut self.committer {
            if let Err(e) = committer.ensure_connected().await {
                return self.failed(e);
            }
        }
        self.resume_registry_waits();
        let stale: Vec<TopicPartition> = self.stale.iter().cloned().collect();
        for tp in stale {
            if let Err(e) = self.resolve(&tp, None).await {
                if e.disposition() == Disposition::Halt {
                    tracing::error!(error = %e, topic = %tp.topic, partition = tp.partition,
                        "a partition's committed state cannot be loaded: the processor stops");
                    return Err(e);
                }
                tracing::warn!(error = %e, topic = %tp.topic, partition = tp.partition, "re-seek failed");
            }
        }
        let batch = self.take_batch();
        if let Some(committer) = self.committer.take() {
            self.in_flight = Some(tokio::spawn(committer.run(batch)));
        }
        Ok(())
    }

    /// Adds the records decoded since the last call to `processor_events_total`.
    fn count_decoded(&mut self) {
        for kind in EventKind::ALL {
            let n = std::mem::take(&mut self.decoded[kind.index()]);
            if n > 0 {
                metrics::counter!("processor_events_total", "event_type" => kind.as_str())
                    .increment(n);
            }
        }
    }

    /// Records a failed checkpoint: drops the batch for a re-read after a backoff, or
    /// returns the error when it calls for a halt and persisted.
    fn failed(&mut self, error: Error) -> Result<(), Error> {
        self.failures += 1;
        let delay = self.settings.checkpoint_backoff.jittered(self.failures);
        let disposition = error.disposition();
        let reason = match (&error, disposition) {
            (Error::Fenced { .. }, _) => "fenced",
            (_, Disposition::Halt) => "halt",
            (Error::Postgres(_) | Error::Timeout(_), _) => "postgres",
            _ => "other",
        };
        metrics::counter!("processor_checkpoint_failures_total", "reason" => reason).increment(1);
        self.health.checkpoint_ok.store(false, Ordering::Relaxed);
        // The batch being read started where the failed one was to end.
        self.pending.clear();
        self.letters.clear();
        self.pending_bytes = 0;
        self.ranges.clear();
        let known: Vec<TopicPartition> = self.partitions.drain().map(|(tp, _)| tp).collect();
        self.stale.extend(known);
        if disposition == Disposition::Halt {
            self.halt_failures += 1;
            if self.halt_failures >= HALT_AFTER_FAILURES {
                tracing::error!(error = %error, sqlstate = error.sqlstate().unwrap_or(""),
                    attempts = self.halt_failures,
                    "checkpoint cannot succeed: the processor stops (nothing of the batch was committed)");
                return Err(error);
            }
        } else {
            self.halt_failures = 0;
        }
        tracing::warn!(error = %error, sqlstate = error.sqlstate().unwrap_or(""),
            retry_in_ms = delay.as_millis() as u64, "checkpoint failed; the batch is re-read");
        self.retry_at = Some(Instant::now() + delay);
        Ok(())
    }

    fn forget_revoked(&mut self) {
        let revoked = self.consumer.context().take_revoked();
        if revoked.is_empty() {
            return;
        }
        let gone: HashSet<TopicPartition> = revoked.into_iter().collect();
        for tp in &gone {
            self.partitions.remove(tp);
            match &mut self.committer {
                Some(committer) => committer.forget(tp),
                None => self.revoked_in_flight.push(tp.clone()),
            }
            self.stale.remove(tp);
            self.ranges.remove(tp);
            self.forget_registry_waits(tp);
        }
        self.pending.retain(|h| !gone.contains(&h.incoming.source));
        self.letters
            .retain(|l| !gone.contains(&TopicPartition::new(&l.topic, l.partition)));
    }

    /// Drops what was read from `tp` since its last checkpoint; its position and
    /// de-duplication keys are loaded again before its next record is used.
    fn drop_uncommitted(&mut self, tp: &TopicPartition) {
        self.partitions.remove(tp);
        self.stale.remove(tp);
        self.ranges.remove(tp);
        self.pending.retain(|h| h.incoming.source != *tp);
        self.letters
            .retain(|l| l.partition != tp.partition || l.topic != tp.topic);
    }

    /// Loads a partition's committed position and de-duplication keys, and seeks there
    /// unless `at` (the offset of a record just read) already is it. Returns whether that
    /// record may be used.
    /// Needs the committed state: called with no checkpoint in flight.
    ///
    /// # Errors
    ///
    /// Reading the position or the keys; seeking.
    async fn resolve(&mut self, tp: &TopicPartition, at: Option<i64>) -> Result<bool, Error> {
        let Some(committer) = self.committer.as_mut() else {
            unreachable!("a partition is loaded only with no checkpoint in flight");
        };
        let group = &self.settings.kafka.group_id;
        let position = committer.store.position(group, tp).await?;
        let window = self.settings.dedup_window;
        let ids = match position {
            Some(p) => {
                let started = Instant::now();
                // Rows up to the position read: a later commit (another instance's)
                // belongs to a position this instance does not hold.
                let mut ids = committer
                    .store
                    .load_seen(group, tp, p.next_offset, window.cutoff(p.watermark_ms))
                    .await?;
                let truncated =
                    ids.prune(window.cutoff(p.watermark_ms), window.max_ids_per_partition);
                note_truncated(truncated);
                tracing::debug!(topic = %tp.topic, partition = tp.partition, ids = ids.len(),
                    ms = started.elapsed().as_millis() as u64, "de-duplication keys loaded");
                ids
            }
            None => dedup::PartitionIds::default(),
        };
        committer.seen.load(tp.clone(), ids);
        committer
            .watermarks
            .insert(tp.clone(), position.map_or(i64::MIN, |p| p.watermark_ms));
        let (target, offset) = match position {
            Some(p) => (p.next_offset, Offset::Offset(p.next_offset)),
            None => (i64::MIN, Offset::Beginning),
        };
        let exact = match (position, at) {
            (Some(p), Some(at)) => at == p.next_offset,
            (None, Some(at)) => at == 0,
            _ => false,
        };
        if !exact {
            self.consumer
                .seek(&tp.topic, tp.partition, offset, Duration::from_secs(10))?;
        }
        self.stale.remove(tp);
        self.partitions.insert(
            tp.clone(),
            PartitionState {
                committed: position.map(|p| p.next_offset),
                floor: target,
            },
        );
        Ok(exact)
    }

    /// Decodes a record into the batch being read, or into its dead letters.
    ///
    /// # Errors
    ///
    /// The failure of the checkpoint in flight, waited for before a partition's
    /// committed state is loaded, when it calls for a halt and persisted.
    async fn handle(&mut self, message: OwnedMessage) -> Result<(), Error> {
        let tp = TopicPartition::new(message.topic(), message.partition());
        if self.is_waiting_for_registry(&tp) {
            // Fetched before the pause: read again once the partition resumes.
            return Ok(());
        }
        let offset = message.offset();
        if !self.partitions.contains_key(&tp) {
            self.settle().await?;
        }
        match self.partitions.get(&tp) {
            None => match self.resolve(&tp, Some(offset)).await {
                Ok(true) => {}
                Ok(false) => return Ok(()),
                Err(e) => {
                    // Logged once per partition, not per record read meanwhile.
                    if self.stale.insert(tp) {
                        tracing::warn!(error = %e, "cannot read the committed position; retrying");
                    }
                    return Ok(());
                }
            },
            Some(state) if offset < state.floor => return Ok(()),
            Some(_) => {}
        }
        let committed = self.partitions.get(&tp).and_then(|s| s.committed);
        if let Some(state) = self.partitions.get_mut(&tp) {
            state.floor = offset + 1;
        }
        let writer = match self.decoder.avro_writer(&message).await {
            Ok(writer) => {
                if writer.is_some() {
                    self.registry_answered(&tp);
                }
                Ok(writer)
            }
            Err(NoWriter::Letter(code, why)) => Err((code, why)),
            Err(NoWriter::Unreachable(error)) => {
                self.wait_for_registry(tp, &error);
                return Ok(());
            }
        };
        self.ranges
            .entry(tp)
            .or_insert(OffsetRange {
                from: committed,
                to: offset + 1,
            })
            .to = offset + 1;
        let decoded = writer.and_then(|writer| self.decoder.decode(&message, writer.as_deref()));
        match decoded {
            Ok(incoming) => {
                self.decoded[incoming.event.kind().index()] += 1;
                self.pending_bytes += message.payload().map_or(0, <[u8]>::len);
                self.pending.push(Held {
                    accepted_ms: accepted_at_ms(&message),
                    record: message,
                    incoming,
                });
            }
            Err((code, why)) => {
                let letter = DeadLetter::of(&message, code, why);
                self.pending_bytes += letter.size();
                self.letters.push(letter);
            }
        }
        Ok(())
    }
}

/// Awaits the checkpoint in flight (`select!` polls it only when there is one).
async fn in_flight(slot: &mut Option<InFlight>) -> Result<Outcome, Error> {
    match slot {
        Some(task) => in_flight_outcome(task).await,
        None => std::future::pending().await,
    }
}

/// The outcome of a checkpoint task; [`Error::Crashed`] if it panicked (a bug: the
/// committer's state went with it).
async fn in_flight_outcome(task: &mut InFlight) -> Result<Outcome, Error> {
    task.await
        .map_err(|e| Error::Crashed(format!("the checkpoint stage stopped: {e}")))
}

/// When the agent took a record's event: its `received_at` header, else the record's
/// Kafka timestamp (a foreign producer's).
fn accepted_at_ms(message: &OwnedMessage) -> Option<i64> {
    use rdkafka::message::Headers;
    message
        .headers()
        .and_then(|headers| {
            headers
                .iter()
                .find(|h| h.key == "received_at")
                .and_then(|h| std::str::from_utf8(h.value?).ok())
                .and_then(crate::decode::parse_rfc3339_ms)
        })
        .or_else(|| message.timestamp().to_millis())
}

/// Counts the de-duplication keys forgotten for the cap before their window ended.
/// Logged at most once a minute; the counter has every one.
pub(super) fn note_truncated(ids: usize) {
    static LAST_LOGGED_MS: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);
    if ids == 0 {
        return;
    }
    metrics::counter!("processor_dedup_window_truncated_total").increment(ids as u64);
    let now = now_ms();
    let last = LAST_LOGGED_MS.load(Ordering::Relaxed);
    if now - last >= 60_000
        && LAST_LOGGED_MS
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        tracing::warn!(
            ids,
            "dedup.max_ids_per_partition reached: the oldest keys were forgotten before \
             dedup.window_minutes ended (resends of them are counted again)"
        );
    }
}

/// Unix milliseconds now.
fn now_ms() -> i64 {
    ingest_common::clock::unix_ms()
}
