//! The Segment- and GA4-compatible endpoints of the real `edge-agent` binary against a
//! real Kafka: payloads shaped as Segment's libraries (analytics-node, analytics.js,
//! analytics-python) and GA4's Measurement Protocol send them, their keys, what reaches
//! each topic, and the answers. Selected by the `kafka-tests` feature; `scripts/test`
//! runs them.

mod common;

use std::time::Duration;

use base64::Engine as _;
use common::{json, post, read_topic, Agent};
use http::StatusCode;
use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

const WAIT: Duration = Duration::from_secs(60);
const JSON: (&str, &str) = ("content-type", "application/json");
const KEYS: &str = "[auth]\nkeys = [{ source = \"shop-eu\", key = \"eu-0123456789abcdef\" }]\n";

fn now() -> String {
    OffsetDateTime::now_utc().format(&Rfc3339).expect("formats")
}

fn basic(write_key: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{write_key}:"))
    )
}

fn value(payload: &[u8]) -> Value {
    serde_json::from_slice(payload).expect("JSON")
}

/// A batch as analytics-node sends it: Basic authentication, `batch` and `sentAt`,
/// `context.library`, `_metadata`.
fn node_batch(run: &str) -> String {
    let at = now();
    let library = r#"{"name":"@segment/analytics-node","version":"2.1.3"}"#;
    let message = |kind: &str, event: Option<&str>, id: &str, properties: &str| {
        let event = event.map_or(String::new(), |e| format!(r#""event":"{e}","#));
        format!(
            r#"{{"type":"{kind}",{event}"userId":"user-{run}","anonymousId":"anon-{run}","messageId":"node-next-{id}-{run}","timestamp":"{at}","properties":{properties},"context":{{"library":{library},"ip":"203.0.113.9","userAgent":"Mozilla/5.0","page":{{"url":"https://shop.example/p/1","referrer":"https://search.example/"}},"locale":"de-DE"}},"integrations":{{}},"_metadata":{{"nodeVersion":"20.11.0","jsRuntime":"node"}}}}"#
        )
    };
    let messages = [
        message(
            "track",
            Some("Product Viewed"),
            "1",
            r#"{"product_id":"sku-1","sku":"S-1","name":"Shoe","brand":"Acme","category":"Shoes","price":19.99,"currency":"EUR","position":3}"#,
        ),
        message(
            "track",
            Some("Product Added"),
            "2",
            r#"{"cart_id":"c-1","product_id":"sku-1","quantity":2,"price":19.99,"currency":"EUR"}"#,
        ),
        message(
            "track",
            Some("Product Removed"),
            "3",
            r#"{"cart_id":"c-1","product_id":"sku-1","quantity":1,"price":19.99,"currency":"EUR"}"#,
        ),
        message(
            "track",
            Some("Order Completed"),
            "4",
            r#"{"order_id":"o-1","total":39.98,"revenue":35.0,"tax":4.98,"shipping":0,"currency":"EUR","coupon":"WINTER","products":[{"product_id":"sku-1","quantity":2,"price":19.99}]}"#,
        ),
        message(
            "track",
            Some("Products Searched"),
            "5",
            r#"{"query":"red shoes"}"#,
        ),
        message(
            "track",
            Some("Coupon Entered"),
            "6",
            r#"{"coupon_id":"WINTER"}"#,
        ),
        message("page", None, "7", r#"{"path":"/p/1","title":"Shoe"}"#),
        message("identify", None, "8", r#"{}"#),
        // Refused by the event contract (a negative price): listed, the others kept.
        message(
            "track",
            Some("Product Viewed"),
            "9",
            r#"{"product_id":"sku-9","price":-5}"#,
        ),
    ];
    format!(
        r#"{{"batch":[{}],"sentAt":"{}"}}"#,
        messages.join(","),
        now()
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_segment_batch_reaches_the_event_topics_and_the_rest_goes_to_custom_events() {
    let agent = Agent::start("segment-batch", "", KEYS).await;
    let run = "b1";
    let batch = node_batch(run);
    let auth = basic("eu-0123456789abcdef");
    let response = agent
        .send(post(
            "/v1/batch",
            batch.clone(),
            &[JSON, ("authorization", &auth), ("ingest-ack", "delivered")],
        ))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let answer = json(&response);
    assert_eq!(answer["success"], true, "{answer}");
    assert_eq!(answer["accepted"], 8, "{answer}");
    assert_eq!(
        answer["rejected"].as_array().map(Vec::len),
        Some(1),
        "{answer}"
    );
    assert_eq!(answer["rejected"][0]["index"], 8, "{answer}");
    assert_eq!(
        answer["rejected"][0]["error"]["code"], "invalid_value",
        "{answer}"
    );
    assert_eq!(answer["rejected"][0]["error"]["field"], "price", "{answer}");

    let views = read_topic(&agent.topic("product-views"), 1, WAIT).await;
    assert_eq!(views.len(), 1);
    let view = value(&views[0].payload);
    assert_eq!(view["product_id"], "sku-1");
    assert_eq!(view["user_id"], format!("user-{run}"));
    assert_eq!(view["anonymous_id"], format!("anon-{run}"));
    assert_eq!(view["price"], 19.99);
    assert_eq!(view["currency"], "EUR");
    assert_eq!(view["context"]["ip"], "203.0.113.9");
    assert_eq!(
        views[0].key.as_deref(),
        Some(format!("user-{run}").as_bytes())
    );
    assert_eq!(views[0].header("event_type"), "product_view");
    assert_eq!(
        views[0].header("source"),
        "shop-eu",
        "the write key names the source"
    );

    let carts = read_topic(&agent.topic("cart-events"), 2, WAIT).await;
    let mut actions: Vec<String> = carts
        .iter()
        .map(|r| {
            value(&r.payload)["action"]
                .as_str()
                .unwrap_or("")
                .to_owned()
        })
        .collect();
    actions.sort();
    assert_eq!(actions, ["add", "remove"]);
    let orders = read_topic(&agent.topic("purchases"), 1, WAIT).await;
    let order = value(&orders[0].payload);
    assert_eq!(order["order_id"], "o-1");
    assert_eq!(order["items"][0]["product_id"], "sku-1");
    assert_eq!(order["items"][0]["quantity"], 2);
    assert_eq!(order["currency"], "EUR");
    let searches = read_topic(&agent.topic("search-events"), 1, WAIT).await;
    assert_eq!(value(&searches[0].payload)["query"], "red shoes");

    // The three messages outside the four types, each byte for byte as sent.
    let custom = read_topic(&agent.topic("custom-events"), 3, WAIT).await;
    assert_eq!(custom.len(), 3);
    let mut names: Vec<&str> = custom.iter().map(|r| r.header("event_name")).collect();
    names.sort_unstable();
    assert_eq!(names, ["Coupon Entered", "identify", "page"]);
    let sent: Value = serde_json::from_str(&batch).expect("JSON");
    for record in &custom {
        assert_eq!(record.header("event_type"), "custom");
        let original = sent["batch"]
            .as_array()
            .expect("batch")
            .iter()
            .find(|m| value(&record.payload)["messageId"] == m["messageId"])
            .expect("a message of the batch");
        assert_eq!(value(&record.payload), *original);
        assert_eq!(
            record.key.as_deref(),
            Some(format!("user-{run}").as_bytes())
        );
    }

    // A resend (Segment's libraries retry) carries the same event ids.
    let again = agent
        .send(post(
            "/v1/batch",
            batch,
            &[JSON, ("authorization", &auth), ("ingest-ack", "delivered")],
        ))
        .await;
    assert_eq!(again.status(), StatusCode::OK);
    let views = read_topic(&agent.topic("product-views"), 2, WAIT).await;
    assert_eq!(views.len(), 2);
    assert_eq!(views[0].header("event_id"), views[1].header("event_id"));
    let custom = read_topic(&agent.topic("custom-events"), 6, WAIT).await;
    let ids: std::collections::HashSet<&str> =
        custom.iter().map(|r| r.header("event_id")).collect();
    assert_eq!(ids.len(), 3, "each custom event keeps its id on a resend");
}

#[tokio::test(flavor = "multi_thread")]
async fn segment_single_calls_keys_and_refusals() {
    let agent = Agent::start("segment-single", "", KEYS).await;
    let track = format!(
        r#"{{"type":"track","event":"Products Searched","anonymousId":"anon-s","messageId":"ajs-next-1733460000000-5f2c","timestamp":"{}","properties":{{"query":"blue"}},"context":{{"library":{{"name":"analytics.js","version":"next-1.72.0"}}}},"writeKey":"eu-0123456789abcdef"}}"#,
        now()
    );
    // analytics.js in a browser: text/plain, the write key in the body.
    let response = agent
        .send(post(
            "/v1/t",
            track.clone(),
            &[("content-type", "text/plain"), ("ingest-ack", "delivered")],
        ))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(json(&response)["success"], true);
    let searches = read_topic(&agent.topic("search-events"), 1, WAIT).await;
    assert_eq!(value(&searches[0].payload)["query"], "blue");
    assert_eq!(searches[0].key.as_deref(), Some(&b"anon-s"[..]));

    // A browser's page call with the key in the body: the custom event is the call
    // without the key (a credential never reaches Kafka).
    let page = format!(
        r#"{{"type":"page","name":"Home","anonymousId":"anon-s","messageId":"ajs-next-1733460000000-77aa","timestamp":"{}","properties":{{"path":"/"}},"writeKey":"eu-0123456789abcdef"}}"#,
        now()
    );
    let response = agent
        .send(post(
            "/v1/p",
            page,
            &[("content-type", "text/plain"), ("ingest-ack", "delivered")],
        ))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let pages = read_topic(&agent.topic("custom-events"), 1, WAIT).await;
    assert_eq!(pages[0].header("event_name"), "page");
    let stored = value(&pages[0].payload);
    assert_eq!(stored["properties"]["path"], "/");
    assert!(stored.get("writeKey").is_none(), "{stored}");
    assert!(
        !String::from_utf8_lossy(&pages[0].payload).contains("eu-0123456789abcdef"),
        "the key is not in the record"
    );

    // No key, a wrong key, a wrong scheme: 401, nothing kept.
    let without = track.replace(r#","writeKey":"eu-0123456789abcdef""#, "");
    for headers in [
        vec![JSON],
        vec![JSON, ("authorization", "Basic ZXUtd3Jvbmc6")],
        vec![JSON, ("authorization", "Digest eu-0123456789abcdef")],
    ] {
        let response = agent
            .send(post("/v1/track", without.clone(), &headers))
            .await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(json(&response)["error"]["code"], "unauthorized");
    }

    // analytics-python: Basic authentication, an identify call.
    let auth = basic("eu-0123456789abcdef");
    let identify = format!(
        r#"{{"type":"identify","userId":"user-p","traits":{{"plan":"gold"}},"messageId":"6f1d2c5e-7c1a-4f7e-9a53-1b2c3d4e5f60","timestamp":"{}","context":{{"library":{{"name":"analytics-python","version":"2.3.2"}}}}}}"#,
        now()
    );
    let response = agent
        .send(post(
            "/v1/identify",
            identify.clone(),
            &[JSON, ("authorization", &auth), ("ingest-ack", "delivered")],
        ))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let custom = read_topic(&agent.topic("custom-events"), 2, WAIT).await;
    let identified = custom
        .iter()
        .find(|r| r.header("event_name") == "identify")
        .expect("the identify call");
    assert_eq!(
        identified.payload,
        identify.as_bytes(),
        "the call byte for byte"
    );
    assert_eq!(
        identified.header("event_id"),
        "6f1d2c5e-7c1a-4f7e-9a53-1b2c3d4e5f60",
        "a messageId that is a UUID is the event id"
    );

    // A call that cannot be taken: Segment's shape, this project's precise error.
    for body in ["not json", r#"{"type":"track","event":"Product Viewed"}"#] {
        let response = agent
            .send(post("/v1/track", body, &[JSON, ("authorization", &auth)]))
            .await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{body}");
        let answer = json(&response);
        assert_eq!(answer["success"], false, "{answer}");
        assert!(answer["error"]["code"].is_string(), "{answer}");
        assert!(answer["error"]["message"].is_string(), "{answer}");
    }
    let response = agent
        .send(post(
            "/v1/batch",
            r#"{"sentAt":"x"}"#,
            &[JSON, ("authorization", &auth)],
        ))
        .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test(flavor = "multi_thread")]
async fn ga4_measurement_protocol_events_are_mapped_per_item() {
    let agent = Agent::start("ga4", "", KEYS).await;
    let micros = OffsetDateTime::now_utc().unix_timestamp_nanos() / 1000;
    let body = format!(
        r#"{{"client_id":"123456.7654321","user_id":"user-g","timestamp_micros":"{micros}","user_properties":{{"tier":{{"value":"gold"}}}},"events":[
            {{"name":"view_item","params":{{"currency":"USD","value":30.0,"items":[{{"item_id":"sku-a","item_name":"A","price":10.0,"quantity":1}},{{"item_id":"sku-b","item_name":"B","price":20.0,"quantity":1}}]}}}},
            {{"name":"add_to_cart","params":{{"currency":"USD","value":10.0,"items":[{{"item_id":"sku-a","price":10.0,"quantity":3}}]}}}},
            {{"name":"purchase","params":{{"transaction_id":"T-1","currency":"USD","value":30.0,"tax":1.5,"shipping":2.0,"coupon":"X","items":[{{"item_id":"sku-a","price":10.0,"quantity":1}},{{"item_id":"sku-b","price":20.0,"quantity":1}}]}}}},
            {{"name":"search","params":{{"search_term":"lamps"}}}},
            {{"name":"login","params":{{"method":"Google"}}}}
        ]}}"#
    );
    let path = "/mp/collect?measurement_id=G-TEST123&api_secret=eu-0123456789abcdef";
    let response = agent
        .send(post(
            path,
            body.clone(),
            &[JSON, ("ingest-ack", "delivered")],
        ))
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);

    let views = read_topic(&agent.topic("product-views"), 2, WAIT).await;
    let mut products: Vec<String> = views
        .iter()
        .map(|r| {
            value(&r.payload)["product_id"]
                .as_str()
                .unwrap_or("")
                .to_owned()
        })
        .collect();
    products.sort();
    assert_eq!(products, ["sku-a", "sku-b"], "one product view per item");
    for view in &views {
        let event = value(&view.payload);
        assert_eq!(event["user_id"], "user-g");
        assert_eq!(event["anonymous_id"], "123456.7654321");
        assert_eq!(view.header("source"), "shop-eu");
    }
    let carts = read_topic(&agent.topic("cart-events"), 1, WAIT).await;
    let cart = value(&carts[0].payload);
    assert_eq!(
        (cart["action"].as_str(), cart["quantity"].as_u64()),
        (Some("add"), Some(3))
    );
    let orders = read_topic(&agent.topic("purchases"), 1, WAIT).await;
    let order = value(&orders[0].payload);
    assert_eq!(order["order_id"], "T-1");
    assert_eq!(order["items"].as_array().map(Vec::len), Some(2));
    assert_eq!(order["total"], 30.0);
    let searches = read_topic(&agent.topic("search-events"), 1, WAIT).await;
    assert_eq!(value(&searches[0].payload)["query"], "lamps");
    let custom = read_topic(&agent.topic("custom-events"), 1, WAIT).await;
    assert_eq!(custom[0].header("event_name"), "login");
    assert_eq!(custom[0].key.as_deref(), Some(&b"user-g"[..]));

    // Keys: the api_secret is checked like any key; the measurement_id is required.
    let wrong = agent
        .send(post(
            "/mp/collect?measurement_id=G-TEST123&api_secret=nope",
            body.clone(),
            &[JSON],
        ))
        .await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let no_id = agent
        .send(post(
            "/mp/collect?api_secret=eu-0123456789abcdef",
            body,
            &[JSON],
        ))
        .await;
    assert_eq!(no_id.status(), StatusCode::BAD_REQUEST);
    assert_eq!(json(&no_id)["error"]["field"], "measurement_id");
    let broken = agent
        .send(post(path, r#"{"client_id":"1","events":"x"}"#, &[JSON]))
        .await;
    assert_eq!(broken.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test(flavor = "multi_thread")]
async fn segment_from_a_browser_with_cors_and_gzip_from_a_server_library() {
    use std::io::Write;
    let agent = Agent::start(
        "segment-web",
        "",
        &format!("{KEYS}[cors]\nallowed_origins = [\"https://shop.example.com\"]\n"),
    )
    .await;
    // analytics.js: a preflight is not needed for text/plain, but one may come.
    let preflight = http::Request::options("/v1/t")
        .header("host", "agent")
        .header("origin", "https://shop.example.com")
        .header("access-control-request-method", "POST")
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .expect("request");
    let answer = agent.send(preflight).await;
    assert_eq!(answer.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        answer.headers()["access-control-allow-origin"],
        "https://shop.example.com"
    );
    let call = format!(
        r#"{{"type":"track","event":"Product Viewed","anonymousId":"anon-w","messageId":"ajs-next-1-w","timestamp":"{}","properties":{{"product_id":"sku-w"}},"writeKey":"eu-0123456789abcdef"}}"#,
        now()
    );
    let response = agent
        .send(post(
            "/v1/t",
            call,
            &[
                ("content-type", "text/plain"),
                ("origin", "https://shop.example.com"),
                ("ingest-ack", "delivered"),
            ],
        ))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["access-control-allow-origin"],
        "https://shop.example.com"
    );

    // analytics-python with gzip: Content-Encoding: gzip on the batch.
    let batch = node_batch("gz");
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(batch.as_bytes()).expect("gzip");
    let gzipped = encoder.finish().expect("gzip");
    let auth = basic("eu-0123456789abcdef");
    let response = agent
        .send(post(
            "/v1/batch",
            gzipped,
            &[
                JSON,
                ("content-encoding", "gzip"),
                ("authorization", &auth),
                ("ingest-ack", "delivered"),
            ],
        ))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(json(&response)["accepted"], 8);
    let views = read_topic(&agent.topic("product-views"), 2, WAIT).await;
    assert_eq!(views.len(), 2, "the browser's view and the batch's");
}

/// What cannot be translated goes to the dead-letter topic, as an invalid native event
/// does: a Segment message by itself, a request refused as a whole with its body, a GA4
/// request with the event's path in `error_field`; never with a `writeKey` in it.
#[tokio::test(flavor = "multi_thread")]
async fn messages_that_cannot_be_translated_are_dead_lettered() {
    let agent = Agent::start("intake-dlq", "", KEYS).await;
    let at = now();
    let unmappable = format!(
        r#"{{"type":"track","event":"Product Viewed","anonymousId":"a-1","timestamp":"{at}","properties":{{"name":"no id"}}}}"#
    );
    let with_key = format!(
        r#"{{"type":"track","event":"Order Completed","anonymousId":"a-2","timestamp":"{at}","writeKey":"eu-0123456789abcdef","properties":{{"total":3}}}}"#
    );
    let good = format!(
        r#"{{"type":"track","event":"Products Searched","anonymousId":"a-3","timestamp":"{at}","properties":{{"query":"red"}}}}"#
    );
    let batch = format!(r#"{{"batch":[{good},{unmappable},{with_key}]}}"#);
    let auth = basic("eu-0123456789abcdef");
    let response = agent
        .send(post("/v1/batch", batch, &[JSON, ("authorization", &auth)]))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let answer = json(&response);
    assert_eq!(answer["accepted"], 1, "{answer}");
    assert_eq!(
        answer["rejected"].as_array().map(Vec::len),
        Some(2),
        "{answer}"
    );

    // A request refused as a whole, its key in the body.
    let broken = r#"{"batch":5,"writeKey":"eu-0123456789abcdef"}"#;
    let response = agent
        .send(post("/v1/batch", broken, &[("content-type", "text/plain")]))
        .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);

    // GA4: an item without an id.
    let ga4 = r#"{"client_id":"c.1","events":[{"name":"view_item","params":{"items":[{"item_name":"A"}]}}]}"#;
    let response = agent
        .send(post(
            "/mp/collect?measurement_id=G-1&api_secret=eu-0123456789abcdef",
            ga4,
            &[JSON],
        ))
        .await;
    assert_eq!(response.status(), StatusCode::OK, "{:?}", json(&response));

    let dead = read_topic(&agent.topic("events-dlq"), 4, WAIT).await;
    assert_eq!(dead.len(), 4);
    // `batch` alone names the request; `batch[1]...` a message of it.
    let find = |field_prefix: &str| {
        dead.iter()
            .find(|r| {
                let field = r.header("error_field");
                field == field_prefix
                    || (field_prefix.ends_with(']') && field.starts_with(field_prefix))
            })
            .unwrap_or_else(|| {
                let fields: Vec<&str> = dead.iter().map(|r| r.header("error_field")).collect();
                panic!("no dead letter on {field_prefix}: {fields:?}")
            })
    };
    let message = find("batch[1]");
    assert_eq!(message.header("error_code"), "missing_field");
    assert_eq!(
        value(&message.payload),
        value(unmappable.as_bytes()),
        "the message as sent"
    );
    assert_eq!(message.header("source"), "shop-eu");
    let keyless = find("batch[2]");
    assert!(!String::from_utf8_lossy(&keyless.payload).contains("eu-0123456789abcdef"));
    assert_eq!(value(&keyless.payload)["event"], "Order Completed");
    let whole = find("batch");
    assert_eq!(whole.header("error_code"), "invalid_type");
    assert_eq!(value(&whole.payload), serde_json::json!({"batch": 5}));
    let request = find("events[0]");
    assert_eq!(request.header("error_code"), "missing_field");
    assert_eq!(value(&request.payload), value(ga4.as_bytes()));
    for record in &dead {
        assert!(
            !String::from_utf8_lossy(&record.payload).contains("0123456789abcdef"),
            "a key reached Kafka"
        );
    }
}
