//! A storefront day, the shape of the shared generator the processor's tests replay: a
//! deterministic day compressed into 40 minutes of event time (so that a one-hour window
//! holds all of it) with thousands of users in sessions of views → cart → purchase
//! funnels, searches with and without results, an A/B experiment with two variants,
//! several currencies (one without a rate), products missing from the catalog,
//! duplicates (the same record sent twice), late events and malformed records.
//!
//! The day is given as the Kafka records to produce plus the events among them a
//! consumer must count ([`DayEvent`]), so that a test can compute what it expects from
//! the events without repeating the generation.

use serde_json::json;

/// A small deterministic generator (SplitMix64).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator whose sequence `seed` picks.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
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

    /// A random version-4 UUID in hyphenated form.
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

/// The topics' event types, by topic index (0 views, 1 cart, 2 purchases, 3 searches).
pub const KINDS: [&str; 4] = ["product_view", "cart", "purchase", "search"];

/// One Kafka record: topic index (as in [`KINDS`]), key, value, headers.
#[derive(Debug, Clone)]
pub struct Record {
    /// The topic's index in [`KINDS`].
    pub topic: usize,
    /// The record key (the user).
    pub key: String,
    /// The record value (the event's JSON, or malformed bytes).
    pub value: Vec<u8>,
    /// The record headers, name and value.
    pub headers: Vec<(String, String)>,
}

/// User agents with the device class a consumer must count them as.
pub const AGENTS: [(&str, &str); 5] = [
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

/// Currency rates a consumer of the day stores (currency, units of EUR per unit); the
/// day's `JPY` orders have none.
pub const RATES: [(&str, f64); 2] = [("USD", 0.92), ("GBP", 1.17)];

/// Products the day's shoppers pick from.
pub const PRODUCTS: usize = 150;
/// The last products, left out of [`catalog`].
pub const MISSING_PRODUCTS: usize = 5;

/// The id of product `i`.
pub fn product_id(i: usize) -> String {
    format!("sku-{i:04}")
}

/// The catalog (id, name) a consumer of the day stores: every product but the last
/// [`MISSING_PRODUCTS`].
pub fn catalog() -> Vec<(String, String)> {
    (0..PRODUCTS - MISSING_PRODUCTS)
        .map(|i| (product_id(i), format!("Product {i}")))
        .collect()
}

/// `ms` (Unix milliseconds) as RFC 3339 in UTC with milliseconds.
pub fn rfc3339_ms(ms: i64) -> String {
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

/// A valid event of the day, as a consumer must count it.
#[derive(Debug, Clone)]
pub struct DayEvent {
    /// Its event time (Unix milliseconds).
    pub time_ms: i64,
    /// Its topic's index in [`KINDS`].
    pub topic: usize,
    /// Its user (user id or anonymous id).
    pub user: String,
    /// Its JSON document.
    pub body: serde_json::Value,
}

/// The generated day.
#[derive(Debug, Clone)]
pub struct Day {
    /// The minute (Unix seconds) the day starts at.
    pub start_minute: i64,
    /// The records to produce, in order.
    pub records: Vec<Record>,
    /// The valid events among them, once each, in the order produced.
    pub events: Vec<DayEvent>,
    /// Records sent a second time (a replay of the agent's disk buffer).
    pub duplicates: i64,
    /// Views far later than any allowed lateness.
    pub late_events: i64,
    /// Malformed records a consumer must dead-letter.
    pub dead_letters: usize,
}

struct Draft {
    event: DayEvent,
    seq: usize,
}

fn record_of(rng: &mut Rng, d: &DayEvent) -> Record {
    let id = rng.uuid();
    let time = rfc3339_ms(d.time_ms);
    Record {
        topic: d.topic,
        key: d.user.clone(),
        value: serde_json::to_vec(&d.body).expect("json"),
        headers: vec![
            ("event_type".into(), KINDS[d.topic].into()),
            ("event_id".into(), id),
            ("received_at".into(), time),
            ("schema".into(), format!("json:{}/v1", KINDS[d.topic])),
            ("source".into(), "storefront-test".into()),
        ],
    }
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
            event: DayEvent {
                time_ms,
                topic,
                user: user.to_owned(),
                body,
            },
            seq,
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
    drafts.sort_by_key(|d| (d.event.time_ms, d.seq));

    let mut records = Vec::new();
    let mut events = Vec::with_capacity(drafts.len());
    let mut duplicates = 0;
    let mut late_events = 0;
    let mut dead_letters = 0;
    let mut late_budget = 12;
    let mut malformed_at: Vec<usize> = (0..6)
        .map(|_| rng.below(drafts.len() as u64) as usize)
        .collect();
    malformed_at.sort_unstable();
    for (i, Draft { event: d, .. }) in drafts.into_iter().enumerate() {
        let r = record_of(&mut rng, &d);
        records.push(r.clone());
        if rng.chance(0.01) {
            // The same record again (a replay of the agent's disk buffer).
            records.push(r);
            duplicates += 1;
        }
        if late_budget > 0
            && d.topic == 0
            && d.time_ms >= start_ms + 20 * 60_000
            && rng.chance(0.02)
        {
            // A view by the same user (same topic and partition, whose watermark is now
            // >= d.time_ms), 15 minutes back: far beyond the allowed lateness of 120 s.
            late_budget -= 1;
            let late = DayEvent {
                time_ms: d.time_ms - 15 * 60_000,
                topic: 0,
                user: d.user.clone(),
                body: json!({"user_id": d.user, "product_id": product_id(1), "timestamp": rfc3339_ms(d.time_ms - 15 * 60_000)}),
            };
            records.push(record_of(&mut rng, &late));
            late_events += 1;
        }
        while malformed_at.first() == Some(&i) {
            malformed_at.remove(0);
            let (topic, event_type, value): (usize, &str, &[u8]) = match dead_letters % 4 {
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
            dead_letters += 1;
        }
        events.push(d);
    }
    Day {
        start_minute,
        records,
        events,
        duplicates,
        late_events,
        dead_letters,
    }
}

/// A valid record of `user` at `time_ms` (topic index as in [`KINDS`]) with the event
/// a consumer must count for it: `body` gets the user id, the timestamp and, when it has
/// none, a desktop user agent.
pub fn valid_record(
    rng: &mut Rng,
    topic: usize,
    user: &str,
    time_ms: i64,
    mut body: serde_json::Value,
) -> (Record, DayEvent) {
    body["user_id"] = json!(user);
    body["timestamp"] = json!(rfc3339_ms(time_ms));
    if body["context"]["user_agent"].is_null() {
        if body["context"].is_null() {
            body["context"] = json!({});
        }
        body["context"]["user_agent"] = json!(AGENTS[0].0);
    }
    let event = DayEvent {
        time_ms,
        topic,
        user: user.to_owned(),
        body,
    };
    let record = Record {
        topic,
        key: user.to_owned(),
        value: serde_json::to_vec(&event.body).expect("json"),
        headers: vec![
            ("event_type".into(), KINDS[topic].into()),
            ("event_id".into(), rng.uuid()),
            ("received_at".into(), rfc3339_ms(time_ms)),
            ("source".into(), "storefront-test".into()),
        ],
    };
    (record, event)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_seed_one_day_whose_records_hold_its_events_and_extras() {
        let a = day(7, 300, 29_000_000);
        let b = day(7, 300, 29_000_000);
        assert_eq!(
            a.records.iter().map(|r| &r.value).collect::<Vec<_>>(),
            b.records.iter().map(|r| &r.value).collect::<Vec<_>>()
        );
        assert_eq!(
            a.records.len(),
            a.events.len() + a.duplicates as usize + a.late_events as usize + a.dead_letters,
        );
        assert_eq!(a.dead_letters, 6);
        let start_ms = 29_000_000 * 1000;
        for e in &a.events {
            assert!((start_ms..start_ms + 60 * 60_000).contains(&e.time_ms));
            assert!(AGENTS
                .iter()
                .any(|(agent, _)| Some(*agent) == e.body["context"]["user_agent"].as_str()));
        }
        assert!(a.events.windows(2).all(|w| w[0].time_ms <= w[1].time_ms));
        assert_ne!(day(8, 300, 29_000_000).records[0].value, a.records[0].value);
    }
}
