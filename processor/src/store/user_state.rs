//! The users' state log in PostgreSQL ([`crate::user_state`]): loading a partition
//! number's state, the sequence fence, and the checkpoint's log rows.

use tokio_postgres::{IsolationLevel, Transaction};

use super::Store;
use crate::error::Error;
use crate::user_state::{LogRow, PartitionUsers};

impl Store {
    /// The committed state of the users of partition number `number`: its sequence
    /// (and how far its recent products are copied), the last snapshot and the rows
    /// after it, read in one snapshot of the database.
    ///
    /// # Errors
    ///
    /// [`Error::Postgres`]; [`Error::Corrupt`] for a row that cannot be read.
    pub async fn load_users(&mut self, group: &str, number: i32) -> Result<PartitionUsers, Error> {
        let tx = self
            .client
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await?;
        let (seq, copied_seq): (i64, i64) = tx
            .query_opt(
                "select seq, copied_seq from partition_state where group_id = $1 and partition = $2",
                &[&group, &number],
            )
            .await?
            .map_or((0, 0), |r| (r.get(0), r.get(1)));
        let rows = tx
            .query(
                "select snapshot, states from user_state_log
                 where group_id = $1 and partition = $2 and seq <= $3
                   and seq >= coalesce((select max(seq) from user_state_log
                                        where group_id = $1 and partition = $2 and snapshot
                                          and seq <= $3), 0)
                 order by seq",
                &[&group, &number, &seq],
            )
            .await?;
        tx.commit().await?;
        let mut users = PartitionUsers::from_log(seq, rows.iter().map(|r| (r.get(0), r.get(1))))
            .map_err(|e| Error::Corrupt(format!("{e} (partition number {number})")))?;
        users.copied_seq = copied_seq;
        Ok(users)
    }
}

/// The sequence fence: moves each partition number's sequence from the value this
/// instance loaded (`(number, seq)`, 0 for none) to the next.
///
/// # Errors
///
/// [`Error::StateFenced`] for the first number another instance moved meanwhile;
/// [`Error::Postgres`].
pub(super) async fn fence_numbers(
    tx: &Transaction<'_>,
    group: &str,
    numbers: &[(i32, i64)],
) -> Result<(), Error> {
    // Sorted, so that two instances lock rows in the same order.
    let mut numbers = numbers.to_vec();
    numbers.sort_unstable();
    numbers.dedup();
    let (new, known): (Vec<_>, Vec<_>) = numbers.iter().copied().partition(|&(_, seq)| seq == 0);
    let mut moved: Vec<i32> = Vec::with_capacity(numbers.len());
    if !known.is_empty() {
        let parts: Vec<i32> = known.iter().map(|&(n, _)| n).collect();
        let seqs: Vec<i64> = known.iter().map(|&(_, seq)| seq).collect();
        for row in tx
            .query(
                "update partition_state p set seq = p.seq + 1
                 from unnest($2::int[], $3::bigint[]) as n(partition, seq)
                 where p.group_id = $1 and p.partition = n.partition and p.seq = n.seq
                 returning p.partition",
                &[&group, &parts, &seqs],
            )
            .await?
        {
            moved.push(row.get(0));
        }
    }
    if !new.is_empty() {
        let parts: Vec<i32> = new.iter().map(|&(n, _)| n).collect();
        for row in tx
            .query(
                "insert into partition_state (group_id, partition, seq)
                 select $1, n, 1 from unnest($2::int[]) as n order by n
                 on conflict do nothing
                 returning partition",
                &[&group, &parts],
            )
            .await?
        {
            moved.push(row.get(0));
        }
    }
    match numbers.iter().find(|(n, _)| !moved.contains(n)) {
        Some(&(partition, _)) => Err(Error::StateFenced { partition }),
        None => Ok(()),
    }
}

/// Writes the checkpoint's log rows: `(number, seq, row)` with the sequence the fence
/// moved the number to; a snapshot deletes its number's rows before it.
///
/// # Errors
///
/// [`Error::Postgres`].
pub(super) async fn write_log(
    tx: &Transaction<'_>,
    group: &str,
    rows: &[(i32, i64, &LogRow)],
) -> Result<(), Error> {
    if rows.is_empty() {
        return Ok(());
    }
    let parts: Vec<i32> = rows.iter().map(|r| r.0).collect();
    let seqs: Vec<i64> = rows.iter().map(|r| r.1).collect();
    let snapshots: Vec<bool> = rows.iter().map(|r| r.2.snapshot).collect();
    let states: Vec<&[u8]> = rows.iter().map(|r| r.2.bytes.as_slice()).collect();
    tx.execute(
        "insert into user_state_log (group_id, partition, seq, snapshot, states)
         select $1, * from unnest($2::int[], $3::bigint[], $4::bool[], $5::bytea[])",
        &[&group, &parts, &seqs, &snapshots, &states],
    )
    .await?;
    let (snap_parts, snap_seqs): (Vec<i32>, Vec<i64>) = rows
        .iter()
        .filter(|r| r.2.snapshot)
        .map(|r| (r.0, r.1))
        .unzip();
    if !snap_parts.is_empty() {
        tx.execute(
            "delete from user_state_log l
             using unnest($2::int[], $3::bigint[]) as s(partition, seq)
             where l.group_id = $1 and l.partition = s.partition and l.seq < s.seq",
            &[&group, &snap_parts, &snap_seqs],
        )
        .await?;
    }
    Ok(())
}
