//! The circuit breaker around delivery.
//!
//! ```text
//!     delivery failure / all brokers down / no delivery for stall_timeout
//!   Closed ───────────────────────────────────────▶ Open ◀──┐ probe failed
//!     ▲                                              │      │ (backoff doubles,
//!     │ a record delivered                           │ probe up to the maximum)
//!     │                                              ▼      │
//!     └──────────────────────────────────────── HalfOpen ───┘ delivery failure
//!                 a record delivered        (probe answered: send again)
//! ```
//!
//! While the breaker is open the disk path stops feeding the producer (events keep
//! going into the disk buffer) and probes the cluster with a metadata request after a
//! backoff that doubles up to a cap, each wait jittered (drawn from its upper half) so
//! that agents seeing the same outage do not probe in lockstep. A delivered record
//! closes the breaker from any state: the cluster is evidently reachable. The memory path keeps sending whatever
//! the state (there is nowhere else to keep events) but reports the state all the same.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ingest_common::backoff::{jitter, Backoff};
use metrics::{counter, gauge, Counter, Gauge};

use crate::config::BreakerSettings;
use crate::telemetry::{Telemetry, INGESTOR};

/// The state of the circuit breaker around delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BreakerState {
    /// Kafka takes records: sending normally.
    Closed,
    /// Kafka is unreachable or failing: not sending, probing with backoff.
    Open,
    /// A probe was answered: sending again until a delivery confirms or fails.
    HalfOpen,
}

impl BreakerState {
    /// `closed`, `open` or `half_open`.
    pub const fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }

    /// The value of the `ingest_breaker_state` gauge: 0 closed, 1 half-open, 2 open.
    const fn gauge_value(self) -> f64 {
        match self {
            BreakerState::Closed => 0.0,
            BreakerState::HalfOpen => 1.0,
            BreakerState::Open => 2.0,
        }
    }

    fn from_u8(value: u8) -> Self {
        match value {
            1 => BreakerState::Open,
            2 => BreakerState::HalfOpen,
            _ => BreakerState::Closed,
        }
    }

    const fn to_u8(self) -> u8 {
        match self {
            BreakerState::Closed => 0,
            BreakerState::Open => 1,
            BreakerState::HalfOpen => 2,
        }
    }
}

struct Probing {
    /// Probes failed (or half-open spells ended in failure) since the breaker last
    /// closed; 1 once open.
    failures: u32,
    /// The current wait before jitter: `min_backoff` doubled per failure, capped.
    backoff: Duration,
    next_probe: Instant,
}

impl Probing {
    /// One more failure: the wait doubles (up to the cap) and the next probe is due
    /// after a jittered draw from it.
    fn failed(&mut self, backoff: &Backoff) {
        self.failures = self.failures.saturating_add(1);
        self.backoff = backoff.delay(self.failures);
        self.next_probe = Instant::now() + jitter(self.backoff);
    }
}

pub(crate) struct Breaker {
    state: AtomicU8,
    /// A probe is under way (on its own thread).
    probe_running: AtomicBool,
    /// Records delivered so far. A delivery report only counts (no clock read on that
    /// path); [`check_stalled`](Self::check_stalled) notices the count move and dates
    /// it.
    delivered: AtomicU64,
    /// `delivered` as [`check_stalled`](Self::check_stalled) last saw it.
    delivered_seen: AtomicU64,
    /// When progress (a delivery, or sending after an idle spell) was last seen, in
    /// milliseconds since `epoch`.
    last_success_ms: AtomicU64,
    epoch: Instant,
    probing: Mutex<Probing>,
    settings: BreakerSettings,
    gauge: Gauge,
    opened: Counter,
}

impl Breaker {
    pub(crate) fn new(settings: BreakerSettings, telemetry: &Telemetry) -> Self {
        let gauge = gauge!("ingest_breaker_state", INGESTOR => telemetry.instance());
        gauge.set(BreakerState::Closed.gauge_value());
        Breaker {
            state: AtomicU8::new(BreakerState::Closed.to_u8()),
            probe_running: AtomicBool::new(false),
            delivered: AtomicU64::new(0),
            delivered_seen: AtomicU64::new(0),
            last_success_ms: AtomicU64::new(0),
            epoch: Instant::now(),
            probing: Mutex::new(Probing {
                failures: 0,
                backoff: settings.min_backoff,
                next_probe: Instant::now(),
            }),
            settings,
            gauge,
            opened: counter!("ingest_breaker_opened_total", INGESTOR => telemetry.instance()),
        }
    }

    pub(crate) fn state(&self) -> BreakerState {
        BreakerState::from_u8(self.state.load(Ordering::Acquire))
    }

    fn set(&self, from: BreakerState, to: BreakerState) -> bool {
        let swapped = self
            .state
            .compare_exchange(
                from.to_u8(),
                to.to_u8(),
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok();
        if swapped {
            self.gauge.set(to.gauge_value());
        }
        swapped
    }

    fn probing(&self) -> std::sync::MutexGuard<'_, Probing> {
        self.probing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Delivery failed or no broker is reachable: open (from closed or half-open).
    pub(crate) fn trip(&self, why: &str) {
        for from in [BreakerState::Closed, BreakerState::HalfOpen] {
            if self.set(from, BreakerState::Open) {
                let mut probing = self.probing();
                // From closed this is the first failure (`success` reset the count);
                // from half-open, one more.
                probing.failed(&self.backoff());
                self.opened.increment(1);
                tracing::warn!(
                    reason = why,
                    probe_in = ?probing.next_probe.saturating_duration_since(Instant::now()),
                    "circuit breaker open: Kafka is not taking records; events wait (in the disk buffer, if configured) and the cluster is probed"
                );
                return;
            }
        }
    }

    fn backoff(&self) -> Backoff {
        Backoff::new(self.settings.min_backoff, self.settings.max_backoff)
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// A record was delivered: close (cheap when already closed).
    pub(crate) fn success(&self) {
        self.delivered.fetch_add(1, Ordering::Relaxed);
        let state = self.state();
        if state != BreakerState::Closed && self.set(state, BreakerState::Closed) {
            let mut probing = self.probing();
            probing.failures = 0;
            probing.backoff = self.settings.min_backoff;
            tracing::info!("circuit breaker closed: Kafka takes records again");
        }
    }

    /// Trips when records are waiting in the producer and none has been delivered for
    /// the stall timeout: the cluster is unreachable even if the client has not said so
    /// (it reports failures only when records time out).
    ///
    /// Deliveries are dated here, when this check first sees them, so a stall is
    /// noticed at most one check later than by the delivery's own time.
    pub(crate) fn check_stalled(&self, records_waiting: bool) {
        let delivered = self.delivered.load(Ordering::Relaxed);
        if self.delivered_seen.swap(delivered, Ordering::Relaxed) != delivered || !records_waiting {
            // Progress, or nothing waiting (records sent from now on, by any thread,
            // start the clock afresh).
            self.last_success_ms.store(self.now_ms(), Ordering::Relaxed);
            return;
        }
        if self.state() == BreakerState::Open {
            return;
        }
        let since = self
            .now_ms()
            .saturating_sub(self.last_success_ms.load(Ordering::Relaxed));
        if since >= u64::try_from(self.settings.stall_timeout.as_millis()).unwrap_or(u64::MAX) {
            self.trip("no record delivered within breaker.stall_timeout_ms");
        }
    }

    /// Records are about to be handed to the producer: the stall clock starts now if
    /// nothing was waiting before.
    pub(crate) fn sending(&self, records_waiting: bool) {
        if !records_waiting {
            self.last_success_ms.store(self.now_ms(), Ordering::Relaxed);
        }
    }

    /// While open: how long until the next probe is due (zero when due now). `None`
    /// when not open.
    pub(crate) fn until_probe(&self) -> Option<Duration> {
        (self.state() == BreakerState::Open).then(|| {
            self.probing()
                .next_probe
                .saturating_duration_since(Instant::now())
        })
    }

    pub(crate) fn probe_timeout(&self) -> Duration {
        self.settings.probe_timeout
    }

    /// Claims the next probe: `false` if one is already under way.
    pub(crate) fn start_probe(&self) -> bool {
        self.probe_running
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// The outcome of a probe made while open.
    pub(crate) fn probed(&self, answered: bool) {
        self.probe_running.store(false, Ordering::Release);
        if answered {
            if self.set(BreakerState::Open, BreakerState::HalfOpen) {
                tracing::info!("circuit breaker half-open: the cluster answered; sending again");
            }
        } else {
            let mut probing = self.probing();
            probing.failed(&self.backoff());
            tracing::debug!(
                next_probe_in = ?probing.next_probe.saturating_duration_since(Instant::now()),
                "cluster probe unanswered"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker() -> Breaker {
        Breaker::new(
            BreakerSettings {
                min_backoff: Duration::from_millis(100),
                max_backoff: Duration::from_millis(350),
                probe_timeout: Duration::from_secs(1),
                stall_timeout: Duration::from_millis(50),
            },
            &Telemetry::new(&[], "test".into()),
        )
    }

    #[test]
    fn opens_probes_with_doubling_capped_backoff_and_closes_on_delivery() {
        let breaker = breaker();
        assert_eq!(breaker.state(), BreakerState::Closed);
        assert_eq!(breaker.until_probe(), None);
        let before = Instant::now();
        breaker.trip("test");
        assert_eq!(breaker.state(), BreakerState::Open);
        let wait = breaker.until_probe().expect("open");
        // Jittered: due between half the minimum backoff and all of it after the trip.
        assert!(wait <= Duration::from_millis(100));
        let due = breaker.probing().next_probe;
        assert!(due >= before + Duration::from_millis(50), "{wait:?}");
        breaker.probed(false);
        let backoffs: Vec<Duration> = (0..3)
            .map(|_| {
                let b = breaker.probing().backoff;
                breaker.probed(false);
                b
            })
            .collect();
        assert_eq!(
            backoffs,
            [200, 350, 350].map(Duration::from_millis).to_vec(),
            "doubles, capped"
        );
        breaker.probed(true);
        assert_eq!(breaker.state(), BreakerState::HalfOpen);
        breaker.trip("failed again");
        assert_eq!(breaker.state(), BreakerState::Open);
        breaker.success();
        assert_eq!(breaker.state(), BreakerState::Closed);
        assert_eq!(breaker.probing().backoff, Duration::from_millis(100));

        breaker.sending(false);
        breaker.check_stalled(true);
        assert_eq!(breaker.state(), BreakerState::Closed, "not stalled yet");
        std::thread::sleep(Duration::from_millis(60));
        breaker.check_stalled(true);
        assert_eq!(breaker.state(), BreakerState::Open, "stalled");
    }

    #[test]
    fn probe_waits_are_jittered_within_the_upper_half_of_the_backoff() {
        let breaker = breaker();
        breaker.trip("test");
        // 100 ms, 200 ms, then the 350 ms cap.
        breaker.probed(false);
        breaker.probed(false);
        let mut waits = Vec::new();
        for _ in 0..40 {
            let before = Instant::now();
            breaker.probed(false);
            let after = Instant::now();
            let probing = breaker.probing();
            assert_eq!(probing.backoff, Duration::from_millis(350), "capped");
            // Due at `t + jitter` for some `t` in before..=after, jitter in 175..=350 ms.
            assert!(probing.next_probe >= before + Duration::from_millis(175));
            assert!(probing.next_probe <= after + Duration::from_millis(350));
            waits.push(probing.next_probe.duration_since(before));
        }
        assert!(
            waits
                .iter()
                .any(|w| w.abs_diff(waits[0]) > Duration::from_millis(5)),
            "probe waits vary: {waits:?}"
        );
    }

    #[test]
    fn nothing_waiting_restarts_the_stall_clock() {
        let breaker = breaker();
        breaker.sending(false);
        std::thread::sleep(Duration::from_millis(60));
        breaker.check_stalled(false);
        breaker.check_stalled(true);
        assert_eq!(
            breaker.state(),
            BreakerState::Closed,
            "records sent after the idle check have not waited long"
        );
        std::thread::sleep(Duration::from_millis(60));
        breaker.check_stalled(true);
        assert_eq!(breaker.state(), BreakerState::Open, "stalled");
    }

    #[test]
    fn a_delivery_seen_by_the_check_restarts_the_stall_clock() {
        let breaker = breaker();
        breaker.sending(false);
        std::thread::sleep(Duration::from_millis(60));
        breaker.success();
        breaker.check_stalled(true);
        assert_eq!(
            breaker.state(),
            BreakerState::Closed,
            "a record was delivered"
        );
        breaker.check_stalled(true);
        assert_eq!(
            breaker.state(),
            BreakerState::Closed,
            "dated by the first check"
        );
        std::thread::sleep(Duration::from_millis(60));
        breaker.check_stalled(true);
        assert_eq!(breaker.state(), BreakerState::Open, "nothing since");
    }
}
