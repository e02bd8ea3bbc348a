//! How the credential travels, checked over HTTP: signing keys rotated under
//! live sessions, signatures bound to the cookie name, cookie prefixes
//! checked at startup, and ids carried in a header for API clients. These
//! do not depend on the store; `tests/http.rs` runs them on memory.

use reqwest::header::{AUTHORIZATION, CACHE_CONTROL, COOKIE, SET_COOKIE, VARY};
use reqwest::{Client, StatusCode};
use sessionkit::cookie::Key;
use sessionkit::transport::{IdHeader, IdTransport};
use sessionkit::{SessionConfig, SessionLayer};

use crate::http_suite::{Harness, pair, set_cookie};
use crate::stores::StoreUnderTest;

async fn text(response: reqwest::Response) -> String {
    assert_eq!(response.status(), StatusCode::OK);
    response.text().await.expect("body")
}

/// Rotating a signing key logs nobody out: with the new key first and the
/// old one kept, old cookies still work and rolling refreshes re-sign them;
/// once the old key is dropped, only cookies it alone signed stop working.
pub async fn a_signing_key_rotates_under_live_sessions(under_test: StoreUnderTest) {
    let (old, new) = (Key::generate(), Key::generate());
    let before = Harness::start(under_test, |c| c.signing_key(old.clone()).rolling(true)).await;
    let client = Client::new();
    let response = client.post(before.url("/set/k/v")).send().await.expect("request");
    let signed_by_old = pair(&set_cookie(&response, "id").expect("a cookie"));
    let idle = client.post(before.url("/set/k/idle")).send().await.expect("request");
    let idle = pair(&set_cookie(&idle, "id").expect("a cookie"));

    // Deploy with the new key first, the old one still accepted.
    let during = before.another_server(|c| c.signing_keys([new.clone(), old.clone()]).rolling(true)).await;
    let response = client.get(during.url("/get/k")).header(COOKIE, &signed_by_old).send().await.expect("request");
    let refreshed = pair(&set_cookie(&response, "id").expect("a rolling refresh re-signs the cookie"));
    assert_eq!(text(response).await, "\"v\"", "a cookie signed by the old key still works");
    assert_ne!(refreshed, signed_by_old, "the refreshed cookie is signed by the new key");
    let fresh = client.post(during.url("/set/k/fresh")).send().await.expect("request");
    let signed_by_new = pair(&set_cookie(&fresh, "id").expect("a cookie"));
    let response = client.get(before.url("/get/k")).header(COOKIE, &signed_by_new).send().await.expect("request");
    assert_eq!(text(response).await, "null", "a new session is signed by the new key, not the old");

    // Later, the old key is dropped.
    let after = before.another_server(|c| c.signing_key(new.clone()).rolling(true)).await;
    for (cookie, expected) in [(&refreshed, "\"v\""), (&signed_by_new, "\"fresh\""), (&idle, "null")] {
        let response = client.get(after.url("/get/k")).header(COOKIE, cookie).send().await.expect("request");
        assert_eq!(text(response).await, expected, "after the rotation, {cookie}");
    }
}

/// A value signed with the same key for another cookie name (another app
/// on the same key, another cookie of this app) does not verify.
pub async fn a_signature_is_bound_to_the_cookie_name(under_test: StoreUnderTest) {
    let key = Key::generate();
    let h = Harness::start(under_test, |c| c.signing_key(key.clone())).await;
    let elsewhere = h.another_server(|c| c.signing_key(key.clone()).cookie_name("other")).await;
    let client = Client::new();
    let response = client.post(elsewhere.url("/set/k/v")).send().await.expect("request");
    let theirs = set_cookie(&response, "other").expect("a cookie");
    let replayed = format!("id={}", theirs.value());
    let response = client.get(h.url("/get/k")).header(COOKIE, replayed).send().await.expect("request");
    assert_eq!(text(response).await, "null", "a value signed for another cookie name must not verify");
}

/// `__Host-` cookies work with the defaults, and a configuration that
/// would make browsers drop them is refused when the layer is built.
pub async fn cookie_prefixes_are_checked_at_startup(under_test: StoreUnderTest) {
    let store = under_test.store.clone();
    let config = || SessionConfig::shared_builder(store.clone()).cookie_name("__Host-id");
    for (bad, why) in [
        (config().domain(Some("example.com".to_owned())), "Domain"),
        (config().path("/app"), "Path"),
        (config().secure(false), "Secure"),
        (SessionConfig::shared_builder(store.clone()).cookie_name("__Secure-id").secure(false), "Secure"),
    ] {
        let err = SessionLayer::try_new(bad).expect_err("refused at startup");
        assert!(err.to_string().contains(why), "{err}");
    }
    let h = Harness::start(under_test, |c| c.cookie_name("__Host-id").secure(true).partitioned(true)).await;
    let response = Client::new().post(h.url("/set/k/v")).send().await.expect("request");
    let cookie = response.headers().get(SET_COOKIE).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    for part in ["__Host-id=", "Path=/", "Secure", "Partitioned"] {
        assert!(cookie.contains(part), "{cookie} lacks {part}");
    }
    assert!(!cookie.contains("Domain"), "{cookie}");
}

/// With the id in a header, an API client without cookies keeps a session:
/// the id comes back in a response header when it is issued or changes, is
/// sent as `Authorization: Bearer`, and no cookie is read or set.
pub async fn ids_travel_in_a_header_for_api_clients(under_test: StoreUnderTest) {
    let h = Harness::start(under_test, |c| c.transport(IdTransport::Header(IdHeader::bearer()))).await;
    let client = Client::new();
    let response = client.post(h.url("/set/k/v")).send().await.expect("request");
    assert!(response.headers().get(SET_COOKIE).is_none(), "a header transport sets no cookie");
    assert_eq!(response.headers().get(CACHE_CONTROL).and_then(|v| v.to_str().ok()), Some("no-store"));
    let id = response.headers()["x-session-id"].to_str().expect("ascii").to_owned();
    assert_eq!(id.len(), 43);
    let bearer = |id: &str| format!("Bearer {id}");
    let response = client.get(h.url("/get/k")).header(AUTHORIZATION, bearer(&id)).send().await.expect("request");
    assert!(response.headers().get("x-session-id").is_none(), "an unchanged id is not sent again");
    let vary = response.headers().get_all(VARY).iter().filter_map(|v| v.to_str().ok()).collect::<Vec<_>>().join(",");
    assert!(vary.contains("authorization"), "responses vary on the header: {vary}");
    assert_eq!(text(response).await, "\"v\"");
    let as_cookie = client.get(h.url("/get/k")).header(COOKIE, format!("id={id}")).send().await.expect("request");
    assert_eq!(text(as_cookie).await, "null", "with a header transport the cookie is not read");

    let response = client.post(h.url("/regenerate")).header(AUTHORIZATION, bearer(&id)).send().await.expect("request");
    let renewed = response.headers()["x-session-id"].to_str().expect("ascii").to_owned();
    assert_ne!(renewed, id, "a regenerate sends the new id");
    let old = client.get(h.url("/get/k")).header(AUTHORIZATION, bearer(&id)).send().await.expect("request");
    assert_eq!(text(old).await, "null", "the old id stops working");
    let response =
        client.post(h.url("/destroy")).header(AUTHORIZATION, bearer(&renewed)).send().await.expect("request");
    assert_eq!(response.headers()["x-session-id"], "", "the end of a session is an empty id");
    let gone = client.get(h.url("/get/k")).header(AUTHORIZATION, bearer(&renewed)).send().await.expect("request");
    assert_eq!(text(gone).await, "null");

    // Both at once, for apps that serve browsers and API clients alike.
    let both = h
        .another_server(|c| {
            c.transport(IdTransport::CookieOrHeader(IdHeader::named("x-session-id".parse().expect("name"))))
                .signing_key(Key::generate())
        })
        .await;
    let response = client.post(both.url("/set/k/both")).send().await.expect("request");
    let cookie = set_cookie(&response, "id").expect("a cookie too");
    let header = response.headers()["x-session-id"].to_str().expect("ascii").to_owned();
    assert_eq!(header.len(), 86, "signed like the cookie: {header}");
    let by_header = client.get(both.url("/get/k")).header("x-session-id", &header).send().await.expect("request");
    assert_eq!(text(by_header).await, "\"both\"");
    let by_cookie = client.get(both.url("/get/k")).header(COOKIE, pair(&cookie)).send().await.expect("request");
    assert_eq!(text(by_cookie).await, "\"both\"");
    let unsigned = client.get(both.url("/get/k")).header("x-session-id", &header[43..]).send().await.expect("request");
    assert_eq!(text(unsigned).await, "null", "a header id is verified like a cookie");
}
