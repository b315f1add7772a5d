//! TLS to PostgreSQL, decided by the connection URL as libpq decides it.
//!
//! tokio-postgres knows `sslmode=disable|prefer|require` and nothing about
//! certificates; libpq's other TLS parameters would make it refuse the URL. So the URL's
//! `sslmode` and `sslrootcert` are taken out here ([`PostgresUrl::parse`], no I/O), the
//! rest goes to tokio-postgres, and the TLS side is a rustls client (ring provider)
//! behind `tokio-postgres-rustls` ([`PostgresUrl::connector`], which reads the CA file).
//!
//! | `sslmode`          | TLS                        | certificate chain checked   | host name checked |
//! |--------------------|----------------------------|-----------------------------|-------------------|
//! | `disable`          | never                      | –                           | –                 |
//! | `prefer` (default) | when the server offers it  | only if `sslrootcert` is set | no               |
//! | `require`          | always                     | only if `sslrootcert` is set | no               |
//! | `verify-ca`        | always                     | yes                         | no                |
//! | `verify-full`      | always                     | yes                         | yes               |
//!
//! The chain is checked against the PEM certificates of `sslrootcert` (a file path), or,
//! without it (or with `sslrootcert=system`), against the system's trusted roots. As in
//! libpq, `prefer` and `require` with an `sslrootcert` check the chain as `verify-ca`
//! does. Unlike libpq, `~/.postgresql/root.crt` is not read: a CA is named in the URL or
//! the system's roots apply.
//!
//! `prefer` and `require` without `sslrootcert` encrypt without knowing whom they talk
//! to: the certificate is accepted as it comes ([`UnverifiedServer`]; the handshake's
//! signatures are still checked, so the session is bound to the key of that
//! certificate). That is libpq's meaning of those modes, kept so that URLs written for
//! libpq mean the same here; a deployment that needs protection against an active
//! attacker says `verify-full`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use percent_encoding::percent_decode_str;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::error::Error;
use ingest_common::ConfigError;

/// The configuration key the PostgreSQL URL comes from, named in errors.
const KEY: &str = "postgres.url";

/// libpq's `sslmode`, as far as a client that never sends a client certificate needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// No TLS.
    Disable,
    /// TLS when the server offers it, else plain (libpq's default).
    Prefer,
    /// TLS or no connection.
    Require,
    /// TLS with the certificate chain checked.
    VerifyCa,
    /// TLS with the certificate chain and the host name checked.
    VerifyFull,
}

impl SslMode {
    fn parse(value: &str) -> Option<SslMode> {
        Some(match value {
            "disable" => SslMode::Disable,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            _ => return None,
        })
    }
}

/// Where the trusted roots come from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Roots {
    /// None named: the system's roots for `verify-*`, no check for `prefer`/`require`.
    Unset,
    /// `sslrootcert=system`.
    System,
    /// `sslrootcert=PATH`: PEM certificates.
    File(PathBuf),
}

/// A PostgreSQL connection URL: what tokio-postgres reads, and the TLS policy it leaves
/// to this module.
#[derive(Debug, Clone)]
pub struct PostgresUrl {
    config: tokio_postgres::Config,
    mode: SslMode,
    roots: Roots,
}

impl PostgresUrl {
    /// Splits `url` (`postgres://…?sslmode=…&sslrootcert=…`) into the tokio-postgres
    /// configuration and the TLS policy. No I/O: the CA file is read by
    /// [`PostgresUrl::connector`].
    ///
    /// # Errors
    ///
    /// [`Error::Config`] (key `postgres.url`) for an unknown `sslmode`, an empty
    /// `sslrootcert`, or a URL tokio-postgres refuses (the message never shows the URL).
    pub fn parse(url: &str) -> Result<PostgresUrl, Error> {
        let bad = |why: String| Error::Config(ConfigError::new(KEY, why));
        let (base, query) = match url.split_once('?') {
            Some((base, query)) => (base, query),
            None => (url, ""),
        };
        let mut mode = SslMode::Prefer;
        let mut roots = Roots::Unset;
        let mut kept = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let decode = |s: &str| percent_decode_str(s).decode_utf8_lossy().into_owned();
            match decode(key).as_str() {
                "sslmode" => {
                    let value = decode(value);
                    mode = SslMode::parse(&value).ok_or_else(|| {
                        bad(format!(
                            "sslmode `{value}` is not one of disable, prefer, require, \
                             verify-ca, verify-full"
                        ))
                    })?;
                }
                "sslrootcert" => {
                    roots = match decode(value).as_str() {
                        "" => return Err(bad("sslrootcert is empty".to_owned())),
                        "system" => Roots::System,
                        path => Roots::File(PathBuf::from(path)),
                    };
                }
                _ => kept.push(pair),
            }
        }
        let rest = if kept.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        let mut config: tokio_postgres::Config = rest
            .parse()
            .map_err(|e: tokio_postgres::Error| bad(format!("not a PostgreSQL URL: {e}")))?;
        config.ssl_mode(match mode {
            SslMode::Disable => tokio_postgres::config::SslMode::Disable,
            SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => {
                tokio_postgres::config::SslMode::Require
            }
        });
        Ok(PostgresUrl {
            config,
            mode,
            roots,
        })
    }

    /// The `sslmode` in force (`prefer` when the URL names none).
    pub fn ssl_mode(&self) -> SslMode {
        self.mode
    }

    /// The `sslrootcert` file, if the URL names one.
    pub fn root_cert_file(&self) -> Option<&Path> {
        match &self.roots {
            Roots::File(path) => Some(path),
            _ => None,
        }
    }

    /// The tokio-postgres side of the URL (its `sslmode` already set: `require` for the
    /// `verify-*` modes, which the connector makes stricter).
    pub fn config(&self) -> &tokio_postgres::Config {
        &self.config
    }

    /// The tokio-postgres side of the URL, taken.
    pub fn into_config(self) -> tokio_postgres::Config {
        self.config
    }

    /// The TLS connector this URL asks for (`None` for `sslmode=disable`). Reads the
    /// `sslrootcert` file, or the system's roots, each time it is called: a connection
    /// opened after the file was replaced trusts the new one.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] (key `postgres.url`) naming the `sslrootcert` file when it
    /// cannot be read or holds no usable PEM certificate, or when the system has no
    /// trusted roots for a `verify-*` mode without `sslrootcert`.
    pub fn connector(&self) -> Result<Option<MakeRustlsConnect>, Error> {
        if self.mode == SslMode::Disable {
            return Ok(None);
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let roots = match (&self.roots, self.mode) {
            (Roots::Unset, SslMode::Prefer | SslMode::Require) => None,
            (Roots::Unset | Roots::System, _) => Some(system_roots()?),
            (Roots::File(path), _) => Some(file_roots(path)?),
        };
        let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Config(ConfigError::new(KEY, format!("TLS settings: {e}"))))?;
        let verifier: Arc<dyn ServerCertVerifier> = match roots {
            None => Arc::new(UnverifiedServer {
                algorithms: provider.signature_verification_algorithms,
            }),
            Some(roots) => {
                let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                    .build()
                    .map_err(|e| Error::Config(ConfigError::new(KEY, format!("TLS roots: {e}"))))?;
                if self.mode == SslMode::VerifyFull {
                    webpki
                } else {
                    Arc::new(ChainOnly { inner: webpki })
                }
            }
        };
        let mut config = builder
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        // PostgreSQL 17 checks ALPN when a client offers it (and requires it for
        // `sslnegotiation=direct`); older servers ignore it.
        config.alpn_protocols = vec![b"postgresql".to_vec()];
        Ok(Some(MakeRustlsConnect::new(config)))
    }
}

/// The PEM certificates of `path` as trusted roots.
fn file_roots(path: &Path) -> Result<RootCertStore, Error> {
    let bad = |why: String| {
        Error::Config(ConfigError::new(
            KEY,
            format!("sslrootcert {}: {why}", path.display()),
        ))
    };
    let pem = std::fs::read(path).map_err(|e| bad(format!("cannot be read: {e}")))?;
    let mut roots = RootCertStore::empty();
    for certificate in CertificateDer::pem_slice_iter(&pem) {
        let certificate = certificate.map_err(|e| bad(format!("not PEM: {e}")))?;
        roots
            .add(certificate)
            .map_err(|e| bad(format!("not a usable CA certificate: {e}")))?;
    }
    if roots.is_empty() {
        return Err(bad("holds no PEM certificate".to_owned()));
    }
    Ok(roots)
}

/// The system's trusted roots (the platform store, as `rustls-native-certs` finds it).
fn system_roots() -> Result<RootCertStore, Error> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(found.certs);
    if roots.is_empty() {
        let why = match found.errors.first() {
            Some(e) => {
                format!("no system root certificates could be loaded ({e}); set sslrootcert")
            }
            None => "the system has no trusted root certificates; set sslrootcert".to_owned(),
        };
        return Err(Error::Config(ConfigError::new(KEY, why)));
    }
    Ok(roots)
}

/// `verify-ca` (and `prefer`/`require` with `sslrootcert`): the chain must lead to a
/// trusted root; the name in the certificate is not compared with the host.
#[derive(Debug)]
struct ChainOnly {
    inner: Arc<WebPkiServerVerifier>,
}

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // The web PKI verifier checks the chain (and validity period) first and the name
        // last: a name error means everything else passed.
        match self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// `prefer`/`require` without `sslrootcert`, as libpq means them: the server's
/// certificate is accepted whoever issued it and whatever name it carries. The
/// handshake signatures are checked with it, so the traffic is encrypted to the holder
/// of that certificate's key, but nothing says who that is. Used for these two modes
/// only, never for `verify-ca`/`verify-full`.
#[derive(Debug)]
struct UnverifiedServer {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for UnverifiedServer {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(url: &str) -> PostgresUrl {
        PostgresUrl::parse(url).expect("a valid URL")
    }

    #[test]
    fn the_mode_defaults_to_prefer_and_the_tls_parameters_leave_the_url() {
        let plain = parse("postgres://app@db:5432/shop");
        assert_eq!(plain.ssl_mode(), SslMode::Prefer);
        assert_eq!(plain.root_cert_file(), None);
        let url = parse(
            "postgres://app:pw@db:5432/shop?application_name=p&sslmode=verify-full\
             &sslrootcert=%2Fetc%2Fca%20x.pem&connect_timeout=3",
        );
        assert_eq!(url.ssl_mode(), SslMode::VerifyFull);
        assert_eq!(url.root_cert_file(), Some(Path::new("/etc/ca x.pem")));
        assert_eq!(url.config().get_application_name(), Some("p"));
        assert_eq!(url.config().get_dbname(), Some("shop"));
        assert_eq!(
            url.config().get_ssl_mode(),
            tokio_postgres::config::SslMode::Require
        );
        assert_eq!(
            parse("postgres://db/shop?sslmode=disable")
                .config()
                .get_ssl_mode(),
            tokio_postgres::config::SslMode::Disable
        );
        assert_eq!(
            parse("postgres://db/shop?sslmode=verify-ca&sslrootcert=system").roots,
            Roots::System
        );
    }

    #[test]
    fn bad_tls_parameters_are_configuration_errors_that_do_not_show_the_url() {
        for (url, expected) in [
            (
                "postgres://u:secret@db/shop?sslmode=allow",
                "sslmode `allow`",
            ),
            (
                "postgres://u:secret@db/shop?sslrootcert=",
                "sslrootcert is empty",
            ),
            (
                "postgres://u:secret@db/shop?nonsense=1",
                "not a PostgreSQL URL",
            ),
        ] {
            let message = PostgresUrl::parse(url).expect_err("refused").to_string();
            assert!(message.contains("postgres.url"), "{message}");
            assert!(message.contains(expected), "{message}");
            assert!(!message.contains("secret"), "{message}");
        }
    }

    #[test]
    fn an_unusable_root_file_is_named() {
        let dir = std::env::temp_dir().join(format!("pg-tls-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let missing = dir.join("missing.pem");
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "no certificate here\n").expect("write");
        for (path, expected) in [(&missing, "cannot be read"), (&empty, "holds no PEM")] {
            let url = parse(&format!(
                "postgres://db/shop?sslmode=verify-full&sslrootcert={}",
                path.display()
            ));
            let message = url.connector().err().expect("refused").to_string();
            assert!(message.contains(&path.display().to_string()), "{message}");
            assert!(message.contains(expected), "{message}");
        }
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn disable_needs_no_connector_and_require_needs_no_roots() {
        assert!(parse("postgres://db/shop?sslmode=disable")
            .connector()
            .expect("built")
            .is_none());
        assert!(parse("postgres://db/shop?sslmode=require")
            .connector()
            .expect("built")
            .is_some());
    }
}
