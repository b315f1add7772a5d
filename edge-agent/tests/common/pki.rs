//! Certificates made for one test: a server certificate for 127.0.0.1, a CA and the
//! client certificates it signs, their PEM files, and rustls client configurations
//! that trust the server.

#![allow(dead_code, unreachable_pub)]

use std::path::Path;
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, CertifiedKey, IsCa, KeyPair};

/// A client certificate and its key.
pub type ClientCert = (rcgen::Certificate, KeyPair);

/// The test's certificates.
pub struct TestPki {
    /// The agent's certificate, for 127.0.0.1.
    pub server: CertifiedKey,
    ca: rcgen::Certificate,
    ca_key: KeyPair,
}

/// Where [`TestPki::write`] put the files.
pub struct PkiFiles {
    pub cert_file: String,
    pub key_file: String,
    pub ca_file: String,
}

impl TestPki {
    pub fn new() -> TestPki {
        let server =
            rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).expect("server cert");
        let ca_key = KeyPair::generate().expect("key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).expect("CA");
        TestPki { server, ca, ca_key }
    }

    /// A client certificate naming `name` (a DNS name in its SANs), signed by the CA.
    pub fn client(&self, name: &str) -> ClientCert {
        let key = KeyPair::generate().expect("key");
        let cert = CertificateParams::new(vec![name.to_owned()])
            .expect("params")
            .signed_by(&key, &self.ca, &self.ca_key)
            .expect("client cert");
        (cert, key)
    }

    /// Writes the server's certificate and key and the CA's certificate into `dir`.
    pub fn write(&self, dir: &Path) -> PkiFiles {
        let write = |name: &str, pem: String| {
            let path = dir.join(name);
            std::fs::write(&path, pem).expect("write");
            path.display().to_string()
        };
        PkiFiles {
            cert_file: write("cert.pem", self.server.cert.pem()),
            key_file: write("key.pem", self.server.key_pair.serialize_pem()),
            ca_file: write("ca.pem", self.ca.pem()),
        }
    }

    /// A client configuration trusting the server, presenting `client` if given.
    pub fn client_config(&self, client: Option<&ClientCert>) -> rustls::ClientConfig {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.server.cert.der().clone()).expect("root");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots);
        match client {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => builder
                .with_client_auth_cert(
                    vec![cert.der().clone()],
                    rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
                )
                .expect("client auth"),
        }
    }
}
