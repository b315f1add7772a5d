//! Helpers for the processor's integration tests: real Kafka, PostgreSQL, Redis and
//! OpenSearch, addresses from the environment, and the `processor` binary run as a
//! process.

#![allow(dead_code, unreachable_pub)]

pub mod harness;
pub mod storefront;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The sessions' inactivity timeout the tests run with: short, so users have several.
pub const SESSION_TIMEOUT_SECS: i64 = 30;

/// A service address from `var`; panics with how to start the service when unset.
pub fn service(var: &str, how: &str) -> String {
    match std::env::var(var) {
        Ok(v) if !v.trim().is_empty() => v,
        _ => panic!(
            "{var} is not set. The processor's service tests need a real Kafka, PostgreSQL, Redis and OpenSearch: \
             run `{how}` and export {var}=<the address it prints>, or run scripts/test, which does all of it."
        ),
    }
}

/// The three services of a test.
pub struct Services {
    pub kafka: String,
    pub postgres_admin: String,
    pub redis: String,
}

impl Services {
    pub fn from_env() -> Services {
        Services {
            kafka: service("KAFKA_BOOTSTRAP", "scripts/kafka start"),
            postgres_admin: service("POSTGRES_URL", "scripts/services start"),
            redis: service("REDIS_URL", "scripts/services start"),
        }
    }
}

/// The OpenSearch address (`OPENSEARCH_URL`, `http://host:port`) as `host:port`.
pub fn opensearch() -> String {
    let url = service("OPENSEARCH_URL", "scripts/services start");
    url.trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned()
}

/// One HTTP/1.1 request with a JSON body: (status, body); `None` when the server
/// cannot be reached or does not answer within 30 s.
pub async fn http(addr: &str, method: &str, path: &str, body: &str) -> Option<(u16, String)> {
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut raw))
        .await
        .ok()?
        .ok()?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status: u16 = text.split(' ').nth(1)?.parse().ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Some((status, body))
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// The search index of a scenario, in the real OpenSearch.
pub struct SearchIndex {
    pub addr: String,
    pub name: String,
}

impl SearchIndex {
    /// Documents in the index after a refresh (`None`: no such index yet).
    pub async fn count(&self) -> Option<i64> {
        let (status, _) = http(&self.addr, "POST", &format!("/{}/_refresh", self.name), "").await?;
        if status == 404 {
            return None;
        }
        let (status, body) = http(&self.addr, "GET", &format!("/{}/_count", self.name), "").await?;
        assert_eq!(status, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).expect("JSON");
        v["count"].as_i64()
    }

    /// A `_search` answer for `query` (a JSON body).
    pub async fn search(&self, query: &serde_json::Value) -> serde_json::Value {
        let (status, body) = http(
            &self.addr,
            "POST",
            &format!("/{}/_search", self.name),
            &query.to_string(),
        )
        .await
        .expect("OpenSearch answers");
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).expect("JSON")
    }

    /// Waits until the index holds `want` documents, then 2 s more to let a surplus show;
    /// returns the final count.
    pub async fn settled(&self, want: i64, timeout: Duration) -> i64 {
        let deadline = Instant::now() + timeout;
        let mut last = None;
        while Instant::now() < deadline {
            last = self.count().await;
            if last == Some(want) {
                tokio::time::sleep(Duration::from_secs(2)).await;
                return self.count().await.unwrap_or(0);
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        panic!("the search index holds {last:?} documents, expected {want}");
    }
}

/// A plain (no TLS) connection to the PostgreSQL at `url` (`POSTGRES_URL`).
pub async fn admin_client(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("PostgreSQL reachable at POSTGRES_URL");
    tokio::spawn(connection);
    client
}

/// Creates the database `database` on the PostgreSQL at `admin_url` (`POSTGRES_URL`)
/// and returns its URL: the admin URL with the database replaced, its query kept.
pub async fn create_database(admin_url: &str, database: &str) -> String {
    admin_client(admin_url)
        .await
        .batch_execute(&format!("create database {database}"))
        .await
        .expect("create database");
    let (base, query) = match admin_url.split_once('?') {
        Some((base, query)) => (base, format!("?{query}")),
        None => (admin_url, String::new()),
    };
    match base.rfind('/') {
        Some(i) => format!("{}/{database}{query}", &base[..i]),
        None => panic!("POSTGRES_URL has no database"),
    }
}

/// Everything private to one test: topics, consumer group, database, Redis prefix.
pub struct Scenario {
    pub services: Services,
    pub name: String,
    pub postgres: String,
    pub topics: [String; 6],
    pub log_dir: PathBuf,
}

impl Scenario {
    /// Creates the topics (4 partitions each, 1 for the dead letters) and a database with
    /// the processor's schema, `catalog` products and the given rates.
    pub async fn new(test: &str, catalog: &[(String, String)], rates: &[(&str, f64)]) -> Scenario {
        let services = Services::from_env();
        let name = format!("{test}_{}", uuid::Uuid::now_v7().simple());
        let topics = [
            format!("{name}-product-views"),
            format!("{name}-cart-events"),
            format!("{name}-purchases"),
            format!("{name}-search-events"),
            format!("{name}-events-dlq"),
            format!("{name}-user-recommendations"),
        ];
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", &services.kafka)
            .create()
            .expect("admin client");
        let new: Vec<NewTopic<'_>> = topics
            .iter()
            .enumerate()
            .map(|(i, t)| NewTopic::new(t, if i >= 4 { 1 } else { 4 }, TopicReplication::Fixed(1)))
            .collect();
        for result in admin
            .create_topics(
                &new,
                &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
            )
            .await
            .expect("create topics")
        {
            result.expect("topic created");
        }

        let postgres = create_database(&services.postgres_admin, &name.to_ascii_lowercase()).await;
        processor::migrate(&postgres)
            .await
            .expect("migrations apply");
        let (client, connection) = tokio_postgres::connect(&postgres, tokio_postgres::NoTls)
            .await
            .expect("test database");
        tokio::spawn(connection);
        for (id, name) in catalog {
            client
                .execute(
                    "insert into products (id, name, category) values ($1, $2, 'test')",
                    &[id, name],
                )
                .await
                .expect("insert product");
        }
        for (currency, rate) in rates {
            client
                .execute(
                    "insert into currency_rates values ($1, $2)",
                    &[currency, rate],
                )
                .await
                .expect("insert rate");
        }
        let log_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(&name);
        std::fs::create_dir_all(&log_dir).expect("log dir");
        Scenario {
            services,
            name,
            postgres,
            topics,
            log_dir,
        }
    }

    /// The scenario's search index (named after it) in the OpenSearch of `OPENSEARCH_URL`.
    pub fn search_index(&self) -> SearchIndex {
        SearchIndex {
            addr: opensearch(),
            name: self.name.to_ascii_lowercase(),
        }
    }

    /// Environment that turns the search sink on, writing to [`Scenario::search_index`]
    /// at `addr` (`host:port`).
    pub fn search_env(&self, addr: &str) -> Vec<(String, String)> {
        vec![
            ("PROCESSOR_SEARCH__ENABLED".to_owned(), "true".to_owned()),
            ("PROCESSOR_SEARCH__URL".to_owned(), format!("http://{addr}")),
            (
                "PROCESSOR_SEARCH__INDEX".to_owned(),
                self.name.to_ascii_lowercase(),
            ),
            ("PROCESSOR_SEARCH__BATCH_SIZE".to_owned(), "500".to_owned()),
            (
                "PROCESSOR_SEARCH__FLUSH_INTERVAL_MS".to_owned(),
                "200".to_owned(),
            ),
            (
                "PROCESSOR_SEARCH__INITIAL_BACKOFF_MS".to_owned(),
                "100".to_owned(),
            ),
            (
                "PROCESSOR_SEARCH__MAX_BACKOFF_MS".to_owned(),
                "1000".to_owned(),
            ),
        ]
    }

    /// A connection to the scenario's database.
    /// A connection to the scenario's database.
    pub async fn database(&self) -> tokio_postgres::Client {
        let (client, connection) = tokio_postgres::connect(&self.postgres, tokio_postgres::NoTls)
            .await
            .expect("PostgreSQL");
        tokio::spawn(connection);
        client
    }

    /// Rows of a table of the scenario's database.
    pub async fn rows(&self, table: &str) -> i64 {
        self.database()
            .await
            .query_one(&format!("select count(*) from {table}"), &[])
            .await
            .expect("count")
            .get(0)
    }

    /// Records committed so far in all partitions (the sum of the committed offsets; the
    /// scenario's topics are fresh, so that is every record read and committed).
    pub async fn committed_records(&self) -> i64 {
        self.database()
            .await
            .query_one(
                "select coalesce(sum(next_offset), 0)::bigint from consumer_offsets",
                &[],
            )
            .await
            .expect("committed offsets")
            .get(0)
    }

    /// Waits until at least `want` records are committed.
    pub async fn wait_committed(&self, want: i64, timeout: Duration) {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let n = self.committed_records().await;
            if n >= want {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{n} of {want} records committed after {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Runs `sql` in the scenario's database (to change its schema under the processor).
    pub async fn execute(&self, sql: &str) {
        self.database().await.batch_execute(sql).await.expect(sql);
    }

    /// Starts a processor instance; `instance` names its log file.
    pub fn start(&self, instance: &str) -> Processor {
        self.start_with(instance, &[])
    }

    /// Starts a processor instance with extra environment variables.
    pub fn start_with(&self, instance: &str, env: &[(&str, &str)]) -> Processor {
        self.start_with_stores(instance, &self.postgres, &self.services.redis, env)
    }

    /// Starts a processor instance on the given PostgreSQL and Redis URLs (e.g. with TLS
    /// parameters) with extra environment variables.
    pub fn start_with_stores(
        &self,
        instance: &str,
        postgres: &str,
        redis: &str,
        env: &[(&str, &str)],
    ) -> Processor {
        let port = free_port();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_dir.join(format!("{instance}.log")))
            .expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_processor"))
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--brokers", &self.services.kafka])
            .args(["--postgres", postgres])
            .args(["--redis", redis])
            .env("PROCESSOR_KAFKA__GROUP_ID", &self.name)
            .env("PROCESSOR_KAFKA__TOPICS__PRODUCT_VIEW", &self.topics[0])
            .env("PROCESSOR_KAFKA__TOPICS__CART", &self.topics[1])
            .env("PROCESSOR_KAFKA__TOPICS__PURCHASE", &self.topics[2])
            .env("PROCESSOR_KAFKA__TOPICS__SEARCH", &self.topics[3])
            .env("PROCESSOR_KAFKA__TOPICS__DEAD_LETTER", &self.topics[4])
            .env("PROCESSOR_RECOMMENDATIONS__TOPIC", &self.topics[5])
            .env("PROCESSOR_RECOMMENDATIONS__PUBLISH_INTERVAL_SECS", "1")
            .env(
                "PROCESSOR_RECOMMENDATIONS__PARTNERS_PER_PRODUCT",
                storefront::PARTNERS_PER_PRODUCT.to_string(),
            )
            .env("PROCESSOR_KAFKA__SESSION_TIMEOUT_MS", "6000")
            .env("PROCESSOR_REDIS__KEY_PREFIX", &self.name)
            .env("PROCESSOR_WINDOWS__ALLOWED_LATENESS_SECS", "120")
            .env("PROCESSOR_CHECKPOINT__INTERVAL_MS", "200")
            .env(
                "PROCESSOR_SESSIONS__INACTIVITY_TIMEOUT_SECS",
                SESSION_TIMEOUT_SECS.to_string(),
            )
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("processor binary starts");
        Processor {
            child,
            addr: format!("127.0.0.1:{port}"),
        }
    }

    /// Produces records straight to Kafka as ingest-core writes them.
    pub async fn produce(&self, records: &[storefront::Record]) {
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", &self.services.kafka)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5")
            .create()
            .expect("producer");
        let mut deliveries = Vec::with_capacity(records.len());
        for r in records {
            let topic = &self.topics[r.topic];
            let mut headers = OwnedHeaders::new();
            for (k, v) in &r.headers {
                headers = headers.insert(Header {
                    key: k,
                    value: Some(v),
                });
            }
            let record = FutureRecord::to(topic)
                .key(&r.key)
                .payload(&r.value)
                .headers(headers);
            deliveries.push(producer.send_result(record).expect("queued"));
        }
        for d in deliveries {
            d.await.expect("delivered").expect("acknowledged");
        }
    }

    /// Produces records as a foreign producer could write them (any key, value and
    /// header bytes); `topic` indexes [`Scenario::topics`].
    pub async fn produce_raw(&self, records: &[testkit::RawRecord]) {
        let brokers = self.services.kafka.clone();
        let topics = self.topics.clone();
        let records = records.to_vec();
        tokio::task::spawn_blocking(move || {
            let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
            testkit::produce_raw(&brokers, &topics, &records);
        })
        .await
        .expect("the producing thread finishes");
    }

    /// Dead letters written so far: (error_code header, event_id header).
    pub fn dead_letters(&self, expected: usize, timeout: Duration) -> Vec<(String, String)> {
        testkit::consume(&self.services.kafka, &self.topics[4], expected, timeout)
            .into_iter()
            .map(|r| {
                (
                    r.header("error_code").to_owned(),
                    r.header("event_id").to_owned(),
                )
            })
            .collect()
    }

    /// Recommendation records published so far: (key, value).
    pub fn published_recommendations(
        &self,
        expected: usize,
        timeout: Duration,
    ) -> Vec<(String, serde_json::Value)> {
        testkit::consume(&self.services.kafka, &self.topics[5], expected, timeout)
            .into_iter()
            .map(|r| {
                (
                    String::from_utf8_lossy(r.key.as_deref().unwrap_or_default()).into_owned(),
                    serde_json::from_slice(&r.payload).expect("a JSON record"),
                )
            })
            .collect()
    }
}

impl Scenario {
    /// Closes every PostgreSQL connection to the scenario's database (as a server restart
    /// would), and every Redis client connection.
    pub async fn break_store_connections(&self) {
        let (client, connection) =
            tokio_postgres::connect(&self.services.postgres_admin, tokio_postgres::NoTls)
                .await
                .expect("PostgreSQL");
        tokio::spawn(connection);
        let database = self.name.to_ascii_lowercase();
        let killed = client
            .query(
                "select pg_terminate_backend(pid) from pg_stat_activity where datname = $1 and pid <> pg_backend_pid()",
                &[&database],
            )
            .await
            .expect("terminate backends");
        assert!(
            !killed.is_empty(),
            "the processor holds a PostgreSQL connection"
        );
        let redis = redis::Client::open(self.services.redis.as_str()).expect("Redis URL");
        let mut conn = redis
            .get_multiplexed_async_connection()
            .await
            .expect("Redis");
        let _: i64 = redis::cmd("CLIENT")
            .arg("KILL")
            .arg("TYPE")
            .arg("normal")
            .arg("SKIPME")
            .arg("yes")
            .query_async(&mut conn)
            .await
            .expect("CLIENT KILL");
    }

    /// Inserts a product into the catalog.
    pub async fn add_product(&self, id: &str) {
        let (client, connection) = tokio_postgres::connect(&self.postgres, tokio_postgres::NoTls)
            .await
            .expect("PostgreSQL");
        tokio::spawn(connection);
        client
            .execute("insert into products (id, name) values ($1, 'new')", &[&id])
            .await
            .expect("insert product");
    }
}

/// A running processor process.
pub struct Processor {
    pub child: Child,
    pub addr: String,
}

impl Processor {
    /// SIGKILL.
    pub fn kill9(&mut self) {
        self.child.kill().expect("kill -9");
        self.child.wait().expect("reaped");
    }

    /// Sends `signal` (a name such as `STOP` or `CONT`).
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{signal}");
    }

    /// SIGTERM, then waits for the exit; returns whether it exited successfully.
    pub fn terminate(&mut self) -> bool {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.kill9();
        false
    }

    /// Waits up to `timeout` for the process to exit by itself; its status, or `None`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        None
    }

    /// GET `path`: (status, body). Generous time-out: under a loaded test machine an
    /// analytics answer read from Redis during a checkpoint can take seconds.
    pub async fn get(&self, path: &str) -> Option<(u16, String)> {
        let mut stream = tokio::net::TcpStream::connect(&self.addr).await.ok()?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut raw = Vec::new();
        tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut raw))
            .await
            .ok()?
            .ok()?;
        let text = String::from_utf8_lossy(&raw).into_owned();
        let status: u16 = text.split(' ').nth(1)?.parse().ok()?;
        let body = text.split_once("\r\n\r\n")?.1.to_owned();
        Some((status, body))
    }

    /// Waits until `/health/ready` answers 200.
    pub async fn wait_ready(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some((200, _)) = self.get("/health/ready").await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("processor at {} not ready after {timeout:?}", self.addr);
    }
}

impl Drop for Processor {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Stops the `scripts/services` servers `names` (`postgres`, `redis`), waits `down`, and
/// starts them again: the real server processes, on the same ports. The script must be
/// the one serving `POSTGRES_URL` and `REDIS_URL` (same `SERVICES_STATE_DIR`; scripts/test
/// passes it on).
pub fn restart_services(names: &[&str], down: Duration) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/services");
    let env = Command::new(script)
        .arg("env")
        .output()
        .expect("scripts/services runs");
    let lines = String::from_utf8_lossy(&env.stdout).into_owned();
    for var in ["POSTGRES_URL", "REDIS_URL"] {
        let want = format!("{var}={}", service(var, "scripts/services start"));
        assert!(
            lines.lines().any(|l| l == want),
            "scripts/services (SERVICES_STATE_DIR={:?}) does not serve {want} but:\n{lines}\
             set SERVICES_STATE_DIR to the state dir of the scripts/services that runs the test's servers",
            std::env::var("SERVICES_STATE_DIR").unwrap_or_default()
        );
    }
    let run = |command: &str| {
        let status = Command::new(script)
            .arg(command)
            .args(names)
            .stdout(Stdio::null())
            .status()
            .expect("scripts/services runs");
        assert!(
            status.success(),
            "scripts/services {command} {names:?} failed"
        );
    };
    run("stop");
    std::thread::sleep(down);
    run("start");
}

/// A port nothing listens on (at the moment of asking).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The `(product_id, score)` list of a recommendations answer or record.
pub fn ranked_products(value: &serde_json::Value) -> Vec<(String, i64)> {
    value["products"]
        .as_array()
        .expect("products")
        .iter()
        .map(|p| {
            (
                p["product_id"].as_str().expect("id").to_owned(),
                p["score"].as_i64().expect("score"),
            )
        })
        .collect()
}
