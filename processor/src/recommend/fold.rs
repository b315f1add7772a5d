//! Adding the checkpoints' product-pair deltas (`pair_log`, see [`super::pair_log`]) to
//! the pair counts that recommendations read (`product_partners`, one row per product
//! and kind holding its partner list, see [`super::partners`]): a background job, and a
//! fold the publisher runs before each round.
//!
//! Every `recommendations.fold_interval_ms`, on a connection of its own, the job deletes
//! the pending rows, sums their deltas per product, and rewrites the partner lists they
//! touch, in one transaction: a row is applied exactly once, whatever crashes (a fold
//! that does not commit leaves its rows for the next). Rows commit in any order across
//! instances; sums do not care. One fold runs at a time (an advisory lock): the job skips
//! its round while another runs. When a round had more pending than
//! `recommendations.fold_max_pairs`, the next starts at once.
//!
//! A fold writes one row per product touched, not one per pair: with 2,000 products a
//! fold of a million pair deltas rewrites at most 4,000 rows, where upserting each pair
//! wrote hundreds of thousands (and, folding every few seconds on a busy shop, took most
//! of the database's time from the checkpoints).
//!
//! Recommendations read through the API therefore lag the counted events by about one
//! interval. The publisher folds everything pending before each round
//! ([`fold_pending`]), so a published record includes every checkpoint committed before
//! its round.

use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::error::Error;
use crate::store::{Folded, Store};

/// How the job runs.
#[derive(Debug, Clone)]
pub struct FoldSettings {
    /// PostgreSQL.
    pub postgres_url: String,
    /// Its connect time-out.
    pub postgres_connect_timeout: Duration,
    /// Time between rounds.
    pub interval: Duration,
    /// Distinct pairs one round adds at most.
    pub max_pairs: i64,
    /// Entries of each partner list kept apart for recommendations
    /// (`recommendations.partners_per_product`).
    pub top: usize,
}

/// Runs rounds until `shutdown` turns true. Failures are logged and tried again at the
/// next round; a lost connection is opened again.
pub async fn run(settings: FoldSettings, mut shutdown: watch::Receiver<bool>) {
    let mut connection: Option<Store> = None;
    let mut more = false;
    loop {
        if !more {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep(settings.interval) => {}
            }
        }
        more = false;
        if *shutdown.borrow() {
            return;
        }
        let store = match Store::reopen(
            &mut connection,
            &settings.postgres_url,
            settings.postgres_connect_timeout,
        )
        .await
        {
            Ok(store) => store,
            Err(e) => {
                tracing::warn!(error = %e, "pair fold: cannot connect to PostgreSQL");
                continue;
            }
        };
        match fold(store, settings.max_pairs, settings.top, false).await {
            // A full round may have left more behind.
            Ok(folded) => more = folded.logged >= settings.max_pairs,
            Err(e) => tracing::warn!(error = %e, sqlstate = e.sqlstate().unwrap_or(""),
                "folding product pairs failed; retried at the next round"),
        }
        if let Ok((rows, age)) = store.pair_log_lag().await {
            metrics::gauge!("processor_pair_log_rows").set(rows as f64);
            metrics::gauge!("processor_pair_log_lag_seconds").set(age);
        }
    }
}

/// Folds until nothing committed before the call is pending, waiting for a fold another
/// connection runs.
///
/// # Errors
///
/// [`Error::Postgres`]; what was folded before stays folded.
pub async fn fold_pending(store: &mut Store, max_pairs: i64, top: usize) -> Result<(), Error> {
    while fold(store, max_pairs, top, true).await?.logged >= max_pairs {}
    Ok(())
}

/// One fold, with its metrics.
async fn fold(store: &mut Store, max_pairs: i64, top: usize, wait: bool) -> Result<Folded, Error> {
    let started = Instant::now();
    let folded = match store.fold_pairs(max_pairs, top, wait).await {
        Ok(folded) => folded,
        Err(e) => {
            metrics::counter!("processor_pair_fold_failures_total").increment(1);
            return Err(e);
        }
    };
    metrics::histogram!("processor_pair_fold_seconds").record(started.elapsed().as_secs_f64());
    metrics::counter!("processor_pair_log_rows_folded_total").increment(folded.rows as u64);
    metrics::counter!("processor_pair_lists_written_total").increment(folded.lists as u64);
    if folded.corrupt > 0 {
        metrics::counter!("processor_pair_log_rows_dropped_total").increment(folded.corrupt as u64);
    }
    if folded.refused > 0 {
        metrics::counter!("processor_pairs_refused_total").increment(folded.refused as u64);
    }
    tracing::debug!(
        rows = folded.rows,
        pairs = folded.pairs,
        lists = folded.lists,
        ms = started.elapsed().as_millis() as u64,
        "product pairs folded"
    );
    Ok(folded)
}
