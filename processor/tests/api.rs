//! The HTTP API served in-process against a real PostgreSQL and Redis: routes, error
//! shapes, and percent-encoded values reaching the handlers decoded.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{http, ranked_products, Scenario};
use processor::http::{router, serve, ApiState, ConnectionLimits};
use processor::live::{LiveView, ReadLimits};
use processor::pipeline::Health;
use processor::store_pool::StorePool;

/// Serves the API of `scenario`'s database on a free port; returns its address and the
/// stop signal.
async fn start_api(scenario: &Scenario) -> (String, tokio::sync::watch::Sender<bool>) {
    let live = LiveView::connect(
        &scenario.services.redis,
        None,
        &scenario.name,
        3_600,
        Duration::from_secs(30),
    )
    .await
    .expect("Redis reachable at REDIS_URL");
    let state = Arc::new(ApiState {
        live,
        currency: "EUR".to_owned(),
        limits: ReadLimits {
            top_n: 10,
            max_experiment_pairs: 100,
        },
        queries: tokio::sync::Semaphore::new(4),
        recommendations_top_n: 10,
        recommendations_partners: 50,
        stores: StorePool::new(
            &scenario.postgres,
            2,
            Duration::from_secs(10),
            Duration::from_secs(5),
        ),
        metrics: metrics_exporter_prometheus::PrometheusBuilder::new()
            .build_recorder()
            .handle(),
        health: Arc::new(Health::default()),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address").to_string();
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let limits = ConnectionLimits {
        max_connections: 16,
        header_read_timeout: Duration::from_secs(5),
        drain_timeout: Duration::from_secs(5),
    };
    tokio::spawn(serve(listener, router(state), limits, shutdown));
    (addr, stop)
}

async fn get(addr: &str, path: &str) -> (u16, serde_json::Value) {
    let (status, body) = http(addr, "GET", path, "").await.expect("answer");
    let value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"));
    (status, value)
}

#[tokio::test(flavor = "multi_thread")]
async fn percent_encoded_values_reach_the_handlers_decoded_and_malformed_ones_are_400() {
    let scenario = Scenario::new("api_decoding", &[], &[]).await;
    scenario
        .execute(
            "insert into user_activity (member, viewed) values ('café x+y', '{sku-1}');
             insert into product_partners (kind, a, partners, counts, top_partners, top_counts)
                 values ('view', 'sku-1', '{sku-2}', '{3}', '{sku-2}', '{3}')",
        )
        .await;
    let (addr, _stop) = start_api(&scenario).await;

    // Path: `%20` is a space, UTF-8 escapes are its characters, `+` is itself.
    let (status, body) = get(&addr, "/api/recommendations/caf%C3%A9%20x+y").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["user_id"], "café x+y", "{body}");
    assert_eq!(body["products"][0]["product_id"], "sku-2", "{body}");

    // Query: both values decoded (`%31h` is `1h`, `%3A` and `%2B` the time's).
    let (status, body) = get(
        &addr,
        "/api/analytics/real-time?window=%31h&to=2026-11-24T11%3A00%3A00%2B01%3A00",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["window"], "1h", "{body}");
    assert_eq!(body["to"], "2026-11-24T10:00:00Z", "{body}");
    // `+` is a space in a query value: not a window.
    let (status, body) = get(&addr, "/api/analytics/real-time?window=+1h").await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "invalid_window", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("1m, 5m")),
        "{body}"
    );

    // Malformed escapes: 400 in the error shape, naming the parameter and the encoding.
    for (path, code, field) in [
        (
            "/api/analytics/real-time?window=1h%2",
            "invalid_window",
            "window",
        ),
        (
            "/api/analytics/real-time?to=2026-11-24T10%3A00%3A00Z%FF",
            "invalid_to",
            "to",
        ),
        ("/api/analytics/real-time?to=%zz", "invalid_to", "to"),
        ("/api/recommendations/a%ZZb", "invalid_user_id", "user_id"),
        ("/api/recommendations/%C3", "invalid_user_id", "user_id"),
    ] {
        let (status, body) = get(&addr, path).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert_eq!(body["error"]["code"], code, "{path}: {body}");
        assert_eq!(body["error"]["field"], field, "{path}: {body}");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains("percent-encoding"), "{path}: {body}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn recommendations_read_the_stored_top_partners_or_the_whole_list_when_more_are_asked() {
    let scenario = Scenario::new("api_partners", &[], &[]).await;
    // sku-1's co-view list was written with one partner kept apart (as by a processor
    // with `partners_per_product = 1`); this API asks for 50. sku-9's list is whole in its
    // top entries. The API must read sku-1's whole list, not only its stored top.
    scenario
        .execute(
            "insert into user_activity (member, viewed) values ('u', '{sku-1,sku-9}');
             insert into product_partners (kind, a, partners, counts, top_partners, top_counts) values
                 ('view', 'sku-1', '{sku-2,sku-3,sku-4}', '{5,4,3}', '{sku-2}', '{5}'),
                 ('view', 'sku-9', '{sku-4,sku-5}', '{2,1}', '{sku-4,sku-5}', '{2,1}')",
        )
        .await;
    let (addr, _stop) = start_api(&scenario).await;
    let (status, body) = get(&addr, "/api/recommendations/u").await;
    assert_eq!(status, 200, "{body}");
    let got = ranked_products(&body);
    let want: Vec<(String, i64)> = [("sku-2", 5), ("sku-4", 5), ("sku-3", 4), ("sku-5", 1)]
        .iter()
        .map(|&(p, s)| (p.to_owned(), s))
        .collect();
    assert_eq!(got, want, "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_pair_table_of_earlier_versions_migrates_into_ranked_partner_lists() {
    let scenario = Scenario::new("api_partners_migration", &[], &[]).await;
    // The database as migration 0008 left it (one row per ordered pair), then 0009.
    scenario
        .execute(
            "drop table product_partners;
             create table product_pairs (kind text not null, a text not null, b text not null,
                                         count bigint not null, primary key (kind, a, b));
             insert into product_pairs values
                 ('view', 'sku-1', 'sku-2', 7), ('view', 'sku-2', 'sku-1', 7),
                 ('view', 'sku-1', 'sku-B', 2), ('view', 'sku-B', 'sku-1', 2),
                 ('view', 'sku-1', 'sku-a', 2), ('view', 'sku-a', 'sku-1', 2),
                 ('purchase', 'sku-1', 'sku-2', 1), ('purchase', 'sku-2', 'sku-1', 1);",
        )
        .await;
    scenario
        .execute(include_str!("../migrations/0009_product_partners.sql"))
        .await;
    assert_eq!(scenario.rows("product_partners").await, 6);
    for (row, what) in [
        (
            "kind = 'view' and a = 'sku-1' and partners = '{sku-2,sku-B,sku-a}' and counts = '{7,2,2}'
             and top_partners = partners and n = 3",
            "most counted first, ties in byte order (\"sku-B\" < \"sku-a\")",
        ),
        (
            "kind = 'purchase' and a = 'sku-2' and partners = '{sku-1}' and counts = '{1}'",
            "kinds apart",
        ),
    ] {
        assert_eq!(
            scenario
                .rows(&format!("product_partners where {row}"))
                .await,
            1,
            "{what}"
        );
    }
    assert_eq!(
        scenario
            .rows("pg_tables where tablename = 'product_pairs'")
            .await,
        0,
        "the pair table is gone"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn routes_answer_in_the_api_error_shape() {
    let scenario = Scenario::new("api_routes", &[], &[]).await;
    let (addr, _stop) = start_api(&scenario).await;

    assert_eq!(
        get(&addr, "/health/live").await,
        (200, serde_json::json!({"status": "live"}))
    );
    // Not ready: no checkpoint in this process.
    assert_eq!(
        get(&addr, "/health/ready").await,
        (503, serde_json::json!({"status": "not_ready"}))
    );
    let (status, metrics) = http(&addr, "GET", "/metrics", "").await.expect("answer");
    assert_eq!(status, 200, "{metrics}");

    for (method, path, status, code) in [
        ("POST", "/health/live", 405, "method_not_allowed"),
        (
            "DELETE",
            "/api/analytics/real-time",
            405,
            "method_not_allowed",
        ),
        ("PUT", "/metrics", 405, "method_not_allowed"),
        ("POST", "/health/ready", 405, "method_not_allowed"),
        ("GET", "/nowhere", 404, "not_found"),
        ("GET", "/api/recommendations/", 404, "not_found"),
        ("POST", "/api/recommendations/u-1", 404, "not_found"),
    ] {
        let (got, body) = http(&addr, method, path, "").await.expect("answer");
        assert_eq!(got, status, "{method} {path}: {body}");
        let body: serde_json::Value = serde_json::from_str(&body).expect("JSON");
        assert_eq!(body["error"]["code"], code, "{method} {path}: {body}");
    }
    let (status, body) = get(&addr, "/api/recommendations/nobody").await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"]["code"], "unknown_user", "{body}");
    // A slash is part of the id, as before.
    let (status, body) = get(&addr, "/api/recommendations/a/b").await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"]["code"], "unknown_user", "{body}");
}
