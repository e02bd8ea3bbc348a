//! What a `get` costs when the database file is not in memory: the case
//! that decides whether a durable store may read on the caller's task (see
//! `sessionkit_stores`' inline reads).
//!
//! `cold_read fill <dir> <redb|sqlite> <sessions>` writes that many 100 B
//! sessions (at least 100,000: reads pick among the first 100,000);
//! `cold_read read <dir> <redb|sqlite> <reads>` opens the store
//! afresh (empty engine caches) and times that many `get`s of random
//! sessions, one at a time, printing the first read, the median, the 99th
//! percentile and the slowest. Between the two, evict the file from the
//! kernel's page cache (`posix_fadvise(DONTNEED)` on each file of `<dir>`)
//! for a read from disk; without it the reads come from the page cache.
//! A diagnostic, not a published number: the criterion benchmarks in
//! `benches/stores.rs` carry those.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sessionkit::SessionStore;
use sessionkit_benches::fixtures::{self, Rng, payload};
use sessionkit_stores::{RedbStore, SqliteStore};

const SEED: u64 = 16;

async fn open(dir: &Path, engine: &str) -> Arc<dyn SessionStore> {
    match engine {
        "redb" => Arc::new(RedbStore::open(dir.join("sessions.redb")).await.expect("opening redb")),
        "sqlite" => Arc::new(SqliteStore::open(dir.join("sessions.db")).await.expect("opening SQLite")),
        other => panic!("unknown store {other}: redb or sqlite"),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [mode, dir, engine, count] = <[String; 4]>::try_from(args)
        .unwrap_or_else(|_| panic!("usage: cold_read fill|read <dir> <redb|sqlite> <count>"));
    let count: usize = count.parse().expect("a count");
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    runtime.block_on(async {
        let store = open(Path::new(&dir), &engine).await;
        let mut rng = Rng::new(SEED);
        match mode.as_str() {
            "fill" => {
                let data = payload(fixtures::BACKGROUND_BYTES);
                for _ in 0..count {
                    store.set(&rng.id(), &data, fixtures::expiry()).await.expect("set");
                }
                println!("wrote {count} sessions");
            }
            "read" => {
                let ids: Vec<_> = (0..100_000).map(|_| rng.id()).collect();
                let mut pick = Rng::new(SEED + 1);
                let mut times: Vec<Duration> = Vec::with_capacity(count);
                for _ in 0..count {
                    let id = &ids[pick.below(ids.len())];
                    let started = Instant::now();
                    let found = store.get(id).await.expect("get");
                    times.push(started.elapsed());
                    assert!(found.is_some(), "fill wrote this session");
                }
                let first = times[0];
                times.sort();
                let at = |q: f64| times[((times.len() - 1) as f64 * q) as usize];
                println!(
                    "{engine}: {count} gets, first {:?}, median {:?}, p99 {:?}, max {:?}",
                    first,
                    at(0.5),
                    at(0.99),
                    times[times.len() - 1]
                );
            }
            other => panic!("unknown mode {other}: fill or read"),
        }
    });
}
