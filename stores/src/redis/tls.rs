//! The certificates a TLS connection to Redis trusts and presents: a CA to
//! verify the server against (instead of the system's roots) and, for servers
//! that ask for one (`tls-auth-clients yes`), a client certificate and key.
//!
//! TLS is rustls with the ring provider: no system OpenSSL to build or link.

use std::path::Path;

use ::redis::{ClientTlsConfig, TlsCertificates};
use sessionkit::StoreError;

use super::url::TlsFiles;

/// PEM bytes for a TLS connection; empty means the system's roots and no
/// client certificate.
#[derive(Clone, Default)]
pub(super) struct Tls {
    ca: Option<Vec<u8>>,
    identity: Option<(Vec<u8>, Vec<u8>)>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("Tls")
            .field("ca", &self.ca.is_some())
            .field("client_certificate", &self.identity.is_some())
            .finish()
    }
}

impl Tls {
    pub(super) fn set_ca(&mut self, pem: Vec<u8>) {
        self.ca = Some(pem);
    }

    pub(super) fn set_identity(&mut self, cert_pem: Vec<u8>, key_pem: Vec<u8>) {
        self.identity = Some((cert_pem, key_pem));
    }

    pub(super) fn is_empty(&self) -> bool {
        self.ca.is_none() && self.identity.is_none()
    }

    /// Reads the files a URL names; they replace whatever the builder set.
    pub(super) fn read_files(&mut self, files: &TlsFiles) -> Result<(), StoreError> {
        if let Some(ca) = &files.ca {
            self.ca = Some(read(ca, "ca=")?);
        }
        match (&files.cert, &files.key) {
            (Some(cert), Some(key)) => self.identity = Some((read(cert, "cert=")?, read(key, "key=")?)),
            (None, None) => {}
            _ => return Err(StoreError::config("invalid Redis URL: cert= and key= go together")),
        }
        Ok(())
    }

    /// The `redis` crate's form, or `None` when there is nothing to add to
    /// its defaults.
    pub(super) fn certificates(&self) -> Option<TlsCertificates> {
        install_crypto_provider();
        if self.is_empty() {
            return None;
        }
        Some(TlsCertificates {
            client_tls: self
                .identity
                .as_ref()
                .map(|(cert, key)| ClientTlsConfig { client_cert: cert.clone(), client_key: key.clone() }),
            root_cert: self.ca.clone(),
        })
    }
}

/// Makes ring the process's rustls provider unless one is installed: rustls
/// refuses to pick one by itself when an application links two.
pub(super) fn install_crypto_provider() {
    // An error means a provider is installed already, which is as good.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>, StoreError> {
    std::fs::read(path).map_err(|err| {
        StoreError::config_caused_by(format!("cannot read the TLS file of {what} {}", path.display()), err)
    })
}
