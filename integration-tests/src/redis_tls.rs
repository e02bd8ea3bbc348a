//! A throwaway TLS-only Redis for tests (`--port 0 --tls-port P`: no plain
//! TCP at all), with certificates generated at run time by `rcgen`: a test
//! CA, a server certificate it signed for `127.0.0.1` and `localhost`, a
//! client certificate it signed, and an unrelated CA that signed nothing
//! here (the "wrong CA"). Nothing is committed; the files live in the
//! server's temporary directory and go with it.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};
use tempfile::TempDir;

use crate::redis_node::{self, Ready, RedisNode};

/// Whether the server asks clients for a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// `tls-auth-clients no`: server authentication only.
    None,
    /// `tls-auth-clients yes`: a client without a certificate the CA signed
    /// is turned away.
    Required,
}

/// PEM files for the test deployment.
#[derive(Debug, Clone)]
pub struct TestCertificates {
    /// The CA that signed the server and client certificates.
    pub ca: PathBuf,
    /// Another CA, which signed nothing the server presents.
    pub wrong_ca: PathBuf,
    /// The client certificate and its key.
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
}

impl TestCertificates {
    /// Generates a fresh set into `dir`.
    ///
    /// # Panics
    ///
    /// If generating or writing them fails.
    pub fn generate(dir: &Path) -> Self {
        let (ca_params, ca_key, ca_pem) = authority("sessionkit test CA");
        let (_, _, wrong_ca_pem) = authority("sessionkit unrelated CA");
        let issuer = Issuer::new(ca_params, ca_key);
        let (server_pem, server_key) =
            leaf(&issuer, vec!["127.0.0.1".to_owned(), "localhost".to_owned()], ExtendedKeyUsagePurpose::ServerAuth);
        let (client_pem, client_key) = leaf(&issuer, Vec::new(), ExtendedKeyUsagePurpose::ClientAuth);
        let write = |name: &str, contents: &str| {
            let path = dir.join(name);
            if let Err(err) = std::fs::write(&path, contents) {
                panic!("cannot write {}: {err}", path.display());
            }
            path
        };
        Self {
            ca: write("ca.pem", &ca_pem),
            wrong_ca: write("wrong-ca.pem", &wrong_ca_pem),
            client_cert: write("client.pem", &client_pem),
            client_key: write("client.key", &client_key),
            server_cert: write("server.pem", &server_pem),
            server_key: write("server.key", &server_key),
        }
    }
}

fn authority(name: &str) -> (CertificateParams, KeyPair, String) {
    let key = KeyPair::generate().unwrap_or_else(|err| panic!("cannot generate a CA key: {err}"));
    let mut params = CertificateParams::new(Vec::new()).unwrap_or_else(|err| panic!("CA parameters: {err}"));
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let cert = params.self_signed(&key).unwrap_or_else(|err| panic!("cannot sign the CA certificate: {err}"));
    (params, key, cert.pem())
}

fn leaf(issuer: &Issuer<'_, KeyPair>, names: Vec<String>, usage: ExtendedKeyUsagePurpose) -> (String, String) {
    let key = KeyPair::generate().unwrap_or_else(|err| panic!("cannot generate a key: {err}"));
    let mut params = CertificateParams::new(names).unwrap_or_else(|err| panic!("certificate parameters: {err}"));
    params.distinguished_name.push(DnType::CommonName, "sessionkit test");
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    params.extended_key_usages = vec![usage];
    let cert = params.signed_by(&key, issuer).unwrap_or_else(|err| panic!("cannot sign a certificate: {err}"));
    (cert.pem(), key.serialize_pem())
}

/// A running TLS-only `redis-server`.
pub struct TlsRedis {
    // Dropped in order: the process, then its directory.
    node: RedisNode,
    certificates: TestCertificates,
    _dir: TempDir,
}

impl TlsRedis {
    /// Starts it, or returns `None` after a loud skip when `redis-server`
    /// is missing (a failure under `CI=true`).
    pub fn start_or_skip(client_auth: ClientAuth) -> Option<Self> {
        if !redis_node::programs_or_skip(&["redis-server"]) {
            return None;
        }
        let dir = tempfile::tempdir().unwrap_or_else(|err| panic!("cannot create a directory for redis-server: {err}"));
        let certificates = TestCertificates::generate(dir.path());
        let port = redis_node::free_ports(1)[0];
        let mut args = redis_node::base_args(0);
        args.extend(["--tls-port", &port.to_string()].map(OsString::from));
        for (flag, path) in [
            ("--tls-cert-file", &certificates.server_cert),
            ("--tls-key-file", &certificates.server_key),
            ("--tls-ca-cert-file", &certificates.ca),
        ] {
            args.push(flag.into());
            args.push(path.into());
        }
        let auth = match client_auth {
            ClientAuth::None => "no",
            ClientAuth::Required => "yes",
        };
        args.extend(["--tls-auth-clients", auth].map(OsString::from));
        let node = RedisNode::start("TLS server", dir.path().join("node"), port, args, Ready::Listening);
        Some(Self { node, certificates, _dir: dir })
    }

    /// The port it speaks TLS on (127.0.0.1); it has no plain port.
    pub fn port(&self) -> u16 {
        self.node.port()
    }

    /// The certificates it was started with.
    pub fn certificates(&self) -> &TestCertificates {
        &self.certificates
    }

    /// Its store URL trusting `ca`, with the client certificate if `client`.
    pub fn url_with(&self, ca: &Path, client: bool) -> String {
        let mut url = format!("rediss://127.0.0.1:{}/?ca={}", self.port(), encode(ca));
        if client {
            url.push_str(&format!(
                "&cert={}&key={}",
                encode(&self.certificates.client_cert),
                encode(&self.certificates.client_key)
            ));
        }
        url
    }

    /// Its store URL with the right CA and the client certificate.
    pub fn url(&self) -> String {
        self.url_with(&self.certificates.ca, true)
    }
}

fn encode(path: &Path) -> String {
    url::form_urlencoded::byte_serialize(path.as_os_str().as_encoded_bytes()).collect()
}
