//! What the layer logs: every failure it turns into a 500 or 413 is logged
//! with its cause, and no log line carries a session id (neither the cookie
//! value nor the hashed store key).

use std::io::Write;
use std::sync::{Arc, Mutex};

use reqwest::StatusCode;
use sessionkit::SessionId;
use sessionkit_integration_tests::http_suite::{Harness, pair, set_cookie};
use sessionkit_integration_tests::stores;

/// Collects everything the subscriber writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_logged_with_their_cause_and_never_with_an_id() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();

    let h = Harness::start(stores::memory().await.expect("memory store"), |c| c.max_size(2_048)).await;
    let response = h.post_with("/set/k/v", None).await;
    let cookie = set_cookie(&response, "id").expect("cookie");
    let id = SessionId::parse(cookie.value()).expect("id");

    // Too large: refused with 413 and a warning.
    assert_eq!(h.post_with("/big/5000", Some(&pair(&cookie))).await.status(), StatusCode::PAYLOAD_TOO_LARGE);
    // Store down while loading, then while saving a new session.
    h.observer.set_down(true);
    assert_eq!(h.get_with("/get/k", Some(&pair(&cookie))).await.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(h.post_with("/set/a/b", None).await.status(), StatusCode::INTERNAL_SERVER_ERROR);
    h.observer.set_down(false);

    let logs = String::from_utf8(captured.0.lock().expect("lock").clone()).expect("utf-8 logs");
    assert!(logs.contains("max_size"), "the refusal is logged with its reason:\n{logs}");
    assert!(logs.contains("while loading"), "the load failure is logged:\n{logs}");
    assert!(logs.contains("while saving"), "the save failure is logged:\n{logs}");
    assert!(logs.contains("the store is down (test)"), "the cause is logged, not only a summary:\n{logs}");
    for secret in [id.as_str(), sessionkit::StoreKey::hashed(&id).as_str()] {
        assert!(!logs.contains(secret), "a log line carries a session id:\n{logs}");
    }
    // Not even a long piece of it: ids are credentials.
    assert!(!logs.contains(&id.as_str()[..16]));
}
