//! Mutual TLS between roll-sites: each party has its own certificate and trusts one CA.

use crate::error::{Error, Result};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tonic::transport::{Certificate, ClientTlsConfig, Identity};

/// Whether an error's text is rustls' for a TLS handshake that failed: a certificate refused
/// by either side, or a peer that speaks no TLS.
pub fn is_handshake_failure(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    [
        "invalid peer certificate",
        "fatal alert",
        "handshake",
        "peer sent no certificates",
        "unknownissuer",
        "unknown ca",
        "badcertificate",
        "corrupt message",
    ]
    .iter()
    .any(|w| m.contains(w))
}

/// A party's certificate, key and the CA it trusts (PEM files).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// Certificate chain.
    pub cert: PathBuf,
    /// Private key.
    pub key: PathBuf,
    /// CA certificate that peers' certificates must chain to.
    pub ca: PathBuf,
}

impl TlsFiles {
    /// The files from config; `None` if no certificate is configured, an error if only some
    /// of the three are.
    pub fn from_config(cert: &Path, key: &Path, ca: &Path) -> Result<Option<Self>> {
        let set = [cert, key, ca].map(|p| !p.as_os_str().is_empty());
        match set {
            [false, false, false] => Ok(None),
            [true, true, true] => Ok(Some(Self {
                cert: cert.into(),
                key: key.into(),
                ca: ca.into(),
            })),
            _ => Err(Error::Config(
                "TLS needs all three of rollsite.tls_cert, tls_key and tls_ca (or \
                 EGGROLL_ROLLSITE_TLS_CERT, _KEY, _CA); some are missing"
                    .into(),
            )),
        }
    }

    fn read(path: &Path, what: &str) -> Result<Vec<u8>> {
        let bytes = std::fs::read(path)
            .map_err(|e| Error::Tls(format!("cannot read the {what} {}: {e}", path.display())))?;
        if !String::from_utf8_lossy(&bytes).contains("-----BEGIN") {
            return Err(Error::Tls(format!(
                "the {what} {} is not PEM (no -----BEGIN line)",
                path.display()
            )));
        }
        Ok(bytes)
    }

    fn identity(&self) -> Result<Identity> {
        Ok(Identity::from_pem(
            Self::read(&self.cert, "certificate")?,
            Self::read(&self.key, "private key")?,
        ))
    }

    fn ca_cert(&self) -> Result<Certificate> {
        Ok(Certificate::from_pem(Self::read(
            &self.ca,
            "CA certificate",
        )?))
    }

    /// Server side as a rustls acceptor of our own, so that every failed handshake is seen
    /// (counted and logged with the peer's address), which tonic's built-in TLS hides:
    /// present our certificate, require a client certificate from our CA, speak HTTP/2.
    pub fn acceptor(&self) -> Result<tokio_rustls::TlsAcceptor> {
        use tokio_rustls::rustls::pki_types::pem::PemObject;
        use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
        use tokio_rustls::rustls::{self, server::WebPkiClientVerifier, RootCertStore};
        let bad = |what: &str, path: &Path, e: &dyn std::fmt::Display| {
            Error::Tls(format!("the {what} {} cannot be used: {e}", path.display()))
        };
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(&Self::read(&self.cert, "certificate")?)
                .collect::<std::result::Result<_, _>>()
                .map_err(|e| bad("certificate", &self.cert, &e))?;
        let key = PrivateKeyDer::from_pem_slice(&Self::read(&self.key, "private key")?)
            .map_err(|e| bad("private key", &self.key, &e))?;
        let mut roots = RootCertStore::empty();
        for ca in CertificateDer::pem_slice_iter(&Self::read(&self.ca, "CA certificate")?) {
            let ca = ca.map_err(|e| bad("CA certificate", &self.ca, &e))?;
            roots
                .add(ca)
                .map_err(|e| bad("CA certificate", &self.ca, &e))?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .map_err(|e| bad("CA certificate", &self.ca, &e))?;
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Tls(format!("TLS protocol versions: {e}")))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(certs, key)
            .map_err(|e| bad("certificate and key", &self.cert, &e))?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
    }

    /// Client side: trust our CA, present our certificate, verify the peer as `domain`.
    pub fn client(&self, domain: &str) -> Result<ClientTlsConfig> {
        Ok(ClientTlsConfig::new()
            .ca_certificate(self.ca_cert()?)
            .identity(self.identity()?)
            .domain_name(domain))
    }
}
