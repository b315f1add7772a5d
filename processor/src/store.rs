//! PostgreSQL: schema migrations, the committed positions, the catalog, and the
//! checkpoint transaction that makes results exactly-once.
//!
//! ## The checkpoint
//!
//! One transaction holds, for one batch of records:
//!
//! 1. the offset fence: for every partition of the batch, `next_offset` moves from the
//!    value this instance read it at to the batch's end, or the transaction fails
//!    ([`Error::Fenced`]): another instance committed that partition meanwhile (a
//!    rebalance), so this batch is dropped and re-read from the stored offsets;
//! 2. the rollup deltas (counters and keyed counters added, members inserted);
//! 3. per partition, one `dedup_log` row with the keys of the events now counted
//!    ([`crate::dedup`]: the de-duplication lookup itself is in memory);
//! 4. the partitions' watermarks, and the outbox rows naming the (minute, partition)
//!    pairs whose Redis view must be written;
//! 5. with the search sink on, the search documents of the newly counted events
//!    (`search_outbox`, see [`crate::search`]).
//!
//! Nothing reaches Redis before this commits; see [`crate::live`].

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::time::{Duration, Instant};

use tokio_postgres::{Client, NoTls, Transaction};

use crate::aggregate::{Rollup, TopicPartition};
use crate::catalog::Catalog;
use crate::dead_letter::DeadLetter;
use crate::dedup::{self, PartitionIds};
use crate::error::{Disposition, Error};
use crate::recommend::pair_log::{self, PairSums};
use crate::recommend::{self, Neighbours, Recent};
use crate::sessions::Activity;

/// The migrations, applied in order and recorded in `schema_migrations`.
const MIGRATIONS: &[(i32, &str, &str)] = &[
    (
        1,
        "0001_initial.sql",
        include_str!("../migrations/0001_initial.sql"),
    ),
    (
        2,
        "0002_user_activity.sql",
        include_str!("../migrations/0002_user_activity.sql"),
    ),
    (
        3,
        "0003_recommendations.sql",
        include_str!("../migrations/0003_recommendations.sql"),
    ),
    (
        4,
        "0004_search_outbox.sql",
        include_str!("../migrations/0004_search_outbox.sql"),
    ),
    (
        5,
        "0005_counter_fillfactor.sql",
        include_str!("../migrations/0005_counter_fillfactor.sql"),
    ),
    (
        6,
        "0006_dead_letter_outbox.sql",
        include_str!("../migrations/0006_dead_letter_outbox.sql"),
    ),
    (
        7,
        "0007_dedup_log.sql",
        include_str!("../migrations/0007_dedup_log.sql"),
    ),
    (
        8,
        "0008_pair_log.sql",
        include_str!("../migrations/0008_pair_log.sql"),
    ),
];

/// The committed position of a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// The next offset to read.
    pub next_offset: i64,
    /// The event-time watermark (Unix ms).
    pub watermark_ms: i64,
}

/// A partition's part of a checkpoint: where it was read from and to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffsetRange {
    /// The committed next offset when the batch started (`None`: never committed).
    pub from: Option<i64>,
    /// The next offset after the batch.
    pub to: i64,
}

/// The absolute values after a checkpoint, for the Redis view.
#[derive(Debug, Default)]
pub struct Committed {
    /// (minute, source, metric) → value.
    pub counts: Vec<(i64, TopicPartition, String, i64)>,
    /// (minute, source, dimension, key) → value.
    pub tops: Vec<(i64, TopicPartition, String, String, i64)>,
    /// Whether an outbox row of this checkpoint was already pending (an earlier write
    /// of that view failed): then the view needs a full re-write, not only these values.
    pub backlog: bool,
}

/// The committed per-user state of a batch's users.
#[derive(Debug, Default)]
pub struct UserStates {
    /// Event times, for sessions.
    pub activity: HashMap<String, Activity>,
    /// Recent products, for recommendations.
    pub recent: HashMap<String, Recent>,
}

pub use crate::recommend::Recommendation;

/// A PostgreSQL connection.
pub struct Store {
    client: Client,
}

impl Store {
    /// Connects (the connection runs on a spawned task).
    ///
    /// # Errors
    ///
    /// [`Error::Postgres`] when the server cannot be reached, [`Error::Timeout`] after
    /// `timeout`.
    pub async fn connect(url: &str, timeout: Duration) -> Result<Store, Error> {
        let mut config: tokio_postgres::Config = url.parse()?;
        config.connect_timeout(timeout);
        let (client, connection) = tokio::time::timeout(timeout, config.connect(NoTls))
            .await
            .map_err(|_| Error::Timeout("connecting to PostgreSQL"))??;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::warn!(error = %e, "PostgreSQL connection closed");
            }
        });
        Ok(Store { client })
    }

    /// Whether the connection is gone (then connect again).
    pub fn is_closed(&self) -> bool {
        self.client.is_closed()
    }

    /// The connection kept in `slot`, opened when there is none or it closed: how the
    /// background jobs keep their own connection across PostgreSQL restarts.
    ///
    /// # Errors
    ///
    /// [`Error::Postgres`] or [`Error::Timeout`] when connecting fails (`slot` is then
    /// empty).
    pub async fn reopen<'s>(
        slot: &'s mut Option<Store>,
        url: &str,
        timeout: Duration,
    ) -> Result<&'s mut Store, Error> {
        let store = match slot.take() {
            Some(store) if !store.is_closed() => store,
            _ => Store::connect(url, timeout).await?,
        };
        Ok(slot.insert(store))
    }

    /// Applies the migrations not applied yet, each in its own transaction, under an
    /// advisory lock so instances starting together do not race.
    ///
    /// # Errors
    ///
    /// [`Error::Migration`] naming the file that failed.
    pub async fn migrate(&mut self) -> Result<Vec<&'static str>, Error> {
        self.client
            .batch_execute(
                "create table if not exists schema_migrations (
                     version int primary key,
                     name text not null,
                     applied_at timestamptz not null default now())",
            )
            .await?;
        let mut applied = Vec::new();
        for &(version, name, sql) in MIGRATIONS {
            let tx = self.client.transaction().await?;
            tx.execute("select pg_advisory_xact_lock(7268126)", &[])
                .await?;
            let done = tx
                .query_opt(
                    "select 1 from schema_migrations where version = $1",
                    &[&version],
                )
                .await?
                .is_some();
            if !done {
                tx.batch_execute(sql)
                    .await
                    .map_err(|source| Error::Migration {
                        name: name.to_owned(),
                        source,
                    })?;
                tx.execute(
                    "insert into schema_migrations (version, name) values ($1, $2)",
                    &[&version, &name],
                )
                .await?;
                applied.push(name);
            }
            tx.commit().await?;
        }
        Ok(applied)
    }

    /// The committed position of a partition, if any.
    ///
    /// # Errors
    ///
    /// [`Error::Postgres`].
    pub async fn position(
        &self,
        group: &str,
        tp: &TopicPartition,
    ) -> Result<Option<Position>, Error> {
        let row = self
            .client
            .query_opt(
                "select next_offset, watermark_ms from consumer_offsets
                 where group_id = $1 and topic = $2 and partition = $3",
                &[&group, &tp.topic, &tp.partition],
            )
            .await?;
        Ok(row.map(|r| Position {
            next_offset: r.get(0),
            watermark_ms: r.get(1),
        }))
    }

    /// Loads the catalog (at most `max_products` products) and the rates.
    ///
    /// # Errors
    ///
    /// [`Error::Postgres`].
    pub async fn load_catalog(
        &self,
        reporting_currency: &str,
        max_products: usize,
    ) -> Result<Catalog, Error> {
        let mut catalog = Catalog::new(reporting_currency);
        let limit = i64::try_from(max_products).unwrap_or(i64::MAX);
        for row in self
            .client
            .query(
                "select id, name, category from products order by id limit $1",
                &[&limit],
            )
            .await?
        {
            catalog.insert_product(row.get(0), row.get(1), row.get(2));
        }
        for row in self
            .client
            .query(
                "select currency, rate_to_reporting from currency_rates",
                &[],
            )
            .await?
        {
            catalog.insert_rate(&row.get::<_, String>(0).to_ascii_uppercase(), row.get(1));
        }
        Ok(catalog)
    }

    /// Starts a checkpoint: opens the transaction and moves the offsets (the fence).
    ///
    /// # Errors
    ///
    /// [`Error::Fenced`] when a partition's stored offset is not `range.from`;
    /// [`Error::Postgres`].
    pub async fn begin_checkpoint<'a>(
        &'a mut self,
        group: &str,
        ranges: &HashMap<TopicPartition, OffsetRange>,
    ) -> Result<Checkpoint<'a>, Error> {
        let tx = self.client.transaction().await?;
        // Sorted, so that two instances lock rows in the same order.
        let mut sorted: Vec<_> = ranges.iter().collect();
        sorted.sort_by(|a, b| a.0.cmp(b.0));
        let (known, new): (Vec<_>, Vec<_>) =
            sorted.into_iter().partition(|(_, r)| r.from.is_some());
        let mut moved: HashSet<(String, i32)> = HashSet::new();
        if !known.is_empty() {
            let topics: Vec<&str> = known.iter().map(|(tp, _)| tp.topic.as_str()).collect();
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
            let topics: Vec<&str> = new.iter().map(|(tp, _)| tp.topic.as_str()).collect();
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
            .find(|(tp, _)| !moved.contains(&(tp.topic.clone(), tp.partition)))
        {
            return Err(Error::Fenced {
                topic: tp.topic.clone(),
                partition: tp.partition,
            });
        }
        Ok(Checkpoint {
            tx,
            group: group.to_owned(),
            ranges: ranges.clone(),
        })
    }

    /// Deletes the `dedup_log` rows of `group` whose newest minute is more than
    /// `window_minutes` before their partition's committed watermark (no loaded
    /// partition reads them any more, [`crate::dedup`]); returns the rows deleted.
    ///
    /// # Errors
    ///
    /// [`Error::Postgres`].
    pub async fn prune_dedup_log(&self, group: &str, window_minutes: i64) -> Result<u64, Error> {
        Ok(self
            .client
            .execute(
                "delete from dedup_log d using consumer_offsets o
                 where d.group_id = $1 and o.group_id = d.group_id and o.topic = d.topic
                   and o.partition = d.partition and o.watermark_ms > -9223372036854775808
                   and d.max_minute < (o.watermark_ms / 60000) * 60 - $2::bigint * 60",
                &[&group, &window_minutes],
            )
            .await?)
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
                    &tp.topic,
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

    /// Deletes the per-minute rollups (counters, tops, members) and Redis outbox rows of
    /// the minutes before `before_minute`; returns the rows deleted.
    ///
    /// # Errors
    ///
    /// [`Error::Postgres`].
    pub async fn prune_rollups(&self, before_minute: i64) -> Result<u64, Error> {
        let mut deleted = 0;
        for table in [
            "rollup_counts",
            "rollup_tops",
            "rollup_members",
            "redis_outbox",
        ] {
            deleted += self
                .client
                .execute(
                    &format!("delete from {table} where minute < $1"),
                    &[&before_minute],
                )
                .await?;
        }
        Ok(deleted)
    }

    /// Deletes the state of users whose newest event is before `before_ms` (or who have
    /// none): their sessions have ended and their recent products are forgotten; returns
    /// the users deleted.
    ///
    /// # Errors
    ///
    /// [`Error::Postgres`].
    pub async fn prune_activity(&self, before_ms: i64) -> Result<u64, Error> {
        Ok(self
            .client
            .execute(
                "delete from user_activity
                 where coalesce(times[cardinality(times)], -9223372036854775808) < $1",
                &[&before_ms],
            )
            .await?)
    }

    /// Takes up to `limit` queued dead letters, oldest first, locked (skipped by any other
    /// instance's publisher) until [`ClaimedLetters::done`] or drop.
    ///
    /// # Errors
    ///
    /// [`Error::Postgres`].
    pub async fn claim_dead_letters(&mut self, limit: i64) -> Result<ClaimedLetters<'_>, Error> {
        let tx = self.client.transaction().await?;
        let rows = tx
            .query(
                "select seq, topic, partition, record_offset, reason, message, record_key,
                        payload, header_keys, header_values
                 from dead_letter_outbox order by seq limit $1 for update skip locked",
                &[&limit],
            )
            .await?;
        let letters = rows
            .iter()
            .map(|r| {
                let keys: Vec<String> = r.get(8);
                let values: Vec<Option<Vec<u8>>> = r.get(9);
                (
                    r.get(0),
                    DeadLetter {
                        topic: r.get(1),
                        partition: r.get(2),
                        offset: r.get(3),
                        reason: r.get(4),
                        message: r.get(5),
                        key: r.get(6),
                        payload: r.get(7),
                        headers: keys.into_iter().zip(values).collect(),
                    },
                )
            })
            .collect();
        Ok(ClaimedLetters { tx, letters })
    }

    /// Dead letters queued and not yet acknowledged by Kafka, and the age of the oldest
    /// in seconds (0 when none).
    ///
    /// # Errors
    ///
    /// [`Error::Postgres`].
    pub async fn dead_letter_lag(&self) -> Result<(i64, f64), Error> {
        let row = self
            .client
            .query_one(
                "select count(*), coalesce(extract(epoch from now() - min(queued_at)), 0)::float8
                 from dead_letter_outbox",
                &[],
            )
            .await?;
        Ok((row.get(0), row.get(1)))
    }

    /// Folds pending `pair_log` rows into `product_pairs` (see
    /// [`crate::recommend::fold`]): in one transaction, deletes the oldest rows holding
    /// about `max_pairs` pairs (at least one row) and adds their summed deltas. While
    /// another connection folds, waits for it with `wait`, else does nothing. A row that cannot be read is logged and
    /// dropped; a pair PostgreSQL refuses is isolated (bisection in savepoints), logged
    /// with its SQLSTATE and dropped, so one bad value never stops the fold.
    ///
    /// # Errors
    ///
    /// [`Error::Postgres`]; nothing is folded then.
    pub async fn fold_pairs(&mut self, max_pairs: i64, wait: bool) -> Result<Folded, Error> {
        let mut tx = self.client.transaction().await?;
        if wait {
            tx.execute("select pg_advisory_xact_lock($1)", &[&PAIR_FOLD_LOCK])
                .await?;
        } else {
            let locked: bool = tx
                .query_one("select pg_try_advisory_xact_lock($1)", &[&PAIR_FOLD_LOCK])
                .await?
                .get(0);
            if !locked {
                return Ok(Folded::default());
            }
        }
        let rows = tx
            .query(
                "delete from pair_log where seq in (
                     select seq from (
                         select seq, (sum(pairs) over (order by seq) - pairs)::bigint as before
                         from pair_log) t
                     where before < $1)
                 returning seq, pairs, deltas",
                &[&max_pairs],
            )
            .await?;
        let mut folded = Folded {
            rows: rows.len(),
            ..Folded::default()
        };
        let mut sums = PairSums::default();
        for row in &rows {
            let seq: i64 = row.get(0);
            let logged: i64 = row.get(1);
            folded.logged = folded.logged.saturating_add(logged);
            let deltas: &[u8] = row.get(2);
            if let Err(e) = sums.add(deltas) {
                folded.corrupt += 1;
                tracing::error!(error = %e, seq, "a pair_log row cannot be read: its pair counts are dropped");
            }
        }
        folded.pairs = sums.len();
        let pairs = sums.rows();
        let mut pending: Vec<&[(&str, &str, &str, i64)]> = pairs.chunks(50_000).collect();
        while let Some(chunk) = pending.pop() {
            let savepoint = tx.savepoint("pairs").await?;
            match upsert_pairs(&savepoint, chunk).await {
                Ok(()) => savepoint.commit().await?,
                Err(e) if e.disposition() == Disposition::Data => {
                    savepoint.rollback().await?;
                    if let [(kind, a, b, _)] = chunk {
                        folded.refused += 1;
                        tracing::error!(error = %e, sqlstate = e.sqlstate().unwrap_or(""),
                            kind, a = %clip(a), b = %clip(b),
                            "PostgreSQL refuses a product pair: its count is dropped");
                    } else {
                        let (left, right) = chunk.split_at(chunk.len() / 2);
                        pending.push(right);
                        pending.push(left);
                    }
                }
                Err(e) => return Err(e),
            }
        }
        tx.commit().await?;
        Ok(folded)
    }

    /// Rows waiting in `pair_log`, and the age of the oldest (seconds).
    ///
    /// # Errors
    ///
    /// [`Error::Postgres`].
    pub async fn pair_log_lag(&self) -> Result<(i64, f64), Error> {
        let row = self
            .client
            .query_one(
                "select count(*), coalesce(extract(epoch from now() - min(queued_at)), 0)::float8
                 from pair_log",
                &[],
            )
            .await?;
        Ok((row.get(0), row.get(1)))
    }

    /// Keeps at most `max_per_kind` product pairs per kind (co-view, co-purchase): the
    /// most counted (ties by product ids); returns the rows deleted. A deleted pair seen
    /// again starts counting anew.
    ///
    /// # Errors
    ///
    /// [`Error::Postgres`].
    pub async fn prune_pairs(&self, max_per_kind: i64) -> Result<u64, Error> {
        Ok(self
            .client
            .execute(
                "delete from product_pairs p using (
                     select kind, a, b from (
                         select kind, a, b,
                                row_number() over (partition by kind order by count desc, a, b) as rank
                         from product_pairs) ranked
                     where rank > $1) old
                 where p.kind = old.kind and p.a = old.a and p.b = old.b",
                &[&max_per_kind],
            )
            .await?)
    }

    /// The outbox: (minute, source) pairs whose Redis view may lag, with their version.
    ///
    /// # Errors
    ///
    /// [`Error::Postgres`].
    pub async fn outbox(&mut self, limit: i64) -> Result<Vec<(i64, TopicPartition, i64)>, Error> {
        let rows = self
            .client
            .query(
                "select minute, topic, partition, version from redis_outbox
                 order by minute, topic, partition limit $1",
                &[&limit],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| (r.get(0), TopicPartition::new(r.get(1), r.get(2)), r.get(3)))
            .collect())
    }

    /// Everything committed for one (minute, source), and the minute's members.
    ///
    /// # Errors
    ///
    /// [`Error::Postgres`].
    pub async fn committed_for(
        &mut self,
        minute: i64,
        tp: &TopicPartition,
    ) -> Result<(Committed, Vec<(String, String)>, i64), Error> {
        let tx = self
            .client
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await?;
        let version: i64 = match tx
            .query_opt(
                "select version from redis_outbox where minute = $1 and topic = $2 and partition = $3",
                &[&minute, &tp.topic, &tp.partition],
            )
            .await?
        {
            Some(row) => row.get(0),
            None => return Ok((Committed::default(), Vec::new(), -1)),
        };
        let mut committed = Committed::default();
        for r in tx
            .query(
                "select metric, value from rollup_counts where minute = $1 and topic = $2 and partition = $3",
                &[&minute, &tp.topic, &tp.partition],
            )
            .await?
        {
            committed.counts.push((minute, tp.clone(), r.get(0), r.get(1)));
        }
        for r in tx
            .query(
                "select dimension, key, value from rollup_tops where minute = $1 and topic = $2 and partition = $3",
                &[&minute, &tp.topic, &tp.partition],
            )
            .await?
        {
            committed.tops.push((minute, tp.clone(), r.get(0), r.get(1), r.get(2)));
        }
        let members = tx
            .query(
                "select set_name, member from rollup_members where minute = $1",
                &[&minute],
            )
            .await?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        tx.commit().await?;
        Ok((committed, members, version))
    }

    /// Queues every (minute, partition) of `group` with rollups from `since_minute` on in
    /// the Redis outbox, at the partition's committed offset, so that the live view is
    /// re-written from the committed tables (after Redis lost its data). Returns the rows
    /// queued.
    ///
    /// # Errors
    ///
    /// [`Error::Postgres`].
    pub async fn requeue_live(&self, group: &str, since_minute: i64) -> Result<u64, Error> {
        Ok(self
            .client
            .execute(
                "insert into redis_outbox (minute, topic, partition, version)
                 select distinct r.minute, r.topic, r.partition, o.next_offset
                 from rollup_counts r
                 join consumer_offsets o
                   on o.group_id = $1 and o.topic = r.topic and o.partition = r.partition
                 where r.minute >= $2
                 on conflict (minute, topic, partition)
                 do update set version = greatest(redis_outbox.version, excluded.version)",
                &[&group, &since_minute],
            )
            .await?)
    }

    /// Removes outbox rows whose view was written at `version` or later.
    ///
    /// # Errors
    ///
    /// [`Error::Postgres`].
    pub async fn clear_outbox(&self, written: &[(i64, TopicPartition, i64)]) -> Result<(), Error> {
        if written.is_empty() {
            return Ok(());
        }
        let minutes: Vec<i64> = written.iter().map(|w| w.0).collect();
        let topics: Vec<&str> = written.iter().map(|w| w.1.topic.as_str()).collect();
        let partitions: Vec<i32> = written.iter().map(|w| w.1.partition).collect();
        let versions: Vec<i64> = written.iter().map(|w| w.2).collect();
        self.client
            .execute(
                "delete from redis_outbox o using unnest($1::bigint[], $2::text[], $3::int[], $4::bigint[])
                     as w(minute, topic, partition, version)
                 where o.minute = w.minute and o.topic = w.topic and o.partition = w.partition
                   and o.version <= w.version",
                &[&minutes, &topics, &partitions, &versions],
            )
            .await?;
        Ok(())
    }

    /// The top `n` recommendations of `user` (see [`crate::recommend`]) drawn from the
    /// top `partners` partners of each of their recent products, or `None` for a user
    /// never seen.
    ///
    /// # Errors
    ///
    /// [`Error::Postgres`].
    pub async fn recommendations(
        &self,
        user: &str,
        n: usize,
        partners: i64,
    ) -> Result<Option<Vec<Recommendation>>, Error> {
        let mut recent = self.recent_products(&[user]).await?;
        let Some((_, recent)) = recent.pop() else {
            return Ok(None);
        };
        let neighbours = self.neighbours(&recent.seeds(), partners).await?;
        Ok(Some(recommend::score(&recent, &neighbours, n)))
    }

    /// The top `n` recommendations of each of `users` that has any, drawn from the top
    /// `partners` partners of each of their recent products.
    ///
    /// PostgreSQL reads each neighbour list once per call however many of `users` share
    /// it; the scores are summed here. So one call for many users costs about one pass
    /// over the pairs of the products they touched.
    ///
    /// # Errors
    ///
    /// [`Error::Postgres`].
    pub async fn recommendations_of(
        &self,
        users: &[&str],
        n: usize,
        partners: i64,
    ) -> Result<Vec<(String, Vec<Recommendation>)>, Error> {
        let recent = self.recent_products(users).await?;
        let mut seeds: Vec<(&'static str, &str)> =
            recent.iter().flat_map(|(_, r)| r.seeds()).collect();
        seeds.sort_unstable();
        seeds.dedup();
        let neighbours = self.neighbours(&seeds, partners).await?;
        Ok(recent
            .iter()
            .map(|(user, r)| (user.clone(), recommend::score(r, &neighbours, n)))
            .filter(|(_, list)| !list.is_empty())
            .collect())
    }

    /// The recent products of each of `users` that was ever counted.
    async fn recent_products(&self, users: &[&str]) -> Result<Vec<(String, Recent)>, Error> {
        let rows = self
            .client
            .query(
                "select member, viewed, bought from user_activity where member = any($1) order by member",
                &[&users],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| {
                (
                    r.get(0),
                    Recent {
                        viewed: r.get(1),
                        bought: r.get(2),
                    },
                )
            })
            .collect())
    }

    /// The `partners` most counted partners of each `(kind, product)` in `seeds`, most
    /// counted first, ties by product id in byte order.
    async fn neighbours(&self, seeds: &[(&str, &str)], partners: i64) -> Result<Neighbours, Error> {
        let kinds: Vec<&str> = seeds.iter().map(|s| s.0).collect();
        let products: Vec<&str> = seeds.iter().map(|s| s.1).collect();
        let rows = self
            .client
            .query(
                "select d.kind, d.a, t.b, t.count
                 from unnest($1::text[], $2::text[]) as d(kind, a)
                 cross join lateral (
                     select p.b, p.count from product_pairs p
                     where p.kind = d.kind and p.a = d.a
                     order by p.count desc, p.b collate \"C\"
                     limit $3) t",
                &[&kinds, &products, &partners],
            )
            .await?;
        let mut out = Neighbours::default();
        for r in &rows {
            out.push(r.get(0), r.get(1), r.get(2), r.get(3));
        }
        Ok(out)
    }

    /// Search documents waiting for the index, oldest first: `(seq, event_id, JSON)`.
    ///
    /// # Errors
    ///
    /// [`Error::Postgres`].
    pub async fn search_outbox(&self, limit: i64) -> Result<Vec<(i64, String, String)>, Error> {
        let rows = self
            .client
            .query(
                "select seq, event_id, document from search_outbox order by seq limit $1",
                &[&limit],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect())
    }

    /// Deletes the search outbox rows `seqs` (answered by the index).
    ///
    /// # Errors
    ///
    /// [`Error::Postgres`].
    pub async fn clear_search_outbox(&self, seqs: &[i64]) -> Result<u64, Error> {
        if seqs.is_empty() {
            return Ok(0);
        }
        Ok(self
            .client
            .execute("delete from search_outbox where seq = any($1)", &[&seqs])
            .await?)
    }

    /// Deletes the oldest search outbox rows so that at most `keep` sequence numbers
    /// remain (rolled-back checkpoints leave gaps, so possibly fewer rows); returns how
    /// many were deleted.
    ///
    /// # Errors
    ///
    /// [`Error::Postgres`].
    pub async fn trim_search_outbox(&self, keep: i64) -> Result<u64, Error> {
        Ok(self
            .client
            .execute(
                "delete from search_outbox
                 where seq <= (select max(seq) from search_outbox) - $1",
                &[&keep],
            )
            .await?)
    }

    /// Queued search documents and the age of the oldest in seconds (0 when none).
    ///
    /// # Errors
    ///
    /// [`Error::Postgres`].
    pub async fn search_outbox_lag(&self) -> Result<(i64, f64), Error> {
        let row = self
            .client
            .query_one(
                "select count(*), coalesce(extract(epoch from now() - min(queued_at)), 0)::float8
                 from search_outbox",
                &[],
            )
            .await?;
        Ok((row.get(0), row.get(1)))
    }

    /// Runs one statement (for health checks).
    ///
    /// # Errors
    ///
    /// [`Error::Postgres`].
    pub async fn ping(&self) -> Result<(), Error> {
        self.client.simple_query("select 1").await?;
        Ok(())
    }
}

/// A checkpoint transaction whose offsets have been fenced.
pub struct Checkpoint<'a> {
    tx: Transaction<'a>,
    group: String,
    ranges: HashMap<TopicPartition, OffsetRange>,
}

/// Dead letters taken from the outbox by [`Store::claim_dead_letters`]: `(seq, letter)`.
pub struct ClaimedLetters<'a> {
    tx: Transaction<'a>,
    /// The letters, oldest first.
    pub letters: Vec<(i64, DeadLetter)>,
}

impl ClaimedLetters<'_> {
    /// Deletes the letters `seqs` (acknowledged by Kafka) and releases the others.
    ///
    /// # Errors
    ///
    /// [`Error::Postgres`]; the letters stay queued then and are produced again.
    pub async fn done(self, seqs: &[i64]) -> Result<(), Error> {
        if !seqs.is_empty() {
            self.tx
                .execute(
                    "delete from dead_letter_outbox where seq = any($1)",
                    &[&seqs],
                )
                .await?;
        }
        self.tx.commit().await?;
        Ok(())
    }
}

/// What [`Checkpoint::write`] stored for a set of events.
#[derive(Debug, Default)]
pub struct Written {
    /// The deltas the events made.
    pub rollup: Rollup,
    /// The absolute values after them.
    pub committed: Committed,
    /// Search documents queued.
    pub documents: usize,
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
    /// Stores a set of events inside a savepoint of the checkpoint transaction: reads
    /// the committed state of `users` (locked until the commit: another instance may
    /// hold the same user's events from another topic), lets `aggregate` turn it into
    /// the rollup and the search documents (`(event_id, JSON)`), and writes them. On an error the
    /// savepoint is rolled back and the fenced transaction stays usable, so the caller
    /// can try a subset of the events instead (see [`crate::pipeline`]).
    ///
    /// # Errors
    ///
    /// [`Error::Postgres`] (a deadlock between two instances too: the checkpoint is
    /// retried; a value the database refuses: see [`Error::disposition`]).
    pub async fn write<F>(
        &mut self,
        users: &[&str],
        attempt: Attempt,
        aggregate: F,
    ) -> Result<Written, Error>
    where
        F: FnOnce(UserStates) -> (Rollup, Vec<(String, String)>),
    {
        let savepoint = self.tx.savepoint("events").await?;
        let result = write_data(&savepoint, &self.group, &self.ranges, users, aggregate).await;
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

/// `value + delta` in SQL, held at the largest bigint instead of failing (22003): a
/// counter of hostile amounts stops growing; it never stops the checkpoint.
macro_rules! saturating_add {
    ($old:literal, $new:literal) => {
        concat!(
            "case when ",
            $new,
            " > 0 and ",
            $old,
            " > 9223372036854775807 - ",
            $new,
            " then 9223372036854775807 else ",
            $old,
            " + ",
            $new,
            " end"
        )
    };
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

/// The advisory lock held by the instance folding `pair_log` (one fold at a time).
const PAIR_FOLD_LOCK: i64 = 0x7061_6972_5f66_6f6c; // "pair_fol"

/// What one fold did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Folded {
    /// `pair_log` rows applied.
    pub rows: usize,
    /// The pairs those rows held (a pair in several rows counts several times).
    pub logged: i64,
    /// Distinct pairs added (each to both directions' rows).
    pub pairs: usize,
    /// Rows that could not be read (dropped).
    pub corrupt: usize,
    /// Pairs PostgreSQL refused (dropped).
    pub refused: usize,
}

/// Adds deltas to `product_pairs`, saturating.
async fn upsert_pairs(
    tx: &Transaction<'_>,
    pairs: &[(&str, &str, &str, i64)],
) -> Result<(), Error> {
    let kinds: Vec<&str> = pairs.iter().map(|p| p.0).collect();
    let a: Vec<&str> = pairs.iter().map(|p| p.1).collect();
    let b: Vec<&str> = pairs.iter().map(|p| p.2).collect();
    let n: Vec<i64> = pairs.iter().map(|p| p.3).collect();
    tx.execute(
        concat!(
            "insert into product_pairs (kind, a, b, count)
             select * from unnest($1::text[], $2::text[], $3::text[], $4::bigint[])
             on conflict (kind, a, b) do update set count = ",
            saturating_add!("product_pairs.count", "excluded.count")
        ),
        &[&kinds, &a, &b, &n],
    )
    .await?;
    Ok(())
}

/// At most the first 64 characters of a value, for a log line.
fn clip(text: &str) -> String {
    text.chars().take(64).collect()
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
        topics.push(tp.topic.as_str());
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

/// The data part of a checkpoint (see [`Checkpoint::write`]).
async fn write_data<F>(
    tx: &Transaction<'_>,
    group: &str,
    ranges: &HashMap<TopicPartition, OffsetRange>,
    users: &[&str],
    aggregate: F,
) -> Result<Written, Error>
where
    F: FnOnce(UserStates) -> (Rollup, Vec<(String, String)>),
{
    let states = timed("user_state_read", activity(tx, users)).await?;
    let started = Instant::now();
    let (rollup, documents) = aggregate(states);
    metrics::histogram!("processor_checkpoint_phase_seconds", "phase" => "aggregate")
        .record(started.elapsed().as_secs_f64());
    timed("search_documents", queue_documents(tx, &documents)).await?;
    let mut committed = Committed::default();

    let (m, t, p, k, v) = unzip5(rollup.counts.iter().map(|((minute, tp, metric), delta)| {
        (
            *minute,
            tp.topic.as_str(),
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
        tt.push(tp.topic.as_str());
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
        timed(
            "members",
            tx.execute(
                "insert into rollup_members (minute, set_name, member)
             select * from unnest($1::bigint[], $2::text[], $3::text[]) on conflict do nothing",
                &[&mm, &ms, &mu],
            ),
        )
        .await?;
    }

    timed("dedup_log", write_dedup_log(tx, group, ranges, &rollup)).await?;

    if !rollup.activity.is_empty() || !rollup.recent.is_empty() {
        let mut states = serde_json::Map::new();
        for (member, activity) in &rollup.activity {
            let recent = rollup.recent.get(member).cloned().unwrap_or_default();
            states.insert(
                member.clone(),
                serde_json::json!({"t": activity.times(), "v": recent.viewed, "b": recent.bought}),
            );
        }
        let states = serde_json::Value::Object(states).to_string();
        timed(
            "user_state",
            tx.execute(
                "update user_activity u
             set times = array(select jsonb_array_elements_text(j.value->'t')::bigint),
                 viewed = array(select jsonb_array_elements_text(j.value->'v')),
                 bought = array(select jsonb_array_elements_text(j.value->'b'))
             from jsonb_each($1::text::jsonb) j where u.member = j.key",
                &[&states],
            ),
        )
        .await?;
    }

    if let Some((pairs, deltas)) = pair_log::encode(&rollup.pairs) {
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
        let topics: Vec<&str> = marks.iter().map(|(tp, _)| tp.topic.as_str()).collect();
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
        let ot: Vec<&str> = outbox.keys().map(|k| k.1.topic.as_str()).collect();
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
        documents: documents.len(),
    })
}

/// The committed event times and recent products of `users`, locked until the commit.
async fn activity(tx: &Transaction<'_>, users: &[&str]) -> Result<UserStates, Error> {
    let mut sorted = users.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    tx.execute(
        "insert into user_activity (member, times)
         select m, '{}' from unnest($1::text[]) as m order by m on conflict do nothing",
        &[&sorted],
    )
    .await?;
    let rows = tx
        .query(
            "select member, times, viewed, bought from user_activity where member = any($1)
             order by member for update",
            &[&sorted],
        )
        .await?;
    let mut states = UserStates::default();
    for r in &rows {
        let member: String = r.get(0);
        states
            .activity
            .insert(member.clone(), Activity::from_times(r.get(1)));
        states.recent.insert(
            member,
            Recent {
                viewed: r.get(2),
                bought: r.get(3),
            },
        );
    }
    Ok(states)
}

/// Queues search documents (`(event_id, JSON)`): they become durable with the
/// checkpoint, and the search sink sends them later.
async fn queue_documents(
    tx: &Transaction<'_>,
    documents: &[(String, String)],
) -> Result<(), Error> {
    if documents.is_empty() {
        return Ok(());
    }
    let ids: Vec<&str> = documents.iter().map(|(id, _)| id.as_str()).collect();
    let docs: Vec<&str> = documents.iter().map(|(_, d)| d.as_str()).collect();
    tx.execute(
        "insert into search_outbox (event_id, document)
         select * from unnest($1::text[], $2::text[])",
        &[&ids, &docs],
    )
    .await?;
    Ok(())
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
