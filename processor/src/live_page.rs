//! The live page: `GET /` shows the real-time analytics as charts that refresh every
//! few seconds, drawn as SVG by a small script from `GET /api/analytics/real-time`.
//! The HTML, CSS and JavaScript are embedded in the binary: nothing to build or deploy
//! beside it. Independent of the HTTP layer: [`asset`] maps a request path to what to
//! answer.

/// One embedded file: its `Content-Type` and bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Asset {
    /// The `Content-Type` header value.
    pub content_type: &'static str,
    /// The body.
    pub body: &'static [u8],
}

/// `Content-Security-Policy` for the page's answers: its own scripts, styles and API
/// only, so an injected string in the data (a product id, a search query) can never run
/// as code or load anything.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

const INDEX: Asset = Asset {
    content_type: "text/html; charset=utf-8",
    body: include_bytes!("live_page/index.html"),
};
const SCRIPT: Asset = Asset {
    content_type: "text/javascript; charset=utf-8",
    body: include_bytes!("live_page/app.js"),
};
const STYLE: Asset = Asset {
    content_type: "text/css; charset=utf-8",
    body: include_bytes!("live_page/style.css"),
};

/// The page's file at `path` (`/`, `/live/app.js`, `/live/style.css`), or `None` for
/// any other path.
pub fn asset(path: &str) -> Option<Asset> {
    match path {
        "/" | "/index.html" => Some(INDEX),
        "/live/app.js" => Some(SCRIPT),
        "/live/style.css" => Some(STYLE),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serves_the_page_and_its_assets_and_nothing_else() {
        let index = asset("/").expect("the page");
        assert!(index.content_type.starts_with("text/html"));
        let html = std::str::from_utf8(index.body).expect("UTF-8");
        // Every asset the page links to is served, with its type.
        for (link, kind) in [
            ("/live/app.js", "text/javascript"),
            ("/live/style.css", "text/css"),
        ] {
            assert!(html.contains(link), "{link} not linked");
            assert!(asset(link).expect(link).content_type.starts_with(kind));
        }
        for path in [
            "/live/",
            "/live/app.js/",
            "/api/analytics/real-time",
            "/../etc/passwd",
            "",
        ] {
            assert_eq!(asset(path), None, "{path}");
        }
        // The script reads the API it is documented to read.
        let script = std::str::from_utf8(SCRIPT.body).expect("UTF-8");
        assert!(script.contains("/api/analytics/real-time"));
    }
}
