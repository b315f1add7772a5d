//! Token-bucket rate limits in events per second: one for the whole agent, one per API
//! key, and one per client within a key (`governor`'s lock-free GCRA; the keyed state
//! lives in sharded maps, emptied of full buckets every minute).

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;

use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter as Gcra};

use crate::config::RateLimitConfig;
use crate::response::ApiError;

/// A client within a key: the key's storefront (none without keys) and the address.
type ClientKey = (Option<Arc<str>>, IpAddr);

/// The configured limits; a limit of 0 is off.
#[derive(Clone, Default)]
pub struct RateLimiter {
    global: Option<Arc<DefaultDirectRateLimiter>>,
    per_key: Option<Arc<DefaultKeyedRateLimiter<Arc<str>>>>,
    per_client: Option<Arc<DefaultKeyedRateLimiter<ClientKey>>>,
}

fn quota(per_sec: u32, burst: u32) -> Option<Quota> {
    let rate = NonZeroU32::new(per_sec)?;
    let burst = NonZeroU32::new(burst).unwrap_or(rate);
    Some(Quota::per_second(rate).allow_burst(burst))
}

impl RateLimiter {
    /// Limits as configured.
    pub fn new(config: &RateLimitConfig) -> Self {
        RateLimiter {
            global: quota(config.global_per_sec, config.global_burst)
                .map(|q| Arc::new(Gcra::direct(q))),
            per_key: quota(config.per_key_per_sec, config.per_key_burst)
                .map(|q| Arc::new(Gcra::keyed(q))),
            per_client: quota(config.per_client_per_sec, config.per_client_burst)
                .map(|q| Arc::new(Gcra::keyed(q))),
        }
    }

    /// Whether any limit is on.
    pub fn enabled(&self) -> bool {
        self.global.is_some() || self.per_key.is_some() || self.per_client.is_some()
    }

    /// Takes `events` tokens from the client's bucket within its key, the key's bucket
    /// and the global one, in that order. `client` is `None` for local clients (the
    /// Unix socket), which no per-client limit applies to.
    ///
    /// # Errors
    ///
    /// 429 when one has too few. Tokens already taken from the buckets before it are
    /// not given back: a client hitting a wider limit uses its own share too, which is
    /// the conservative side.
    pub fn check(
        &self,
        key: Option<&Arc<str>>,
        client: Option<IpAddr>,
        events: u32,
    ) -> Result<(), ApiError> {
        let Some(n) = NonZeroU32::new(events) else {
            return Ok(());
        };
        if let (Some(limiter), Some(client)) = (&self.per_client, client) {
            if !matches!(limiter.check_key_n(&(key.cloned(), client), n), Ok(Ok(()))) {
                return Err(ApiError::RateLimited);
            }
        }
        if let (Some(limiter), Some(key)) = (&self.per_key, key) {
            // More events than the burst can never pass: refuse rather than wait.
            if !matches!(limiter.check_key_n(key, n), Ok(Ok(()))) {
                return Err(ApiError::RateLimited);
            }
        }
        if let Some(limiter) = &self.global {
            if !matches!(limiter.check_n(n), Ok(Ok(()))) {
                return Err(ApiError::RateLimited);
            }
        }
        Ok(())
    }

    /// Forgets keys whose buckets are full again (bounded memory).
    pub fn housekeeping(&self) {
        if let Some(limiter) = &self.per_key {
            limiter.retain_recent();
        }
        if let Some(limiter) = &self.per_client {
            limiter.retain_recent();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_key_and_global_limits_refuse_beyond_the_burst() {
        let limiter = RateLimiter::new(&RateLimitConfig {
            global_per_sec: 0,
            global_burst: 0,
            per_key_per_sec: 10,
            per_key_burst: 10,
            ..RateLimitConfig::default()
        });
        let a: Arc<str> = Arc::from("a");
        let b: Arc<str> = Arc::from("b");
        assert!(limiter.check(Some(&a), None, 10).is_ok());
        assert!(
            limiter.check(Some(&a), None, 1).is_err(),
            "a spent its burst"
        );
        assert!(
            limiter.check(Some(&b), None, 5).is_ok(),
            "b has its own bucket"
        );
        assert!(
            limiter.check(None, None, 1_000).is_ok(),
            "no key, no global limit"
        );

        let global = RateLimiter::new(&RateLimitConfig {
            global_per_sec: 5,
            global_burst: 0,
            per_key_per_sec: 0,
            per_key_burst: 0,
            ..RateLimitConfig::default()
        });
        assert!(global.check(None, None, 5).is_ok());
        assert!(global.check(Some(&a), None, 1).is_err());
        assert!(RateLimiter::default().check(None, None, u32::MAX).is_ok());
    }

    #[test]
    fn each_client_of_a_key_has_its_own_bucket_and_shares_the_key_s() {
        let limiter = RateLimiter::new(&RateLimitConfig {
            per_key_per_sec: 10,
            per_key_burst: 10,
            per_client_per_sec: 4,
            per_client_burst: 4,
            ..RateLimitConfig::default()
        });
        let shop: Arc<str> = Arc::from("shop");
        let other: Arc<str> = Arc::from("other");
        let (one, two): (IpAddr, IpAddr) = (
            "192.0.2.1".parse().expect("ip"),
            "192.0.2.2".parse().expect("ip"),
        );
        assert!(limiter.check(Some(&shop), Some(one), 4).is_ok());
        assert!(
            limiter.check(Some(&shop), Some(one), 1).is_err(),
            "one visitor cannot take more than its share"
        );
        assert!(
            limiter.check(Some(&shop), Some(two), 4).is_ok(),
            "another visitor can"
        );
        assert!(
            limiter.check(Some(&other), Some(one), 4).is_ok(),
            "the same address under another key is another client"
        );
        // The key's own bucket still bounds all its clients together: 8 of 10 spent.
        let three: IpAddr = "192.0.2.3".parse().expect("ip");
        assert!(limiter.check(Some(&shop), Some(three), 3).is_err());
        // Local clients (the Unix socket) are not limited per client.
        let local = RateLimiter::new(&RateLimitConfig {
            per_client_per_sec: 1,
            per_client_burst: 1,
            ..RateLimitConfig::default()
        });
        assert!(local.enabled());
        assert!(local.check(None, None, 100).is_ok());
        assert!(local.check(None, Some(one), 1).is_ok());
        assert!(
            local.check(None, Some(one), 1).is_err(),
            "keyless clients are limited too"
        );
    }
}
