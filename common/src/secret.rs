//! Secret masking: one word list and one URL rule for every printed or logged
//! configuration.
//!
//! Whole secret values are replaced by [`REDACTED`]; the password inside a URL or a
//! connection string by [`URL_PASSWORD_MASK`], so the rest stays readable.

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

/// Masks the passwords a URL or a connection string may hold, keeping the rest:
///
/// - the password of the user information: `scheme://user:secret@host/...` →
///   `scheme://user:****@host/...`;
/// - query parameters with a secret name ([`is_secret_name`]):
///   `postgres://db/x?sslmode=require&password=secret` → `...&password=****`;
/// - key/value connection strings (libpq's form, without `://`):
///   `host=db user=app password=secret` → `host=db user=app password=****`, quoted
///   values (`password='a b'`) and spaces around `=` included.
///
/// Anything without a password is returned unchanged.
pub fn mask_url(url: &str) -> String {
    if url.contains("://") {
        mask_query(&mask_userinfo(url))
    } else {
        mask_key_values(url)
    }
}

fn mask_userinfo(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let at = match rest[..authority_end].rfind('@') {
        Some(at) => at,
        // A password holding `/`, `?` or `#` unencoded ends the authority early for a
        // parser; `user:` before the first `@` still says the rest up to it is a
        // password. (A URL with `user:` and an `@` later in its path or query is
        // masked more than needed, never less.)
        None => match rest.find('@') {
            Some(at) if rest[..at].find(':').is_some_and(|c| c < authority_end) => at,
            _ => return url.to_owned(),
        },
    };
    let userinfo = &rest[..at];
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

/// Masks the values of secret-named query parameters (`?a=1&password=x#f`).
fn mask_query(url: &str) -> String {
    let Some(query_start) = url.find('?') else {
        return url.to_owned();
    };
    let query_end = url[query_start..]
        .find('#')
        .map_or(url.len(), |i| query_start + i);
    let query = &url[query_start + 1..query_end];
    let masked: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _)) if is_secret_name(name) => format!("{name}={URL_PASSWORD_MASK}"),
            _ => pair.to_owned(),
        })
        .collect();
    format!(
        "{}{}{}",
        &url[..=query_start],
        masked.join("&"),
        &url[query_end..]
    )
}

/// Masks the secret-named values of a `key=value key='quoted value'` string (pairs
/// separated by spaces, as libpq has them, or by `,` or `;`, as other clients do); text
/// that is not `key=value` is kept as it is.
fn mask_key_values(text: &str) -> String {
    let bytes = text.as_bytes();
    let is_separator = |b: u8| b.is_ascii_whitespace() || b == b',' || b == b';';
    let skip = |mut i: usize, what: &dyn Fn(u8) -> bool| {
        while i < bytes.len() && what(bytes[i]) {
            i += 1;
        }
        i
    };
    let space = |b: u8| b.is_ascii_whitespace();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut i = 0;
    loop {
        i = skip(i, &is_separator);
        if i >= bytes.len() {
            break;
        }
        let key_start = i;
        while i < bytes.len() && !is_separator(bytes[i]) && bytes[i] != b'=' {
            i += 1;
        }
        let key = &text[key_start..i];
        let after_key = skip(i, &space);
        if after_key >= bytes.len() || bytes[after_key] != b'=' {
            // A bare word, not `key=value`: keep it.
            i = after_key.max(key_start + 1);
            continue;
        }
        let value_start = skip(after_key + 1, &space);
        let mut value_end = value_start;
        if value_start < bytes.len() && bytes[value_start] == b'\'' {
            value_end += 1;
            while value_end < bytes.len() && bytes[value_end] != b'\'' {
                // A backslash escapes the next character (`\'`, `\\`).
                value_end += if bytes[value_end] == b'\\' { 2 } else { 1 };
            }
            value_end = (value_end + 1).min(bytes.len());
        } else {
            while value_end < bytes.len() && !is_separator(bytes[value_end]) {
                value_end += if bytes[value_end] == b'\\' { 2 } else { 1 };
            }
            value_end = value_end.min(bytes.len());
        }
        if is_secret_name(key) && value_end > value_start {
            out.push_str(&text[copied..value_start]);
            out.push_str(URL_PASSWORD_MASK);
            copied = value_end;
        }
        i = value_end.max(value_start);
    }
    out.push_str(&text[copied..]);
    out
}

/// Masks, in place, the values of `properties` whose names are secret, and the
/// passwords inside the others (a URL or a connection string, see [`mask_url`]).
pub fn mask_properties<'a>(properties: impl IntoIterator<Item = (&'a String, &'a mut String)>) {
    for (name, value) in properties {
        if is_secret_name(name) {
            REDACTED.clone_into(value);
        } else {
            *value = mask_url(value);
        }
    }
}

/// A URL or connection string that may hold a password, as held after validation:
/// `Debug` shows it through [`mask_url`], so a settings value printed or logged whole
/// never shows the password; it dereferences to the `str` itself for the connection
/// that needs it (and [`expose`](Self::expose) says so where that reads better).
#[derive(Clone, PartialEq, Eq)]
pub struct SecretUrl(String);

impl SecretUrl {
    /// Wraps `url`.
    pub fn new(url: impl Into<String>) -> SecretUrl {
        SecretUrl(url.into())
    }

    /// The URL itself, password included.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::ops::Deref for SecretUrl {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&mask_url(&self.0), f)
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
    fn query_and_key_value_passwords_are_masked() {
        assert_eq!(
            mask_url("postgres://db/x?sslmode=require&password=s3cret#f"),
            "postgres://db/x?sslmode=require&password=****#f"
        );
        // Reserved characters left unencoded in a password.
        for url in [
            "postgres://app:pa/ss@db:5432/x",
            "postgres://app:pa?ss@db:5432/x",
            "postgres://app:pa#ss@db:5432/x",
            "redis://:a/b@cache:6379/0",
        ] {
            let masked = mask_url(url);
            assert!(
                !masked.contains("ss@") && !masked.contains("a/b"),
                "{url} -> {masked}"
            );
            assert!(masked.contains(":****@"), "{url} -> {masked}");
        }
        assert_eq!(mask_url("postgres://db:5432/x"), "postgres://db:5432/x");
        assert_eq!(mask_url("https://host/a@b"), "https://host/a@b");
        assert_eq!(
            mask_url("postgresql://u:pw@db/x?password=other&application_name=p"),
            "postgresql://u:****@db/x?password=****&application_name=p"
        );
        assert_eq!(
            mask_url("host=db user=app password=s3cret dbname=x"),
            "host=db user=app password=**** dbname=x"
        );
        assert_eq!(
            mask_url("host=db  password = 's3 cr\\'et' sslpassword=k2 port=5432"),
            "host=db  password = **** sslpassword=**** port=5432"
        );
        assert_eq!(mask_url("password="), "password=");
        assert_eq!(
            mask_url("user=a;password=b;host=c"),
            "user=a;password=****;host=c"
        );
        assert_eq!(
            mask_url("logicalCluster=lkc-1,password=x,y=z"),
            "logicalCluster=lkc-1,password=****,y=z"
        );
        assert_eq!(mask_url("host=db PASSWORD=x"), "host=db PASSWORD=****");
        assert_eq!(mask_url("just words = here"), "just words = here");
        assert_eq!(mask_url("127.0.0.1:9092"), "127.0.0.1:9092");
        // Text that is not key/value never panics, whatever it holds.
        for text in [
            "'",
            "=",
            "a='",
            "a=\\",
            "password='x\\",
            "password=\\ü x",
            "é",
        ] {
            let _ = mask_url(text);
        }
        assert_eq!(mask_url("password='x\\"), "password=****");
        assert_eq!(mask_url("ü=é password=ö"), "ü=é password=****");
    }

    #[test]
    fn a_secret_url_debugs_masked() {
        let url = SecretUrl::new("host=db password=hunter2");
        assert_eq!(format!("{url:?}"), "\"host=db password=****\"");
        assert_eq!(&*url, "host=db password=hunter2");
        assert_eq!(url.expose(), "host=db password=hunter2");
    }

    #[test]
    fn properties_are_masked_in_place() {
        let mut properties = std::collections::BTreeMap::from([
            ("sasl.password".to_owned(), "hunter2".to_owned()),
            ("sasl.username".to_owned(), "shop".to_owned()),
        ]);
        properties.insert(
            "https.proxy".to_owned(),
            "http://u:hunter3@proxy:3128".to_owned(),
        );
        mask_properties(properties.iter_mut());
        assert_eq!(properties["sasl.password"], REDACTED);
        assert_eq!(properties["sasl.username"], "shop");
        assert_eq!(properties["https.proxy"], "http://u:****@proxy:3128");
    }
}
