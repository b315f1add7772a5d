//! The background job that deletes what the bounds say is no longer kept: the
//! de-duplication log rows past the window ([`crate::dedup`]), rollups past their
//! retention, the least counted product pairs beyond the bound (cut from the partner
//! lists), users inactive for longer than the sessions' retention.
//!
//! It runs on a connection of its own, beside the consume loop rather than inside it: a
//! pruning run (the product pairs are ranked in full) then never holds up consumption
//! or a checkpoint. What it deletes is outside every bound a checkpoint reads, so the two
//! only meet on row locks; a deadlock between them fails one statement, which is
//! retried (the checkpoint at once, the pruning at its next run).

use std::time::Duration;

use ingest_common::clock::unix_ms as now_ms;
use tokio::sync::watch;

use crate::aggregate::minute_of;
use crate::error::Error;
use crate::store::Store;

/// What the job deletes, and how often.
#[derive(Debug, Clone)]
pub struct PruneSettings {
    /// PostgreSQL (`Debug` masks its password).
    pub postgres_url: ingest_common::secret::SecretUrl,
    /// Its connect time-out.
    pub postgres_connect_timeout: Duration,
    /// Time between runs.
    pub interval: Duration,
    /// The consumer group whose de-duplication log is pruned.
    pub group_id: String,
    /// De-duplication keys are kept this many minutes of stream time.
    pub dedup_window_minutes: i64,
    /// Rollups are kept this many minutes.
    pub rollup_retention_minutes: i64,
    /// Product pairs kept per kind.
    pub max_product_pairs: i64,
    /// Users whose newest event is older than this (ms) are forgotten.
    pub session_retention_ms: i64,
}

/// Runs every `interval` until `shutdown` turns true. Failures are logged and tried again
/// at the next run; a lost connection is opened again.
pub async fn run(settings: PruneSettings, mut shutdown: watch::Receiver<bool>) {
    let mut connection: Option<Store> = None;
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = tokio::time::sleep(settings.interval) => {}
        }
        if *shutdown.borrow() {
            return;
        }
        match Store::reopen(
            &mut connection,
            &settings.postgres_url,
            settings.postgres_connect_timeout,
        )
        .await
        {
            Ok(store) => prune(store, &settings).await,
            Err(e) => tracing::warn!(error = %e, "pruning: cannot connect to PostgreSQL"),
        }
    }
}

async fn prune(store: &mut Store, settings: &PruneSettings) {
    let now_minute = minute_of(now_ms());
    let rollup_cutoff = now_minute - settings.rollup_retention_minutes * 60;
    let activity_cutoff = now_ms().saturating_sub(settings.session_retention_ms);
    let runs: [(&str, Result<u64, Error>); 4] = [
        (
            "dedup_log",
            store
                .prune_dedup_log(&settings.group_id, settings.dedup_window_minutes)
                .await,
        ),
        ("rollups", store.prune_rollups(rollup_cutoff).await),
        (
            "product_pairs",
            store.prune_pairs(settings.max_product_pairs).await,
        ),
        ("user_activity", store.prune_activity(activity_cutoff).await),
    ];
    for (what, result) in runs {
        match result {
            Ok(0) => {}
            Ok(n) => {
                metrics::counter!("processor_pruned_rows_total", "table" => what).increment(n);
                tracing::debug!(deleted = n, what, "pruned");
            }
            Err(e) => tracing::warn!(error = %e, what, "pruning failed"),
        }
    }
}
