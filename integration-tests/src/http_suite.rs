//! The HTTP suite: session behaviour a user would notice, checked through a
//! real server on a loopback port and a real HTTP client. Every check takes a
//! fresh [`StoreUnderTest`], so `tests/http.rs` runs the suite against each
//! store in the repository.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::HeaderMap;
use http::header::{CACHE_CONTROL, COOKIE, SET_COOKIE, VARY};
use reqwest::{Client, Response, StatusCode};
use sessionkit::cookie::SameSite;
use sessionkit::{SessionConfig, SessionConfigBuilder, SessionId, SessionLayer, SessionRecord, SessionStore, StoreKey};

use crate::app::{self, Gates};
use crate::observed_store::{Calls, ObservedStore, Observer};
use crate::server::TestServer;
use crate::stores::StoreUnderTest;

/// A server running the suite's app on one store, and the test's view of it.
pub struct Harness {
    pub server: TestServer,
    pub observer: Observer,
    pub gates: Arc<Gates>,
    config: SessionConfig,
    under_test: StoreUnderTest,
}

impl Harness {
    /// Serves the suite's app with `configure` applied to a default config
    /// (with `Secure` off: the client speaks plain HTTP to 127.0.0.1).
    pub async fn start(
        under_test: StoreUnderTest,
        configure: impl FnOnce(SessionConfigBuilder) -> SessionConfigBuilder,
    ) -> Self {
        let (observed, observer) = ObservedStore::wrap(under_test.store.clone());
        let config = configure(SessionConfig::builder(observed).secure(false));
        let gates = Arc::new(Gates::default());
        let layer = SessionLayer::try_new(config).expect("valid test configuration");
        let config = layer.config().clone();
        let server = TestServer::start(app::router(layer, gates.clone())).await;
        Self { server, observer, gates, config, under_test }
    }

    /// A second server on the same store (unobserved), with `configure`
    /// applied to a default config: another app server, or this one
    /// restarted with another configuration.
    pub async fn another_server(
        &self,
        configure: impl FnOnce(SessionConfigBuilder) -> SessionConfigBuilder,
    ) -> TestServer {
        let config = configure(SessionConfig::shared_builder(self.under_test.store.clone()).secure(false));
        let layer = SessionLayer::try_new(config).expect("valid test configuration");
        TestServer::start(app::router(layer, Arc::new(Gates::default()))).await
    }

    /// The configuration the server runs with.
    pub fn config(&self) -> &SessionConfig {
        &self.config
    }

    /// A browser-like client with its own cookie jar.
    pub fn browser(&self) -> Client {
        Client::builder().cookie_store(true).build().expect("http client")
    }

    /// A client without a jar, for hand-written `Cookie` headers.
    pub fn raw(&self) -> Client {
        Client::builder().build().expect("http client")
    }

    pub fn url(&self, path: &str) -> String {
        self.server.url(path)
    }

    /// The record the store holds for a cookie id, read directly.
    pub async fn stored(&self, id: &str) -> Option<SessionRecord> {
        let id = SessionId::parse(id).expect("a valid session id");
        self.under_test.store.get(&self.config.store_key(&id)).await.expect("store read")
    }

    /// The store the app runs on, bypassing the layer.
    pub fn store(&self) -> &Arc<dyn SessionStore> {
        &self.under_test.store
    }

    pub fn calls(&self) -> &Calls {
        &self.observer.calls
    }

    /// `GET path` with a raw `Cookie` header (or none).
    pub async fn get_with(&self, path: &str, cookie: Option<&str>) -> Response {
        let mut request = self.raw().get(self.url(path));
        if let Some(cookie) = cookie {
            request = request.header(COOKIE, cookie);
        }
        request.send().await.expect("request")
    }

    /// `POST path` with a raw `Cookie` header (or none).
    pub async fn post_with(&self, path: &str, cookie: Option<&str>) -> Response {
        let mut request = self.raw().post(self.url(path));
        if let Some(cookie) = cookie {
            request = request.header(COOKIE, cookie);
        }
        request.send().await.expect("request")
    }
}

/// The session cookie a response sets, parsed.
pub fn set_cookie(response: &Response, name: &str) -> Option<cookie::Cookie<'static>> {
    set_cookies(response.headers()).into_iter().find(|c| c.name() == name)
}

/// Every cookie a response sets, parsed.
pub fn set_cookies(headers: &HeaderMap) -> Vec<cookie::Cookie<'static>> {
    headers
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| cookie::Cookie::parse(v.to_owned()).ok())
        .collect()
}

/// The `name=value` pair to send back for a cookie.
pub fn pair(cookie: &cookie::Cookie<'_>) -> String {
    format!("{}={}", cookie.name(), cookie.value())
}

async fn text(response: Response) -> String {
    response.text().await.expect("response body")
}

async fn ok_text(response: Response) -> String {
    assert_eq!(response.status(), StatusCode::OK, "unexpected status");
    text(response).await
}

/// Starts a session holding `k = "v"` through `harness`; returns its cookie.
async fn new_session(harness: &Harness) -> cookie::Cookie<'static> {
    let response = harness.post_with("/set/k/v", None).await;
    assert_eq!(response.status(), StatusCode::OK);
    set_cookie(&response, "id").expect("a written new session sets its cookie")
}

fn seconds(cookie: &cookie::Cookie<'_>) -> i64 {
    cookie.max_age().expect("the cookie has a Max-Age").whole_seconds()
}

/// A route that never asks for its session costs no store call and sets no
/// cookie; reading without writing sets no cookie either.
pub async fn untouched_sessions_cost_nothing(under_test: StoreUnderTest) {
    let h = Harness::start(under_test, |c| c).await;
    let response = h.get_with("/untouched", None).await;
    assert!(set_cookie(&response, "id").is_none(), "an unused session must not set a cookie");
    assert!(response.headers().get(VARY).is_none(), "an unused session does not vary by cookie");
    let response = h.get_with("/get/k", None).await;
    assert_eq!(text(response).await, "null");
    assert_eq!(h.calls().total(), 0, "no cookie, no store call");

    let cookie = new_session(&h).await;
    let before = h.calls().total();
    let response = h.get_with("/untouched", Some(&pair(&cookie))).await;
    assert_eq!(ok_text(response).await, "untouched");
    assert_eq!(h.calls().total(), before, "a route that never asks for its session must not touch the store");

    let response = h.get_with("/get/k", Some(&pair(&cookie))).await;
    assert!(set_cookie(&response, "id").is_none(), "reading a session must not set a cookie when not rolling");
    assert!(
        response.headers().get_all(VARY).iter().any(|v| v == "cookie"),
        "a response that read the session varies by cookie"
    );
    assert_eq!(ok_text(response).await, "\"v\"");
    assert_eq!(Calls::of(&h.calls().get), 1, "one load for the one request that read");
    assert_eq!(h.calls().total(), before + 1, "reading only loads the session");
}

/// A value written in one request is read in the next, and the id stays.
pub async fn written_values_are_read_back(under_test: StoreUnderTest) {
    let h = Harness::start(under_test, |c| c).await;
    let client = h.browser();
    let response = client.post(h.url("/set/a/1")).send().await.expect("request");
    let first = set_cookie(&response, "id").expect("a new, written session sets its cookie");
    assert_eq!(response.headers()[CACHE_CONTROL], "no-cache=\"set-cookie\"");
    assert_eq!(ok_text(client.get(h.url("/get/a")).send().await.expect("request")).await, "\"1\"");

    let response = client.post(h.url("/set/b/2")).send().await.expect("request");
    assert!(set_cookie(&response, "id").is_none(), "changing an existing session sets no cookie unless rolling");
    assert_eq!(ok_text(client.get(h.url("/get/b")).send().await.expect("request")).await, "\"2\"");
    assert_eq!(ok_text(client.get(h.url("/get/a")).send().await.expect("request")).await, "\"1\"");
    assert_eq!(ok_text(client.post(h.url("/delete/a")).send().await.expect("request")).await, "deleted");
    assert_eq!(ok_text(client.get(h.url("/get/a")).send().await.expect("request")).await, "null");
    assert_eq!(ok_text(client.get(h.url("/id")).send().await.expect("request")).await, first.value());
    assert!(Calls::of(&h.calls().update) >= 2, "changes to an existing session go through update");
}

/// Unknown, malformed, oversized and duplicated cookies give a fresh session;
/// no client-supplied id is ever adopted, and the real session is untouched.
pub async fn foreign_cookies_are_never_adopted(under_test: StoreUnderTest) {
    let h = Harness::start(under_test, |c| c).await;
    let real = new_session(&h).await;
    let unknown = SessionId::generate().to_string();
    let cases = [
        format!("id={unknown}"),
        "id=short".to_string(),
        format!("id={}", "A".repeat(44)),
        format!("id={}", "A".repeat(10_000)),
        format!("id={}", "+/=".repeat(15)),
        "id=../../../../../../../../../../../etc/passwd".to_string(),
        format!("id={}", real.value().to_lowercase().replace(|c: char| !c.is_ascii_alphanumeric(), "a")),
        format!("id={unknown}; id={}", real.value()),
        format!("id={unknown}; id={unknown}"),
        format!("id=\"{}\"", real.value()),
        format!("id= {}", &real.value()[1..]),
    ];
    for cookie in &cases {
        let response = h.post_with("/set/intruder/yes", Some(cookie)).await;
        assert_eq!(response.status(), StatusCode::OK, "{cookie}");
        let issued =
            set_cookie(&response, "id").unwrap_or_else(|| panic!("{cookie}: a fresh session must get its own cookie"));
        assert!(!cookie.contains(issued.value()), "{cookie}: the client's id was adopted");
        assert_ne!(issued.value(), real.value(), "{cookie}: the real session was handed out");
        assert!(h.stored(&unknown).await.is_none(), "{cookie}: an unknown id was written to the store");
    }
    let response = h.get_with("/get/intruder", Some(&pair(&real))).await;
    assert_eq!(ok_text(response).await, "null", "foreign cookies must not affect the real session");
    let response = h.get_with("/get/k", Some(&format!("other=1; {}; id={unknown}", pair(&real)))).await;
    assert_eq!(ok_text(response).await, "\"v\"", "the first valid cookie of our name wins");
}

/// Max-Age equals the ttl, and the stored expiry is now + ttl.
pub async fn max_age_equals_ttl(under_test: StoreUnderTest) {
    let h = Harness::start(under_test, |c| c.ttl(Duration::from_secs(90))).await;
    let before = SystemTime::now();
    let cookie = new_session(&h).await;
    assert_eq!(seconds(&cookie), 90);
    let stored = h.stored(cookie.value()).await.expect("stored").expires_at.expect("an expiry");
    let lo = before + Duration::from_secs(89);
    let hi = SystemTime::now() + Duration::from_secs(91);
    assert!(stored > lo && stored < hi, "the stored expiry must be now + ttl");
}

/// Rolling sessions refresh Max-Age and the stored expiry on every response.
pub async fn rolling_refreshes_cookie_and_expiry(under_test: StoreUnderTest) {
    let h = Harness::start(under_test, |c| c.ttl(Duration::from_secs(60)).rolling(true)).await;
    let cookie = new_session(&h).await;
    let first = h.stored(cookie.value()).await.expect("stored").expires_at;
    tokio::time::sleep(Duration::from_millis(30)).await;
    let response = h.get_with("/get/k", Some(&pair(&cookie))).await;
    let refreshed = set_cookie(&response, "id").expect("a rolling session refreshes its cookie on a read");
    assert_eq!(seconds(&refreshed), 60);
    assert_eq!(refreshed.value(), cookie.value());
    let touched = h.stored(cookie.value()).await.expect("stored").expires_at;
    assert!(touched > first, "a read must move a rolling session's stored expiry");
    tokio::time::sleep(Duration::from_millis(30)).await;
    let response = h.post_with("/set/k2/v2", Some(&pair(&cookie))).await;
    assert_eq!(seconds(&set_cookie(&response, "id").expect("a rolling session refreshes its cookie on a write")), 60);
    let updated = h.stored(cookie.value()).await.expect("stored");
    assert!(updated.expires_at > touched, "a write must move a rolling session's stored expiry");
    assert_eq!(updated.data.get("k2"), Some(&serde_json::json!("v2")));
}

/// Fixed (non-rolling) sessions keep their cookie and stored expiry.
pub async fn fixed_expiry_never_moves(under_test: StoreUnderTest) {
    let h = Harness::start(under_test, |c| c.ttl(Duration::from_secs(60))).await;
    let cookie = new_session(&h).await;
    let first = h.stored(cookie.value()).await.expect("stored").expires_at;
    tokio::time::sleep(Duration::from_millis(30)).await;
    let response = h.get_with("/get/k", Some(&pair(&cookie))).await;
    assert!(set_cookie(&response, "id").is_none(), "a fixed session sets no cookie on a read");
    let response = h.post_with("/set/k2/v2", Some(&pair(&cookie))).await;
    assert!(set_cookie(&response, "id").is_none(), "a fixed session sets no cookie on a write");
    let after = h.stored(cookie.value()).await.expect("stored");
    assert_eq!(after.expires_at, first, "a fixed session's expiry never moves");
    assert_eq!(after.data.get("k2"), Some(&serde_json::json!("v2")));
    assert_eq!(Calls::of(&h.calls().touch), 0, "a fixed session is never touched");
}

/// The absolute lifetime cap wins over rolling.
pub async fn absolute_lifetime_caps_rolling(under_test: StoreUnderTest) {
    let cap = Duration::from_millis(1_500);
    let h = Harness::start(under_test, |c| c.ttl(Duration::from_secs(60)).rolling(true).absolute_lifetime(cap)).await;
    let started = SystemTime::now();
    let cookie = new_session(&h).await;
    assert!(seconds(&cookie) <= 2, "Max-Age must not outlive the cap");
    let deadline = h.stored(cookie.value()).await.expect("stored").expires_at.expect("an expiry");
    assert!(deadline <= started + cap + Duration::from_millis(50), "the stored expiry must not pass the cap");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let response = h.post_with("/set/k2/v2", Some(&pair(&cookie))).await;
    let refreshed = set_cookie(&response, "id").expect("rolling still refreshes the cookie");
    assert!(seconds(&refreshed) <= 1, "Max-Age counts down to the cap");
    assert_eq!(
        h.stored(cookie.value()).await.expect("stored").expires_at,
        Some(deadline),
        "activity must not move the cap"
    );
    let response = h.get_with(&format!("/get/{}", sessionkit::reserved::CREATED_AT), Some(&pair(&cookie))).await;
    assert_eq!(ok_text(response).await, "null", "the cap's bookkeeping is hidden from handlers");
    tokio::time::sleep(deadline.duration_since(SystemTime::now()).unwrap_or_default() + Duration::from_millis(50))
        .await;
    let response = h.get_with("/get/k", Some(&pair(&cookie))).await;
    assert_eq!(ok_text(response).await, "null", "past the cap the session is gone, rolling or not");
}

/// With a ttl of about a second, the session is empty once it has passed.
pub async fn sessions_expire_after_ttl(under_test: StoreUnderTest) {
    let h = Harness::start(under_test, |c| c.ttl(Duration::from_secs(1))).await;
    let cookie = new_session(&h).await;
    assert_eq!(seconds(&cookie), 1);
    assert_eq!(ok_text(h.get_with("/get/k", Some(&pair(&cookie))).await).await, "\"v\"");
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let response = h.get_with("/get/k", Some(&pair(&cookie))).await;
    assert_eq!(ok_text(response).await, "null", "an expired session must read as empty");
    let response = h.get_with("/id", Some(&pair(&cookie))).await;
    assert_ne!(ok_text(response).await, cookie.value(), "an expired id must not be reused");
}

/// Regenerate changes the id, keeps the data and kills the old id.
pub async fn regenerate_replaces_the_id(under_test: StoreUnderTest) {
    let h = Harness::start(under_test, |c| c).await;
    let old = new_session(&h).await;
    let response = h.post_with("/regenerate", Some(&pair(&old))).await;
    let new = set_cookie(&response, "id").expect("regenerate sets the new id");
    assert_eq!(ok_text(response).await, new.value());
    assert_ne!(new.value(), old.value());
    assert_eq!(ok_text(h.get_with("/get/k", Some(&pair(&new))).await).await, "\"v\"", "regenerate keeps the data");
    assert!(h.stored(old.value()).await.is_none(), "the old record must be deleted");
    assert!(h.stored(new.value()).await.is_some());
    let response = h.get_with("/get/k", Some(&pair(&old))).await;
    assert_eq!(ok_text(response).await, "null", "the old id must no longer work");
}

/// Destroy removes the record and sends a removal cookie with the same
/// Path, Domain, Secure, HttpOnly and SameSite.
pub async fn destroy_removes_record_and_cookie(under_test: StoreUnderTest) {
    let h = Harness::start(under_test, |c| {
        c.path("/").domain(Some("sessions.test".to_string())).secure(true).same_site(SameSite::Strict)
    })
    .await;
    let cookie = new_session(&h).await;
    assert!(h.stored(cookie.value()).await.is_some());
    let response = h.post_with("/destroy", Some(&pair(&cookie))).await;
    assert_eq!(response.status(), StatusCode::OK);
    let removal = set_cookie(&response, "id").expect("destroy sends a removal cookie");
    assert_eq!(removal.value(), "");
    assert_eq!(removal.max_age().map(|d| d.whole_seconds()), Some(0));
    assert_eq!(removal.path(), cookie.path());
    assert_eq!(removal.domain(), Some("sessions.test"));
    assert_eq!(removal.secure(), Some(true));
    assert_eq!(removal.http_only(), Some(true));
    assert_eq!(removal.same_site(), Some(SameSite::Strict));
    assert!(h.stored(cookie.value()).await.is_none(), "destroy must delete the record");
    let response = h.get_with("/get/k", Some(&pair(&cookie))).await;
    assert_eq!(ok_text(response).await, "null");
}

/// Two concurrent requests writing different keys of one session both survive.
pub async fn concurrent_writes_both_survive(under_test: StoreUnderTest) {
    let h = Arc::new(Harness::start(under_test, |c| c).await);
    let cookie = pair(&new_session(&h).await);
    let requests: Vec<_> = [("a", "1"), ("b", "2")]
        .into_iter()
        .map(|(key, value)| {
            let (h, cookie) = (h.clone(), cookie.clone());
            tokio::spawn(async move { h.post_with(&format!("/together/{key}/{value}"), Some(&cookie)).await.status() })
        })
        .collect();
    for request in requests {
        assert_eq!(request.await.expect("request task"), StatusCode::OK);
    }
    assert_eq!(ok_text(h.get_with("/get/a", Some(&cookie)).await).await, "\"1\"", "a concurrent write was lost");
    assert_eq!(ok_text(h.get_with("/get/b", Some(&cookie)).await).await, "\"2\"", "a concurrent write was lost");
    assert_eq!(ok_text(h.get_with("/get/k", Some(&cookie)).await).await, "\"v\"");
}

/// A request that loaded the session before another request destroyed it
/// does not bring it back when it writes.
pub async fn destroy_is_not_undone_by_a_late_write(under_test: StoreUnderTest) {
    let h = Arc::new(Harness::start(under_test, |c| c).await);
    let cookie = new_session(&h).await;
    let late = {
        let (h, cookie) = (h.clone(), pair(&cookie));
        tokio::spawn(async move { h.post_with("/held/late/write", Some(&cookie)).await })
    };
    h.gates.loaded.acquire().await.expect("gate").forget();
    let response = h.post_with("/destroy", Some(&pair(&cookie))).await;
    assert_eq!(response.status(), StatusCode::OK);
    h.gates.proceed.add_permits(1);
    let late = late.await.expect("request task");
    assert_eq!(late.status(), StatusCode::OK);
    assert!(set_cookie(&late, "id").is_none(), "the late request must not hand out the destroyed id again");
    assert!(h.stored(cookie.value()).await.is_none(), "a destroyed session was resurrected");
    let response = h.get_with("/get/late", Some(&pair(&cookie))).await;
    assert_eq!(ok_text(response).await, "null");
}

/// A store that fails yields an empty 500; routes without sessions still
/// work; once the store is back the session is intact.
pub async fn store_outage_answers_empty_500(under_test: StoreUnderTest) {
    let h = Harness::start(under_test, |c| c).await;
    let cookie = new_session(&h).await;
    h.observer.set_down(true);
    for response in [
        h.get_with("/get/k", Some(&pair(&cookie))).await,
        h.post_with("/set/k/changed", Some(&pair(&cookie))).await,
        h.post_with("/set/k/new", None).await,
    ] {
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(set_cookie(&response, "id").is_none(), "a failed save must not set a cookie");
        assert_eq!(text(response).await, "", "the 500 must be empty");
    }
    assert_eq!(ok_text(h.get_with("/untouched", Some(&pair(&cookie))).await).await, "untouched");
    h.observer.set_down(false);
    assert_eq!(
        ok_text(h.get_with("/get/k", Some(&pair(&cookie))).await).await,
        "\"v\"",
        "the outage must not damage the session"
    );
}

/// A session over the size limit is not written; the previous state survives.
pub async fn oversized_sessions_are_refused(under_test: StoreUnderTest) {
    let h = Harness::start(under_test, |c| c.max_size(4_096)).await;
    let cookie = new_session(&h).await;
    let response = h.post_with("/big/10000", Some(&pair(&cookie))).await;
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert!(set_cookie(&response, "id").is_none());
    assert_eq!(ok_text(h.get_with("/get/k", Some(&pair(&cookie))).await).await, "\"v\"");
    assert_eq!(
        ok_text(h.get_with("/get/big", Some(&pair(&cookie))).await).await,
        "null",
        "an oversized write must not be stored"
    );
    assert_eq!(
        ok_text(h.post_with("/big/1000", Some(&pair(&cookie))).await).await,
        "stored",
        "sizes under the limit work"
    );

    let sets = Calls::of(&h.calls().set);
    let response = h.post_with("/big/10000", None).await;
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert!(set_cookie(&response, "id").is_none(), "an oversized new session gets no cookie");
    assert_eq!(Calls::of(&h.calls().set), sets, "an oversized new session is not stored");
}

/// A handler's 5xx persists nothing.
pub async fn server_errors_persist_nothing(under_test: StoreUnderTest) {
    let h = Harness::start(under_test, |c| c).await;
    let response = h.post_with("/fail/k/v", None).await;
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert!(set_cookie(&response, "id").is_none());
    assert_eq!(h.calls().total(), 0);
    let cookie = new_session(&h).await;
    let response = h.post_with("/fail/k/changed", Some(&pair(&cookie))).await;
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        ok_text(h.get_with("/get/k", Some(&pair(&cookie))).await).await,
        "\"v\"",
        "a 5xx must not persist its changes"
    );
}

/// Every default cookie attribute, and each setting reaching the cookie.
pub async fn cookie_attributes_follow_the_config(under_test: StoreUnderTest) {
    // Defaults, exactly as documented (Secure included).
    let (observed, _) = ObservedStore::wrap(under_test.store.clone());
    let layer = SessionLayer::new(SessionConfig::builder(observed));
    let server = TestServer::start(app::router(layer, Arc::new(Gates::default()))).await;
    let response = Client::new().post(server.url("/set/k/v")).send().await.expect("request");
    let cookie = set_cookie(&response, "id").expect("cookie");
    assert_eq!(cookie.path(), Some("/"));
    assert_eq!(cookie.domain(), None);
    assert_eq!(cookie.secure(), Some(true));
    assert_eq!(cookie.http_only(), Some(true));
    assert_eq!(cookie.same_site(), Some(SameSite::Lax));
    assert_eq!(seconds(&cookie), 24 * 60 * 60);
    assert!(SessionId::parse(cookie.value()).is_some(), "the cookie carries a canonical id");

    let h = Harness::start(under_test, |c| {
        c.cookie_name("sid")
            .path("/app")
            .domain(Some("example.test".to_string()))
            .secure(false)
            .http_only(false)
            .same_site(SameSite::Strict)
            .ttl(Duration::from_secs(5))
    })
    .await;
    let response = h.post_with("/set/k/v", None).await;
    assert!(set_cookie(&response, "id").is_none());
    let cookie = set_cookie(&response, "sid").expect("the configured name");
    assert_eq!(cookie.path(), Some("/app"));
    assert_eq!(cookie.domain(), Some("example.test"));
    assert_eq!(cookie.secure(), None);
    assert_eq!(cookie.http_only(), None);
    assert_eq!(cookie.same_site(), Some(SameSite::Strict));
    assert_eq!(seconds(&cookie), 5);
    let response = h.get_with("/get/k", Some(&pair(&cookie))).await;
    assert_eq!(ok_text(response).await, "\"v\"");
}

/// The handler's own headers and Set-Cookies are kept beside ours.
pub async fn handler_headers_are_kept(under_test: StoreUnderTest) {
    let h = Harness::start(under_test, |c| c).await;
    let response = h.post_with("/headers", None).await;
    assert_eq!(response.headers()["x-handler"], "kept");
    let cookies = set_cookies(response.headers());
    assert!(cookies.iter().any(|c| c.name() == "theme" && c.value() == "dark"), "the handler's cookie was lost");
    assert!(cookies.iter().any(|c| c.name() == "id"), "the session cookie is missing");
    let vary: Vec<_> = response.headers().get_all(VARY).iter().filter_map(|v| v.to_str().ok()).collect();
    assert!(vary.contains(&"accept-language") && vary.contains(&"cookie"), "Vary: {vary:?}");
    assert_eq!(response.headers()[CACHE_CONTROL], "no-cache=\"set-cookie\"");
}

/// Signed cookies: the layer signs, verifies, and ignores tampered, unsigned
/// and foreign-key cookies (a fresh session each time).
pub async fn signed_cookies_reject_tampering(under_test: StoreUnderTest) {
    let key = sessionkit::cookie::Key::generate();
    let h = Harness::start(under_test, |c| c.signing_key(key)).await;
    let cookie = new_session(&h).await;
    assert!(cookie.value().len() > 43, "a signed cookie carries its signature");
    assert_eq!(ok_text(h.get_with("/get/k", Some(&pair(&cookie))).await).await, "\"v\"");

    let value = cookie.value();
    let bare_id = &value[value.len() - 43..];
    let mut flipped_signature = value.to_string();
    flipped_signature.replace_range(0..1, if value.starts_with('A') { "B" } else { "A" });
    let mut flipped_id = value.to_string();
    let last = flipped_id.len() - 2;
    flipped_id.replace_range(last..last + 1, if value[last..].starts_with('A') { "B" } else { "A" });
    let other_key = {
        let other = sessionkit::SessionConfig::builder(sessionkit_stores::MemoryStore::new())
            .signing_key(sessionkit::cookie::Key::generate())
            .secure(false);
        let server = TestServer::start(app::router(SessionLayer::new(other), Arc::new(Gates::default()))).await;
        // A well-formed cookie signed under another key: what a forger without our key can make.
        let response = Client::new().post(server.url("/set/k/v")).send().await.expect("request");
        pair(&set_cookie(&response, "id").expect("cookie"))
    };
    for forged in [format!("id={bare_id}"), format!("id={flipped_signature}"), format!("id={flipped_id}"), other_key] {
        let response = h.get_with("/get/k", Some(&forged)).await;
        assert_eq!(ok_text(response).await, "null", "{forged}: a forged cookie must give a fresh session");
    }
}

/// With the default config the store is keyed by the id's SHA-256: the
/// stored key is not a working cookie value.
pub async fn ids_at_rest_are_hashed(under_test: StoreUnderTest) {
    let h = Harness::start(under_test, |c| c).await;
    let cookie = new_session(&h).await;
    let id = SessionId::parse(cookie.value()).expect("id");
    let raw = StoreKey::unhashed(&id);
    assert!(h.store().get(&raw).await.expect("read").is_none(), "the raw id must not be a store key");
    assert!(
        h.store().get(&StoreKey::hashed(&id)).await.expect("read").is_some(),
        "the record lives under the id's hash"
    );
}
