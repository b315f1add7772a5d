//! A rate limit for repetitive log lines (one per second, with a count of the rest).

use std::sync::atomic::{AtomicU64, Ordering};

/// Lets one log line through per second and counts the ones it held back, so a broker
/// outage produces a steady trickle of warnings instead of one per record.
pub(crate) struct LogThrottle {
    last_second: AtomicU64,
    suppressed: AtomicU64,
}

impl LogThrottle {
    pub(crate) fn new() -> Self {
        LogThrottle {
            last_second: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// `Some(suppressed since the last line)` if a line may be logged now.
    pub(crate) fn allow(&self) -> Option<u64> {
        let now = ingest_common::clock::unix_secs();
        let last = self.last_second.load(Ordering::Relaxed);
        if now != last
            && self
                .last_second
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            Some(self.suppressed.swap(0, Ordering::Relaxed))
        } else {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttle_lets_one_line_per_second_through() {
        let throttle = LogThrottle::new();
        assert_eq!(throttle.allow(), Some(0));
        let held: usize = (0..10).filter(|_| throttle.allow().is_none()).count();
        // All ten fall in the same second unless the clock ticked over in between.
        assert!(held >= 9, "held back {held}");
    }
}
