//! Wall-clock helpers: Unix time in the units the event model and the stores use.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch (0 for a clock set before 1970).
pub fn unix_ms() -> i64 {
    i64::try_from(since_epoch().as_millis()).unwrap_or(i64::MAX)
}

/// Seconds since the Unix epoch (0 for a clock set before 1970).
pub fn unix_secs() -> u64 {
    since_epoch().as_secs()
}

/// Nanoseconds since the Unix epoch (0 for a clock set before 1970), saturating.
pub fn unix_nanos() -> u64 {
    u64::try_from(since_epoch().as_nanos()).unwrap_or(u64::MAX)
}

/// How long ago `then` was by the wall clock (a file's modification time, say); zero
/// when `then` lies ahead, as it does after the clock is set back.
pub fn age(then: SystemTime) -> Duration {
    SystemTime::now().duration_since(then).unwrap_or_default()
}

/// The time since the Unix epoch (zero for a clock set before 1970).
pub fn since_epoch() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_agree() {
        let ms = unix_ms();
        let secs = unix_secs();
        assert!(ms > 1_600_000_000_000, "after 2020");
        assert!((ms / 1000 - secs as i64).abs() <= 1);
        assert!(unix_nanos() / 1_000_000 >= ms as u64);
    }

    #[test]
    fn age_is_zero_for_a_time_ahead() {
        let now = SystemTime::now();
        assert!(age(now - Duration::from_secs(5)) >= Duration::from_secs(5));
        assert_eq!(age(now + Duration::from_secs(3600)), Duration::ZERO);
    }
}
