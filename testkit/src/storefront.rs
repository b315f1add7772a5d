//! Seeded storefront traffic, the workspace's one generator of it (the load tools, the
//! benches, the `storefront` example of ingest-core, `scripts/demo` through this crate's
//! `storefront_ndjson` example, and the processor's tests through [`day`] draw from it):
//! product views, cart changes, searches (some without results) and purchases in the mix
//! a shop sees, deterministic so that two runs with one seed send the same events.
//!
//! Every event carries an `event_id` that encodes the run and the event's number
//! ([`event_id`]), so a verifier can pick this run's events out of a shared topic and
//! check each one without keeping the bodies.
//!
//! [`day`] shapes the same kind of traffic as one storefront day in event time, with
//! the records a consumer must reject, for tests that check a consumer's results.

pub mod day;

use std::fmt::Write as _;

use uuid::Uuid;

/// The four event types, named as the event contract names them (this crate does not
/// depend on `ingest-core`, whose tests use it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    /// `product_view`
    ProductView,
    /// `cart`
    Cart,
    /// `purchase`
    Purchase,
    /// `search`
    Search,
}

impl EventType {
    /// The contract's name of the type (`ingest_core::EventType::from_name` reads it).
    pub const fn as_str(self) -> &'static str {
        match self {
            EventType::ProductView => "product_view",
            EventType::Cart => "cart",
            EventType::Purchase => "purchase",
            EventType::Search => "search",
        }
    }
}

/// The share of each event type, in percent: views dominate, purchases are rare.
const MIX: [(EventType, u64); 4] = [
    (EventType::ProductView, 62),
    (EventType::Cart, 20),
    (EventType::Search, 12),
    (EventType::Purchase, 6),
];

const CATEGORIES: [&str; 6] = ["shoes", "jackets", "bags", "watches", "socks", "shirts"];
const BRANDS: [&str; 5] = ["Acme", "Northwind", "Globex", "Initech", "Umbrella"];
const QUERIES: [&str; 8] = [
    "red running shoes",
    "rain jacket",
    "leather bag",
    "smart watch",
    "wool socks",
    "linen shirt",
    "gift card",
    "qwzxv",
];
const USER_AGENTS: [&str; 3] = [
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15",
];

/// The id of event number `seq` of run `run`: the run in the high 64 bits, the number in
/// the low ones. Any UUID is a valid `event_id`, and Kafka's `event_id` header carries
/// it back in lower-case hyphenated form.
pub fn event_id(run: u64, seq: u64) -> Uuid {
    Uuid::from_u64_pair(run, seq)
}

/// One generated event.
#[derive(Debug, Clone)]
pub struct Event {
    /// Its type.
    pub kind: EventType,
    /// Its number in the run.
    pub seq: u64,
    /// The JSON document, with `type` and `event_id` set.
    pub body: Vec<u8>,
}

/// A deterministic storefront: `users` shoppers browsing a catalog of `products`.
#[derive(Debug, Clone)]
pub struct Storefront {
    state: u64,
    run: u64,
    next_seq: u64,
    users: u64,
    products: u64,
}

impl Storefront {
    /// A storefront for run `run` (the high half of every `event_id`) whose event
    /// numbers start at `first_seq`; `seed` picks the sequence of shoppers' actions.
    pub fn new(run: u64, first_seq: u64, seed: u64) -> Self {
        Self {
            // xorshift must not start at 0.
            state: seed | 1,
            run,
            next_seq: first_seq,
            users: 10_000,
            products: 2_000,
        }
    }

    /// The same storefront with `users` shoppers (`user-0` on) and a catalog of
    /// `products` (`sku-0` on), both at least one; the defaults are 10,000 and 2,000.
    pub fn with_shape(mut self, users: u64, products: u64) -> Self {
        self.users = users.max(1);
        self.products = products.max(1);
        self
    }

    /// The run this storefront's event ids belong to.
    pub fn run(&self) -> u64 {
        self.run
    }

    fn random(&mut self, below: u64) -> u64 {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        self.state % below
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.random(items.len() as u64) as usize]
    }

    /// The next event, of a type drawn from the storefront mix.
    pub fn next_event(&mut self) -> Event {
        let mut roll = self.random(100);
        let mut kind = EventType::ProductView;
        for (candidate, share) in MIX {
            if roll < share {
                kind = candidate;
                break;
            }
            roll -= share;
        }
        self.event_of(kind)
    }

    /// The next event, of the given type.
    pub fn event_of(&mut self, kind: EventType) -> Event {
        let seq = self.next_seq;
        self.next_seq += 1;
        let mut body = String::with_capacity(512);
        let id = event_id(self.run, seq);
        let user = self.random(self.users);
        let product = self.random(self.products);
        let cents = 500 + self.random(20_000);
        let _ = write!(
            body,
            r#"{{"type":"{}","event_id":"{id}","user_id":"user-{user}","session_id":"s-{user}-{}","#,
            kind.as_str(),
            seq / 50,
        );
        match kind {
            EventType::ProductView => {
                let category = self.pick(&CATEGORIES);
                let brand = self.pick(&BRANDS);
                let _ = write!(
                    body,
                    r#""product_id":"sku-{product}","category":"{category}","brand":"{brand}","price":{}.{:02},"currency":"EUR","#,
                    cents / 100,
                    cents % 100
                );
            }
            EventType::Cart => {
                let action = if self.random(4) == 0 { "remove" } else { "add" };
                let _ = write!(
                    body,
                    r#""action":"{action}","product_id":"sku-{product}","quantity":{},"price":{}.{:02},"currency":"EUR","cart_id":"c-{user}","#,
                    1 + self.random(3),
                    cents / 100,
                    cents % 100
                );
            }
            EventType::Search => {
                let query = self.pick(&QUERIES);
                let results = if query == "qwzxv" {
                    0
                } else {
                    self.random(120)
                };
                let _ = write!(body, r#""query":"{query}","results_count":{results},"#);
            }
            EventType::Purchase => {
                let second = self.random(self.products);
                let other = 300 + self.random(5_000);
                let total = cents + 2 * other;
                let _ = write!(
                    body,
                    r#""order_id":"o-{seq}","items":[{{"product_id":"sku-{product}","quantity":1,"price":{}.{:02}}},{{"product_id":"sku-{second}","quantity":2,"price":{}.{:02}}}],"total":{}.{:02},"currency":"EUR","#,
                    cents / 100,
                    cents % 100,
                    other / 100,
                    other % 100,
                    total / 100,
                    total % 100
                );
            }
        }
        let agent = self.pick(&USER_AGENTS);
        let variant = if user.is_multiple_of(2) {
            "control"
        } else {
            "treatment"
        };
        let _ = write!(
            body,
            r#""context":{{"user_agent":"{agent}","ip":"203.0.113.{}","page_url":"https://shop.example/p/sku-{product}","locale":"de-DE","experiments":{{"checkout_v2":"{variant}"}}}}}}"#,
            user % 250
        );
        Event {
            kind,
            seq,
            body: body.into_bytes(),
        }
    }
}

/// A product view of exactly `size` bytes (padded with an unknown field, which the
/// contract keeps and never inspects), for comparisons where every tool must send the
/// same record size. `size` must leave room for the fields (at least 200 bytes).
pub fn fixed_size_view(run: u64, seq: u64, size: usize) -> Vec<u8> {
    let head = format!(
        r#"{{"type":"product_view","event_id":"{}","user_id":"user-{}","product_id":"sku-{}","price":19.99,"currency":"EUR","pad":""#,
        event_id(run, seq),
        seq % 10_000,
        seq % 2_000
    );
    let tail = "\"}";
    let pad = size.saturating_sub(head.len() + tail.len());
    let mut body = Vec::with_capacity(size);
    body.extend_from_slice(head.as_bytes());
    body.resize(head.len() + pad, b'x');
    body.extend_from_slice(tail.as_bytes());
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_events_each_a_json_object_of_its_type() {
        let events = |seed| {
            let mut shop = Storefront::new(1, 0, seed);
            (0..200).map(|_| shop.next_event()).collect::<Vec<_>>()
        };
        let a = events(9);
        assert_eq!(
            a.iter().map(|e| &e.body).collect::<Vec<_>>(),
            events(9).iter().map(|e| &e.body).collect::<Vec<_>>()
        );
        assert_ne!(a[0].body, events(10)[0].body, "another seed, other events");
        let mut small = Storefront::new(1, 0, 9).with_shape(3, 4);
        for _ in 0..200 {
            let value: serde_json::Value =
                serde_json::from_slice(&small.next_event().body).expect("JSON");
            let user = value["user_id"].as_str().expect("user");
            assert!(["user-0", "user-1", "user-2"].contains(&user), "{user}");
            let product = value["product_id"].as_str().unwrap_or("sku-0");
            assert!(
                ["sku-0", "sku-1", "sku-2", "sku-3"].contains(&product),
                "{product}"
            );
        }
        for event in &a {
            let value: serde_json::Value = serde_json::from_slice(&event.body).expect("JSON");
            assert_eq!(value["type"], event.kind.as_str());
            assert_eq!(value["event_id"], event_id(1, event.seq).to_string());
        }
    }
}
