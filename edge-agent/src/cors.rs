//! CORS for browsers posting straight to the agent (`fetch`, `navigator.sendBeacon`).
//! Only configured origins get CORS headers; for others the browser refuses on its own.

use http::header::{
    ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN,
    ACCESS_CONTROL_MAX_AGE, ORIGIN, VARY,
};
use http::{HeaderMap, HeaderValue, Response, StatusCode};

use crate::config::CorsConfig;
use crate::response::Body;

/// The configured origins.
#[derive(Debug, Clone, Default)]
pub struct Cors {
    origins: Vec<String>,
    any: bool,
    max_age: u64,
}

impl Cors {
    /// CORS as configured, for those origins and the `browser_origins` of browser keys.
    pub fn new<'a>(
        config: &'a CorsConfig,
        browser_origins: impl IntoIterator<Item = &'a str>,
    ) -> Self {
        let mut origins: Vec<String> = config
            .allowed_origins
            .iter()
            .map(String::as_str)
            .chain(browser_origins)
            .map(|o| o.trim_end_matches('/').to_ascii_lowercase())
            .collect();
        origins.sort_unstable();
        origins.dedup();
        Cors {
            any: config.allowed_origins.iter().any(|o| o == "*"),
            origins,
            max_age: config.max_age_secs,
        }
    }

    /// The `Access-Control-Allow-Origin` value for the request, if its origin is allowed.
    pub fn allow_origin(&self, headers: &HeaderMap) -> Option<HeaderValue> {
        let origin = headers.get(ORIGIN)?;
        let text = origin.to_str().ok()?.to_ascii_lowercase();
        (self.any || self.origins.contains(&text)).then(|| origin.clone())
    }

    /// Adds the origin headers to an answer.
    pub fn decorate(&self, origin: Option<HeaderValue>, response: &mut Response<Body>) {
        if let Some(origin) = origin {
            let headers = response.headers_mut();
            headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin);
            headers.insert(VARY, HeaderValue::from_static("Origin"));
        }
    }

    /// The answer to a preflight `OPTIONS`: 204, with the `Allow-*` headers for an
    /// allowed origin and none otherwise.
    pub fn preflight(&self, headers: &HeaderMap) -> Response<Body> {
        let mut response = Response::new(Body::default());
        *response.status_mut() = StatusCode::NO_CONTENT;
        let method_allowed = headers
            .get(http::header::ACCESS_CONTROL_REQUEST_METHOD)
            .is_none_or(|m| m.as_bytes().eq_ignore_ascii_case(b"POST"));
        if let Some(origin) = self.allow_origin(headers).filter(|_| method_allowed) {
            let out = response.headers_mut();
            out.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin);
            out.insert(VARY, HeaderValue::from_static("Origin"));
            out.insert(
                ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static("POST, OPTIONS"),
            );
            out.insert(
                ACCESS_CONTROL_ALLOW_HEADERS,
                HeaderValue::from_static(
                    "content-type, content-encoding, authorization, ingest-ack",
                ),
            );
            out.insert(ACCESS_CONTROL_MAX_AGE, HeaderValue::from(self.max_age));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(origin: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(ORIGIN, origin.parse().expect("origin"));
        headers
    }

    #[test]
    fn only_configured_origins_get_headers() {
        let config = CorsConfig {
            allowed_origins: vec!["https://Shop.example.com/".to_owned()],
            max_age_secs: 60,
        };
        let cors = Cors::new(&config, ["https://Beacon.example/"]);
        assert!(cors
            .allow_origin(&request("https://beacon.example"))
            .is_some());
        let allowed = cors.preflight(&request("https://shop.example.com"));
        assert_eq!(allowed.status(), StatusCode::NO_CONTENT);
        assert_eq!(
            allowed.headers()[ACCESS_CONTROL_ALLOW_ORIGIN],
            "https://shop.example.com"
        );
        assert_eq!(allowed.headers()[ACCESS_CONTROL_MAX_AGE], "60");
        let mut put = request("https://shop.example.com");
        put.insert(
            http::header::ACCESS_CONTROL_REQUEST_METHOD,
            "PUT".parse().expect("method"),
        );
        assert!(cors
            .preflight(&put)
            .headers()
            .get(ACCESS_CONTROL_ALLOW_ORIGIN)
            .is_none());
        let other = cors.preflight(&request("https://evil.example"));
        assert!(other.headers().get(ACCESS_CONTROL_ALLOW_ORIGIN).is_none());
        let any = Cors::new(
            &CorsConfig {
                allowed_origins: vec!["*".to_owned()],
                max_age_secs: 1,
            },
            [],
        );
        assert!(any.allow_origin(&request("https://x.example")).is_some());
        assert!(Cors::default()
            .allow_origin(&request("https://x.example"))
            .is_none());
    }
}
