//! `RedisStore` against real `redis-server` processes on loopback ports: the
//! conformance kit, the key layout at rest, bad data, and over HTTP the
//! session basics, two app servers sharing one session space, and a Redis
//! outage and recovery.
//!
//! Each test starts its own server (see `redis_server`). Without
//! `redis-server` installed the tests say loudly that they were skipped, and
//! fail under `CI=true`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use redis::AsyncCommands;
use serde_json::{Value, json};
use sessionkit::testing::Guarded;
use sessionkit::{Changes, Session, SessionConfig, SessionError, SessionLayer, SessionMap, SessionStore, StoreKey};
use sessionkit::{StoreError, UpdateOutcome, expiry};
use sessionkit_integration_tests::redis_node::live_sessions;
use sessionkit_integration_tests::redis_server::{Persistence, RedisServer};
use sessionkit_integration_tests::redis_suites;
use sessionkit_integration_tests::server::TestServer;
use sessionkit_integration_tests::stores::StoreUnderTest;
use sessionkit_integration_tests::support::{in_secs, map};
use sessionkit_integration_tests::two_servers_suite;
use sessionkit_stores::RedisStore;

/// The marker field every session hash carries (see the store's docs).
const MARKER: &[u8] = b"\xffsessionkit";
/// The field that keeps the session's serialized size.
const SIZE: &[u8] = b"\xffsize";

async fn store_on(server: &RedisServer) -> RedisStore {
    match RedisStore::open(&server.url()).await {
        Ok(store) => store,
        Err(err) => panic!("cannot open a RedisStore on {}: {err:?}", server.url()),
    }
}

/// A plain connection, to look at what the store left in Redis.
async fn raw(server: &RedisServer) -> redis::aio::MultiplexedConnection {
    let client = redis::Client::open(server.url()).unwrap_or_else(|err| panic!("bad URL: {err}"));
    client.get_multiplexed_async_connection().await.unwrap_or_else(|err| panic!("cannot connect: {err}"))
}

mod conformance {
    use super::*;

    // The kit evaluates this factory inside each check's test body, so the
    // `return` ends that test: a missing redis-server skips every check
    // loudly (or, under CI=true, `start_or_skip` fails it).
    sessionkit::store_conformance_tests!(
        {
            let Some(server) = RedisServer::start_or_skip() else { return };
            async move { Guarded::new(store_on(&server).await, server) }
        },
        sessionkit::testing::Options::expiring_on_its_own()
    );
}

/// The whole kit again over RESP3, where scripts' replies have other types
/// (a Lua `false` is a boolean, not nil). Each check gets an empty store
/// through a prefix of its own on one server.
#[test]
fn the_conformance_kit_passes_over_resp3_too() {
    let Some(server) = RedisServer::start_or_skip() else { return };
    let url = format!("{}?protocol=resp3", server.url());
    let stores = std::sync::atomic::AtomicUsize::new(0);
    sessionkit::testing::block_on(sessionkit::testing::run_all(
        || {
            let prefix = format!("resp3-{}:", stores.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
            let url = url.clone();
            async move { RedisStore::builder().prefix(prefix).open(&url).await.expect("open over RESP3") }
        },
        sessionkit::testing::Options::expiring_on_its_own(),
    ));
}

/// The three HTTP suites over RESP3 as well, each check on a prefix of its
/// own on one server (`tests/http.rs` runs them over RESP2).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_suites_pass_over_resp3_too() {
    let Some(server) = RedisServer::start_or_skip() else { return };
    let url = format!("{}?protocol=resp3", server.url());
    redis_suites::run_http_suite("redis resp3", |prefix| {
        let url = url.clone();
        async move {
            let store = RedisStore::builder().prefix(prefix).open(&url).await.expect("open over RESP3");
            StoreUnderTest::new("redis resp3", store)
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_session_is_one_hash_under_the_prefix_with_an_absolute_expiry() {
    let Some(server) = RedisServer::start_or_skip() else { return };
    let store = store_on(&server).await;
    let mut redis = raw(&server).await;
    let id = sessionkit_integration_tests::support::key();
    let key = format!("session:{{{}}}", id.as_str());
    assert_eq!(store.key(&id), key, "the store key is the hash tag: one slot for a session and its lease");

    let expires_at = in_secs(3600);
    store.set(&id, &map(json!({ "user": "ana", "cart": [1, 2] })), Some(expires_at)).await.expect("set");
    let kind: String = redis::cmd("TYPE").arg(&key).query_async(&mut redis).await.expect("TYPE");
    assert_eq!(kind, "hash");
    let mut fields: Vec<(Vec<u8>, Vec<u8>)> = redis.hgetall(&key).await.expect("HGETALL");
    fields.sort();
    assert_eq!(
        fields,
        vec![
            (b"cart".to_vec(), b"[1,2]".to_vec()),
            (b"user".to_vec(), b"\"ana\"".to_vec()),
            (MARKER.to_vec(), b"2".to_vec()),
            (SIZE.to_vec(), b"26 2".to_vec()),
        ],
        "one field per session key, holding its JSON, plus the marker and the size bookkeeping"
    );
    assert_eq!(
        sessionkit::limits::serialized_len(&map(json!({ "user": "ana", "cart": [1, 2] }))),
        26 + 1,
        "the size field sums the serialized JSON, one comma too many"
    );
    let at: i64 = redis::cmd("PEXPIRETIME").arg(&key).query_async(&mut redis).await.expect("PEXPIRETIME");
    assert_eq!(at, expiry::to_unix_ms(expires_at), "the key's own expiry is the session's, to the millisecond");

    store.set(&id, &SessionMap::new(), None).await.expect("set");
    let at: i64 = redis::cmd("PEXPIRETIME").arg(&key).query_async(&mut redis).await.expect("PEXPIRETIME");
    assert_eq!(at, -1, "a session without expiry is a key without expiry");
    let mut fields: Vec<(Vec<u8>, Vec<u8>)> = redis.hgetall(&key).await.expect("HGETALL");
    fields.sort();
    assert_eq!(
        fields,
        vec![(MARKER.to_vec(), b"2".to_vec()), (SIZE.to_vec(), b"0 0".to_vec())],
        "an empty session is the internal fields alone"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_and_touch_leave_untouched_fields_as_they_are() {
    let Some(server) = RedisServer::start_or_skip() else { return };
    let store = store_on(&server).await;
    let mut redis = raw(&server).await;
    let id = sessionkit_integration_tests::support::key();
    let key = store.key(&id);
    store.set(&id, &map(json!({ "a": { "x": 1 }, "b": 2, "c": 3 })), Some(in_secs(60))).await.expect("set");
    // Same JSON value, different bytes: any rewrite of `a` would normalise them.
    let () = redis.hset(&key, "a", "{ \"x\" : 1 }").await.expect("HSET");

    let mut changes = Changes::new();
    changes.set("b", json!("two"));
    changes.remove("c");
    changes.set("d", json!(null));
    let later = in_secs(600);
    assert_eq!(store.update(&id, &changes, Some(later)).await.expect("update"), UpdateOutcome::Applied);
    let a: Vec<u8> = redis.hget(&key, "a").await.expect("HGET");
    assert_eq!(a, b"{ \"x\" : 1 }", "update rewrote a field it did not change");
    let record = store.get(&id).await.expect("get").expect("present");
    assert_eq!(Value::Object(record.data), json!({ "a": { "x": 1 }, "b": "two", "d": null }));
    assert_eq!(record.expires_at, Some(later));

    let even_later = in_secs(6000);
    assert!(store.touch(&id, Some(even_later)).await.expect("touch"));
    let a: Vec<u8> = redis.hget(&key, "a").await.expect("HGET");
    assert_eq!(a, b"{ \"x\" : 1 }", "touch rewrote data");
    let at: i64 = redis::cmd("PEXPIRETIME").arg(&key).query_async(&mut redis).await.expect("PEXPIRETIME");
    assert_eq!(at, expiry::to_unix_ms(even_later));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_racing_a_logout_never_bring_the_session_back() {
    let Some(server) = RedisServer::start_or_skip() else { return };
    let store = std::sync::Arc::new(store_on(&server).await);
    for round in 0..20 {
        let id = sessionkit_integration_tests::support::key();
        store.set(&id, &map(json!({ "user": "ana" })), Some(in_secs(60))).await.expect("set");
        let updates: Vec<_> = (0..32)
            .map(|i| {
                let (store, id) = (store.clone(), id.clone());
                tokio::spawn(async move {
                    let mut changes = Changes::new();
                    changes.set(format!("k{i}"), json!(i));
                    store.update(&id, &changes, Some(in_secs(60))).await
                })
            })
            .collect();
        store.delete(&id).await.expect("delete");
        for update in updates {
            // Applied or Missing, depending on which side of the delete it ran.
            let _ = update.await.expect("task").expect("update");
        }
        assert_eq!(store.get(&id).await.expect("get"), None, "round {round}: an update recreated a deleted session");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stores_with_different_prefixes_share_a_redis_without_meeting() {
    let Some(server) = RedisServer::start_or_skip() else { return };
    let shop = RedisStore::builder().prefix("shop:").open(&server.url()).await.expect("open");
    let blog = RedisStore::builder().prefix("blog:").open(&server.url()).await.expect("open");
    assert_eq!(shop.prefix(), "shop:");
    let id = sessionkit_integration_tests::support::key();
    shop.set(&id, &map(json!({ "cart": [1] })), None).await.expect("set");

    assert_eq!(blog.get(&id).await.expect("get"), None);
    assert!(!blog.touch(&id, None).await.expect("touch"));
    let mut changes = Changes::new();
    changes.set("post", json!(1));
    assert_eq!(blog.update(&id, &changes, None).await.expect("update"), UpdateOutcome::Missing);
    blog.delete(&id).await.expect("delete");
    assert!(shop.get(&id).await.expect("get").is_some(), "another prefix's delete reached this store");

    let mut redis = raw(&server).await;
    let keys: Vec<String> = redis.keys("*").await.expect("KEYS");
    assert_eq!(keys, vec![format!("shop:{{{}}}", id.as_str())]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_and_corrupt_values_read_as_absent_and_are_never_patched() {
    let Some(server) = RedisServer::start_or_skip() else { return };
    let store = store_on(&server).await;
    let mut redis = raw(&server).await;
    let mut changes = Changes::new();
    changes.set("a", json!(1));

    // A string, not a hash, under a session key.
    let string = sessionkit_integration_tests::support::key();
    let () = redis.set(store.key(&string), "someone else's").await.expect("SET");
    // A hash without our marker.
    let foreign = sessionkit_integration_tests::support::key();
    let () = redis.hset(store.key(&foreign), "a", "1").await.expect("HSET");
    // Our hash, with a value that is not JSON, and one in a future layout.
    let broken = sessionkit_integration_tests::support::key();
    store.set(&broken, &map(json!({ "a": 1 })), None).await.expect("set");
    let () = redis.hset(store.key(&broken), "a", "{not json").await.expect("HSET");
    let future = sessionkit_integration_tests::support::key();
    store.set(&future, &SessionMap::new(), None).await.expect("set");
    let () = redis.hset(store.key(&future), MARKER, "3").await.expect("HSET");

    for id in [&string, &foreign, &broken, &future] {
        assert_eq!(store.get(id).await.expect("a corrupt session must read as absent, not fail"), None);
    }
    for id in [&string, &foreign] {
        assert!(!store.touch(id, None).await.expect("touch"), "touch adopted a value it did not write");
        assert_eq!(store.update(id, &changes, None).await.expect("update"), UpdateOutcome::Missing);
    }
    let left: String = redis.get(store.key(&string)).await.expect("GET");
    assert_eq!(left, "someone else's", "a foreign value was changed");

    // `set` is a whole-record write: it replaces whatever was there.
    store.set(&string, &map(json!({ "a": 2 })), None).await.expect("set over a string");
    assert_eq!(store.get(&string).await.expect("get").map(|r| Value::Object(r.data)), Some(json!({ "a": 2 })));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_past_their_expiry_leave_no_key_and_redis_expires_the_rest() {
    let Some(server) = RedisServer::start_or_skip() else { return };
    let store = store_on(&server).await;
    let mut redis = raw(&server).await;
    let past = expiry::now() - Duration::from_secs(1);
    let ids: Vec<StoreKey> = (0..3).map(|_| sessionkit_integration_tests::support::key()).collect();

    store.set(&ids[0], &map(json!({ "a": 1 })), Some(past)).await.expect("set");
    store.set(&ids[1], &map(json!({ "a": 1 })), Some(in_secs(60))).await.expect("set");
    let mut changes = Changes::new();
    changes.set("b", json!(2));
    assert_eq!(store.update(&ids[1], &changes, Some(past)).await.expect("update"), UpdateOutcome::Applied);
    store.set(&ids[2], &map(json!({ "a": 1 })), Some(in_secs(60))).await.expect("set");
    assert!(store.touch(&ids[2], Some(past)).await.expect("touch"));
    for id in &ids {
        let exists: bool = redis.exists(store.key(id)).await.expect("EXISTS");
        assert!(!exists, "a write with an expiry in the past left a key behind");
    }

    // No sweep needed: Redis drops the key when its time comes.
    let soon = sessionkit_integration_tests::support::key();
    store.set(&soon, &SessionMap::new(), Some(expiry::now() + Duration::from_millis(200))).await.expect("set");
    tokio::time::sleep(Duration::from_millis(400)).await;
    let exists: bool = redis.exists(store.key(&soon)).await.expect("EXISTS");
    assert!(!exists, "Redis kept an expired session");
    assert_eq!(store.delete_expired().await.expect("delete_expired"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_redis_fails_within_the_timeout_and_a_bad_url_is_a_config_error() {
    let Some(mut server) = RedisServer::start_or_skip() else { return };
    let url = server.url();
    server.stop();
    let timeout = Duration::from_millis(300);
    let started = Instant::now();
    let result = RedisStore::builder().timeout(timeout).open(&url).await;
    let waited = started.elapsed();
    assert!(matches!(result, Err(StoreError::Timeout(t)) if t == timeout), "expected a timeout, got {result:?}");
    assert!(waited < timeout + Duration::from_secs(3), "open waited {waited:?} despite a {timeout:?} timeout");

    let result = RedisStore::open("postgres://127.0.0.1/").await;
    assert!(matches!(result, Err(StoreError::Config { .. })), "expected a config error, got {result:?}");
}

/// A TCP relay to a Redis that can make every connection it carries go
/// silent at once, without closing it, while new connections work: what an
/// app server sees when Redis fails over to another host, or when a NAT
/// forgets the flow.
struct SilencingRelay {
    port: u16,
    /// Connections numbered up to this one swallow whatever they receive.
    silenced_up_to: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl SilencingRelay {
    async fn start(upstream: u16) -> Self {
        use std::sync::atomic::{AtomicU64, Ordering};
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await.expect("bind");
        let port = listener.local_addr().expect("local_addr").port();
        let silenced_up_to = std::sync::Arc::new(AtomicU64::new(0));
        let silenced = silenced_up_to.clone();
        tokio::spawn(async move {
            let mut number = 0;
            while let Ok((client, _)) = listener.accept().await {
                number += 1;
                let Ok(server) = tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await else { continue };
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                for (mut from, mut to) in [(client_read, server_write), (server_read, client_write)] {
                    let silenced = silenced.clone();
                    tokio::spawn(async move {
                        use tokio::io::{AsyncReadExt, AsyncWriteExt};
                        let mut buffer = vec![0; 64 * 1024];
                        loop {
                            let read = match from.read(&mut buffer).await {
                                Ok(0) | Err(_) => return,
                                Ok(read) => read,
                            };
                            if number <= silenced.load(Ordering::SeqCst) {
                                // Hold both sockets open and answer nothing, ever.
                                std::future::pending::<()>().await;
                            }
                            if to.write_all(&buffer[..read]).await.is_err() {
                                return;
                            }
                        }
                    });
                }
            }
        });
        Self { port, silenced_up_to }
    }

    /// Every connection open now goes silent; later ones work.
    fn silence_open_connections(&self, opened_so_far: u64) {
        self.silenced_up_to.store(opened_so_far, std::sync::atomic::Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_goes_silent_is_replaced() {
    let Some(server) = RedisServer::start_or_skip() else { return };
    let relay = SilencingRelay::start(server.port()).await;
    let timeout = Duration::from_millis(500);
    let url = format!("redis://127.0.0.1:{}/", relay.port);
    let store = RedisStore::builder().timeout(timeout).open(&url).await.expect("open");
    let id = sessionkit_integration_tests::support::key();
    store.set(&id, &map(json!({ "a": 1 })), None).await.expect("set");

    // The store holds one connection, the relay's first.
    relay.silence_open_connections(1);
    let result = store.get(&id).await;
    assert!(matches!(result, Err(StoreError::Timeout(t)) if t == timeout), "expected a timeout, got {result:?}");
    // Nothing has answered for a whole timeout: the next request goes out
    // on a fresh connection.
    let record = store.get(&id).await.expect("a fresh connection").expect("present");
    assert_eq!(Value::Object(record.data), json!({ "a": 1 }));
}

// ---------------------------------------------------------------------------
// Over HTTP: real axum servers on loopback ports, a real client with a cookie
// jar. Both servers are on 127.0.0.1 and cookies ignore ports, so the client
// carries one session cookie to either server, as behind a load balancer.

fn app(store: RedisStore) -> Router {
    Router::new()
        .route("/login/{user}", post(login))
        .route("/me", get(me))
        .route("/logout", post(logout))
        .route("/visit", post(visit))
        .route("/keys", get(keys))
        .route("/keys/{key}/{value}", put(put_key))
        .layer(SessionLayer::new(SessionConfig::builder(store).secure(false)))
}

async fn login(session: Session, Path(user): Path<String>) -> Result<StatusCode, SessionError> {
    session.regenerate();
    session.set("user", user)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn me(session: Session) -> Result<Response, SessionError> {
    Ok(match session.get::<String>("user")? {
        Some(user) => user.into_response(),
        None => StatusCode::UNAUTHORIZED.into_response(),
    })
}

async fn logout(session: Session) -> StatusCode {
    session.destroy();
    StatusCode::NO_CONTENT
}

async fn visit(session: Session) -> Result<String, SessionError> {
    let visits = session.get::<u64>("visits")?.unwrap_or(0) + 1;
    session.set("visits", visits)?;
    Ok(visits.to_string())
}

async fn keys(session: Session) -> String {
    Value::Object(session.data()).to_string()
}

async fn put_key(session: Session, Path((key, value)): Path<(String, String)>) -> Result<StatusCode, SessionError> {
    // The session is loaded; hold it a moment so that concurrent requests
    // all load before any saves, the case where whole-record writes lose keys.
    tokio::time::sleep(Duration::from_millis(100)).await;
    session.set(key, value)?;
    Ok(StatusCode::NO_CONTENT)
}

/// An app server on a free loopback port, stopped when dropped.
async fn serve(store: RedisStore) -> TestServer {
    TestServer::start(app(store)).await
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().cookie_store(true).build().expect("client")
}

/// Sends a request, failing the test rather than hanging on a stuck server.
async fn send(request: reqwest::RequestBuilder) -> (StatusCode, String) {
    let response = match tokio::time::timeout(Duration::from_secs(20), request.send()).await {
        Ok(Ok(response)) => response,
        Ok(Err(err)) => panic!("request failed: {err}"),
        Err(_) => panic!("no response within 20 s"),
    };
    let status = StatusCode::from_u16(response.status().as_u16()).expect("status");
    (status, response.text().await.expect("body"))
}

/// The live session hashes in Redis (a rename leaves a short-lived marker
/// under the old key, and a login an index entry: neither is a session).
fn session_keys(server: &RedisServer) -> Vec<String> {
    live_sessions(server.port(), "session:")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_sessions_live_in_redis_from_login_to_logout() {
    let Some(server) = RedisServer::start_or_skip() else { return };
    let app_server = serve(store_on(&server).await).await;
    let base = app_server.url("");
    let http = client();

    assert_eq!(send(http.get(format!("{base}/me"))).await, (StatusCode::UNAUTHORIZED, String::new()));
    assert!(session_keys(&server).is_empty(), "a read-only visit stored a session");
    for expected in ["1", "2", "3"] {
        assert_eq!(send(http.post(format!("{base}/visit"))).await, (StatusCode::OK, expected.to_owned()));
    }
    let before_login = session_keys(&server);
    assert_eq!(before_login.len(), 1);

    assert_eq!(send(http.post(format!("{base}/login/ana"))).await.0, StatusCode::NO_CONTENT);
    let after_login = session_keys(&server);
    assert_eq!(after_login.len(), 1, "login must leave exactly one session");
    assert_ne!(after_login, before_login, "login must move the session to a new id");
    assert_eq!(send(http.get(format!("{base}/me"))).await, (StatusCode::OK, "ana".to_owned()));
    assert_eq!(send(http.post(format!("{base}/visit"))).await, (StatusCode::OK, "4".to_owned()));

    assert_eq!(send(http.post(format!("{base}/logout"))).await.0, StatusCode::NO_CONTENT);
    assert_eq!(send(http.get(format!("{base}/me"))).await.0, StatusCode::UNAUTHORIZED);
    assert!(session_keys(&server).is_empty(), "logout left the session in Redis");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_app_servers_share_one_session_space() {
    let Some(server) = RedisServer::start_or_skip() else { return };
    // Two stores, two connections: as two processes would have.
    let (server_a, server_b) = (serve(store_on(&server).await).await, serve(store_on(&server).await).await);
    let (a, b) = (server_a.url(""), server_b.url(""));
    let http = client();

    assert_eq!(send(http.post(format!("{a}/login/ana"))).await.0, StatusCode::NO_CONTENT);
    assert_eq!(send(http.get(format!("{b}/me"))).await, (StatusCode::OK, "ana".to_owned()), "B must see A's login");
    assert_eq!(send(http.post(format!("{b}/visit"))).await.1, "1");
    assert_eq!(send(http.post(format!("{a}/visit"))).await.1, "2", "A must see B's write");

    // Concurrent writes to different keys, alternating between A and B, all
    // loading the session before any of them saves: every key survives.
    let writes: Vec<_> = (0..16)
        .map(|i| {
            let base = if i % 2 == 0 { &a } else { &b };
            let request = http.put(format!("{base}/keys/k{i}/v{i}"));
            tokio::spawn(send(request))
        })
        .collect();
    for write in writes {
        assert_eq!(write.await.expect("task").0, StatusCode::NO_CONTENT);
    }
    let (status, body) = send(http.get(format!("{b}/keys"))).await;
    assert_eq!(status, StatusCode::OK);
    let data: Value = serde_json::from_str(&body).expect("JSON");
    for i in 0..16 {
        assert_eq!(data[format!("k{i}")], json!(format!("v{i}")), "the write of k{i} was lost: {data}");
    }
    assert_eq!(data["user"], json!("ana"));
    assert_eq!(data["visits"], json!(2));

    assert_eq!(send(http.post(format!("{b}/logout"))).await.0, StatusCode::NO_CONTENT);
    assert_eq!(
        send(http.get(format!("{a}/me"))).await.0,
        StatusCode::UNAUTHORIZED,
        "A still saw B's logged-out session"
    );
    assert!(session_keys(&server).is_empty());
}

/// Two stores on one server, as two app servers have, for
/// `two_servers_suite`; the server lives as long as the first.
async fn two_stores(server: RedisServer) -> (StoreUnderTest, StoreUnderTest) {
    let b = StoreUnderTest::new("redis", store_on(&server).await);
    (StoreUnderTest::guarded("redis", store_on(&server).await, server), b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_app_servers_count_every_concurrent_increment_of_one_key() {
    let Some(server) = RedisServer::start_or_skip() else { return };
    let (a, b) = two_stores(server).await;
    two_servers_suite::concurrent_increments_across_two_app_servers_all_count(a, b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_app_servers_keep_every_concurrent_push_onto_one_key() {
    let Some(server) = RedisServer::start_or_skip() else { return };
    let (a, b) = two_stores(server).await;
    two_servers_suite::concurrent_pushes_across_two_app_servers_all_land(a, b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_app_servers_run_exclusive_read_modify_writes_one_at_a_time() {
    let Some(server) = RedisServer::start_or_skip() else { return };
    let (a, b) = two_stores(server).await;
    two_servers_suite::exclusive_read_modify_writes_across_two_app_servers_lose_nothing(a, b).await;
}

/// The holder is another process (`src/bin/lease-holder.rs`), SIGKILLed
/// while it holds the lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_lease_holder_blocks_both_app_servers_only_until_its_lease_runs_out() {
    let Some(server) = RedisServer::start_or_skip() else { return };
    let url = server.url();
    let (a, b) = two_stores(server).await;
    two_servers_suite::a_killed_lease_holder_blocks_only_until_its_lease_runs_out(a, b, |key, ttl| {
        redis_suites::lease_holder(env!("CARGO_BIN_EXE_lease-holder"), &url, RedisStore::DEFAULT_PREFIX, key, ttl)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_outage_answers_empty_500s_and_the_same_session_resumes() {
    let Some(mut server) = RedisServer::start_with_or_skip(Persistence::EveryWrite) else { return };
    let store = store_on(&server).await;
    let timeout = store.timeout();
    let app_server = serve(store).await;
    let base = app_server.url("");
    let http = client();
    assert_eq!(send(http.post(format!("{base}/login/ana"))).await.0, StatusCode::NO_CONTENT);
    assert_eq!(send(http.post(format!("{base}/visit"))).await.1, "1");

    server.stop();
    let mut waits = Vec::new();
    for path in ["/me", "/visit", "/me"] {
        let started = Instant::now();
        let request =
            if path == "/me" { http.get(format!("{base}{path}")) } else { http.post(format!("{base}{path}")) };
        let (status, body) = send(request).await;
        waits.push(started.elapsed());
        assert_eq!((status, body.as_str()), (StatusCode::INTERNAL_SERVER_ERROR, ""), "{path} while Redis is down");
    }
    for wait in &waits {
        assert!(*wait < timeout + Duration::from_secs(5), "a request hung {wait:?} with a {timeout:?} timeout");
    }

    // A long outage: the client's background reconnection gives up while
    // nobody is asking. The first request after Redis is back must still
    // succeed, not report the last failed attempt.
    tokio::time::sleep(Duration::from_secs(5)).await;
    server.restart();
    let back = Instant::now();
    let (status, body) = send(http.get(format!("{base}/me"))).await;
    let recovered = back.elapsed();
    assert_eq!((status, body.as_str()), (StatusCode::OK, "ana"), "the first request after the restart");
    assert_eq!(send(http.post(format!("{base}/visit"))).await, (StatusCode::OK, "2".to_owned()), "the session resumed");
    eprintln!(
        "outage: requests waited {waits:?} for their 500s (timeout {timeout:?}); first request after restart answered in {recovered:?}"
    );
}
