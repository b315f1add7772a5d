//! The consume loop: read records, decode, hold them until the next checkpoint, then
//! aggregate and commit them with their offsets, then write the live view. Decoding a
//! record is [`crate::decode`], keeping the live view whole after a Redis loss is `live_sync`.
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

use crate::aggregate::{Aggregator, Incoming, Rollup, SessionRules, TopicPartition};
use crate::catalog::Catalog;
use crate::config::Settings;
use crate::dead_letter::{reason, DeadLetter};
use crate::decode::{Decoder, NoWriter};
use crate::dedup::{self, SeenIds};
use crate::error::{Disposition, Error};
use crate::group_context::GroupContext;
use crate::isolate::write_isolating;
use crate::live::LiveView;
use crate::members::{self, CommittedMembers};
use crate::recommend::active_users::ActiveUsers;
use crate::store::{OffsetRange, Store};
use crate::user_cache::{CachedState, UserStateCache};

mod catalog_refresh;
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
    /// The offset committed in PostgreSQL (`None`: never).
    committed: Option<i64>,
    /// The committed watermark.
    watermark_ms: i64,
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

/// The running consumer.
pub struct Pipeline {
    settings: Arc<Settings>,
    decoder: Decoder,
    consumer: StreamConsumer<GroupContext>,
    producer: FutureProducer,
    store: Store,
    live: LiveView,
    /// The catalog in use: the latest `catalog_updates` delivered, taken at each tick.
    catalog: Arc<Catalog>,
    catalog_updates: watch::Receiver<Arc<Catalog>>,
    partitions: HashMap<TopicPartition, PartitionState>,
    /// The de-duplication keys of the partitions in `partitions`, as committed.
    seen: SeenIds,
    /// Set members committed lately (not written again).
    committed_members: CommittedMembers,
    /// The users' state this instance committed last.
    user_states: UserStateCache,
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
    live_lagging: bool,
    failures: u32,
    /// Failed checkpoints in a row whose error calls for a halt.
    halt_failures: u32,
    retry_at: Option<Instant>,
    dead_letter_waker: Option<Arc<tokio::sync::Notify>>,
    active_users: Option<Arc<ActiveUsers>>,
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
        let mut pipeline = Pipeline {
            settings,
            decoder,
            consumer,
            producer,
            store,
            live,
            catalog,
            catalog_updates,
            partitions: HashMap::new(),
            seen: SeenIds::default(),
            committed_members: CommittedMembers::default(),
            user_states,
            stale: HashSet::new(),
            registry_waits: HashMap::new(),
            registry_attempts: HashMap::new(),
            pending: Vec::new(),
            letters: Vec::new(),
            pending_bytes: 0,
            decoded: [0; 4],
            ranges: HashMap::new(),
            health,
            live_lagging: true,
            failures: 0,
            halt_failures: 0,
            retry_at: None,
            dead_letter_waker: None,
            active_users: None,
        };
        pipeline.resync_live().await;
        pipeline.report_registry_waits();
        pipeline.health.started.store(true, Ordering::Relaxed);
        pipeline.health.checkpoint_ok.store(true, Ordering::Relaxed);
        Ok(pipeline)
    }

    /// Wakes the dead-letter publisher after every checkpoint that queued letters (see
    /// [`crate::dead_letter::Publisher::waker`]).
    pub fn set_dead_letter_waker(&mut self, waker: Arc<tokio::sync::Notify>) {
        self.dead_letter_waker = Some(waker);
    }

    /// Notes the users of every committed checkpoint for the recommendations publisher
    /// (see [`crate::recommend::publisher`]).
    pub fn set_active_users(&mut self, active: Arc<ActiveUsers>) {
        self.active_users = Some(active);
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
            tokio::select! {
                biased;
                _ = shutdown.changed() => break,
                _ = ticker.tick() => self.tick().await?,
                message = self.consumer.recv() => {
                    match message {
                        Ok(message) => {
                            let owned = message.detach();
                            self.handle(owned).await;
                        }
                        Err(e) => {
                            metrics::counter!("processor_kafka_errors_total").increment(1);
                            tracing::warn!(error = %e, "Kafka consumer error");
                        }
                    }
                    if self.pending.len() + self.letters.len() >= self.settings.max_pending_events
                        || self.pending_bytes >= self.settings.max_pending_bytes
                    {
                        self.tick().await?;
                    }
                }
            }
        }
        tracing::info!(
            pending = self.pending.len(),
            "shutting down: final checkpoint"
        );
        self.forget_revoked();
        self.count_decoded();
        self.checkpoint().await?;
        self.health.started.store(false, Ordering::Relaxed);
        Ok(())
    }

    /// Periodic work: re-seek stale partitions, take the catalog reloaded meanwhile,
    /// checkpoint.
    ///
    /// # Errors
    ///
    /// A checkpoint failure that calls for a halt and persisted (see [`Pipeline::run`]).
    async fn tick(&mut self) -> Result<(), Error> {
        self.count_decoded();
        if let Some(at) = self.retry_at {
            if Instant::now() < at {
                return Ok(());
            }
            self.retry_at = None;
        }
        if self.store.is_closed() {
            match Store::connect(
                &self.settings.postgres_url,
                self.settings.postgres_connect_timeout,
            )
            .await
            {
                Ok(store) => {
                    tracing::info!("PostgreSQL connection re-opened");
                    self.store = store;
                }
                Err(e) => return self.failed(e),
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
        if self.catalog_updates.has_changed().unwrap_or(false) {
            self.catalog = self.catalog_updates.borrow_and_update().clone();
        }
        if let Err(e) = self.checkpoint().await {
            return self.failed(e);
        }
        self.check_live_marker().await;
        if self.live_lagging {
            self.resync_live().await;
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
        // A commit whose answer was lost may have succeeded: its outbox rows say so.
        self.live_lagging = true;
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
            self.seen.forget(tp);
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
    async fn resolve(&mut self, tp: &TopicPartition, at: Option<i64>) -> Result<bool, Error> {
        let group = &self.settings.kafka.group_id;
        let position = self.store.position(group, tp).await?;
        let window = self.settings.dedup_window;
        let ids = match position {
            Some(p) => {
                let started = Instant::now();
                // Rows up to the position read: a later commit (another instance's)
                // belongs to a position this instance does not hold.
                let mut ids = self
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
        self.seen.load(tp.clone(), ids);
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
                watermark_ms: position.map_or(i64::MIN, |p| p.watermark_ms),
                floor: target,
            },
        );
        Ok(exact)
    }

    async fn handle(&mut self, message: OwnedMessage) {
        let tp = TopicPartition::new(message.topic(), message.partition());
        if self.is_waiting_for_registry(&tp) {
            // Fetched before the pause: read again once the partition resumes.
            return;
        }
        let offset = message.offset();
        match self.partitions.get(&tp) {
            None => match self.resolve(&tp, Some(offset)).await {
                Ok(true) => {}
                Ok(false) => return,
                Err(e) => {
                    // Logged once per partition, not per record read meanwhile.
                    if self.stale.insert(tp) {
                        tracing::warn!(error = %e, "cannot read the committed position; retrying");
                    }
                    return;
                }
            },
            Some(state) if offset < state.floor => return,
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
                return;
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
    }

    /// Keeps the users' state a committed checkpoint wrote (`version`: the version
    /// their rows now hold), within the cache's bound.
    fn remember_user_states(&mut self, rollup: &mut Rollup, version: i64) {
        for (member, activity) in std::mem::take(&mut rollup.activity) {
            let recent = rollup.recent.get(&member).cloned().unwrap_or_default();
            self.user_states.store(
                &member,
                CachedState {
                    version,
                    activity,
                    recent,
                },
            );
        }
        self.user_states.trim();
        metrics::gauge!("processor_user_state_cache_users").set(self.user_states.len() as f64);
        metrics::gauge!("processor_user_state_cache_bytes").set(self.user_states.bytes() as f64);
    }

    /// Commits the held records: see [`crate::store`] and [`crate::isolate`].
    async fn checkpoint(&mut self) -> Result<(), Error> {
        if self.ranges.is_empty() {
            return Ok(());
        }
        let started = Instant::now();
        let pending = std::mem::take(&mut self.pending);
        let mut letters = std::mem::take(&mut self.letters);
        self.pending_bytes = 0;
        let ranges = std::mem::take(&mut self.ranges);
        let watermarks: HashMap<TopicPartition, i64> = ranges
            .keys()
            .map(|tp| {
                let w = self.partitions.get(tp).map_or(i64::MIN, |s| s.watermark_ms);
                (tp.clone(), w)
            })
            .collect();
        let settings = &self.settings;
        let catalog = &self.catalog;
        let rules = SessionRules {
            timeout_ms: settings.inactivity_timeout_ms,
            retention_ms: settings.session_retention_ms,
            max_times: settings.max_events_per_user,
            recent_products: settings.recent_products,
            pair_window: settings.pair_window,
            order_items_paired: settings.order_items_paired,
        };
        let seen = &self.seen;
        let committed_members = &self.committed_members;
        let aggregate = |events: &[&Incoming], states: crate::store::UserStates| {
            let mut aggregator = Aggregator::new(
                catalog,
                settings.allowed_lateness_secs,
                rules,
                watermarks.clone(),
                seen,
                states.activity,
                states.recent,
            )
            .skipping_members(committed_members);
            for incoming in events {
                aggregator.add(incoming);
            }
            aggregator.finish()
        };
        let events: Vec<&Incoming> = pending.iter().map(|h| &h.incoming).collect();
        let mut phase = Instant::now();
        let mut checkpoint = self
            .store
            .begin_checkpoint(&settings.kafka.group_id, &ranges)
            .await?;
        phase_done("fence", &mut phase);
        let (written, refused) = write_isolating(
            &mut checkpoint,
            &events,
            &self.user_states,
            settings.max_isolated_records,
            &aggregate,
        )
        .await?;
        phase_done("write", &mut phase);
        for (index, error) in refused {
            if let Some(held) = pending.get(index) {
                letters.push(DeadLetter::of(
                    &held.record,
                    reason::UNSTORABLE,
                    format!("refused by the database: {error}"),
                ));
            }
        }
        checkpoint.queue_dead_letters(&letters).await?;
        phase_done("dead_letters", &mut phase);
        checkpoint.commit().await?;
        phase_done("commit", &mut phase);
        let mut rollup = written.rollup;
        let committed = written.committed;
        self.remember_user_states(&mut rollup, written.user_version);
        metrics::counter!("processor_user_state_cache_total", "result" => "hit")
            .increment(written.cached_users as u64);
        metrics::counter!("processor_user_state_cache_total", "result" => "miss")
            .increment(written.read_users as u64);
        for letter in &letters {
            metrics::counter!("processor_dead_letters_total", "reason" => letter.reason.clone())
                .increment(1);
            tracing::info!(
                reason = %letter.reason,
                message = %letter.message,
                topic = %letter.topic,
                partition = letter.partition,
                offset = letter.offset,
                "record queued for the dead-letter topic"
            );
        }
        if let (false, Some(waker)) = (letters.is_empty(), &self.dead_letter_waker) {
            waker.notify_one();
        }
        metrics::histogram!("processor_checkpoint_seconds").record(started.elapsed().as_secs_f64());
        record_commit_latency(&pending);
        metrics::counter!("processor_checkpoints_total").increment(1);
        self.failures = 0;
        self.halt_failures = 0;
        self.health.checkpoint_ok.store(true, Ordering::Relaxed);

        let mut hint = TopicPartitionList::new();
        let mut versions = HashMap::new();
        for (tp, range) in &ranges {
            if let Some(state) = self.partitions.get_mut(tp) {
                state.committed = Some(range.to);
                if let Some(w) = rollup.watermarks.get(tp) {
                    state.watermark_ms = *w;
                }
                let ids = rollup.seen.get(tp).map_or(&[][..], Vec::as_slice);
                let truncated =
                    self.seen
                        .commit(tp, ids, state.watermark_ms, self.settings.dedup_window);
                note_truncated(truncated);
            }
            versions.insert(tp.clone(), range.to);
            // Only a hint where to start fetching; positions are read from PostgreSQL.
            let _ = hint.add_partition_offset(&tp.topic, tp.partition, Offset::Offset(range.to));
        }
        metrics::gauge!("processor_dedup_ids").set(self.seen.len() as f64);
        // Members of minutes past the allowed lateness (and a margin) get no more events.
        self.committed_members.note(
            rollup
                .members
                .iter()
                .map(|(minute, set, member)| (*minute, set.as_str(), member.as_str())),
            self.settings.allowed_lateness_secs + 120,
            members::MAX_MEMBERS,
        );
        metrics::gauge!("processor_committed_members").set(self.committed_members.len() as f64);
        let live_written = self
            .live
            .write(&committed, &versions, &rollup.members)
            .await;
        phase_done("live", &mut phase);
        match live_written {
            Ok(()) if committed.backlog => {
                // Some of these views missed an earlier write: their outbox rows stay
                // until the re-write from the committed tables (after this checkpoint).
                self.live_lagging = true;
            }
            Ok(()) => {
                let mut written: Vec<(i64, TopicPartition, i64)> = Vec::new();
                for (minute, tp, _, _) in &committed.counts {
                    written.push((*minute, tp.clone(), versions.get(tp).copied().unwrap_or(-1)));
                }
                for (minute, tp, _, _, _) in &committed.tops {
                    written.push((*minute, tp.clone(), versions.get(tp).copied().unwrap_or(-1)));
                }
                written.sort();
                written.dedup();
                if let Err(e) = self.store.clear_outbox(&written).await {
                    tracing::warn!(error = %e, "clearing the outbox failed; it is re-written later");
                }
            }
            Err(e) => {
                metrics::counter!("processor_live_write_failures_total").increment(1);
                tracing::warn!(error = %e, "writing the live view failed; it is re-written from PostgreSQL");
                self.live_lagging = true;
            }
        }
        if let Some(active) = &self.active_users {
            let users = rollup
                .recent
                .iter()
                .filter(|(_, r)| !r.viewed.is_empty() || !r.bought.is_empty())
                .map(|(u, _)| u.as_str());
            let refused = active.add(users);
            if refused > 0 {
                metrics::counter!("processor_recommendations_dropped_total")
                    .increment(refused as u64);
            }
        }
        if let Err(e) = self.consumer.commit(&hint, CommitMode::Async) {
            tracing::debug!(error = %e, "offset hint not committed to Kafka");
        }
        Ok(())
    }
}

/// `processor_commit_latency_seconds`: for each event of a committed checkpoint, the
/// time from when the agent took it to now, when its counts became durable.
fn record_commit_latency(pending: &[Held]) {
    let histogram = metrics::histogram!("processor_commit_latency_seconds");
    let now = now_ms();
    for held in pending {
        if let Some(accepted) = held.accepted_ms {
            histogram.record((now - accepted).max(0) as f64 / 1000.0);
        }
    }
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
fn note_truncated(ids: usize) {
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

/// Records the time since `*since` as checkpoint phase `name`
/// (`processor_checkpoint_phase_seconds{phase}`) and restarts the clock.
fn phase_done(name: &'static str, since: &mut Instant) {
    metrics::histogram!("processor_checkpoint_phase_seconds", "phase" => name)
        .record(since.elapsed().as_secs_f64());
    *since = Instant::now();
}

/// Unix milliseconds now.
fn now_ms() -> i64 {
    ingest_common::clock::unix_ms()
}
