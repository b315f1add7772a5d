//! The analytics answer (`GET /api/analytics/real-time`), computed from a [`Snapshot`].

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::aggregate::{dimension, metric};
use crate::live::Snapshot;

/// A window the API offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    /// One minute.
    OneMinute,
    /// Five minutes (the default).
    FiveMinutes,
    /// Fifteen minutes.
    FifteenMinutes,
    /// One hour.
    OneHour,
}

impl Window {
    /// Parses `1m`, `5m`, `15m` or `1h`.
    pub fn parse(text: &str) -> Option<Window> {
        match text {
            "1m" => Some(Window::OneMinute),
            "5m" => Some(Window::FiveMinutes),
            "15m" => Some(Window::FifteenMinutes),
            "1h" => Some(Window::OneHour),
            _ => None,
        }
    }

    /// Its name.
    pub fn as_str(self) -> &'static str {
        match self {
            Window::OneMinute => "1m",
            Window::FiveMinutes => "5m",
            Window::FifteenMinutes => "15m",
            Window::OneHour => "1h",
        }
    }

    /// Its length in minutes.
    pub fn minutes(self) -> i64 {
        match self {
            Window::OneMinute => 1,
            Window::FiveMinutes => 5,
            Window::FifteenMinutes => 15,
            Window::OneHour => 60,
        }
    }

    /// The minute starts (Unix seconds) of the window ending at `to` (a minute start).
    pub fn minute_starts(self, to: i64) -> Vec<i64> {
        (0..self.minutes())
            .rev()
            .map(|i| to - 60 * (i + 1))
            .collect()
    }
}

/// Formats Unix seconds as `2026-11-24T10:00:00Z`.
pub fn rfc3339(unix_secs: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix_secs)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".to_owned())
}

/// Events per type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventCounts {
    /// Product views.
    pub product_view: i64,
    /// Cart changes.
    pub cart: i64,
    /// Orders.
    pub purchase: i64,
    /// Searches.
    pub search: i64,
}

/// An amount of money.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Money {
    /// The amount.
    pub amount: f64,
    /// ISO 4217 code.
    pub currency: String,
}

/// Cart figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CartStats {
    /// Add events.
    pub adds: i64,
    /// Remove events.
    pub removes: i64,
    /// Share of users who added to a cart and did not buy in the window.
    pub abandonment_rate: f64,
}

/// A product in a top list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopProduct {
    /// The product.
    pub product_id: String,
    /// Views.
    pub views: i64,
    /// Units bought.
    pub purchases: i64,
}

/// A search query in a top list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueryCount {
    /// The normalised query.
    pub query: String,
    /// Searches.
    pub count: i64,
}

/// One variant of an experiment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VariantStats {
    /// Distinct users seen in the variant.
    pub users: u64,
    /// Distinct buyers among them.
    pub purchasers: u64,
    /// purchasers / users.
    pub conversion_rate: f64,
}

/// One minute of the series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeriesPoint {
    /// Minute start.
    pub minute: String,
    /// Events counted in it.
    pub events: i64,
    /// Revenue in it (reporting currency).
    pub revenue: f64,
}

/// The answer of `GET /api/analytics/real-time`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RealTime {
    /// `1m`, `5m`, `15m` or `1h`.
    pub window: String,
    /// Start (inclusive).
    pub from: String,
    /// End (exclusive).
    pub to: String,
    /// Events per type.
    pub events: EventCounts,
    /// Distinct users (HyperLogLog estimate).
    pub unique_users: u64,
    /// Orders.
    pub orders: i64,
    /// Revenue of the orders with a known rate.
    pub revenue: Money,
    /// revenue / orders.
    pub average_order_value: f64,
    /// Distinct buyers / distinct viewers.
    pub conversion_rate: f64,
    /// Cart figures.
    pub cart: CartStats,
    /// Products ranked by views, then units bought.
    pub top_products: Vec<TopProduct>,
    /// Products ranked by units bought, then views.
    pub top_products_by_purchases: Vec<TopProduct>,
    /// Most frequent queries.
    pub top_searches: Vec<QueryCount>,
    /// Most frequent queries without results.
    pub zero_result_searches: Vec<QueryCount>,
    /// flag → variant → figures: at most `api.max_experiment_pairs` (flag, variant)
    /// pairs, the first in byte order of `flag` TAB `variant`.
    pub experiments: BTreeMap<String, BTreeMap<String, VariantStats>>,
    /// Distinct (flag, variant) pairs seen in the window; more than `experiments` lists
    /// when the cap applies.
    pub experiment_pairs: u64,
    /// Per minute.
    pub series: Vec<SeriesPoint>,
    /// Sessions started in the window (inactivity timeout per user).
    pub sessions: i64,
    /// Distinct viewers.
    pub viewers: u64,
    /// Distinct buyers.
    pub purchasers: u64,
    /// Events too late for their window (not counted elsewhere).
    pub late_events: i64,
    /// Duplicate events dropped.
    pub duplicates: i64,
    /// Views of products missing from the catalog.
    pub catalog_misses: i64,
    /// Orders whose currency had no rate (not in revenue).
    pub unconverted_orders: i64,
    /// Events per device class.
    pub devices: BTreeMap<String, i64>,
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        a / b
    } else {
        0.0
    }
}

fn micros_to_amount(micros: i64) -> f64 {
    micros as f64 / 1_000_000.0
}

fn ranked(map: &HashMap<String, i64>, n: usize) -> Vec<QueryCount> {
    let mut list: Vec<QueryCount> = map
        .iter()
        .filter(|(_, &c)| c > 0)
        .map(|(q, &c)| QueryCount {
            query: q.clone(),
            count: c,
        })
        .collect();
    list.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.query.cmp(&b.query)));
    list.truncate(n);
    list
}

/// The products of `products` (id → (views, units bought)) ordered by `key`, first `n`.
fn top_products(
    products: &BTreeMap<String, (i64, i64)>,
    n: usize,
    key: fn(&TopProduct) -> (i64, i64),
) -> Vec<TopProduct> {
    let mut list: Vec<TopProduct> = products
        .iter()
        .map(|(id, &(views, purchases))| TopProduct {
            product_id: id.clone(),
            views,
            purchases,
        })
        .collect();
    list.sort_by(|a, b| {
        key(b)
            .cmp(&key(a))
            .then_with(|| a.product_id.cmp(&b.product_id))
    });
    list.truncate(n);
    list
}

/// Computes the answer for `window` ending at `to` (a minute start) from `snapshot`.
///
/// Sums saturate at `i64::MAX` (stored values are not bounded by the event schema).
pub fn compute(
    window: Window,
    to: i64,
    snapshot: &Snapshot,
    currency: &str,
    top_n: usize,
) -> RealTime {
    let mut total: HashMap<String, i64> = HashMap::new();
    let mut series = Vec::new();
    for minute in &snapshot.minutes {
        let mut events: i64 = 0;
        for (name, value) in &minute.counts {
            let sum = total.entry(name.clone()).or_insert(0);
            *sum = sum.saturating_add(*value);
            if name.starts_with(metric::EVENTS_PREFIX) {
                events = events.saturating_add(*value);
            }
        }
        series.push(SeriesPoint {
            minute: rfc3339(minute.minute),
            events,
            revenue: micros_to_amount(
                minute
                    .counts
                    .get(metric::REVENUE_MICROS)
                    .copied()
                    .unwrap_or(0),
            ),
        });
    }
    let get = |name: &str| total.get(name).copied().unwrap_or(0);
    let kind = |k: &str| get(&format!("{}{k}", metric::EVENTS_PREFIX));
    let orders = get(metric::ORDERS);
    let revenue = micros_to_amount(get(metric::REVENUE_MICROS));
    let empty = HashMap::new();
    let queries = |dim: &str| ranked(snapshot.queries.get(dim).unwrap_or(&empty), top_n);
    let products = top_products(&snapshot.products, top_n, |p| (p.views, p.purchases));
    let by_purchases = top_products(&snapshot.products, top_n, |p| (p.purchases, p.views));
    let mut experiments: BTreeMap<String, BTreeMap<String, VariantStats>> = BTreeMap::new();
    for ((flag, variant), (users, buyers)) in &snapshot.experiments {
        experiments.entry(flag.clone()).or_default().insert(
            variant.clone(),
            VariantStats {
                users: *users,
                purchasers: *buyers,
                conversion_rate: ratio(*buyers as f64, *users as f64),
            },
        );
    }
    let devices = total
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix(metric::DEVICE_PREFIX)?.to_owned(), *v)))
        .collect();
    RealTime {
        window: window.as_str().to_owned(),
        from: rfc3339(to - 60 * window.minutes()),
        to: rfc3339(to),
        events: EventCounts {
            product_view: kind("product_view"),
            cart: kind("cart"),
            purchase: kind("purchase"),
            search: kind("search"),
        },
        unique_users: snapshot.unique_users,
        orders,
        revenue: Money {
            amount: revenue,
            currency: currency.to_owned(),
        },
        average_order_value: ratio(
            revenue,
            orders.saturating_sub(get(metric::UNCONVERTED_ORDERS)) as f64,
        ),
        conversion_rate: ratio(snapshot.buyers as f64, snapshot.viewers as f64),
        cart: CartStats {
            adds: get(metric::CART_ADDS),
            removes: get(metric::CART_REMOVES),
            abandonment_rate: ratio(snapshot.cart_abandoners as f64, snapshot.cart_adders as f64),
        },
        top_products: products,
        top_products_by_purchases: by_purchases,
        top_searches: queries(dimension::SEARCHES),
        zero_result_searches: queries(dimension::ZERO_RESULTS),
        experiments,
        experiment_pairs: snapshot.experiment_pairs,
        series,
        sessions: get(metric::SESSIONS),
        viewers: snapshot.viewers,
        purchasers: snapshot.buyers,
        late_events: get(metric::LATE_EVENTS),
        duplicates: get(metric::DUPLICATES),
        catalog_misses: get(metric::CATALOG_MISSES),
        unconverted_orders: get(metric::UNCONVERTED_ORDERS),
        devices,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::live::MinuteTotals;

    #[test]
    fn windows_parse_and_cover_whole_minutes() {
        assert_eq!(Window::parse("15m"), Some(Window::FifteenMinutes));
        assert_eq!(Window::parse("2m"), None);
        assert_eq!(
            Window::FiveMinutes.minute_starts(600),
            vec![300, 360, 420, 480, 540]
        );
        assert_eq!(rfc3339(1_795_514_400), "2026-11-24T10:00:00Z");
    }

    fn minute(m: i64, counts: &[(&str, i64)]) -> MinuteTotals {
        MinuteTotals {
            minute: m,
            counts: counts.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect(),
        }
    }

    #[test]
    fn computes_rates_tops_and_series() {
        let queries = |xs: &[(&str, i64)]| -> HashMap<String, i64> {
            xs.iter().map(|(q, n)| ((*q).to_owned(), *n)).collect()
        };
        let snapshot = Snapshot {
            minutes: vec![
                minute(
                    0,
                    &[
                        ("events.product_view", 3),
                        ("orders", 1),
                        ("revenue_micros", 10_500_000),
                        ("cart_adds", 2),
                        ("device.mobile", 2),
                    ],
                ),
                minute(
                    60,
                    &[
                        ("events.purchase", 1),
                        ("orders", 1),
                        ("revenue_micros", 4_500_000),
                        ("unconverted_orders", 1),
                    ],
                ),
            ],
            unique_users: 4,
            viewers: 4,
            buyers: 1,
            cart_adders: 2,
            cart_abandoners: 1,
            products: [("a".to_owned(), (2, 0)), ("b".to_owned(), (1, 3))].into(),
            queries: [
                ("searches".to_owned(), queries(&[("x", 1), ("y", 2)])),
                ("zero_results".to_owned(), queries(&[("y", 2), ("z", 0)])),
            ]
            .into(),
            experiments: [(("f".to_owned(), "a".to_owned()), (4, 1))].into(),
            experiment_pairs: 3,
        };
        let r = compute(Window::FiveMinutes, 120, &snapshot, "EUR", 1);
        assert_eq!(r.events.product_view, 3);
        assert_eq!(r.orders, 2);
        assert_eq!(r.revenue.amount, 15.0);
        // One of the two orders had no rate: AOV is over the converted one.
        assert_eq!(r.average_order_value, 15.0);
        assert_eq!(r.conversion_rate, 0.25);
        assert_eq!(r.cart.abandonment_rate, 0.5);
        assert_eq!((r.viewers, r.purchasers), (4, 1));
        assert_eq!(
            r.top_products,
            vec![TopProduct {
                product_id: "a".into(),
                views: 2,
                purchases: 0
            }]
        );
        assert_eq!(r.top_products_by_purchases[0].product_id, "b");
        assert_eq!(
            r.top_searches,
            vec![QueryCount {
                query: "y".into(),
                count: 2
            }]
        );
        assert_eq!(r.zero_result_searches[0].query, "y");
        assert_eq!(r.experiments["f"]["a"].conversion_rate, 0.25);
        assert_eq!(r.experiment_pairs, 3);
        assert_eq!(r.series[0].events, 3);
        assert_eq!(r.series[1].revenue, 4.5);
        assert_eq!(r.devices["mobile"], 2);
        assert_eq!(
            (r.from.as_str(), r.to.as_str()),
            ("1969-12-31T23:57:00Z", "1970-01-01T00:02:00Z")
        );
    }

    #[test]
    fn top_lists_break_ties_like_the_documented_order() {
        let snapshot = Snapshot {
            products: [
                ("c".to_owned(), (5, 1)),
                ("b".to_owned(), (5, 2)),
                ("a".to_owned(), (5, 1)),
                ("d".to_owned(), (0, 9)),
            ]
            .into(),
            queries: [(
                "searches".to_owned(),
                [
                    ("q2".to_owned(), 4),
                    ("q1".to_owned(), 4),
                    ("q0".to_owned(), 0),
                ]
                .into(),
            )]
            .into(),
            ..Snapshot::default()
        };
        let r = compute(Window::OneMinute, 60, &snapshot, "EUR", 3);
        let ids = |list: &[TopProduct]| -> Vec<String> {
            list.iter().map(|p| p.product_id.clone()).collect()
        };
        assert_eq!(ids(&r.top_products), ["b", "a", "c"]);
        assert_eq!(ids(&r.top_products_by_purchases), ["d", "b", "a"]);
        let got: Vec<&str> = r.top_searches.iter().map(|q| q.query.as_str()).collect();
        assert_eq!(got, ["q1", "q2"], "ties by query, zero counts left out");
    }

    #[test]
    fn sums_saturate_instead_of_wrapping() {
        let near = i64::MAX - 1;
        let snapshot = Snapshot {
            minutes: vec![
                minute(
                    0,
                    &[
                        ("events.product_view", near),
                        ("events.search", near),
                        ("orders", near),
                        ("unconverted_orders", -near),
                    ],
                ),
                minute(60, &[("events.product_view", near), ("orders", 5)]),
            ],
            ..Snapshot::default()
        };
        let r = compute(Window::FiveMinutes, 120, &snapshot, "EUR", 10);
        assert_eq!(r.events.product_view, i64::MAX);
        assert_eq!(r.orders, i64::MAX);
        assert_eq!(r.series[0].events, i64::MAX);
        assert_eq!(r.series[1].events, near);
        // orders - unconverted saturates too (no panic in debug builds).
        assert!(r.average_order_value.is_finite());
    }
}
