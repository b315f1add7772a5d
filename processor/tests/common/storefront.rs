//! A deterministic storefront day, and the metrics it must produce, computed here
//! independently of the processor's code.
//!
//! The day is compressed into 40 minutes of event time so that the API's one-hour window
//! holds all of it: thousands of users in sessions of views → cart → purchase funnels,
//! searches with and without results, an A/B experiment with two variants, several
//! currencies (one without a rate), products missing from the catalog, duplicates
//! (the same record sent twice), late events and malformed records.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde_json::json;

/// A small deterministic generator (SplitMix64).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }

    pub fn uuid(&mut self) -> String {
        let a = self.next_u64();
        let b = self.next_u64();
        format!(
            "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xfff,
            b >> 52,
            b & 0xffff_ffff_ffff
        )
    }
}

/// One Kafka record: topic index (0 views, 1 cart, 2 purchases, 3 searches), key, value,
/// headers.
#[derive(Debug, Clone)]
pub struct Record {
    pub topic: usize,
    pub key: String,
    pub value: Vec<u8>,
    pub headers: Vec<(String, String)>,
}

/// User agents with the device class they must be counted as.
const AGENTS: [(&str, &str); 5] = [
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36", "desktop"),
    ("Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15", "desktop"),
    ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1", "mobile"),
    ("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36", "mobile"),
    ("Mozilla/5.0 (iPad; CPU OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1", "tablet"),
];

const QUERIES: [&str; 12] = [
    "running shoes",
    "rain jacket",
    "wool socks",
    "trail backpack",
    "yoga mat",
    "water bottle",
    "headlamp",
    "sunglasses",
    "tent",
    "sleeping bag",
    "gloves",
    "beanie",
];
const EMPTY_QUERIES: [&str; 4] = [
    "purple unicorn boots",
    "quantum kettle",
    "zzzz",
    "left handed spoon",
];

/// Rates the scenario stores (currency, units of EUR per unit).
pub const RATES: [(&str, f64); 2] = [("USD", 0.92), ("GBP", 1.17)];

pub const PRODUCTS: usize = 150;
pub const MISSING_PRODUCTS: usize = 5;

pub fn product_id(i: usize) -> String {
    format!("sku-{i:04}")
}

/// The catalog stored in PostgreSQL: every product but the last few.
pub fn catalog() -> Vec<(String, String)> {
    (0..PRODUCTS - MISSING_PRODUCTS)
        .map(|i| (product_id(i), format!("Product {i}")))
        .collect()
}

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

struct Draft {
    time_ms: i64,
    seq: usize,
    topic: usize,
    user: String,
    body: serde_json::Value,
}

fn rate(currency: &str) -> Option<f64> {
    if currency == "EUR" {
        return Some(1.0);
    }
    RATES.iter().find(|(c, _)| *c == currency).map(|(_, r)| *r)
}

fn rfc3339_ms(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .expect("valid time");
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        ms.rem_euclid(1000)
    )
}

/// Generates a day of `users` users from `seed`, starting at `start_minute` (Unix secs).
pub fn day(seed: u64, users: usize, start_minute: i64) -> Day {
    let mut rng = Rng::new(seed);
    let span_ms = 40 * 60_000;
    let start_ms = start_minute * 1000;
    let mut drafts: Vec<Draft> = Vec::new();
    let mut seq = 0;
    let mut push = |drafts: &mut Vec<Draft>,
                    time_ms: i64,
                    topic: usize,
                    user: &str,
                    body: serde_json::Value| {
        drafts.push(Draft {
            time_ms,
            seq,
            topic,
            user: user.to_owned(),
            body,
        });
        seq += 1;
    };
    for u in 0..users {
        let user = format!("user-{u:05}");
        let anonymous = rng.chance(0.2);
        let agent = AGENTS[rng.below(AGENTS.len() as u64) as usize].0;
        let variant = match rng.below(3) {
            0 => Some("control"),
            1 => Some("treatment"),
            _ => None,
        };
        let session = rng.uuid();
        let mut t = start_ms + rng.below(span_ms as u64 - 12 * 60_000) as i64;
        let identity = |mut body: serde_json::Value| {
            let obj = body.as_object_mut().expect("object");
            if anonymous {
                obj.insert("anonymous_id".into(), json!(user));
            } else {
                obj.insert("user_id".into(), json!(user));
            }
            obj.insert("session_id".into(), json!(session));
            let mut context = json!({"user_agent": agent, "locale": "de-DE"});
            if let Some(v) = variant {
                context["experiments"] = json!({"checkout_v2": v});
            }
            obj.insert("context".into(), context);
            body
        };
        // Popular products are viewed more: the square of a uniform pick skews low.
        let pick = |rng: &mut Rng| {
            let x = rng.below(PRODUCTS as u64);
            ((x * x) / PRODUCTS as u64) as usize
        };
        let mut viewed = Vec::new();
        for _ in 0..rng.below(3) {
            t += 2_000 + rng.below(30_000) as i64;
            let query = if rng.chance(0.15) {
                EMPTY_QUERIES[rng.below(EMPTY_QUERIES.len() as u64) as usize].to_owned()
            } else {
                QUERIES[rng.below(QUERIES.len() as u64) as usize].to_owned()
            };
            let empty = EMPTY_QUERIES.contains(&query.as_str());
            // Some clients send odd spacing and capitals; the processor normalises.
            let sent = if rng.chance(0.2) {
                format!("  {}", query.to_uppercase())
            } else {
                query
            };
            let results = if empty { 0 } else { 1 + rng.below(80) };
            push(
                &mut drafts,
                t,
                3,
                &user,
                identity(
                    json!({"query": sent, "results_count": results, "timestamp": rfc3339_ms(t)}),
                ),
            );
        }
        for _ in 0..1 + rng.below(6) {
            t += 3_000 + rng.below(40_000) as i64;
            let p = pick(&mut rng);
            viewed.push(p);
            push(
                &mut drafts,
                t,
                0,
                &user,
                identity(
                    json!({"product_id": product_id(p), "price": 10 + p, "currency": "EUR", "timestamp": rfc3339_ms(t)}),
                ),
            );
        }
        if rng.chance(0.4) {
            let p = viewed[rng.below(viewed.len() as u64) as usize];
            t += 3_000 + rng.below(30_000) as i64;
            push(
                &mut drafts,
                t,
                1,
                &user,
                identity(
                    json!({"action": "add", "product_id": product_id(p), "quantity": 1 + rng.below(3), "price": 10 + p, "currency": "EUR", "timestamp": rfc3339_ms(t)}),
                ),
            );
            if rng.chance(0.15) {
                t += 3_000 + rng.below(20_000) as i64;
                push(
                    &mut drafts,
                    t,
                    1,
                    &user,
                    identity(
                        json!({"action": "remove", "product_id": product_id(p), "timestamp": rfc3339_ms(t)}),
                    ),
                );
            } else if rng.chance(0.55) {
                t += 5_000 + rng.below(60_000) as i64;
                let currency = match rng.below(20) {
                    0..=13 => "EUR",
                    14..=16 => "USD",
                    17..=18 => "GBP",
                    _ => "JPY",
                };
                let mut items = vec![
                    json!({"product_id": product_id(p), "quantity": 1 + rng.below(3), "price": 10 + p}),
                ];
                if rng.chance(0.3) {
                    let q = pick(&mut rng);
                    items
                        .push(json!({"product_id": product_id(q), "quantity": 1, "price": 10 + q}));
                }
                let total = (1000 + rng.below(50_000)) as f64 / 100.0 + 0.005 * rng.below(3) as f64;
                push(
                    &mut drafts,
                    t,
                    2,
                    &user,
                    identity(
                        json!({"order_id": rng.uuid(), "items": items, "total": total, "currency": currency, "timestamp": rfc3339_ms(t)}),
                    ),
                );
            }
        }
        if rng.chance(0.1) {
            t += 1_000;
            push(
                &mut drafts,
                t,
                1,
                &user,
                identity(json!({"action": "clear", "timestamp": rfc3339_ms(t)})),
            );
        }
    }
    drafts.sort_by_key(|d| (d.time_ms, d.seq));

    let mut records = Vec::new();
    let mut expected = Expected::default();
    let kinds = ["product_view", "cart", "purchase", "search"];
    let record = |rng: &mut Rng, d: &Draft| -> (Record, String) {
        let id = rng.uuid();
        let time = rfc3339_ms(d.time_ms);
        let r = Record {
            topic: d.topic,
            key: d.user.clone(),
            value: serde_json::to_vec(&d.body).expect("json"),
            headers: vec![
                ("event_type".into(), kinds[d.topic].into()),
                ("event_id".into(), id.clone()),
                ("received_at".into(), time),
                ("schema".into(), format!("json:{}/v1", kinds[d.topic])),
                ("source".into(), "storefront-test".into()),
            ],
        };
        (r, id)
    };
    let mut late_budget = 12;
    let mut malformed_at: Vec<usize> = (0..6)
        .map(|_| rng.below(drafts.len() as u64) as usize)
        .collect();
    malformed_at.sort_unstable();
    for (i, d) in drafts.iter().enumerate() {
        let (r, _) = record(&mut rng, d);
        count(&mut expected, d);
        records.push(r.clone());
        if rng.chance(0.01) {
            // The same record again (a replay of the agent's disk buffer).
            records.push(r);
            expected.duplicates += 1;
        }
        if late_budget > 0
            && d.topic == 0
            && d.time_ms >= start_ms + 20 * 60_000
            && rng.chance(0.02)
        {
            // A view by the same user (same topic and partition, whose watermark is now
            // >= d.time_ms), 15
            // minutes back: far beyond the allowed lateness of 120 s.
            late_budget -= 1;
            let late = Draft {
                time_ms: d.time_ms - 15 * 60_000,
                seq: 0,
                topic: 0,
                user: d.user.clone(),
                body: json!({"user_id": d.user, "product_id": product_id(1), "timestamp": rfc3339_ms(d.time_ms - 15 * 60_000)}),
            };
            let (r, _) = record(&mut rng, &late);
            records.push(r);
            expected.late_events += 1;
        }
        while malformed_at.first() == Some(&i) {
            malformed_at.remove(0);
            let which = expected.dead_letters % 4;
            let (topic, event_type, value): (usize, &str, &[u8]) = match which {
                0 => (0, "product_view", b"{not json"),
                1 => (
                    2,
                    "purchase",
                    br#"{"user_id":"u","order_id":"o","total":1,"currency":"EUR"}"#,
                ),
                2 => (3, "bogus", br#"{"user_id":"u","query":"x"}"#),
                _ => (0, "product_view", br#"{"product_id":"sku-0001"}"#),
            };
            records.push(Record {
                topic,
                key: d.user.clone(),
                value: value.to_vec(),
                headers: vec![
                    ("event_type".into(), event_type.into()),
                    ("event_id".into(), rng.uuid()),
                ],
            });
            expected.dead_letters += 1;
        }
    }
    Day {
        start_minute,
        records,
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
    mut body: serde_json::Value,
) -> Record {
    let kinds = ["product_view", "cart", "purchase", "search"];
    body["user_id"] = json!(user);
    body["timestamp"] = json!(rfc3339_ms(time_ms));
    if body["context"]["user_agent"].is_null() {
        if body["context"].is_null() {
            body["context"] = json!({});
        }
        body["context"]["user_agent"] = json!(AGENTS[0].0);
    }
    let draft = Draft {
        time_ms,
        seq: 0,
        topic,
        user: user.to_owned(),
        body,
    };
    count(e, &draft);
    Record {
        topic,
        key: user.to_owned(),
        value: serde_json::to_vec(&draft.body).expect("json"),
        headers: vec![
            ("event_type".into(), kinds[topic].into()),
            ("event_id".into(), rng.uuid()),
            ("received_at".into(), rfc3339_ms(time_ms)),
            ("source".into(), "storefront-test".into()),
        ],
    }
}

fn count(e: &mut Expected, d: &Draft) {
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
