//! Publishing the recommendations of recently active users, off the checkpoint path.
//!
//! The checkpoint stage notes the users whose recent products it copied to
//! `user_activity` ([`ActiveUsers::add`], at most once per interval); every
//! `recommendations.publish_interval_secs` the publisher computes the recommendations of
//! all of them from committed state (the pair deltas folded first, [`super::fold`]), a
//! few thousand users per statement, and produces one
//! record per user. So a user's recommendations are published at most once per interval
//! however many events they send, and the consume loop never waits for the computation.
//! Delivery is at least once while running; a round lost to a crash or a failed statement
//! is made up by the user's next round (users of a failed statement are kept for it).

use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio::sync::watch;

use super::active_users::ActiveUsers;
use crate::error::Error;
use crate::store::Store;

/// Users per recommendations statement: large enough that one pass over the product
/// pairs serves many users, small enough that one statement stays short.
const USERS_PER_STATEMENT: usize = 5_000;

/// What the publisher needs to know.
#[derive(Debug, Clone)]
pub struct PublisherSettings {
    /// Topic the records go to.
    pub topic: String,
    /// Products per record.
    pub top_n: usize,
    /// Partners per product the recommendations draw on.
    pub partners: usize,
    /// Time between rounds.
    pub interval: Duration,
    /// PostgreSQL to read committed state from.
    pub postgres_url: String,
    /// Connect time-out.
    pub postgres_connect_timeout: Duration,
    /// Distinct pairs one fold adds at most (see [`super::fold`]).
    pub fold_max_pairs: i64,
}

/// Publishes the recommendations of the users noted in [`ActiveUsers`].
pub struct Publisher {
    settings: PublisherSettings,
    producer: FutureProducer,
    active: Arc<ActiveUsers>,
}

impl Publisher {
    /// A publisher producing with `producer` (idempotent, `acks=all`).
    pub fn new(settings: PublisherSettings, producer: FutureProducer) -> Self {
        Publisher {
            settings,
            producer,
            active: Arc::new(ActiveUsers::default()),
        }
    }

    /// The set the consume loop notes users in.
    pub fn active_users(&self) -> Arc<ActiveUsers> {
        self.active.clone()
    }

    /// Runs a round every interval until `stop` turns true, then one last round for the
    /// users noted until then (bounded by the interval), and waits for its deliveries.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let mut store: Option<Store> = None;
        tracing::info!(
            topic = %self.settings.topic,
            interval_secs = self.settings.interval.as_secs(),
            "recommendations publisher started"
        );
        loop {
            tokio::select! {
                _ = stop.changed() => break,
                _ = tokio::time::sleep(self.settings.interval) => {}
            }
            if *stop.borrow() {
                break;
            }
            self.round(&mut store, false).await;
        }
        let last = self.round(&mut store, true);
        if tokio::time::timeout(self.settings.interval, last)
            .await
            .is_err()
        {
            tracing::info!("recommendations publisher stopped before its last round ended");
        }
    }

    /// Computes and produces the recommendations of every noted user. With `wait`, also
    /// waits for the deliveries (at shutdown); otherwise they are awaited in the
    /// background.
    async fn round(&self, store: &mut Option<Store>, wait: bool) {
        let users = self.active.take();
        if users.is_empty() {
            return;
        }
        let started = Instant::now();
        // The pair deltas of every checkpoint that noted these users, folded first.
        if let Err(e) = self.fold(store).await {
            let refused = self.active.add(users.iter().map(String::as_str));
            metrics::counter!("processor_recommendations_dropped_total").increment(refused as u64);
            tracing::warn!(error = %e, users = users.len(), "folding product pairs failed; the round is tried again next time");
            return;
        }
        let mut deliveries = Vec::with_capacity(users.len());
        for (i, chunk) in users.chunks(USERS_PER_STATEMENT).enumerate() {
            match self.compute(store, chunk).await {
                Ok(lists) => {
                    for (user, products) in &lists {
                        deliveries.extend(self.produce(user, products));
                    }
                }
                Err(e) => {
                    let left = &users[i * USERS_PER_STATEMENT..];
                    let refused = self.active.add(left.iter().map(String::as_str));
                    metrics::counter!("processor_recommendations_dropped_total")
                        .increment(refused as u64);
                    tracing::warn!(error = %e, users = left.len(), "reading recommendations failed; tried again next round");
                    break;
                }
            }
        }
        metrics::histogram!("processor_recommendations_round_seconds")
            .record(started.elapsed().as_secs_f64());
        metrics::gauge!("processor_recommendations_waiting_users").set(self.active.len() as f64);
        let published = deliveries.len() as u64;
        metrics::counter!("processor_recommendations_published_total").increment(published);
        let confirm = async move {
            for delivery in deliveries {
                if !matches!(delivery.await, Ok(Ok(_))) {
                    metrics::counter!("processor_recommendations_dropped_total").increment(1);
                }
            }
        };
        if wait {
            confirm.await;
        } else {
            tokio::spawn(confirm);
        }
    }

    async fn fold(&self, store: &mut Option<Store>) -> Result<(), Error> {
        let store = Store::reopen(
            store,
            &self.settings.postgres_url,
            self.settings.postgres_connect_timeout,
        )
        .await?;
        super::fold::fold_pending(store, self.settings.fold_max_pairs, self.settings.partners).await
    }

    async fn compute(
        &self,
        store: &mut Option<Store>,
        users: &[String],
    ) -> Result<Vec<(String, Vec<super::Recommendation>)>, Error> {
        let store = Store::reopen(
            store,
            &self.settings.postgres_url,
            self.settings.postgres_connect_timeout,
        )
        .await?;
        let users: Vec<&str> = users.iter().map(String::as_str).collect();
        store
            .recommendations_of(
                &users,
                self.settings.top_n,
                i64::try_from(self.settings.partners).unwrap_or(i64::MAX),
            )
            .await
    }

    fn produce(
        &self,
        user: &str,
        products: &[super::Recommendation],
    ) -> Option<rdkafka::producer::DeliveryFuture> {
        let generated_at = crate::report::rfc3339(ingest_common::clock::unix_ms() / 1000);
        let value = serde_json::json!({"user_id": user, "products": products, "generated_at": generated_at})
            .to_string();
        match self.producer.send_result(
            FutureRecord::to(&self.settings.topic)
                .key(user)
                .payload(&value),
        ) {
            Ok(delivery) => Some(delivery),
            Err((e, _)) => {
                metrics::counter!("processor_recommendations_dropped_total").increment(1);
                tracing::warn!(error = %e, "recommendation not queued");
                None
            }
        }
    }
}
