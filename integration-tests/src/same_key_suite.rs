//! No lost update, even on one key, checked over HTTP on every store:
//! concurrent increments and pushes of one key all land, exclusive
//! read-modify-writes lose nothing, a crashed lease holder blocks only
//! until its lease runs out, a holder whose lease ran out cannot write, and
//! concurrent pushes cannot grow a session past `max_size`. `tests/http.rs`
//! runs each check against every store.

use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;
use sessionkit::SessionId;

use crate::http_suite::Harness;
use crate::stores::StoreUnderTest;
use crate::visitor::Visitor;

/// A visitor holding a stored session.
async fn with_session(h: &Harness) -> Visitor {
    let mut visitor = Visitor::new(&h.url(""));
    assert_eq!(visitor.post("/set/anchor/1").await.status, StatusCode::OK);
    visitor
}

/// Sends `requests` requests to `path` (`{i}` replaced by the request's
/// number) from `connections` concurrent connections, connection `c` as
/// `visitors[c % visitors.len()]` (one visitor per app server: the same
/// cookie on each); returns each status.
pub async fn hammer(visitors: &[Visitor], path: &str, requests: usize, connections: usize) -> Vec<StatusCode> {
    assert!(!visitors.is_empty(), "hammer needs a visitor");
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let workers: Vec<_> = (0..connections)
        .map(|c| {
            let visitor = visitors[c % visitors.len()].new_connection();
            let (next, path) = (Arc::clone(&next), path.to_owned());
            tokio::spawn(async move {
                let mut statuses = Vec::new();
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    if i >= requests {
                        return statuses;
                    }
                    let path = path.replace("{i}", &i.to_string());
                    let response = visitor.request(reqwest::Method::POST, &path).send().await.expect("request");
                    statuses.push(response.status());
                }
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for worker in workers {
        statuses.extend(worker.await.expect("a worker panicked"));
    }
    statuses
}

/// 200 concurrent increments from 32 connections on one session end at
/// exactly 200.
pub async fn concurrent_increments_of_one_key_all_count(under_test: StoreUnderTest) {
    let h = Harness::start(under_test, |c| c).await;
    let mut visitor = with_session(&h).await;
    let statuses = hammer(std::slice::from_ref(&visitor), "/increment/visits", 200, 32).await;
    assert!(statuses.iter().all(|s| *s == StatusCode::OK), "{statuses:?}");
    assert_eq!(visitor.get("/get/visits").await.body, "200", "concurrent increments of one key were lost");
}

/// 100 concurrent pushes onto one key leave exactly 100 items.
pub async fn concurrent_pushes_onto_one_key_all_land(under_test: StoreUnderTest) {
    let h = Harness::start(under_test, |c| c).await;
    let mut visitor = with_session(&h).await;
    let statuses = hammer(std::slice::from_ref(&visitor), "/push/cart/item-{i}", 100, 32).await;
    assert!(statuses.iter().all(|s| *s == StatusCode::OK), "{statuses:?}");
    let cart: Vec<String> = serde_json::from_str(&visitor.get("/get/cart").await.body).expect("a list");
    let mut items = cart.clone();
    items.sort();
    items.dedup();
    assert_eq!((cart.len(), items.len()), (100, 100), "concurrent pushes onto one key were lost or doubled");
}

/// 50 concurrent exclusive read-modify-writes of one JSON object lose
/// nothing: each saw the one before it.
pub async fn exclusive_read_modify_writes_lose_nothing(under_test: StoreUnderTest) {
    let h = Harness::start(under_test, |c| c).await;
    let mut visitor = with_session(&h).await;
    let statuses = hammer(std::slice::from_ref(&visitor), "/exclusive/bump/counter", 50, 16).await;
    assert!(statuses.iter().all(|s| *s == StatusCode::OK), "{statuses:?}");
    let object: Value = serde_json::from_str(&visitor.get("/get/counter").await.body).expect("json");
    assert_eq!(object["n"], 50, "an exclusive read-modify-write was lost: {object}");
    let seen: Vec<u64> = object["seen"].as_array().expect("seen").iter().filter_map(Value::as_u64).collect();
    assert_eq!(seen, (1..=50).collect::<Vec<_>>(), "exclusive requests did not run one at a time");
}

/// A lease whose holder crashed (taken and never released) blocks an
/// exclusive request only until it runs out; past `exclusive_wait` the
/// request gets a 503 with `Retry-After`; routes that did not ask for
/// exclusivity never wait.
pub async fn a_crashed_lease_holder_blocks_only_until_its_lease_runs_out(under_test: StoreUnderTest) {
    let h = Harness::start(under_test, |c| c.exclusive_wait(Duration::from_secs(10))).await;
    let mut visitor = with_session(&h).await;
    let id = SessionId::parse(visitor.cookie.as_deref().unwrap_or_default().trim_start_matches("id=")).expect("id");
    let key = h.config().store_key(&id);
    // The "crashed" holder: a lease that nobody will release.
    let crashed = h.store().try_lease(&key, Duration::from_millis(800)).await.expect("lease");
    assert!(crashed.is_some(), "the lease is free");
    assert_eq!(visitor.post("/increment/free").await.status, StatusCode::OK, "a route without exclusivity never waits");
    let answer = visitor.post("/exclusive/bump/counter").await;
    assert_eq!(answer.status, StatusCode::OK, "the next exclusive request proceeds once the lease ran out");
    assert_eq!(answer.body, "1");

    let impatient = h.another_server(|c| c.exclusive_wait(Duration::from_millis(100))).await;
    let held = h.store().try_lease(&key, Duration::from_secs(30)).await.expect("lease").expect("free again");
    let response =
        visitor.on(&impatient.url("")).request(reqwest::Method::POST, "/exclusive/bump/counter").send().await;
    let response = response.expect("request");
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE, "past exclusive_wait: a clear 503");
    assert_eq!(response.headers().get("retry-after").and_then(|v| v.to_str().ok()), Some("1"));
    h.store().release_lease(&key, held.token).await.expect("release");
    assert_eq!(visitor.get("/get/counter").await.json()["n"], 1, "the refused request wrote nothing");
}

/// A request still running when its lease runs out cannot write: its
/// response is a 409 and the session keeps what the next holder wrote.
pub async fn a_holder_whose_lease_ran_out_cannot_write(under_test: StoreUnderTest) {
    let h = Harness::start(under_test, |c| c.exclusive_lease(Duration::from_millis(200))).await;
    let mut visitor = with_session(&h).await;
    let slow = {
        let visitor = visitor.clone();
        tokio::spawn(async move { visitor.request(reqwest::Method::POST, "/exclusive/slow/500").send().await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The lease ran out: the next exclusive request takes the session.
    assert_eq!(visitor.post("/exclusive/bump/counter").await.status, StatusCode::OK);
    let late = slow.await.expect("task").expect("request");
    assert_eq!(late.status(), StatusCode::CONFLICT, "a write fenced by a lost lease must be refused");
    assert_eq!(visitor.get("/get/slow").await.body, "null", "and nothing of it written");
    assert_eq!(visitor.get("/get/counter").await.json()["n"], 1, "the next holder's write stands");
}

/// Concurrent pushes, each fine alone, cannot together grow a session past
/// `max_size`: the stored result is limited, and each refused request is
/// told so (413).
pub async fn max_size_holds_on_the_stored_result(under_test: StoreUnderTest) {
    const LIMIT: usize = 4_096;
    let h = Harness::start(under_test, |c| c.max_size(LIMIT)).await;
    let mut visitor = with_session(&h).await;
    let item = "x".repeat(200);
    let statuses = hammer(std::slice::from_ref(&visitor), &format!("/push/items/{{i}}-{item}"), 64, 16).await;
    let accepted = statuses.iter().filter(|s| **s == StatusCode::OK).count();
    assert!(statuses.iter().all(|s| *s == StatusCode::OK || *s == StatusCode::PAYLOAD_TOO_LARGE), "{statuses:?}");
    assert!(accepted < statuses.len(), "64 pushes of 200 bytes must meet a 4 KiB limit");
    let stored = h.stored(visitor.cookie.as_deref().unwrap_or_default().trim_start_matches("id=")).await;
    let stored = stored.expect("the session");
    let size = sessionkit::limits::serialized_len(&stored.data);
    assert!(size <= LIMIT + LIMIT / 50, "the stored session is {size} bytes, past max_size {LIMIT}");
    let items: Vec<String> = serde_json::from_str(&visitor.get("/get/items").await.body).expect("a list");
    assert_eq!(items.len(), accepted, "every accepted push is stored, no refused one is");
}
