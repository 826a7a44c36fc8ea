//! Certificates for mutual TLS on loopback: a CA, and party certificates for 127.0.0.1 and
//! localhost that it signs, written as PEM files.

use eggroll::two_parties::TlsFiles;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use std::path::{Path, PathBuf};

/// A certificate authority whose certificate is in `dir/{name}.pem`.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    /// Its certificate (PEM).
    pub pem: PathBuf,
}

impl Ca {
    /// A new CA named `name`.
    pub fn new(dir: &Path, name: &str) -> Self {
        let key = KeyPair::generate().expect("CA key");
        let mut p = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, name);
        p.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::CrlSign,
        ];
        let cert = p.self_signed(&key).expect("self-signed CA");
        let pem = dir.join(format!("{name}.pem"));
        std::fs::write(&pem, cert.pem()).expect("write the CA certificate");
        Self {
            issuer: Issuer::new(p, key),
            pem,
        }
    }

    /// A certificate for 127.0.0.1 and localhost, for servers and clients, named `name`:
    /// `dir/{name}.crt` and its key `dir/{name}.key`.
    pub fn issue(&self, dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let key = KeyPair::generate().expect("party key");
        let mut p = CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])
            .expect("party params");
        p.distinguished_name.push(DnType::CommonName, name);
        p.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let cert = p.signed_by(&key, &self.issuer).expect("sign");
        let (crt, pem) = (
            dir.join(format!("{name}.crt")),
            dir.join(format!("{name}.key")),
        );
        std::fs::write(&crt, cert.pem()).expect("write the certificate");
        std::fs::write(&pem, key.serialize_pem()).expect("write the key");
        (crt, pem)
    }

    /// A party's files: its certificate from this CA, and this CA as the one it trusts.
    pub fn party(&self, dir: &Path, name: &str) -> TlsFiles {
        let (cert, key) = self.issue(dir, name);
        TlsFiles {
            cert,
            key,
            ca: self.pem.clone(),
        }
    }
}

/// One CA and the files of a guest and a host it signs.
pub fn guest_and_host(dir: &Path) -> (TlsFiles, TlsFiles) {
    let ca = Ca::new(dir, "ca");
    (ca.party(dir, "guest"), ca.party(dir, "host"))
}
