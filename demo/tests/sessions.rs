//! "Your sessions" through the JSON API, over a real server and real
//! clients: `GET /api/sessions`, `DELETE /api/sessions/{handle}` and
//! `POST /api/sessions/revoke-others`. Each client has its own cookie jar,
//! like a browser on another device.

mod common;

use std::collections::BTreeSet;
use std::time::{SystemTime, UNIX_EPOCH};

use common::{browser, raw, set_cookie, set_cookie_header, start_insecure, with_cookie};
use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};
use sessionkit_demo::Server;

/// A client signed in as `user` on `server`, with its own jar.
async fn signed_in(server: &Server, user: &str) -> Client {
    let client = browser();
    let (status, me) = call(&client, server, Method::POST, "/api/login", Some(json!({ "user": user }))).await;
    assert_eq!((status, &me["user"]), (StatusCode::OK, &json!(user)), "{me}");
    client
}

/// Sends a request to the API and returns the status and the JSON answer.
async fn call(
    client: &Client,
    server: &Server,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut request = client.request(method, format!("{}{path}", server.url()));
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("request");
    let status = response.status();
    (status, response.json().await.expect("a JSON answer"))
}

/// `GET /api/sessions`, which must succeed.
async fn listing(client: &Client, server: &Server) -> Vec<Value> {
    let (status, answer) = call(client, server, Method::GET, "/api/sessions", None).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    sessions_of(&answer)
}

fn sessions_of(answer: &Value) -> Vec<Value> {
    answer["sessions"].as_array().unwrap_or_else(|| panic!("not a listing: {answer}")).clone()
}

fn handles(sessions: &[Value]) -> BTreeSet<String> {
    sessions.iter().map(|s| s["handle"].as_str().expect("a handle").to_owned()).collect()
}

/// The handle of the client's own session, from its listing.
async fn own_handle(client: &Client, server: &Server) -> String {
    let sessions = listing(client, server).await;
    let current: Vec<&Value> = sessions.iter().filter(|s| s["current"] == true).collect();
    assert_eq!(current.len(), 1, "exactly one session is current: {sessions:?}");
    current[0]["handle"].as_str().expect("a handle").to_owned()
}

async fn user_of(client: &Client, server: &Server) -> Value {
    call(client, server, Method::GET, "/api/me", None).await.1["user"].clone()
}

fn now_ms() -> u64 {
    u64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970").as_millis()).expect("ms")
}

#[tokio::test]
async fn the_session_routes_answer_401_without_a_login() {
    let server = start_insecure().await;
    let anonymous = browser();
    // A session of its own, with a cart, but nobody signed in.
    call(&anonymous, &server, Method::POST, "/api/cart", Some(json!({ "item": "tea" }))).await;
    let handle = "A".repeat(43);
    for client in [&anonymous, &raw()] {
        for (method, path) in [
            (Method::GET, "/api/sessions".to_owned()),
            (Method::DELETE, format!("/api/sessions/{handle}")),
            (Method::POST, "/api/sessions/revoke-others".to_owned()),
        ] {
            let (status, answer) = call(client, &server, method.clone(), &path, None).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path}: {answer}");
            assert!(answer["error"].as_str().is_some_and(|m| m.contains("not logged in")), "{answer}");
        }
    }
    let (_, me) = call(&anonymous, &server, Method::GET, "/api/me", None).await;
    assert_eq!(me["cart"], json!(["tea"]), "the anonymous session is untouched");
    server.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn two_logins_of_one_user_list_two_sessions_from_either() {
    let server = start_insecure().await;
    let before = now_ms();
    let (phone, laptop, eve) =
        (signed_in(&server, "ada").await, signed_in(&server, "ada").await, signed_in(&server, "eve").await);
    let after = now_ms();

    let from_phone = listing(&phone, &server).await;
    let from_laptop = listing(&laptop, &server).await;
    assert_eq!(from_phone.len(), 2, "{from_phone:?}");
    assert_eq!(handles(&from_phone), handles(&from_laptop), "either session lists both");
    let (phone_handle, laptop_handle) = (own_handle(&phone, &server).await, own_handle(&laptop, &server).await);
    assert_ne!(phone_handle, laptop_handle);
    assert_eq!(from_phone[0]["handle"], json!(phone_handle), "the current session comes first");

    for entry in &from_phone {
        let keys: BTreeSet<&str> = entry.as_object().expect("an object").keys().map(String::as_str).collect();
        assert_eq!(keys, BTreeSet::from(["handle", "current", "created_at", "last_active", "expires_at"]), "{entry}");
        let handle = entry["handle"].as_str().expect("a string");
        assert!(handle.len() == 43 && sessionkit::StoreKey::parse(handle).is_some(), "a store key: {handle}");
        let created = entry["created_at"].as_u64().expect("created_at in ms");
        let active = entry["last_active"].as_u64().expect("last_active in ms");
        assert!((before..=after).contains(&created), "{created} within the logins ({before}..{after})");
        assert!(active >= created && active <= now_ms(), "{entry}");
        let expires = entry["expires_at"].as_u64().expect("expires_at in ms");
        let day = 86_400_000;
        assert!((before + day..=after + day).contains(&expires), "a day after login: {entry}");
    }

    let from_eve = listing(&eve, &server).await;
    assert_eq!(from_eve.len(), 1, "another user sees only their own session");
    assert!(handles(&from_eve).is_disjoint(&handles(&from_phone)));
    assert_eq!(from_eve[0]["current"], true);
    server.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn a_handle_is_never_the_id() {
    let server = start_insecure().await;
    let client = raw();
    let login = client.post(format!("{}/api/login", server.url())).json(&json!({ "user": "ada" })).send().await;
    let cookie = set_cookie(&login.expect("login")).expect("login sets the cookie");
    let id = cookie.trim_start_matches("id=");
    let listed = with_cookie(client.get(format!("{}/api/sessions", server.url())), Some(&cookie))
        .send()
        .await
        .expect("listing")
        .json::<Value>()
        .await
        .expect("json");
    let handle = listed["sessions"][0]["handle"].as_str().expect("a handle");
    assert_ne!(handle, id, "the handle is the hashed store key");
    assert!(!listed.to_string().contains(id), "the id appears nowhere in the listing");
    server.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn another_users_handle_is_a_404_that_changes_nothing() {
    let server = start_insecure().await;
    let (phone, laptop, eve) =
        (signed_in(&server, "ada").await, signed_in(&server, "ada").await, signed_in(&server, "eve").await);
    let ada_handles = handles(&listing(&phone, &server).await);
    let phone_handle = own_handle(&phone, &server).await;

    let path = format!("/api/sessions/{phone_handle}");
    let (status, answer) = call(&eve, &server, Method::DELETE, &path, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{answer}");
    assert!(answer["error"].is_string(), "{answer}");
    for garbage in ["not-a-handle", "%FF", &"A".repeat(43)] {
        let (status, answer) = call(&laptop, &server, Method::DELETE, &format!("/api/sessions/{garbage}"), None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{garbage}: {answer}");
    }

    assert_eq!(handles(&listing(&phone, &server).await), ada_handles, "nothing changed");
    assert_eq!(user_of(&phone, &server).await, "ada", "the phone is still signed in");
    assert_eq!(user_of(&eve, &server).await, "eve");
    assert_eq!(listing(&eve, &server).await.len(), 1);
    server.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn revoking_one_signs_that_client_out_on_its_next_request() {
    let server = start_insecure().await;
    let (phone, laptop) = (signed_in(&server, "ada").await, signed_in(&server, "ada").await);
    call(&phone, &server, Method::POST, "/api/cart", Some(json!({ "item": "tea" }))).await;
    let (phone_handle, laptop_handle) = (own_handle(&phone, &server).await, own_handle(&laptop, &server).await);

    let path = format!("/api/sessions/{phone_handle}");
    let (status, answer) = call(&laptop, &server, Method::DELETE, &path, None).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let left = sessions_of(&answer);
    assert_eq!(handles(&left), BTreeSet::from([laptop_handle.clone()]), "answers the listing after: {answer}");
    assert_eq!(left[0]["current"], true);

    let (_, me) = call(&phone, &server, Method::GET, "/api/me", None).await;
    assert_eq!(
        me,
        json!({ "user": null, "visits": 0, "cart": [], "saved": [], "prefs": {} }),
        "a fresh, empty session"
    );
    let (status, _) = call(&phone, &server, Method::GET, "/api/sessions", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "the phone is signed out");
    assert_eq!(user_of(&laptop, &server).await, "ada", "the laptop is not");
    let (status, _) = call(&laptop, &server, Method::DELETE, &path, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "a revoked session is gone");
    server.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn revoke_others_signs_out_every_other_session_of_the_user() {
    let server = start_insecure().await;
    let mut ada = Vec::new();
    for _ in 0..3 {
        ada.push(signed_in(&server, "ada").await);
    }
    let eve = signed_in(&server, "eve").await;
    let keep = own_handle(&ada[0], &server).await;

    let (status, answer) = call(&ada[0], &server, Method::POST, "/api/sessions/revoke-others", None).await;
    assert_eq!((status, answer), (StatusCode::OK, json!({ "revoked": 2 })));
    for other in &ada[1..] {
        assert_eq!(user_of(other, &server).await, Value::Null, "signed out on its next request");
    }
    assert_eq!(handles(&listing(&ada[0], &server).await), BTreeSet::from([keep]));
    assert_eq!(user_of(&ada[0], &server).await, "ada", "the session that asked stays");
    assert_eq!(user_of(&eve, &server).await, "eve", "another user's sessions are untouched");
    let (_, again) = call(&ada[0], &server, Method::POST, "/api/sessions/revoke-others", None).await;
    assert_eq!(again, json!({ "revoked": 0 }));
    server.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn revoking_the_own_handle_is_a_logout() {
    let server = start_insecure().await;
    let (phone, laptop) = (signed_in(&server, "ada").await, signed_in(&server, "ada").await);
    let phone_handle = own_handle(&phone, &server).await;
    let response = phone.delete(format!("{}/api/sessions/{phone_handle}", server.url())).send().await.expect("request");
    assert_eq!(response.status(), StatusCode::OK);
    let removal = set_cookie_header(&response).expect("a removal cookie");
    assert!(removal.contains("Max-Age=0"), "{removal}");
    assert_eq!(response.json::<Value>().await.expect("json"), json!({ "sessions": [] }));
    assert_eq!(user_of(&phone, &server).await, Value::Null);
    assert_eq!(listing(&laptop, &server).await.len(), 1, "the laptop sees one session left");
    server.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn a_logout_drops_out_of_the_listing() {
    let server = start_insecure().await;
    let (phone, laptop) = (signed_in(&server, "ada").await, signed_in(&server, "ada").await);
    assert_eq!(listing(&laptop, &server).await.len(), 2);
    let (status, _) = call(&phone, &server, Method::POST, "/api/logout", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(listing(&laptop, &server).await.len(), 1);
    server.shutdown().await.expect("shutdown");
}
