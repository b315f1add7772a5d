//! The consume loop: read records, hold them as read until the next checkpoint, then
//! hand them to the checkpoint stage (`committer`), which decodes, aggregates and
//! commits them with their offsets and then writes the live view. Decoding a record is
//! [`crate::decode`] (the loop only looks up an Avro record's writer's schema, which may
//! mean waiting for the registry), keeping the live view whole after a Redis loss is
//! `live_sync`.
//!
//! ## Checkpoints overlap reading
//!
//! One checkpoint is in flight at a time. While it runs, the loop goes on reading the
//! next batch, up to `checkpoint.max_pending_events` and
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
//! Partitions are assigned co-partitioned ([`crate::copartition`]): partition `p` of
//! every event topic to one instance, so that instances hold disjoint users. Revoked
//! partitions are forgotten at once, with their records not yet committed: the new
//! owner re-reads them from the committed position. Should this instance still
//! commit a batch holding a partition another instance has committed meanwhile, the
//! offset fence in [`crate::store`] rolls the whole checkpoint back.
//!
//! ## Records that cannot be counted
//!
//! A record that does not decode, or whose content breaks the contract's limits
//! (checked at decoding whoever produced it, with the validator's own rules:
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

use ingest_core::avro::Schema;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::producer::FutureProducer;
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use tokio::sync::watch;
use tokio::task::{JoinError, JoinSet};

use crate::aggregate::TopicPartition;
use crate::config::Settings;
use crate::dead_letter::DeadLetter;
use crate::decode::{Decoder, NoWriter};
use crate::dedup::{self, SeenIds};
use crate::error::{Disposition, Error};
use crate::fast_hash::FastMap;
use crate::group_context::GroupContext;
use crate::live::LiveView;
use crate::members::{self, CommittedMembers};
use crate::recommend::active_users::ActiveUsers;
use crate::record::{Record, TopicNames};
use crate::store::{OffsetRange, Store};
use crate::user_state::OwnedUsers;
use committer::{Batch, Committer};
use group::Group;

mod catalog_refresh;
mod committer;
mod group;
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

/// The librdkafka property bounding the records it fetches ahead of the loop.
const FETCH_QUEUE_PROPERTY: &str = "queued.max.messages.kbytes";

/// Its default here (`kafka.properties` may set another): KiB of record values fetched
/// ahead, in the consumer's one queue of every partition. librdkafka's own default (64
/// MiB) costs about four times that in memory (each record's bookkeeping, and the
/// decompressed batch it shares with its neighbours), and the queue is always full
/// while checkpoints are the narrower stage; 16 MiB is still about half a second of
/// reading at the loop's pace.
const DEFAULT_FETCH_QUEUE_KIB: u32 = 16 * 1024;

/// Checkpoints in a row that may fail with an error calling for a halt before the loop
/// stops with it (a transient cause gets this many chances).
pub const HALT_AFTER_FAILURES: u32 = 3;

/// A record held for the next checkpoint, as read: its committer decodes it (a decoded
/// event takes about twice the record's memory, and two batches are held at once), and
/// it goes to the dead-letter topic as read should decoding or PostgreSQL refuse it.
struct Held {
    record: Record,
    /// Its Avro writer's schema, looked up when it was read (`None`: JSON).
    writer: Option<Arc<Schema>>,
    /// When the agent took the event (its `received_at` header, else the record's Kafka
    /// timestamp), Unix ms: the start of `processor_commit_latency_seconds`.
    accepted_ms: Option<i64>,
}

impl Held {
    /// The bytes it counts for in `checkpoint.max_pending_bytes`: its record's value.
    fn size(&self) -> usize {
        self.record.payload().map_or(0, <[u8]>::len)
    }
}

/// What a checkpoint gives back: its group, the committer, and the ranges it committed
/// or the error that left the batch uncommitted.
type Outcome = (
    usize,
    Box<Committer>,
    Result<HashMap<TopicPartition, OffsetRange>, Error>,
);

/// The running consumer.
pub struct Pipeline {
    settings: Arc<Settings>,
    /// Shared with the committers: the loop looks up Avro writers' schemas, the
    /// committers decode.
    decoder: Arc<Decoder>,
    consumer: StreamConsumer<GroupContext>,
    producer: FutureProducer,
    /// The partition groups ([`group`]), each with its batch being read and its
    /// committer.
    groups: Vec<Group>,
    /// The checkpoints in flight, one task each, so that they run beside the consume
    /// loop on the runtime's other threads.
    in_flight: JoinSet<Outcome>,
    partitions: HashMap<TopicPartition, PartitionState>,
    stale: HashSet<TopicPartition>,
    /// Partitions paused until the schema registry answers (see [`registry_wait`]).
    registry_waits: HashMap<TopicPartition, registry_wait::Waiting>,
    /// Failed registry lookups in a row, per partition.
    registry_attempts: HashMap<TopicPartition, u32>,
    /// Records read since `processor_records_read_total` was last updated (once per
    /// tick: a registry lookup per record is measurable at these rates).
    read: u64,
    /// The event topics' names, shared by the records held.
    topic_names: TopicNames,
    health: Arc<Health>,
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

/// The event topics' consumer's settings: `kafka.properties`, then what the design
/// rests on (offsets in PostgreSQL, co-partitioned assignment), and the fetch queue's
/// bound unless the properties set one.
fn consumer_config(settings: &Settings) -> ClientConfig {
    let mut config = client_config(settings);
    if !settings.kafka.properties.contains_key(FETCH_QUEUE_PROPERTY) {
        config.set(FETCH_QUEUE_PROPERTY, DEFAULT_FETCH_QUEUE_KIB.to_string());
    }
    if settings.kafka.lag_interval_ms > 0 {
        config.set(
            "statistics.interval.ms",
            settings.kafka.lag_interval_ms.to_string(),
        );
    }
    config
        .set("group.id", &settings.kafka.group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("isolation.level", "read_committed")
        // Partition p of every event topic to one instance ([`crate::copartition`]).
        .set("partition.assignment.strategy", "range")
        .set("auto.offset.reset", "earliest")
        .set(
            "session.timeout.ms",
            settings.kafka.session_timeout_ms.to_string(),
        );
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
        let t = &settings.kafka.topics;
        let topics = [
            t.product_view.as_str(),
            t.cart.as_str(),
            t.purchase.as_str(),
            t.search.as_str(),
        ];
        let consumer: StreamConsumer<GroupContext> = consumer_config(&settings)
            .create_with_context(
                GroupContext::new("processor", "processor_partition_lag")
                    .checking_copartitions(&topics),
            )?;
        consumer.subscribe(&topics)?;
        let producer: FutureProducer = client_config(&settings)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set(
                "message.timeout.ms",
                settings.dead_letter_timeout.as_millis().to_string(),
            )
            .create()?;
        let decoder = Arc::new(Decoder::new(
            t,
            settings.experiment_flags.clone(),
            settings.schema_registry.as_ref(),
        )?);
        let count = settings.checkpoint_groups;
        let gauges = Arc::new(committer::Gauges::new(count));
        let mut groups = Vec::with_capacity(count);
        let mut store = Some(store);
        for group in 0..count {
            let store = match store.take() {
                Some(store) => store,
                None => {
                    Store::connect(&settings.postgres_url, settings.postgres_connect_timeout)
                        .await?
                }
            };
            let mut committer = Box::new(Committer {
                group,
                gauges: gauges.clone(),
                max_members: members::MAX_MEMBERS / count,
                settings: settings.clone(),
                decoder: decoder.clone(),
                store,
                live: live.clone(),
                catalog: catalog.clone(),
                catalog_updates: catalog_updates.clone(),
                seen: SeenIds::default(),
                watermarks: HashMap::new(),
                committed_members: CommittedMembers::default(),
                users: OwnedUsers::default(),
                recent_changed: FastMap::default(),
                recent_copied_at: Instant::now(),
                decoded: Vec::new(),
                live_lagging: true,
                dead_letter_waker: None,
                active_users: None,
            });
            if group == 0 {
                committer.resync_live().await;
            }
            groups.push(Group::new(committer));
        }
        let pipeline = Pipeline {
            settings,
            decoder,
            consumer,
            producer,
            groups,
            in_flight: JoinSet::new(),
            partitions: HashMap::new(),
            stale: HashSet::new(),
            registry_waits: HashMap::new(),
            registry_attempts: HashMap::new(),
            read: 0,
            topic_names: TopicNames::default(),
            health,
        };
        pipeline.report_registry_waits();
        pipeline.health.started.store(true, Ordering::Relaxed);
        pipeline.health.checkpoint_ok.store(true, Ordering::Relaxed);
        Ok(pipeline)
    }

    /// Wakes the dead-letter publisher after every checkpoint that queued letters (see
    /// [`crate::dead_letter::Publisher::waker`]).
    pub fn set_dead_letter_waker(&mut self, waker: Arc<tokio::sync::Notify>) {
        for committer in self.groups.iter_mut().filter_map(|g| g.committer.as_mut()) {
            committer.dead_letter_waker = Some(waker.clone());
        }
    }

    /// Notes the users of every committed checkpoint for the recommendations publisher
    /// (see [`crate::recommend::publisher`]).
    pub fn set_active_users(&mut self, active: Arc<ActiveUsers>) {
        for committer in self.groups.iter_mut().filter_map(|g| g.committer.as_mut()) {
            committer.active_users = Some(active.clone());
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
    /// through [`HALT_AFTER_FAILURES`] attempts; a checkpoint stage that panicked; the
    /// final checkpoint's error. Other failed checkpoints are retried, not returned.
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
                Some(joined) = self.in_flight.join_next(), if !self.in_flight.is_empty() => {
                    let group = self.finish(joined)?;
                    if self.groups[group].due || self.is_full() {
                        self.start_checkpoint(group).await?;
                    }
                }
                _ = ticker.tick() => self.tick().await?,
                message = self.consumer.recv(), if !full => {
                    match message {
                        Ok(message) => {
                            let topic = self.topic_names.get(message.topic());
                            let record = Record::of(&message, topic);
                            drop(message);
                            self.handle(record).await?;
                        }
                        Err(e) => {
                            metrics::counter!("processor_kafka_errors_total").increment(1);
                            tracing::warn!(error = %e, "Kafka consumer error");
                        }
                    }
                    if self.is_full() {
                        for group in 0..self.groups.len() {
                            if self.groups[group].records() > 0 {
                                self.start_checkpoint(group).await?;
                            }
                        }
                    }
                }
            }
        }
        let pending: usize = self.groups.iter().map(Group::records).sum();
        tracing::info!(pending, "shutting down: final checkpoint");
        self.settle_all().await?;
        self.forget_revoked();
        self.count_read();
        let mut result = Ok(());
        for group in &mut self.groups {
            let batch = std::mem::take(&mut group.batch);
            if let Some(committer) = group.committer.take() {
                let (mut committer, outcome) = committer.run(batch).await;
                committer.copy_recent_products(true).await;
                group.committer = Some(committer);
                if let (Err(e), Ok(())) = (outcome, &result) {
                    result = Err(e);
                }
            }
        }
        self.health.started.store(false, Ordering::Relaxed);
        result
    }

    /// Whether the batches being read hold as much as a checkpoint may: reading stops
    /// until a checkpoint takes them.
    fn is_full(&self) -> bool {
        let records: usize = self.groups.iter().map(Group::records).sum();
        let bytes: usize = self.groups.iter().map(|g| g.pending_bytes).sum();
        records >= self.settings.max_pending_events || bytes >= self.settings.max_pending_bytes
    }

    /// The group of a partition.
    fn group_of(&self, tp: &TopicPartition) -> usize {
        group::group_of(tp, self.groups.len())
    }

    /// Takes the batch group `group` read so far; its partitions' next batch starts
    /// where it ends.
    fn take_batch(&mut self, group: usize) -> Batch {
        let group = &mut self.groups[group];
        group.pending_bytes = 0;
        let batch = std::mem::take(&mut group.batch);
        for (tp, range) in &batch.ranges {
            if let Some(state) = self.partitions.get_mut(tp) {
                state.committed = Some(range.to);
            }
        }
        batch
    }

    /// Waits for group `group`'s checkpoint in flight, if any, taking in the outcomes
    /// of the others that end first.
    ///
    /// # Errors
    ///
    /// As [`Pipeline::finish`].
    async fn settle(&mut self, group: usize) -> Result<(), Error> {
        while self.groups[group].is_busy() {
            match self.in_flight.join_next().await {
                Some(joined) => {
                    self.finish(joined)?;
                }
                None => unreachable!("a busy group has its checkpoint task"),
            }
        }
        Ok(())
    }

    /// Waits for every checkpoint in flight.
    ///
    /// # Errors
    ///
    /// As [`Pipeline::finish`].
    async fn settle_all(&mut self) -> Result<(), Error> {
        while let Some(joined) = self.in_flight.join_next().await {
            self.finish(joined)?;
        }
        Ok(())
    }

    /// Takes in the outcome of a checkpoint and its committer back; returns its group.
    ///
    /// # Errors
    ///
    /// [`Error::Crashed`] if the checkpoint task panicked (a bug: the committer's state
    /// went with it); the checkpoint's failure when it calls for a halt and persisted.
    fn finish(&mut self, joined: Result<Outcome, JoinError>) -> Result<usize, Error> {
        let (group, mut committer, outcome) =
            joined.map_err(|e| Error::Crashed(format!("the checkpoint stage stopped: {e}")))?;
        for tp in self.groups[group].revoked.drain(..) {
            committer.forget(&tp);
        }
        self.groups[group].committer = Some(committer);
        match outcome {
            Ok(ranges) => {
                let g = &mut self.groups[group];
                g.failures = 0;
                // An empty batch (a group's first tick after a failure, before its
                // partitions are read again) committed nothing: it says nothing about
                // an error that calls for a halt.
                if !ranges.is_empty() {
                    g.halt_failures = 0;
                }
                self.note_health();
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
                Ok(group)
            }
            Err(e) => self.failed(group, e).map(|()| group),
        }
    }

    /// Ready while no group's last checkpoint failed.
    fn note_health(&self) {
        let ok = self.groups.iter().all(|g| g.failures == 0);
        self.health.checkpoint_ok.store(ok, Ordering::Relaxed);
    }

    /// Periodic work: hands each group's batch read so far to its committer, or notes
    /// that it is due when the group's checkpoint is still in flight.
    ///
    /// # Errors
    ///
    /// A checkpoint failure that calls for a halt and persisted (see [`Pipeline::run`]).
    async fn tick(&mut self) -> Result<(), Error> {
        self.count_read();
        self.resume_registry_waits();
        for group in 0..self.groups.len() {
            self.start_checkpoint(group).await?;
        }
        Ok(())
    }

    /// Starts group `group`'s next checkpoint unless one is in flight (then it is due)
    /// or the group waits out a backoff: re-seeks its stale partitions and hands its
    /// batch to its committer on a task of its own.
    ///
    /// # Errors
    ///
    /// A failure that calls for a halt and persisted (see [`Pipeline::run`]).
    async fn start_checkpoint(&mut self, group: usize) -> Result<(), Error> {
        let g = &mut self.groups[group];
        let Some(committer) = g.committer.as_mut() else {
            g.due = true;
            return Ok(());
        };
        if let Some(at) = g.retry_at {
            if Instant::now() < at {
                return Ok(());
            }
            g.retry_at = None;
        }
        g.due = false;
        if let Err(e) = committer.ensure_connected().await {
            return self.failed(group, e);
        }
        let stale: Vec<TopicPartition> = self
            .stale
            .iter()
            .filter(|tp| self.group_of(tp) == group)
            .cloned()
            .collect();
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
        let batch = self.take_batch(group);
        if let Some(committer) = self.groups[group].committer.take() {
            self.in_flight.spawn(async move {
                let (committer, outcome) = committer.run(batch).await;
                (group, committer, outcome)
            });
        }
        Ok(())
    }

    /// Adds the records read since the last call to `processor_records_read_total`.
    fn count_read(&mut self) {
        let n = std::mem::take(&mut self.read);
        if n > 0 {
            metrics::counter!("processor_records_read_total").increment(n);
        }
    }

    /// Records a failed checkpoint of group `group`: drops what the group read for a
    /// re-read after a backoff, or returns the error when it calls for a halt and
    /// persisted.
    fn failed(&mut self, group: usize, error: Error) -> Result<(), Error> {
        let g = &mut self.groups[group];
        g.failures += 1;
        let delay = self.settings.checkpoint_backoff.jittered(g.failures);
        let disposition = error.disposition();
        let reason = match (&error, disposition) {
            (Error::Fenced { .. } | Error::StateFenced { .. }, _) => "fenced",
            (_, Disposition::Halt) => "halt",
            (Error::Postgres(_) | Error::Timeout(_), _) => "postgres",
            _ => "other",
        };
        metrics::counter!("processor_checkpoint_failures_total", "reason" => reason).increment(1);
        // The batch being read started where the failed one was to end.
        g.batch = Batch::default();
        g.pending_bytes = 0;
        g.retry_at = Some(Instant::now() + delay);
        if disposition == Disposition::Halt {
            g.halt_failures += 1;
        } else {
            g.halt_failures = 0;
        }
        let halt_failures = g.halt_failures;
        let groups = self.groups.len();
        let known: Vec<TopicPartition> = self
            .partitions
            .keys()
            .filter(|tp| group::group_of(tp, groups) == group)
            .cloned()
            .collect();
        for tp in known {
            self.partitions.remove(&tp);
            self.stale.insert(tp);
        }
        self.note_health();
        if disposition == Disposition::Halt && halt_failures >= HALT_AFTER_FAILURES {
            tracing::error!(error = %error, sqlstate = error.sqlstate().unwrap_or(""),
                attempts = halt_failures,
                "checkpoint cannot succeed: the processor stops (nothing of the batch was committed)");
            return Err(error);
        }
        tracing::warn!(error = %error, sqlstate = error.sqlstate().unwrap_or(""), group,
            retry_in_ms = delay.as_millis() as u64, "checkpoint failed; the batch is re-read");
        Ok(())
    }

    fn forget_revoked(&mut self) {
        let revoked = self.consumer.context().take_revoked();
        for tp in revoked {
            let group = self.group_of(&tp);
            self.partitions.remove(&tp);
            self.stale.remove(&tp);
            let g = &mut self.groups[group];
            match &mut g.committer {
                Some(committer) => committer.forget(&tp),
                None => g.revoked.push(tp.clone()),
            }
            g.drop_partition(&tp);
            self.forget_registry_waits(&tp);
        }
    }

    /// Drops what was read from `tp` since its last checkpoint; its position and
    /// de-duplication keys are loaded again before its next record is used.
    fn drop_uncommitted(&mut self, tp: &TopicPartition) {
        let group = self.group_of(tp);
        self.partitions.remove(tp);
        self.stale.remove(tp);
        self.groups[group].drop_partition(tp);
    }

    /// Loads a partition's committed position and de-duplication keys, and seeks there
    /// unless `at` (the offset of a record just read) already is it. Returns whether that
    /// record may be used. Needs the committed state: called with no checkpoint of the
    /// partition's group in flight.
    ///
    /// # Errors
    ///
    /// Reading the position or the keys; seeking.
    async fn resolve(&mut self, tp: &TopicPartition, at: Option<i64>) -> Result<bool, Error> {
        let group = self.group_of(tp);
        let Some(committer) = self.groups[group].committer.as_mut() else {
            unreachable!("a partition is loaded only with no checkpoint of its group in flight");
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
    async fn handle(&mut self, message: Record) -> Result<(), Error> {
        let tp = TopicPartition::new(message.topic(), message.partition());
        if self.is_waiting_for_registry(&tp) {
            // Fetched before the pause: read again once the partition resumes.
            return Ok(());
        }
        let offset = message.offset();
        let group = self.group_of(&tp);
        if !self.partitions.contains_key(&tp) {
            self.settle(group).await?;
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
        let g = &mut self.groups[group];
        g.batch
            .ranges
            .entry(tp)
            .or_insert(OffsetRange {
                from: committed,
                to: offset + 1,
            })
            .to = offset + 1;
        self.read += 1;
        match writer {
            Ok(writer) => {
                let held = Held {
                    accepted_ms: accepted_at_ms(&message),
                    record: message,
                    writer,
                };
                g.pending_bytes += held.size();
                g.batch.held.push(held);
            }
            Err((code, why)) => {
                let letter = DeadLetter::of(&message, code, why);
                g.pending_bytes += letter.size();
                g.batch.letters.push(letter);
            }
        }
        Ok(())
    }
}

/// When the agent took a record's event: its `received_at` header, else the record's
/// Kafka timestamp (a foreign producer's).
fn accepted_at_ms(record: &Record) -> Option<i64> {
    record
        .header("received_at")
        .and_then(|value| std::str::from_utf8(value).ok())
        .and_then(crate::decode::parse_rfc3339_ms)
        .or_else(|| record.timestamp_ms())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ProcessorConfig;

    fn settings(properties: &[(&str, &str)]) -> Settings {
        let mut config = ProcessorConfig::default();
        for (k, v) in properties {
            config
                .kafka
                .properties
                .insert((*k).to_owned(), (*v).to_owned());
        }
        config.validate().expect("valid")
    }

    #[test]
    fn the_fetch_queue_is_bounded_unless_the_properties_bound_it() {
        let bounded = consumer_config(&settings(&[]));
        assert_eq!(bounded.get(FETCH_QUEUE_PROPERTY), Some("16384"));
        assert_eq!(bounded.get("enable.auto.commit"), Some("false"));
        let chosen = consumer_config(&settings(&[(FETCH_QUEUE_PROPERTY, "4096")]));
        assert_eq!(chosen.get(FETCH_QUEUE_PROPERTY), Some("4096"));
    }
}
