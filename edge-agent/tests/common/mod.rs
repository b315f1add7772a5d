//! Helpers for the edge agent's end-to-end tests: run the real binary, talk HTTP to it
//! (HTTP/1.1, h2c, TLS, Unix socket), and read Kafka back.

#![allow(dead_code, unreachable_pub, unused_imports)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use ingest_core::{ensure_topics, IngestConfig};
pub use testkit::{event_ids, unique, Consumed};

pub mod pki;
use tokio::io::{AsyncRead, AsyncWrite};

/// The Kafka the tests use, from `KAFKA_BOOTSTRAP`.
///
/// # Panics
///
/// When it is not set: these tests need a real broker and say how to get one.
pub fn brokers() -> String {
    testkit::bootstrap("KAFKA_BOOTSTRAP", "scripts/kafka start")
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

/// A running agent process.
pub struct Agent {
    pub child: Child,
    pub addr: String,
    pub dir: tempfile::TempDir,
    pub log: PathBuf,
    pub prefix: String,
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The TOML of an agent whose topics are private to one test (`<prefix>-<topic>`);
/// `server` holds extra lines of the `[server]` table.
pub fn base_config(brokers: &str, prefix: &str, port: u16, server: &str) -> String {
    let defaults = [
        ("header_timeout_ms", "1000"),
        ("body_timeout_ms", "1000"),
        ("ack_timeout_ms", "20000"),
        ("shutdown_timeout_ms", "30000"),
    ]
    .iter()
    .filter(|(key, _)| !server.contains(key))
    .map(|(key, value)| format!("{key} = {value}\n"))
    .collect::<String>();
    format!(
        r#"source = "agent-test"
[server]
listen = "127.0.0.1:{port}"
{defaults}{server}
[kafka]
brokers = "{brokers}"
linger_ms = 2
[topics.product_view]
name = "{prefix}-product-views"
partitions = 3
replication_factor = 1
[topics.cart]
name = "{prefix}-cart-events"
partitions = 3
replication_factor = 1
[topics.purchase]
name = "{prefix}-purchases"
partitions = 3
replication_factor = 1
[topics.search]
name = "{prefix}-search-events"
partitions = 3
replication_factor = 1
[topics.dead_letter]
name = "{prefix}-events-dlq"
partitions = 1
replication_factor = 1
[topics.custom]
name = "{prefix}-custom-events"
partitions = 3
replication_factor = 1
"#
    )
}

/// Creates the topics of an agent configuration.
pub async fn create_topics(config_toml: &str) {
    let config: edge_agent::config::AgentConfig = toml::from_str(config_toml).expect("config");
    let settings: ingest_core::Settings = IngestConfig::validate(&config.ingest()).expect("valid");
    ensure_topics(&settings, Duration::from_secs(30))
        .await
        .expect("topics");
}

impl Agent {
    /// Starts the agent with `server` lines in `[server]` and `extra` appended to the
    /// base configuration.
    pub async fn start(test: &str, server: &str, extra: &str) -> Agent {
        Self::start_in(test, server, extra, tempfile::tempdir().expect("dir"), &[]).await
    }

    /// Starts the agent in `dir` (its log and config live there), with extra flags.
    pub async fn start_in(
        test: &str,
        server: &str,
        extra: &str,
        dir: tempfile::TempDir,
        flags: &[&str],
    ) -> Agent {
        let prefix = unique(test);
        let port = free_port();
        let config = format!(
            "{}\n{extra}",
            base_config(&brokers(), &prefix, port, server)
        );
        create_topics(&config).await;
        Self::launch(prefix, port, config, dir, flags).await
    }

    /// Starts an agent process on a given configuration.
    pub async fn launch(
        prefix: String,
        port: u16,
        config: String,
        dir: tempfile::TempDir,
        flags: &[&str],
    ) -> Agent {
        let file = dir.path().join("agent.toml");
        std::fs::write(&file, &config).expect("config file");
        let log = dir
            .path()
            .join(format!("agent-{}.log", uuid::Uuid::now_v7().simple()));
        let child = Command::new(env!("CARGO_BIN_EXE_edge-agent"))
            .arg("--config")
            .arg(&file)
            .args(flags)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("starts edge-agent");
        let mut agent = Agent {
            child,
            addr: format!("127.0.0.1:{port}"),
            dir,
            log,
            prefix,
        };
        agent.wait_ready().await;
        agent
    }

    /// Waits for the agent's "ready" log line (its listeners are bound by then).
    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().expect("status") {
                panic!("edge-agent exited at start ({status}): {}", self.log_text());
            }
            if self.log_text().contains("edge agent ready") {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "edge-agent did not start: {}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn topic(&self, name: &str) -> String {
        format!("{}-{name}", self.prefix)
    }

    /// One request on a new HTTP/1.1 connection.
    pub async fn send(&self, request: Request<Full<Bytes>>) -> Response<Bytes> {
        let stream = tokio::net::TcpStream::connect(&self.addr)
            .await
            .expect("connect");
        send_on(stream, request).await.expect("answer")
    }

    /// Sends SIGTERM and waits for the exit.
    pub fn terminate(&mut self, timeout: Duration) -> ExitStatus {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill")
            .success());
        self.wait_exit(timeout)
    }

    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("status") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "edge-agent did not exit: {}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// A POST of `body` to `path` with `headers`.
pub fn post(path: &str, body: impl Into<Bytes>, headers: &[(&str, &str)]) -> Request<Full<Bytes>> {
    let mut builder = Request::post(path).header("host", "agent");
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(Full::new(body.into())).expect("request")
}

/// A GET of `path`.
pub fn get(path: &str) -> Request<Full<Bytes>> {
    Request::get(path)
        .header("host", "agent")
        .body(Full::new(Bytes::new()))
        .expect("request")
}

/// One request over HTTP/1.1 on `stream`.
pub async fn send_on<S>(
    stream: S,
    request: Request<Full<Bytes>>,
) -> Result<Response<Bytes>, hyper::Error>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    collect(sender.send_request(request).await?).await
}

/// One request over HTTP/2 (prior knowledge, or after ALPN) on `stream`.
pub async fn send_h2<S>(
    stream: S,
    request: Request<Full<Bytes>>,
) -> Result<Response<Bytes>, hyper::Error>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    collect(sender.send_request(request).await?).await
}

async fn collect(
    response: Response<hyper::body::Incoming>,
) -> Result<Response<Bytes>, hyper::Error> {
    let (parts, body) = response.into_parts();
    let bytes = body.collect().await?.to_bytes();
    Ok(Response::from_parts(parts, bytes))
}

/// The answer's JSON.
pub fn json(response: &Response<Bytes>) -> serde_json::Value {
    serde_json::from_slice(response.body()).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}",
            String::from_utf8_lossy(response.body())
        )
    })
}

/// Every record of `topic`, once `expected` arrived and a short quiet followed.
pub async fn read_topic(topic: &str, expected: usize, timeout: Duration) -> Vec<Consumed> {
    testkit::read_topic(&brokers(), topic, expected, timeout).await
}

/// A path in the test's directory.
pub fn path_in(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}
