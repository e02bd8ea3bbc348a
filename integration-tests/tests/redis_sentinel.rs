//! `RedisStore` behind Sentinel (a primary, one replica, three sentinels;
//! see `redis_sentinel`): the conformance kit and the HTTP suite through a
//! `redis+sentinel://` URL, the builder and client forms, a wrong service
//! name, and the primary killed under write load, with and without waiting
//! for replicas.
//!
//! Each test starts its own deployment. Without `redis-server` the tests
//! say loudly that they were skipped, and fail under `CI=true`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use sessionkit::{SessionStore, StoreError};
use sessionkit_integration_tests::failover_workload::{FailoverReport, Writers};
use sessionkit_integration_tests::redis_node::programs_or_skip;
use sessionkit_integration_tests::redis_sentinel::{RedisSentinel, SERVICE};
use sessionkit_integration_tests::redis_suites;
use sessionkit_integration_tests::stores::StoreUnderTest;
use sessionkit_integration_tests::support::{in_secs, map};
use sessionkit_stores::RedisStore;

#[test]
fn the_conformance_kit_passes_behind_sentinel_with_and_without_waiting_for_replicas() {
    let Some(deployment) = RedisSentinel::start_or_skip() else { return };
    let url = deployment.url();
    let stores = AtomicUsize::new(0);
    for wait in [false, true] {
        sessionkit::testing::block_on(sessionkit::testing::run_all(
            || {
                let prefix = format!("kit-{}:", stores.fetch_add(1, Ordering::Relaxed));
                let url = url.clone();
                async move {
                    let builder = RedisStore::builder().prefix(prefix);
                    let builder =
                        if wait { builder.wait_for_replicas(1, Duration::from_millis(1500)) } else { builder };
                    builder.open(&url).await.expect("open behind sentinel")
                }
            },
            sessionkit::testing::Options::expiring_on_its_own(),
        ));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_suite_passes_behind_sentinel() {
    let Some(deployment) = RedisSentinel::start_or_skip() else { return };
    let url = deployment.url();
    redis_suites::run_http_suite("redis sentinel", |prefix| {
        let url = url.clone();
        async move {
            let store = RedisStore::builder().prefix(prefix).open(&url).await.expect("open behind sentinel");
            StoreUnderTest::new("redis sentinel", store)
        }
    })
    .await;
}

/// The builder form and an application's own `SentinelClient` reach the
/// same primary as the URL; a service the sentinels do not know is an error
/// that names the cause, within the timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn builder_and_client_forms_reach_the_same_primary_and_a_wrong_service_is_named() {
    let Some(deployment) = RedisSentinel::start_or_skip() else { return };
    let sentinels: Vec<String> =
        deployment.sentinel_ports().iter().map(|port| format!("redis://127.0.0.1:{port}/")).collect();
    let by_url = RedisStore::open(&deployment.url()).await.expect("open by URL");
    let by_builder = RedisStore::builder().open_sentinel(&sentinels, SERVICE).await.expect("open_sentinel");
    let client = redis::sentinel::SentinelClient::build(
        sentinels.clone(),
        SERVICE,
        None,
        redis::sentinel::SentinelServerType::Master,
    )
    .expect("a sentinel client");
    let by_client = RedisStore::builder().from_sentinel_client(client).await.expect("from_sentinel_client");

    let id = sessionkit_integration_tests::support::key();
    by_url.set(&id, &map(json!({ "who": "url" })), Some(in_secs(60))).await.expect("set");
    for store in [&by_builder, &by_client] {
        let record = store.get(&id).await.expect("get").expect("the same primary holds it");
        assert_eq!(record.data["who"], json!("url"));
    }

    let timeout = Duration::from_millis(500);
    let started = Instant::now();
    let result = RedisStore::builder().timeout(timeout).open_sentinel(&sentinels, "no-such-service").await;
    let waited = started.elapsed();
    match result {
        Err(StoreError::Backend { source, .. }) => {
            let cause = source.to_string();
            assert!(cause.to_lowercase().contains("master"), "the error should say no primary was found: {cause}");
        }
        other => panic!("expected an error naming the missing service, got {other:?}"),
    }
    assert!(waited < timeout + Duration::from_secs(2), "open waited {waited:?} despite a {timeout:?} timeout");
}

/// Kills the primary under 16 writers, waits for the sentinels to promote
/// the replica, then restarts the killed node (the sentinels make it the
/// new primary's replica); the writers run throughout, through one store
/// that is never reopened.
async fn failover_under_write_load(wait: bool) -> FailoverReport {
    let deployment = RedisSentinel::start_or_skip().expect("the caller checked the programs");
    let mut builder = RedisStore::builder().prefix("failover:").timeout(Duration::from_millis(2000));
    if wait {
        builder = builder.wait_for_replicas(1, Duration::from_millis(1000));
    }
    let store = Arc::new(builder.open(&deployment.url()).await.expect("open behind sentinel"));
    let ids = (0..16).map(|_| sessionkit_integration_tests::support::key()).collect();
    let writers = Writers::start(store.clone(), ids).await;
    assert!(writers.every_writer_succeeds(50, Duration::from_secs(10)).await, "the writers did not get going");

    let deployment = Arc::new(std::sync::Mutex::new(deployment));
    let killed_at = Instant::now();
    let (promoted, restarted) = {
        let deployment = deployment.clone();
        tokio::task::spawn_blocking(move || {
            let mut deployment = deployment.lock().expect("deployment lock");
            let old = deployment.kill_primary();
            deployment.wait_for_failover(old);
            let promoted = killed_at.elapsed();
            // Writes that wait for a replica need one back; the others do not.
            let restarted = wait.then(|| {
                deployment.restart(old);
                killed_at.elapsed()
            });
            (promoted, restarted)
        })
        .await
        .expect("the failover")
    };
    let recovered = writers.every_writer_succeeds(20, Duration::from_secs(30)).await;
    let report = writers.finish(killed_at).await;
    eprintln!(
        "sentinel failover, {}: replica promoted {promoted:?} after the kill, old primary restarted and back as a replica at {restarted:?}; {report}",
        if wait { "wait_for_replicas(1, 1s)" } else { "no WAIT" },
    );
    assert!(recovered, "the store did not resume writing after the failover: {report}");
    assert!(report.outage.is_some(), "killing the writers' primary must fail some writes: {report}");
    // Requests in flight at the kill wait up to the store's timeout before
    // they fail, so the outage is counted from the kill.
    let outage = report.resumed_after_kill.expect("writes resumed");
    // Detection (down-after-milliseconds 1 s), agreement and promotion, then
    // for WAIT the old primary's restart and resync: seconds, well under this.
    assert!(outage < Duration::from_secs(30), "writes failed for {outage:?}");
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sentinel_primary_killed_under_write_load_fails_over_and_the_store_follows() {
    if !programs_or_skip(&["redis-server"]) {
        return;
    }
    let report = failover_under_write_load(false).await;
    // Asynchronous replication may lose some; the number is printed above.
    assert!(report.lost <= report.acknowledged);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_wait_for_replicas_a_sentinel_failover_loses_no_acknowledged_write() {
    if !programs_or_skip(&["redis-server"]) {
        return;
    }
    let report = failover_under_write_load(true).await;
    assert_eq!(report.lost, 0, "acknowledged writes were lost despite WAIT: {report}");
}
