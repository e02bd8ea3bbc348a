//! One session hit by many concurrent requests through the demo, as two
//! tabs or a script firing requests in parallel would: the visit counter
//! (an atomic increment), cart adds (atomic pushes) and removals (atomic
//! remove-firsts) lose nothing, and the exclusive "save for later" and
//! "move to cart" routes move every item exactly once.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::{raw, set_cookie, start};
use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};
use sessionkit_demo::Server;
use tokio::task::JoinSet;

/// A signed-in session's cookie, and clients that send it.
struct OneSession {
    base: String,
    cookie: String,
}

impl OneSession {
    async fn new(server: &Server) -> Self {
        let base = server.url();
        let login = raw().post(format!("{base}/api/login")).json(&json!({ "user": "ada" })).send().await;
        let cookie = set_cookie(&login.expect("login")).expect("login sets the cookie");
        Self { base, cookie }
    }

    /// One request with the session's cookie, on `client`: the status and
    /// the JSON answer (`null` for an empty body, as a 503's).
    async fn call(&self, client: &Client, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut request = client.request(method, format!("{}{path}", self.base)).header("cookie", &self.cookie);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request");
        let status = response.status();
        let bytes = response.bytes().await.expect("body");
        (status, if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).expect("JSON") })
    }

    async fn me(&self) -> Value {
        self.call(&raw(), Method::GET, "/api/me", None).await.1
    }

    /// Sends every request of `requests` at once, each on a connection of
    /// its own, and returns the statuses in order.
    async fn all_at_once(self: &Arc<Self>, requests: Vec<(Method, String, Option<Value>)>) -> Vec<StatusCode> {
        let mut tasks = JoinSet::new();
        for (index, (method, path, body)) in requests.into_iter().enumerate() {
            let session = Arc::clone(self);
            tasks.spawn(async move { (index, session.call(&raw(), method, &path, body).await.0) });
        }
        let mut statuses = tasks.join_all().await;
        statuses.sort_by_key(|(index, _)| *index);
        statuses.into_iter().map(|(_, status)| status).collect()
    }
}

fn items(value: &Value) -> Vec<String> {
    value.as_array().expect("a list").iter().map(|item| item.as_str().expect("text").to_owned()).collect()
}

fn counted(items: &[String]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for item in items {
        *counts.entry(item.clone()).or_default() += 1;
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_visits_from_32_connections_all_count() {
    let server = start(&["--store", "memory", "--insecure-cookies"]).await;
    let session = Arc::new(OneSession::new(&server).await);
    let sent = Arc::new(AtomicUsize::new(0));
    let mut connections = JoinSet::new();
    for _ in 0..32 {
        let (session, sent) = (Arc::clone(&session), Arc::clone(&sent));
        // One client each, keeping its connection alive between requests.
        connections.spawn(async move {
            let client = raw();
            let mut statuses = Vec::new();
            while sent.fetch_add(1, Ordering::Relaxed) < 200 {
                statuses.push(session.call(&client, Method::GET, "/api/counter", None).await.0);
            }
            statuses
        });
    }
    let statuses: Vec<StatusCode> = connections.join_all().await.into_iter().flatten().collect();
    assert_eq!(statuses.len(), 200);
    assert!(statuses.iter().all(|status| *status == StatusCode::OK), "{statuses:?}");
    assert_eq!(session.me().await["visits"], 200, "every increment counted");
    server.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hundred_concurrent_cart_adds_leave_a_hundred_items() {
    // The cart limit raised for the test, in the app's flags.
    let server = start(&["--store", "memory", "--insecure-cookies", "--cart-limit", "200"]).await;
    let session = Arc::new(OneSession::new(&server).await);
    let expected: Vec<String> = (0..100).map(|n| format!("item {n}")).collect();
    let adds =
        expected.iter().map(|item| (Method::POST, "/api/cart".to_owned(), Some(json!({ "item": item })))).collect();
    let statuses = session.all_at_once(adds).await;
    assert!(statuses.iter().all(|status| *status == StatusCode::OK), "{statuses:?}");
    let mut cart = items(&session.me().await["cart"]);
    assert_eq!(cart.len(), 100, "every push landed: {cart:?}");
    cart.sort_by_key(|item| item[5..].parse::<u32>().expect("numbered"));
    assert_eq!(cart, expected, "each item exactly once");
    server.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_removals_and_adds_keep_each_others_changes() {
    let server = start(&["--store", "memory", "--insecure-cookies", "--cart-limit", "200"]).await;
    let session = Arc::new(OneSession::new(&server).await);
    let client = raw();
    for n in 0..50 {
        session.call(&client, Method::POST, "/api/cart", Some(json!({ "item": format!("old {n}") }))).await;
    }
    let mut requests: Vec<(Method, String, Option<Value>)> = Vec::new();
    for n in 0..50 {
        requests.push((Method::DELETE, format!("/api/cart/old%20{n}"), None));
        requests.push((Method::POST, "/api/cart".to_owned(), Some(json!({ "item": format!("new {n}") }))));
    }
    let statuses = session.all_at_once(requests).await;
    assert!(statuses.iter().all(|status| *status == StatusCode::OK), "{statuses:?}");
    let cart = items(&session.me().await["cart"]);
    let expected: BTreeMap<String, usize> = (0..50).map(|n| (format!("new {n}"), 1)).collect();
    assert_eq!(counted(&cart), expected, "every old item removed, every new one kept: {cart:?}");
    server.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_adds_pass_the_cart_limit_by_at_most_their_number() {
    let server = start(&["--store", "memory", "--insecure-cookies"]).await;
    let session = Arc::new(OneSession::new(&server).await);
    let client = raw();
    for n in 0..45 {
        session.call(&client, Method::POST, "/api/cart", Some(json!({ "item": format!("item {n}") }))).await;
    }
    let adds = (0..20).map(|n| (Method::POST, "/api/cart".to_owned(), Some(json!({ "item": format!("race {n}") }))));
    let statuses = session.all_at_once(adds.collect()).await;
    let accepted = statuses.iter().filter(|status| **status == StatusCode::OK).count();
    assert!(statuses.iter().all(|s| *s == StatusCode::OK || *s == StatusCode::BAD_REQUEST), "{statuses:?}");
    let cart = items(&session.me().await["cart"]);
    assert_eq!(cart.len(), 45 + accepted, "every accepted add landed, no refused one did");
    assert!((50..=65).contains(&cart.len()), "the limit (50) is reached, and passed by at most the 20 racing adds");
    let (status, answer) = session.call(&client, Method::POST, "/api/cart", Some(json!({ "item": "one more" }))).await;
    assert_eq!((status, &answer["error"]), (StatusCode::BAD_REQUEST, &json!("the cart is full (50 items)")));
    server.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_exclusive_moves_lose_nothing() {
    let server = start(&["--store", "memory", "--insecure-cookies"]).await;
    let session = Arc::new(OneSession::new(&server).await);
    let client = raw();
    let all: Vec<String> = (0..50).map(|n| format!("item {n}")).collect();
    for item in &all {
        session.call(&client, Method::POST, "/api/cart", Some(json!({ "item": item }))).await;
    }
    let expected: BTreeMap<String, usize> = all.iter().map(|item| (item.clone(), 1)).collect();

    // Each move reads the saved list and writes it whole: without the
    // exclusive session, concurrent moves would overwrite each other's.
    let moves = all.iter().map(|item| (Method::POST, "/api/save-for-later".to_owned(), Some(json!({ "item": item }))));
    let statuses = session.all_at_once(moves.collect()).await;
    assert!(statuses.iter().all(|status| *status == StatusCode::OK), "{statuses:?}");
    let me = session.me().await;
    assert_eq!(me["cart"], json!([]), "{me}");
    assert_eq!(counted(&items(&me["saved"])), expected, "every item saved exactly once: {me}");

    let back = all.iter().map(|item| (Method::POST, "/api/move-to-cart".to_owned(), Some(json!({ "item": item }))));
    let statuses = session.all_at_once(back.collect()).await;
    assert!(statuses.iter().all(|status| *status == StatusCode::OK), "{statuses:?}");
    let me = session.me().await;
    assert_eq!(me["saved"], json!([]), "{me}");
    assert_eq!(counted(&items(&me["cart"])), expected, "every item back in the cart exactly once: {me}");
    server.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_item_is_saved_for_later_once_however_many_ask() {
    let server = start(&["--store", "memory", "--insecure-cookies"]).await;
    let session = Arc::new(OneSession::new(&server).await);
    let client = raw();
    session.call(&client, Method::POST, "/api/cart", Some(json!({ "item": "tea" }))).await;
    let moves = (0..10).map(|_| (Method::POST, "/api/save-for-later".to_owned(), Some(json!({ "item": "tea" }))));
    let statuses = session.all_at_once(moves.collect()).await;
    let ok = statuses.iter().filter(|status| **status == StatusCode::OK).count();
    let missing = statuses.iter().filter(|status| **status == StatusCode::NOT_FOUND).count();
    assert_eq!((ok, missing), (1, 9), "one move finds the item, the others find it gone: {statuses:?}");
    let me = session.me().await;
    assert_eq!((&me["cart"], &me["saved"]), (&json!([]), &json!(["tea"])), "{me}");
    server.shutdown().await.expect("shutdown");
}
