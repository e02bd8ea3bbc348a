//! Sessions that stay revoked, checked over HTTP on every store: a user's
//! sessions listed and revoked from any of them, revocations that last,
//! a regenerate that cannot bring a logout back, caps that reach sessions
//! already stored, and a logout that a vanished client cannot cancel.
//! `tests/http.rs` runs each check against every store.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use reqwest::{Method, StatusCode};
use serde_json::Value;
use sessionkit::{SessionId, StoreKey};

use crate::http_suite::Harness;
use crate::stores::StoreUnderTest;
use crate::visitor::Visitor;

/// The handles a listing answer holds, and which one is current.
fn handles(listing: &Value) -> (BTreeSet<String>, Option<String>) {
    let sessions = listing["sessions"].as_array().unwrap_or_else(|| panic!("not a listing: {listing}"));
    let all = sessions.iter().filter_map(|s| s["handle"].as_str().map(str::to_owned)).collect();
    let current = sessions.iter().find(|s| s["current"] == true).and_then(|s| s["handle"].as_str().map(str::to_owned));
    (all, current)
}

async fn logged_in(h: &Harness, user: &str) -> Visitor {
    let mut visitor = Visitor::new(&h.url(""));
    let answer = visitor.post(&format!("/login/{user}")).await;
    assert_eq!(answer.status, StatusCode::OK, "login: {}", answer.body);
    assert!(answer.set_cookie, "a login sets the new id");
    visitor
}

async fn listing(visitor: &mut Visitor) -> (BTreeSet<String>, Option<String>) {
    let answer = visitor.get("/sessions").await;
    assert_eq!(answer.status, StatusCode::OK, "listing: {}", answer.body);
    handles(&answer.json())
}

/// The store key of the visitor's cookie.
fn key_of(h: &Harness, visitor: &Visitor) -> StoreKey {
    let cookie = visitor.cookie.as_deref().expect("the visitor holds a cookie");
    let id = SessionId::parse(cookie.trim_start_matches("id=")).expect("a session id");
    h.config().store_key(&id)
}

/// Two logins of one user list two sessions from either; another user sees
/// only theirs and cannot revoke a handle that is not theirs; revoke-one,
/// revoke-others and revoke-all each leave the revoked clients with a
/// fresh, empty session on their next request.
pub async fn a_users_sessions_are_listed_and_revoked_from_any_of_them(under_test: StoreUnderTest) {
    let h = Harness::start(under_test, |c| c).await;
    let mut phone = logged_in(&h, "ada").await;
    let mut laptop = logged_in(&h, "ada").await;
    let mut eve = logged_in(&h, "eve").await;
    phone.post("/set/k/phone-data").await;

    let (from_phone, phone_current) = listing(&mut phone).await;
    let (from_laptop, laptop_current) = listing(&mut laptop).await;
    assert_eq!(from_phone.len(), 2, "two logins of one user list two sessions");
    assert_eq!(from_phone, from_laptop, "either session lists both");
    let phone_handle = phone_current.expect("the phone's own session is marked current");
    let laptop_handle = laptop_current.expect("the laptop's own session is marked current");
    assert_ne!(phone_handle, laptop_handle);
    assert_eq!(phone_handle, key_of(&h, &phone).to_string(), "a handle is the store key");
    let phone_id = phone.cookie.clone().unwrap_or_default();
    assert!(!from_phone.iter().any(|handle| phone_id.contains(handle.as_str())), "a handle is never the id");
    let (from_eve, _) = listing(&mut eve).await;
    assert_eq!(from_eve.len(), 1, "another user sees only their own session");
    assert!(from_eve.is_disjoint(&from_phone));

    let refused = eve.send(Method::DELETE, &format!("/sessions/{phone_handle}")).await;
    assert_eq!(refused.status, StatusCode::NOT_FOUND, "revoking someone else's session is a 404");
    assert_eq!(phone.user().await, "ada", "a refused revocation changes nothing");
    let garbage = eve.send(Method::DELETE, "/sessions/not-a-handle").await;
    assert_eq!(garbage.status, StatusCode::NOT_FOUND);

    // Revoke one, from the other device.
    let answer = laptop.send(Method::DELETE, &format!("/sessions/{phone_handle}")).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    let (after, _) = handles(&answer.json());
    assert_eq!(after, BTreeSet::from([laptop_handle.clone()]), "the answer lists what is left");
    assert_eq!(phone.user().await, "", "the revoked session is signed out");
    let answer = phone.get("/get/k").await;
    assert_eq!(answer.body, "null", "a revoked client gets a fresh, empty session");

    // Revoke the others.
    let mut phone = logged_in(&h, "ada").await;
    let mut tablet = logged_in(&h, "ada").await;
    let answer = laptop.post("/sessions/revoke-others").await;
    assert_eq!(answer.json()["revoked"], 2, "{}", answer.body);
    assert_eq!(phone.user().await, "");
    assert_eq!(tablet.user().await, "");
    assert_eq!(laptop.user().await, "ada", "revoke-others spares the current session");
    assert_eq!(listing(&mut laptop).await.0, BTreeSet::from([laptop_handle]));
    assert_eq!(phone.get("/get/k").await.body, "null");

    // Revoke all, as an admin disabling the account.
    let answer = eve.post("/admin/revoke-all/ada").await;
    assert_eq!(answer.json()["revoked"], 1, "{}", answer.body);
    assert_eq!(laptop.user().await, "");
    assert_eq!(tablet.get("/get/k").await.body, "null");
    assert_eq!(eve.user().await, "eve", "revoking ada's sessions leaves eve's alone");
    assert_eq!(h.store().sessions_of("ada").await.expect("listing"), Vec::new());
}

/// An expired session drops out of the listing, and so does a logout.
pub async fn expired_and_logged_out_sessions_leave_the_listing(under_test: StoreUnderTest) {
    let h = Harness::start(under_test, |c| c.ttl(Duration::from_millis(1_500))).await;
    let old = logged_in(&h, "ada").await;
    tokio::time::sleep(Duration::from_millis(900)).await;
    let mut fresh = logged_in(&h, "ada").await;
    let mut other = logged_in(&h, "ada").await;
    assert_eq!(listing(&mut fresh).await.0.len(), 3);
    tokio::time::sleep(Duration::from_millis(800)).await;
    let (left, _) = listing(&mut fresh).await;
    assert_eq!(left.len(), 2, "an expired session must leave the listing");
    assert!(!left.contains(&key_of(&h, &old).to_string()));
    other.post("/destroy").await;
    let (left, current) = listing(&mut fresh).await;
    assert_eq!(left, BTreeSet::from([current.expect("current")]), "a logout must leave the listing");
}

/// A request that regenerates (a login) while another destroys the same
/// session (a logout) ends with the session gone, in either order: no
/// response hands out a cookie that works. Staged with gates, so each
/// order really happens, several times.
pub async fn a_regenerate_racing_a_logout_never_brings_it_back(under_test: StoreUnderTest) {
    let h = Harness::start(under_test, |c| c).await;
    for round in 0..5 {
        let user = format!("racer-{round}");
        // The logout lands while the regenerating request is in flight.
        let session = logged_in(&h, &user).await;
        let mut regenerating = session.clone();
        let held = tokio::spawn(async move {
            let answer = regenerating.post("/held-regenerate").await;
            (answer, regenerating)
        });
        h.gates.loaded.acquire().await.expect("gate").forget();
        let mut logout = session.clone();
        logout.post("/destroy").await;
        h.gates.proceed.add_permits(1);
        let (answer, regenerating) = held.await.expect("request");
        assert_eq!(answer.status, StatusCode::OK);
        assert!(!answer.set_cookie, "round {round}: a regenerate after a logout must not hand out a new cookie");
        assert_eq!(regenerating.user().await, "", "round {round}: the logout must stand");
        assert_eq!(h.store().sessions_of(&user).await.expect("listing"), Vec::new(), "round {round}");

        // The logout was loaded first, and lands after the regenerate.
        let session = logged_in(&h, &user).await;
        let mut logout = session.clone();
        let held = tokio::spawn(async move { logout.post("/held-destroy").await });
        h.gates.loaded.acquire().await.expect("gate").forget();
        let mut regenerating = session.clone();
        let answer = regenerating.post("/regenerate").await;
        assert!(answer.set_cookie, "the regenerate itself succeeds");
        assert_eq!(regenerating.user().await, user);
        h.gates.proceed.add_permits(1);
        assert_eq!(held.await.expect("request").status, StatusCode::OK);
        assert_eq!(
            regenerating.user().await,
            "",
            "round {round}: a logout must also end the session its id was regenerated into meanwhile"
        );
        assert_eq!(h.store().sessions_of(&user).await.expect("listing"), Vec::new(), "round {round}");
    }
}

/// Many clients logging in, out and revoking each other at once: afterwards
/// each user's listing is exactly the set of sessions that still work.
pub async fn a_storm_of_logins_and_revocations_leaves_exact_listings(under_test: StoreUnderTest) {
    const CLIENTS: usize = 16;
    const STEPS: usize = 12;
    const USERS: [&str; 2] = ["ada", "bob"];
    let h = Arc::new(Harness::start(under_test, |c| c).await);
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|client| {
            let h = Arc::clone(&h);
            tokio::spawn(async move {
                let mut visitor = Visitor::new(&h.url(""));
                for step in 0..STEPS {
                    let user = USERS[(client + step) % USERS.len()];
                    match (client * 5 + step * 7) % 5 {
                        0 | 1 => {
                            visitor.post(&format!("/login/{user}")).await;
                        }
                        2 => {
                            visitor.post("/destroy").await;
                        }
                        3 => {
                            visitor.post("/sessions/revoke-others").await;
                        }
                        _ => {
                            let answer = visitor.get("/sessions").await;
                            if answer.status == StatusCode::OK
                                && let Some(handle) = handles(&answer.json()).0.into_iter().next()
                            {
                                visitor.send(Method::DELETE, &format!("/sessions/{handle}")).await;
                            }
                        }
                    }
                }
                visitor
            })
        })
        .collect();
    let mut visitors = Vec::new();
    for task in tasks {
        visitors.push(task.await.expect("a storm client panicked"));
    }
    for user in USERS {
        let mut alive = BTreeSet::new();
        for visitor in visitors.iter().filter(|v| v.cookie.is_some()) {
            if visitor.user().await == user {
                alive.insert(key_of(&h, visitor).to_string());
            }
        }
        let listed: BTreeSet<String> =
            h.store().sessions_of(user).await.expect("listing").into_iter().map(|(key, _)| key.to_string()).collect();
        assert_eq!(listed, alive, "{user}'s listing is not the set of {user}'s working sessions");
    }
}

/// A lower ttl, or a new absolute lifetime, reaches sessions stored before
/// the change: their expiry is capped on their next request, or, past the
/// cap, they are gone.
pub async fn caps_reach_sessions_that_already_exist(under_test: StoreUnderTest) {
    let h = Harness::start(under_test, |c| c.ttl(Duration::from_secs(24 * 3600))).await;
    let mut visitor = Visitor::new(&h.url(""));
    visitor.post("/set/k/v").await;
    let long = h.stored(visitor.cookie.as_deref().unwrap_or_default().trim_start_matches("id=")).await;
    assert!(long.and_then(|r| r.expires_at).is_some_and(|at| at > SystemTime::now() + Duration::from_secs(3600)));

    // The operator lowers the ttl to 2 s and restarts.
    let lowered = h.another_server(|c| c.ttl(Duration::from_secs(2))).await;
    let mut on_lowered = visitor.on(&lowered.url(""));
    let answer = on_lowered.get("/get/k").await;
    assert_eq!(answer.body, "\"v\"", "a session inside the new ttl still works");
    assert!(answer.set_cookie, "the capped expiry is sent to the browser too");
    let capped = h.stored(visitor.cookie.as_deref().unwrap_or_default().trim_start_matches("id=")).await;
    let capped = capped.and_then(|r| r.expires_at).expect("an expiry");
    assert!(capped <= SystemTime::now() + Duration::from_secs(2), "the stored expiry is capped by the new ttl");
    tokio::time::sleep(capped.duration_since(SystemTime::now()).unwrap_or_default() + Duration::from_millis(50)).await;
    assert_eq!(on_lowered.get("/get/k").await.body, "null", "past the new ttl the session is gone");

    // An absolute lifetime added later ends sessions already past it.
    let mut visitor = Visitor::new(&h.url(""));
    visitor.post("/set/k/v").await;
    let id = visitor.cookie.clone().unwrap_or_default();
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let capped =
        h.another_server(|c| c.ttl(Duration::from_secs(24 * 3600)).absolute_lifetime(Duration::from_secs(1))).await;
    let mut on_capped = visitor.on(&capped.url(""));
    assert_eq!(on_capped.get("/get/k").await.body, "null", "a session past a new absolute lifetime is gone");
    assert_eq!(h.stored(id.trim_start_matches("id=")).await, None, "and its record is deleted");
}

/// A logout whose client disconnects before the response still deletes the
/// session: persisting is not cancelled with the response.
pub async fn a_logout_survives_its_client_hanging_up(under_test: StoreUnderTest) {
    let h = Harness::start(under_test, |c| c).await;
    let mut visitor = Visitor::new(&h.url(""));
    visitor.post("/set/k/v").await;
    let id = visitor.cookie.clone().unwrap_or_default();
    assert!(h.stored(id.trim_start_matches("id=")).await.is_some());
    h.observer.set_write_delay(Duration::from_millis(300));
    let gave_up = visitor.request(Method::POST, "/destroy").timeout(Duration::from_millis(50)).send().await;
    assert!(gave_up.is_err(), "the client hangs up before the store has answered");
    tokio::time::sleep(Duration::from_millis(800)).await;
    h.observer.set_write_delay(Duration::ZERO);
    assert_eq!(h.stored(id.trim_start_matches("id=")).await, None, "the logout must delete the session anyway");
}
