//! TLS with rustls: certificate and key from PEM files, HTTP/2 and HTTP/1.1 offered by
//! ALPN, optional client-certificate authentication, and client certificates tied to
//! storefronts by the DNS names they carry (`tls.clients`).

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use tokio_rustls::TlsAcceptor;

use crate::config::TlsFiles;

fn certificates(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .with_context(|| format!("reading certificates from {}", path.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("parsing certificates in {}", path.display()))?;
    anyhow::ensure!(!certs.is_empty(), "no certificate in {}", path.display());
    Ok(certs)
}

/// The acceptor for the TCP listener.
///
/// # Errors
///
/// When a file cannot be read or holds no usable certificate or key.
pub fn acceptor(files: &TlsFiles) -> anyhow::Result<TlsAcceptor> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = certificates(&files.cert)?;
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .with_context(|| format!("reading the private key from {}", files.key.display()))?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?;
    let builder = match &files.client_ca {
        Some(path) => {
            let mut roots = RootCertStore::empty();
            for cert in certificates(path)? {
                roots
                    .add(cert)
                    .with_context(|| format!("adding a CA from {}", path.display()))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .context("client certificate verifier")?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .context("the certificate does not match the key")?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// What a connection's client certificate says about who sends on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Certificate {
    /// No certificate, or no storefronts are tied to certificates.
    Untied,
    /// A certificate carrying the name of this storefront's entry in `tls.clients`.
    Storefront(Arc<str>),
    /// A certificate (verified by the client CA) that carries none of the names.
    Unlisted,
}

/// `tls.clients`: certificate names and the storefronts they send as.
#[derive(Debug, Clone, Default)]
pub struct ClientNames {
    entries: Vec<(ServerName<'static>, Arc<str>)>,
}

impl ClientNames {
    /// The names of `files` (already checked to be DNS names).
    pub fn new(files: &TlsFiles) -> ClientNames {
        let entries = files
            .clients
            .iter()
            .filter_map(|(name, source)| {
                let name = ServerName::try_from(name.clone()).ok()?;
                Some((name, Arc::from(source.as_str())))
            })
            .collect();
        ClientNames { entries }
    }

    /// Who sends with the certificate chain `presented` (end entity first), already
    /// verified during the handshake. The first entry whose name the certificate
    /// carries among its DNS subject alternative names wins.
    pub fn identify(&self, presented: Option<&[CertificateDer<'_>]>) -> Certificate {
        if self.entries.is_empty() {
            return Certificate::Untied;
        }
        let Some(end_entity) = presented.and_then(<[_]>::first) else {
            return Certificate::Untied;
        };
        let Ok(cert) = webpki::EndEntityCert::try_from(end_entity) else {
            return Certificate::Unlisted;
        };
        self.entries
            .iter()
            .find(|(name, _)| cert.verify_is_valid_for_subject_name(name).is_ok())
            .map_or(Certificate::Unlisted, |(_, source)| {
                Certificate::Storefront(source.clone())
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(clients: &[(&str, &str)]) -> TlsFiles {
        TlsFiles {
            cert: "/c".into(),
            key: "/k".into(),
            client_ca: Some("/ca".into()),
            clients: clients
                .iter()
                .map(|(n, s)| ((*n).to_owned(), (*s).to_owned()))
                .collect(),
        }
    }

    #[test]
    fn a_certificate_names_the_storefront_of_its_first_listed_name() {
        let cert = rcgen::generate_simple_self_signed(vec![
            "checkout.shop-eu.internal".to_owned(),
            "other.internal".to_owned(),
        ])
        .expect("cert");
        let chain = [cert.cert.der().clone()];
        let names = ClientNames::new(&files(&[
            ("checkout.shop-us.internal", "shop-us"),
            ("checkout.shop-eu.internal", "shop-eu"),
            ("other.internal", "other"),
        ]));
        assert_eq!(
            names.identify(Some(&chain)),
            Certificate::Storefront(Arc::from("shop-eu"))
        );
        let unlisted = ClientNames::new(&files(&[("checkout.shop-us.internal", "shop-us")]));
        assert_eq!(unlisted.identify(Some(&chain)), Certificate::Unlisted);
        assert_eq!(unlisted.identify(None), Certificate::Untied);
        assert_eq!(
            ClientNames::default().identify(Some(&chain)),
            Certificate::Untied
        );
    }
}
