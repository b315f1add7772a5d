//! The run loop: outbox → `_bulk` → delete what the index answered for.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::Method;
use tokio::sync::{watch, Notify};

use super::bulk::{bulk_body, classify, ItemOutcome};
use super::client::IndexClient;
use super::document::index_mapping;
use crate::config::SearchSettings;
use crate::error::Error;
use crate::store::Store;

/// Sends the documents of the `search_outbox` table to the index (see [`crate::search`]).
pub struct SearchSink {
    settings: SearchSettings,
    client: IndexClient,
    postgres_url: String,
    postgres_connect_timeout: Duration,
    wake: Arc<Notify>,
}

impl SearchSink {
    /// A sink reading the outbox of the database at `postgres_url`.
    ///
    /// # Errors
    ///
    /// [`Error::Index`] when the index client cannot be built (see [`IndexClient::new`]).
    pub fn new(
        settings: SearchSettings,
        postgres_url: String,
        postgres_connect_timeout: Duration,
    ) -> Result<Self, Error> {
        Ok(SearchSink {
            client: IndexClient::new(&settings)?,
            settings,
            postgres_url,
            postgres_connect_timeout,
            wake: Arc::new(Notify::new()),
        })
    }

    /// A handle that makes the sink look at the outbox now (after a checkpoint) instead
    /// of at its next flush interval.
    pub fn waker(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    /// Runs until `shutdown` turns true, then makes one last bounded attempt. Never
    /// returns an error: failures are retried with backoff, and what is not sent stays
    /// in the outbox for the next run.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut store: Option<Store> = None;
        let mut index_ready = false;
        let mut failures: u32 = 0;
        tracing::info!(url = %self.settings.url, index = %self.settings.index, "search index sink started");
        loop {
            let wait = if failures == 0 {
                self.settings.flush_interval
            } else {
                self.settings.backoff.jittered(failures)
            };
            tokio::select! {
                _ = shutdown.changed() => break,
                _ = self.wake.notified(), if failures == 0 => {}
                _ = tokio::time::sleep(wait) => {}
            }
            if *shutdown.borrow() {
                break;
            }
            match self.drain(&mut store, &mut index_ready).await {
                Ok(()) => failures = 0,
                Err(e) => {
                    let reason = match &e {
                        Error::Timeout(_) => "timeout",
                        Error::Postgres(_) => "postgres",
                        _ => "index",
                    };
                    metrics::counter!("processor_search_failures_total", "reason" => reason)
                        .increment(1);
                    failures = failures.saturating_add(1);
                    let delay = self.settings.backoff.jittered(failures);
                    tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "search index write failed; the documents stay queued");
                }
            }
            self.report_lag(&mut store).await;
        }
        // Whatever is not sent now stays in the outbox for the next start.
        let last = self.drain(&mut store, &mut index_ready);
        match tokio::time::timeout(self.settings.request_timeout, last).await {
            Ok(Ok(())) => tracing::info!("search index sink stopped; outbox drained"),
            _ => tracing::info!(
                "search index sink stopped; queued documents are sent after the next start"
            ),
        }
    }

    async fn connected<'a>(&self, store: &'a mut Option<Store>) -> Result<&'a mut Store, Error> {
        Store::reopen(store, &self.postgres_url, self.postgres_connect_timeout).await
    }

    /// Sends everything queued, batch by batch, oldest first.
    async fn drain(&self, store: &mut Option<Store>, index_ready: &mut bool) -> Result<(), Error> {
        let store = self.connected(store).await?;
        let dropped = store
            .trim_search_outbox(self.settings.max_queued_documents)
            .await?;
        if dropped > 0 {
            metrics::counter!("processor_search_documents_dropped_total").increment(dropped);
            tracing::warn!(
                dropped,
                bound = self.settings.max_queued_documents,
                "search outbox over its bound: oldest documents dropped"
            );
        }
        if !*index_ready {
            self.create_index().await?;
            *index_ready = true;
        }
        // Documents per request: the configured batch, halved while the index refuses
        // whole requests as too large or malformed, to find the document it refuses.
        let mut limit = self.settings.batch_size;
        loop {
            let mut rows = store.search_outbox(limit as i64).await?;
            if rows.is_empty() {
                return Ok(());
            }
            let full = rows.len() >= limit;
            // A request holds at most `max_bulk_bytes` of documents (at least one).
            let mut bytes = 0;
            let fit = rows
                .iter()
                .position(|(_, id, doc)| {
                    bytes += id.len() + doc.len();
                    bytes > self.settings.max_bulk_bytes
                })
                .unwrap_or(rows.len())
                .max(1);
            let cut = fit < rows.len();
            rows.truncate(fit);
            let docs: Vec<(String, String)> = rows
                .iter()
                .map(|(_, id, doc)| (id.clone(), doc.clone()))
                .collect();
            let started = Instant::now();
            let answer = self
                .client
                .send(
                    Method::POST,
                    "/_bulk",
                    "application/x-ndjson",
                    bulk_body(&self.settings.index, &docs),
                )
                .await?;
            metrics::histogram!("processor_search_bulk_seconds")
                .record(started.elapsed().as_secs_f64());
            let status = answer.status.as_u16();
            if !answer.status.is_success() {
                let whole_request_refused =
                    (400..500).contains(&status) && status != 408 && status != 429;
                if !whole_request_refused {
                    return Err(Error::Index(format!(
                        "bulk request answered {}: {}",
                        answer.status,
                        excerpt(&answer.body)
                    )));
                }
                // Retrying the same request cannot succeed: fewer documents can.
                if let [(seq, id, _)] = rows.as_slice() {
                    tracing::warn!(event_id = %id, status, answer = %excerpt(&answer.body),
                        "search index refused a request holding only this document; it is dropped");
                    store.clear_search_outbox(&[*seq]).await?;
                    metrics::counter!("processor_search_documents_failed_total", "reason" => "refused_request").increment(1);
                } else {
                    tracing::warn!(status, documents = rows.len(),
                        "search index refused a whole bulk request; sending fewer documents per request");
                    limit = (rows.len() / 2).max(1);
                }
                continue;
            }
            let outcomes = classify(&answer.body, rows.len()).map_err(Error::Index)?;
            let mut done = Vec::with_capacity(rows.len());
            let (mut indexed, mut rejected, mut retry) = (0u64, 0u64, None);
            for ((seq, id, _), outcome) in rows.iter().zip(&outcomes) {
                match outcome {
                    ItemOutcome::Indexed => {
                        indexed += 1;
                        done.push(*seq);
                    }
                    ItemOutcome::Rejected(why) => {
                        rejected += 1;
                        done.push(*seq);
                        tracing::warn!(event_id = %id, reason = %why, "search index rejected a document; it is dropped");
                    }
                    ItemOutcome::Retry(why) => {
                        retry.get_or_insert_with(|| why.clone());
                    }
                }
            }
            store.clear_search_outbox(&done).await?;
            metrics::counter!("processor_search_documents_indexed_total").increment(indexed);
            if rejected > 0 {
                metrics::counter!("processor_search_documents_failed_total", "reason" => "rejected").increment(rejected);
            }
            if let Some(why) = retry {
                return Err(Error::Index(format!("documents to send again: {why}")));
            }
            if !full && !cut {
                return Ok(());
            }
            limit = self.settings.batch_size;
        }
    }

    /// Creates the index with its mapping unless it exists.
    async fn create_index(&self) -> Result<(), Error> {
        let answer = self
            .client
            .send(
                Method::PUT,
                &format!("/{}", self.settings.index),
                "application/json",
                index_mapping().to_string().into_bytes(),
            )
            .await?;
        let exists = answer.status.as_u16() == 400
            && excerpt(&answer.body).contains("resource_already_exists_exception");
        if answer.status.is_success() {
            tracing::info!(index = %self.settings.index, "search index created");
            Ok(())
        } else if exists {
            Ok(())
        } else {
            Err(Error::Index(format!(
                "creating index {} answered {}: {}",
                self.settings.index,
                answer.status,
                excerpt(&answer.body)
            )))
        }
    }

    async fn report_lag(&self, store: &mut Option<Store>) {
        let Some(store) = store.as_mut().filter(|s| !s.is_closed()) else {
            return;
        };
        if let Ok((documents, oldest_secs)) = store.search_outbox_lag().await {
            metrics::gauge!("processor_search_lag_documents").set(documents as f64);
            metrics::gauge!("processor_search_lag_seconds").set(oldest_secs);
        }
    }
}

/// The start of an answer body, for messages.
fn excerpt(body: &[u8]) -> String {
    String::from_utf8_lossy(&body[..body.len().min(500)]).into_owned()
}
