//! The one I/O call of the sink: an HTTP/1.1 request to the index, over a kept-alive
//! connection (hyper's client connection; no pool: the sink sends one request at a
//! time).

use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;

use crate::error::Error;

/// A validated `http://host[:port][/prefix]` address of the index's REST API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexUrl {
    host: String,
    port: u16,
    prefix: String,
}

impl IndexUrl {
    /// Parses the configured URL. Only `http` for now: a TLS-terminated cluster needs a
    /// local proxy (see `docs/processor.md`).
    ///
    /// # Errors
    ///
    /// A description of what is wrong with it.
    pub fn parse(url: &str) -> Result<IndexUrl, String> {
        let uri: hyper::Uri = url.parse().map_err(|e| format!("not a URL: {e}"))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") => return Err("https is not supported yet; use http".to_owned()),
            _ => return Err("must start with http://".to_owned()),
        }
        if uri.query().is_some() {
            return Err("must not have a query".to_owned());
        }
        let authority = uri.authority().ok_or("has no host")?;
        if authority.as_str().contains('@') {
            return Err("credentials in the URL are not supported".to_owned());
        }
        let host = authority.host().trim_matches(['[', ']']).to_owned();
        if host.is_empty() {
            return Err("has no host".to_owned());
        }
        Ok(IndexUrl {
            host,
            port: authority.port_u16().unwrap_or(9200),
            prefix: uri.path().trim_end_matches('/').to_owned(),
        })
    }

    fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl std::fmt::Display for IndexUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "http://{}{}", self.authority(), self.prefix)
    }
}

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
    url: IndexUrl,
    timeout: Duration,
    connection: Option<SendRequest<Full<Bytes>>>,
}

impl IndexClient {
    /// A client; it connects on the first request.
    pub fn new(url: IndexUrl, timeout: Duration) -> Self {
        IndexClient {
            url,
            timeout,
            connection: None,
        }
    }

    /// Sends one request (`path` below the URL's prefix) and reads the whole answer,
    /// within the timeout. A failed or timed-out request drops the connection; the next
    /// one opens a new one.
    ///
    /// # Errors
    ///
    /// [`Error::Index`] (connection, protocol) or [`Error::Timeout`].
    pub async fn send(
        &mut self,
        method: Method,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Result<Answer, Error> {
        let result = tokio::time::timeout(
            self.timeout,
            self.exchange(method, path, content_type, body),
        )
        .await;
        match result {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(e)) => {
                self.connection = None;
                Err(e)
            }
            Err(_) => {
                self.connection = None;
                Err(Error::Timeout("search index request"))
            }
        }
    }

    async fn exchange(
        &mut self,
        method: Method,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Result<Answer, Error> {
        let index_error =
            |what: &str, e: &dyn std::fmt::Display| Error::Index(format!("{what}: {e}"));
        let reusable = match &mut self.connection {
            Some(c) => c.ready().await.is_ok(),
            None => false,
        };
        if !reusable {
            let stream = tokio::net::TcpStream::connect((self.url.host.as_str(), self.url.port))
                .await
                .map_err(|e| index_error(&format!("connecting to {}", self.url), &e))?;
            let _ = stream.set_nodelay(true);
            let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .map_err(|e| index_error("HTTP handshake", &e))?;
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::debug!(error = %e, "search index connection closed");
                }
            });
            self.connection = Some(sender);
        }
        let sender = self
            .connection
            .as_mut()
            .ok_or_else(|| Error::Index("no connection".to_owned()))?;
        let request = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.url.prefix))
            .header(hyper::header::HOST, self.url.authority())
            .header(hyper::header::CONTENT_TYPE, content_type)
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| index_error("building the request", &e))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| index_error("request", &e))?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| index_error("reading the answer", &e))?
            .to_bytes();
        Ok(Answer { status, body })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_http_with_a_default_port_and_an_optional_prefix() {
        let u = IndexUrl::parse("http://127.0.0.1:9201/").expect("valid");
        assert_eq!(u.to_string(), "http://127.0.0.1:9201");
        let u = IndexUrl::parse("http://search.internal/os").expect("valid");
        assert_eq!(u.to_string(), "http://search.internal:9200/os");
        assert!(matches!(IndexUrl::parse("https://x:9200"), Err(why) if why.contains("https")));
        assert!(IndexUrl::parse("x:9200").is_err());
        assert!(IndexUrl::parse("http://user:pw@x:9200").is_err());
    }
}
