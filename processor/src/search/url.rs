//! The index's address, validated when the configuration is read (so it depends on
//! nothing else of the search sink).

/// A validated `http[s]://host[:port][/prefix]` address of the index's REST API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexUrl {
    tls: bool,
    host: String,
    port: u16,
    prefix: String,
}

impl IndexUrl {
    /// Parses the configured URL; the port defaults to 9200.
    ///
    /// # Errors
    ///
    /// A description of what is wrong with it.
    pub fn parse(url: &str) -> Result<IndexUrl, String> {
        let uri: hyper::Uri = url.parse().map_err(|e| format!("not a URL: {e}"))?;
        let tls = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => return Err("must start with http:// or https://".to_owned()),
        };
        if uri.query().is_some() {
            return Err("must not have a query".to_owned());
        }
        let authority = uri.authority().ok_or("has no host")?;
        if authority.as_str().contains('@') {
            return Err(
                "credentials in the URL are not supported; set search.username and search.password, or search.api_key"
                    .to_owned(),
            );
        }
        let host = authority.host().trim_matches(['[', ']']).to_owned();
        if host.is_empty() {
            return Err("has no host".to_owned());
        }
        Ok(IndexUrl {
            tls,
            host,
            port: authority.port_u16().unwrap_or(9200),
            prefix: uri.path().trim_end_matches('/').to_owned(),
        })
    }

    /// Whether requests go over TLS (`https`).
    pub fn is_tls(&self) -> bool {
        self.tls
    }
}

impl std::fmt::Display for IndexUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.tls { "https" } else { "http" };
        if self.host.contains(':') {
            write!(f, "{scheme}://[{}]:{}{}", self.host, self.port, self.prefix)
        } else {
            write!(f, "{scheme}://{}:{}{}", self.host, self.port, self.prefix)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_http_or_https_with_a_default_port_and_an_optional_prefix() {
        let u = IndexUrl::parse("http://127.0.0.1:9201/").expect("valid");
        assert_eq!(u.to_string(), "http://127.0.0.1:9201");
        assert!(!u.is_tls());
        let u = IndexUrl::parse("http://search.internal/os").expect("valid");
        assert_eq!(u.to_string(), "http://search.internal:9200/os");
        let u = IndexUrl::parse("https://[::1]:9243/").expect("valid");
        assert_eq!(u.to_string(), "https://[::1]:9243");
        assert!(u.is_tls());
        assert!(IndexUrl::parse("x:9200").is_err());
        assert!(IndexUrl::parse("ftp://x:9200").is_err());
        assert!(IndexUrl::parse("http://x:9200/?a=b").is_err());
        assert!(
            matches!(IndexUrl::parse("http://user:pw@x:9200"), Err(why) if why.contains("search.username"))
        );
    }
}
