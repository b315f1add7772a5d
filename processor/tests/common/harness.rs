//! The steps every end-to-end test of the processor takes, once: take the stores'
//! lock, make a scenario, start a processor and wait until it is ready, produce, wait
//! until the answer has settled, and compare every figure with the model.

use std::collections::{BTreeMap, HashMap};
use std::ops::Deref;
use std::time::{Duration, Instant};

use processor::report::RealTime;
use tokio::sync::{RwLockReadGuard, RwLockWriteGuard};

use super::storefront::{self, Day, Expected};
use super::{Processor, Scenario};

/// How long a started processor has to become ready.
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// A test's hold on the shared PostgreSQL and Redis servers.
enum StoresHold {
    Shared(RwLockReadGuard<'static, ()>),
    Alone(RwLockWriteGuard<'static, ()>),
}

/// One end-to-end test: its scenario (topics, database), and its hold on the stores for
/// as long as it lives. Derefs to the [`Scenario`].
pub struct Harness {
    scenario: Scenario,
    _stores: StoresHold,
}

impl Harness {
    /// A scenario with `catalog` and `rates`, sharing the stores with other tests.
    pub async fn new(test: &str, catalog: &[(String, String)], rates: &[(&str, f64)]) -> Harness {
        let hold = StoresHold::Shared(STORES.read().await);
        Harness {
            scenario: Scenario::new(test, catalog, rates).await,
            _stores: hold,
        }
    }

    /// A scenario with the storefront's catalog and rates, sharing the stores.
    pub async fn storefront(test: &str) -> Harness {
        Harness::new(test, &storefront::catalog(), &storefront::RATES).await
    }

    /// A scenario with the storefront's catalog and rates, holding the stores alone (a
    /// test that stops and starts their servers).
    pub async fn storefront_alone(test: &str) -> Harness {
        let hold = StoresHold::Alone(STORES.write().await);
        Harness {
            scenario: Scenario::new(test, &storefront::catalog(), &storefront::RATES).await,
            _stores: hold,
        }
    }

    /// Starts processor `instance` with the extra environment `env` and waits until it
    /// is ready.
    pub async fn start_ready(&self, instance: &str, env: &[(&str, &str)]) -> Processor {
        let p = self.scenario.start_with(instance, env);
        p.wait_ready(READY_TIMEOUT).await;
        p
    }
}

impl Deref for Harness {
    type Target = Scenario;

    fn deref(&self) -> &Scenario {
        &self.scenario
    }
}

/// Waits until `p` has counted every record of `day`, then compares every figure of the
/// answer with the model; returns the answer.
pub async fn settle_day(p: &Processor, day: &Day, timeout: Duration) -> RealTime {
    let r = settled(p, day.start_minute, &day.expected, timeout).await;
    assert_matches(&r, &day.expected, day.start_minute);
    r
}

/// Tests hold this shared; the one that restarts the PostgreSQL and Redis servers holds
/// it alone, so no other test's own queries meet a server that is down.
pub static STORES: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

/// A minute-aligned start 50 minutes ago, so the whole day is recent.
pub fn start_minute() -> i64 {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    (now / 60) * 60 - 50 * 60
}

pub fn ranked(map: &HashMap<String, i64>, n: usize) -> Vec<(String, i64)> {
    let mut list: Vec<(String, i64)> = map.iter().map(|(k, v)| (k.clone(), *v)).collect();
    list.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    list.truncate(n);
    list
}

pub fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

pub async fn analytics(p: &Processor, start_minute: i64) -> Option<RealTime> {
    let to = processor::report::rfc3339(start_minute + 3600);
    let (status, body) = p
        .get(&format!("/api/analytics/real-time?window=1h&to={to}"))
        .await?;
    if status == 503 {
        // Redis is briefly unreachable (a test breaks the connections on purpose).
        return None;
    }
    assert_eq!(status, 200, "{body}");
    Some(serde_json::from_str(&body).expect("the documented JSON shape"))
}

/// The analytics API's answer, asked again while it answers 503 (another test may be
/// restarting Redis), for up to 30 s.
pub async fn answered(p: &Processor, start_minute: i64) -> RealTime {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(r) = analytics(p, start_minute).await {
            return r;
        }
        assert!(
            Instant::now() < deadline,
            "the analytics API answers 503 for 30 s"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Waits until the API has counted every record of the day (events, late, duplicates).
pub async fn settled(
    p: &Processor,
    start_minute: i64,
    e: &Expected,
    timeout: Duration,
) -> RealTime {
    let want: i64 = e.events.iter().sum::<i64>() + e.late_events + e.duplicates;
    let deadline = Instant::now() + timeout;
    let mut last = None;
    while Instant::now() < deadline {
        if let Some(r) = analytics(p, start_minute).await {
            let got = r.events.product_view
                + r.events.cart
                + r.events.purchase
                + r.events.search
                + r.late_events
                + r.duplicates;
            if got == want {
                // Give a double count the chance to show.
                tokio::time::sleep(Duration::from_secs(1)).await;
                return answered(p, start_minute).await;
            }
            last = Some(got);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("the processor counted {last:?} records, expected {want}");
}

/// Records counted so far (events, late, duplicates) in the day's window.
pub fn counted(r: &RealTime) -> i64 {
    r.events.product_view
        + r.events.cart
        + r.events.purchase
        + r.events.search
        + r.late_events
        + r.duplicates
}

/// Waits until more than `before` records are counted; returns the count.
pub async fn progress(p: &Processor, start_minute: i64, before: i64, timeout: Duration) -> i64 {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Some(r) = analytics(p, start_minute).await {
            if counted(&r) > before {
                return counted(&r);
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no progress past {before} records within {timeout:?}");
}

/// Compares every figure of the answer with the independently computed expectation.
pub fn assert_matches(r: &RealTime, e: &Expected, start_minute: i64) {
    assert_eq!(r.window, "1h");
    assert_eq!(r.from, processor::report::rfc3339(start_minute));
    let events = [
        r.events.product_view,
        r.events.cart,
        r.events.purchase,
        r.events.search,
    ];
    assert_eq!(events, e.events, "events per type");
    assert_eq!(r.orders, e.orders, "orders");
    assert_eq!(
        r.unconverted_orders, e.unconverted_orders,
        "orders without a rate"
    );
    let revenue = e.revenue_micros as f64 / 1_000_000.0;
    assert_eq!(r.revenue.amount, revenue, "revenue");
    assert_eq!(r.revenue.currency, "EUR");
    assert_eq!(
        r.average_order_value,
        revenue / (e.orders - e.unconverted_orders) as f64,
        "AOV"
    );
    assert_eq!(
        r.conversion_rate,
        ratio(e.buyers.len(), e.viewers.len()),
        "conversion"
    );
    assert_eq!(
        (r.viewers, r.purchasers),
        (e.viewers.len() as u64, e.buyers.len() as u64)
    );
    assert_eq!(
        (r.cart.adds, r.cart.removes),
        (e.cart_adds, e.cart_removes),
        "cart"
    );
    let abandoned = e
        .cart_adders
        .iter()
        .filter(|u| !e.buyers.contains(*u))
        .count();
    assert_eq!(
        r.cart.abandonment_rate,
        ratio(abandoned, e.cart_adders.len()),
        "abandonment"
    );
    let exact = e.users.len() as f64;
    let error = (r.unique_users as f64 - exact).abs() / exact;
    assert!(
        error <= 0.02,
        "unique users {} vs {exact}: error {error}",
        r.unique_users
    );

    let mut products: Vec<(String, i64, i64)> = e
        .views
        .keys()
        .chain(e.units.keys())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .map(|p| {
            (
                p.clone(),
                e.views.get(p).copied().unwrap_or(0),
                e.units.get(p).copied().unwrap_or(0),
            )
        })
        .collect();
    products.sort_by(|a, b| {
        b.1.cmp(&a.1)
            .then(b.2.cmp(&a.2))
            .then_with(|| a.0.cmp(&b.0))
    });
    products.truncate(10);
    let got: Vec<(String, i64, i64)> = r
        .top_products
        .iter()
        .map(|p| (p.product_id.clone(), p.views, p.purchases))
        .collect();
    assert_eq!(got, products, "top products by views");
    let top_units = ranked(&e.units, 1)[0].clone();
    assert_eq!(
        (
            r.top_products_by_purchases[0].product_id.clone(),
            r.top_products_by_purchases[0].purchases
        ),
        top_units
    );
    let got: Vec<(String, i64)> = r
        .top_searches
        .iter()
        .map(|q| (q.query.clone(), q.count))
        .collect();
    assert_eq!(got, ranked(&e.searches, 10), "top searches");
    let got: Vec<(String, i64)> = r
        .zero_result_searches
        .iter()
        .map(|q| (q.query.clone(), q.count))
        .collect();
    assert_eq!(got, ranked(&e.zero_results, 10), "zero-result searches");

    let variants = &r.experiments["checkout_v2"];
    assert_eq!(variants.len(), 2);
    for (variant, users) in &e.experiment_users {
        let buyers = e.experiment_buyers.get(variant).map_or(0, |b| b.len());
        let got = &variants[variant];
        assert_eq!(
            (got.users, got.purchasers),
            (users.len() as u64, buyers as u64),
            "{variant}"
        );
        assert_eq!(got.conversion_rate, ratio(buyers, users.len()), "{variant}");
    }
    assert_eq!(r.devices, e.devices, "device classes");
    let sessions = storefront::sessions(e, super::SESSION_TIMEOUT_SECS * 1_000);
    assert!(
        sessions > e.users.len() as i64,
        "some users have several sessions"
    );
    assert_eq!(r.sessions, sessions, "sessions");
    assert_eq!(r.catalog_misses, e.catalog_misses, "catalog misses");
    assert_eq!(r.late_events, e.late_events, "late events");
    assert_eq!(r.duplicates, e.duplicates, "duplicates");

    assert_eq!(r.series.len(), 60);
    let series: BTreeMap<String, (i64, f64)> = r
        .series
        .iter()
        .filter(|p| p.events > 0)
        .map(|p| (p.minute.clone(), (p.events, p.revenue)))
        .collect();
    let want: BTreeMap<String, (i64, f64)> = e
        .series
        .iter()
        .map(|(m, (n, micros))| {
            (
                processor::report::rfc3339(*m),
                (*n, *micros as f64 / 1_000_000.0),
            )
        })
        .collect();
    assert_eq!(series, want, "per-minute series");
}
