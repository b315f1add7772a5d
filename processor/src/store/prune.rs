//! Deleting what is past its retention: the de-duplication log, old rollups, idle
//! users' activity and the least counted product pairs.

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
}
