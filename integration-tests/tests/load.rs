//! Load and soak over HTTP, per store: 64 concurrent clients, 20,480 requests
//! in all. Each client increments a counter in its own session and its own
//! key in a few shared sessions; it also writes to sessions that are
//! destroyed halfway through. At the end every count is exact (no lost
//! update), the destroyed sessions stay gone (no resurrection), no request
//! failed, and memory stopped growing between the two halves of the run.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use reqwest::StatusCode;
use reqwest::header::COOKIE;
use sessionkit_integration_tests::http_suite::{Harness, pair, set_cookie};
use sessionkit_integration_tests::stores::{self, StoreUnderTest};

const CLIENTS: usize = 64;
/// Requests per client per half of the run: 64 × 2 × 160 = 20,480.
const PER_HALF: usize = 160;
const SHARED: usize = 4;
const DOOMED: usize = 2;

/// Resident memory of this process, in KiB.
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status.lines().find_map(|line| line.strip_prefix("VmRSS:")?.trim().strip_suffix("kB")?.trim().parse().ok())
        })
        .unwrap_or(0)
}

async fn new_session(h: &Harness) -> String {
    let response = h.post_with("/set/seed/1", None).await;
    assert_eq!(response.status(), StatusCode::OK);
    pair(&set_cookie(&response, "id").expect("session cookie"))
}

async fn read_count(h: &Harness, cookie: &str, key: &str) -> u64 {
    let body = h.get_with(&format!("/get/{key}"), Some(cookie)).await.text().await.expect("body");
    body.parse().unwrap_or(0)
}

/// One half of the run: every client sends `PER_HALF` requests.
async fn half(
    h: &Arc<Harness>,
    own: &Arc<Vec<String>>,
    shared: &Arc<Vec<String>>,
    doomed: &Arc<Vec<String>>,
    failures: &Arc<AtomicUsize>,
) {
    let client = h.raw();
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let (h, client, own, shared, doomed, failures) =
                (h.clone(), client.clone(), own.clone(), shared.clone(), doomed.clone(), failures.clone());
            tokio::spawn(async move {
                for r in 0..PER_HALF {
                    // Half the requests to the client's own session, the rest
                    // spread over the shared and doomed sessions.
                    let (cookie, key) = match r % 4 {
                        0 | 1 => (&own[c], "n".to_string()),
                        2 => (&shared[(c + r) % SHARED], format!("c{c}")),
                        _ => (&doomed[(c + r) % DOOMED], format!("c{c}")),
                    };
                    let response = client.post(h.url(&format!("/incr/{key}"))).header(COOKIE, cookie).send().await;
                    match response {
                        Ok(response) if response.status() == StatusCode::OK => {}
                        _ => {
                            failures.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("client task");
    }
}

async fn soak(under_test: StoreUnderTest) {
    let name = under_test.name;
    let h = Arc::new(Harness::start(under_test, |c| c).await);
    let mut own = Vec::new();
    for _ in 0..CLIENTS {
        own.push(new_session(&h).await);
    }
    let mut shared = Vec::new();
    for _ in 0..SHARED {
        shared.push(new_session(&h).await);
    }
    let mut doomed = Vec::new();
    for _ in 0..DOOMED {
        doomed.push(new_session(&h).await);
    }
    let (own, shared, doomed) = (Arc::new(own), Arc::new(shared), Arc::new(doomed));
    let failures = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();

    half(&h, &own, &shared, &doomed, &failures).await;
    let rss_first_half = rss_kib();
    // Destroy the doomed sessions; the second half keeps writing to them.
    for cookie in doomed.iter() {
        assert_eq!(h.post_with("/destroy", Some(cookie)).await.status(), StatusCode::OK);
    }
    half(&h, &own, &shared, &doomed, &failures).await;
    let rss_second_half = rss_kib();
    let elapsed = started.elapsed();

    assert_eq!(failures.load(Ordering::Relaxed), 0, "{name}: requests failed under load");
    // Requests per client per half that went to each kind of session.
    let own_per_half = PER_HALF / 2;
    for (c, cookie) in own.iter().enumerate() {
        assert_eq!(read_count(&h, cookie, "n").await, 2 * own_per_half as u64, "{name}: client {c} lost an update");
    }
    for (s, cookie) in shared.iter().enumerate() {
        for c in 0..CLIENTS {
            let expected = (0..PER_HALF).filter(|r| r % 4 == 2 && (c + r) % SHARED == s).count() as u64 * 2;
            assert_eq!(
                read_count(&h, cookie, &format!("c{c}")).await,
                expected,
                "{name}: shared session {s}, client {c}"
            );
        }
    }
    for cookie in doomed.iter() {
        let id = cookie.trim_start_matches("id=");
        assert!(h.stored(id).await.is_none(), "{name}: a destroyed session was resurrected by later writes");
    }
    let requests = 2 * CLIENTS * PER_HALF;
    println!(
        "{name}: {requests} requests from {CLIENTS} clients in {elapsed:.1?} ({:.0} req/s), 0 failed, \
         RSS {} MiB after the first half, {} MiB after the second",
        requests as f64 / elapsed.as_secs_f64(),
        rss_first_half / 1024,
        rss_second_half / 1024
    );
    // Bounded memory: the second half, doing the same work, must not keep growing.
    assert!(
        rss_second_half <= rss_first_half + 64 * 1024,
        "{name}: RSS grew from {rss_first_half} KiB to {rss_second_half} KiB over the second half"
    );
}

macro_rules! soak_each {
    ($($store:ident),*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $store() {
            let Some(store) = stores::$store().await else { return };
            soak(store).await;
        }
    )*};
}

soak_each!(memory, file, redb, redis, sqlite);
