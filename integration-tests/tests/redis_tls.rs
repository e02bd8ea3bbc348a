//! `RedisStore` on a TLS-only `redis-server` (see `redis_tls`: no plain
//! port, certificates generated at run time): the conformance kit and the
//! HTTP suite over `rediss://` with a private CA and a client certificate,
//! the builder form, and every way TLS can be wrong, each a clear error at
//! connect within the timeout.
//!
//! Without `redis-server` the tests say loudly that they were skipped, and
//! fail under `CI=true`.

use std::error::Error as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use sessionkit::{SessionStore, StoreError};
use sessionkit_integration_tests::redis_server::RedisServer;
use sessionkit_integration_tests::redis_suites;
use sessionkit_integration_tests::redis_tls::{ClientAuth, TlsRedis};
use sessionkit_integration_tests::stores::StoreUnderTest;
use sessionkit_integration_tests::support::{in_secs, map};
use sessionkit_stores::RedisStore;

#[test]
fn the_conformance_kit_passes_over_tls_with_a_client_certificate() {
    let Some(server) = TlsRedis::start_or_skip(ClientAuth::Required) else { return };
    let url = server.url();
    let stores = AtomicUsize::new(0);
    sessionkit::testing::block_on(sessionkit::testing::run_all(
        || {
            let prefix = format!("kit-{}:", stores.fetch_add(1, Ordering::Relaxed));
            let url = url.clone();
            async move { RedisStore::builder().prefix(prefix).open(&url).await.expect("open over TLS") }
        },
        sessionkit::testing::Options::expiring_on_its_own(),
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_suite_passes_over_tls() {
    let Some(server) = TlsRedis::start_or_skip(ClientAuth::Required) else { return };
    let url = server.url();
    redis_suites::run_http_suite("redis tls", |prefix| {
        let url = url.clone();
        async move {
            let store = RedisStore::builder().prefix(prefix).open(&url).await.expect("open over TLS");
            StoreUnderTest::new("redis tls", store)
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_builder_takes_the_ca_and_client_certificate_as_pem() {
    let Some(server) = TlsRedis::start_or_skip(ClientAuth::Required) else { return };
    let certificates = server.certificates();
    let read = |path: &std::path::Path| std::fs::read(path).expect("read a PEM file");
    let store = RedisStore::builder()
        .tls_ca(read(&certificates.ca))
        .tls_client_certificate(read(&certificates.client_cert), read(&certificates.client_key))
        .open(&format!("rediss://127.0.0.1:{}/", server.port()))
        .await
        .expect("open with PEM from the builder");
    let id = sessionkit_integration_tests::support::key();
    store.set(&id, &map(json!({ "over": "tls" })), Some(in_secs(60))).await.expect("set");
    assert_eq!(store.get(&id).await.expect("get").expect("present").data["over"], json!("tls"));
}

/// The whole chain of causes, to check what an error says.
fn chain(err: &StoreError) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(" <- ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Opens `url` with a short timeout; the error and how long it took.
async fn open_error(url: &str) -> (StoreError, Duration) {
    let timeout = Duration::from_millis(1000);
    let started = Instant::now();
    let result = RedisStore::builder().timeout(timeout).open(url).await;
    let waited = started.elapsed();
    assert!(waited < timeout + Duration::from_secs(1), "open waited {waited:?} despite a {timeout:?} timeout");
    match result {
        Ok(_) => panic!("opening must fail"),
        Err(err) => (err, waited),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_certificate_from_another_ca_is_refused_at_connect() {
    let Some(server) = TlsRedis::start_or_skip(ClientAuth::None) else { return };
    let (err, waited) = open_error(&server.url_with(&server.certificates().wrong_ca, false)).await;
    let text = chain(&err);
    assert!(matches!(err, StoreError::Backend { .. }), "expected a backend error, got {err:?}");
    assert!(text.contains("certificate"), "the error should name the certificate problem: {text}");
    eprintln!("wrong CA: refused after {waited:?}: {text}");

    // The right CA on the same server works: the refusal was the CA's.
    let store = RedisStore::open(&server.url_with(&server.certificates().ca, false)).await.expect("the right CA");
    assert!(store.get(&sessionkit_integration_tests::support::key()).await.expect("get").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_tcp_server_behind_a_rediss_url_is_an_error_at_connect() {
    let Some(plain) = RedisServer::start_or_skip() else { return };
    let Some(tls) = TlsRedis::start_or_skip(ClientAuth::None) else { return };
    let url = format!("rediss://127.0.0.1:{}/?ca={}", plain.port(), tls.certificates().ca.display());
    let (err, waited) = open_error(&url).await;
    let text = chain(&err);
    assert!(matches!(err, StoreError::Backend { .. }), "expected a backend error, got {err:?}");
    assert!(text.contains("TLS handshake"), "the error should say the TLS handshake did not happen: {text}");
    eprintln!("plain TCP behind rediss://: refused after {waited:?}: {text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_requires_a_client_certificate_refuses_a_client_without_one() {
    let Some(server) = TlsRedis::start_or_skip(ClientAuth::Required) else { return };
    let (err, waited) = open_error(&server.url_with(&server.certificates().ca, false)).await;
    let text = chain(&err);
    assert!(matches!(err, StoreError::Backend { .. }), "expected a backend error, got {err:?}");
    assert!(text.contains("CertificateRequired"), "the error should say a client certificate is required: {text}");
    eprintln!("no client certificate: refused after {waited:?}: {text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_or_misplaced_tls_files_are_config_errors() {
    let missing = "rediss://127.0.0.1:1/?ca=%2Fno%2Fsuch%2Fca.pem";
    assert!(matches!(RedisStore::open(missing).await, Err(StoreError::Config { .. })));
    let plain_with_ca = "redis://127.0.0.1:1/?ca=%2Fno%2Fsuch%2Fca.pem";
    assert!(matches!(RedisStore::open(plain_with_ca).await, Err(StoreError::Config { .. })));
    let cert_without_key = "rediss://127.0.0.1:1/?cert=%2Fetc%2Fhostname";
    assert!(matches!(RedisStore::open(cert_without_key).await, Err(StoreError::Config { .. })));
}
