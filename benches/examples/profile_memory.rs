//! Runs one MemoryStore operation many times, for a profiler.
//!
//! `cargo build --release -p sessionkit-benches --example profile_memory`, then
//! `valgrind --tool=callgrind --collect-atstart=no --toggle-collect='profile_memory::measure*' \
//!   target/release/examples/profile_memory get 100000 10000`: instructions per
//! operation = the total collected / the count.

use std::hint::black_box;
use std::sync::Arc;

use sessionkit::{Changes, SessionStore, StoreKey};
use sessionkit_benches::fixtures::{self, Rng, payload};
use sessionkit_stores::MemoryStore;

#[inline(never)]
fn measure(runtime: &tokio::runtime::Runtime, store: &Arc<dyn SessionStore>, op: &str, ids: &[StoreKey], count: usize) {
    let data = payload(100);
    let mut changes = Changes::new();
    changes.set("visits", serde_json::Value::from(43));
    let expires_at = fixtures::expiry();
    let store: &dyn SessionStore = &**store;
    runtime.block_on(async {
        for i in 0..count {
            let id = &ids[i % ids.len()];
            match op {
                "get" => drop(black_box(store.get(id).await)),
                "set" => drop(black_box(store.set(id, &data, expires_at).await)),
                "update" => drop(black_box(store.update(id, &changes, expires_at).await)),
                "touch" => drop(black_box(store.touch(id, expires_at).await)),
                other => panic!("unknown operation {other}"),
            }
        }
    });
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let op = args.get(1).map_or("get", String::as_str);
    let population: usize = args.get(2).and_then(|n| n.parse().ok()).unwrap_or(100_000);
    let count: usize = args.get(3).and_then(|n| n.parse().ok()).unwrap_or(10_000);
    let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
    let store: Arc<dyn SessionStore> = Arc::new(MemoryStore::new());
    let mut rng = Rng::new(1);
    let mut ids = runtime.block_on(fixtures::populate(&store, false, population, &mut rng)).expect("populate");
    rng.shuffle(&mut ids);
    let start = std::time::Instant::now();
    measure(&runtime, &store, op, &ids, count);
    eprintln!("{op}: {:.0} ns per operation", start.elapsed().as_nanos() as f64 / count as f64);
}
