//! The checkpoint stage: decodes a batch handed over by the consume loop ([`Decoder`]),
//! aggregates it and commits it with its offsets ([`crate::store`], [`crate::isolate`]), then writes the live view.
//!
//! Each partition group ([`super::group`]) has one committer, which owns everything its
//! checkpoints read or change: a PostgreSQL connection, the de-duplication keys and
//! watermarks of the group's partitions, the state of the users of its partition
//! numbers, its share of the committed set members, and the catalog in use. The consume
//! loop hands it one batch at a time ([`Committer::run`] takes it by value and gives it
//! back), so a checkpoint always starts from the state the previous one of its group
//! committed, while the loop reads the next batch meanwhile. Decoding here rather than
//! as records are read keeps the batches held as compact records (decoded events take
//! about twice their memory) and takes the decoding off the consume loop's thread.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::watch;

use super::{now_ms, Held};
use crate::aggregate::{Aggregator, Incoming, Rollup, SessionRules, TopicPartition};
use crate::catalog::Catalog;
use crate::config::Settings;
use crate::dead_letter::{reason, DeadLetter};
use crate::decode::Decoder;
use crate::dedup::SeenIds;
use crate::error::Error;
use crate::fast_hash::FastMap;
use crate::isolate::write_isolating;
use crate::live::LiveView;
use crate::members::CommittedMembers;
use crate::recommend::active_users::ActiveUsers;
use crate::store::{OffsetRange, Store, WriteSettings};
use crate::user_state::{OwnedUsers, UserState, UsersByNumber};

/// What one checkpoint commits: the records read since the previous one.
#[derive(Default)]
pub(super) struct Batch {
    pub(super) held: Vec<Held>,
    /// Records to dead-letter with it.
    pub(super) letters: Vec<DeadLetter>,
    /// Per partition: from the committed position to after the last record read.
    pub(super) ranges: HashMap<TopicPartition, OffsetRange>,
}

impl Batch {
    pub(super) fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// The partition numbers it holds records of.
    pub(super) fn numbers(&self) -> Vec<i32> {
        let mut numbers: Vec<i32> = self.ranges.keys().map(|tp| tp.partition).collect();
        numbers.sort_unstable();
        numbers.dedup();
        numbers
    }
}

/// The gauges every committer adds its part to.
pub(super) struct Gauges {
    pub(super) dedup_ids: SummedGauge,
    pub(super) state_users: SummedGauge,
    pub(super) committed_members: SummedGauge,
}

impl Gauges {
    pub(super) fn new(groups: usize) -> Gauges {
        Gauges {
            dedup_ids: SummedGauge::new("processor_dedup_ids", groups),
            state_users: SummedGauge::new("processor_user_state_users", groups),
            committed_members: SummedGauge::new("processor_committed_members", groups),
        }
    }
}

/// The checkpoint stage of one partition group (see the module documentation).
pub(super) struct Committer {
    /// Its partition group's index ([`super::group`]).
    pub(super) group: usize,
    pub(super) gauges: Arc<Gauges>,
    /// Committed members remembered at most (this group's share).
    pub(super) max_members: usize,
    pub(super) settings: Arc<Settings>,
    pub(super) decoder: Arc<Decoder>,
    pub(super) store: Store,
    pub(super) live: LiveView,
    /// The catalog in use: the latest `catalog_updates` delivered, taken at each
    /// checkpoint.
    pub(super) catalog: Arc<Catalog>,
    pub(super) catalog_updates: watch::Receiver<Arc<Catalog>>,
    /// The de-duplication keys of the partitions this instance reads, as committed.
    pub(super) seen: SeenIds,
    /// The committed watermark of each partition this instance reads.
    pub(super) watermarks: HashMap<TopicPartition, i64>,
    /// Set members committed lately (not written again).
    pub(super) committed_members: CommittedMembers,
    /// The committed state of the users of the partition numbers this group owns
    /// ([`crate::user_state`]).
    pub(super) users: OwnedUsers,
    /// Some (minute, partition) views may miss a write: re-written from PostgreSQL.
    pub(super) live_lagging: bool,
    pub(super) dead_letter_waker: Option<Arc<tokio::sync::Notify>>,
    pub(super) active_users: Option<Arc<ActiveUsers>>,
    /// Users whose recent products changed since they were last copied to
    /// `user_activity`, with their partition number.
    pub(super) recent_changed: FastMap<String, i32>,
    /// When they were last copied.
    pub(super) recent_copied_at: Instant,
    /// The decoded events of the checkpoint in progress: kept between checkpoints, empty,
    /// so that each does not allocate (and fault in) tens of megabytes afresh.
    pub(super) decoded: Vec<Incoming>,
}

impl Committer {
    /// Re-opens the PostgreSQL connection if it was lost.
    ///
    /// # Errors
    ///
    /// The connection error.
    pub(super) async fn ensure_connected(&mut self) -> Result<(), Error> {
        if self.store.is_closed() {
            self.store = Store::connect(
                &self.settings.postgres_url,
                self.settings.postgres_connect_timeout,
            )
            .await?;
            tracing::info!("PostgreSQL connection re-opened");
        }
        Ok(())
    }

    /// Forgets a partition this instance no longer reads.
    pub(super) fn forget(&mut self, tp: &TopicPartition) {
        self.seen.forget(tp);
        self.watermarks.remove(tp);
        self.users.forget(tp.partition);
        self.gauges.state_users.set(self.group, self.users.users());
    }

    /// Commits `batch`, then keeps the live view whole. Gives the committer back with
    /// the committed ranges, or with the error that left nothing of the batch committed
    /// (the caller re-reads it).
    pub(super) async fn run(
        mut self: Box<Self>,
        batch: Batch,
    ) -> (
        Box<Self>,
        Result<HashMap<TopicPartition, OffsetRange>, Error>,
    ) {
        let numbers = batch.numbers();
        let result = match self.ensure_connected().await {
            Ok(()) => {
                if self.catalog_updates.has_changed().unwrap_or(false) {
                    self.catalog = self.catalog_updates.borrow_and_update().clone();
                }
                self.checkpoint(batch, &numbers).await
            }
            Err(e) => Err(e),
        };
        if result.is_err() {
            // Whether it committed or not (an answer lost with the connection), the
            // numbers' state is loaded again: the sequence fence tells which it was.
            for number in numbers {
                self.users.forget(number);
            }
        }
        match &result {
            Ok(_) => {
                self.copy_recent_products(false).await;
                // The marker is the whole view's: one group looks after it.
                if self.group == 0 {
                    self.check_live_marker().await;
                }
                if self.live_lagging {
                    self.resync_live().await;
                }
            }
            // A commit whose answer was lost may have succeeded: its outbox rows say so.
            Err(_) => self.live_lagging = true,
        }
        (self, result)
    }

    /// Copies the recent products of the users whose products changed to
    /// `user_activity` (what the recommendations API and publisher read), at most once
    /// per `recommendations.publish_interval_secs` unless `now`, and notes the users for
    /// the publisher. So a user's row is written once per interval, not at every
    /// checkpoint that counts one of their events; a copy that fails is tried again.
    pub(super) async fn copy_recent_products(&mut self, now: bool) {
        if self.recent_changed.is_empty()
            || (!now && self.recent_copied_at.elapsed() < self.settings.recommendations_interval)
        {
            return;
        }
        let started = Instant::now();
        // Users of a partition number revoked meanwhile are copied by its new owner.
        let users = &self.users;
        self.recent_changed
            .retain(|member, number| users.get(*number, member).is_some());
        let mut rows: Vec<(i32, &str, &crate::recommend::Recent, i64)> = self
            .recent_changed
            .iter()
            .filter_map(|(member, number)| {
                let state = users.get(*number, member)?;
                Some((*number, member.as_str(), &state.recent, state.newest_ms()))
            })
            .collect();
        rows.sort_unstable_by_key(|row| row.1);
        let numbers = users.sequences();
        let group = &self.settings.kafka.group_id;
        let stale = match self
            .store
            .write_recent_products(group, &numbers, &rows)
            .await
        {
            Ok(stale) => stale,
            Err(e) => {
                tracing::warn!(error = %e, sqlstate = e.sqlstate().unwrap_or(""), users = rows.len(),
                    "copying recent products to user_activity failed; tried again after the next checkpoint");
                return;
            }
        };
        rows.retain(|row| !stale.contains(&row.0));
        metrics::histogram!("processor_recent_products_copy_seconds")
            .record(started.elapsed().as_secs_f64());
        if let Some(active) = &self.active_users {
            let refused = active.add(rows.iter().map(|row| row.1));
            if refused > 0 {
                metrics::counter!("processor_recommendations_dropped_total")
                    .increment(refused as u64);
            }
        }
        self.recent_changed.clear();
        self.recent_copied_at = Instant::now();
        // Another instance committed these numbers' users: this state is stale.
        for number in stale {
            tracing::info!(
                number,
                "partition number committed elsewhere; its users' state is loaded again"
            );
            self.users.forget(number);
        }
    }

    /// Loads the users' state of the partition numbers in `numbers` not held yet.
    ///
    /// # Errors
    ///
    /// Reading the log.
    async fn load_users(&mut self, numbers: &[i32]) -> Result<(), Error> {
        for &number in numbers {
            if self.users.number(number).is_some() {
                continue;
            }
            let started = Instant::now();
            let loaded = self
                .store
                .load_users(&self.settings.kafka.group_id, number)
                .await?;
            metrics::counter!("processor_user_state_loads_total").increment(1);
            if loaded.copied_seq < loaded.seq {
                // Some changes were never copied (a crash, a predecessor paused or
                // revoked before its copy): copy every user's products again.
                for (member, state) in &loaded.users {
                    if !state.recent.is_empty() {
                        self.recent_changed.insert(member.clone(), number);
                    }
                }
            }
            tracing::debug!(
                number,
                seq = loaded.seq,
                users = loaded.users.len(),
                ms = started.elapsed().as_millis() as u64,
                "users' state loaded"
            );
            self.users.insert(number, loaded);
        }
        Ok(())
    }

    /// Takes in the users' state a committed checkpoint wrote: moves it out of
    /// `rollup` into the state of each number (`users`: the batch's `(number, user)`).
    fn remember_user_states(
        &mut self,
        rollup: &mut Rollup,
        users: &[(i32, &str)],
        written: &[(i32, crate::user_state::LogRow)],
        fenced: &[i32],
    ) {
        let grouped = UsersByNumber::new(users);
        // Under how many numbers each user is (one, unless a producer keyed otherwise):
        // the state is moved out of the rollup for the last of them, cloned before.
        let mut numbers_of: HashMap<&str, usize> = HashMap::with_capacity(grouped.pairs().len());
        for &(_, user) in grouped.pairs() {
            *numbers_of.entry(user).or_default() += 1;
        }
        for &number in fenced {
            let row = written.iter().find(|(n, _)| *n == number).map(|(_, r)| r);
            let mut changed = Vec::new();
            for member in grouped.of(number) {
                let Some(activity) = rollup.activity.get(member) else {
                    continue;
                };
                let last = numbers_of.get(member).is_some_and(|n| *n == 1);
                let state = if last {
                    UserState {
                        activity: rollup.activity.remove(member).unwrap_or_default(),
                        recent: rollup.recent.remove(member).unwrap_or_default(),
                    }
                } else {
                    if let Some(n) = numbers_of.get_mut(member) {
                        *n -= 1;
                    }
                    UserState {
                        activity: activity.clone(),
                        recent: rollup.recent.get(member).cloned().unwrap_or_default(),
                    }
                };
                if !state.recent.is_empty() {
                    if let Some(n) = self.recent_changed.get_mut(member) {
                        *n = number;
                    } else {
                        self.recent_changed.insert(member.to_owned(), number);
                    }
                }
                changed.push((member, state));
            }
            let owned = self.users.number_mut(number);
            match row {
                Some(row) => owned.committed(row, changed),
                None => owned.seq += 1,
            }
        }
        self.gauges.state_users.set(self.group, self.users.users());
    }

    /// Commits the batch: see [`crate::store`] and [`crate::isolate`].
    async fn checkpoint(
        &mut self,
        batch: Batch,
        numbers: &[i32],
    ) -> Result<HashMap<TopicPartition, OffsetRange>, Error> {
        if batch.is_empty() {
            return Ok(HashMap::new());
        }
        let started = Instant::now();
        let Batch {
            held: pending,
            mut letters,
            ranges,
        } = batch;
        let mut phase = Instant::now();
        // `held_of[i]`: the held record event `i` was decoded from.
        let mut incoming = std::mem::take(&mut self.decoded);
        incoming.reserve(pending.len());
        let mut held_of = Vec::with_capacity(pending.len());
        for (index, held) in pending.iter().enumerate() {
            match self.decoder.decode(&held.record, held.writer.as_deref()) {
                Ok(event) => {
                    incoming.push(event);
                    held_of.push(index);
                }
                Err((code, why)) => letters.push(DeadLetter::of(&held.record, code, why)),
            }
        }
        phase_done("decode", &mut phase);
        self.load_users(numbers).await?;
        phase_done("load_users", &mut phase);
        let watermarks: HashMap<TopicPartition, i64> = ranges
            .keys()
            .map(|tp| {
                let w = self.watermarks.get(tp).copied().unwrap_or(i64::MIN);
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
        let events: Vec<&Incoming> = incoming.iter().collect();
        let fence: Vec<(i32, i64)> = numbers
            .iter()
            .map(|&n| (n, self.users.number(n).map_or(0, |u| u.seq)))
            .collect();
        let mut checkpoint = self
            .store
            .begin_checkpoint(&settings.kafka.group_id, &ranges, &fence)
            .await?;
        phase_done("fence", &mut phase);
        let write_settings = WriteSettings {
            user_cutoff_ms: now_ms().saturating_sub(settings.session_retention_ms),
            snapshot_min_bytes: settings.user_state_snapshot_min_bytes,
        };
        let (written, refused) = write_isolating(
            &mut checkpoint,
            &events,
            &self.users,
            &write_settings,
            settings.max_isolated_records,
            &aggregate,
        )
        .await?;
        phase_done("write", &mut phase);
        for (index, error) in refused {
            if let Some(held) = held_of.get(index).and_then(|&i| pending.get(i)) {
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
        let users = crate::user_state::users_of(&events);
        self.remember_user_states(&mut rollup, &users, &written.logs, numbers);
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
        record_commit_latency(held_of.iter().filter_map(|&i| pending.get(i)));
        count_events(&events);
        metrics::counter!("processor_checkpoints_total").increment(1);

        let mut versions = HashMap::new();
        for (tp, range) in &ranges {
            // A partition revoked meanwhile is forgotten after this checkpoint anyway.
            if let Some(watermark) = self.watermarks.get_mut(tp) {
                if let Some(w) = rollup.watermarks.get(tp) {
                    *watermark = *w;
                }
                let ids = rollup.seen.get(tp).map_or(&[][..], Vec::as_slice);
                let truncated = self
                    .seen
                    .commit(tp, ids, *watermark, self.settings.dedup_window);
                super::note_truncated(truncated);
            }
            versions.insert(tp.clone(), range.to);
        }
        self.gauges.dedup_ids.set(self.group, self.seen.len());
        // Members of minutes past the allowed lateness (and a margin) get no more events.
        self.committed_members.note(
            rollup
                .members
                .iter()
                .map(|(minute, set, member)| (*minute, set.as_str(), member.as_str())),
            self.settings.allowed_lateness_secs + 120,
            self.max_members,
        );
        self.gauges
            .committed_members
            .set(self.group, self.committed_members.len());
        phase_done("state", &mut phase);
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
        drop(events);
        incoming.clear();
        self.decoded = incoming;
        Ok(ranges)
    }
}

/// `processor_commit_latency_seconds`: for each decoded event of a committed checkpoint,
/// the time from when the agent took it to now, when its counts became durable.
fn record_commit_latency<'a>(decoded: impl Iterator<Item = &'a Held>) {
    let histogram = metrics::histogram!("processor_commit_latency_seconds");
    let now = now_ms();
    for held in decoded {
        if let Some(accepted) = held.accepted_ms {
            histogram.record((now - accepted).max(0) as f64 / 1000.0);
        }
    }
}

/// `processor_events_total{event_type}`: the decoded events of a committed checkpoint
/// (those PostgreSQL refused included).
fn count_events(events: &[&Incoming]) {
    let mut counts = [0u64; 4];
    for incoming in events {
        counts[incoming.event.kind().index()] += 1;
    }
    for kind in ingest_core::EventKind::ALL {
        if counts[kind.index()] > 0 {
            metrics::counter!("processor_events_total", "event_type" => kind.as_str())
                .increment(counts[kind.index()]);
        }
    }
}

/// Records the time since `*since` as checkpoint phase `name`
/// (`processor_checkpoint_phase_seconds{phase}`) and restarts the clock.
fn phase_done(name: &'static str, since: &mut Instant) {
    metrics::histogram!("processor_checkpoint_phase_seconds", "phase" => name)
        .record(since.elapsed().as_secs_f64());
    *since = Instant::now();
}

/// A gauge whose value is the sum of the groups' parts (the de-duplication keys, the
/// cached users' state, the committed members each committer holds).
pub(super) struct SummedGauge {
    name: &'static str,
    parts: Vec<AtomicU64>,
}

impl SummedGauge {
    pub(super) fn new(name: &'static str, groups: usize) -> SummedGauge {
        SummedGauge {
            name,
            parts: (0..groups).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Sets group `group`'s part and exports the sum.
    pub(super) fn set(&self, group: usize, value: usize) {
        if let Some(part) = self.parts.get(group) {
            part.store(value as u64, Ordering::Relaxed);
        }
        let total: u64 = self.parts.iter().map(|p| p.load(Ordering::Relaxed)).sum();
        metrics::gauge!(self.name).set(total as f64);
    }
}
