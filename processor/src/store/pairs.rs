//! Product pairs: folding the checkpoints' pair deltas into the partner lists, and the
//! recommendations read from them.

use std::collections::HashMap;

use tokio_postgres::types::Type;
use tokio_postgres::Transaction;

use super::{copy_into_temporary, Store};
use crate::error::{Disposition, Error};
use crate::recommend::pair_log::{PairSums, PartnerDeltas};
use crate::recommend::{self, partners, Neighbours, Recent, Recommendation};

impl Store {
    /// Folds pending `pair_log` rows into `product_partners` (see
    /// [`crate::recommend::fold`]): in one transaction, deletes the oldest rows holding
    /// about `max_pairs` pairs (at least one row) and adds their summed deltas to the
    /// partner lists they touch, keeping each list's first `top` entries apart for
    /// recommendations. While another connection folds, waits for it with `wait`, else
    /// does nothing. A row that cannot be read is logged and dropped; a list PostgreSQL
    /// refuses is isolated (bisection in savepoints), logged with its SQLSTATE and this
    /// fold's deltas of it dropped, so one bad value never stops the fold.
    ///
    /// # Errors
    ///
    /// [`Error::Postgres`]; nothing is folded then.
    pub async fn fold_pairs(
        &mut self,
        max_pairs: i64,
        top: usize,
        wait: bool,
    ) -> Result<Folded, Error> {
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
        let lists = sums.lists();
        folded.lists = lists.len();
        for chunk in lists.chunks(LISTS_PER_STATEMENT) {
            let stored = read_stored(&tx, chunk).await?;
            let merged = merge_stored(&stored, chunk);
            let mut pending: Vec<&[Merged<'_>]> = vec![&merged];
            while let Some(part) = pending.pop() {
                let savepoint = tx.savepoint("partners").await?;
                match write_lists(&savepoint, part, top).await {
                    Ok(()) => savepoint.commit().await?,
                    Err(e) if e.disposition() == Disposition::Data => {
                        savepoint.rollback().await?;
                        if let [one] = part {
                            folded.refused += one.deltas;
                            tracing::error!(error = %e, sqlstate = e.sqlstate().unwrap_or(""),
                                kind = one.kind, product = %clip(one.product),
                                "PostgreSQL refuses a product's partner list: this fold's counts of it are dropped");
                        } else {
                            let (left, right) = part.split_at(part.len() / 2);
                            pending.push(right);
                            pending.push(left);
                        }
                    }
                    Err(e) => return Err(e),
                }
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

    /// Copies users' recent products and newest event times (`(number, user, recent,
    /// newest Unix ms)`) to `user_activity`, what the recommendations API and publisher
    /// read, for the partition numbers still at the sequence this instance holds
    /// (`numbers`: `(number, seq)`, every number the instance holds): their sequences
    /// are locked until the copy commits, so that no other instance's state of the same
    /// users is copied in between, and their `copied_seq` moves to `seq`. Returns the
    /// numbers another instance committed meanwhile, whose users were left out.
    ///
    /// # Errors
    ///
    /// [`Error::Postgres`].
    pub async fn write_recent_products(
        &mut self,
        group: &str,
        numbers: &[(i32, i64)],
        users: &[(i32, &str, &Recent, i64)],
    ) -> Result<Vec<i32>, Error> {
        let tx = self.client.transaction().await?;
        let parts: Vec<i32> = numbers.iter().map(|n| n.0).collect();
        let mut current: HashMap<i32, i64> = HashMap::new();
        for row in tx
            .query(
                "select partition, seq from partition_state
                 where group_id = $1 and partition = any($2) order by partition for share",
                &[&group, &parts],
            )
            .await?
        {
            current.insert(row.get(0), row.get(1));
        }
        let stale: Vec<i32> = numbers
            .iter()
            .filter(|(n, seq)| current.get(n) != Some(seq))
            .map(|n| n.0)
            .collect();
        let writer = copy_into_temporary(
            &tx,
            "recent_products_in",
            "member text, viewed text[], bought text[], last_ms bigint",
            &[Type::TEXT, Type::TEXT_ARRAY, Type::TEXT_ARRAY, Type::INT8],
        )
        .await?;
        let mut writer = std::pin::pin!(writer);
        for (number, member, recent, last_ms) in users {
            if stale.contains(number) {
                continue;
            }
            writer
                .as_mut()
                .write(&[member, &recent.viewed, &recent.bought, last_ms])
                .await?;
        }
        writer.finish().await?;
        // Sorted, so that two writers lock rows in the same order.
        tx.execute(
            "insert into user_activity (member, viewed, bought, last_ms)
             select member, viewed, bought, last_ms from recent_products_in order by member
             on conflict (member) do update
             set viewed = excluded.viewed, bought = excluded.bought,
                 last_ms = greatest(user_activity.last_ms, excluded.last_ms)",
            &[],
        )
        .await?;
        let (copied, seqs): (Vec<i32>, Vec<i64>) = numbers
            .iter()
            .filter(|(n, _)| !stale.contains(n))
            .copied()
            .unzip();
        tx.execute(
            "update partition_state p set copied_seq = n.seq
             from unnest($2::int[], $3::bigint[]) as n(partition, seq)
             where p.group_id = $1 and p.partition = n.partition",
            &[&group, &copied, &seqs],
        )
        .await?;
        tx.commit().await?;
        Ok(stale)
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
    /// counted first, ties by product id in byte order: the stored top entries, or the
    /// whole list's first entries when more are asked for than were kept apart.
    async fn neighbours(&self, seeds: &[(&str, &str)], partners: i64) -> Result<Neighbours, Error> {
        let kinds: Vec<&str> = seeds.iter().map(|s| s.0).collect();
        let products: Vec<&str> = seeds.iter().map(|s| s.1).collect();
        let limit = i32::try_from(partners).unwrap_or(i32::MAX);
        let rows = self
            .client
            .query(
                "select p.kind, p.a,
                        case when cardinality(p.top_partners) >= $3 or p.n <= cardinality(p.top_partners)
                             then p.top_partners[1:$3] else p.partners[1:$3] end,
                        case when cardinality(p.top_partners) >= $3 or p.n <= cardinality(p.top_partners)
                             then p.top_counts[1:$3] else p.counts[1:$3] end
                 from unnest($1::text[], $2::text[]) as d(kind, a)
                 join product_partners p on p.kind = d.kind and p.a = d.a",
                &[&kinds, &products, &limit],
            )
            .await?;
        let mut out = Neighbours::default();
        for r in &rows {
            let kind: &str = r.get(0);
            let a: String = r.get(1);
            let partners: Vec<String> = r.get(2);
            let counts: Vec<i64> = r.get(3);
            for (b, count) in partners.into_iter().zip(counts) {
                out.push(kind, a.clone(), b, count);
            }
        }
        Ok(out)
    }
}

/// Partner lists read and written per statement of a fold: a list of a busy product
/// holds thousands of partners, and a fold holds one statement's lists in memory.
const LISTS_PER_STATEMENT: usize = 250;

/// A product's partner list after a fold's deltas, its ids borrowed from the stored row
/// or the deltas.
struct Merged<'a> {
    kind: &'static str,
    product: &'a str,
    /// Ranked (see [`partners::rank`]).
    list: Vec<(&'a str, i64)>,
    /// The fold's deltas it holds.
    deltas: usize,
}

/// Reads the stored lists of `chunk`, locked until the commit.
async fn read_stored(
    tx: &Transaction<'_>,
    chunk: &[PartnerDeltas<'_>],
) -> Result<Vec<tokio_postgres::Row>, Error> {
    let kinds: Vec<&str> = chunk.iter().map(|l| l.kind).collect();
    let products: Vec<&str> = chunk.iter().map(|l| l.product).collect();
    Ok(tx
        .query(
            "select p.kind, p.a, p.partners, p.counts
             from product_partners p
             join unnest($1::text[], $2::text[]) as d(kind, a) on p.kind = d.kind and p.a = d.a
             order by p.kind, p.a collate \"C\"
             for update of p",
            &[&kinds, &products],
        )
        .await?)
}

/// A stored partner list: the partners and their counts.
type StoredList<'a> = (Vec<&'a str>, Vec<i64>);

/// Adds the deltas of `chunk` to the `stored` lists.
fn merge_stored<'a>(
    stored: &'a [tokio_postgres::Row],
    chunk: &[PartnerDeltas<'a>],
) -> Vec<Merged<'a>> {
    let mut lists: HashMap<(&str, &str), StoredList<'a>> = HashMap::new();
    for r in stored {
        lists.insert((r.get(0), r.get(1)), (r.get(2), r.get(3)));
    }
    chunk
        .iter()
        .map(|l| {
            let (partners, counts) = lists.remove(&(l.kind, l.product)).unwrap_or_default();
            Merged {
                kind: l.kind,
                product: l.product,
                list: partners::merge(partners.into_iter().zip(counts), &l.deltas),
                deltas: l.deltas.len(),
            }
        })
        .collect()
}

/// Writes merged lists, their first `top` entries apart: copied into a temporary table,
/// then upserted.
async fn write_lists(tx: &Transaction<'_>, lists: &[Merged<'_>], top: usize) -> Result<(), Error> {
    let writer = copy_into_temporary(
        tx,
        "partners_in",
        "kind text, a text, partners text[], counts bigint[], top_partners text[], top_counts bigint[]",
        &[
            Type::TEXT,
            Type::TEXT,
            Type::TEXT_ARRAY,
            Type::INT8_ARRAY,
            Type::TEXT_ARRAY,
            Type::INT8_ARRAY,
        ],
    )
    .await?;
    let mut writer = std::pin::pin!(writer);
    for merged in lists {
        let partners: Vec<&str> = merged.list.iter().map(|(p, _)| *p).collect();
        let counts: Vec<i64> = merged.list.iter().map(|(_, c)| *c).collect();
        let cut = top.min(partners.len());
        writer
            .as_mut()
            .write(&[
                &merged.kind,
                &merged.product,
                &partners,
                &counts,
                &&partners[..cut],
                &&counts[..cut],
            ])
            .await?;
    }
    writer.finish().await?;
    tx.execute(
        "insert into product_partners (kind, a, partners, counts, top_partners, top_counts)
         select kind, a, partners, counts, top_partners, top_counts from partners_in
         on conflict (kind, a) do update set
             partners = excluded.partners, counts = excluded.counts,
             top_partners = excluded.top_partners, top_counts = excluded.top_counts",
        &[],
    )
    .await?;
    Ok(())
}

/// The advisory lock held by the instance folding `pair_log` or pruning the partner
/// lists (one at a time).
pub(super) const PAIR_FOLD_LOCK: i64 = 0x7061_6972_5f66_6f6c; // "pair_fol"

/// What one fold did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Folded {
    /// `pair_log` rows applied.
    pub rows: usize,
    /// The pairs those rows held (a pair in several rows counts several times).
    pub logged: i64,
    /// Distinct unordered pairs added (each to both products' lists).
    pub pairs: usize,
    /// Partner lists rewritten.
    pub lists: usize,
    /// Rows that could not be read (dropped).
    pub corrupt: usize,
    /// Pair deltas dropped because PostgreSQL refused the partner list they belong to.
    pub refused: usize,
}

/// At most the first 64 characters of a value, for a log line.
fn clip(text: &str) -> String {
    text.chars().take(64).collect()
}
