//! The catalog, reloaded in the background every `catalog.refresh_secs` on a PostgreSQL
//! connection of its own, and handed to the pipeline through a watch channel: a reload
//! of a million products never holds up consumption or a checkpoint. A reload that
//! fails keeps the catalog the pipeline has, and is tried again at the next interval.

use std::sync::Arc;
use std::time::Duration;

use ingest_common::secret::SecretUrl;
use tokio::sync::watch;

use crate::catalog::Catalog;
use crate::store::Store;

/// Where and how often the catalog is loaded.
pub(super) struct CatalogSource {
    /// PostgreSQL.
    pub postgres_url: SecretUrl,
    /// Connection time-out.
    pub connect_timeout: Duration,
    /// Amounts are converted to this currency.
    pub reporting_currency: String,
    /// Products loaded at most.
    pub max_products: usize,
    /// Time between two loads.
    pub interval: Duration,
}

/// Starts the reloads; the receiver sees each catalog loaded after `first`. The task
/// ends when the receiver is dropped.
pub(super) fn spawn(source: CatalogSource, first: Arc<Catalog>) -> watch::Receiver<Arc<Catalog>> {
    let (publish, latest) = watch::channel(first);
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(source.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await; // the first tick is now: `first` is fresh
        loop {
            tokio::select! {
                _ = publish.closed() => return,
                _ = ticker.tick() => {}
            }
            match load(&source).await {
                Ok(catalog) => {
                    tracing::debug!(products = catalog.len(), "catalog reloaded");
                    if publish.send(Arc::new(catalog)).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "catalog refresh failed; keeping the cached one");
                }
            }
        }
    });
    latest
}

async fn load(source: &CatalogSource) -> Result<Catalog, crate::error::Error> {
    let store = Store::connect(&source.postgres_url, source.connect_timeout).await?;
    store
        .load_catalog(&source.reporting_currency, source.max_products)
        .await
}
