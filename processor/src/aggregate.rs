//! Turning a batch of decoded events into rollup deltas: de-duplication, event-time
//! windows, enrichment and the metrics themselves. Pure: no I/O, so a replay of the same
//! records from the same committed state gives the same deltas.
//!
//! ## Windows
//!
//! Tumbling one-minute windows of event time (the event's `timestamp`, else the
//! `received_at` header, else the record's Kafka timestamp). Each partition has a
//! watermark: the largest event time it has counted. An event whose minute ended more
//! than `allowed_lateness` before the watermark is *late*: it is counted in `late_events`
//! of its minute and in nothing else. The watermark is committed with the offsets, so the
//! decision is the same after a restart.
//!
//! ## De-duplication
//!
//! An event whose key was counted before in its partition (in this batch, or in a
//! committed one still inside the de-duplication window, [`crate::dedup`]) is counted in
//! `duplicates` and nothing else.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::hash::BuildHasherDefault;
use std::sync::Arc;

use ingest_core::model::{CartAction, Event};
use ingest_core::EventKind;

use crate::catalog::Catalog;
use crate::dedup::{stream_minute, EventKey, KeyHasher, PartitionIds, SeenIds};
use crate::fast_hash::{FastMap, FastSet};
use crate::members::{self, CommittedMembers};
use crate::recommend::pair_log::PairSums;
use crate::recommend::{self, Recent};
use crate::sessions::Activity;
// Re-exported: the rest of the processor and its tests name them from here.
pub use crate::stream::{minute_of, TopicPartition};
use crate::ua;

/// One decoded record waiting for the next checkpoint.
#[derive(Debug, Clone)]
pub struct Incoming {
    /// Where it was read.
    pub source: TopicPartition,
    /// The event's id (the `event_id` header, else the body's; search documents are
    /// indexed under it).
    pub event_id: String,
    /// The de-duplication key: the hash of the event id scoped by the sender (the
    /// `source` header), so that one storefront's ids can never suppress another's
    /// events ([`crate::dedup::key_of`]).
    pub key: EventKey,
    /// Event time, Unix milliseconds.
    pub event_time_ms: i64,
    /// The event.
    pub event: Event,
}

/// Counter names of [`Rollup::counts`].
pub mod metric {
    /// Counted events of a type: `events.<type>`.
    pub const EVENTS_PREFIX: &str = "events.";
    /// Orders.
    pub const ORDERS: &str = "orders";
    /// Revenue of converted orders, micro-units of the reporting currency.
    pub const REVENUE_MICROS: &str = "revenue_micros";
    /// Orders whose currency has no rate (counted as orders, not in revenue).
    pub const UNCONVERTED_ORDERS: &str = "unconverted_orders";
    /// Cart adds.
    pub const CART_ADDS: &str = "cart_adds";
    /// Cart removes.
    pub const CART_REMOVES: &str = "cart_removes";
    /// Events too late for their window.
    pub const LATE_EVENTS: &str = "late_events";
    /// Events already counted.
    pub const DUPLICATES: &str = "duplicates";
    /// Product views of products not in the catalog.
    pub const CATALOG_MISSES: &str = "catalog_misses";
    /// Sessions started (may be corrected by later events: see [`crate::sessions`]).
    pub const SESSIONS: &str = "sessions";
    /// Events per device class: `device.<class>`.
    pub const DEVICE_PREFIX: &str = "device.";

    /// The counter of events of `kind`: `events.<type>`, without formatting it per event.
    pub fn events_of(kind: super::EventKind) -> &'static str {
        match kind {
            super::EventKind::ProductView => "events.product_view",
            super::EventKind::Cart => "events.cart",
            super::EventKind::Purchase => "events.purchase",
            super::EventKind::Search => "events.search",
        }
    }

    /// The counter of events from a device class ([`crate::ua::Device::class`]):
    /// `device.<class>`.
    pub fn device_of(class: &str) -> &'static str {
        match class {
            "desktop" => "device.desktop",
            "mobile" => "device.mobile",
            "tablet" => "device.tablet",
            "bot" => "device.bot",
            _ => "device.other",
        }
    }
}

/// Dimensions of [`Rollup::tops`].
pub mod dimension {
    /// Views per product.
    pub const VIEWS: &str = "views";
    /// Units bought per product.
    pub const PURCHASES: &str = "purchases";
    /// Searches per normalised query.
    pub const SEARCHES: &str = "searches";
    /// Searches without results per normalised query.
    pub const ZERO_RESULTS: &str = "zero_results";
    /// All of them.
    pub const ALL: [&str; 4] = [VIEWS, PURCHASES, SEARCHES, ZERO_RESULTS];
}

/// Names of [`Rollup::members`] sets.
pub mod set {
    /// Every user seen.
    pub const USERS: &str = "users";
    /// Users who viewed a product.
    pub const VIEWERS: &str = "viewers";
    /// Users who placed an order.
    pub const BUYERS: &str = "buyers";
    /// Users who added to a cart.
    pub const CART_ADDERS: &str = "cart_adders";

    /// Users in an experiment variant.
    pub fn experiment_users(flag: &str, variant: &str) -> String {
        format!("exp_users\t{flag}\t{variant}")
    }

    /// Buyers in an experiment variant.
    pub fn experiment_buyers(flag: &str, variant: &str) -> String {
        format!("exp_buyers\t{flag}\t{variant}")
    }
}

/// Whether an event of `event_time_ms` is too late for its window, given the partition's
/// `watermark_ms` and the allowed lateness.
pub fn is_late(event_time_ms: i64, watermark_ms: i64, allowed_lateness_secs: i64) -> bool {
    let window_end_ms = (minute_of(event_time_ms) + 60) * 1_000;
    watermark_ms >= window_end_ms + allowed_lateness_secs * 1_000
}

/// A search query as counted: trimmed, lower case, at most 200 characters.
pub fn normalise_query(query: &str) -> String {
    query.trim().to_lowercase().chars().take(200).collect()
}

/// The deltas of one batch.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Rollup {
    /// (minute, source, metric) → delta.
    pub counts: BTreeMap<(i64, TopicPartition, String), i64>,
    /// (minute, source, dimension, key) → delta.
    pub tops: BTreeMap<(i64, TopicPartition, &'static str, String), i64>,
    /// (minute, set, member).
    pub members: BTreeSet<(i64, String, String)>,
    /// Newly counted event keys per partition, with their stream minute
    /// ([`crate::dedup`]).
    pub seen: HashMap<TopicPartition, Vec<(i64, EventKey)>>,
    /// Watermark per source after the batch.
    pub watermarks: HashMap<TopicPartition, i64>,
    /// Event times of the users this batch touched, after it.
    pub activity: FastMap<String, Activity>,
    /// Recent products of the users this batch touched, after it.
    pub recent: FastMap<String, Recent>,
    /// The product pair counts' deltas, each unordered pair once (counts are
    /// symmetric), product ids interned: with hundreds of thousands of pairs per
    /// checkpoint, a key of two strings per pair was most of the aggregation's cost.
    pub pairs: PairSums,
}

/// How sessions are cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionRules {
    /// Inactivity that ends a session (ms).
    pub timeout_ms: i64,
    /// Event times older than a user's newest minus this are forgotten (ms).
    pub retention_ms: i64,
    /// Event times kept per user at most.
    pub max_times: usize,
    /// Recent distinct products kept per user (viewed, bought) for recommendations.
    pub recent_products: usize,
    /// Most recent products a new one is paired with.
    pub pair_window: usize,
    /// Distinct products of one order that are paired.
    pub order_items_paired: usize,
}

/// What the aggregator keeps per source partition of the batch.
struct Source<'a> {
    tp: TopicPartition,
    /// The keys committed checkpoints counted there.
    committed: Option<&'a PartitionIds>,
    /// Its watermark so far (`None`: none yet).
    watermark: Option<i64>,
    /// The keys this batch counted there.
    batch: HashSet<EventKey, BuildHasherDefault<KeyHasher>>,
    /// The same, with their stream minutes, for [`Rollup::seen`].
    seen: Vec<(i64, EventKey)>,
}

/// Folds events into a [`Rollup`].
pub struct Aggregator<'a> {
    catalog: &'a Catalog,
    allowed_lateness_secs: i64,
    sessions: SessionRules,
    /// The keys counted by committed checkpoints.
    committed: &'a SeenIds,
    /// Set members already committed: left out of [`Rollup::members`].
    committed_members: Option<&'a CommittedMembers>,
    /// The batch's sources, numbered for the staged deltas below; and the number of
    /// the source of the previous event (records come in runs per partition).
    sources: Vec<Source<'a>>,
    source_numbers: FastMap<TopicPartition, u32>,
    previous_source: Option<u32>,
    /// Deltas staged under keys that cost no allocation per event (a source number, a
    /// static name, a borrowed key looked up before it is copied), moved into the
    /// rollup's ordered maps by [`Aggregator::finish`].
    counts: FastMap<(i64, u32, &'static str), i64>,
    tops: FastMap<(i64, u32, &'static str), FastMap<String, i64>>,
    members: FastMap<(i64, Cow<'static, str>), FastSet<String>>,
    /// Device classes of the user agents seen in this batch: a storefront's visitors
    /// send few distinct ones, and classifying one takes a copy and a dozen searches.
    device_classes: FastMap<String, &'static str>,
    rollup: Rollup,
}

/// User agents whose device class is remembered per batch at most ...
const MAX_REMEMBERED_AGENTS: usize = 1_024;
/// ... each at most this long (longer ones are classified every time).
const MAX_REMEMBERED_AGENT_BYTES: usize = 512;

impl<'a> Aggregator<'a> {
    /// An aggregator starting from the committed `watermarks`, the committed event keys
    /// (`committed`) and the committed event times of the batch's users (`activity`;
    /// users not in it have none).
    pub fn new(
        catalog: &'a Catalog,
        allowed_lateness_secs: i64,
        sessions: SessionRules,
        watermarks: HashMap<TopicPartition, i64>,
        committed: &'a SeenIds,
        activity: FastMap<String, Activity>,
        recent: FastMap<String, Recent>,
    ) -> Self {
        Aggregator {
            catalog,
            allowed_lateness_secs,
            sessions,
            committed,
            committed_members: None,
            sources: Vec::new(),
            source_numbers: FastMap::default(),
            previous_source: None,
            counts: FastMap::default(),
            tops: FastMap::default(),
            members: FastMap::default(),
            device_classes: FastMap::default(),
            rollup: Rollup {
                watermarks,
                activity,
                recent,
                ..Rollup::default()
            },
        }
    }

    /// Leaves the set members in `committed` out of [`Rollup::members`]: writing them
    /// again would change nothing ([`crate::members`]).
    pub fn skipping_members(mut self, committed: &'a CommittedMembers) -> Self {
        self.committed_members = Some(committed);
        self
    }

    /// The deltas so far; the touched users' event times pruned to their bounds.
    pub fn finish(mut self) -> Rollup {
        for source in &mut self.sources {
            if let Some(watermark) = source.watermark {
                self.rollup.watermarks.insert(source.tp.clone(), watermark);
            }
            if !source.seen.is_empty() {
                self.rollup
                    .seen
                    .insert(source.tp.clone(), std::mem::take(&mut source.seen));
            }
        }
        for ((minute, source, name), delta) in self.counts.drain() {
            let key = (
                minute,
                self.sources[source as usize].tp.clone(),
                name.to_owned(),
            );
            let value = self.rollup.counts.entry(key).or_insert(0);
            *value = value.saturating_add(delta);
        }
        for ((minute, source, dim), keys) in self.tops.drain() {
            for (key, delta) in keys {
                let key = (minute, self.sources[source as usize].tp.clone(), dim, key);
                let value = self.rollup.tops.entry(key).or_insert(0);
                *value = value.saturating_add(delta);
            }
        }
        for ((minute, set), members) in self.members.drain() {
            for member in members {
                self.rollup
                    .members
                    .insert((minute, set.clone().into_owned(), member));
            }
        }
        let rules = self.sessions;
        for activity in self.rollup.activity.values_mut() {
            let newest = activity.times().last().copied().unwrap_or(i64::MIN);
            activity.prune(newest.saturating_sub(rules.retention_ms), rules.max_times);
        }
        self.rollup
    }

    /// The device class of `agent` ([`ua::Device::class`]).
    fn device_class(&mut self, agent: &str) -> &'static str {
        if let Some(class) = self.device_classes.get(agent) {
            return class;
        }
        let class = ua::parse(agent).class;
        if agent.len() <= MAX_REMEMBERED_AGENT_BYTES {
            if self.device_classes.len() == MAX_REMEMBERED_AGENTS {
                self.device_classes.clear();
            }
            self.device_classes.insert(agent.to_owned(), class);
        }
        class
    }

    /// The number of `source` in this batch.
    fn source_number(&mut self, source: &TopicPartition) -> u32 {
        if let Some(previous) = self.previous_source {
            let known = &self.sources[previous as usize].tp;
            // Names are shared by the records of a topic: a pointer comparison mostly.
            if known.partition == source.partition
                && (Arc::ptr_eq(&known.topic, &source.topic) || known.topic == source.topic)
            {
                return previous;
            }
        }
        let number = match self.source_numbers.get(source) {
            Some(&number) => number,
            None => {
                let number = self.sources.len() as u32;
                self.sources.push(Source {
                    tp: source.clone(),
                    committed: self.committed.partition(source),
                    watermark: self.rollup.watermarks.get(source).copied(),
                    batch: HashSet::default(),
                    seen: Vec::new(),
                });
                self.source_numbers.insert(source.clone(), number);
                number
            }
        };
        self.previous_source = Some(number);
        number
    }

    // Sums saturate: a counter of hostile amounts stops at i64::MAX, as in PostgreSQL
    // (see `crate::store`), instead of wrapping.
    fn count(&mut self, minute: i64, source: u32, metric: &'static str, delta: i64) {
        let value = self.counts.entry((minute, source, metric)).or_insert(0);
        *value = value.saturating_add(delta);
    }

    fn top(&mut self, minute: i64, source: u32, dim: &'static str, key: &str, delta: i64) {
        let keys = self.tops.entry((minute, source, dim)).or_default();
        match keys.get_mut(key) {
            Some(value) => *value = value.saturating_add(delta),
            None => {
                keys.insert(key.to_owned(), delta);
            }
        }
    }

    fn member(&mut self, minute: i64, set: Cow<'static, str>, member: &str) {
        if let Some(committed) = self.committed_members {
            if committed.contains(minute, members::key_of(&set, member)) {
                return;
            }
        }
        let members = self.members.entry((minute, set)).or_default();
        if !members.contains(member) {
            members.insert(member.to_owned());
        }
    }

    /// The event times of `user` in this batch (starting from the committed ones).
    fn activity_of(&mut self, user: &str) -> &mut Activity {
        if !self.rollup.activity.contains_key(user) {
            self.rollup
                .activity
                .insert(user.to_owned(), Activity::default());
        }
        self.rollup.activity.get_mut(user).expect("inserted above")
    }

    /// The recent products of `user` in this batch (starting from the committed ones),
    /// and the pair counts they add to.
    fn recent_of(&mut self, user: &str) -> (&mut Recent, &mut PairSums) {
        if !self.rollup.recent.contains_key(user) {
            self.rollup
                .recent
                .insert(user.to_owned(), Recent::default());
        }
        let recent = self.rollup.recent.get_mut(user).expect("inserted above");
        (recent, &mut self.rollup.pairs)
    }

    /// Adds one event (in the order of its partition).
    pub fn add(&mut self, incoming: &Incoming) {
        let src = self.source_number(&incoming.source);
        let minute = minute_of(incoming.event_time_ms);
        let source = &mut self.sources[src as usize];
        if source
            .committed
            .is_some_and(|ids| ids.contains(incoming.key))
            || !source.batch.insert(incoming.key)
        {
            self.count(minute, src, metric::DUPLICATES, 1);
            return;
        }
        let watermark = source.watermark.unwrap_or(i64::MIN);
        source
            .seen
            .push((stream_minute(minute, watermark), incoming.key));
        if is_late(
            incoming.event_time_ms,
            watermark,
            self.allowed_lateness_secs,
        ) {
            self.count(minute, src, metric::LATE_EVENTS, 1);
            return;
        }
        source.watermark = Some(watermark.max(incoming.event_time_ms));

        let event = &incoming.event;
        self.count(minute, src, metric::events_of(event.kind()), 1);
        let common = event.common();
        let user = common.identity().unwrap_or("");
        let experiments: Vec<(&str, &str)> = common
            .context
            .as_ref()
            .map(|c| {
                c.experiments
                    .iter()
                    .map(|(f, v)| (f.as_str(), v.as_str()))
                    .collect()
            })
            .unwrap_or_default();
        if let Some(agent) = common
            .context
            .as_ref()
            .and_then(|c| c.user_agent.as_deref())
        {
            let class = self.device_class(agent);
            self.count(minute, src, metric::device_of(class), 1);
        }
        if !user.is_empty() {
            let timeout_ms = self.sessions.timeout_ms;
            let changes = self
                .activity_of(user)
                .insert(incoming.event_time_ms, timeout_ms);
            for (time_ms, delta) in changes {
                self.count(minute_of(time_ms), src, metric::SESSIONS, delta);
            }
            self.member(minute, Cow::Borrowed(set::USERS), user);
            for (flag, variant) in &experiments {
                self.member(
                    minute,
                    Cow::Owned(set::experiment_users(flag, variant)),
                    user,
                );
            }
        }
        match event {
            Event::ProductView(view) => {
                self.top(minute, src, dimension::VIEWS, &view.product_id, 1);
                if self.catalog.product(&view.product_id).is_none() {
                    self.count(minute, src, metric::CATALOG_MISSES, 1);
                }
                if !user.is_empty() {
                    self.member(minute, Cow::Borrowed(set::VIEWERS), user);
                    let (max, window) = (self.sessions.recent_products, self.sessions.pair_window);
                    let (recent, pairs) = self.recent_of(user);
                    recent.view(&view.product_id, max, window, |a, b| {
                        pairs.count(recommend::CO_VIEW, a, b, 1);
                    });
                }
            }
            Event::Cart(cart) => match cart.action {
                CartAction::Add => {
                    self.count(minute, src, metric::CART_ADDS, 1);
                    if !user.is_empty() {
                        self.member(minute, Cow::Borrowed(set::CART_ADDERS), user);
                    }
                }
                CartAction::Remove => self.count(minute, src, metric::CART_REMOVES, 1),
                CartAction::Update | CartAction::Clear => {}
            },
            Event::Purchase(order) => {
                self.count(minute, src, metric::ORDERS, 1);
                match self
                    .catalog
                    .to_reporting_micros(order.total, &order.currency)
                {
                    Some(micros) => self.count(minute, src, metric::REVENUE_MICROS, micros),
                    None => self.count(minute, src, metric::UNCONVERTED_ORDERS, 1),
                }
                for item in &order.items {
                    let units = i64::try_from(item.quantity).unwrap_or(i64::MAX);
                    self.top(minute, src, dimension::PURCHASES, &item.product_id, units);
                }
                if !user.is_empty() {
                    let rules = self.sessions;
                    let products: Vec<&str> =
                        order.items.iter().map(|i| i.product_id.as_str()).collect();
                    let (recent, pairs) = self.recent_of(user);
                    recent.order(
                        &products,
                        rules.recent_products,
                        rules.pair_window,
                        rules.order_items_paired,
                        |a, b| pairs.count(recommend::CO_PURCHASE, a, b, 1),
                    );
                    self.member(minute, Cow::Borrowed(set::BUYERS), user);
                    for (flag, variant) in &experiments {
                        self.member(
                            minute,
                            Cow::Owned(set::experiment_buyers(flag, variant)),
                            user,
                        );
                    }
                }
            }
            Event::Search(search) => {
                let query = normalise_query(&search.query);
                self.top(minute, src, dimension::SEARCHES, &query, 1);
                if search.results_count == Some(0) {
                    self.top(minute, src, dimension::ZERO_RESULTS, &query, 1);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ingest_core::model::Event;
    use ingest_core::EventKind;

    fn incoming(id: &str, ms: i64, kind: EventKind, json: &str) -> Incoming {
        Incoming {
            source: TopicPartition::new("t", 0),
            event_id: id.to_owned(),
            key: crate::dedup::key_of(id),
            event_time_ms: ms,
            event: Event::decode(kind, json.as_bytes()).expect("valid test event"),
        }
    }

    fn catalog() -> Catalog {
        let mut c = Catalog::new("EUR");
        c.insert_product("p1", "Shoe", None);
        c.insert_rate("USD", 0.5);
        c
    }

    const T0: i64 = 1_795_514_400_000; // 2026-11-24T10:00:00Z

    #[test]
    fn static_counter_names_are_the_prefixed_names() {
        for kind in EventKind::ALL {
            assert_eq!(
                metric::events_of(kind),
                format!("{}{kind}", metric::EVENTS_PREFIX)
            );
        }
        for class in ["desktop", "mobile", "tablet", "bot", "other"] {
            assert_eq!(
                metric::device_of(class),
                format!("{}{class}", metric::DEVICE_PREFIX)
            );
        }
    }

    const RULES: SessionRules = SessionRules {
        timeout_ms: 1_000,
        retention_ms: 3_600_000,
        max_times: 100,
        recent_products: 5,
        pair_window: 5,
        order_items_paired: 25,
    };

    /// An aggregator with lateness 60 s, [`RULES`], no watermarks and no user state.
    fn fresh<'a>(catalog: &'a Catalog, committed: &'a SeenIds) -> Aggregator<'a> {
        Aggregator::new(
            catalog,
            60,
            RULES,
            HashMap::new(),
            committed,
            FastMap::default(),
            FastMap::default(),
        )
    }

    #[test]
    fn device_classes_are_the_classifiers_however_many_agents_a_batch_sends() {
        let catalog = Catalog::default();
        let committed = SeenIds::default();
        let mut agg = fresh(&catalog, &committed);
        // More distinct agents than are remembered, repeats, and agents too long to be.
        let mut agents: Vec<String> = (0..MAX_REMEMBERED_AGENTS + 100)
            .map(|i| match i % 3 {
                0 => format!("Mozilla/5.0 (iPhone; CPU iPhone OS 17_{i}) Mobile/15E148"),
                1 => format!("Mozilla/5.0 (Windows NT 10.0) Chrome/{i}.0 Safari/537.36"),
                _ => format!("crawler-{i}"),
            })
            .collect();
        agents.extend(agents.clone());
        agents.push(format!(
            "Mozilla/5.0 (iPad) {}",
            "x".repeat(MAX_REMEMBERED_AGENT_BYTES)
        ));
        let mut expected: HashMap<&str, i64> = HashMap::new();
        for (i, agent) in agents.iter().enumerate() {
            *expected
                .entry(metric::device_of(ua::parse(agent).class))
                .or_default() += 1;
            let json = serde_json::json!({"user_id": "u", "product_id": "p", "context": {"user_agent": agent}});
            agg.add(&incoming(
                &i.to_string(),
                T0,
                EventKind::ProductView,
                &json.to_string(),
            ));
        }
        let r = agg.finish();
        assert!(expected.len() >= 3, "{expected:?}");
        for (metric, n) in expected {
            assert_eq!(count(&r, T0 / 1000, metric), n, "{metric}");
        }
    }

    fn count(r: &Rollup, minute: i64, metric: &str) -> i64 {
        r.counts
            .get(&(minute, TopicPartition::new("t", 0), metric.to_owned()))
            .copied()
            .unwrap_or(0)
    }

    #[test]
    fn minutes_and_lateness() {
        assert_eq!(minute_of(T0 + 59_999), T0 / 1000);
        assert_eq!(minute_of(T0 + 60_000), T0 / 1000 + 60);
        assert_eq!(minute_of(-1), -60);
        // Window [T0, T0+60s) closes at T0+60s+lateness.
        assert!(!is_late(T0, T0 + 60_000 + 9_999, 10));
        assert!(is_late(T0, T0 + 60_000 + 10_000, 10));
        assert!(!is_late(T0, i64::MIN, 0));
    }

    #[test]
    fn counts_metrics_of_every_type() {
        let catalog = catalog();
        let committed = SeenIds::default();
        let mut agg = fresh(&catalog, &committed);
        let ua = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) Mobile/15E148";
        agg.add(&incoming("1", T0, EventKind::ProductView, &format!(r#"{{"user_id":"u1","product_id":"p1","context":{{"user_agent":"{ua}","experiments":{{"f":"a"}}}}}}"#)));
        agg.add(&incoming(
            "2",
            T0 + 1,
            EventKind::ProductView,
            r#"{"user_id":"u2","product_id":"missing"}"#,
        ));
        agg.add(&incoming(
            "3",
            T0 + 2,
            EventKind::Cart,
            r#"{"user_id":"u1","action":"add","product_id":"p1","quantity":1}"#,
        ));
        agg.add(&incoming(
            "4",
            T0 + 3,
            EventKind::Cart,
            r#"{"user_id":"u1","action":"remove","product_id":"p1"}"#,
        ));
        agg.add(&incoming("5", T0 + 4, EventKind::Purchase, r#"{"user_id":"u1","order_id":"o","items":[{"product_id":"p1","quantity":2,"price":5}],"total":10.01,"currency":"USD","context":{"experiments":{"f":"a"}}}"#));
        agg.add(&incoming("6", T0 + 5, EventKind::Purchase, r#"{"user_id":"u2","order_id":"o2","items":[{"product_id":"p1","quantity":1,"price":5}],"total":5,"currency":"JPY"}"#));
        agg.add(&incoming(
            "7",
            T0 + 6,
            EventKind::Search,
            r#"{"user_id":"u2","query":" Shoes ","results_count":0}"#,
        ));
        let r = agg.finish();
        let m = T0 / 1000;
        assert_eq!(count(&r, m, "events.product_view"), 2);
        assert_eq!(count(&r, m, "events.purchase"), 2);
        assert_eq!(count(&r, m, metric::ORDERS), 2);
        assert_eq!(count(&r, m, metric::REVENUE_MICROS), 5_005_000);
        assert_eq!(count(&r, m, metric::UNCONVERTED_ORDERS), 1);
        assert_eq!(count(&r, m, metric::CART_ADDS), 1);
        assert_eq!(count(&r, m, metric::CART_REMOVES), 1);
        assert_eq!(count(&r, m, metric::CATALOG_MISSES), 1);
        assert_eq!(count(&r, m, "device.mobile"), 1);
        let tp = TopicPartition::new("t", 0);
        assert_eq!(
            r.tops
                .get(&(m, tp.clone(), dimension::PURCHASES, "p1".to_owned())),
            Some(&3)
        );
        assert_eq!(
            r.tops
                .get(&(m, tp.clone(), dimension::ZERO_RESULTS, "shoes".to_owned())),
            Some(&1)
        );
        assert!(r
            .members
            .contains(&(m, set::experiment_buyers("f", "a"), "u1".to_owned())));
        assert!(r
            .members
            .contains(&(m, set::BUYERS.to_owned(), "u2".to_owned())));
        assert_eq!(r.seen.values().map(Vec::len).sum::<usize>(), 7);
        // u1: events at T0, +2, +3, +4 (one session); u2: +1, +5, +6 (one session).
        assert_eq!(count(&r, m, metric::SESSIONS), 2);
        assert_eq!(r.activity["u1"].times(), &[T0, T0 + 2, T0 + 3, T0 + 4]);
        assert_eq!(r.recent["u1"].viewed, vec!["p1"]);
        assert_eq!(r.recent["u2"].bought, vec!["p1"]);
        assert!(r.pairs.is_empty(), "one product per user: no pairs");
        assert_eq!(r.watermarks.get(&tp), Some(&(T0 + 6)));
    }

    #[test]
    fn members_committed_earlier_are_left_out() {
        let catalog = catalog();
        let committed = SeenIds::default();
        let m = T0 / 1000;
        let mut members = CommittedMembers::default();
        members.note([(m, set::USERS, "u1"), (m, set::VIEWERS, "u1")], 600, 100);
        let mut agg = fresh(&catalog, &committed).skipping_members(&members);
        let view = r#"{"user_id":"u1","product_id":"p1"}"#;
        agg.add(&incoming("1", T0, EventKind::ProductView, view));
        agg.add(&incoming("2", T0 + 60_000, EventKind::ProductView, view));
        agg.add(&incoming(
            "3",
            T0 + 1,
            EventKind::Cart,
            r#"{"user_id":"u1","action":"add","product_id":"p1","quantity":1}"#,
        ));
        let r = agg.finish();
        let got: Vec<(i64, &str, &str)> = r
            .members
            .iter()
            .map(|(minute, set, member)| (*minute, set.as_str(), member.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                (m, set::CART_ADDERS, "u1"),
                (m + 60, set::USERS, "u1"),
                (m + 60, set::VIEWERS, "u1"),
            ],
            "only the members not committed in their minute"
        );
        assert_eq!(
            count(&r, m, "events.product_view"),
            1,
            "the event still counts"
        );
    }

    #[test]
    fn duplicates_and_late_events_count_only_as_such() {
        let catalog = catalog();
        let tp = TopicPartition::new("t", 0);
        let mut committed = SeenIds::default();
        let window = crate::dedup::Window {
            minutes: 60,
            max_ids_per_partition: 100,
        };
        committed.commit(&tp, &[(T0 / 1000, crate::dedup::key_of("old"))], T0, window);
        // The same id committed in another partition is not a duplicate here.
        committed.commit(
            &TopicPartition::new("t", 1),
            &[(T0 / 1000, crate::dedup::key_of("d"))],
            T0,
            window,
        );
        let mut agg = Aggregator::new(
            &catalog,
            30,
            RULES,
            [(tp.clone(), T0 + 120_000)].into(),
            &committed,
            FastMap::default(),
            FastMap::default(),
        );
        let view = r#"{"user_id":"u","product_id":"p1"}"#;
        agg.add(&incoming("old", T0 + 120_000, EventKind::ProductView, view));
        agg.add(&incoming("a", T0 + 120_000, EventKind::ProductView, view));
        agg.add(&incoming("a", T0 + 120_000, EventKind::ProductView, view));
        // Minute T0 closed at T0+60s+30s < watermark: late.
        agg.add(&incoming("b", T0, EventKind::ProductView, view));
        // Minute T0+60s closes at T0+150s > watermark: on time.
        agg.add(&incoming("c", T0 + 60_000, EventKind::ProductView, view));
        agg.add(&incoming("d", T0 + 60_000, EventKind::ProductView, view));
        let r = agg.finish();
        let m = T0 / 1000;
        assert_eq!(count(&r, m + 120, metric::DUPLICATES), 2);
        assert_eq!(count(&r, m + 120, "events.product_view"), 1);
        assert_eq!(count(&r, m, metric::LATE_EVENTS), 1);
        assert_eq!(count(&r, m, "events.product_view"), 0);
        assert_eq!(count(&r, m + 60, "events.product_view"), 2);
        // Filed by stream minute: the watermark's minute for the late and older events.
        let key = crate::dedup::key_of;
        assert_eq!(
            r.seen[&tp],
            [
                (m + 120, key("a")),
                (m + 120, key("b")),
                (m + 120, key("c")),
                (m + 120, key("d"))
            ]
        );
    }
}
