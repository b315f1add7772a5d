//! Product pairs: folding the checkpoints' pair deltas into the counts, and the
//! recommendations read from them.

use tokio_postgres::Transaction;

use super::Store;
use crate::error::{Disposition, Error};
use crate::recommend::pair_log::PairSums;
use crate::recommend::{self, Neighbours, Recent, Recommendation};

impl Store {
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
