//! Who may send what, end to end without services (no broker listens on the configured
//! address; the agent accepts events into its queue all the same): browser keys bound to
//! origins and to the types a page may send, the server's own Origin check, per-client
//! rate limits taken before the body is read, the admin listener, and the Unix socket's
//! mode.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

#[path = "common/pki.rs"]
mod pki;

/// A running agent, killed when dropped.
struct Agent {
    child: Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_addr() -> String {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    format!("127.0.0.1:{port}")
}

fn wait_for(addr: &str, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        assert!(
            child.try_wait().expect("status").is_none(),
            "the agent exited"
        );
        assert!(
            Instant::now() < deadline,
            "the agent never listened on {addr}"
        );
        if TcpStream::connect(addr).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Starts the agent with `config` (TOML) and waits until `addr` (and the others in
/// `also`) accept connections.
fn start(config: &str, addr: &str, also: &[&str]) -> Agent {
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("agent.toml");
    std::fs::write(
        &file,
        format!("[kafka]\nbrokers = \"127.0.0.1:1\"\n[log]\nlevel = \"error\"\n{config}"),
    )
    .expect("config");
    let mut child = Command::new(env!("CARGO_BIN_EXE_edge-agent"))
        .args(["--config", file.to_str().expect("utf-8"), "--listen", addr])
        .env("EDGE_AGENT_SERVER__SHUTDOWN_TIMEOUT_MS", "1000")
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("starts");
    wait_for(addr, &mut child);
    for other in also {
        wait_for(other, &mut child);
    }
    Agent {
        child,
        addr: addr.to_owned(),
        _dir: dir,
    }
}

/// An answer: status and body.
#[derive(Debug)]
struct Answer {
    status: u16,
    body: String,
}

impl Answer {
    fn code(&self) -> String {
        let value: serde_json::Value = serde_json::from_str(&self.body).unwrap_or_default();
        value["error"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }
}

/// Sends one HTTP/1.1 request (`Connection: close`) and reads the answer.
fn send(addr: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Answer {
    let mut tcp = TcpStream::connect(addr).expect("connects");
    tcp.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: agent\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    tcp.write_all(request.as_bytes()).expect("sends");
    read_answer(&mut tcp)
}

/// Reads an answer to its end (the server closes: `Connection: close`).
fn read_answer(stream: &mut impl Read) -> Answer {
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Answer { status, body }
}

const VIEW: &str = r#"{"user_id":"u1","product_id":"p1"}"#;
const PURCHASE: &str = r#"{"user_id":"u1","order_id":"o1","currency":"EUR","total":1.0,"items":[{"product_id":"p1","quantity":1,"price":1.0}]}"#;
const SHOP: &str = "https://shop.example";
const BROWSER_KEY: &str = "pk-0123456789abcdef";
const SERVER_KEY: &str = "sk-0123456789abcdef";

const KEYS: &str = r#"
[[auth.keys]]
source = "shop"
key = "pk-0123456789abcdef"
kind = "browser"
origins = ["https://shop.example"]

[[auth.keys]]
source = "shop"
key = "sk-0123456789abcdef"
"#;

#[test]
fn a_browser_key_sends_what_a_page_sees_from_its_origins_only() {
    let agent = start(KEYS, &free_addr(), &[]);
    let bearer = format!("Bearer {BROWSER_KEY}");
    let view = "/api/events/product-view";
    let post = |path: &str, headers: &[(&str, &str)], body: &str| {
        send(&agent.addr, "POST", path, headers, body)
    };
    let json = ("content-type", "application/json");

    // From its origin, in the header or (sendBeacon) in the query.
    let ok = post(
        view,
        &[json, ("authorization", &bearer), ("origin", SHOP)],
        VIEW,
    );
    assert_eq!(ok.status, 202, "{ok:?}");
    let beacon = post(
        &format!("{view}?key={BROWSER_KEY}"),
        &[
            ("content-type", "text/plain;charset=UTF-8"),
            ("origin", SHOP),
        ],
        VIEW,
    );
    assert_eq!(beacon.status, 202, "{beacon:?}");

    // Not from another origin.
    let foreign = post(
        view,
        &[
            json,
            ("authorization", &bearer),
            ("origin", "https://evil.example"),
        ],
        VIEW,
    );
    assert_eq!(
        (foreign.status, foreign.code().as_str()),
        (403, "origin_not_allowed"),
        "{foreign:?}"
    );
    // Without an Origin (no browser sends a POST so), the origin binding has nothing
    // to check: a client that is no browser could write any Origin anyway.
    let bare = post(view, &[json, ("authorization", &bearer)], VIEW);
    assert_eq!(bare.status, 202, "{bare:?}");
    let null = post(
        view,
        &[json, ("authorization", &bearer), ("origin", "null")],
        VIEW,
    );
    assert_eq!(
        (null.status, null.code().as_str()),
        (403, "origin_not_allowed"),
        "{null:?}"
    );

    // No purchases: refused on the endpoint, and one by one inside a batch.
    let purchase = post(
        "/api/events/purchase",
        &[json, ("authorization", &bearer), ("origin", SHOP)],
        PURCHASE,
    );
    assert_eq!(
        (purchase.status, purchase.code().as_str()),
        (403, "type_not_allowed"),
        "{purchase:?}"
    );
    let batch = format!(
        "{{\"type\":\"product_view\",{}\n{{\"type\":\"purchase\",{}\n",
        &VIEW[1..],
        &PURCHASE[1..]
    );
    let answer = post(
        "/api/events/batch",
        &[
            ("content-type", "application/x-ndjson"),
            ("authorization", &bearer),
            ("origin", SHOP),
        ],
        &batch,
    );
    assert_eq!(answer.status, 200, "{answer:?}");
    let result: serde_json::Value = serde_json::from_str(&answer.body).expect("json");
    assert_eq!(result["accepted"], 1, "{result}");
    assert_eq!(result["rejected"][0]["index"], 1, "{result}");
    assert_eq!(
        result["rejected"][0]["error"]["code"], "type_not_allowed",
        "{result}"
    );
    assert_eq!(result["rejected"][0]["error"]["field"], "type", "{result}");

    // The server key sends purchases, from servers (no Origin), but never in a URL.
    let server = format!("Bearer {SERVER_KEY}");
    let purchase = post(
        "/api/events/purchase",
        &[json, ("authorization", &server)],
        PURCHASE,
    );
    assert_eq!(purchase.status, 202, "{purchase:?}");
    let in_url = post(&format!("{view}?key={SERVER_KEY}"), &[json], VIEW);
    assert_eq!(
        (in_url.status, in_url.code().as_str()),
        (401, "unauthorized"),
        "{in_url:?}"
    );

    // The key's origin gets CORS headers on its preflight.
    let mut tcp = TcpStream::connect(&agent.addr).expect("connects");
    write!(
        tcp,
        "OPTIONS {view} HTTP/1.1\r\nHost: agent\r\nConnection: close\r\nOrigin: {SHOP}\r\n\
         Access-Control-Request-Method: POST\r\n\r\n"
    )
    .expect("sends");
    let mut raw = String::new();
    let _ = tcp.read_to_string(&mut raw);
    assert!(
        raw.to_ascii_lowercase()
            .contains("access-control-allow-origin: https://shop.example"),
        "{raw}"
    );
}

#[test]
fn without_keys_the_server_refuses_origins_not_allowed() {
    let agent = start(
        "[cors]\nallowed_origins = [\"https://shop.example\"]\n",
        &free_addr(),
        &[],
    );
    let post = |origin: Option<&str>| {
        let mut headers = vec![("content-type", "text/plain")];
        if let Some(origin) = origin {
            headers.push(("origin", origin));
        }
        send(
            &agent.addr,
            "POST",
            "/api/events/product-view",
            &headers,
            VIEW,
        )
    };
    assert_eq!(post(Some(SHOP)).status, 202);
    assert_eq!(post(None).status, 202, "servers send no Origin");
    let forged = post(Some("https://evil.example"));
    assert_eq!(
        (forged.status, forged.code().as_str()),
        (403, "origin_not_allowed"),
        "{forged:?}"
    );
    let null = post(Some("null"));
    assert_eq!(null.status, 403, "{null:?}");
}

#[test]
fn each_client_has_its_own_limit_and_is_refused_before_its_body() {
    let config = "[server]\ntrusted_proxies = [\"127.0.0.1\"]\n\
                  [rate_limit]\nper_client_per_sec = 1\nper_client_burst = 3\n";
    let agent = start(config, &free_addr(), &[]);
    let post = |client: &str| {
        send(
            &agent.addr,
            "POST",
            "/api/events/product-view",
            &[
                ("content-type", "application/json"),
                ("x-forwarded-for", client),
            ],
            VIEW,
        )
    };
    for _ in 0..3 {
        assert_eq!(post("203.0.113.1").status, 202);
    }
    let over = post("203.0.113.1");
    assert_eq!(
        (over.status, over.code().as_str()),
        (429, "rate_limited"),
        "{over:?}"
    );
    // Another visitor of the same storefront is not affected; a spoofed first hop
    // does not make a new client.
    assert_eq!(post("203.0.113.2").status, 202);
    assert_eq!(post("198.51.100.9, 203.0.113.1").status, 429);

    // Over its limit, a client is answered before it sends its body: the head
    // announces 1 MB that never comes, and the answer is immediate, not a 408.
    let mut tcp = TcpStream::connect(&agent.addr).expect("connects");
    tcp.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    write!(
        tcp,
        "POST /api/events/batch HTTP/1.1\r\nHost: agent\r\nContent-Type: application/x-ndjson\r\n\
         X-Forwarded-For: 203.0.113.1\r\nContent-Length: 1000000\r\n\r\n"
    )
    .expect("sends the head");
    let started = Instant::now();
    let mut head = [0u8; 12];
    tcp.read_exact(&mut head)
        .expect("an answer without the body");
    assert_eq!(&head, b"HTTP/1.1 429", "{}", String::from_utf8_lossy(&head));
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn the_admin_listener_serves_metrics_and_health_and_nothing_else() {
    let admin = free_addr();
    let agent = start(
        &format!("[server]\nadmin_listen = \"{admin}\"\n"),
        &free_addr(),
        &[&admin],
    );
    let get = |addr: &str, path: &str| send(addr, "GET", path, &[], "");
    assert_eq!(get(&admin, "/metrics").status, 200);
    assert_eq!(get(&admin, "/health/live").status, 200);
    assert_eq!(get(&agent.addr, "/metrics").status, 404);
    assert_eq!(get(&agent.addr, "/health/live").status, 404);
    let on_admin = send(
        &admin,
        "POST",
        "/api/events/product-view",
        &[("content-type", "application/json")],
        VIEW,
    );
    assert_eq!(on_admin.status, 404, "{on_admin:?}");
    let on_public = send(
        &agent.addr,
        "POST",
        "/api/events/product-view",
        &[("content-type", "application/json")],
        VIEW,
    );
    assert_eq!(on_public.status, 202, "{on_public:?}");
    assert!(
        get(&admin, "/metrics").body.contains("edge_http_requests"),
        "the admin listener renders the agent's metrics"
    );
}

#[test]
fn the_unix_socket_gets_its_configured_mode_whatever_the_umask() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("dir");
    for (mode, expected) in [(None, 0o660), (Some("0600"), 0o600)] {
        let socket = dir.path().join(format!("agent-{expected:o}.sock"));
        let mut config = format!("[server]\nunix_socket = \"{}\"\n", socket.display());
        if let Some(mode) = mode {
            config.push_str(&format!("unix_socket_mode = \"{mode}\"\n"));
        }
        let _agent = start(&config, &free_addr(), &[]);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !Path::new(&socket).exists() {
            assert!(
                Instant::now() < deadline,
                "no socket at {}",
                socket.display()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let got = std::fs::metadata(&socket)
            .expect("socket")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(got, expected, "{:o}", got);
    }
}

#[test]
fn bodies_in_flight_share_one_memory_budget() {
    let config = "[server]\nmax_body_bytes = 60000\nmax_body_memory_bytes = 100000\n";
    let agent = start(config, &free_addr(), &[]);
    let head = |length: usize| {
        format!(
            "POST /api/events/batch HTTP/1.1\r\nHost: agent\r\nConnection: close\r\n\
             Content-Type: application/x-ndjson\r\nContent-Length: {length}\r\n\r\n"
        )
    };
    // A slow upload announces 60,000 bytes and sends a few.
    let mut slow = TcpStream::connect(&agent.addr).expect("connects");
    slow.write_all(head(60_000).as_bytes()).expect("head");
    slow.write_all(b"{\"type\"").expect("a few bytes");
    std::thread::sleep(Duration::from_millis(300));

    // 60,000 more do not fit next to it: refused at once, before the body.
    let mut refused = TcpStream::connect(&agent.addr).expect("connects");
    refused
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    refused.write_all(head(60_000).as_bytes()).expect("head");
    let answer = read_answer(&mut refused);
    assert_eq!(
        (answer.status, answer.code().as_str()),
        (503, "unavailable"),
        "{answer:?}"
    );
    assert!(answer.body.contains("request bodies"), "{answer:?}");

    // So does a chunked body, as its chunks arrive past what is free. It is sent in
    // pieces, and no more once the answer is there (writing on would make the closed
    // connection reset, losing the answer).
    let mut chunked = TcpStream::connect(&agent.addr).expect("connects");
    chunked
        .set_read_timeout(Some(Duration::from_millis(50)))
        .expect("timeout");
    write!(
        chunked,
        "POST /api/events/batch HTTP/1.1\r\nHost: agent\r\nConnection: close\r\n\
         Content-Type: application/x-ndjson\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    .expect("sends the head");
    let mut raw = Vec::new();
    for _ in 0..25 {
        let piece = "x".repeat(4096);
        let _ = write!(chunked, "{:x}\r\n{piece}\r\n", piece.len());
        let mut buf = [0u8; 4096];
        if let Ok(n @ 1..) = chunked.read(&mut buf) {
            raw.extend_from_slice(&buf[..n]);
            break;
        }
    }
    chunked
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let _ = chunked.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw);
    assert!(
        text.starts_with("HTTP/1.1 503") && text.contains("request bodies"),
        "{text}"
    );

    // A small one fits beside it.
    let line = format!("{{\"type\":\"product_view\",{}\n", &VIEW[1..]);
    let small = send(
        &agent.addr,
        "POST",
        "/api/events/batch",
        &[("content-type", "application/x-ndjson")],
        &line,
    );
    assert_eq!(small.status, 200, "{small:?}");

    // Once the slow body has ended (here: its connection is gone), its bytes are free.
    drop(slow);
    std::thread::sleep(Duration::from_millis(300));
    let body = line.repeat(60_000 / line.len());
    let big = send(
        &agent.addr,
        "POST",
        "/api/events/batch",
        &[("content-type", "application/x-ndjson")],
        &body,
    );
    assert_eq!(big.status, 200, "{big:?}");
}

/// Client certificates tied to storefronts (`tls.clients`): a certificate carrying a
/// listed name sends as that storefront without a key, a key of another storefront on
/// it is refused, and a certificate naming no storefront is refused.
#[test]
fn a_client_certificate_sends_as_its_storefront_only() {
    use std::sync::Arc;
    let pki = pki::TestPki::new();
    let dir = tempfile::tempdir().expect("dir");
    let files = pki.write(dir.path());
    let config = format!(
        "[tls]\ncert_file = {:?}\nkey_file = {:?}\nclient_ca_file = {:?}\n\
         clients = [{{ name = \"checkout.shop-eu.internal\", source = \"shop-eu\" }}]\n\
         [[auth.keys]]\nsource = \"shop-us\"\nkey = \"{SERVER_KEY}\"\n\
         [rate_limit]\nper_key_per_sec = 1\nper_key_burst = 2\n",
        files.cert_file, files.key_file, files.ca_file,
    );
    let agent = start(&config, &free_addr(), &[]);

    let post = |client: &pki::ClientCert, headers: &[(&str, &str)]| {
        let config = pki.client_config(Some(client));
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("name");
        let tls = rustls::ClientConnection::new(Arc::new(config), name).expect("client");
        let tcp = TcpStream::connect(&agent.addr).expect("connects");
        tcp.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let mut stream = rustls::StreamOwned::new(tls, tcp);
        let mut request = String::from(
            "POST /api/events/product-view HTTP/1.1\r\nHost: agent\r\nConnection: close\r\n\
             Content-Type: application/json\r\n",
        );
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str(&format!("Content-Length: {}\r\n\r\n{VIEW}", VIEW.len()));
        stream.write_all(request.as_bytes()).expect("sends");
        read_answer(&mut stream)
    };

    let eu = pki.client("checkout.shop-eu.internal");
    let first = post(&eu, &[]);
    assert_eq!(first.status, 202, "no key needed: {first:?}");
    let mismatch = post(&eu, &[("authorization", &format!("Bearer {SERVER_KEY}"))]);
    assert_eq!(
        (mismatch.status, mismatch.code().as_str()),
        (403, "certificate_mismatch"),
        "{mismatch:?}"
    );
    let wrong_key = post(&eu, &[("authorization", "Bearer not-a-key-of-anyone")]);
    assert_eq!(wrong_key.status, 401, "{wrong_key:?}");
    // The certificate's storefront has its own key bucket (burst 2).
    assert_eq!(post(&eu, &[]).status, 202);
    assert_eq!(post(&eu, &[]).status, 429, "counted as shop-eu");

    let stranger = pki.client("laptop.internal");
    let refused = post(
        &stranger,
        &[("authorization", &format!("Bearer {SERVER_KEY}"))],
    );
    assert_eq!(
        (refused.status, refused.code().as_str()),
        (403, "certificate_not_allowed"),
        "{refused:?}"
    );
}
