//! The real `edge-agent` binary against a real Kafka: every endpoint end to end, every
//! error answer, compression, keys, rate limits, CORS, HTTP/2, TLS, the Unix socket,
//! slow clients, SIGTERM under load and kill -9 with `persisted` acknowledgements.
//! Selected by the `kafka-tests` feature; `scripts/test` runs them.

mod common;

use std::collections::HashSet;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::{event_ids, get, json, post, read_topic, send_h2, send_on, Agent};
use http::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const WAIT: Duration = Duration::from_secs(60);
const JSON: (&str, &str) = ("content-type", "application/json");
const NDJSON: (&str, &str) = ("content-type", "application/x-ndjson");

#[tokio::test(flavor = "multi_thread")]
async fn every_endpoint_delivers_the_exact_bytes() {
    let agent = Agent::start("endpoints", "", "").await;
    let events = [
        (
            "product-view",
            "product-views",
            r#"{"user_id":"u1","product_id":"sku-1","price":19.99,"currency":"EUR","x":[1]}"#,
        ),
        (
            "cart",
            "cart-events",
            r#"{"anonymous_id":"a1","action":"add","product_id":"sku-1","quantity":2}"#,
        ),
        (
            "purchase",
            "purchases",
            r#"{"user_id":"u1","order_id":"o1","items":[{"product_id":"sku-1","quantity":1,"price":5}],"total":5,"currency":"EUR"}"#,
        ),
        (
            "search",
            "search-events",
            "{ \"user_id\":\"u2\", \"query\":\"red shoes\" }",
        ),
    ];
    for (path, topic, body) in events {
        let response = agent
            .send(post(
                &format!("/api/events/{path}"),
                body.to_owned(),
                &[JSON, ("ingest-ack", "delivered")],
            ))
            .await;
        assert_eq!(response.status(), StatusCode::ACCEPTED, "{path}");
        let answer = json(&response);
        assert_eq!(answer["accepted"], 1);
        let id = answer["event_ids"][0].as_str().expect("id").to_owned();
        let records = read_topic(&agent.topic(topic), 1, WAIT).await;
        assert_eq!(records.len(), 1, "{topic}");
        assert_eq!(
            records[0].payload,
            body.as_bytes(),
            "{path}: bytes unchanged"
        );
        assert_eq!(records[0].header("event_id"), id);
        assert_eq!(records[0].header("source"), "agent-test");
    }

    // A batch: valid events are kept, the invalid one is reported by index.
    let batch = "{\"type\":\"search\",\"user_id\":\"u3\",\"query\":\"a\"}\n\n{\"type\":\"search\",\"user_id\":\"u3\"}\n{\"type\":\"cart\",\"user_id\":\"u3\",\"action\":\"clear\"}\n";
    let response = agent
        .send(post(
            "/api/events/batch",
            batch,
            &[NDJSON, ("ingest-ack", "delivered")],
        ))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let answer = json(&response);
    assert_eq!(answer["accepted"], 2);
    assert_eq!(answer["rejected"][0]["index"], 1);
    assert_eq!(answer["rejected"][0]["error"]["code"], "missing_field");
    assert_eq!(answer["rejected"][0]["error"]["field"], "query");
    let searches = read_topic(&agent.topic("search-events"), 2, WAIT).await;
    assert!(searches
        .iter()
        .any(|r| r.payload == br#"{"type":"search","user_id":"u3","query":"a"}"#));
}

#[tokio::test(flavor = "multi_thread")]
async fn every_error_answer_has_its_status_and_body() {
    let agent = Agent::start("errors", "max_body_bytes = 65536\n", "").await;
    let cases: Vec<(http::Request<_>, StatusCode, &str, Option<&str>)> = vec![
        (
            post("/api/events/cart", "{\"user_id\":", &[JSON]),
            StatusCode::BAD_REQUEST,
            "invalid_json",
            None,
        ),
        (
            post(
                "/api/events/cart",
                r#"{"user_id":"u","action":"zap"}"#,
                &[JSON],
            ),
            StatusCode::BAD_REQUEST,
            "invalid_value",
            Some("action"),
        ),
        (
            post(
                "/api/events/purchase",
                r#"{"user_id":"u","order_id":"o","items":[{"product_id":"p","quantity":1,"price":1}],"total":1,"currency":"EURO"}"#,
                &[JSON],
            ),
            StatusCode::BAD_REQUEST,
            "invalid_currency",
            Some("currency"),
        ),
        (
            post("/api/events/search", "", &[JSON]),
            StatusCode::BAD_REQUEST,
            "empty_body",
            None,
        ),
        (
            post(
                "/api/events/search",
                format!(r#"{{"user_id":"u","query":"{}"}}"#, "x".repeat(40_000)),
                &[JSON],
            ),
            StatusCode::PAYLOAD_TOO_LARGE,
            "event_too_large",
            None,
        ),
        (
            post("/api/events/batch", "x".repeat(70_000), &[NDJSON]),
            StatusCode::PAYLOAD_TOO_LARGE,
            "batch_too_large",
            None,
        ),
        (
            post(
                "/api/events/search",
                "{}",
                &[("content-type", "application/xml")],
            ),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            None,
        ),
        (
            post(
                "/api/events/search",
                "{}",
                &[JSON, ("content-encoding", "br")],
            ),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            None,
        ),
        (
            post("/api/events/search", "{}", &[JSON, ("ingest-ack", "soon")]),
            StatusCode::BAD_REQUEST,
            "invalid_value",
            Some("Ingest-Ack"),
        ),
        (
            post(
                "/api/events/search",
                "not gzip",
                &[JSON, ("content-encoding", "gzip")],
            ),
            StatusCode::BAD_REQUEST,
            "invalid_value",
            Some("Content-Encoding"),
        ),
        (
            get("/api/nothing"),
            StatusCode::NOT_FOUND,
            "not_found",
            None,
        ),
        (
            get("/api/events/search"),
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            None,
        ),
    ];
    for (request, status, code, field) in cases {
        let what = format!("{} {}", request.method(), request.uri());
        let response = agent.send(request).await;
        assert_eq!(
            response.status(),
            status,
            "{what}: {}",
            String::from_utf8_lossy(response.body())
        );
        let body = json(&response);
        assert_eq!(body["error"]["code"], code, "{what}");
        assert!(body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()));
        assert_eq!(body["error"]["field"].as_str(), field, "{what}");
    }
    // A request head over server.max_head_bytes (8 KiB by default): 431, no body.
    let mut big = post(
        "/api/events/cart",
        r#"{"user_id":"u","action":"add"}"#,
        &[JSON],
    );
    big.headers_mut().insert(
        "cookie",
        http::HeaderValue::from_str(&"c".repeat(9 * 1024)).expect("header"),
    );
    assert_eq!(
        agent.send(big).await.status(),
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
    );
    assert_eq!(
        agent.send(get("/health/live")).await.status(),
        StatusCode::OK
    );
    let metrics = agent.send(get("/metrics")).await;
    let text = String::from_utf8_lossy(metrics.body());
    assert!(text.contains("edge_http_requests_total"), "{text}");
    assert!(text.contains("ingest_events_rejected_total"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn unreachable_kafka_gives_503_for_delivered_and_not_ready() {
    let dir = tempfile::tempdir().expect("dir");
    let prefix = common::unique("down");
    let port = common::free_port();
    let closed = common::free_port();
    let config = common::base_config(
        &format!("127.0.0.1:{closed}"),
        &prefix,
        port,
        "ack_timeout_ms = 300\n",
    ) + "[breaker]\nstall_timeout_ms = 300\n";
    let agent = Agent::launch(prefix, port, config, dir, &[]).await;
    let response = agent
        .send(post(
            "/api/events/search",
            r#"{"user_id":"u","query":"q"}"#,
            &[JSON, ("ingest-ack", "delivered")],
        ))
        .await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()["retry-after"], "1");
    assert_eq!(json(&response)["error"]["code"], "unavailable");
    // The breaker opens (nothing delivered while records wait): not ready, no buffer.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let ready = agent.send(get("/health/ready")).await;
        if ready.status() == StatusCode::SERVICE_UNAVAILABLE {
            assert_eq!(json(&ready)["kafka"], "unreachable");
            assert_eq!(json(&ready)["status"], "not_ready");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never not-ready: {}",
            agent.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn gzip_and_zstd_batches_are_decompressed() {
    let agent = Agent::start("compressed", "", "").await;
    let body = (0..100)
        .map(|i| {
            format!("{{\"type\":\"product_view\",\"user_id\":\"u{i}\",\"product_id\":\"p{i}\"}}\n")
        })
        .collect::<String>();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(body.as_bytes()).expect("gzip");
    let gz = gz.finish().expect("gzip");
    let zst = zstd::encode_all(body.as_bytes(), 3).expect("zstd");
    for (coding, bytes) in [("gzip", gz), ("zstd", zst)] {
        let response = agent
            .send(post(
                "/api/events/batch",
                bytes,
                &[
                    NDJSON,
                    ("content-encoding", coding),
                    ("ingest-ack", "delivered"),
                ],
            ))
            .await;
        assert_eq!(response.status(), StatusCode::OK, "{coding}");
        assert_eq!(json(&response)["accepted"], 100, "{coding}");
    }
    let records = read_topic(&agent.topic("product-views"), 200, WAIT).await;
    assert_eq!(records.len(), 200);
    let first = body.lines().next().expect("line");
    assert_eq!(
        records
            .iter()
            .filter(|r| r.payload == first.as_bytes())
            .count(),
        2
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn api_keys_name_the_source_and_rate_limits_answer_429() {
    let agent = Agent::start(
        "keys",
        "",
        "[auth]\nkeys = [{ source = \"shop-eu\", key = \"eu-0123456789abcdef\" }]\n[rate_limit]\nper_key_per_sec = 1\nper_key_burst = 5\n",
    )
    .await;
    let event = r#"{"user_id":"u","query":"q"}"#;
    let no_key = agent.send(post("/api/events/search", event, &[JSON])).await;
    assert_eq!(no_key.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(no_key.headers()["www-authenticate"], "Bearer");
    assert_eq!(json(&no_key)["error"]["code"], "unauthorized");
    let wrong = agent
        .send(post(
            "/api/events/search",
            event,
            &[JSON, ("authorization", "Bearer eu-0123456789abcdeX")],
        ))
        .await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);

    let auth = ("authorization", "Bearer eu-0123456789abcdef");
    let mut statuses = Vec::new();
    for _ in 0..8 {
        statuses.push(
            agent
                .send(post("/api/events/search", event, &[JSON, auth]))
                .await,
        );
    }
    let accepted = statuses
        .iter()
        .filter(|r| r.status() == StatusCode::ACCEPTED)
        .count();
    let limited: Vec<_> = statuses
        .iter()
        .filter(|r| r.status() == StatusCode::TOO_MANY_REQUESTS)
        .collect();
    assert_eq!(accepted, 5, "the burst");
    assert_eq!(limited.len(), 3);
    assert_eq!(limited[0].headers()["retry-after"], "1");
    assert_eq!(json(limited[0])["error"]["code"], "rate_limited");
    let records = read_topic(&agent.topic("search-events"), 5, WAIT).await;
    assert_eq!(records.len(), 5, "nothing of a refused request is kept");
    assert!(
        records.iter().all(|r| r.header("source") == "shop-eu"),
        "the key names the source"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn cors_preflight_and_send_beacon() {
    let agent = Agent::start(
        "cors",
        "",
        "[cors]\nallowed_origins = [\"https://shop.example.com\"]\n",
    )
    .await;
    let preflight = |origin: &'static str| {
        http::Request::options("/api/events/cart")
            .header("host", "agent")
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type, ingest-ack")
            .body(http_body_util::Full::new(Bytes::new()))
            .expect("request")
    };
    let allowed = agent.send(preflight("https://shop.example.com")).await;
    assert_eq!(allowed.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "https://shop.example.com"
    );
    assert!(allowed.headers()["access-control-allow-headers"]
        .to_str()
        .expect("ascii")
        .contains("ingest-ack"));
    let other = agent.send(preflight("https://evil.example")).await;
    assert_eq!(other.status(), StatusCode::NO_CONTENT);
    assert!(other.headers().get("access-control-allow-origin").is_none());

    // sendBeacon: text/plain, a simple request with an Origin.
    let beacon = agent
        .send(post(
            "/api/events/cart",
            r#"{"user_id":"u","action":"clear"}"#,
            &[
                ("content-type", "text/plain;charset=UTF-8"),
                ("origin", "https://shop.example.com"),
            ],
        ))
        .await;
    assert_eq!(beacon.status(), StatusCode::ACCEPTED);
    assert_eq!(
        beacon.headers()["access-control-allow-origin"],
        "https://shop.example.com"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn http2_tls_and_the_unix_socket_serve_the_same_api() {
    // A certificate for 127.0.0.1, made for this test.
    let cert =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).expect("certificate");
    let dir = tempfile::tempdir().expect("dir");
    let cert_file = dir.path().join("cert.pem");
    let key_file = dir.path().join("key.pem");
    std::fs::write(&cert_file, cert.cert.pem()).expect("cert");
    std::fs::write(&key_file, cert.key_pair.serialize_pem()).expect("key");
    let socket = dir.path().join("agent.sock");
    let extra = format!(
        "[tls]\ncert_file = {:?}\nkey_file = {:?}\n",
        cert_file.display().to_string(),
        key_file.display().to_string()
    );
    let agent = Agent::start_in(
        "transports",
        "",
        &extra,
        dir,
        &["--unix-socket", socket.to_str().expect("utf-8")],
    )
    .await;
    let event = r#"{"user_id":"u","query":"over tls"}"#;

    // TLS with ALPN h2.
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.cert.der().clone()).expect("root");
    let mut client = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    client.alpn_protocols = vec![b"h2".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
    let tcp = tokio::net::TcpStream::connect(&agent.addr)
        .await
        .expect("connect");
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("name");
    let tls = connector.connect(name, tcp).await.expect("TLS handshake");
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let mut request = post("/api/events/search", event, &[JSON]);
    *request.uri_mut() = "https://127.0.0.1/api/events/search".parse().expect("uri");
    let response = send_h2(tls, request).await.expect("answer");
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    assert_eq!(response.version(), http::Version::HTTP_2);

    // Plain HTTP on a TLS listener is not served.
    let tcp = tokio::net::TcpStream::connect(&agent.addr)
        .await
        .expect("connect");
    assert!(send_on(tcp, get("/health/live")).await.is_err());

    // The Unix socket, HTTP/1.1 and h2c.
    let unix = tokio::net::UnixStream::connect(&socket)
        .await
        .expect("unix socket");
    let response = send_on(unix, post("/api/events/search", event, &[JSON]))
        .await
        .expect("answer");
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let unix = tokio::net::UnixStream::connect(&socket)
        .await
        .expect("unix socket");
    let mut request = post("/api/events/search", event, &[JSON]);
    *request.uri_mut() = "http://agent/api/events/search".parse().expect("uri");
    let response = send_h2(unix, request).await.expect("h2c answer");
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let records = read_topic(&agent.topic("search-events"), 3, WAIT).await;
    assert_eq!(records.len(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_clients_are_cut_off() {
    let agent = Agent::start("slow", "", "").await;
    // A head that never ends: the connection is closed after header_timeout_ms (1 s).
    let mut stream = tokio::net::TcpStream::connect(&agent.addr)
        .await
        .expect("connect");
    stream
        .write_all(b"POST /api/events/search HTTP/1.1\r\nhost: a\r\n")
        .await
        .expect("write");
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "the agent closed the connection");

    // A body that never ends: 408 after body_timeout_ms (1 s).
    let mut stream = tokio::net::TcpStream::connect(&agent.addr)
        .await
        .expect("connect");
    stream
        .write_all(b"POST /api/events/search HTTP/1.1\r\nhost: a\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"user")
        .await
        .expect("write");
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut buf)).await;
    let text = String::from_utf8_lossy(&buf);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    // The agent still serves others.
    assert_eq!(
        agent.send(get("/health/live")).await.status(),
        StatusCode::OK
    );
}

/// Sends events from `clients` keep-alive connections until told to stop; returns the
/// ids of the events answered 202.
async fn load(
    addr: String,
    clients: usize,
    ack: &'static str,
    stop: tokio::sync::watch::Receiver<bool>,
) -> HashSet<String> {
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (addr, stop) = (addr.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut ids = HashSet::new();
            let Ok(stream) = tokio::net::TcpStream::connect(&addr).await else {
                return ids;
            };
            let Ok((mut sender, connection)) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await
            else {
                return ids;
            };
            tokio::spawn(connection);
            let mut i = 0u64;
            while !*stop.borrow() {
                let body = format!(r#"{{"user_id":"u{c}","product_id":"p{i}","seq":{i}}}"#);
                let request = post(
                    "/api/events/product-view",
                    body,
                    &[JSON, ("ingest-ack", ack)],
                );
                let Ok(response) = sender.send_request(request).await else {
                    break;
                };
                let status = response.status();
                let Ok(body) = http_body_util::BodyExt::collect(response.into_body()).await else {
                    break;
                };
                if status == StatusCode::ACCEPTED {
                    let answer: serde_json::Value =
                        serde_json::from_slice(&body.to_bytes()).expect("JSON");
                    ids.insert(answer["event_ids"][0].as_str().expect("id").to_owned());
                }
                i += 1;
            }
            ids
        }));
    }
    let mut all = HashSet::new();
    for task in tasks {
        all.extend(task.await.expect("client"));
    }
    all
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_under_load_loses_no_acknowledged_event() {
    let mut agent = Agent::start("sigterm", "", "").await;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let clients = tokio::spawn(load(agent.addr.clone(), 8, "accepted", stopped));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let status = tokio::task::block_in_place(|| agent.terminate(Duration::from_secs(60)));
    let _ = stop.send(true);
    let acknowledged = clients.await.expect("clients");
    assert!(
        status.success(),
        "clean exit: {status}: {}",
        agent.log_text()
    );
    assert!(acknowledged.len() > 100, "load ran: {}", acknowledged.len());
    let records = read_topic(&agent.topic("product-views"), acknowledged.len(), WAIT).await;
    let delivered = event_ids(&records);
    let missing = acknowledged.difference(&delivered).count();
    assert_eq!(
        missing,
        0,
        "{missing} of {} acknowledged events missing",
        acknowledged.len()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_with_persisted_acknowledgements_loses_nothing() {
    let buffer = tempfile::tempdir().expect("buffer");
    let buffer_dir = buffer.path().to_str().expect("utf-8").to_owned();
    let prefix = common::unique("kill");
    let port = common::free_port();
    let config = common::base_config(&common::brokers(), &prefix, port, "");
    common::create_topics(&config).await;
    let dir = tempfile::tempdir().expect("dir");
    let mut agent = Agent::launch(
        prefix.clone(),
        port,
        config.clone(),
        dir,
        &["--buffer-dir", &buffer_dir],
    )
    .await;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let clients = tokio::spawn(load(agent.addr.clone(), 8, "persisted", stopped));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    agent.child.kill().expect("SIGKILL");
    let _ = agent.child.wait();
    let _ = stop.send(true);
    let persisted = clients.await.expect("clients");
    assert!(persisted.len() > 50, "load ran: {}", persisted.len());
    drop(agent);

    // The next start on the same buffer delivers what the killed one had not.
    let dir = tempfile::tempdir().expect("dir");
    let mut agent = Agent::launch(prefix, port, config, dir, &["--buffer-dir", &buffer_dir]).await;
    let status = tokio::task::block_in_place(|| agent.terminate(Duration::from_secs(60)));
    assert!(status.success(), "{}", agent.log_text());
    let records = read_topic(&agent.topic("product-views"), persisted.len(), WAIT).await;
    let delivered = event_ids(&records);
    let missing = persisted.difference(&delivered).count();
    println!(
        "kill -9: {} persisted, {} records, {} duplicates",
        persisted.len(),
        records.len(),
        records.len() - delivered.len()
    );
    assert_eq!(
        missing,
        0,
        "{missing} of {} persisted events missing",
        persisted.len()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn client_certificates_are_required_when_a_client_ca_is_configured() {
    let pki = common::pki::TestPki::new();
    let client = pki.client("storefront");
    let dir = tempfile::tempdir().expect("dir");
    let files = pki.write(dir.path());
    let extra = format!(
        "[tls]\ncert_file = {:?}\nkey_file = {:?}\nclient_ca_file = {:?}\n",
        files.cert_file, files.key_file, files.ca_file,
    );
    let agent = Agent::start_in("mtls", "", &extra, dir, &[]).await;
    let anonymous = pki.client_config(None);
    let authenticated = pki.client_config(Some(&client));

    let request = || {
        post(
            "/api/events/search",
            r#"{"user_id":"u","query":"mtls"}"#,
            &[JSON],
        )
    };
    let connect = |config: rustls::ClientConfig| {
        let addr = agent.addr.clone();
        async move {
            let tcp = tokio::net::TcpStream::connect(&addr)
                .await
                .expect("connect");
            let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("name");
            tokio_rustls::TlsConnector::from(Arc::new(config))
                .connect(name, tcp)
                .await
        }
    };
    // Without a certificate the handshake, or the first request, fails.
    let refused = match connect(anonymous).await {
        Err(_) => true,
        Ok(tls) => send_on(tls, request()).await.is_err(),
    };
    assert!(refused, "a client without a certificate is refused");
    let tls = connect(authenticated)
        .await
        .expect("handshake with a certificate");
    let response = send_on(tls, request()).await.expect("answer");
    assert_eq!(response.status(), StatusCode::ACCEPTED);
}

#[tokio::test(flavor = "multi_thread")]
async fn connections_beyond_the_bound_wait_for_a_free_slot() {
    let agent = Agent::start(
        "connections",
        "max_connections = 1\nheader_timeout_ms = 5000\n",
        "",
    )
    .await;
    // The one slot: a keep-alive connection that has been served and stays open.
    let stream = tokio::net::TcpStream::connect(&agent.addr)
        .await
        .expect("connect");
    let (mut held, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .expect("handshake");
    let holder = tokio::spawn(connection);
    let first = held
        .send_request(get("/health/live"))
        .await
        .expect("answer");
    assert_eq!(first.status(), StatusCode::OK);

    // A second connection is accepted by the kernel but not served meanwhile.
    let waiting = tokio::spawn({
        let agent_addr = agent.addr.clone();
        async move {
            let stream = tokio::net::TcpStream::connect(&agent_addr)
                .await
                .expect("connect");
            send_on(stream, get("/health/live")).await
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!waiting.is_finished(), "served beyond max_connections");
    drop(held);
    holder.abort();
    let answer = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("served once the slot is free")
        .expect("task")
        .expect("answer");
    assert_eq!(answer.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread")]
async fn feature_flags_are_served_reloaded_and_a_bad_file_keeps_the_flags_in_force() {
    use ingest_core::flags::{FlagDef, FlagSet, VariantDef};
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("flags.toml");
    let file = |control: u32, treatment: u32| {
        format!(
            "[[flags]]\nname = \"checkout_v2\"\nvariants = [{{ name = \"control\", percent = {control} }}, {{ name = \"treatment\", percent = {treatment} }}]\n\n[[flags]]\nname = \"search_ranking\"\nsalt = \"sr-1\"\nvariants = [{{ name = \"bm25\", percent = 100 }}]\n"
        )
    };
    std::fs::write(&path, file(50, 50)).expect("write");
    let agent = Agent::start_in(
        "flags",
        "",
        &format!(
            "[flags]\nfile = {:?}\nreload_interval_ms = 100\n",
            path.display().to_string()
        ),
        tempfile::tempdir().expect("dir"),
        &[],
    )
    .await;
    // The same assignment as the library's: every agent and binding agrees.
    let expected = FlagSet::new(vec![FlagDef {
        name: "checkout_v2".to_owned(),
        salt: None,
        variants: vec![
            VariantDef {
                name: "control".to_owned(),
                percent: 50.0,
            },
            VariantDef {
                name: "treatment".to_owned(),
                percent: 50.0,
            },
        ],
    }])
    .expect("valid");
    let flags_of = |user: &str| {
        let agent = &agent;
        let path = format!("/api/flags?user_id={user}");
        async move { json(&agent.send(get(&path)).await) }
    };
    for user in ["user-1", "user-2", "user-3", "user-4"] {
        let answer = flags_of(user).await;
        assert_eq!(answer["user_id"], user);
        assert_eq!(
            answer["flags"]["checkout_v2"].as_str(),
            expected.variant("checkout_v2", user),
            "{answer}"
        );
        assert_eq!(answer["flags"]["search_ranking"], "bm25");
    }
    let encoded = json(&agent.send(get("/api/flags?user_id=a%201")).await);
    assert_eq!(encoded["user_id"], "a 1");
    let missing = agent.send(get("/api/flags")).await;
    assert_eq!(missing.status(), StatusCode::BAD_REQUEST);
    assert_eq!(json(&missing)["error"]["field"], "user_id");
    let nul = agent.send(get("/api/flags?user_id=a%00b")).await;
    assert_eq!(nul.status(), StatusCode::BAD_REQUEST);
    let post = agent.send(post("/api/flags", "{}", &[JSON])).await;
    assert_eq!(post.status(), StatusCode::METHOD_NOT_ALLOWED);

    // Everyone to treatment: the file is read again without a restart.
    std::fs::write(&path, file(0, 100)).expect("write");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let answers: Vec<_> =
            futures_all(["user-1", "user-2", "user-3", "user-4"].map(&flags_of)).await;
        if answers
            .iter()
            .all(|a| a["flags"]["checkout_v2"] == "treatment")
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not reloaded: {answers:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A file that does not check is refused; the flags in force stay.
    std::fs::write(&path, file(60, 30)).expect("write");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !agent.log_text().contains("feature flags file refused") {
        assert!(std::time::Instant::now() < deadline, "{}", agent.log_text());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        agent.log_text().contains("percentages add up to 90"),
        "{}",
        agent.log_text()
    );
    assert_eq!(
        flags_of("user-1").await["flags"]["checkout_v2"],
        "treatment"
    );
    let metrics = String::from_utf8_lossy(agent.send(get("/metrics")).await.body()).into_owned();
    assert!(
        metrics.contains("edge_flags_reloads_total{result=\"refused\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("edge_flags_reloads_total{result=\"loaded\"} 1"),
        "{metrics}"
    );
}

/// An event that names no experiments carries its user's assignments in the
/// `experiments` record header (by `user_id`, else `anonymous_id`), with its bytes
/// unchanged; one that names its own carries none.
#[tokio::test(flavor = "multi_thread")]
async fn events_naming_no_experiments_carry_the_users_assignments() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("flags.toml");
    std::fs::write(
        &path,
        "[[flags]]\nname = \"checkout_v2\"\nvariants = [{ name = \"control\", percent = 90 }, { name = \"treatment\", percent = 10 }]\n\n\
         [[flags]]\nname = \"search_ranking\"\nvariants = [{ name = \"bm25\", percent = 50 }, { name = \"learned\", percent = 50 }]\n",
    )
    .expect("write");
    let agent = Agent::start_in(
        "assigned",
        "",
        &format!("[flags]\nfile = {:?}\n", path.display().to_string()),
        tempfile::tempdir().expect("dir"),
        &[],
    )
    .await;
    let plain = r#"{"user_id":"user-1","product_id":"p1"}"#;
    let named = r#"{"user_id":"user-1","product_id":"p2","context":{"experiments":{"checkout_v2":"treatment"}}}"#;
    for body in [plain, named] {
        let response = agent
            .send(post("/api/events/product-view", body, &[JSON]))
            .await;
        assert_eq!(response.status(), StatusCode::ACCEPTED);
    }
    let batch = "{\"type\":\"product_view\",\"anonymous_id\":\"user-2\",\"product_id\":\"p3\"}\n";
    let response = agent
        .send(post("/api/events/batch", batch, &[NDJSON]))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let records = read_topic(&agent.topic("product-views"), 3, WAIT).await;
    assert_eq!(records.len(), 3);
    let of = |product: &str| {
        records
            .iter()
            .find(|r| String::from_utf8_lossy(&r.payload).contains(product))
            .expect("record")
    };
    // The documented test vectors: user-1 is in buckets 6666 and 9624.
    assert_eq!(
        of("p1").header("experiments"),
        "checkout_v2=control,search_ranking=learned"
    );
    assert_eq!(of("p1").payload, plain.as_bytes(), "bytes unchanged");
    assert!(
        !of("p2").headers.contains_key("experiments"),
        "the client named its own"
    );
    let set = ingest_core::flags::FlagSet::new(vec![
        flag("checkout_v2", &[("control", 90.0), ("treatment", 10.0)]),
        flag("search_ranking", &[("bm25", 50.0), ("learned", 50.0)]),
    ])
    .expect("valid");
    assert_eq!(
        Some(of("p3").header("experiments").to_owned()),
        set.header_value("user-2"),
        "assigned by the anonymous id"
    );
}

/// The `schema` header names the version of the contract an event needs: version 2 of
/// the product view for one that sets a field version 2 added, version 1 otherwise.
#[tokio::test(flavor = "multi_thread")]
async fn the_schema_header_names_the_version_the_event_needs() {
    let agent = Agent::start("versions", "", "").await;
    let v1 = r#"{"user_id":"u1","product_id":"p1","variant":null}"#;
    let v2 = r#"{"user_id":"u1","product_id":"p2","list_id":"search-results","position":4}"#;
    for body in [v1, v2] {
        let response = agent
            .send(post("/api/events/product-view", body, &[JSON]))
            .await;
        assert_eq!(response.status(), StatusCode::ACCEPTED);
    }
    let bad = agent
        .send(post(
            "/api/events/product-view",
            r#"{"user_id":"u1","product_id":"p3","position":-1}"#,
            &[JSON],
        ))
        .await;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    assert_eq!(json(&bad)["error"]["field"], "position");
    let records = read_topic(&agent.topic("product-views"), 2, WAIT).await;
    assert_eq!(records.len(), 2);
    for (body, schema) in [(v1, "json:product_view/v1"), (v2, "json:product_view/v2")] {
        let record = records
            .iter()
            .find(|r| r.payload == body.as_bytes())
            .expect("the record, byte for byte");
        assert_eq!(record.header("schema"), schema);
    }
}

fn flag(name: &str, variants: &[(&str, f64)]) -> ingest_core::flags::FlagDef {
    ingest_core::flags::FlagDef {
        name: name.to_owned(),
        salt: None,
        variants: variants
            .iter()
            .map(|(name, percent)| ingest_core::flags::VariantDef {
                name: (*name).to_owned(),
                percent: *percent,
            })
            .collect(),
    }
}

/// Awaits the futures one after the other.
async fn futures_all<F: std::future::Future>(futures: [F; 4]) -> Vec<F::Output> {
    let mut out = Vec::with_capacity(4);
    for future in futures {
        out.push(future.await);
    }
    out
}
