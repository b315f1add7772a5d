//! The checkpoint transaction that makes results exactly-once.
//!
//! ## The checkpoint
//!
//! One transaction holds, for one batch of records:
//!
//! 1. the offset fence: for every partition of the batch, `next_offset` moves from the
//!    value this instance read it at to the batch's end, or the transaction fails
//!    ([`Error::Fenced`]): another instance committed that partition meanwhile (a
//!    rebalance), so this batch is dropped and re-read from the stored offsets; and
//!    the same for the sequence of every partition number of the batch, which fences
//!    the users' state ([`crate::user_state`]);
//! 2. the rollup deltas (counters and keyed counters added, members inserted);
//! 3. per partition, one `dedup_log` row with the keys of the events now counted
//!    ([`crate::dedup`]: the de-duplication lookup itself is in memory);
//! 4. per partition number, one `user_state_log` row with the state of the users it
//!    changed;
//! 5. the partitions' watermarks, and the outbox rows naming the (minute, partition)
//!    pairs whose Redis view must be written.
//!
//! The search index is not fed from here: it reads Kafka itself ([`crate::search`]).
//!
//! Nothing reaches Redis before this commits; see [`crate::live`].

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::time::Instant;

use tokio_postgres::Transaction;

use super::{user_state, Committed, OffsetRange, Store, UserStates};
use crate::aggregate::{Rollup, TopicPartition};
use crate::dead_letter::DeadLetter;
use crate::dedup::{self, PartitionIds};
use crate::error::Error;
use crate::recommend::Recent;
use crate::sessions::Activity;
use crate::user_state::{LogRow, OwnedUsers, PartitionUsers, UsersByNumber};

impl Store {
    /// Starts a checkpoint: opens the transaction and moves the offsets and the
    /// partition numbers' sequences (`(number, seq)` as loaded: the fences).
    ///
    /// # Errors
    ///
    /// [`Error::Fenced`] when a partition's stored offset is not `range.from`;
    /// [`Error::StateFenced`] when a number's sequence is not the one loaded;
    /// [`Error::Postgres`].
    pub async fn begin_checkpoint<'a>(
        &'a mut self,
        group: &str,
        ranges: &HashMap<TopicPartition, OffsetRange>,
        numbers: &[(i32, i64)],
    ) -> Result<Checkpoint<'a>, Error> {
        let tx = self.client.transaction().await?;
        // Sorted, so that two instances lock rows in the same order.
        let mut sorted: Vec<_> = ranges.iter().collect();
        sorted.sort_by(|a, b| a.0.cmp(b.0));
        let (known, new): (Vec<_>, Vec<_>) =
            sorted.into_iter().partition(|(_, r)| r.from.is_some());
        let mut moved: HashSet<(String, i32)> = HashSet::new();
        if !known.is_empty() {
            let topics: Vec<&str> = known.iter().map(|(tp, _)| tp.topic.as_ref()).collect();
            let partitions: Vec<i32> = known.iter().map(|(tp, _)| tp.partition).collect();
            let to: Vec<i64> = known.iter().map(|(_, r)| r.to).collect();
            let from: Vec<i64> = known
                .iter()
                .map(|(_, r)| r.from.unwrap_or(i64::MIN))
                .collect();
            for row in tx
                .query(
                    "update consumer_offsets c set next_offset = r.to_offset
                     from unnest($2::text[], $3::int[], $4::bigint[], $5::bigint[])
                         as r(topic, partition, to_offset, from_offset)
                     where c.group_id = $1 and c.topic = r.topic and c.partition = r.partition
                       and c.next_offset = r.from_offset
                     returning c.topic, c.partition",
                    &[&group, &topics, &partitions, &to, &from],
                )
                .await?
            {
                moved.insert((row.get(0), row.get(1)));
            }
        }
        if !new.is_empty() {
            let topics: Vec<&str> = new.iter().map(|(tp, _)| tp.topic.as_ref()).collect();
            let partitions: Vec<i32> = new.iter().map(|(tp, _)| tp.partition).collect();
            let to: Vec<i64> = new.iter().map(|(_, r)| r.to).collect();
            for row in tx
                .query(
                    "insert into consumer_offsets (group_id, topic, partition, next_offset, watermark_ms)
                     select $1, r.topic, r.partition, r.to_offset, $5::bigint
                     from unnest($2::text[], $3::int[], $4::bigint[]) as r(topic, partition, to_offset)
                     on conflict do nothing
                     returning topic, partition",
                    &[&group, &topics, &partitions, &to, &i64::MIN],
                )
                .await?
            {
                moved.insert((row.get(0), row.get(1)));
            }
        }
        // The first partition (in order) another consumer committed meanwhile.
        if let Some((tp, _)) = known
            .iter()
            .chain(new.iter())
            .find(|(tp, _)| !moved.contains(&(tp.topic.to_string(), tp.partition)))
        {
            return Err(Error::Fenced {
                topic: tp.topic.to_string(),
                partition: tp.partition,
            });
        }
        user_state::fence_numbers(&tx, group, numbers).await?;
        Ok(Checkpoint {
            tx,
            group: group.to_owned(),
            ranges: ranges.clone(),
            numbers: numbers.iter().copied().collect(),
        })
    }

    /// The de-duplication keys of a partition committed up to `next_offset` (its
    /// committed position) and filed at or after `since_minute` (`None`: all).
    ///
    /// # Errors
    ///
    /// [`Error::Postgres`]; [`Error::Corrupt`] for a row that cannot be read.
    pub async fn load_seen(
        &self,
        group: &str,
        tp: &TopicPartition,
        next_offset: i64,
        since_minute: Option<i64>,
    ) -> Result<PartitionIds, Error> {
        let rows = self
            .client
            .query(
                "select ids from dedup_log
                 where group_id = $1 and topic = $2 and partition = $3 and to_offset <= $4
                   and max_minute >= $5
                 order by to_offset",
                &[
                    &group,
                    &tp.topic.as_ref(),
                    &tp.partition,
                    &next_offset,
                    &since_minute.unwrap_or(i64::MIN),
                ],
            )
            .await?;
        let mut ids = PartitionIds::default();
        for row in rows {
            let bytes: &[u8] = row.get(0);
            dedup::decode_into(bytes, &mut ids)
                .map_err(|e| Error::Corrupt(format!("{e} ({}/{})", tp.topic, tp.partition)))?;
        }
        Ok(ids)
    }
}

/// A checkpoint transaction whose offsets have been fenced.
pub struct Checkpoint<'a> {
    tx: Transaction<'a>,
    group: String,
    ranges: HashMap<TopicPartition, OffsetRange>,
    /// The fenced partition numbers and the sequence each was loaded at.
    numbers: HashMap<i32, i64>,
}

/// What [`Checkpoint::write`] stored for a set of events.
#[derive(Debug, Default)]
pub struct Written {
    /// The deltas the events made.
    pub rollup: Rollup,
    /// The absolute values after them.
    pub committed: Committed,
    /// The users' state log row written per partition number.
    pub logs: Vec<(i32, LogRow)>,
}

/// Whether [`Checkpoint::write`] keeps what it wrote or only tries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    /// Keep the writes (they commit with the checkpoint).
    Keep,
    /// Roll them back whatever happens: only find out whether the store accepts them.
    Probe,
}

impl Checkpoint<'_> {
    /// Stores a set of events inside a savepoint of the checkpoint transaction: takes
    /// the committed state of `users` (`(partition number, user)`) from `owned`, lets
    /// `aggregate` turn it into the rollup, and writes it with the users' log rows. On
    /// an error the savepoint is rolled back and the fenced transaction stays usable,
    /// so the caller can try a subset of the events instead (see [`crate::isolate`]).
    ///
    /// # Errors
    ///
    /// [`Error::Postgres`] (a value the database refuses: see [`Error::disposition`]).
    pub async fn write<F>(
        &mut self,
        users: &[(i32, &str)],
        owned: &OwnedUsers,
        settings: &WriteSettings,
        attempt: Attempt,
        aggregate: F,
    ) -> Result<Written, Error>
    where
        F: Fn(UserStates) -> Rollup,
    {
        let savepoint = self.tx.savepoint("events").await?;
        let result = write_data(
            &savepoint,
            &self.group,
            &self.ranges,
            &self.numbers,
            users,
            owned,
            settings,
            &aggregate,
        )
        .await;
        match (result, attempt) {
            (Ok(written), Attempt::Keep) => {
                savepoint.commit().await?;
                Ok(written)
            }
            (Ok(written), Attempt::Probe) => {
                savepoint.rollback().await?;
                Ok(written)
            }
            (Err(e), _) => {
                // Should the rollback itself fail, the connection is gone: that error
                // (retried) says more than the statement's.
                savepoint.rollback().await?;
                Err(e)
            }
        }
    }

    /// Queues dead letters in this transaction: each record once (a record already
    /// queued by an earlier checkpoint of its partition is left alone); the dead-letter
    /// publisher ([`crate::dead_letter`]) produces them after the commit.
    ///
    /// # Errors
    ///
    /// [`Error::Postgres`].
    pub async fn queue_dead_letters(&self, letters: &[DeadLetter]) -> Result<(), Error> {
        for letter in letters {
            let keys: Vec<&str> = letter.headers.iter().map(|(k, _)| k.as_str()).collect();
            let values: Vec<Option<&[u8]>> =
                letter.headers.iter().map(|(_, v)| v.as_deref()).collect();
            self.tx
                .execute(
                    "insert into dead_letter_outbox
                         (topic, partition, record_offset, reason, message, record_key, payload,
                          header_keys, header_values)
                     values ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                     on conflict (topic, partition, record_offset) do nothing",
                    &[
                        &letter.topic,
                        &letter.partition,
                        &letter.offset,
                        &letter.reason,
                        &letter.message,
                        &letter.key.as_deref(),
                        &letter.payload.as_slice(),
                        &keys,
                        &values,
                    ],
                )
                .await?;
        }
        Ok(())
    }

    /// Commits: the offsets, everything written and the dead letters at once.
    ///
    /// # Errors
    ///
    /// [`Error::Postgres`]; nothing is committed then.
    pub async fn commit(self) -> Result<(), Error> {
        self.tx.commit().await?;
        Ok(())
    }
}

/// Awaits one statement of a checkpoint, recording its time in
/// `processor_checkpoint_statement_seconds{statement}`.
async fn timed<T, E>(
    statement: &'static str,
    work: impl Future<Output = Result<T, E>>,
) -> Result<T, E> {
    let started = Instant::now();
    let result = work.await;
    metrics::histogram!("processor_checkpoint_statement_seconds", "statement" => statement)
        .record(started.elapsed().as_secs_f64());
    result
}

/// Writes one `dedup_log` row per partition with the keys `rollup` counted there,
/// keyed by the end of the partition's committed range ([`crate::dedup`]).
async fn write_dedup_log(
    tx: &Transaction<'_>,
    group: &str,
    ranges: &HashMap<TopicPartition, OffsetRange>,
    rollup: &Rollup,
) -> Result<(), Error> {
    let mut topics = Vec::new();
    let mut partitions = Vec::new();
    let mut to_offsets = Vec::new();
    let mut oldest = Vec::new();
    let mut newest = Vec::new();
    let mut blobs = Vec::new();
    for (tp, ids) in &rollup.seen {
        let (Some(range), Some((min, max, bytes))) = (ranges.get(tp), dedup::encode(ids)) else {
            continue;
        };
        topics.push(tp.topic.as_ref());
        partitions.push(tp.partition);
        to_offsets.push(range.to);
        oldest.push(min);
        newest.push(max);
        blobs.push(bytes);
    }
    if topics.is_empty() {
        return Ok(());
    }
    tx.execute(
        "insert into dedup_log (group_id, topic, partition, to_offset, min_minute, max_minute, ids)
         select $1, * from unnest($2::text[], $3::int[], $4::bigint[], $5::bigint[], $6::bigint[], $7::bytea[])",
        &[&group, &topics, &partitions, &to_offsets, &oldest, &newest, &blobs],
    )
    .await?;
    Ok(())
}

/// What a checkpoint's data write needs besides the events.
#[derive(Debug, Clone, Copy)]
pub struct WriteSettings {
    /// A snapshot of a partition number's users leaves out those whose newest event
    /// is before this (Unix ms).
    pub user_cutoff_ms: i64,
    /// Log bytes of a number's users' state before a snapshot, at least.
    pub snapshot_min_bytes: usize,
}

/// The data part of a checkpoint (see [`Checkpoint::write`]).
#[allow(clippy::too_many_arguments)]
async fn write_data<F>(
    tx: &Transaction<'_>,
    group: &str,
    ranges: &HashMap<TopicPartition, OffsetRange>,
    numbers: &HashMap<i32, i64>,
    users: &[(i32, &str)],
    owned: &OwnedUsers,
    settings: &WriteSettings,
    aggregate: &F,
) -> Result<Written, Error>
where
    F: Fn(UserStates) -> Rollup,
{
    let mut states = UserStates::default();
    for &(number, user) in users {
        if states.activity.contains_key(user) {
            continue;
        }
        if let Some(state) = owned.get(number, user) {
            states
                .activity
                .insert(user.to_owned(), state.activity.clone());
            states.recent.insert(user.to_owned(), state.recent.clone());
        }
    }
    let started = Instant::now();
    let rollup = aggregate(states);
    metrics::histogram!("processor_checkpoint_phase_seconds", "phase" => "aggregate")
        .record(started.elapsed().as_secs_f64());
    let logs = log_rows(users, owned, &rollup, settings);
    let rows: Vec<(i32, i64, &LogRow)> = logs
        .iter()
        .map(|(number, row)| {
            let loaded = numbers.get(number).copied().unwrap_or(0);
            (*number, loaded + 1, row)
        })
        .collect();
    timed("user_state", user_state::write_log(tx, group, &rows)).await?;
    let mut committed = Committed::default();

    let (m, t, p, k, v) = unzip5(rollup.counts.iter().map(|((minute, tp, metric), delta)| {
        (
            *minute,
            tp.topic.as_ref(),
            tp.partition,
            metric.as_str(),
            *delta,
        )
    }));
    if !m.is_empty() {
        for r in timed("counts", tx
            .query(
                concat!(
                    "insert into rollup_counts (minute, topic, partition, metric, value)
                     select * from unnest($1::bigint[], $2::text[], $3::int[], $4::text[], $5::bigint[])
                     on conflict (minute, topic, partition, metric)
                     do update set value = ",
                    saturating_add!("rollup_counts.value", "excluded.value"),
                    " returning minute, topic, partition, metric, value"
                ),
                &[&m, &t, &p, &k, &v],
            ))
            .await?
        {
            committed.counts.push((r.get(0), TopicPartition::new(r.get(1), r.get(2)), r.get(3), r.get(4)));
        }
    }

    let mut tm = Vec::new();
    let mut tt = Vec::new();
    let mut tpn = Vec::new();
    let mut td = Vec::new();
    let mut tk = Vec::new();
    let mut tv = Vec::new();
    for ((minute, tp, dim, key), delta) in &rollup.tops {
        tm.push(*minute);
        tt.push(tp.topic.as_ref());
        tpn.push(tp.partition);
        td.push(*dim);
        tk.push(key.as_str());
        tv.push(*delta);
    }
    if !tm.is_empty() {
        for r in timed("tops", tx
            .query(
                concat!(
                    "insert into rollup_tops (minute, topic, partition, dimension, key, value)
                     select * from unnest($1::bigint[], $2::text[], $3::int[], $4::text[], $5::text[], $6::bigint[])
                     on conflict (minute, topic, partition, dimension, key)
                     do update set value = ",
                    saturating_add!("rollup_tops.value", "excluded.value"),
                    " returning minute, topic, partition, dimension, key, value"
                ),
                &[&tm, &tt, &tpn, &td, &tk, &tv],
            ))
            .await?
        {
            committed.tops.push((
                r.get(0),
                TopicPartition::new(r.get(1), r.get(2)),
                r.get(3),
                r.get(4),
                r.get(5),
            ));
        }
    }

    if !rollup.members.is_empty() {
        let mm: Vec<i64> = rollup.members.iter().map(|x| x.0).collect();
        let ms: Vec<&str> = rollup.members.iter().map(|x| x.1.as_str()).collect();
        let mu: Vec<&str> = rollup.members.iter().map(|x| x.2.as_str()).collect();
        // One row per (minute, set) and checkpoint, not one per member (migration 0012).
        timed(
            "members",
            tx.execute(
                "insert into rollup_member_blocks (minute, set_name, members)
                 select minute, set_name, array_agg(member)
                 from unnest($1::bigint[], $2::text[], $3::text[]) as m(minute, set_name, member)
                 group by minute, set_name",
                &[&mm, &ms, &mu],
            ),
        )
        .await?;
    }

    timed("dedup_log", write_dedup_log(tx, group, ranges, &rollup)).await?;

    if let Some((pairs, deltas)) = rollup.pairs.encode() {
        timed(
            "pair_log",
            tx.execute(
                "insert into pair_log (pairs, deltas) values ($1, $2)",
                &[&pairs, &deltas],
            ),
        )
        .await?;
    }

    let mut marks: Vec<(&TopicPartition, i64)> = rollup
        .watermarks
        .iter()
        .filter(|(tp, _)| ranges.contains_key(*tp))
        .map(|(tp, w)| (tp, *w))
        .collect();
    if !marks.is_empty() {
        marks.sort();
        let topics: Vec<&str> = marks.iter().map(|(tp, _)| tp.topic.as_ref()).collect();
        let partitions: Vec<i32> = marks.iter().map(|(tp, _)| tp.partition).collect();
        let values: Vec<i64> = marks.iter().map(|(_, w)| *w).collect();
        timed(
            "watermarks",
            tx.execute(
                "update consumer_offsets c set watermark_ms = w.watermark
                 from unnest($2::text[], $3::int[], $4::bigint[]) as w(topic, partition, watermark)
                 where c.group_id = $1 and c.topic = w.topic and c.partition = w.partition",
                &[&group, &topics, &partitions, &values],
            ),
        )
        .await?;
    }

    let mut outbox: HashMap<(i64, &TopicPartition), i64> = HashMap::new();
    for (minute, tp, _, _) in &committed.counts {
        if let Some(range) = ranges.get(tp) {
            outbox.insert((*minute, tp), range.to);
        }
    }
    for (minute, tp, _, _, _) in &committed.tops {
        if let Some(range) = ranges.get(tp) {
            outbox.insert((*minute, tp), range.to);
        }
    }
    if !outbox.is_empty() {
        let om: Vec<i64> = outbox.keys().map(|k| k.0).collect();
        let ot: Vec<&str> = outbox.keys().map(|k| k.1.topic.as_ref()).collect();
        let op: Vec<i32> = outbox.keys().map(|k| k.1.partition).collect();
        let ov: Vec<i64> = outbox.values().copied().collect();
        // `xmax = 0` holds for rows this statement inserted, not for updated ones.
        let rows = timed(
            "redis_outbox",
            tx.query(
                "insert into redis_outbox (minute, topic, partition, version)
                 select * from unnest($1::bigint[], $2::text[], $3::int[], $4::bigint[])
                 on conflict (minute, topic, partition)
                 do update set version = greatest(redis_outbox.version, excluded.version)
                 returning xmax::text = '0'",
                &[&om, &ot, &op, &ov],
            ),
        )
        .await?;
        committed.backlog = rows.iter().any(|r| !r.get::<_, bool>(0));
    }
    Ok(Written {
        rollup,
        committed,
        logs,
    })
}

/// The log row of each partition number whose users `rollup` changed: `users` is the
/// batch's `(number, user)`; a user under several numbers is written to each.
fn log_rows(
    users: &[(i32, &str)],
    owned: &OwnedUsers,
    rollup: &Rollup,
    settings: &WriteSettings,
) -> Vec<(i32, LogRow)> {
    let grouped = UsersByNumber::new(users);
    let empty = Recent::default();
    let empty_users = PartitionUsers::default();
    grouped
        .numbers()
        .filter_map(|number| {
            let changed: Vec<(&str, &Activity, &Recent)> = grouped
                .of(number)
                .filter_map(|m| {
                    let (member, activity) = rollup.activity.get_key_value(m)?;
                    let recent = rollup.recent.get(m).unwrap_or(&empty);
                    Some((member.as_str(), activity, recent))
                })
                .collect();
            if changed.is_empty() {
                return None;
            }
            let current = owned.number(number).unwrap_or(&empty_users);
            Some((
                number,
                current.log_row(
                    changed.iter().copied(),
                    settings.user_cutoff_ms,
                    settings.snapshot_min_bytes,
                ),
            ))
        })
        .collect()
}

type Columns5<'a> = (Vec<i64>, Vec<&'a str>, Vec<i32>, Vec<&'a str>, Vec<i64>);

fn unzip5<'a>(rows: impl Iterator<Item = (i64, &'a str, i32, &'a str, i64)>) -> Columns5<'a> {
    let mut out: Columns5<'a> = Default::default();
    for (a, b, c, d, e) in rows {
        out.0.push(a);
        out.1.push(b);
        out.2.push(c);
        out.3.push(d);
        out.4.push(e);
    }
    out
}
