//! Secret masking: one word list and one URL rule for every printed or logged
//! configuration.
//!
//! Whole secret values are replaced by [`REDACTED`]; the password inside a URL by
//! [`URL_PASSWORD_MASK`], so the rest of the URL stays readable.

/// What shows instead of a secret value.
pub const REDACTED: &str = "<redacted>";

/// What shows instead of the password of a URL (`postgres://app:****@db/x`).
pub const URL_PASSWORD_MASK: &str = "****";

/// Parts of a property name that mark its value as secret: the union of the lists the
/// crates kept before they shared this one, so nothing is shown that was masked before.
const SECRET_WORDS: &[&str] = &[
    "password",
    "passwd",
    "secret",
    "token",
    "credential",
    "key",
    "jaas.config",
    "sasl.oauthbearer.config",
];

/// Whether a property (a librdkafka property, or any free-form configuration entry)
/// holds a secret, judged by its name (in any case), so that properties added in future
/// client versions are covered too. Names ending in `.location` (paths to files) are
/// not secret.
pub fn is_secret_name(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    !name.ends_with(".location") && SECRET_WORDS.iter().any(|w| name.contains(w))
}

/// `scheme://user:secret@host/...` → `scheme://user:****@host/...`; URLs without a
/// password are returned unchanged.
pub fn mask_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let Some(at) = authority.rfind('@') else {
        return url.to_owned();
    };
    let userinfo = &authority[..at];
    let Some(colon) = userinfo.find(':') else {
        return url.to_owned();
    };
    format!(
        "{}{}:{URL_PASSWORD_MASK}{}",
        &url[..scheme_end + 3],
        &userinfo[..colon],
        &rest[at..]
    )
}

/// Masks, in place, the values of `properties` whose names are secret.
pub fn mask_properties<'a>(properties: impl IntoIterator<Item = (&'a String, &'a mut String)>) {
    for (name, value) in properties {
        if is_secret_name(name) {
            REDACTED.clone_into(value);
        }
    }
}

/// A secret value held after validation: `Debug` and `Display` show [`REDACTED`], so
/// that a settings value printed or logged whole never shows it; [`expose`](Self::expose)
/// is the one way to read it, where it is sent.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps `value`.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The value itself, for the request or connection that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(REDACTED)
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(REDACTED)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_prints_redacted() {
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret} {secret:?}"), "<redacted> <redacted>");
        assert_eq!(secret.expose(), "hunter2");
    }

    #[test]
    fn secret_names_by_word_paths_excepted() {
        for name in [
            "sasl.password",
            "ssl.key.password",
            "SSL.KEYSTORE.PASSWORD",
            "sasl.oauthbearer.client.secret",
            "sasl.oauthbearer.config",
            "sasl.jaas.config",
            "ssl.key.pem",
            "sasl.oauthbearer.token.endpoint.url.token",
        ] {
            assert!(is_secret_name(name), "{name}");
        }
        for name in [
            "sasl.username",
            "security.protocol",
            "ssl.key.location",
            "ssl.ca.location",
            "sasl.mechanism",
            "client.id",
        ] {
            assert!(!is_secret_name(name), "{name}");
        }
    }

    #[test]
    fn url_passwords_are_masked_the_rest_kept() {
        assert_eq!(
            mask_url("postgres://app:s3cret@db:5432/x"),
            "postgres://app:****@db:5432/x"
        );
        assert_eq!(mask_url("redis://:pw@h:1/0"), "redis://:****@h:1/0");
        assert_eq!(mask_url("redis://h:1/0"), "redis://h:1/0");
        assert_eq!(mask_url("https://user@h/x"), "https://user@h/x");
        assert_eq!(mask_url("not a url"), "not a url");
        assert_eq!(
            mask_url("http://u:p@h?next=a@b"),
            "http://u:****@h?next=a@b"
        );
    }

    #[test]
    fn properties_are_masked_in_place() {
        let mut properties = std::collections::BTreeMap::from([
            ("sasl.password".to_owned(), "hunter2".to_owned()),
            ("sasl.username".to_owned(), "shop".to_owned()),
        ]);
        mask_properties(properties.iter_mut());
        assert_eq!(properties["sasl.password"], REDACTED);
        assert_eq!(properties["sasl.username"], "shop");
    }
}
