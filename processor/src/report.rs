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
    /// flag → variant → figures.
    pub experiments: BTreeMap<String, BTreeMap<String, VariantStats>>,
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

/// Computes the answer for `window` ending at `to` (a minute start) from `snapshot`.
pub fn compute(
    window: Window,
    to: i64,
    snapshot: &Snapshot,
    currency: &str,
    top_n: usize,
) -> RealTime {
    let mut total: HashMap<String, i64> = HashMap::new();
    let mut tops: HashMap<String, HashMap<String, i64>> = HashMap::new();
    let mut series = Vec::new();
    for minute in &snapshot.minutes {
        let mut events = 0;
        for (name, value) in &minute.counts {
            *total.entry(name.clone()).or_insert(0) += value;
            if name.starts_with(metric::EVENTS_PREFIX) {
                events += value;
            }
        }
        for (dim, keys) in &minute.tops {
            let into = tops.entry(dim.clone()).or_default();
            for (key, value) in keys {
                *into.entry(key.clone()).or_insert(0) += value;
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
    let views = tops.get(dimension::VIEWS).unwrap_or(&empty);
    let bought = tops.get(dimension::PURCHASES).unwrap_or(&empty);
    let mut products: Vec<TopProduct> = views
        .keys()
        .chain(bought.keys())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .map(|id| TopProduct {
            product_id: id.clone(),
            views: views.get(id).copied().unwrap_or(0),
            purchases: bought.get(id).copied().unwrap_or(0),
        })
        .collect();
    let mut by_purchases = products.clone();
    products.sort_by(|a, b| {
        b.views
            .cmp(&a.views)
            .then(b.purchases.cmp(&a.purchases))
            .then_with(|| a.product_id.cmp(&b.product_id))
    });
    products.truncate(top_n);
    by_purchases.sort_by(|a, b| {
        b.purchases
            .cmp(&a.purchases)
            .then(b.views.cmp(&a.views))
            .then_with(|| a.product_id.cmp(&b.product_id))
    });
    by_purchases.truncate(top_n);
    let abandoned = snapshot
        .cart_adders
        .iter()
        .filter(|u| !snapshot.buyers.contains(*u))
        .count();
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
        average_order_value: ratio(revenue, (orders - get(metric::UNCONVERTED_ORDERS)) as f64),
        conversion_rate: ratio(snapshot.buyers.len() as f64, snapshot.viewers.len() as f64),
        cart: CartStats {
            adds: get(metric::CART_ADDS),
            removes: get(metric::CART_REMOVES),
            abandonment_rate: ratio(abandoned as f64, snapshot.cart_adders.len() as f64),
        },
        top_products: products,
        top_products_by_purchases: by_purchases,
        top_searches: ranked(tops.get(dimension::SEARCHES).unwrap_or(&empty), top_n),
        zero_result_searches: ranked(tops.get(dimension::ZERO_RESULTS).unwrap_or(&empty), top_n),
        experiments,
        series,
        sessions: get(metric::SESSIONS),
        viewers: snapshot.viewers.len() as u64,
        purchasers: snapshot.buyers.len() as u64,
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

    #[test]
    fn computes_rates_tops_and_series() {
        let minute = |m: i64, counts: &[(&str, i64)], tops: &[(&str, &str, i64)]| {
            let mut t = MinuteTotals {
                minute: m,
                ..MinuteTotals::default()
            };
            for (k, v) in counts {
                t.counts.insert((*k).to_owned(), *v);
            }
            for (d, k, v) in tops {
                t.tops
                    .entry((*d).to_owned())
                    .or_default()
                    .insert((*k).to_owned(), *v);
            }
            t
        };
        let set = |xs: &[&str]| xs.iter().map(|x| (*x).to_owned()).collect();
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
                    &[("views", "a", 2), ("views", "b", 1), ("searches", "x", 1)],
                ),
                minute(
                    60,
                    &[
                        ("events.purchase", 1),
                        ("orders", 1),
                        ("revenue_micros", 4_500_000),
                        ("unconverted_orders", 1),
                    ],
                    &[
                        ("purchases", "b", 3),
                        ("searches", "y", 2),
                        ("zero_results", "y", 2),
                    ],
                ),
            ],
            unique_users: 4,
            viewers: set(&["u1", "u2", "u3", "u4"]),
            buyers: set(&["u1"]),
            cart_adders: set(&["u1", "u2"]),
            experiments: [(("f".to_owned(), "a".to_owned()), (4, 1))].into(),
        };
        let r = compute(Window::FiveMinutes, 120, &snapshot, "EUR", 1);
        assert_eq!(r.events.product_view, 3);
        assert_eq!(r.orders, 2);
        assert_eq!(r.revenue.amount, 15.0);
        // One of the two orders had no rate: AOV is over the converted one.
        assert_eq!(r.average_order_value, 15.0);
        assert_eq!(r.conversion_rate, 0.25);
        assert_eq!(r.cart.abandonment_rate, 0.5);
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
        assert_eq!(r.series[0].events, 3);
        assert_eq!(r.series[1].revenue, 4.5);
        assert_eq!(r.devices["mobile"], 2);
        assert_eq!(
            (r.from.as_str(), r.to.as_str()),
            ("1969-12-31T23:57:00Z", "1970-01-01T00:02:00Z")
        );
    }
}
