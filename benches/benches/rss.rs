//! Memory: the resident set size of a million 100 B sessions in
//! `MemoryStore`, and of the same sessions in tower-sessions' `MemoryStore`
//! for scale. A benchmark binary of its own, so that it starts from a fresh
//! process: `VmRSS` (from `/proc/self/status`) is read before filling the
//! store and after. Results go to `target/sessionkit-bench/rss.json`.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use sessionkit::SessionStore;
use sessionkit_benches::fixtures::{self, Rng, payload};
use sessionkit_benches::machine;
use sessionkit_benches::results::{self, Memory, RunStart};
use sessionkit_benches::settings;
use sessionkit_stores::MemoryStore;
use tower_sessions::SessionStore as _;

/// The JSON size of every session.
const PAYLOAD_BYTES: usize = 100;

/// Polls a future that completes without waiting (both memory stores'
/// do). No runtime: its own allocations would count.
fn now<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    match future.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("a memory store operation had to wait"),
    }
}

fn rss() -> u64 {
    machine::rss_bytes().expect("VmRSS from /proc/self/status")
}

/// Set in the child processes: which store to fill.
const CHILD: &str = "SESSIONKIT_RSS_CHILD";

fn main() {
    match std::env::var(CHILD).as_deref() {
        Ok(which) => child(which),
        Err(_) => parent(),
    }
}

/// Measures each store in a fresh process of its own: memory freed by one
/// measurement and kept by the allocator must not count for the next.
fn parent() {
    RunStart::record("rss");
    let sessions = if settings::quick() { 100_000 } else { 1_000_000 };
    let measure = |which: &str| -> (u64, u64) {
        let output = std::process::Command::new(std::env::current_exe().expect("this benchmark's path"))
            .env(CHILD, which)
            .env("SESSIONKIT_RSS_SESSIONS", sessions.to_string())
            .output()
            .expect("running a measurement");
        assert!(output.status.success(), "{which}: {}", String::from_utf8_lossy(&output.stderr));
        let text = String::from_utf8_lossy(&output.stdout);
        let mut numbers = text.split_whitespace().map(|n| n.parse::<u64>().expect("two numbers"));
        (numbers.next().expect("before"), numbers.next().expect("after"))
    };
    let (rss_before, rss_after) = measure("sessionkit");
    let (peer_before, peer_after) = measure("tower-sessions");
    let mib = |bytes: u64| bytes as f64 / (1024.0 * 1024.0);
    println!(
        "sessionkit MemoryStore: {sessions} sessions of {PAYLOAD_BYTES} B: RSS {:.1} MiB ({:.1} MiB before, {:.0} B per session)",
        mib(rss_after),
        mib(rss_before),
        rss_after.saturating_sub(rss_before) as f64 / sessions as f64
    );
    println!(
        "tower-sessions MemoryStore: the same sessions: RSS {:.1} MiB ({:.1} MiB before)",
        mib(peer_after),
        mib(peer_before)
    );
    results::write(
        "rss",
        &Memory {
            sessions,
            payload_bytes: PAYLOAD_BYTES,
            rss_before,
            rss_after,
            peer_rss_growth: Some(peer_after.saturating_sub(peer_before)),
            random_load_ns: Some(random_load_ns()),
        },
    );
}

/// Nanoseconds per load when each load's address depends on the previous
/// one, over a 32 MiB buffer visited in random order: the price of a cache
/// (and TLB) miss here, which bounds any store operation that touches
/// memory no recent operation touched.
fn random_load_ns() -> f64 {
    const LINE_WORDS: usize = 8;
    let lines = 32 * 1024 * 1024 / 64;
    let mut order: Vec<usize> = (0..lines).collect();
    Rng::new(5).shuffle(&mut order);
    let mut next = vec![0usize; lines * LINE_WORDS];
    for (i, &line) in order.iter().enumerate() {
        next[line * LINE_WORDS] = order[(i + 1) % lines] * LINE_WORDS;
    }
    let steps = 2_000_000;
    let mut at = 0;
    let start = std::time::Instant::now();
    for _ in 0..steps {
        at = next[at];
    }
    let elapsed = start.elapsed();
    std::hint::black_box(at);
    let ns = elapsed.as_nanos() as f64 / f64::from(steps);
    println!("a dependent load at a random address of 32 MiB: {ns:.0} ns");
    ns
}

/// Fills one store and prints the RSS before and after, in bytes.
fn child(which: &str) {
    let sessions: usize =
        std::env::var("SESSIONKIT_RSS_SESSIONS").ok().and_then(|n| n.parse().ok()).expect("a session count");
    let data = payload(PAYLOAD_BYTES);
    let expires_at = fixtures::expiry();
    let mut rng = Rng::new(11);
    let before = rss();
    match which {
        "sessionkit" => {
            let store = MemoryStore::new();
            for _ in 0..sessions {
                now(store.set(&rng.id(), &data, expires_at)).expect("set");
            }
            assert_eq!(store.len(), sessions);
            println!("{before} {}", rss());
        }
        "tower-sessions" => {
            use tower_sessions::cookie::time::{Duration, OffsetDateTime};
            let store = tower_sessions::MemoryStore::default();
            let expiry_date = OffsetDateTime::now_utc() + Duration::DAY;
            for _ in 0..sessions {
                let data = data.clone().into_iter().collect();
                let mut record = tower_sessions::session::Record { id: Default::default(), data, expiry_date };
                now(store.create(&mut record)).expect("create");
            }
            println!("{before} {}", rss());
        }
        other => panic!("unknown store {other}"),
    }
}
