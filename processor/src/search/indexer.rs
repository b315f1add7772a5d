//! The run loop: Kafka → decode → enrich → `_bulk` (`create`) → commit the offsets the
//! index answered for.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hyper::Method;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use tokio::sync::watch;

use super::bulk::{bulk_body, classify, ItemOutcome};
use super::client::IndexClient;
use super::document::index_mapping;
use crate::catalog::Catalog;
use crate::config::SearchSettings;
use crate::decode::{Decoder, NoWriter};
use crate::error::Error;
use crate::group_context::GroupContext;
use crate::record::Record;
use crate::store::Store;

/// Where the indexer reads the catalog that enriches documents.
#[derive(Debug, Clone)]
pub struct CatalogSource {
    /// PostgreSQL (its `Debug` masks the password).
    pub postgres_url: ingest_common::secret::SecretUrl,
    /// Connection time-out.
    pub connect_timeout: Duration,
    /// Amounts are converted to this currency.
    pub reporting_currency: String,
    /// Products loaded at most.
    pub max_products: usize,
    /// How long a loaded catalog is used before it is loaded again.
    pub ttl: Duration,
}

/// The Kafka topics the indexer reads and how it connects.
pub struct KafkaSource {
    /// Brokers and the operator's properties (`group.id` and the offset settings are
    /// the indexer's own).
    pub client: ClientConfig,
    /// The four event topics.
    pub topics: Vec<String>,
    /// How often librdkafka reports statistics, for the lag gauges (0: never).
    pub lag_interval_ms: u64,
}

/// Documents read since the last commit, and the offsets that commit moves to.
#[derive(Default)]
struct Batch {
    /// `(event_id, JSON)` not answered for yet.
    documents: Vec<(String, String)>,
    bytes: usize,
    /// The next offset to read, per partition.
    next: HashMap<(String, i32), i64>,
    /// Kafka timestamps (ms) of the oldest and newest records read.
    oldest_ms: Option<i64>,
    newest_ms: Option<i64>,
    /// When the first record of the batch was read.
    since: Option<Instant>,
}

impl Batch {
    fn is_empty(&self) -> bool {
        self.next.is_empty()
    }

    fn note(&mut self, message: &Record) {
        self.next.insert(
            (message.topic().to_owned(), message.partition()),
            message.offset() + 1,
        );
        if let Some(at) = message.timestamp_ms() {
            self.oldest_ms = Some(self.oldest_ms.map_or(at, |o| o.min(at)));
            self.newest_ms = Some(self.newest_ms.map_or(at, |n| n.max(at)));
        }
        self.since.get_or_insert_with(Instant::now);
    }
}

/// Indexes the events of the four topics (see [`crate::search`]).
pub struct SearchIndexer {
    settings: SearchSettings,
    client: IndexClient,
    consumer: StreamConsumer<GroupContext>,
    decoder: Decoder,
    catalog_source: CatalogSource,
    /// Whether the index is known to exist with its mapping.
    index_ready: AtomicBool,
    /// The offsets committed last, per partition (committed again, waiting, at the end:
    /// an asynchronous commit may still be in flight when the consumer closes).
    committed: Mutex<HashMap<(String, i32), i64>>,
}

impl SearchIndexer {
    /// An indexer reading `kafka` with the consumer group of `settings`.
    ///
    /// # Errors
    ///
    /// [`Error::Index`] when the index client cannot be built (see [`IndexClient::new`]);
    /// [`Error::Kafka`] when the consumer cannot be created or subscribed.
    pub fn new(
        settings: SearchSettings,
        kafka: KafkaSource,
        decoder: Decoder,
        catalog_source: CatalogSource,
    ) -> Result<Self, Error> {
        let client = IndexClient::new(&settings)?;
        let mut config = kafka.client;
        if kafka.lag_interval_ms > 0 {
            config.set("statistics.interval.ms", kafka.lag_interval_ms.to_string());
        }
        let consumer: StreamConsumer<GroupContext> = config
            .set("group.id", &settings.group_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("isolation.level", "read_committed")
            .set("partition.assignment.strategy", "cooperative-sticky")
            .set("auto.offset.reset", "earliest")
            // Records fetched ahead are read while the index is retried: bounded.
            .set("queued.max.messages.kbytes", "16384")
            .create_with_context(GroupContext::new(
                "search indexer",
                "processor_search_lag_documents",
            ))?;
        let topics: Vec<&str> = kafka.topics.iter().map(String::as_str).collect();
        consumer.subscribe(&topics)?;
        Ok(SearchIndexer {
            settings,
            client,
            consumer,
            decoder,
            catalog_source,
            index_ready: AtomicBool::new(false),
            committed: Mutex::new(HashMap::new()),
        })
    }

    /// Runs until `shutdown` turns true, then makes one last bounded attempt to send
    /// what it read. Never returns an error: failures are retried with backoff, and what
    /// is not answered for is read again from the committed offsets after a restart.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        tracing::info!(url = %self.settings.url, index = %self.settings.index,
            group = %self.settings.group_id, "search indexer started");
        // A document is created once and never rewritten: nothing is read before the
        // catalog that enriches documents is loaded.
        let Some(mut catalog) = self.first_catalog(&mut shutdown).await else {
            return;
        };
        let mut loaded = Instant::now();
        let mut batch = Batch::default();
        loop {
            let due = batch
                .since
                .map(|since| since + self.settings.flush_interval);
            let full = tokio::select! {
                biased;
                _ = shutdown.changed() => break,
                _ = sleep_until(due), if due.is_some() => true,
                message = self.consumer.recv() => match message {
                    Ok(message) => {
                        let message = Record::of(&message, message.topic().into());
                        if !self.add(&mut batch, &message, &catalog, &mut shutdown).await {
                            break;
                        }
                        batch.documents.len() >= self.settings.batch_size
                            || batch.bytes >= self.settings.max_bulk_bytes
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "search indexer: Kafka consumer error");
                        false
                    }
                },
            };
            if full && !self.flush(&mut batch, &catalog, &mut shutdown).await {
                break;
            }
            if loaded.elapsed() >= self.catalog_source.ttl {
                match self.load_catalog().await {
                    Ok(fresh) => catalog = fresh,
                    Err(e) => {
                        tracing::warn!(error = %e, "search indexer: catalog refresh failed; keeping the cached one");
                    }
                }
                loaded = Instant::now();
            }
        }
        // One attempt (shutdown is set: no retry); what is not answered for now is read
        // again after the next start.
        let last = self.flush(&mut batch, &catalog, &mut shutdown);
        let flushed = matches!(
            tokio::time::timeout(self.settings.request_timeout, last).await,
            Ok(true)
        );
        self.commit_last();
        if flushed {
            tracing::info!("search indexer stopped; everything read was indexed");
        } else {
            tracing::info!(
                "search indexer stopped; documents not answered for are read again after the next start"
            );
        }
    }

    /// Commits, and waits for, the last offsets of the partitions still assigned.
    fn commit_last(&self) {
        let assigned = self.consumer.assignment().unwrap_or_default();
        let committed = lock(&self.committed);
        let mut offsets = TopicPartitionList::new();
        for ((topic, partition), next) in committed.iter() {
            if assigned.find_partition(topic, *partition).is_some() {
                let _ = offsets.add_partition_offset(topic, *partition, Offset::Offset(*next));
            }
        }
        if offsets.count() > 0 {
            if let Err(e) = self.consumer.commit(&offsets, CommitMode::Sync) {
                tracing::warn!(error = %e, "search indexer: last offsets not committed");
            }
        }
    }

    /// Loads the catalog, retrying until it succeeds; `None` when `shutdown` came first.
    async fn first_catalog(&self, shutdown: &mut watch::Receiver<bool>) -> Option<Catalog> {
        let mut failures = 0;
        loop {
            match self.load_catalog().await {
                Ok(catalog) => return Some(catalog),
                Err(e) => {
                    failures += 1;
                    count_failure(&e);
                    let delay = self.settings.backoff.jittered(failures);
                    tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64,
                        "search indexer cannot start yet");
                    if !pause(delay, shutdown).await {
                        return None;
                    }
                }
            }
        }
    }

    async fn load_catalog(&self) -> Result<Catalog, Error> {
        let source = &self.catalog_source;
        let store = Store::connect(source.postgres_url.expose(), source.connect_timeout).await?;
        store
            .load_catalog(&source.reporting_currency, source.max_products)
            .await
    }

    /// Adds a record's document to `batch` (a record that is not an event the processor
    /// reads only moves the offset). Waits for a schema registry that cannot be reached;
    /// false when `shutdown` came first.
    async fn add(
        &self,
        batch: &mut Batch,
        message: &Record,
        catalog: &Catalog,
        shutdown: &mut watch::Receiver<bool>,
    ) -> bool {
        let mut failures = 0;
        let writer = loop {
            match self.decoder.avro_writer(message).await {
                Ok(writer) => break Ok(writer),
                Err(NoWriter::Letter(code, why)) => break Err((code, why)),
                Err(NoWriter::Unreachable(e)) => {
                    failures += 1;
                    let delay = self.settings.backoff.jittered(failures);
                    tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64,
                        "search indexer: the schema registry cannot be reached; waiting");
                    if !pause(delay, shutdown).await {
                        return false;
                    }
                }
            }
        };
        match writer.and_then(|writer| self.decoder.decode(message, writer.as_deref())) {
            Ok(incoming) => {
                let document = super::document(&incoming, catalog).to_string();
                batch.bytes += incoming.event_id.len() + document.len();
                batch.documents.push((incoming.event_id, document));
            }
            Err((code, _)) => {
                // The pipeline dead-letters it; it has no document.
                metrics::counter!("processor_search_records_skipped_total", "reason" => code)
                    .increment(1);
            }
        }
        batch.note(message);
        true
    }

    /// Sends the batch until the index has answered for every document, then commits
    /// its offsets. False when `shutdown` came first (the batch is kept).
    async fn flush(
        &self,
        batch: &mut Batch,
        catalog: &Catalog,
        shutdown: &mut watch::Receiver<bool>,
    ) -> bool {
        if batch.is_empty() {
            return true;
        }
        let mut failures = 0;
        loop {
            match self.deliver(&mut batch.documents).await {
                Ok(()) => break,
                Err(e) => {
                    failures += 1;
                    count_failure(&e);
                    set_lag_seconds(batch.oldest_ms);
                    let delay = self.settings.backoff.jittered(failures);
                    tracing::warn!(error = %e, documents = batch.documents.len(),
                        retry_in_ms = delay.as_millis() as u64,
                        "search index write failed; the documents are sent again");
                    if !self.wait_reading(delay, batch, catalog, shutdown).await {
                        return false;
                    }
                }
            }
        }
        if let Ok(assigned) = self.consumer.assignment() {
            let _ = self.consumer.resume(&assigned);
        }
        set_lag_seconds(batch.newest_ms);
        let revoked = self.consumer.context().take_revoked();
        let mut offsets = TopicPartitionList::new();
        let mut committed = lock(&self.committed);
        for tp in &revoked {
            committed.remove(&(tp.topic.to_string(), tp.partition));
        }
        for ((topic, partition), next) in std::mem::take(&mut batch.next) {
            // Another instance owns it now and may have committed further.
            if revoked
                .iter()
                .any(|tp| *tp.topic == *topic && tp.partition == partition)
            {
                continue;
            }
            let _ = offsets.add_partition_offset(&topic, partition, Offset::Offset(next));
            committed.insert((topic, partition), next);
        }
        drop(committed);
        if offsets.count() > 0 {
            if let Err(e) = self.consumer.commit(&offsets, CommitMode::Async) {
                // The documents are in the index; they are read again and answered 409.
                tracing::warn!(error = %e, "search indexer: offsets not committed");
            }
        }
        *batch = Batch::default();
        true
    }

    /// Waits `delay` with the assigned partitions paused, still polling the consumer so
    /// that it stays in its group and reports its lag; records fetched before the pause
    /// join the batch. False when `shutdown` came first.
    async fn wait_reading(
        &self,
        delay: Duration,
        batch: &mut Batch,
        catalog: &Catalog,
        shutdown: &mut watch::Receiver<bool>,
    ) -> bool {
        let until = tokio::time::Instant::now() + delay;
        loop {
            // Again each time: partitions assigned meanwhile are paused too.
            if let Ok(assigned) = self.consumer.assignment() {
                let _ = self.consumer.pause(&assigned);
            }
            if *shutdown.borrow() {
                return false;
            }
            tokio::select! {
                biased;
                _ = shutdown.changed() => return false,
                () = tokio::time::sleep_until(until) => return true,
                message = self.consumer.recv() => {
                    if let Ok(message) = message {
                        let message = Record::of(&message, message.topic().into());
                        if !self.add(batch, &message, catalog, shutdown).await {
                            return false;
                        }
                    }
                }
            }
        }
    }

    /// Sends `documents`, removing each the index answered for (indexed, already there,
    /// or refused for good); the ones to send again stay.
    ///
    /// # Errors
    ///
    /// The index could not be reached, failed, or asked for documents again.
    async fn deliver(&self, documents: &mut Vec<(String, String)>) -> Result<(), Error> {
        if !self.index_ready.load(Ordering::Relaxed) {
            self.create_index().await?;
            self.index_ready.store(true, Ordering::Relaxed);
        }
        // Documents per request: the configured batch, halved while the index refuses
        // whole requests as too large or malformed, to find the document it refuses.
        let mut limit = self.settings.batch_size;
        while !documents.is_empty() {
            // A request holds at most `max_bulk_bytes` of documents (at least one).
            let mut bytes = 0;
            let fit = documents
                .iter()
                .take(limit)
                .position(|(id, doc)| {
                    bytes += id.len() + doc.len();
                    bytes > self.settings.max_bulk_bytes
                })
                .unwrap_or(documents.len().min(limit))
                .max(1);
            let started = Instant::now();
            let answer = self
                .client
                .send(
                    Method::POST,
                    "/_bulk",
                    "application/x-ndjson",
                    bulk_body(&self.settings.index, &documents[..fit]),
                )
                .await?;
            metrics::histogram!("processor_search_bulk_seconds")
                .record(started.elapsed().as_secs_f64());
            let status = answer.status.as_u16();
            if !answer.status.is_success() {
                if !refused_for_its_documents(status) {
                    return Err(Error::Index(format!(
                        "bulk request answered {}: {}",
                        answer.status,
                        excerpt(&answer.body)
                    )));
                }
                // Retrying the same request cannot succeed: fewer documents can.
                if fit == 1 {
                    let (id, _) = documents.remove(0);
                    tracing::warn!(event_id = %id, status, answer = %excerpt(&answer.body),
                        "search index refused a request holding only this document; it is dropped");
                    metrics::counter!("processor_search_documents_failed_total", "reason" => "refused_request").increment(1);
                } else {
                    tracing::warn!(status, documents = fit,
                        "search index refused a whole bulk request; sending fewer documents per request");
                    limit = (fit / 2).max(1);
                }
                continue;
            }
            let outcomes = classify(&answer.body, fit).map_err(Error::Index)?;
            let (mut indexed, mut existing, mut rejected, mut retry) = (0u64, 0u64, 0u64, None);
            let mut again = Vec::new();
            for ((id, doc), outcome) in documents.drain(..fit).zip(outcomes) {
                match outcome {
                    ItemOutcome::Indexed => indexed += 1,
                    ItemOutcome::Exists => existing += 1,
                    ItemOutcome::Rejected(why) => {
                        rejected += 1;
                        tracing::warn!(event_id = %id, reason = %why, "search index rejected a document; it is dropped");
                    }
                    ItemOutcome::Retry(why) => {
                        retry.get_or_insert(why);
                        again.push((id, doc));
                    }
                }
            }
            metrics::counter!("processor_search_documents_indexed_total").increment(indexed);
            metrics::counter!("processor_search_documents_existing_total").increment(existing);
            if rejected > 0 {
                metrics::counter!("processor_search_documents_failed_total", "reason" => "rejected").increment(rejected);
            }
            if let Some(why) = retry {
                documents.splice(0..0, again);
                return Err(Error::Index(format!("documents to send again: {why}")));
            }
            limit = self.settings.batch_size;
        }
        Ok(())
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
}

/// Counts a failed attempt by its cause.
fn count_failure(error: &Error) {
    let reason = match error {
        Error::Timeout(_) => "timeout",
        Error::Postgres(_) => "postgres",
        _ => "index",
    };
    metrics::counter!("processor_search_failures_total", "reason" => reason).increment(1);
}

/// `processor_search_lag_seconds`: how old the record at `at_ms` (Kafka time) is now.
fn set_lag_seconds(at_ms: Option<i64>) {
    if let Some(at) = at_ms {
        let age = (ingest_common::clock::unix_ms() - at).max(0);
        metrics::gauge!("processor_search_lag_seconds").set(age as f64 / 1000.0);
    }
}

/// Waits `delay`; false when `shutdown` turned true first.
async fn pause(delay: Duration, shutdown: &mut watch::Receiver<bool>) -> bool {
    if *shutdown.borrow() {
        return false;
    }
    tokio::select! {
        _ = shutdown.changed() => false,
        () = tokio::time::sleep(delay) => true,
    }
}

/// Sleeps until `at` (never, when `None`).
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The start of an answer body, for messages.
fn excerpt(body: &[u8]) -> String {
    String::from_utf8_lossy(&body[..body.len().min(500)]).into_owned()
}

/// Whether a bulk request answered `status` was refused for what it holds, so that
/// fewer documents may pass and one refused alone is dropped: malformed (400), too large
/// (413), unprocessable (422). Any other failure (401 and 403 after a credential change,
/// 404 from a wrong URL, 408, 429, 5xx) is the index's or the configuration's, not the
/// documents': it is retried, and no document is dropped for it.
fn refused_for_its_documents(status: u16) -> bool {
    matches!(status, 400 | 413 | 422)
}

#[cfg(test)]
mod tests {
    use super::refused_for_its_documents;

    #[test]
    fn only_answers_about_the_documents_drop_documents() {
        for status in [400, 413, 422] {
            assert!(refused_for_its_documents(status), "{status}");
        }
        for status in [401, 403, 404, 405, 408, 415, 429, 500, 502, 503] {
            assert!(!refused_for_its_documents(status), "{status}");
        }
    }
}
