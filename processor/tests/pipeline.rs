//! End-to-end tests of the processor binary against a real Kafka, PostgreSQL, Redis and
//! OpenSearch (`KAFKA_BOOTSTRAP`, `POSTGRES_URL`, `REDIS_URL`, `OPENSEARCH_URL`;
//! scripts/test sets them).

mod common;

use std::time::{Duration, Instant};

use common::harness::{analytics, answered, progress, settle_day, settled, start_minute, Harness};
use common::storefront::{self, Expected};
use common::{ranked_products, Processor, Scenario, SearchIndex};

fn day(seed: u64, users: usize) -> storefront::Day {
    let day = storefront::day(seed, users, start_minute());
    let e = &day.expected;
    // The scenario covers what it claims to.
    assert!(e.users.len() >= users * 9 / 10);
    assert!(e.duplicates > 0 && e.late_events > 0 && e.dead_letters > 0);
    assert!(e.unconverted_orders > 0 && e.catalog_misses > 0 && !e.zero_results.is_empty());
    assert_eq!(e.experiment_users.len(), 2);
    day
}

/// 20 users who viewed and bought several products.
fn recommended_users(e: &Expected) -> Vec<&String> {
    let mut users: Vec<&String> = e
        .user_products
        .iter()
        .filter(|(_, events)| events.len() >= 3 && events.iter().any(|(order, _)| *order))
        .map(|(u, _)| u)
        .collect();
    users.sort();
    assert!(users.len() >= 20);
    users.truncate(20);
    users
}

/// Compares the recommendations of [`recommended_users`] with the model's, once the
/// checkpoints' pair deltas are folded in (about `recommendations.fold_interval_ms`
/// after the last count).
async fn assert_recommendations(p: &Processor, e: &Expected) {
    let deadline = Instant::now() + Duration::from_secs(60);
    for user in recommended_users(e) {
        let want = storefront::recommendations(e, user);
        assert!(!want.is_empty());
        loop {
            let (status, body) = p
                .get(&format!("/api/recommendations/{user}"))
                .await
                .expect("answer");
            assert_eq!(status, 200, "{body}");
            let answer: serde_json::Value = serde_json::from_str(&body).expect("JSON");
            let got = ranked_products(&answer);
            if got == want {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "recommendations of {user}: {got:?}, expected {want:?}"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_storefront_day_gives_exact_metrics_and_dead_letters() {
    let day = day(0x5EED_0001, 3_000);
    let scenario = Harness::storefront("day").await;
    scenario.produce(&day.records).await;
    let mut p = scenario.start_ready("single", &[]).await;
    settle_day(&p, &day, Duration::from_secs(180)).await;

    let letters = scenario.dead_letters(day.expected.dead_letters, Duration::from_secs(30));
    assert_eq!(letters.len(), day.expected.dead_letters, "{letters:?}");
    let mut codes: Vec<&str> = letters.iter().map(|(c, _)| c.as_str()).collect();
    codes.sort_unstable();
    codes.dedup();
    for code in ["undecodable", "unknown_event_type", "missing_identity"] {
        assert!(codes.contains(&code), "{code} missing in {codes:?}");
    }

    assert_recommendations(&p, &day.expected).await;
    // Recommendations are published per user active since the last round (each 1 s
    // here), as they stood then: keyed by user, ranked, only for users with counted
    // views or orders.
    let published = scenario.published_recommendations(1, Duration::from_secs(30));
    let mut users = std::collections::HashSet::new();
    for (user, value) in &published {
        assert_eq!(
            value["user_id"].as_str(),
            Some(user.as_str()),
            "keyed by user"
        );
        assert!(
            day.expected.user_products.contains_key(user),
            "{user} viewed or bought nothing"
        );
        let scores: Vec<i64> = ranked_products(value).iter().map(|p| p.1).collect();
        assert!(!scores.is_empty() && scores.len() <= 10);
        assert!(scores.windows(2).all(|w| w[0] >= w[1]), "ranked: {value}");
        users.insert(user.clone());
    }
    assert!(users.len() >= 1_000, "{} users published", users.len());
    assert_eq!(
        p.get("/api/recommendations/nobody")
            .await
            .expect("answer")
            .0,
        404
    );
    // A NUL (or any control character) in the id is the client's error: 400 before any
    // query, in the API's error shape.
    for bad in ["a%00b", "a%0Ab", &"x".repeat(129)] {
        let (status, body) = p
            .get(&format!("/api/recommendations/{bad}"))
            .await
            .expect("answer");
        assert_eq!(status, 400, "{bad}: {body}");
        let answer: serde_json::Value = serde_json::from_str(&body).expect("JSON");
        assert_eq!(answer["error"]["code"], "invalid_user_id", "{body}");
        assert_eq!(answer["error"]["field"], "user_id", "{body}");
    }
    assert_eq!(
        p.get("/api/analytics/real-time?window=1h&to=yesterday")
            .await
            .expect("answer")
            .0,
        400
    );

    let (status, metrics) = p.get("/metrics").await.expect("metrics answer");
    assert_eq!(status, 200);
    assert!(metrics.contains("processor_checkpoints_total"), "{metrics}");
    for series in [
        "processor_checkpoint_phase_seconds_count{phase=\"fence\"}",
        "processor_checkpoint_phase_seconds_count{phase=\"aggregate\"}",
        "processor_checkpoint_phase_seconds_count{phase=\"commit\"}",
        "processor_checkpoint_statement_seconds_count{statement=\"counts\"}",
        "processor_checkpoint_statement_seconds_count{statement=\"pair_log\"}",
        "processor_checkpoint_statement_seconds_count{statement=\"dedup_log\"}",
        "processor_pair_fold_seconds_count",
        "processor_pair_log_rows",
        "processor_dedup_ids",
    ] {
        assert!(metrics.contains(series), "{series} in {metrics}");
    }
    assert!(
        p.get("/api/analytics/real-time?window=2m")
            .await
            .expect("answer")
            .0
            == 400
    );
    assert!(
        p.terminate(),
        "SIGTERM exits cleanly after a final checkpoint"
    );
}

fn as_env(pairs: &[(String, String)]) -> Vec<(&str, &str)> {
    pairs
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

/// The index holds one document per distinct valid event (counted or late, never a
/// duplicate), enriched, and none of them passed through PostgreSQL.
async fn assert_indexed(index: &SearchIndex, scenario: &Scenario, e: &Expected) {
    let want = e.events.iter().sum::<i64>() + e.late_events;
    let got = index.settled(want, Duration::from_secs(120)).await;
    assert_eq!(got, want, "one document per distinct valid event");
    assert_eq!(
        scenario.rows("search_outbox").await,
        0,
        "documents come from Kafka, not from rows in PostgreSQL"
    );
    let answer = index
        .search(&serde_json::json!({
            "size": 0,
            "aggs": {"types": {"terms": {"field": "event_type"}}},
        }))
        .await;
    let buckets = answer["aggregations"]["types"]["buckets"]
        .as_array()
        .expect("buckets");
    for (i, kind) in ["product_view", "cart", "purchase", "search"]
        .iter()
        .enumerate()
    {
        let n = buckets
            .iter()
            .find(|b| b["key"] == *kind)
            .and_then(|b| b["doc_count"].as_i64())
            .unwrap_or(0);
        // Late events are indexed too, so at least the counted ones.
        assert!(
            n >= e.events[i],
            "{kind}: {n} documents, {} counted",
            e.events[i]
        );
    }
    // Enriched: catalog names on views of known products, devices from user agents.
    let named = index
        .search(&serde_json::json!({"size": 0, "query": {"exists": {"field": "product.name"}}}))
        .await;
    assert!(
        named["hits"]["total"]["value"].as_i64().unwrap_or(0) > 0,
        "{named}"
    );
    let devices = index
        .search(&serde_json::json!({"size": 0, "query": {"exists": {"field": "device.class"}}}))
        .await;
    assert!(
        devices["hits"]["total"]["value"].as_i64().unwrap_or(0) > 0,
        "{devices}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_three_times_mid_stream_loses_and_double_counts_nothing() {
    let day = day(0x5EED_0002, 3_000);
    let scenario = Harness::storefront("kill").await;
    let index = scenario.search_index();
    let search_env = scenario.search_env(&index.addr);
    let mut rng = storefront::Rng::new(0x4B11);
    let chunks: Vec<&[storefront::Record]> =
        day.records.chunks(day.records.len() / 4 + 1).collect();
    assert_eq!(chunks.len(), 4);
    // Snapshots of the users' state as often as they may be (whenever the log since
    // the last one outweighs it), so that the kills hit them and the restarts load
    // them.
    let mut search_env = search_env;
    search_env.push((
        "PROCESSOR_CHECKPOINT__USER_STATE_SNAPSHOT_MIN_KIB".to_owned(),
        "0".to_owned(),
    ));
    let mut p = scenario.start_ready("kill-0", &as_env(&search_env)).await;
    let mut counted_before = 0;
    for (i, chunk) in chunks.iter().enumerate() {
        scenario.produce(chunk).await;
        if i == 3 {
            break;
        }
        // Kill while this instance is consuming the chunk: once it has counted more
        // than before, after a seeded random moment.
        let counted = progress(
            &p,
            day.start_minute,
            counted_before,
            Duration::from_secs(60),
        )
        .await;
        tokio::time::sleep(Duration::from_millis(rng.below(400))).await;
        p.kill9();
        eprintln!(
            "kill -9 #{}: {counted} records counted before (of {} produced so far)",
            i + 1,
            chunks[..=i].iter().map(|c| c.len()).sum::<usize>()
        );
        counted_before = counted;
        p = scenario
            .start_ready(&format!("kill-{}", i + 1), &as_env(&search_env))
            .await;
    }
    settle_day(&p, &day, Duration::from_secs(240)).await;
    assert_recommendations(&p, &day.expected).await;
    // Dead letters are at least once: a kill may repeat one, never lose one.
    let letters = scenario.dead_letters(day.expected.dead_letters, Duration::from_secs(30));
    let mut ids: Vec<&str> = letters.iter().map(|(_, id)| id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), day.expected.dead_letters, "{letters:?}");
    // The search index: replays after the kills overwrote documents, never added any.
    assert_indexed(&index, &scenario, &day.expected).await;
    assert!(
        scenario.rows("user_state_log where snapshot").await > 0,
        "the users' state was snapshotted"
    );
    assert_eq!(
        scenario
            .rows(
                "user_state_log l where seq < (select max(seq) from user_state_log s
                 where s.group_id = l.group_id and s.partition = l.partition and s.snapshot)"
            )
            .await,
        0,
        "a snapshot deletes the rows before it"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_search_index_delays_documents_never_the_metrics() {
    let scenario = Harness::new("search", &[("sku-1".to_owned(), "One".to_owned())], &[]).await;
    let start = start_minute();
    let index = scenario.search_index();
    // First nothing listens where the index should be.
    let nowhere = format!("127.0.0.1:{}", common::free_port());
    let p = scenario
        .start_ready("search-down", &as_env(&scenario.search_env(&nowhere)))
        .await;
    let t = start * 1000 + 30 * 60_000;
    let views: Vec<_> = (0..40).map(|u| view(u, "sku-1", t)).collect();
    scenario.produce(&views).await;
    // Checkpoints go on: every view is counted while the index is down.
    progress(&p, start, 39, Duration::from_secs(60)).await;
    let r = answered(&p, start).await;
    assert_eq!(r.events.product_view, 40);
    assert_eq!(
        scenario.rows("search_outbox").await,
        0,
        "the documents wait in Kafka, not in PostgreSQL"
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, metrics) = p.get("/metrics").await.expect("metrics");
        // The indexer's own group has committed nothing: all 40 records are its lag.
        let lag: f64 = metrics
            .lines()
            .filter(|l| l.starts_with("processor_search_lag_documents{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        let lag = Some(lag);
        if metrics.contains("processor_search_failures_total") && lag == Some(40.0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no failed attempt counted, or a lag other than 40 ({lag:?})\n{metrics}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut p = p;
    assert!(p.terminate(), "a clean exit with documents still queued");

    // With the index back, the queued documents arrive, and a replayed event adds none.
    let p = scenario
        .start_ready("search-up", &as_env(&scenario.search_env(&index.addr)))
        .await;
    assert_eq!(index.settled(40, Duration::from_secs(60)).await, 40);
    let mut replay = views[..5].to_vec();
    replay.push(view(40, "sku-1", t));
    scenario.produce(&replay).await;
    progress(&p, start, 45, Duration::from_secs(60)).await;
    assert_eq!(index.settled(41, Duration::from_secs(60)).await, 41);
    let doc = index
        .search(&serde_json::json!({"query": {"term": {"user_id": "u3"}}}))
        .await;
    let source = &doc["hits"]["hits"][0]["_source"];
    assert_eq!(source["product"]["name"], "One", "{doc}");
    assert_eq!(source["event_type"], "product_view");
    let (_, metrics) = p.get("/metrics").await.expect("metrics");
    assert!(
        metrics.contains("processor_search_documents_indexed_total 41"),
        "{metrics}"
    );
    // The five replayed records were answered "already there" and left alone.
    assert!(
        metrics.contains("processor_search_documents_existing_total 5"),
        "{metrics}"
    );

    // A clean stop commits what was indexed: the next instance reads on from there.
    let mut p = p;
    assert!(p.terminate());
    let p = scenario
        .start_ready("search-again", &as_env(&scenario.search_env(&index.addr)))
        .await;
    scenario.produce(&[view(41, "sku-1", t)]).await;
    assert_eq!(index.settled(42, Duration::from_secs(60)).await, 42);
    let (_, metrics) = p.get("/metrics").await.expect("metrics");
    assert!(
        metrics.contains("processor_search_documents_indexed_total 1"),
        "{metrics}"
    );
    let existing = metrics
        .lines()
        .find(|l| l.starts_with("processor_search_documents_existing_total "))
        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .unwrap_or(0.0);
    assert_eq!(existing, 0.0, "nothing was read again\n{metrics}");
}

#[tokio::test(flavor = "multi_thread")]
async fn two_instances_share_the_partitions_and_give_the_same_results() {
    let day = day(0x5EED_0003, 3_000);
    let scenario = Harness::storefront("pair").await;
    // Both index too: their indexers share the search group's partitions.
    let index = scenario.search_index();
    let search_env = scenario.search_env(&index.addr);
    // `a` first takes every partition; when `b` joins, the partitions that move must
    // leave each holding whole partition numbers (partition p of the four topics).
    let a = scenario.start_with("a", &as_env(&search_env));
    a.wait_ready(Duration::from_secs(60)).await;
    assigned_partitions(&a, 16, Duration::from_secs(30)).await;
    let b = scenario.start_with("b", &as_env(&search_env));
    b.wait_ready(Duration::from_secs(60)).await;
    let held_by_b = assigned_partitions(&b, 1, Duration::from_secs(30)).await;
    let held_by_a = assigned_partitions(&a, 0, Duration::from_secs(30)).await;
    assert_eq!(
        held_by_a + held_by_b,
        16,
        "4 topics of 4 partitions, each held once"
    );
    for p in [&a, &b] {
        let (_, metrics) = p.get("/metrics").await.expect("metrics");
        assert_eq!(
            metric_value(&metrics, "processor_split_partition_numbers"),
            0.0,
            "instance {} holds a partition number for some topics only\n{metrics}",
            p.addr
        );
    }
    scenario.produce(&day.records).await;
    let r = settle_day(&a, &day, Duration::from_secs(180)).await;
    assert_eq!(answered(&b, day.start_minute).await, r);
    assert_recommendations(&b, &day.expected).await;
    assert_indexed(&index, &scenario, &day.expected).await;
    for p in [&a, &b] {
        let (_, metrics) = p.get("/metrics").await.expect("metrics");
        let consumed: f64 = metrics
            .lines()
            .filter(|l| l.starts_with("processor_events_total"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        assert!(
            consumed > 0.0,
            "instance {} consumed nothing: partitions not shared\n{metrics}",
            p.addr
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_instance_paused_past_its_session_timeout_counts_nothing_twice() {
    let day = day(0x5EED_000A, 3_000);
    let scenario = Harness::storefront("zombie").await;
    let mut a = scenario.start("a");
    let mut b = scenario.start("b");
    a.wait_ready(Duration::from_secs(60)).await;
    b.wait_ready(Duration::from_secs(60)).await;
    // Let the group settle so that both own partitions before the stream starts.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let half = day.records.len() / 2;
    scenario.produce(&day.records[..half]).await;
    // Pause `a` while the two are counting: it may hold records read but not committed,
    // or be inside a checkpoint transaction.
    progress(&b, day.start_minute, 0, Duration::from_secs(60)).await;
    tokio::time::sleep(Duration::from_millis(
        storefront::Rng::new(0x5709).below(300),
    ))
    .await;
    a.signal("STOP");
    // The rest arrives while `a` is paused; past its session timeout (6 s) the group
    // hands its partitions to `b`. When `a` resumes, whatever it held is stale: its
    // commit must be refused (the offset fence) or never attempted (revoked first).
    scenario.produce(&day.records[half..]).await;
    tokio::time::sleep(Duration::from_secs(15)).await;
    a.signal("CONT");
    settle_day(&b, &day, Duration::from_secs(240)).await;
    assert_recommendations(&b, &day.expected).await;
    assert!(
        a.child.try_wait().expect("status").is_none(),
        "the resumed instance keeps running"
    );
    // Whatever `a` does after resuming leaves the results exact.
    tokio::time::sleep(Duration::from_secs(5)).await;
    settle_day(&a, &day, Duration::from_secs(60)).await;
    assert!(a.terminate(), "clean exit of the resumed instance");
    assert!(b.terminate(), "clean exit");
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_and_redis_connections_breaking_mid_stream_cause_retries_not_loss() {
    let day = day(0x5EED_0004, 3_000);
    let scenario = Harness::storefront("stores").await;
    let chunks: Vec<&[storefront::Record]> =
        day.records.chunks(day.records.len() / 4 + 1).collect();
    let mut p = scenario.start_ready("stores", &[]).await;
    let mut counted_before = 0;
    for (i, chunk) in chunks.iter().enumerate() {
        scenario.produce(chunk).await;
        if i == chunks.len() - 1 {
            break;
        }
        counted_before = progress(
            &p,
            day.start_minute,
            counted_before,
            Duration::from_secs(60),
        )
        .await;
        scenario.break_store_connections().await;
        assert!(
            p.child.try_wait().expect("status").is_none(),
            "the processor must not exit"
        );
    }
    settle_day(&p, &day, Duration::from_secs(240)).await;
    assert!(p.terminate(), "clean exit after the failures");
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_and_redis_servers_restarting_mid_stream_cause_retries_not_loss() {
    let day = day(0x5EED_0006, 3_000);
    let scenario = Harness::storefront_alone("restart").await;
    let chunks: Vec<&[storefront::Record]> =
        day.records.chunks(day.records.len() / 4 + 1).collect();
    let mut p = scenario.start_ready("restart", &[]).await;
    let mut counted_before = 0;
    // PostgreSQL, then Redis (which comes back empty: no persistence), then both.
    let restarts: [&[&str]; 3] = [&["postgres"], &["redis"], &["postgres", "redis"]];
    for (i, chunk) in chunks.iter().enumerate() {
        scenario.produce(chunk).await;
        if i == chunks.len() - 1 {
            break;
        }
        counted_before = progress(
            &p,
            day.start_minute,
            counted_before,
            Duration::from_secs(120),
        )
        .await;
        common::restart_services(restarts[i], Duration::from_secs(2));
        assert!(
            p.child.try_wait().expect("status").is_none(),
            "the processor must not exit"
        );
    }
    settle_day(&p, &day, Duration::from_secs(240)).await;
    let (_, metrics) = p.get("/metrics").await.expect("metrics");
    assert!(
        metrics.contains("processor_checkpoint_failures_total"),
        "the outage made checkpoints fail and be retried\n{metrics}"
    );
    assert!(p.terminate(), "clean exit after the restarts");
}

/// Every ordered product pair counted: one row per partner list entry.
const PAIRS: &str = "product_partners p cross join lateral unnest(p.partners, p.counts) as u(b, c)";

#[tokio::test(flavor = "multi_thread")]
async fn old_rollups_and_the_least_counted_product_pairs_are_pruned() {
    let scenario = Harness::new("prune", &[], &[]).await;
    let now_minute = (time::OffsetDateTime::now_utc().unix_timestamp() / 60) * 60;
    let old_ms = (now_minute - 180 * 60) * 1000;
    let recent_ms = (now_minute - 10 * 60) * 1000;
    // Three hours ago: one user views five products (ten co-view pairs each way, once).
    // Ten minutes ago: four users view sku-x then sku-y (that pair four times each way).
    let mut records: Vec<_> = ["a", "b", "c", "d", "e"]
        .iter()
        .enumerate()
        .map(|(i, product)| view(0, &format!("sku-{product}"), old_ms + i as i64 * 1000))
        .collect();
    for user in 1..=4 {
        records.push(view(user, "sku-x", recent_ms));
        records.push(view(user, "sku-y", recent_ms + 1000));
    }
    // A small bound and a short interval first, to see that nothing is pruned early...
    let p = scenario
        .start_ready(
            "prune-keep",
            &[
                ("PROCESSOR_PRUNING__INTERVAL_SECS", "3600"),
                ("PROCESSOR_PRUNING__ROLLUP_RETENTION_MINUTES", "120"),
            ],
        )
        .await;
    scenario.produce(&records).await;
    scenario.wait_committed(13, Duration::from_secs(60)).await;
    let old_minute = now_minute - 180 * 60;
    let old_rows = format!("rollup_counts where minute = {old_minute}");
    assert!(
        scenario.rows(&old_rows).await > 0,
        "the old minute is counted"
    );
    // The pair deltas are folded into the partner lists in the background.
    let deadline = Instant::now() + Duration::from_secs(30);
    while scenario.rows(PAIRS).await < 20 + 2 {
        assert!(Instant::now() < deadline, "the pairs were not folded");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(scenario.rows(PAIRS).await, 20 + 2);
    assert_eq!(
        scenario.rows("product_partners").await,
        7,
        "one list per product and kind: five old products, sku-x and sku-y"
    );
    assert_eq!(
        scenario
            .rows("product_partners where kind = 'view' and a = 'sku-a' and partners = '{sku-b,sku-c,sku-d,sku-e}' and counts = '{1,1,1,1}'")
            .await,
        1,
        "a list holds every partner, most counted first, ties by id"
    );
    assert_eq!(
        scenario.rows("pair_log").await,
        0,
        "every delta folded once"
    );
    let mut p = p;
    assert!(p.terminate());

    // ... then pruning every second: rollups older than 120 minutes go, of the product
    // pairs only the two most counted stay, and the user idle for three hours goes.
    let p = scenario
        .start_ready(
            "prune",
            &[
                ("PROCESSOR_PRUNING__INTERVAL_SECS", "1"),
                ("PROCESSOR_PRUNING__ROLLUP_RETENTION_MINUTES", "120"),
                ("PROCESSOR_PRUNING__MAX_PRODUCT_PAIRS", "2"),
                ("PROCESSOR_SESSIONS__RETENTION_MINUTES", "120"),
            ],
        )
        .await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while scenario.rows(&old_rows).await > 0
        || scenario.rows(PAIRS).await > 2
        || scenario.rows("user_activity").await > 4
    {
        assert!(Instant::now() < deadline, "nothing pruned");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let recent_rows = format!("rollup_counts where minute = {}", now_minute - 10 * 60);
    assert!(
        scenario.rows(&recent_rows).await > 0,
        "recent minutes are kept"
    );
    assert_eq!(
        scenario
            .rows(&format!("{PAIRS} where c = 4 and a in ('sku-x', 'sku-y')"))
            .await,
        2,
        "the most counted pairs are kept"
    );
    assert_eq!(
        scenario.rows("product_partners").await,
        2,
        "lists left empty are deleted"
    );
    assert_eq!(
        scenario
            .rows("user_activity where member in ('u1', 'u2', 'u3', 'u4')")
            .await,
        4,
        "users active within the sessions' retention are kept; u0, three hours idle, is not"
    );
    let (_, metrics) = p.get("/metrics").await.expect("metrics");
    assert!(
        metrics.contains("processor_pruned_rows_total{table=\"user_activity\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("processor_pruned_rows_total{table=\"rollups\"}"),
        "{metrics}"
    );
}

/// Counts of a few views: waits until `views + late + duplicates` are counted, then
/// checks each.
async fn assert_counted(p: &Processor, start: i64, views: i64, late: i64, duplicates: i64) {
    let e = Expected {
        events: [views, 0, 0, 0],
        late_events: late,
        duplicates,
        ..Expected::default()
    };
    let r = settled(p, start, &e, Duration::from_secs(60)).await;
    assert_eq!(
        (r.events.product_view, r.late_events, r.duplicates),
        (views, late, duplicates),
        "(views, late, duplicates)"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_resend_after_a_kill_9_is_a_duplicate_until_its_window_has_passed() {
    let scenario = Harness::new("resend", &[("sku-1".to_owned(), "One".to_owned())], &[]).await;
    let start = start_minute();
    let env = [
        ("PROCESSOR_DEDUP__WINDOW_MINUTES", "5"),
        ("PROCESSOR_PRUNING__INTERVAL_SECS", "1"),
    ];
    let t0 = (start + 10 * 60) * 1000;
    let original = view(1, "sku-1", t0);
    let mut p = scenario.start_ready("resend-0", &env).await;
    scenario.produce(std::slice::from_ref(&original)).await;
    scenario.wait_committed(1, Duration::from_secs(60)).await;
    p.kill9();
    // The same record again (the agent's disk buffer delivering again after a crash):
    // the new process knows its id from the committed log only.
    scenario.produce(std::slice::from_ref(&original)).await;
    let mut p = scenario.start_ready("resend-1", &env).await;
    assert_counted(&p, start, 1, 0, 1).await;
    assert_eq!(scenario.rows("dedup_log").await, 1, "one id committed");

    // Twenty minutes later in the same partition (the same user): the original's minute
    // leaves the 5-minute window, and its log row is pruned.
    scenario
        .produce(&[view(1, "sku-1", t0 + 20 * 60_000)])
        .await;
    assert_counted(&p, start, 2, 0, 1).await;
    let old_rows = format!("dedup_log where max_minute < {}", t0 / 1000 + 15 * 60);
    let deadline = Instant::now() + Duration::from_secs(30);
    while scenario.rows(&old_rows).await > 0 {
        assert!(Instant::now() < deadline, "the old log row was not pruned");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(scenario.rows("dedup_log").await, 1, "the newer row stays");
    // A resend now is not recognised any more: it is counted as what it then is, an
    // event far behind the watermark (late), not as a duplicate.
    scenario.produce(std::slice::from_ref(&original)).await;
    assert_counted(&p, start, 2, 1, 1).await;
    let (_, metrics) = p.get("/metrics").await.expect("metrics");
    assert!(metrics.contains("processor_dedup_ids"), "{metrics}");
    assert!(p.terminate());
}

/// The value of the metric series `series` (name and labels) `p` exposes, 0 if absent.
async fn scraped(p: &Processor, series: &str) -> f64 {
    let (_, metrics) = p.get("/metrics").await.expect("metrics");
    metric_value(&metrics, series)
}

#[tokio::test(flavor = "multi_thread")]
async fn users_committed_by_another_instance_fence_the_state_in_memory_which_is_loaded_again() {
    let scenario = Harness::new(
        "state_fence",
        &[("sku-1".to_owned(), "One".to_owned())],
        &[],
    )
    .await;
    let start = start_minute();
    let t0 = (start + 10 * 60) * 1000;
    let p = scenario.start_ready("state_fence", &[]).await;
    scenario.produce(&[view(1, "sku-1", t0)]).await;
    scenario.wait_committed(1, Duration::from_secs(60)).await;
    let loads = scraped(&p, "processor_user_state_loads_total").await;
    assert!(loads >= 1.0, "u1's partition number was loaded");

    // Another instance (one that held u1's partition number for a while) commits an
    // event of u1 60 s later: its log row and the number's sequence move. This
    // instance's state in memory says u1 was last seen at t0: used as it is, an event
    // at t0 + 70 s would start a second session (the tests' timeout is 30 s); loaded
    // again, it continues the session.
    let state = scenario
        .database()
        .await
        .query_one("select partition, seq from partition_state", &[])
        .await
        .expect("one partition number committed");
    let (number, seq): (i32, i64) = (state.get(0), state.get(1));
    let mut row = processor::user_state::codec::Encoder::default();
    row.push("u1", &[t0, t0 + 60_000], &["sku-1".to_owned()], &[]);
    let hex: String = row.finish().iter().map(|b| format!("{b:02x}")).collect();
    scenario
        .execute(&format!(
            "insert into user_state_log (group_id, partition, seq, snapshot, states)
                 select group_id, partition, seq + 1, false, '\\x{hex}'
                 from partition_state where partition = {number};
             update partition_state set seq = seq + 1 where partition = {number}"
        ))
        .await;
    scenario.produce(&[view(1, "sku-1", t0 + 70_000)]).await;
    scenario.wait_committed(2, Duration::from_secs(60)).await;
    let r = settled(
        &p,
        start,
        &Expected {
            events: [2, 0, 0, 0],
            ..Expected::default()
        },
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(
        r.sessions, 1,
        "the session went on from the other instance's state"
    );
    // Found out by the sequence fence of the next checkpoint, or by the copy of recent
    // products before it, which checks the sequences too.
    let reloads = scraped(&p, "processor_user_state_loads_total").await;
    assert!(reloads > loads, "the stale state was loaded again");
    assert_eq!(
        scenario
            .rows(&format!(
                "partition_state where partition = {number} and seq = {}",
                seq + 2
            ))
            .await,
        1,
        "the checkpoint moved the sequence on from the other instance's"
    );

    // Nobody else in between now: the next event goes on from memory, unfenced.
    scenario.produce(&[view(1, "sku-1", t0 + 80_000)]).await;
    scenario.wait_committed(3, Duration::from_secs(60)).await;
    let r = settled(
        &p,
        start,
        &Expected {
            events: [3, 0, 0, 0],
            ..Expected::default()
        },
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(r.sessions, 1);
    assert_eq!(
        scraped(&p, "processor_user_state_loads_total").await,
        reloads,
        "nothing loaded again"
    );
}

fn view(user: usize, product: &str, time_ms: i64) -> storefront::Record {
    let time = processor::report::rfc3339(time_ms / 1000);
    storefront::Record {
        topic: 0,
        key: format!("u{user}"),
        value: serde_json::json!({"user_id": format!("u{user}"), "product_id": product, "timestamp": time}).to_string().into_bytes(),
        headers: vec![
            ("event_type".into(), "product_view".into()),
            ("event_id".into(), uuid::Uuid::now_v7().to_string()),
        ],
    }
}

/// `processor_commit_latency_seconds` measures from when the agent took each event (its
/// `received_at` header) to the commit that counted it.
#[tokio::test(flavor = "multi_thread")]
async fn commit_latency_counts_from_the_agents_receipt() {
    let scenario = Harness::new("latency", &[("sku-1".to_owned(), "One".to_owned())], &[]).await;
    let start = start_minute();
    let p = scenario.start_ready("latency", &[]).await;
    let t = start * 1000 + 30 * 60_000;
    // Taken by an agent 5 s ago.
    let taken = processor::report::rfc3339(time::OffsetDateTime::now_utc().unix_timestamp() - 5);
    let records: Vec<storefront::Record> = (0..10)
        .map(|u| {
            let mut record = view(u, "sku-1", t);
            record.headers.push(("received_at".into(), taken.clone()));
            record
        })
        .collect();
    scenario.produce(&records).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let metrics = loop {
        let (_, metrics) = p.get("/metrics").await.expect("metrics");
        if metrics.contains("processor_commit_latency_seconds_count 10") {
            break metrics;
        }
        assert!(Instant::now() < deadline, "{metrics}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let value = |name: &str| {
        metrics
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .unwrap_or_else(|| panic!("{name} in {metrics}"))
    };
    let median = value("processor_commit_latency_seconds{quantile=\"0.5\"}");
    assert!((5.0..60.0).contains(&median), "{median}");
    assert!(value("processor_commit_latency_seconds_sum") >= 50.0);
}

/// While a checkpoint waits for PostgreSQL, the next batch is read, up to
/// `checkpoint.max_pending_events` and no further; once the checkpoint can go on, both
/// batches and the rest are committed, each event once.
#[tokio::test(flavor = "multi_thread")]
async fn reading_goes_on_during_a_checkpoint_up_to_one_more_batch() {
    let scenario = Harness::new("overlap", &[("sku-1".to_owned(), "One".to_owned())], &[]).await;
    let start = start_minute();
    let t = start * 1000 + 30 * 60_000;
    let p = scenario
        .start_ready(
            "overlap",
            &[("PROCESSOR_CHECKPOINT__MAX_PENDING_EVENTS", "100")],
        )
        .await;
    scenario.produce(&[view(0, "sku-1", t)]).await;
    scenario.wait_committed(1, Duration::from_secs(60)).await;

    // Checkpoints now wait at their offset fence until the lock goes.
    let lock = scenario.database().await;
    lock.batch_execute("begin; lock table consumer_offsets in exclusive mode")
        .await
        .expect("lock");
    let records: Vec<storefront::Record> = (0..1000)
        .map(|i| view(i % 50, "sku-1", t + i as i64))
        .collect();
    scenario.produce(&records).await;
    let read = || async {
        let (_, metrics) = p.get("/metrics").await.expect("metrics");
        metric_value(&metrics, "processor_records_read_total")
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    // The batch in flight (at most 100) and more than a whole batch after it.
    while read().await < 1.0 + 101.0 {
        assert!(
            Instant::now() < deadline,
            "reading stopped during the checkpoint: {} read",
            read().await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let held = read().await;
    assert!(
        held <= 1.0 + 200.0,
        "{held} read: more than the batch in flight and one more"
    );
    assert_eq!(
        scenario.committed_records().await,
        1,
        "nothing committed while the offsets are locked"
    );

    lock.batch_execute("rollback").await.expect("unlock");
    scenario
        .wait_committed(1001, Duration::from_secs(120))
        .await;
    settled(
        &p,
        start,
        &Expected {
            events: [1001, 0, 0, 0],
            ..Expected::default()
        },
        Duration::from_secs(60),
    )
    .await;
}

/// The committed records and rows of the partitions whose number has `parity`.
async fn committed_by_parity(scenario: &Harness, parity: i32) -> (i64, i64) {
    scenario
        .database()
        .await
        .query_one(
            "select coalesce(sum(next_offset), 0)::bigint, count(*) from consumer_offsets
             where partition % 2 = $1",
            &[&parity],
        )
        .await
        .map(|row| (row.get::<_, i64>(0), row.get::<_, i64>(1)))
        .expect("committed offsets")
}

/// Partition groups checkpoint side by side: while group 0's checkpoints wait at their
/// offset fence (its partitions' rows locked), group 1 goes on committing its partitions;
/// once the lock goes, everything is counted once.
#[tokio::test(flavor = "multi_thread")]
async fn a_partition_group_commits_while_another_waits() {
    let scenario = Harness::new("groups", &[("sku-1".to_owned(), "One".to_owned())], &[]).await;
    let start = start_minute();
    let t = start * 1000 + 30 * 60_000;
    let p = scenario
        .start_ready("groups", &[("PROCESSOR_CHECKPOINT__GROUPS", "2")])
        .await;
    // Enough users that every partition of the topic has a record and a row.
    let first: Vec<storefront::Record> = (0..200).map(|u| view(u, "sku-1", t)).collect();
    scenario.produce(&first).await;
    scenario.wait_committed(200, Duration::from_secs(60)).await;
    let (even_before, even_rows) = committed_by_parity(&scenario, 0).await;
    let (odd_before, odd_rows) = committed_by_parity(&scenario, 1).await;
    assert!(
        even_rows > 0 && odd_rows > 0,
        "{even_rows} even and {odd_rows} odd rows"
    );

    let lock = scenario.database().await;
    lock.batch_execute("begin; select * from consumer_offsets where partition % 2 = 0 for update")
        .await
        .expect("lock");
    let more: Vec<storefront::Record> = (0..1000)
        .map(|i| view(i % 200, "sku-1", t + 1 + i as i64))
        .collect();
    scenario.produce(&more).await;
    // Group 1 commits its share (about half) while group 0 waits.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (odd, _) = committed_by_parity(&scenario, 1).await;
        if odd - odd_before >= 300 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "group 1 committed {} records while group 0 waited",
            odd - odd_before
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (even, _) = committed_by_parity(&scenario, 0).await;
    assert_eq!(even, even_before, "group 0 committed past its lock");

    lock.batch_execute("rollback").await.expect("unlock");
    scenario
        .wait_committed(1200, Duration::from_secs(120))
        .await;
    settled(
        &p,
        start,
        &Expected {
            events: [1200, 0, 0, 0],
            ..Expected::default()
        },
        Duration::from_secs(60),
    )
    .await;
}

/// The assignments the agent made for events that named no experiments (the
/// `experiments` header) are counted per variant; an event's own experiments win over
/// the header; a header no agent writes is a dead letter naming it.
#[tokio::test(flavor = "multi_thread")]
async fn assignments_in_the_experiments_header_are_counted_per_variant() {
    let scenario = Harness::new("assigned", &[("sku-1".to_owned(), "One".to_owned())], &[]).await;
    let start = start_minute();
    let p = scenario.start_ready("assigned", &[]).await;
    let t = start * 1000 + 30 * 60_000;
    let with_header = |user: usize, header: &str| {
        let mut record = view(user, "sku-1", t);
        record
            .headers
            .push(("experiments".into(), header.to_owned()));
        record
    };
    let mut own = with_header(3, "checkout_v2=control");
    own.value = serde_json::json!({"user_id": "u3", "product_id": "sku-1",
        "timestamp": processor::report::rfc3339(t / 1000),
        "context": {"experiments": {"checkout_v2": "treatment"}}})
    .to_string()
    .into_bytes();
    let records = vec![
        with_header(0, "checkout_v2=control,search_ranking=learned"),
        with_header(1, "checkout_v2=control,search_ranking=bm25"),
        with_header(2, "checkout_v2=treatment,search_ranking=bm25"),
        own,
        with_header(4, "checkout_v2"),
    ];
    scenario.produce(&records).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let r = loop {
        if let Some(r) = analytics(&p, start).await {
            if r.events.product_view >= 4 {
                break r;
            }
        }
        assert!(Instant::now() < deadline, "the views are not counted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(r.events.product_view, 4, "the bad header's view is not");
    let users = |flag: &str, variant: &str| r.experiments[flag][variant].users;
    assert_eq!(users("checkout_v2", "control"), 2);
    assert_eq!(
        users("checkout_v2", "treatment"),
        2,
        "u2's header and u3's own"
    );
    assert_eq!(users("search_ranking", "bm25"), 2);
    assert_eq!(users("search_ranking", "learned"), 1);
    let letters = testkit::consume(
        &scenario.services.kafka,
        &scenario.topics[4],
        1,
        Duration::from_secs(30),
    );
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].header("error_code"), "unstorable");
    assert!(
        letters[0]
            .header("error_message")
            .contains("experiments header"),
        "{:?}",
        letters[0].headers
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn catalog_changes_are_picked_up_and_silent_clients_disconnected() {
    let scenario = Harness::new("catalog", &[("sku-old".to_owned(), "Old".to_owned())], &[]).await;
    let start = start_minute();
    let p = scenario
        .start_ready(
            "catalog",
            &[
                ("PROCESSOR_CATALOG__REFRESH_SECS", "1"),
                ("PROCESSOR_API__HEADER_READ_TIMEOUT_MS", "500"),
            ],
        )
        .await;
    // A client that never sends its request is disconnected.
    let mut silent = tokio::net::TcpStream::connect(&p.addr)
        .await
        .expect("connect");
    let mut buf = [0u8; 256];
    let closed = tokio::time::timeout(
        Duration::from_secs(5),
        tokio::io::AsyncReadExt::read(&mut silent, &mut buf),
    )
    .await;
    assert!(
        closed.is_ok(),
        "a silent connection is closed after the header timeout"
    );
    let t = start * 1000 + 30 * 60_000;
    let first: Vec<_> = (0..40)
        .map(|u| {
            view(
                u,
                if u.is_multiple_of(4) {
                    "sku-old"
                } else {
                    "sku-new"
                },
                t,
            )
        })
        .collect();
    scenario.produce(&first).await;
    progress(&p, start, 39, Duration::from_secs(60)).await;
    let r = answered(&p, start).await;
    assert_eq!((r.events.product_view, r.catalog_misses), (40, 30));

    scenario.add_product("sku-new").await;
    // The cache lives one second; give it time to be reloaded.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let second: Vec<_> = (0..40).map(|u| view(u, "sku-new", t + 1_000)).collect();
    scenario.produce(&second).await;
    progress(&p, start, 79, Duration::from_secs(60)).await;
    let r = answered(&p, start).await;
    assert_eq!(
        (r.events.product_view, r.catalog_misses),
        (80, 30),
        "views of the new product are no longer misses"
    );
}

/// Records a foreign producer could write, mixed into every topic with a clean day and
/// heavy valid records: the clean day's numbers stay exact, the processor keeps running,
/// and each bad record is dead-lettered exactly once, also across a restart.
#[tokio::test(flavor = "multi_thread")]
async fn hostile_records_are_dead_lettered_once_and_the_rest_is_counted_exactly() {
    let mut day = day(0x5EED_0013, 1_000);
    // After the day (40 minutes), so that no partition's watermark makes them late.
    let at = day.start_minute * 1000 + 45 * 60_000;
    let time = processor::report::rfc3339(at / 1000);
    let mut cases = testkit::hostile::records(&time);
    use serde_json::json as j;
    // Records the processor must count although they are heavy: an order of 1,000
    // distinct products (its pairs are bounded), 3,200 experiment pairs, a header that
    // is not UTF-8.
    let mut rng = storefront::Rng::new(13);
    let e = &mut day.expected;
    let items: Vec<serde_json::Value> = (0..1_000)
        .map(|i| j!({"product_id": format!("bulk-{i:04}"), "quantity": 1, "price": 0.01}))
        .collect();
    let mut valid = vec![storefront::counted_record(
        e,
        &mut rng,
        2,
        "heavy-buyer",
        at,
        j!({"order_id": "bulk", "items": items, "total": 10.0, "currency": "EUR"}),
    )];
    for i in 0..50 {
        let flags: serde_json::Map<String, serde_json::Value> = (0..64)
            .map(|f| (format!("flood_{i}_{f}"), j!("v")))
            .collect();
        valid.push(storefront::counted_record(
            e,
            &mut rng,
            0,
            &format!("flooder-{i}"),
            at + i,
            j!({"product_id": storefront::product_id(1), "context": {"experiments": flags}}),
        ));
    }
    valid.push(storefront::counted_record(
        e,
        &mut rng,
        3,
        "odd-header",
        at,
        j!({"query": "tent", "results_count": 3}),
    ));
    // One event id sent by two storefronts: de-duplication is per sender, so another
    // storefront's (predictable) id cannot suppress this one's event; both count.
    let first = storefront::counted_record(
        e,
        &mut rng,
        0,
        "shop-a-user",
        at,
        j!({"product_id": "sku-0002"}),
    );
    let mut second = storefront::counted_record(
        e,
        &mut rng,
        0,
        "shop-b-user",
        at,
        j!({"product_id": "sku-0002"}),
    );
    let id = |r: &storefront::Record| {
        r.headers
            .iter()
            .find(|(k, _)| k == "event_id")
            .map(|(_, v)| v.clone())
    };
    for (k, v) in second.headers.iter_mut() {
        match k.as_str() {
            "event_id" => *v = id(&first).expect("an id"),
            "source" => *v = "another-storefront".to_owned(),
            _ => {}
        }
    }
    valid.push(first);
    valid.push(second);
    let clean_letters = e.dead_letters;
    let hostile_count = cases.len();
    let scenario = Harness::storefront("hostile").await;
    // Hostile records first, mixed into every topic, then the clean day with the heavy
    // valid records, then the rest of the hostile ones again interleaved per topic.
    let second_half = cases.split_off(hostile_count / 2);
    scenario
        .produce_raw(&cases.iter().map(|h| h.record.clone()).collect::<Vec<_>>())
        .await;
    scenario.produce(&day.records).await;
    scenario.produce(&valid).await;
    // The last valid record again (same topic and key, as a resend comes) with a header
    // that is not UTF-8: counted as a duplicate.
    let mut invalid_utf8 = testkit::RawRecord {
        topic: 0,
        key: Some(b"shop-b-user".to_vec()),
        value: None,
        headers: Vec::new(),
    };
    invalid_utf8.value = Some(valid[valid.len() - 1].value.clone());
    for (k, v) in &valid[valid.len() - 1].headers {
        invalid_utf8
            .headers
            .push((k.clone(), Some(v.clone().into_bytes())));
    }
    invalid_utf8
        .headers
        .push(("trace".into(), Some(b"\xff\xfe\x00".to_vec())));
    day.expected.duplicates += 1;
    scenario.produce_raw(&[invalid_utf8]).await;
    scenario
        .produce_raw(
            &second_half
                .iter()
                .map(|h| h.record.clone())
                .collect::<Vec<_>>(),
        )
        .await;
    cases.extend(second_half);

    let mut p = scenario.start_ready("hostile", &[]).await;
    settle_day(&p, &day, Duration::from_secs(180)).await;

    let want = clean_letters + hostile_count;
    let letters = testkit::consume(
        &scenario.services.kafka,
        &scenario.topics[4],
        want,
        Duration::from_secs(60),
    );
    assert_eq!(letters.len(), want, "each record dead-lettered once");
    let mut seen = std::collections::HashSet::new();
    for letter in &letters {
        let at = (
            letter.header("source_topic").to_owned(),
            letter.header("source_partition").to_owned(),
            letter.header("source_offset").to_owned(),
        );
        assert!(seen.insert(at.clone()), "{at:?} dead-lettered twice");
    }
    for (i, record) in cases.iter().enumerate() {
        let marker = format!("hostile-{i}");
        let letter = letters
            .iter()
            .find(|l| l.header("marker") == marker)
            .unwrap_or_else(|| panic!("{marker} not dead-lettered: {record:?}"));
        assert_eq!(
            letter.header("error_code"),
            record.reason,
            "{marker}: {}",
            letter.header("error_message")
        );
        assert!(!letter.header("error_message").is_empty());
        assert_eq!(
            Some(letter.payload.as_slice()),
            record.record.value.as_deref().or(Some(&[][..])),
            "{marker}: the value as it was read"
        );
    }
    assert!(p.get("/health/ready").await.expect("answer").0 == 200);
    assert!(p.terminate(), "SIGTERM exits cleanly");
    // A restart reads nothing again: no dead letter is produced twice.
    let mut p = scenario.start_ready("hostile-restarted", &[]).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let again = testkit::consume(
        &scenario.services.kafka,
        &scenario.topics[4],
        want,
        Duration::from_secs(20),
    );
    assert_eq!(again.len(), want, "no dead letter again after a restart");
    assert!(p.terminate());
}

/// A record the content check lets through but the database refuses is found by
/// bisection inside the checkpoint, dead-lettered once as `unstorable` with the
/// SQLSTATE, and everything else is counted.
#[tokio::test(flavor = "multi_thread")]
async fn a_record_the_database_refuses_is_isolated_and_the_rest_is_counted() {
    let mut day = day(0x5EED_0014, 300);
    let scenario = Harness::storefront("refused").await;
    // A constraint only PostgreSQL knows about stands for a class of values nobody has
    // found yet.
    scenario
        .execute("alter table rollup_tops add constraint no_poison check (key <> 'poison')")
        .await;
    let at = day.start_minute * 1000 + 45 * 60_000;
    let time = processor::report::rfc3339(at / 1000);
    let poison: Vec<testkit::RawRecord> = (0..3)
        .map(|i| testkit::RawRecord {
            topic: 0,
            key: Some(format!("poisoner-{i}").into_bytes()),
            value: Some(
                serde_json::to_vec(&serde_json::json!({"user_id": format!("poisoner-{i}"), "product_id": "poison", "timestamp": time}))
                    .expect("json"),
            ),
            headers: vec![
                ("event_type".into(), Some(b"product_view".to_vec())),
                ("marker".into(), Some(format!("poison-{i}").into_bytes())),
            ],
        })
        .collect();
    scenario
        .produce(&day.records[..day.records.len() / 2])
        .await;
    scenario.produce_raw(&poison).await;
    // Views with experiments the configuration does not list: counted, their flags not.
    let mut rng = storefront::Rng::new(14);
    let flooded: Vec<storefront::Record> = (0..20)
        .map(|i| {
            let flags: serde_json::Map<String, serde_json::Value> = (0..10)
                .map(|f| (format!("unlisted_{i}_{f}"), serde_json::json!("v")))
                .collect();
            storefront::counted_record(
                &mut day.expected,
                &mut rng,
                0,
                &format!("flooder-{i}"),
                at + i,
                serde_json::json!({"product_id": storefront::product_id(2), "context": {"experiments": flags}}),
            )
        })
        .collect();
    scenario
        .produce(&day.records[day.records.len() / 2..])
        .await;
    // After the day: they move their partitions' watermarks past it.
    scenario.produce(&flooded).await;
    let mut p = scenario
        .start_ready(
            "refused",
            &[("PROCESSOR_EXPERIMENTS__FLAGS", r#"["checkout_v2"]"#)],
        )
        .await;
    let r = settle_day(&p, &day, Duration::from_secs(180)).await;
    assert_eq!(r.experiment_pairs, 2, "only the listed flag's variants");
    day.expected.dead_letters += poison.len();
    let letters = scenario.dead_letters(day.expected.dead_letters, Duration::from_secs(60));
    assert_eq!(letters.len(), day.expected.dead_letters, "{letters:?}");
    let raw = testkit::consume(
        &scenario.services.kafka,
        &scenario.topics[4],
        day.expected.dead_letters,
        Duration::from_secs(10),
    );
    for i in 0..poison.len() {
        let letter = raw
            .iter()
            .find(|l| l.header("marker") == format!("poison-{i}"))
            .expect("poison dead-lettered");
        assert_eq!(letter.header("error_code"), "unstorable");
        assert!(
            letter.header("error_message").contains("SQLSTATE 23514"),
            "{}",
            letter.header("error_message")
        );
    }
    assert!(p.terminate());
}

/// A failure no record explains (here a table the processor needs is gone) stops the
/// processor with the SQLSTATE in its log instead of retrying for ever or
/// dead-lettering good records.
#[tokio::test(flavor = "multi_thread")]
async fn a_schema_error_stops_the_processor_with_the_sqlstate() {
    let day = storefront::day(0x5EED_0015, 50, start_minute());
    let scenario = Harness::storefront("halt").await;
    scenario
        .execute("drop table rollup_member_blocks cascade")
        .await;
    scenario.produce(&day.records).await;
    let mut p = scenario.start("halt");
    let status = p
        .wait_exit(Duration::from_secs(120))
        .expect("the processor stops");
    assert!(!status.success(), "exits with an error");
    let log = std::fs::read_to_string(scenario.log_dir.join("halt.log")).expect("log");
    assert!(log.contains("SQLSTATE 42P01"), "{log}");
    assert_eq!(
        scenario.rows("dead_letter_outbox").await,
        0,
        "no record blamed"
    );
}

/// What the fault-injecting index of the split test saw.
#[derive(Default)]
struct RefusingIndex {
    /// Ids of the documents it indexed.
    indexed: std::collections::HashSet<String>,
    /// Bulk requests it refused as too large.
    refused: usize,
    /// Bulk requests still to answer 401, as after a credential change not yet
    /// rolled out.
    unauthorized: usize,
}

/// An index that answers `_bulk` requests over `limit` bytes with 413, as OpenSearch does
/// past its `http.max_content_length`, and indexes the others (a fault the real server
/// only shows with 100 MB requests).
async fn serve_refusing_index(
    listener: tokio::net::TcpListener,
    limit: usize,
    seen: std::sync::Arc<std::sync::Mutex<RefusingIndex>>,
) {
    use http_body_util::{BodyExt, Full};
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            return;
        };
        let seen = seen.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(
                move |request: hyper::Request<hyper::body::Incoming>| {
                    let seen = seen.clone();
                    async move {
                        let bulk = request.uri().path().ends_with("/_bulk");
                        let gzip = request
                            .headers()
                            .get("content-encoding")
                            .is_some_and(|v| v == "gzip");
                        let mut body = request.into_body().collect().await?.to_bytes().to_vec();
                        if gzip {
                            // As the index does: the limit is on the documents' bytes.
                            let mut plain = Vec::new();
                            std::io::Read::read_to_end(
                                &mut flate2::read::GzDecoder::new(body.as_slice()),
                                &mut plain,
                            )
                            .expect("a gzip body");
                            body = plain;
                        }
                        let unauthorized = bulk && {
                            let mut seen = seen.lock().expect("lock");
                            let left = seen.unauthorized;
                            seen.unauthorized = left.saturating_sub(1);
                            left > 0
                        };
                        let answer = if !bulk {
                            (200, "{}".to_owned())
                        } else if unauthorized {
                            (401, "{\"error\":\"unauthorized\"}".to_owned())
                        } else if body.len() > limit {
                            seen.lock().expect("lock").refused += 1;
                            (413, String::new())
                        } else {
                            let mut items = Vec::new();
                            for line in body.split(|b| *b == b'\n').step_by(2) {
                                let Ok(action) = serde_json::from_slice::<serde_json::Value>(line)
                                else {
                                    continue;
                                };
                                if let Some(id) = action["create"]["_id"].as_str() {
                                    seen.lock().expect("lock").indexed.insert(id.to_owned());
                                    items.push(serde_json::json!({"create": {"status": 201}}));
                                }
                            }
                            (
                                200,
                                serde_json::json!({"errors": false, "items": items}).to_string(),
                            )
                        };
                        let mut response =
                            hyper::Response::new(Full::new(hyper::body::Bytes::from(answer.1)));
                        *response.status_mut() =
                            hyper::StatusCode::from_u16(answer.0).expect("status");
                        Ok::<_, hyper::Error>(response)
                    }
                },
            );
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}

/// A bulk request the index refuses as a whole (413) is split in halves until each part
/// is taken; a document the index refuses even alone is dropped and counted. Nothing
/// blocks the queue and the analytics stay exact. A 401 (credentials changed) is the
/// index's failure, not the documents': it is retried and drops nothing.
#[tokio::test(flavor = "multi_thread")]
async fn bulk_requests_the_index_refuses_as_too_large_are_split() {
    let mut day = day(0x5EED_0016, 300);
    let scenario = Harness::storefront("split").await;
    // An order whose document alone is larger than the index takes.
    let mut rng = storefront::Rng::new(16);
    let items: Vec<serde_json::Value> = (0..1_000)
        .map(|i| serde_json::json!({"product_id": format!("big-order-item-{i:04}"), "quantity": 1, "price": 1.0}))
        .collect();
    let at = day.start_minute * 1000 + 45 * 60_000;
    let big = storefront::counted_record(
        &mut day.expected,
        &mut rng,
        2,
        "big-buyer",
        at,
        serde_json::json!({"order_id": "big", "items": items, "total": 1000.0, "currency": "EUR"}),
    );
    let big_id = big
        .headers
        .iter()
        .find(|(k, _)| k == "event_id")
        .map(|(_, v)| v.clone())
        .expect("an id");
    scenario.produce(&day.records).await;
    scenario.produce(&[big]).await;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address").to_string();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(RefusingIndex {
        unauthorized: 12,
        ..RefusingIndex::default()
    }));
    tokio::spawn(serve_refusing_index(listener, 32 * 1024, seen.clone()));
    let env = scenario.search_env(&addr);
    let mut p = scenario.start_ready("split", &as_env(&env)).await;
    settle_day(&p, &day, Duration::from_secs(180)).await;

    let want = (day.expected.events.iter().sum::<i64>() + day.expected.late_events) as usize;
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen.lock().expect("lock").indexed.len() < want - 1 {
        assert!(
            Instant::now() < deadline,
            "documents missing from the index"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let seen = std::mem::take(&mut *seen.lock().expect("lock"));
    assert_eq!(seen.unauthorized, 0, "the 401 answers were given");
    assert!(
        seen.refused > 1,
        "requests were refused and split: {}",
        seen.refused
    );
    assert_eq!(
        seen.indexed.len(),
        want - 1,
        "every document but the one too large alone"
    );
    assert!(
        !seen.indexed.contains(&big_id),
        "the refused document is dropped"
    );
    let (_, metrics) = p.get("/metrics").await.expect("metrics");
    assert!(
        metrics.contains("processor_search_documents_failed_total{reason=\"refused_request\"} 1"),
        "{metrics}"
    );
    assert!(p.terminate());
}

/// What the agent's Segment and GA4 endpoints put into Kafka for `mapped`: the
/// e-commerce events as the agent writes them (validated; key `user_id`, else
/// `anonymous_id`; the `event_type` and `event_id` headers).
fn agent_records(
    mapped: Vec<Result<edge_agent::intake::Mapped, edge_agent::intake::MapError>>,
) -> Vec<storefront::Record> {
    use edge_agent::intake::Mapped;
    use ingest_core::{EventKind, Validator};
    let validator = Validator::default();
    let mut records = Vec::new();
    for message in mapped {
        match message.expect("translated") {
            Mapped::Event { kind, json } => {
                let event = validator
                    .validate(Some(kind), json.clone().into())
                    .unwrap_or_else(|e| {
                        panic!("{kind}: {e:?} in {}", String::from_utf8_lossy(&json))
                    });
                let value: serde_json::Value = serde_json::from_slice(&json).expect("JSON");
                let key = value["user_id"]
                    .as_str()
                    .or(value["anonymous_id"].as_str())
                    .expect("an identity")
                    .to_owned();
                records.push(storefront::Record {
                    topic: EventKind::ALL
                        .iter()
                        .position(|k| *k == kind)
                        .expect("a kind"),
                    key,
                    value: json,
                    headers: vec![
                        ("event_type".into(), kind.as_str().into()),
                        ("event_id".into(), event.event_id().to_string()),
                    ],
                });
            }
            // The custom-events topic, which the processor does not read.
            Mapped::Custom(_) => {}
        }
    }
    records
}

#[tokio::test(flavor = "multi_thread")]
async fn segment_and_ga4_traffic_is_counted_like_native_events() {
    let catalog = storefront::catalog();
    let (a, b, c) = (&catalog[0].0, &catalog[1].0, &catalog[2].0);
    let scenario = Harness::storefront("intake").await;
    let start = start_minute();
    let at = processor::report::rfc3339(start + 10 * 60);
    let message = |kind: &str, event: &str, user: &str, id: u32, properties: String| {
        format!(
            r#"{{"type":"{kind}","event":"{event}","userId":"{user}","messageId":"node-{id}","timestamp":"{at}","properties":{properties},"context":{{"library":{{"name":"@segment/analytics-node","version":"2.1.3"}}}}}}"#
        )
    };
    let batch = format!(
        r#"{{"batch":[{}],"sentAt":"{at}"}}"#,
        [
            message("track", "Product Viewed", "seg-1", 1, format!(r#"{{"product_id":"{a}","price":10,"currency":"EUR"}}"#)),
            message("track", "Product Viewed", "seg-1", 2, format!(r#"{{"product_id":"{a}","price":10,"currency":"EUR"}}"#)),
            message("track", "Product Viewed", "seg-2", 3, format!(r#"{{"product_id":"{b}","price":5,"currency":"EUR"}}"#)),
            message("track", "Product Added", "seg-1", 4, format!(r#"{{"product_id":"{a}","quantity":2,"price":10,"currency":"EUR"}}"#)),
            message("track", "Product Removed", "seg-1", 5, format!(r#"{{"product_id":"{a}","quantity":1}}"#)),
            message("track", "Order Completed", "seg-1", 6, format!(r#"{{"order_id":"o-seg","total":20,"currency":"EUR","products":[{{"product_id":"{a}","quantity":2,"price":10}}]}}"#)),
            message("track", "Products Searched", "seg-2", 7, r#"{"query":"Lamps"}"#.to_owned()),
            message("page", "", "seg-2", 8, "{}".to_owned()),
            message("track", "Coupon Entered", "seg-1", 9, "{}".to_owned()),
        ]
        .join(",")
    );
    let mut records =
        agent_records(edge_agent::intake::segment_batch(batch.as_bytes(), 100).expect("a batch"));
    let micros = (start + 11 * 60) * 1_000_000;
    let ga4 = format!(
        r#"{{"client_id":"555.666","user_id":"ga-3","timestamp_micros":{micros},"events":[
            {{"name":"view_item","params":{{"currency":"EUR","items":[{{"item_id":"{a}","price":10}},{{"item_id":"{c}","price":30}}]}}}},
            {{"name":"add_to_cart","params":{{"currency":"EUR","items":[{{"item_id":"{c}","price":30,"quantity":1}}]}}}},
            {{"name":"purchase","params":{{"transaction_id":"T-ga","currency":"EUR","value":30,"items":[{{"item_id":"{c}","price":30,"quantity":1}}]}}}},
            {{"name":"search","params":{{"search_term":"lamps"}}}},
            {{"name":"login","params":{{"method":"Google"}}}}]}}"#
    );
    records.extend(agent_records(
        edge_agent::intake::ga4_collect(ga4.as_bytes(), 25).expect("a request"),
    ));
    assert_eq!(
        records.len(),
        12,
        "the events of the four types, not the custom ones"
    );
    scenario.produce(&records).await;

    let p = scenario.start_ready("intake", &[]).await;
    let e = Expected {
        events: [5, 3, 2, 2],
        ..Expected::default()
    };
    let r = settled(&p, start, &e, Duration::from_secs(120)).await;
    assert_eq!(
        (
            r.events.product_view,
            r.events.cart,
            r.events.purchase,
            r.events.search
        ),
        (5, 3, 2, 2)
    );
    assert_eq!((r.cart.adds, r.cart.removes), (2, 1));
    assert_eq!(r.orders, 2);
    assert_eq!(
        (r.revenue.amount, r.revenue.currency.as_str()),
        (50.0, "EUR")
    );
    let top_a = r
        .top_products
        .iter()
        .find(|t| &t.product_id == a)
        .expect("product a");
    assert_eq!(
        (top_a.views, top_a.purchases),
        (3, 2),
        "{:?}",
        r.top_products
    );
    let lamps = r
        .top_searches
        .iter()
        .find(|q| q.query == "lamps")
        .expect("lamps");
    assert_eq!(lamps.count, 2, "one query however the shop spelled it");
    assert_eq!(r.duplicates, 0);
}

/// A scenario whose product-view topic has its Avro schema registered with the real
/// registry (`REGISTRY_URL`, from `scripts/registry start`): the scenario, the
/// registry's root URL, its Confluent-compatible API and the schema's id.
async fn avro_scenario(test: &str) -> (Harness, String, String, u32) {
    use ingest_core::avro::{AvroTopics, Compatibility, RegistryClient};
    use ingest_core::EventKind;
    let url = common::service("REGISTRY_URL", "scripts/registry start");
    let base = format!("{}/apis/ccompat/v7", url.trim_end_matches('/'));
    let scenario = Harness::new(test, &[("sku-1".to_owned(), "One".to_owned())], &[]).await;
    let registry = RegistryClient::new(&base, Duration::from_secs(10), 16).expect("client");
    let id = AvroTopics::register(
        &registry,
        &[(EventKind::ProductView, scenario.topics[0].as_str())],
        Compatibility::Backward,
    )
    .await
    .expect("registered")
    .id(EventKind::ProductView)
    .expect("an id");
    (scenario, url, base, id)
}

/// `record` (a product view) with its value in the Avro wire format under schema `id`.
fn as_avro(mut record: storefront::Record, id: u32) -> storefront::Record {
    use ingest_core::EventKind;
    record.value =
        ingest_core::avro::encode_json(EventKind::ProductView, id, &record.value).expect("encodes");
    record
        .headers
        .push(("schema".into(), "avro:product_view/v1".into()));
    record
}

/// Avro records (Confluent wire format, schema from a real registry: `REGISTRY_URL`, from
/// `scripts/registry start`) are counted exactly like JSON ones, on the same topic; one
/// whose schema id the registry does not have is dead-lettered (`unknown_schema_id`), and
/// one cut short (`undecodable`), once each.
#[tokio::test(flavor = "multi_thread")]
async fn avro_records_are_counted_like_json_ones() {
    let (scenario, _, base, id) = avro_scenario("avro").await;
    let start = start_minute();
    let t0 = (start + 10 * 60) * 1000;
    let mut records = Vec::new();
    for user in 0..3 {
        records.push(view(user, "sku-1", t0 + user as i64 * 1000));
        records.push(as_avro(
            view(user + 10, "sku-1", t0 + user as i64 * 1000),
            id,
        ));
    }
    let unknown = as_avro(view(20, "sku-1", t0), u32::MAX - 5);
    let mut cut = as_avro(view(21, "sku-1", t0), id);
    cut.value.truncate(cut.value.len() - 3);
    records.push(unknown);
    records.push(cut);
    let p = scenario
        .start_ready("avro", &[("PROCESSOR_SCHEMA_REGISTRY__URL", base.as_str())])
        .await;
    scenario.produce(&records).await;
    scenario.wait_committed(8, Duration::from_secs(60)).await;
    assert_counted(&p, start, 6, 0, 0).await;
    let mut codes: Vec<String> = scenario
        .dead_letters(2, Duration::from_secs(30))
        .into_iter()
        .map(|(code, _)| code)
        .collect();
    codes.sort();
    assert_eq!(codes, ["undecodable", "unknown_schema_id"]);
}

/// A schema registry that cannot be reached is waited for: the partitions of Avro
/// records pause and are read again after a backoff, nothing is dead-lettered or
/// committed past those records, and they are counted once the registry answers (here
/// a forwarding port in front of the real registry, closed, then opened).
#[tokio::test(flavor = "multi_thread")]
async fn avro_records_wait_for_a_registry_that_cannot_be_reached() {
    let (scenario, url, _, id) = avro_scenario("avro_wait").await;
    let start = start_minute();
    let t0 = (start + 10 * 60) * 1000;
    let mut records = Vec::new();
    for user in 0..4 {
        records.push(view(user, "sku-1", t0 + user as i64 * 1000));
        records.push(as_avro(
            view(user + 10, "sku-1", t0 + user as i64 * 1000),
            id,
        ));
    }
    // Nothing listens on this port until the forwarder below starts.
    let port = common::free_port();
    let proxied = format!("http://127.0.0.1:{port}/apis/ccompat/v7");
    let p = scenario
        .start_ready(
            "avro_wait",
            &[
                ("PROCESSOR_SCHEMA_REGISTRY__URL", proxied.as_str()),
                ("PROCESSOR_SCHEMA_REGISTRY__TIMEOUT_MS", "500"),
                ("PROCESSOR_CHECKPOINT__INITIAL_BACKOFF_MS", "200"),
                ("PROCESSOR_CHECKPOINT__MAX_BACKOFF_MS", "1000"),
            ],
        )
        .await;
    scenario.produce(&records).await;
    // Several attempts, each a partition paused and read again.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let metrics = p
            .get("/metrics")
            .await
            .map(|(_, body)| body)
            .unwrap_or_default();
        let waits = metric_value(&metrics, "processor_schema_registry_waits_total");
        if waits >= 3.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the processor did not wait for the registry ({waits} waits)"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        scenario.dead_letters(1, Duration::from_secs(3)),
        Vec::<(String, String)>::new(),
        "nothing is dead-lettered while the registry cannot be reached"
    );
    assert!(
        scenario.committed_records().await < 8,
        "records were committed past the ones waiting for the registry"
    );
    let registry_addr = url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    let _forwarder = forward(port, registry_addr).await;
    scenario.wait_committed(8, Duration::from_secs(60)).await;
    assert_counted(&p, start, 8, 0, 0).await;
    assert_eq!(
        scenario.dead_letters(1, Duration::from_secs(3)),
        Vec::<(String, String)>::new()
    );
}

/// Waits until `p` holds at least `least` partitions and none is moving (its
/// assignment is the same twice, a second apart); returns how many it holds.
async fn assigned_partitions(p: &Processor, least: u32, within: Duration) -> u32 {
    let deadline = tokio::time::Instant::now() + within;
    let mut last = None;
    loop {
        let (_, metrics) = p.get("/metrics").await.expect("metrics");
        let held = metric_value(&metrics, "processor_assigned_partitions") as u32;
        if held >= least && last == Some(held) {
            return held;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "instance {} holds {held} partitions, not at least {least}\n{metrics}",
            p.addr
        );
        last = Some(held);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// The value of a series (name and labels) in a Prometheus text exposition (0 if absent).
fn metric_value(exposition: &str, name: &str) -> f64 {
    exposition
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Forwards connections to 127.0.0.1:`port` to `to` until dropped.
async fn forward(port: u16, to: String) -> tokio::task::JoinHandle<()> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("the forwarder's port");
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let to = to.clone();
            tokio::spawn(async move {
                if let Ok(mut server) = tokio::net::TcpStream::connect(&to).await {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                }
            });
        }
    })
}

/// `processor_partition_lag` counts a partition's records past the offset last
/// committed for it: the records produced while a checkpoint is due, then 0 once it
/// committed them.
#[tokio::test(flavor = "multi_thread")]
async fn partition_lag_counts_the_records_not_committed_yet() {
    let scenario = Harness::new("lag", &[("sku-1".to_owned(), "One".to_owned())], &[]).await;
    let topic = scenario.topics[0].clone();
    let p = scenario
        .start_ready(
            "lag",
            &[
                ("PROCESSOR_KAFKA__LAG_INTERVAL_MS", "100"),
                ("PROCESSOR_CHECKPOINT__INTERVAL_MS", "5000"),
            ],
        )
        .await;
    let start = start_minute();
    let t0 = (start + 10 * 60) * 1000;
    let records: Vec<_> = (0..20)
        .map(|user| view(user, "sku-1", t0 + user as i64 * 1000))
        .collect();
    scenario.produce(&records).await;
    let lag = || async {
        let metrics = p
            .get("/metrics")
            .await
            .map(|(_, body)| body)
            .unwrap_or_default();
        partition_lag(&metrics, &topic)
    };
    let wait_for = |want: f64, what: &'static str| {
        let lag = &lag;
        async move {
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let now = lag().await;
                if now == want {
                    return;
                }
                assert!(
                    Instant::now() < deadline,
                    "{what}: lag {now}, expected {want}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    wait_for(20.0, "before the checkpoint").await;
    scenario.wait_committed(20, Duration::from_secs(60)).await;
    wait_for(0.0, "after the checkpoint").await;
    assert_counted(&p, start, 20, 0, 0).await;
}

/// The sum of `processor_partition_lag` over the partitions of `topic` (`NaN` when no
/// partition of it is reported).
fn partition_lag(exposition: &str, topic: &str) -> f64 {
    let label = format!("topic=\"{topic}\"");
    let values: Vec<f64> = exposition
        .lines()
        .filter(|line| line.starts_with("processor_partition_lag{") && line.contains(&label))
        .filter_map(|line| line.rsplit(' ').next()?.parse().ok())
        .collect();
    if values.is_empty() {
        f64::NAN
    } else {
        values.iter().sum()
    }
}
