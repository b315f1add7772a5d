//! API keys: write keys, one per storefront. A request names its key as
//! `Authorization: Bearer <key>`; Segment's libraries send it as the user of HTTP Basic
//! authentication (or as `writeKey` in the body), GA4's Measurement Protocol as the
//! `api_secret` query parameter. A browser key may also come as the `key` query
//! parameter (`navigator.sendBeacon` cannot set headers); a server key never does, so
//! that it does not end up in URLs and their logs.
//!
//! Keys are held as their SHA-256 digests only. A presented key is hashed once and its
//! digest compared with every configured digest in constant time (`subtle`), and the
//! matching storefront picked without a branch, so the answer's timing tells nothing
//! about how much of a guess was right, how long the real keys are, or which key matched.

use std::path::Path;
use std::sync::Arc;

use base64::Engine as _;
use http::header::AUTHORIZATION;
use http::HeaderMap;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::{ConditionallySelectable, ConstantTimeEq};

use crate::config::{check_key, ApiKey, ConfigError, KeyKind};
use crate::response::ApiError;
use ingest_common::Origin;

/// What a key grants: the storefront it belongs to, and for a browser key the origins
/// it may be used from.
#[derive(Debug, PartialEq, Eq)]
pub struct Grant {
    /// The storefront: the `source` of its events.
    pub source: Arc<str>,
    /// For a browser key, the origins of the pages allowed to use it (lower case, no
    /// trailing `/`); `None` for a server key.
    pub browser_origins: Option<Box<[String]>>,
}

impl Grant {
    /// Whether `origin` (the request's `Origin` header) may use this browser key. A
    /// request without `Origin` may: browsers send it on every `POST` and on every
    /// cross-origin request, so its absence means a same-origin `GET` or a client that
    /// is no browser, which could write any `Origin` anyway.
    pub fn allows_origin(&self, origin: Option<&str>) -> bool {
        let Some(origins) = &self.browser_origins else {
            return false;
        };
        let Some(origin) = origin else {
            return true;
        };
        let origin = origin.trim_end_matches('/');
        origins.iter().any(|o| o.eq_ignore_ascii_case(origin))
    }
}

/// The SHA-256 digest of a key and what it grants.
type Entry = ([u8; 32], Arc<Grant>);

fn digest(key: &[u8]) -> [u8; 32] {
    Sha256::digest(key).into()
}

/// The configured keys; empty means no key is needed.
#[derive(Clone, Default)]
pub struct ApiKeys {
    keys: Arc<[Entry]>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeysFile {
    keys: Vec<ApiKey>,
}

impl ApiKeys {
    /// The keys of the configuration plus those of `file`.
    ///
    /// # Errors
    ///
    /// When the file cannot be read or parsed, or a key is invalid.
    pub fn load(keys: &[ApiKey], file: Option<&Path>) -> Result<ApiKeys, ConfigError> {
        let mut all = keys.to_vec();
        if let Some(path) = file {
            let origin = Origin::File(path.to_owned());
            let text = std::fs::read_to_string(path).map_err(|e| {
                ConfigError::new("auth.keys_file", format!("cannot be read: {e}"))
                    .with_origin(origin.clone())
            })?;
            let parsed: KeysFile = toml::from_str(&text).map_err(|e| {
                ConfigError::new("auth.keys_file", e.message().to_owned())
                    .with_origin(origin.clone())
            })?;
            for (i, key) in parsed.keys.iter().enumerate() {
                check_key(&format!("keys[{i}]"), key).map_err(|e| e.with_origin(origin.clone()))?;
            }
            all.extend(parsed.keys);
        }
        Ok(ApiKeys {
            keys: all
                .into_iter()
                .map(|k| {
                    let browser_origins = (k.kind == KeyKind::Browser).then(|| {
                        k.origins
                            .iter()
                            .map(|o| o.trim_end_matches('/').to_ascii_lowercase())
                            .collect()
                    });
                    let grant = Grant {
                        source: Arc::from(k.source.as_str()),
                        browser_origins,
                    };
                    (digest(k.key.as_bytes()), Arc::new(grant))
                })
                .collect(),
        })
    }

    /// Whether keys are required.
    pub fn enabled(&self) -> bool {
        !self.keys.is_empty()
    }

    /// How many keys are configured.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether no key is configured.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The origins of every browser key, for CORS.
    pub fn browser_origins(&self) -> impl Iterator<Item = &str> {
        self.keys
            .iter()
            .filter_map(|(_, grant)| grant.browser_origins.as_deref())
            .flatten()
            .map(String::as_str)
    }

    /// What the request's key grants; `None` when keys are off. The key is the Bearer
    /// token of `Authorization`, or without that header a browser key in the `key`
    /// parameter of `query`.
    ///
    /// # Errors
    ///
    /// 401 when keys are on and the request has no known key, or a server key in the
    /// query.
    pub fn authenticate(
        &self,
        headers: &HeaderMap,
        query: Option<&str>,
    ) -> Result<Option<Arc<Grant>>, ApiError> {
        if self.keys.is_empty() {
            return Ok(None);
        }
        let Some(value) = headers.get(AUTHORIZATION) else {
            let in_query = form_urlencoded::parse(query.unwrap_or("").as_bytes())
                .find(|(name, _)| name == "key")
                .map(|(_, value)| value)
                .ok_or(ApiError::Unauthorized)?;
            let grant = self.check(in_query.as_bytes())?;
            return match grant {
                Some(g) if g.browser_origins.is_some() => Ok(Some(g)),
                _ => Err(ApiError::Unauthorized),
            };
        };
        let presented = value
            .to_str()
            .ok()
            .and_then(|v| {
                let (scheme, token) = v.trim().split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
            })
            .ok_or(ApiError::Unauthorized)?;
        self.check(presented.as_bytes())
    }

    /// As [`authenticate`](Self::authenticate), for Segment's libraries: the key is the
    /// user of `Authorization: Basic` (the password is empty), or a Bearer key, or,
    /// without an `Authorization` header, `write_key` (the body's `writeKey`, which
    /// analytics.js sends from browsers).
    ///
    /// # Errors
    ///
    /// 401 when keys are on and none of these holds a known key.
    pub fn authenticate_segment(
        &self,
        headers: &HeaderMap,
        write_key: Option<&str>,
    ) -> Result<Option<Arc<Grant>>, ApiError> {
        if self.keys.is_empty() {
            return Ok(None);
        }
        let Some(value) = headers.get(AUTHORIZATION) else {
            return self.check(write_key.ok_or(ApiError::Unauthorized)?.as_bytes());
        };
        let (scheme, token) = value
            .to_str()
            .ok()
            .and_then(|v| v.trim().split_once(' '))
            .ok_or(ApiError::Unauthorized)?;
        if scheme.eq_ignore_ascii_case("bearer") {
            return self.check(token.trim().as_bytes());
        }
        if !scheme.eq_ignore_ascii_case("basic") {
            return Err(ApiError::Unauthorized);
        }
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(token.trim())
            .map_err(|_| ApiError::Unauthorized)?;
        let user = decoded.split(|&b| b == b':').next().unwrap_or_default();
        self.check(user)
    }

    /// As [`authenticate`](Self::authenticate), for a key given as a value of its own
    /// (GA4's `api_secret` query parameter).
    ///
    /// # Errors
    ///
    /// 401 when keys are on and `secret` is absent or unknown.
    pub fn authenticate_secret(
        &self,
        secret: Option<&str>,
    ) -> Result<Option<Arc<Grant>>, ApiError> {
        if self.keys.is_empty() {
            return Ok(None);
        }
        self.check(secret.ok_or(ApiError::Unauthorized)?.as_bytes())
    }

    fn check(&self, presented: &[u8]) -> Result<Option<Arc<Grant>>, ApiError> {
        // Fixed-size digests: the comparison's time does not depend on the keys' lengths.
        // Every key is compared and the match is selected without branching, so the
        // time does not depend on which key matched either.
        let presented = digest(presented);
        let mut found = u32::MAX;
        for (i, (key, _)) in self.keys.iter().enumerate() {
            let i = u32::try_from(i).unwrap_or(u32::MAX);
            found.conditional_assign(&i, key.ct_eq(&presented));
        }
        self.keys
            .get(found as usize)
            .map(|(_, grant)| Some(grant.clone()))
            .ok_or(ApiError::Unauthorized)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> ApiKeys {
        ApiKeys::load(&[ApiKey::server("shop-1", "k1-0123456789abcdef")], None).expect("keys")
    }

    fn with(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, value.parse().expect("header"));
        headers
    }

    #[test]
    fn bearer_keys_name_their_storefront() {
        let keys = keys();
        assert_eq!(
            keys.authenticate(&with("Bearer k1-0123456789abcdef"), None)
                .expect("ok")
                .map(|g| g.source.to_string())
                .as_deref(),
            Some("shop-1")
        );
        assert_eq!(
            keys.authenticate(&with("bearer  k1-0123456789abcdef "), None)
                .expect("ok")
                .map(|g| g.source.to_string())
                .as_deref(),
            Some("shop-1")
        );
        for bad in [
            "Bearer k1-0123456789abcdeX",
            "Bearer k1",
            "Basic k1-0123456789abcdef",
            "k1-0123456789abcdef",
        ] {
            assert!(keys.authenticate(&with(bad), None).is_err(), "{bad}");
        }
        assert!(keys.authenticate(&HeaderMap::new(), None).is_err());
        assert_eq!(
            ApiKeys::default()
                .authenticate(&with("Bearer anything"), None)
                .expect("off"),
            None
        );
    }

    #[test]
    fn keys_file_adds_keys_and_is_checked() {
        let dir = tempfile::tempdir().expect("dir");
        let file = dir.path().join("keys.toml");
        std::fs::write(
            &file,
            "[[keys]]\nsource = \"shop-2\"\nkey = \"k2-0123456789abcdef\"\n",
        )
        .expect("write");
        let keys = ApiKeys::load(&[], Some(&file)).expect("loads");
        assert_eq!(keys.len(), 1);
        assert_eq!(
            keys.authenticate(&with("Bearer k2-0123456789abcdef"), None)
                .expect("ok")
                .map(|g| g.source.to_string())
                .as_deref(),
            Some("shop-2")
        );
        std::fs::write(&file, "[[keys]]\nsource = \"shop-2\"\nkey = \"short\"\n").expect("write");
        assert!(ApiKeys::load(&[], Some(&file)).is_err());
    }

    /// The right key is accepted; a wrong key of the same length, one byte shorter or
    /// longer, a prefix, the key with a NUL appended, and the empty key are refused.
    /// Several keys: each names its own storefront, the last one included.
    #[test]
    fn only_the_exact_key_is_accepted() {
        let keys = ApiKeys::load(
            &[
                ApiKey::server("shop-1", "k1-0123456789abcdef"),
                ApiKey::server("shop-2", "k2-0123456789abcdef-longer"),
            ],
            None,
        )
        .expect("keys");
        let check = |key: &str| {
            keys.authenticate_secret(Some(key))
                .ok()
                .flatten()
                .map(|g| g.source.to_string())
        };
        assert_eq!(check("k1-0123456789abcdef").as_deref(), Some("shop-1"));
        assert_eq!(
            check("k2-0123456789abcdef-longer").as_deref(),
            Some("shop-2")
        );
        for wrong in [
            "k1-0123456789abcdeX",
            "X1-0123456789abcdef",
            "k1-0123456789abcde",
            "k1-0123456789abcdef0",
            "k1-0123456789abcdef\0",
            "k1",
            "",
            "k2-0123456789abcdef-longe",
        ] {
            assert_eq!(check(wrong), None, "{wrong:?}");
        }
    }

    #[test]
    fn segment_keys_come_as_basic_user_bearer_or_body_write_key() {
        let keys = keys();
        let basic = |credentials: &str| {
            with(&format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(credentials)
            ))
        };
        let source = |r: Result<Option<Arc<Grant>>, ApiError>| {
            r.ok().flatten().map(|g| g.source.to_string())
        };
        assert_eq!(
            source(keys.authenticate_segment(&basic("k1-0123456789abcdef:"), None)).as_deref(),
            Some("shop-1")
        );
        assert_eq!(
            source(keys.authenticate_segment(&with("Bearer k1-0123456789abcdef"), None)).as_deref(),
            Some("shop-1")
        );
        assert_eq!(
            source(keys.authenticate_segment(&HeaderMap::new(), Some("k1-0123456789abcdef")))
                .as_deref(),
            Some("shop-1")
        );
        assert!(keys
            .authenticate_segment(&basic("k1-wrong:"), Some("k1-0123456789abcdef"))
            .is_err());
        assert!(keys.authenticate_segment(&with("Basic %%%"), None).is_err());
        assert!(keys.authenticate_segment(&HeaderMap::new(), None).is_err());
        assert!(keys
            .authenticate_segment(&with("Digest k1-0123456789abcdef"), None)
            .is_err());
        assert_eq!(
            source(keys.authenticate_secret(Some("k1-0123456789abcdef"))).as_deref(),
            Some("shop-1")
        );
        assert!(keys.authenticate_secret(Some("nope")).is_err());
        assert!(keys.authenticate_secret(None).is_err());
        let open = ApiKeys::default();
        assert!(matches!(
            open.authenticate_segment(&HeaderMap::new(), None),
            Ok(None)
        ));
        assert!(matches!(open.authenticate_secret(None), Ok(None)));
    }
}
