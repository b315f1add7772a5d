//! Capped exponential backoff with jitter, for every retry loop.
//!
//! The wait doubles per failure from `initial` up to `max`. [`Backoff::jittered`] draws
//! the actual wait uniformly from the upper half of that (`delay / 2 ..= delay`, "equal
//! jitter"), so that instances failing together (a database restart seen by every
//! processor) do not retry in lockstep, while the wait still grows and keeps its cap.

use std::time::Duration;

/// A capped exponential backoff.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The first wait.
    pub initial: Duration,
    /// The longest wait.
    pub max: Duration,
}

impl Backoff {
    /// A backoff from `initial` doubling up to `max`.
    pub const fn new(initial: Duration, max: Duration) -> Self {
        Backoff { initial, max }
    }

    /// The wait before attempt `failures + 1` after `failures` (≥ 1) failures, without
    /// jitter: `initial · 2^(failures − 1)`, at most `max`.
    pub fn delay(&self, failures: u32) -> Duration {
        let factor = 1u32 << failures.saturating_sub(1).min(20);
        self.initial.saturating_mul(factor).min(self.max)
    }

    /// [`delay`](Self::delay) with jitter: uniform in `delay / 2 ..= delay`.
    pub fn jittered(&self, failures: u32) -> Duration {
        jitter(self.delay(failures))
    }
}

/// Uniform in `delay / 2 ..= delay`.
pub fn jitter(delay: Duration) -> Duration {
    let nanos = u64::try_from(delay.as_nanos()).unwrap_or(u64::MAX);
    let half = nanos / 2;
    Duration::from_nanos(half + fastrand::u64(0..=nanos - half))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap() {
        let b = Backoff::new(Duration::from_millis(100), Duration::from_millis(350));
        assert_eq!(b.delay(1), Duration::from_millis(100));
        assert_eq!(b.delay(2), Duration::from_millis(200));
        assert_eq!(b.delay(3), Duration::from_millis(350));
        assert_eq!(b.delay(60), Duration::from_millis(350));
        assert_eq!(b.delay(0), Duration::from_millis(100));
    }

    #[test]
    fn jitter_stays_in_the_upper_half_and_varies() {
        let b = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
        let draws: Vec<Duration> = (0..200).map(|_| b.jittered(3)).collect();
        for d in &draws {
            assert!(
                *d >= Duration::from_millis(200) && *d <= Duration::from_millis(400),
                "{d:?}"
            );
        }
        assert!(draws.iter().any(|d| *d != draws[0]), "not all the same");
        assert_eq!(jitter(Duration::ZERO), Duration::ZERO);
        assert!(b.jittered(60) <= Duration::from_secs(10));
    }
}
