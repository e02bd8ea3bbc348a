//! No lost update on one key across app servers: the same-key checks of
//! `same_key_suite` with one visitor's concurrent requests spread over two
//! app servers, each with a store of its own on one deployment (two
//! `RedisStore`s on one Redis, as two processes would have), and a lock
//! holder in another process killed while it holds the session's lease.
//!
//! `tests/redis_store.rs` runs these on a standalone Redis,
//! `tests/redis_cluster.rs` on a Cluster.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;
use sessionkit::{SessionConfig, SessionConfigBuilder, SessionId, SessionLayer, StoreKey};

use crate::app::{self, Gates};
use crate::same_key_suite::hammer;
use crate::server::TestServer;
use crate::stores::StoreUnderTest;
use crate::visitor::Visitor;

/// Two app servers, each on a store of its own, both stores on one deployment.
pub struct TwoServers {
    pub a: TestServer,
    pub b: TestServer,
    config: SessionConfig,
    stores: (StoreUnderTest, StoreUnderTest),
}

impl TwoServers {
    /// Serves the suite's app on `a` and on `b`, with `configure` applied
    /// to each server's default config (`Secure` off: plain HTTP).
    pub async fn start(
        a: StoreUnderTest,
        b: StoreUnderTest,
        configure: impl Fn(SessionConfigBuilder) -> SessionConfigBuilder,
    ) -> Self {
        let serve = |under_test: &StoreUnderTest| {
            let config = configure(SessionConfig::shared_builder(under_test.store.clone()).secure(false));
            let layer = SessionLayer::try_new(config).expect("valid test configuration");
            (layer.config().clone(), app::router(layer, Arc::new(Gates::default())))
        };
        let (config, router_a) = serve(&a);
        let (_, router_b) = serve(&b);
        Self { a: TestServer::start(router_a).await, b: TestServer::start(router_b).await, config, stores: (a, b) }
    }

    /// A visitor holding a stored session (written through A), and the
    /// same visitor on B.
    pub async fn visitor(&self) -> [Visitor; 2] {
        let mut on_a = Visitor::new(&self.a.url(""));
        assert_eq!(on_a.post("/set/anchor/1").await.status, StatusCode::OK);
        let on_b = on_a.on(&self.b.url(""));
        [on_a, on_b]
    }

    /// A third app server on A's store, with `configure` applied to its
    /// default config.
    pub async fn another_server(
        &self,
        configure: impl FnOnce(SessionConfigBuilder) -> SessionConfigBuilder,
    ) -> TestServer {
        let config = configure(SessionConfig::shared_builder(self.stores.0.store.clone()).secure(false));
        let layer = SessionLayer::try_new(config).expect("valid test configuration");
        TestServer::start(app::router(layer, Arc::new(Gates::default()))).await
    }

    /// The store key of a visitor's session.
    pub fn store_key(&self, visitor: &Visitor) -> StoreKey {
        let cookie = visitor.cookie.as_deref().unwrap_or_default();
        let id = SessionId::parse(cookie.trim_start_matches("id=")).expect("the visitor holds a session id");
        self.config.store_key(&id)
    }
}

/// 200 concurrent increments of one key, from 32 connections spread over
/// both app servers, end at exactly 200.
pub async fn concurrent_increments_across_two_app_servers_all_count(a: StoreUnderTest, b: StoreUnderTest) {
    let servers = TwoServers::start(a, b, |c| c).await;
    let mut visitors = servers.visitor().await;
    let statuses = hammer(&visitors, "/increment/visits", 200, 32).await;
    assert!(statuses.iter().all(|s| *s == StatusCode::OK), "{statuses:?}");
    for visitor in &mut visitors {
        assert_eq!(visitor.get("/get/visits").await.body, "200", "increments across app servers were lost");
    }
}

/// 100 concurrent pushes onto one key, spread over both app servers, leave
/// exactly 100 distinct items.
pub async fn concurrent_pushes_across_two_app_servers_all_land(a: StoreUnderTest, b: StoreUnderTest) {
    let servers = TwoServers::start(a, b, |c| c).await;
    let [mut on_a, on_b] = servers.visitor().await;
    let statuses = hammer(&[on_a.clone(), on_b], "/push/cart/item-{i}", 100, 32).await;
    assert!(statuses.iter().all(|s| *s == StatusCode::OK), "{statuses:?}");
    let cart: Vec<String> = serde_json::from_str(&on_a.get("/get/cart").await.body).expect("a list");
    let mut items = cart.clone();
    items.sort();
    items.dedup();
    assert_eq!((cart.len(), items.len()), (100, 100), "pushes across app servers were lost or doubled");
}

/// 50 concurrent exclusive read-modify-writes of one JSON object, spread
/// over both app servers, lose nothing: each saw the one before it, so the
/// lease excludes across servers.
pub async fn exclusive_read_modify_writes_across_two_app_servers_lose_nothing(a: StoreUnderTest, b: StoreUnderTest) {
    let servers = TwoServers::start(a, b, |c| c.exclusive_wait(Duration::from_secs(30))).await;
    let [mut on_a, on_b] = servers.visitor().await;
    let statuses = hammer(&[on_a.clone(), on_b], "/exclusive/bump/counter", 50, 16).await;
    assert!(statuses.iter().all(|s| *s == StatusCode::OK), "{statuses:?}");
    let object: Value = serde_json::from_str(&on_a.get("/get/counter").await.body).expect("json");
    assert_eq!(object["n"], 50, "an exclusive read-modify-write across app servers was lost: {object}");
    let seen: Vec<u64> = object["seen"].as_array().expect("seen").iter().filter_map(Value::as_u64).collect();
    assert_eq!(seen, (1..=50).collect::<Vec<_>>(), "exclusive requests on two servers did not run one at a time");
}

/// A child process holding a lease, killed on drop if the test did not.
struct Holder(Child);

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A lock holder in another process: `holder(key, ttl)` is the command of
/// a process that takes `key`'s exclusive lease for `ttl` on the shared
/// deployment, prints `HELD` and holds it (the `lease-holder` binary). It
/// is killed (SIGKILL) while it holds the lease. Requests that do not ask
/// for exclusivity pass at once; an exclusive request that may wait only
/// briefly gets a 503; one that may wait longer proceeds once the lease ran
/// out, on either app server, and its write lands.
pub async fn a_killed_lease_holder_blocks_only_until_its_lease_runs_out(
    a: StoreUnderTest,
    b: StoreUnderTest,
    holder: impl Fn(&StoreKey, Duration) -> Command,
) {
    const TTL: Duration = Duration::from_secs(3);
    let servers = TwoServers::start(a, b, |c| c.exclusive_wait(Duration::from_secs(20))).await;
    let [mut on_a, mut on_b] = servers.visitor().await;
    let key = servers.store_key(&on_a);

    let spawned_at = Instant::now();
    let mut command = holder(&key, TTL);
    command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::inherit());
    let mut child = Holder(command.spawn().unwrap_or_else(|err| panic!("cannot start the lease holder: {err}")));
    let stdout = child.0.stdout.take().expect("the holder's stdout");
    let said = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).map(|_| line)
    });
    let said = tokio::time::timeout(Duration::from_secs(20), said)
        .await
        .expect("the lease holder said nothing within 20 s")
        .expect("reading the holder's output")
        .expect("the holder's output");
    assert_eq!(said.trim(), "HELD", "the lease holder could not take the lease");
    child.0.kill().expect("SIGKILL the lease holder");
    child.0.wait().expect("reap the lease holder");

    assert_eq!(on_b.post("/increment/free").await.status, StatusCode::OK, "a route without exclusivity never waits");
    let impatient = servers.another_server(|c| c.exclusive_wait(Duration::from_millis(100))).await;
    let refused = on_a.on(&impatient.url("")).request(reqwest::Method::POST, "/exclusive/bump/counter").send().await;
    let refused = refused.expect("request");
    assert_eq!(
        refused.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "the killed holder's lease still holds: a request that may not wait gets a 503"
    );

    let answer = on_b.post("/exclusive/bump/counter").await;
    let answered_at = Instant::now();
    assert_eq!(answer.status, StatusCode::OK, "the next exclusive request proceeds once the lease ran out");
    assert_eq!(answer.body, "1", "and it is the first bump: the refused one wrote nothing");
    // The lease was taken after the spawn, so it ran out after spawn + ttl.
    assert!(
        answered_at >= spawned_at + TTL,
        "an exclusive request went through {:?} after the holder started, inside its {TTL:?} lease",
        answered_at - spawned_at
    );
    assert_eq!(on_a.get("/get/counter").await.json()["n"], 1, "the write after the lease ran out landed");
}
