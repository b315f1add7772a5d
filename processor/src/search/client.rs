//! The one I/O call of the sink: a request to the index's REST API with reqwest over
//! rustls (`http://` or `https://`), with the configured credentials and, when set, a
//! gzip-compressed body. The sink sends one request at a time; reqwest keeps its
//! connection alive between them.

use std::io::Write;

use hyper::body::Bytes;
use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE};
use reqwest::{Method, StatusCode};

use crate::config::{SearchAuth, SearchSettings};
use crate::error::Error;

/// An answer: status and body.
#[derive(Debug)]
pub struct Answer {
    /// The HTTP status.
    pub status: StatusCode,
    /// The whole body.
    pub body: Bytes,
}

/// A client of the index's REST API.
pub struct IndexClient {
    base: String,
    gzip: bool,
    auth: Option<SearchAuth>,
    /// The `Authorization` value of an API key, built once (marked sensitive).
    api_key: Option<HeaderValue>,
    client: reqwest::Client,
}

impl IndexClient {
    /// A client for `settings`: its URL, time-out, credentials, compression and extra
    /// CA certificates (read here, once). It connects on the first request.
    ///
    /// # Errors
    ///
    /// [`Error::Index`] when the CA file cannot be read or holds no PEM certificate, or
    /// a credential is not a valid header value.
    pub fn new(settings: &SearchSettings) -> Result<Self, Error> {
        let api_key = match &settings.auth {
            Some(SearchAuth::ApiKey(key)) => {
                let mut value = HeaderValue::from_str(&format!("ApiKey {}", key.expose()))
                    .map_err(|_| {
                        Error::Index("search.api_key is not a valid HTTP header value".to_owned())
                    })?;
                value.set_sensitive(true);
                Some(value)
            }
            _ => None,
        };
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .timeout(settings.request_timeout)
            .connect_timeout(settings.request_timeout)
            .tcp_nodelay(true)
            .pool_max_idle_per_host(1);
        if let Some(path) = &settings.ca_file {
            let pem = std::fs::read(path).map_err(|e| {
                Error::Index(format!("reading search.ca_file {}: {e}", path.display()))
            })?;
            let certificates = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                Error::Index(format!("search.ca_file {}: {}", path.display(), causes(&e)))
            })?;
            if certificates.is_empty() {
                return Err(Error::Index(format!(
                    "search.ca_file {} holds no PEM certificate",
                    path.display()
                )));
            }
            for certificate in certificates {
                builder = builder.add_root_certificate(certificate);
            }
        }
        let client = builder
            .build()
            .map_err(|e| Error::Index(format!("building the HTTP client: {}", causes(&e))))?;
        Ok(IndexClient {
            base: settings.url.to_string(),
            gzip: settings.gzip,
            auth: settings.auth.clone(),
            api_key,
            client,
        })
    }

    /// Sends one request (`path` below the URL's prefix) and reads the whole answer,
    /// within the time-out.
    ///
    /// # Errors
    ///
    /// [`Error::Index`] (connection, TLS, protocol; the message carries every cause) or
    /// [`Error::Timeout`].
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        content_type: &'static str,
        body: Vec<u8>,
    ) -> Result<Answer, Error> {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.base))
            .header(CONTENT_TYPE, content_type);
        match (&self.auth, &self.api_key) {
            (Some(SearchAuth::Basic { username, password }), _) => {
                request = request.basic_auth(username, Some(password.expose()));
            }
            (_, Some(api_key)) => request = request.header(AUTHORIZATION, api_key.clone()),
            _ => {}
        }
        let body = if self.gzip {
            request = request.header(CONTENT_ENCODING, "gzip");
            gzip(&body).map_err(|e| Error::Index(format!("compressing the request: {e}")))?
        } else {
            body
        };
        let failed = |e: reqwest::Error| {
            if e.is_timeout() {
                Error::Timeout("search index request")
            } else {
                Error::Index(causes(&e))
            }
        };
        let response = request.body(body).send().await.map_err(failed)?;
        let status = response.status();
        let body = response.bytes().await.map_err(failed)?;
        Ok(Answer { status, body })
    }
}

/// `body` gzip-compressed (default level: bulk bodies of JSON shrink several-fold).
fn gzip(body: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 4),
        flate2::Compression::default(),
    );
    encoder.write_all(body)?;
    encoder.finish()
}

/// An error and its causes, outermost first: reqwest's own message names only the
/// request ("error sending request for url"), the causes say why (refused, TLS, DNS).
fn causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let next = cause.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn bodies_compress_and_decompress_to_the_same_bytes() {
        let body = b"{\"index\":{}}\n{\"a\":1}\n".repeat(100);
        let packed = gzip(&body).expect("compressed");
        assert!(packed.len() < body.len() / 4, "{} bytes", packed.len());
        let mut unpacked = Vec::new();
        flate2::read::GzDecoder::new(packed.as_slice())
            .read_to_end(&mut unpacked)
            .expect("gzip");
        assert_eq!(unpacked, body);
    }

    #[test]
    fn causes_are_joined_outermost_first() {
        let inner = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let outer = std::io::Error::other(Wrapped(inner));
        assert_eq!(causes(&outer), "wrapped: refused");
    }

    #[derive(Debug)]
    struct Wrapped(std::io::Error);

    impl std::fmt::Display for Wrapped {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("wrapped")
        }
    }

    impl std::error::Error for Wrapped {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }
}
