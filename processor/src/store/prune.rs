//! Deleting what is past its retention: the de-duplication log, old rollups, idle
//! users' activity and the least counted product pairs.

use super::pairs::PAIR_FOLD_LOCK;
use super::Store;
use crate::error::Error;

impl Store {
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
            "rollup_member_blocks",
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

    /// Deletes the recent products (what the recommendations API reads) of users whose
    /// newest event is before `before_ms` (or unknown): returns the users deleted. Their
    /// session state leaves the users' state log at its next snapshot
    /// ([`crate::user_state`]).
    ///
    /// # Errors
    ///
    /// [`Error::Postgres`].
    pub async fn prune_activity(&self, before_ms: i64) -> Result<u64, Error> {
        Ok(self
            .client
            .execute(
                "delete from user_activity
                 where coalesce(last_ms, -9223372036854775808) < $1",
                &[&before_ms],
            )
            .await?)
    }

    /// Keeps at most `max_per_kind` product pairs per kind (co-view, co-purchase; each
    /// direction of a pair counts, as each is an entry of a partner list): the most
    /// counted (ties by product ids); returns the pairs deleted. A deleted pair seen
    /// again starts counting anew. Runs under the fold's lock, waiting for a running
    /// fold: both rewrite partner lists.
    ///
    /// # Errors
    ///
    /// [`Error::Postgres`].
    pub async fn prune_pairs(&mut self, max_per_kind: i64) -> Result<u64, Error> {
        let tx = self.client.transaction().await?;
        tx.execute("select pg_advisory_xact_lock($1)", &[&PAIR_FOLD_LOCK])
            .await?;
        let over: i64 = tx
            .query_one(
                "select count(*) from (
                     select kind from product_partners group by kind having sum(n) > $1) o",
                &[&max_per_kind],
            )
            .await?
            .get(0);
        if over == 0 {
            return Ok(0);
        }
        let pairs = "select coalesce(sum(n), 0)::bigint from product_partners";
        let before: i64 = tx.query_one(pairs, &[]).await?.get(0);
        tx.execute(
            "with over as (
                 select kind from product_partners group by kind having sum(n) > $1),
             ranked as (
                 select p.kind, p.a, u.b, u.c,
                        row_number() over (partition by p.kind
                            order by u.c desc, p.a collate \"C\", u.b collate \"C\") as rank
                 from product_partners p
                 join over on over.kind = p.kind
                 cross join lateral unnest(p.partners, p.counts) as u(b, c)),
             kept as (
                 select kind, a,
                        array_agg(b order by c desc, b collate \"C\") as partners,
                        array_agg(c order by c desc, b collate \"C\") as counts
                 from ranked where rank <= $1 group by kind, a),
             emptied as (
                 delete from product_partners p using over
                 where p.kind = over.kind
                   and not exists (select 1 from kept k where k.kind = p.kind and k.a = p.a))
             update product_partners p
             set partners = k.partners, counts = k.counts,
                 top_partners = k.partners[1:cardinality(p.top_partners)],
                 top_counts = k.counts[1:cardinality(p.top_partners)]
             from kept k
             where p.kind = k.kind and p.a = k.a and p.n > cardinality(k.partners)",
            &[&max_per_kind],
        )
        .await?;
        let after: i64 = tx.query_one(pairs, &[]).await?.get(0);
        tx.commit().await?;
        Ok(u64::try_from(before - after).unwrap_or(0))
    }
}
