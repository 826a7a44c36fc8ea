//! Mutual TLS between roll-sites: each party has its own certificate and trusts one CA.

use crate::error::{Error, Result};
use std::path::{Path, PathBuf};
use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

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

    /// Server side: present our certificate, require a client certificate from our CA.
    pub fn server(&self) -> Result<ServerTlsConfig> {
        Ok(ServerTlsConfig::new()
            .identity(self.identity()?)
            .client_ca_root(self.ca_cert()?)
            .client_auth_optional(false))
    }

    /// Client side: trust our CA, present our certificate, verify the peer as `domain`.
    pub fn client(&self, domain: &str) -> Result<ClientTlsConfig> {
        Ok(ClientTlsConfig::new()
            .ca_certificate(self.ca_cert()?)
            .identity(self.identity()?)
            .domain_name(domain))
    }
}
