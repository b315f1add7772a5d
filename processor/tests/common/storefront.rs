//! The metrics a storefront day (the shared generator's `testkit::storefront::day`) must
//! produce, computed here from its events independently of the processor's code.

use std::collections::{BTreeMap, HashMap, HashSet};

use testkit::storefront::day::{self as shared, DayEvent, AGENTS, MISSING_PRODUCTS, PRODUCTS};
pub use testkit::storefront::day::{catalog, product_id, Record, Rng, RATES};

/// What the API must answer (the fields compared exactly), computed from the day.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Expected {
    pub events: [i64; 4],
    pub users: HashSet<String>,
    pub orders: i64,
    pub unconverted_orders: i64,
    pub revenue_micros: i64,
    pub cart_adds: i64,
    pub cart_removes: i64,
    pub viewers: HashSet<String>,
    pub buyers: HashSet<String>,
    pub cart_adders: HashSet<String>,
    pub views: HashMap<String, i64>,
    pub units: HashMap<String, i64>,
    pub searches: HashMap<String, i64>,
    pub zero_results: HashMap<String, i64>,
    pub experiment_users: BTreeMap<String, HashSet<String>>,
    pub experiment_buyers: BTreeMap<String, HashSet<String>>,
    pub devices: BTreeMap<String, i64>,
    pub catalog_misses: i64,
    pub late_events: i64,
    pub duplicates: i64,
    pub dead_letters: usize,
    /// Each user's counted views (one product) and orders (their products), in order.
    pub user_products: HashMap<String, Vec<(bool, Vec<String>)>>,
    /// Event times (ms) of each user's counted events.
    pub user_times: HashMap<String, Vec<i64>>,
    /// minute start (Unix seconds) → (events, revenue micros).
    pub series: BTreeMap<i64, (i64, i64)>,
}

/// The generated day.
pub struct Day {
    pub start_minute: i64,
    pub records: Vec<Record>,
    pub expected: Expected,
}

fn rate(currency: &str) -> Option<f64> {
    if currency == "EUR" {
        return Some(1.0);
    }
    RATES.iter().find(|(c, _)| *c == currency).map(|(_, r)| *r)
}

/// The day of `users` users from `seed`, starting at `start_minute` (Unix secs), drawn
/// from the shared generator, with what it must produce.
pub fn day(seed: u64, users: usize, start_minute: i64) -> Day {
    let day = shared::day(seed, users, start_minute);
    let mut expected = Expected::default();
    for event in &day.events {
        count(&mut expected, event);
    }
    expected.duplicates = day.duplicates;
    expected.late_events = day.late_events;
    expected.dead_letters = day.dead_letters;
    Day {
        start_minute,
        records: day.records,
        expected,
    }
}

/// A valid record of `user` at `time_ms` (topic index as in [`Record`]), counted into
/// `e` as the processor must count it; `body` gets the user id and, when it has none, a
/// desktop user agent.
pub fn counted_record(
    e: &mut Expected,
    rng: &mut Rng,
    topic: usize,
    user: &str,
    time_ms: i64,
    body: serde_json::Value,
) -> Record {
    let (record, event) = shared::valid_record(rng, topic, user, time_ms, body);
    count(e, &event);
    record
}

fn count(e: &mut Expected, d: &DayEvent) {
    let b = &d.body;
    let minute = (d.time_ms / 60_000) * 60;
    let user = d.user.clone();
    e.events[d.topic] += 1;
    e.series.entry(minute).or_default().0 += 1;
    e.users.insert(user.clone());
    e.user_times
        .entry(user.clone())
        .or_default()
        .push(d.time_ms);
    let class = AGENTS
        .iter()
        .find(|(a, _)| Some(*a) == b["context"]["user_agent"].as_str())
        .map(|(_, c)| *c)
        .expect("known agent");
    *e.devices.entry(class.to_owned()).or_default() += 1;
    let variant = b["context"]["experiments"]["checkout_v2"]
        .as_str()
        .map(str::to_owned);
    if let Some(v) = &variant {
        e.experiment_users
            .entry(v.clone())
            .or_default()
            .insert(user.clone());
    }
    match d.topic {
        0 => {
            let p = b["product_id"].as_str().expect("product").to_owned();
            if p >= product_id(PRODUCTS - MISSING_PRODUCTS) {
                e.catalog_misses += 1;
            }
            e.user_products
                .entry(user.clone())
                .or_default()
                .push((false, vec![p.clone()]));
            *e.views.entry(p).or_default() += 1;
            e.viewers.insert(user);
        }
        1 => match b["action"].as_str() {
            Some("add") => {
                e.cart_adds += 1;
                e.cart_adders.insert(user);
            }
            Some("remove") => e.cart_removes += 1,
            _ => {}
        },
        2 => {
            e.orders += 1;
            let total = b["total"].as_f64().expect("total");
            match rate(b["currency"].as_str().expect("currency")) {
                Some(r) => {
                    let micros = (total * r * 1_000_000.0).round() as i64;
                    e.revenue_micros += micros;
                    e.series.entry(minute).or_default().1 += micros;
                }
                None => e.unconverted_orders += 1,
            }
            let products = b["items"]
                .as_array()
                .expect("items")
                .iter()
                .map(|i| i["product_id"].as_str().expect("id").to_owned())
                .collect();
            e.user_products
                .entry(user.clone())
                .or_default()
                .push((true, products));
            for item in b["items"].as_array().expect("items") {
                *e.units
                    .entry(item["product_id"].as_str().expect("id").to_owned())
                    .or_default() += item["quantity"].as_i64().expect("quantity");
            }
            if let Some(v) = &variant {
                e.experiment_buyers
                    .entry(v.clone())
                    .or_default()
                    .insert(user.clone());
            }
            e.buyers.insert(user);
        }
        _ => {
            let q = b["query"].as_str().expect("query").trim().to_lowercase();
            *e.searches.entry(q.clone()).or_default() += 1;
            if b["results_count"].as_u64() == Some(0) {
                *e.zero_results.entry(q).or_default() += 1;
            }
        }
    }
}

/// Sessions of the day: per user, sorted event times; a session starts at the first and
/// after every gap longer than `timeout_ms`.
pub fn sessions(e: &Expected, timeout_ms: i64) -> i64 {
    let mut total = 0;
    for times in e.user_times.values() {
        let mut times = times.clone();
        times.sort_unstable();
        total += 1 + times
            .windows(2)
            .filter(|w| w[1] - w[0] > timeout_ms)
            .count() as i64;
    }
    total
}

/// Partners per product the test processors draw recommendations from: few enough that
/// the neighbour lists leave partners out.
pub const PARTNERS_PER_PRODUCT: usize = 8;

/// Most recent products a new one is paired with (the processor's default).
pub const PAIR_WINDOW: usize = 5;

/// The recommendations the processor must give `user` (recent lists of 20, top 10):
/// co-view and co-purchase counts built from every user's views and orders in order
/// (each paired with the [`PAIR_WINDOW`] most recent others),
/// each product's partners cut to its top [`PARTNERS_PER_PRODUCT`].
pub fn recommendations(e: &Expected, user: &str) -> Vec<(String, i64)> {
    const RECENT: usize = 20;
    let mut pairs: HashMap<(bool, String, String), i64> = HashMap::new();
    let mut lists: HashMap<&str, (Vec<String>, Vec<String>)> = HashMap::new();
    let mut users: Vec<&String> = e.user_products.keys().collect();
    users.sort();
    for u in users {
        let (viewed, bought) = lists.entry(u.as_str()).or_default();
        for (is_order, products) in &e.user_products[u] {
            if !is_order {
                let p = &products[0];
                for q in viewed.iter().filter(|q| *q != p).take(PAIR_WINDOW) {
                    *pairs.entry((false, p.clone(), q.clone())).or_default() += 1;
                    *pairs.entry((false, q.clone(), p.clone())).or_default() += 1;
                }
                viewed.retain(|q| q != p);
                viewed.insert(0, p.clone());
                viewed.truncate(RECENT);
            } else {
                let mut set = products.clone();
                set.sort();
                set.dedup();
                for (i, p) in set.iter().enumerate() {
                    let others: Vec<String> = set[..i]
                        .iter()
                        .cloned()
                        .chain(
                            bought
                                .iter()
                                .filter(|q| !set.contains(q))
                                .take(PAIR_WINDOW)
                                .cloned(),
                        )
                        .collect();
                    for q in others {
                        *pairs.entry((true, p.clone(), q.clone())).or_default() += 1;
                        *pairs.entry((true, q, p.clone())).or_default() += 1;
                    }
                }
                for p in set {
                    bought.retain(|q| *q != p);
                    bought.insert(0, p);
                    bought.truncate(RECENT);
                }
            }
        }
    }
    let mut neighbours: HashMap<(bool, &str), Vec<(&str, i64)>> = HashMap::new();
    for ((is_purchase, a, b), n) in &pairs {
        neighbours
            .entry((*is_purchase, a.as_str()))
            .or_default()
            .push((b.as_str(), *n));
    }
    let mut kept: Vec<((bool, String, String), i64)> = Vec::new();
    for ((is_purchase, a), mut list) in neighbours {
        list.sort_by(|x, y| y.1.cmp(&x.1).then_with(|| x.0.cmp(y.0)));
        list.truncate(PARTNERS_PER_PRODUCT);
        kept.extend(
            list.into_iter()
                .map(|(b, n)| ((is_purchase, a.to_owned(), b.to_owned()), n)),
        );
    }
    let (viewed, bought) = lists.get(user).cloned().unwrap_or_default();
    let mut scores: HashMap<String, i64> = HashMap::new();
    for ((is_purchase, a, b), n) in &kept {
        let from = if *is_purchase { &bought } else { &viewed };
        if from.contains(a) && !bought.contains(b) {
            *scores.entry(b.clone()).or_default() += if *is_purchase { 2 * n } else { *n };
        }
    }
    let mut ranked: Vec<(String, i64)> = scores.into_iter().collect();
    ranked.sort_by(|x, y| y.1.cmp(&x.1).then_with(|| x.0.cmp(&y.0)));
    ranked.truncate(10);
    ranked
}
