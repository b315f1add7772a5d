//! Token-bucket rate limits in events per second: one for the whole agent and one per
//! API key (`governor`'s lock-free GCRA; the per-key state lives in a sharded map).

use std::num::NonZeroU32;
use std::sync::Arc;

use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter as Gcra};

use crate::config::RateLimitConfig;
use crate::response::ApiError;

/// The configured limits; a limit of 0 is off.
#[derive(Clone, Default)]
pub struct RateLimiter {
    global: Option<Arc<DefaultDirectRateLimiter>>,
    per_key: Option<Arc<DefaultKeyedRateLimiter<Arc<str>>>>,
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
        }
    }

    /// Whether any limit is on.
    pub fn enabled(&self) -> bool {
        self.global.is_some() || self.per_key.is_some()
    }

    /// Takes `events` tokens from the key's bucket and the global one.
    ///
    /// # Errors
    ///
    /// 429 when either has too few (nothing is taken from the other then... except
    /// that a key's tokens are spent when only the global bucket refuses: a client
    /// hitting the global limit uses its own share too, which is the conservative side).
    pub fn check(&self, key: Option<&Arc<str>>, events: u32) -> Result<(), ApiError> {
        let Some(n) = NonZeroU32::new(events) else {
            return Ok(());
        };
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
        });
        let a: Arc<str> = Arc::from("a");
        let b: Arc<str> = Arc::from("b");
        assert!(limiter.check(Some(&a), 10).is_ok());
        assert!(limiter.check(Some(&a), 1).is_err(), "a spent its burst");
        assert!(limiter.check(Some(&b), 5).is_ok(), "b has its own bucket");
        assert!(
            limiter.check(None, 1_000).is_ok(),
            "no key, no global limit"
        );

        let global = RateLimiter::new(&RateLimitConfig {
            global_per_sec: 5,
            global_burst: 0,
            per_key_per_sec: 0,
            per_key_burst: 0,
        });
        assert!(global.check(None, 5).is_ok());
        assert!(global.check(Some(&a), 1).is_err());
        assert!(RateLimiter::default().check(None, u32::MAX).is_ok());
    }
}
