//! The live view against a real Redis (`REDIS_URL`; scripts/test sets it): answers stay
//! exact and bounded when a window holds many users, products, queries and experiments.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::Duration;

use processor::aggregate::{set, TopicPartition};
use processor::live::{LiveView, ReadLimits};
use processor::report::{self, Window};
use processor::store::Committed;

const USERS: usize = 20_000;
const PRODUCTS: usize = 20_000;
const QUERIES: usize = 20_000;
const PAIRS: usize = 1_000;
const USERS_PER_PAIR: usize = 20;
const LIMITS: ReadLimits = ReadLimits {
    top_n: 10,
    max_experiment_pairs: 100,
};

fn redis_url() -> String {
    match std::env::var("REDIS_URL") {
        Ok(v) if !v.trim().is_empty() => v,
        _ => panic!(
            "REDIS_URL is not set: run `scripts/services start` and export the REDIS_URL it \
             prints, or run scripts/test"
        ),
    }
}

/// What was written, kept independently of the live view.
#[derive(Default)]
struct Written {
    committed: Committed,
    members: BTreeSet<(i64, String, String)>,
    views: HashMap<String, i64>,
    units: HashMap<String, i64>,
    searches: HashMap<String, i64>,
    zero_results: HashMap<String, i64>,
    sets: HashMap<&'static str, HashSet<String>>,
    experiments: BTreeMap<String, (HashSet<String>, HashSet<String>)>,
}

impl Written {
    fn top(&mut self, minute: i64, tp: &TopicPartition, dim: &str, key: String, value: i64) {
        let total = match dim {
            "views" => &mut self.views,
            "purchases" => &mut self.units,
            "searches" => &mut self.searches,
            _ => &mut self.zero_results,
        };
        *total.entry(key.clone()).or_insert(0) += value;
        self.committed
            .tops
            .push((minute, tp.clone(), dim.to_owned(), key, value));
    }

    fn member(&mut self, minute: i64, name: &'static str, user: String) {
        self.sets.entry(name).or_default().insert(user.clone());
        self.members.insert((minute, name.to_owned(), user));
    }
}

/// Two minutes over two sources each: 20,000 users, products and queries (with many
/// ties in every top list), 1,000 experiment pairs, counters near `i64::MAX`.
fn window(start: i64, views: &TopicPartition, orders: &TopicPartition) -> Written {
    let mut w = Written::default();
    let minutes = [start, start + 60];
    for (i, &minute) in minutes.iter().enumerate() {
        for tp in [views, orders] {
            w.committed.counts.push((
                minute,
                tp.clone(),
                "events.product_view".to_owned(),
                i64::MAX - 1,
            ));
            w.committed
                .counts
                .push((minute, tp.clone(), "orders".to_owned(), 7));
        }
        // Each product's views split over the two minutes; ties in groups of ~200.
        for j in (i..PRODUCTS).step_by(2) {
            let v = (j % 97) as i64 + 1;
            w.top(minute, views, "views", format!("p{j:05}"), v);
            if j.is_multiple_of(5) {
                w.top(
                    minute,
                    orders,
                    "purchases",
                    format!("p{j:05}"),
                    (j % 7) as i64,
                );
            }
        }
        // Products bought and never viewed.
        for j in 0..50 {
            w.top(
                minute,
                orders,
                "purchases",
                format!("z{j:02}"),
                3 + i as i64,
            );
        }
        for j in (i..QUERIES).step_by(2) {
            let n = (j % 13) as i64 + 1;
            w.top(minute, views, "searches", format!("query {j}"), n);
            if j.is_multiple_of(3) {
                w.top(minute, views, "zero_results", format!("query {j}"), n);
            }
        }
        for u in (i..USERS).step_by(2) {
            let user = format!("user-{u}");
            w.member(minute, set::USERS, user.clone());
            w.member(minute, set::VIEWERS, user.clone());
            if u.is_multiple_of(2) {
                w.member(minute, set::CART_ADDERS, user.clone());
            }
            if u.is_multiple_of(3) {
                w.member(minute, set::BUYERS, user);
            }
        }
        // Each pair in one of the two minutes; their users in both.
        for k in (i..PAIRS).step_by(2) {
            let (flag, variant) = (format!("flag-{:03}", k / 2), format!("v{}", k % 2));
            let pair = format!("{flag}\t{variant}");
            for m in &minutes {
                for n in 0..USERS_PER_PAIR / 2 {
                    let u = k + PAIRS * (n * 2 + usize::from(*m != minute));
                    let user = format!("user-{u}");
                    let entry = w.experiments.entry(pair.clone()).or_default();
                    entry.0.insert(user.clone());
                    w.members
                        .insert((*m, set::experiment_users(&flag, &variant), user.clone()));
                    if u.is_multiple_of(3) {
                        entry.1.insert(user.clone());
                        w.members
                            .insert((*m, set::experiment_buyers(&flag, &variant), user));
                    }
                }
            }
        }
    }
    w
}

fn ranked(map: &HashMap<String, i64>, n: usize) -> Vec<(String, i64)> {
    let mut list: Vec<(String, i64)> = map.iter().map(|(k, v)| (k.clone(), *v)).collect();
    list.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    list.truncate(n);
    list
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crowded_window_gives_exact_bounded_answers() {
    let prefix = format!("live_{}", uuid::Uuid::now_v7().simple());
    let live = LiveView::connect(&redis_url(), None, &prefix, 600, Duration::from_secs(30))
        .await
        .expect("Redis reachable at REDIS_URL");
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let start = (now / 60) * 60 - 300;
    let views = TopicPartition::new("views", 0);
    let orders = TopicPartition::new("orders", 3);
    let w = window(start, &views, &orders);
    let versions: HashMap<TopicPartition, i64> = [(views, 10), (orders, 20)].into();
    live.write(&w.committed, &versions, &w.members)
        .await
        .expect("written");

    let minutes = Window::FiveMinutes.minute_starts(start + 300);
    let snapshot = live.snapshot(&minutes, LIMITS).await.expect("read");

    // Counters: summed over sources and minutes, saturating.
    let first = &snapshot.minutes[0];
    assert_eq!(first.counts["events.product_view"], i64::MAX);
    assert_eq!(first.counts["orders"], 14);
    // Distinct counts, exact.
    let sets = &w.sets;
    assert_eq!(snapshot.viewers, sets[set::VIEWERS].len() as u64);
    assert_eq!(snapshot.viewers, USERS as u64);
    assert_eq!(snapshot.buyers, sets[set::BUYERS].len() as u64);
    assert_eq!(snapshot.cart_adders, sets[set::CART_ADDERS].len() as u64);
    let abandoners = sets[set::CART_ADDERS]
        .difference(&sets[set::BUYERS])
        .count();
    assert_eq!(snapshot.cart_abandoners, abandoners as u64);
    let error = (snapshot.unique_users as f64 - USERS as f64).abs() / USERS as f64;
    assert!(error <= 0.02, "unique users {}", snapshot.unique_users);
    // Bounded: at most 2 × top_n products and top_n queries per list came back.
    assert!(snapshot.products.len() <= 2 * LIMITS.top_n);
    assert!(snapshot.queries.values().all(|q| q.len() <= LIMITS.top_n));
    // Experiments: every pair counted, the first 100 in byte order reported, exactly.
    assert_eq!(snapshot.experiment_pairs, PAIRS as u64);
    assert_eq!(snapshot.experiments.len(), LIMITS.max_experiment_pairs);
    let want = w.experiments.iter().take(LIMITS.max_experiment_pairs);
    for ((pair, got), (name, (users, buyers))) in snapshot.experiments.iter().zip(want) {
        assert_eq!(format!("{}\t{}", pair.0, pair.1), *name);
        assert_eq!(*got, (users.len() as u64, buyers.len() as u64), "{name}");
        assert_eq!(users.len(), USERS_PER_PAIR);
    }

    // The answer's top lists equal a full sort of everything written.
    let r = report::compute(Window::FiveMinutes, start + 300, &snapshot, "EUR", 10);
    let products: BTreeSet<&String> = w.views.keys().chain(w.units.keys()).collect();
    let figures = |p: &String| {
        (
            p.clone(),
            w.views.get(p).copied().unwrap_or(0),
            w.units.get(p).copied().unwrap_or(0),
        )
    };
    let mut by_views: Vec<(String, i64, i64)> = products.iter().map(|p| figures(p)).collect();
    let mut by_units = by_views.clone();
    by_views.sort_by(|a, b| b.1.cmp(&a.1).then(b.2.cmp(&a.2)).then(a.0.cmp(&b.0)));
    by_units.sort_by(|a, b| b.2.cmp(&a.2).then(b.1.cmp(&a.1)).then(a.0.cmp(&b.0)));
    by_views.truncate(10);
    by_units.truncate(10);
    let got = |list: &[report::TopProduct]| -> Vec<(String, i64, i64)> {
        list.iter()
            .map(|p| (p.product_id.clone(), p.views, p.purchases))
            .collect()
    };
    assert_eq!(got(&r.top_products), by_views, "top products by views");
    assert_eq!(
        got(&r.top_products_by_purchases),
        by_units,
        "top products by purchases"
    );
    let queries = |list: &[report::QueryCount]| -> Vec<(String, i64)> {
        list.iter().map(|q| (q.query.clone(), q.count)).collect()
    };
    assert_eq!(queries(&r.top_searches), ranked(&w.searches, 10));
    assert_eq!(
        queries(&r.zero_result_searches),
        ranked(&w.zero_results, 10)
    );
    assert_eq!(r.experiment_pairs, PAIRS as u64);

    // Nothing temporary is left behind.
    let client = redis::Client::open(redis_url()).expect("URL");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("connection");
    let left: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:tmp:*"))
        .query_async(&mut conn)
        .await
        .expect("KEYS");
    assert!(left.is_empty(), "{left:?}");
}

/// A checkpoint that changed no figure (dead letters only) writes nothing and succeeds.
#[tokio::test(flavor = "multi_thread")]
async fn a_checkpoint_without_figures_is_a_successful_write() {
    let prefix = format!("live_{}", uuid::Uuid::now_v7().simple());
    let live = LiveView::connect(&redis_url(), None, &prefix, 600, Duration::from_secs(30))
        .await
        .expect("Redis reachable at REDIS_URL");
    live.write(&Committed::default(), &HashMap::new(), &BTreeSet::new())
        .await
        .expect("nothing to write is not a failure");
}
