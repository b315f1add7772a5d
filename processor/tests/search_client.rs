//! The search index client against the real OpenSearch of `OPENSEARCH_URL`: over http,
//! and over https through a local TLS endpoint (a certificate of a CA made here) that
//! relays to it, recording each request's head to prove what was sent.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::SearchIndex;
use processor::config::SearchSettings;
use processor::search::{bulk_body, classify, index_mapping, IndexClient, ItemOutcome};
use processor::{Error, ProcessorConfig};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// A relay to OpenSearch that records the head of every request (lower case).
struct Relay {
    addr: SocketAddr,
    heads: Arc<Mutex<Vec<String>>>,
}

impl Relay {
    /// Listens on a free port; with `tls`, clients speak TLS to it.
    async fn start(upstream: String, tls: Option<tokio_rustls::TlsAcceptor>) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let heads = Arc::new(Mutex::new(Vec::new()));
        let recorded = heads.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (upstream, heads, tls) = (upstream.clone(), recorded.clone(), tls.clone());
                tokio::spawn(async move {
                    match tls {
                        Some(acceptor) => {
                            // A refused handshake (an untrusted certificate) ends here.
                            if let Ok(client) = acceptor.accept(client).await {
                                relay(client, &upstream, heads).await;
                            }
                        }
                        None => relay(client, &upstream, heads).await,
                    }
                });
            }
        });
        Relay { addr, heads }
    }

    fn heads(&self) -> Vec<String> {
        self.heads.lock().expect("heads").clone()
    }
}

/// Copies answers back as they come, and requests forward one by one, recording heads.
async fn relay<S>(client: S, upstream: &str, heads: Arc<Mutex<Vec<String>>>)
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let (client_read, mut client_write) = tokio::io::split(client);
    let (mut server_read, mut server_write) = server.into_split();
    let answers =
        tokio::spawn(async move { tokio::io::copy(&mut server_read, &mut client_write).await });
    let mut requests = BufReader::new(client_read);
    loop {
        let mut head = String::new();
        loop {
            let mut line = String::new();
            match requests.read_line(&mut line).await {
                Ok(0) | Err(_) => {
                    answers.abort();
                    return;
                }
                Ok(_) => {}
            }
            head.push_str(&line);
            if line == "\r\n" {
                break;
            }
        }
        let recorded = head.to_ascii_lowercase();
        let length: u64 = header(&recorded, "content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        heads.lock().expect("heads").push(recorded);
        if server_write.write_all(head.as_bytes()).await.is_err()
            || tokio::io::copy(&mut (&mut requests).take(length), &mut server_write)
                .await
                .is_err()
        {
            answers.abort();
            return;
        }
    }
}

fn opensearch_addr() -> String {
    common::opensearch()
}

/// The validated `[search]` settings of `toml` (the `[search]` table's keys).
fn settings(toml: &str) -> SearchSettings {
    let file = format!("[search]\nenabled = true\nrequest_timeout_ms = 20000\n{toml}");
    ProcessorConfig::layered(Some(&file), Vec::new(), &processor::Overrides::default())
        .expect("layers")
        .validate()
        .expect("valid")
        .search
        .expect("enabled")
}

fn index_name(test: &str) -> String {
    format!("{test}-{}", uuid::Uuid::now_v7().simple())
}

/// Creates the index and bulk-indexes `n` documents through `client`; asserts every
/// item is indexed and the index holds them.
async fn index_documents(client: &IndexClient, index: &str, n: usize) {
    let answer = client
        .send(
            hyper::Method::PUT,
            &format!("/{index}"),
            "application/json",
            index_mapping().to_string().into_bytes(),
        )
        .await
        .expect("index created");
    assert!(answer.status.is_success(), "{:?}", answer);
    let docs: Vec<(String, String)> = (0..n)
        .map(|i| {
            let id = format!("event-{i}");
            let doc = serde_json::json!({"event_id": id, "event_type": "search", "user_id": format!("u-{i}")});
            (id, doc.to_string())
        })
        .collect();
    let answer = client
        .send(
            hyper::Method::POST,
            "/_bulk",
            "application/x-ndjson",
            bulk_body(index, &docs),
        )
        .await
        .expect("bulk answered");
    assert!(answer.status.is_success(), "{:?}", answer);
    let outcomes = classify(&answer.body, n).expect("bulk answer");
    assert!(
        outcomes.iter().all(|o| *o == ItemOutcome::Indexed),
        "{outcomes:?}"
    );
    let search = SearchIndex {
        addr: opensearch_addr(),
        name: index.to_owned(),
    };
    assert_eq!(
        search.settled(n as i64, Duration::from_secs(30)).await,
        n as i64
    );
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .map(str::trim)
}

#[tokio::test(flavor = "multi_thread")]
async fn over_http_bodies_are_gzip_compressed_and_the_api_key_is_sent() {
    let relay = Relay::start(opensearch_addr(), None).await;
    let client = IndexClient::new(&settings(&format!(
        "url = \"http://{}\"\napi_key = \"aWQ6c2VjcmV0\"\n",
        relay.addr
    )))
    .expect("client");
    let index = index_name("client-http");
    index_documents(&client, &index, 25).await;
    let heads = relay.heads();
    assert_eq!(heads.len(), 2, "{heads:?}");
    for head in &heads {
        assert_eq!(header(head, "content-encoding"), Some("gzip"), "{head}");
        assert_eq!(
            header(head, "authorization"),
            Some("apikey awq6c2vjcmv0"),
            "{head}"
        );
    }
    assert!(heads[1].starts_with("post /_bulk "), "{}", heads[1]);

    // Without compression the same documents go as they are.
    let relay = Relay::start(opensearch_addr(), None).await;
    let client = IndexClient::new(&settings(&format!(
        "url = \"http://{}\"\ngzip = false\n",
        relay.addr
    )))
    .expect("client");
    index_documents(&client, &index_name("client-plain"), 3).await;
    for head in relay.heads() {
        assert_eq!(header(&head, "content-encoding"), None, "{head}");
        assert_eq!(header(&head, "authorization"), None, "{head}");
    }
}

/// A CA, and a certificate it signed for `localhost` and 127.0.0.1: (CA PEM, acceptor).
fn certificate_authority() -> (String, tokio_rustls::TlsAcceptor) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let ca_key = KeyPair::generate().expect("key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "search test CA");
    let ca = ca_params.self_signed(&ca_key).expect("CA");
    let key = KeyPair::generate().expect("key");
    let certificate = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
        .expect("params")
        .signed_by(&key, &ca, &ca_key)
        .expect("certificate");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(
            vec![certificate.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .expect("certificate and key");
    (ca.pem(), tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

#[tokio::test(flavor = "multi_thread")]
async fn over_https_the_ca_file_is_trusted_and_basic_auth_is_sent() {
    let (ca_pem, acceptor) = certificate_authority();
    let ca_file = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("search-ca-{}.pem", uuid::Uuid::now_v7().simple()));
    std::fs::write(&ca_file, ca_pem).expect("CA file");
    let relay = Relay::start(opensearch_addr(), Some(acceptor)).await;
    let url = format!("https://localhost:{}", relay.addr.port());

    let client = IndexClient::new(&settings(&format!(
        "url = \"{url}\"\nusername = \"ingest\"\npassword = \"s3cret:pw\"\nca_file = {:?}\n",
        ca_file.display().to_string()
    )))
    .expect("client");
    index_documents(&client, &index_name("client-https"), 10).await;
    let heads = relay.heads();
    assert_eq!(heads.len(), 2, "{heads:?}");
    for head in &heads {
        // base64("ingest:s3cret:pw"), lower-cased by the relay.
        assert_eq!(
            header(head, "authorization"),
            Some("basic aw5nzxn0onmzy3jlddpwdw=="),
            "{head}"
        );
        assert_eq!(header(head, "content-encoding"), Some("gzip"), "{head}");
    }

    // Without the CA file the certificate is not trusted: the request fails, and the
    // error says why.
    let untrusting = IndexClient::new(&settings(&format!("url = \"{url}\"\n"))).expect("client");
    let error = untrusting
        .send(hyper::Method::GET, "/", "application/json", Vec::new())
        .await
        .expect_err("an unknown CA is refused");
    let message = error.to_string();
    assert!(matches!(error, Error::Index(_)), "{message}");
    assert!(
        message.to_ascii_lowercase().contains("certificate"),
        "the cause is in the message: {message}"
    );
    assert_eq!(relay.heads().len(), 2, "nothing was sent without TLS trust");

    // A CA file that is missing, or holds no certificate, is refused when the client is
    // built.
    let missing = ca_file.with_extension("missing");
    let Err(error) = IndexClient::new(&settings(&format!(
        "url = \"{url}\"\nca_file = {:?}\n",
        missing.display().to_string()
    ))) else {
        panic!("a missing CA file is refused");
    };
    assert!(error.to_string().contains("search.ca_file"), "{error}");
    std::fs::write(&ca_file, "not a certificate\n").expect("write");
    let Err(error) = IndexClient::new(&settings(&format!(
        "url = \"{url}\"\nca_file = {:?}\n",
        ca_file.display().to_string()
    ))) else {
        panic!("a CA file without certificates is refused");
    };
    assert!(error.to_string().contains("no PEM certificate"), "{error}");
    let _ = std::fs::remove_file(&ca_file);
}
