//! A small, fixed set of PostgreSQL connections for the HTTP API's reads.
//!
//! At most `size` connections exist. A request takes one for the time of its queries and
//! gives it back when the [`PooledStore`] is dropped; a connection found closed is
//! dropped and another opened in its place. Every connection is opened with
//! `statement_timeout` set (as the `options` startup parameter, so a re-opened one has
//! it too): a slow query holds one connection for at most that long and is then
//! cancelled by PostgreSQL (SQLSTATE 57014), while the other connections keep serving.
//! A request that finds no connection free within the statement timeout gets
//! [`Error::Timeout`] instead of queueing without bound.
//!
//! No pool crate: the API needs a handful of connections, one kind of query and no
//! health checks beyond [`Store::is_closed`], which this covers in a few lines.

use std::ops::Deref;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{Semaphore, SemaphorePermit};

use crate::error::Error;
use crate::store::{PostgresUrl, Store};

/// A bounded set of [`Store`] connections.
pub struct StorePool {
    idle: Mutex<Vec<Store>>,
    slots: Semaphore,
    url: String,
    connect_timeout: Duration,
    wait: Duration,
}

/// A connection taken from a [`StorePool`]; it goes back when dropped.
pub struct PooledStore<'a> {
    store: Option<Store>,
    pool: &'a StorePool,
    _slot: SemaphorePermit<'a>,
}

impl StorePool {
    /// A pool of at most `size` connections to `url` (opened on first use), each with
    /// `statement_timeout`. A request waits for a free connection at most that long too.
    pub fn new(
        url: &str,
        size: usize,
        connect_timeout: Duration,
        statement_timeout: Duration,
    ) -> StorePool {
        StorePool {
            idle: Mutex::new(Vec::with_capacity(size)),
            slots: Semaphore::new(size),
            url: with_statement_timeout(url, statement_timeout),
            connect_timeout,
            wait: statement_timeout,
        }
    }

    /// A connection: an idle one, or a new one while fewer than `size` exist.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`] when none is free within the statement timeout; connection
    /// errors ([`Error::Postgres`], [`Error::Timeout`]) when a new one cannot be opened.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a connection taken goes back when the returned value is dropped.
    pub async fn get(&self) -> Result<PooledStore<'_>, Error> {
        let slot = tokio::time::timeout(self.wait, self.slots.acquire())
            .await
            .map_err(|_| Error::Timeout("waiting for a free PostgreSQL connection"))?
            .map_err(|_| Error::Timeout("the PostgreSQL connections are shut down"))?;
        let idle = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let store = match idle {
            Some(store) if !store.is_closed() => store,
            _ => Store::connect(&self.url, self.connect_timeout).await?,
        };
        Ok(PooledStore {
            store: Some(store),
            pool: self,
            _slot: slot,
        })
    }
}

impl Deref for PooledStore<'_> {
    type Target = Store;

    fn deref(&self) -> &Store {
        self.store
            .as_ref()
            .expect("the store is only taken out when dropped")
    }
}

impl Drop for PooledStore<'_> {
    fn drop(&mut self) {
        if let Some(store) = self.store.take() {
            if !store.is_closed() {
                self.pool
                    .idle
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(store);
            }
        }
    }
}

/// `url` with `-c statement_timeout=MS` added to its `options` startup parameter (kept
/// if it has one: the last `options` of a URL wins, so the merged value goes last).
fn with_statement_timeout(url: &str, timeout: Duration) -> String {
    let setting = format!("-c statement_timeout={}", timeout.as_millis().max(1));
    // Read through PostgresUrl: tokio-postgres alone refuses libpq's TLS parameters.
    let options = match PostgresUrl::parse(url)
        .ok()
        .and_then(|u| u.config().get_options().map(str::to_owned))
    {
        Some(existing) if !existing.trim().is_empty() => format!("{existing} {setting}"),
        _ => setting,
    };
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}options={}", percent_encode(&options))
}

/// Percent-encodes every byte but the unreserved characters of RFC 3986.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3);
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(url: &str) -> (Option<String>, Option<String>) {
        let config: tokio_postgres::Config = url.parse().expect("a valid URL");
        (
            config.get_options().map(str::to_owned),
            config.get_dbname().map(str::to_owned),
        )
    }

    #[test]
    fn the_statement_timeout_is_a_startup_option_of_the_url() {
        let two_secs = Duration::from_secs(2);
        assert_eq!(
            options(&with_statement_timeout(
                "postgres://app:pw@db:5432/shop",
                two_secs
            )),
            (
                Some("-c statement_timeout=2000".to_owned()),
                Some("shop".to_owned())
            )
        );
        let url = with_statement_timeout(
            "postgres://db/shop?sslmode=disable&options=-c%20search_path%3Dx",
            Duration::from_millis(250),
        );
        assert_eq!(
            options(&url).0.as_deref(),
            Some("-c search_path=x -c statement_timeout=250")
        );
        let url = with_statement_timeout(
            "postgres://db/shop?sslmode=verify-full&sslrootcert=/ca.pem&options=-c%20a%3Db",
            Duration::from_millis(250),
        );
        let parsed = PostgresUrl::parse(&url).expect("a valid URL");
        assert_eq!(parsed.ssl_mode(), crate::store::SslMode::VerifyFull);
        assert_eq!(
            parsed.config().get_options(),
            Some("-c a=b -c statement_timeout=250")
        );
    }
}
