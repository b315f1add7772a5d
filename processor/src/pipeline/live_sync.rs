//! Keeping the live view whole: noticing a Redis that lost it, and re-writing the
//! (minute, partition) views the outbox names from PostgreSQL.

use super::committer::Committer;
use super::now_ms;

/// Rounds of 500 outbox rows one resynchronisation handles at most.
const MAX_RESYNC_ROUNDS: usize = 20;

impl Committer {
    /// Notices a Redis that lost the live view (restarted without persistence, flushed)
    /// and queues the whole retention period for a re-write from PostgreSQL.
    pub(super) async fn check_live_marker(&mut self) {
        match self.live.has_marker().await {
            Ok(true) | Err(_) => {}
            Ok(false) => {
                let since = crate::aggregate::minute_of(now_ms())
                    - self.settings.retention.as_secs() as i64;
                match self
                    .store
                    .requeue_live(&self.settings.kafka.group_id, since)
                    .await
                {
                    Ok(rows) => {
                        if rows > 0 {
                            tracing::warn!(
                                rows,
                                "Redis holds no live view (restarted or flushed): re-writing it from PostgreSQL"
                            );
                        }
                        self.live_lagging = true;
                        if let Err(e) = self.live.set_marker().await {
                            tracing::warn!(error = %e, "setting the live view marker failed");
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "queueing the live view re-write failed")
                    }
                }
            }
        }
    }

    /// Re-writes the live view of every (minute, partition) in the outbox.
    pub(super) async fn resync_live(&mut self) {
        // Bounded: rows another instance keeps moving ahead are left to it.
        for _ in 0..MAX_RESYNC_ROUNDS {
            let rows = match self.store.outbox(500).await {
                Ok(rows) => rows,
                Err(e) => {
                    tracing::warn!(error = %e, "reading the outbox failed");
                    return;
                }
            };
            if rows.is_empty() {
                self.live_lagging = false;
                return;
            }
            let mut written = Vec::new();
            for (minute, tp, _) in rows {
                let (committed, members, version) =
                    match self.store.committed_for(minute, &tp).await {
                        Ok(x) => x,
                        Err(e) => {
                            tracing::warn!(error = %e, "reading committed rollups failed");
                            return;
                        }
                    };
                if version < 0 {
                    continue;
                }
                let members = members.into_iter().map(|(s, m)| (minute, s, m)).collect();
                let versions = [(tp.clone(), version)].into();
                if let Err(e) = self.live.write(&committed, &versions, &members).await {
                    tracing::warn!(error = %e, "re-writing the live view failed");
                    self.live_lagging = true;
                    return;
                }
                written.push((minute, tp, version));
            }
            if let Err(e) = self.store.clear_outbox(&written).await {
                tracing::warn!(error = %e, "clearing the outbox failed");
                return;
            }
            tracing::info!(rows = written.len(), "live view re-written from PostgreSQL");
        }
    }
}
