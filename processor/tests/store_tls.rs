//! TLS from the processor to PostgreSQL and Redis, against the real servers of
//! `scripts/services`: PostgreSQL with `ssl=on`, Redis with a `tls-port`, both with a
//! certificate for 127.0.0.1/localhost issued by a private CA the script makes.
//!
//! Needs `POSTGRES_URL`, `SERVICES_CA_FILE` and `REDIS_TLS_URL` (printed by
//! `scripts/services start`; scripts/test exports them), and `KAFKA_BOOTSTRAP` for the
//! end-to-end test.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::harness::{settle_day, start_minute, Harness};
use common::storefront;
use common::{admin_client, create_database};
use processor::live::LiveView;
use processor::store::{PostgresUrl, SslMode, Store};
use processor::Error;

const CONNECT: Duration = Duration::from_secs(10);

/// A variable `scripts/services start` prints; panics with how to get it when unset.
fn tls_service(var: &str) -> String {
    match std::env::var(var) {
        Ok(v) if !v.trim().is_empty() => v,
        _ => panic!(
            "{var} is not set. The TLS tests need the PostgreSQL and Redis of `scripts/services start` \
             (it makes a private CA and starts both with TLS) and the lines it prints: export \
             SERVICES_CA_FILE, REDIS_TLS_URL and POSTGRES_URL from `scripts/services env`, or run \
             scripts/test, which does all of it."
        ),
    }
}

fn ca_file() -> String {
    tls_service("SERVICES_CA_FILE")
}

fn postgres_url() -> String {
    tls_service("POSTGRES_URL")
}

/// `url` with `params` added to its query.
fn with(url: &str, params: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}{params}")
}

/// A CA certificate that did not issue the servers' certificates, in a file of its own.
fn other_ca() -> PathBuf {
    let path = std::env::temp_dir().join(format!("other-ca-{}.pem", uuid::Uuid::now_v7()));
    let mut params = rcgen::CertificateParams::new(Vec::new()).expect("CA params");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let key = rcgen::KeyPair::generate().expect("key");
    let ca = params.self_signed(&key).expect("self-signed CA");
    std::fs::write(&path, ca.pem()).expect("write the other CA");
    path
}

/// Whether the server sees the connection opened from `url` (through the processor's
/// TLS connector) as TLS.
async fn server_sees_ssl(url: &str) -> bool {
    let url = PostgresUrl::parse(url).expect("a valid URL");
    let tls = url.connector().expect("a connector");
    let config = url.into_config();
    let client = match tls {
        None => {
            let (client, connection) = config
                .connect(tokio_postgres::NoTls)
                .await
                .expect("connects");
            tokio::spawn(connection);
            client
        }
        Some(tls) => {
            let (client, connection) = config.connect(tls).await.expect("connects over TLS");
            tokio::spawn(connection);
            client
        }
    };
    client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .expect("pg_stat_ssl")
        .get(0)
}

#[tokio::test]
async fn every_sslmode_but_disable_encrypts_as_the_server_sees_it() {
    let url = postgres_url();
    let ca = ca_file();
    for (params, ssl) in [
        (String::new(), true), // prefer, libpq's default: the server offers TLS
        ("sslmode=prefer".to_owned(), true),
        ("sslmode=require".to_owned(), true),
        (format!("sslmode=verify-ca&sslrootcert={ca}"), true),
        (format!("sslmode=verify-full&sslrootcert={ca}"), true),
        ("sslmode=disable".to_owned(), false),
    ] {
        let url = if params.is_empty() {
            url.clone()
        } else {
            with(&url, &params)
        };
        assert_eq!(server_sees_ssl(&url).await, ssl, "{params}");
    }
}

#[tokio::test]
async fn verify_full_with_the_services_ca_connects_and_migrates_a_database() {
    let admin = postgres_url();
    let database = format!("tls_{}", uuid::Uuid::now_v7().simple());
    // The services' URL without its query: this test sets the TLS parameters itself.
    let plain = admin.split('?').next().unwrap_or(&admin);
    let url = with(
        &create_database(plain, &database).await,
        &format!("sslmode=verify-full&sslrootcert={}", ca_file()),
    );
    assert_eq!(
        PostgresUrl::parse(&url).expect("valid").ssl_mode(),
        SslMode::VerifyFull
    );
    let applied = processor::migrate(&url).await.expect("migrations over TLS");
    assert!(!applied.is_empty());
    let store = Store::connect(&url, CONNECT).await.expect("connects");
    assert!(!store.is_closed());
    // The certificate names localhost too.
    let by_name = url.replace("127.0.0.1", "localhost");
    Store::connect(&by_name, CONNECT)
        .await
        .expect("connects to localhost with verify-full");
    drop(store);
    admin_client(plain)
        .await
        .batch_execute(&format!("drop database {database} with (force)"))
        .await
        .expect("drop database");
}

#[tokio::test]
async fn verify_full_against_another_ca_fails_and_names_the_certificate_problem() {
    let other = other_ca();
    for mode in ["verify-full", "verify-ca"] {
        let url = with(
            &postgres_url(),
            &format!("sslmode={mode}&sslrootcert={}", other.display()),
        );
        let Err(error) = Store::connect(&url, CONNECT).await else {
            panic!("{mode} with another CA connected");
        };
        let message = error.to_string();
        assert!(matches!(error, Error::Postgres(_)), "{message}");
        assert!(
            message.contains("invalid peer certificate") && message.contains("UnknownIssuer"),
            "{mode}: {message}"
        );
    }
    std::fs::remove_file(other).ok();
}

/// Host name `other.invalid` (not in the certificate) at the address of the services'
/// PostgreSQL (`hostaddr`): the chain checks out, the name does not.
#[tokio::test]
async fn verify_full_checks_the_host_name_and_verify_ca_does_not() {
    let url = postgres_url();
    let rest = url
        .split_once('@')
        .map(|(_, rest)| rest)
        .expect("POSTGRES_URL has a user");
    let port_and_db = rest.split_once(':').map(|(_, rest)| rest).expect("a port");
    let renamed = |mode: &str| {
        format!(
            "postgres://postgres@other.invalid:{port_and_db}?hostaddr=127.0.0.1\
             &sslmode={mode}&sslrootcert={}",
            ca_file()
        )
    };
    let Err(error) = Store::connect(&renamed("verify-full"), CONNECT).await else {
        panic!("verify-full accepted a certificate for another name");
    };
    assert!(
        error
            .to_string()
            .contains("not valid for name \"other.invalid\""),
        "{error}"
    );
    assert!(server_sees_ssl(&renamed("verify-ca")).await);
}

#[tokio::test]
async fn an_unusable_sslrootcert_is_a_configuration_error_naming_the_file() {
    let missing = std::env::temp_dir().join("no-such-ca-file.pem");
    let url = with(
        &postgres_url(),
        &format!("sslmode=verify-full&sslrootcert={}", missing.display()),
    );
    let Err(error) = Store::connect(&url, CONNECT).await else {
        panic!("connected without its CA file");
    };
    assert!(matches!(error, Error::Config(_)), "{error}");
    assert!(
        error.to_string().contains(&missing.display().to_string()),
        "{error}"
    );
}

#[tokio::test]
async fn redis_over_tls_with_the_services_ca_writes_and_reads_a_key() {
    let url = tls_service("REDIS_TLS_URL");
    assert!(url.starts_with("rediss://"), "{url}");
    let ca = PathBuf::from(ca_file());
    let prefix = format!("tls_{}", uuid::Uuid::now_v7().simple());
    let live = LiveView::connect(&url, Some(&ca), &prefix, 60, Duration::from_secs(10))
        .await
        .expect("Redis over TLS");
    assert!(!live.has_marker().await.expect("read"));
    live.set_marker().await.expect("write");
    assert!(live.has_marker().await.expect("read"));
}

#[tokio::test]
async fn redis_with_another_ca_fails_and_names_the_certificate_problem() {
    let url = tls_service("REDIS_TLS_URL");
    let other = other_ca();
    let Err(error) =
        LiveView::connect(&url, Some(&other), "tls", 60, Duration::from_secs(10)).await
    else {
        panic!("Redis over TLS accepted a server certificate of another CA");
    };
    let message = error.to_string();
    assert!(matches!(error, Error::Redis(_)), "{message}");
    assert!(
        message.contains("invalid peer certificate") && message.contains("UnknownIssuer"),
        "{message}"
    );
    std::fs::remove_file(other).ok();

    let missing = std::env::temp_dir().join("no-such-redis-ca.pem");
    let Err(error) =
        LiveView::connect(&url, Some(&missing), "tls", 60, Duration::from_secs(10)).await
    else {
        panic!("connected without its CA file");
    };
    assert!(matches!(error, Error::Config(_)), "{error}");
    assert!(error.to_string().contains("redis.ca_file"), "{error}");
    assert!(
        error.to_string().contains(&missing.display().to_string()),
        "{error}"
    );
}

/// The whole processor on TLS stores: every checkpoint goes to PostgreSQL over
/// `verify-full`, the live view to Redis over `rediss://` with the private CA, and the
/// answers are exact.
#[tokio::test(flavor = "multi_thread")]
async fn a_processor_on_tls_stores_checkpoints_and_answers_exactly() {
    let ca = ca_file();
    let redis = tls_service("REDIS_TLS_URL");
    let day = storefront::day(0x5EED_7150, 400, start_minute());
    let scenario = Harness::storefront("tls").await;
    scenario.produce(&day.records).await;
    let postgres = with(
        &scenario.postgres,
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    );
    let p = scenario.start_with_stores(
        "tls",
        &postgres,
        &redis,
        &[("PROCESSOR_REDIS__CA_FILE", ca.as_str())],
    );
    p.wait_ready(common::harness::READY_TIMEOUT).await;
    settle_day(&p, &day, Duration::from_secs(180)).await;

    // Every connection the processor holds to its database is TLS, as the server sees it.
    let (client, connection) = tokio_postgres::connect(&postgres_url(), tokio_postgres::NoTls)
        .await
        .expect("PostgreSQL reachable at POSTGRES_URL");
    tokio::spawn(connection);
    let database = scenario.name.to_ascii_lowercase();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let row = client
            .query_one(
                "select count(*) filter (where s.ssl), count(*) filter (where not s.ssl)
                 from pg_stat_activity a join pg_stat_ssl s using (pid)
                 where a.datname = $1 and a.pid <> pg_backend_pid()",
                &[&database],
            )
            .await
            .expect("pg_stat_ssl");
        let (tls, plain): (i64, i64) = (row.get(0), row.get(1));
        if tls > 0 && plain == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the processor's connections: {tls} over TLS, {plain} plain"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
