//! The outboxes the checkpoint fills and the background jobs drain: the live view's
//! (which (minute, partition) views Redis must be written for) and the dead letters'.

use tokio_postgres::Transaction;

use super::{Committed, Store};
use crate::aggregate::TopicPartition;
use crate::dead_letter::DeadLetter;
use crate::error::Error;

impl Store {
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
                &[&minute, &tp.topic.as_ref(), &tp.partition],
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
                &[&minute, &tp.topic.as_ref(), &tp.partition],
            )
            .await?
        {
            committed.counts.push((minute, tp.clone(), r.get(0), r.get(1)));
        }
        for r in tx
            .query(
                "select dimension, key, value from rollup_tops where minute = $1 and topic = $2 and partition = $3",
                &[&minute, &tp.topic.as_ref(), &tp.partition],
            )
            .await?
        {
            committed.tops.push((minute, tp.clone(), r.get(0), r.get(1), r.get(2)));
        }
        let members = tx
            .query(
                "select set_name, unnest(members) from rollup_member_blocks where minute = $1",
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
        let topics: Vec<&str> = written.iter().map(|w| w.1.topic.as_ref()).collect();
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
