//! Runs one MemoryStore operation many times, for a profiler.
//!
//! `cargo build --release -p sessionkit-benches --example profile_memory`, then
//! `valgrind --tool=callgrind --collect-atstart=no --toggle-collect='profile_memory::measure*' \
//!   target/release/examples/profile_memory get 100000 10000`: instructions per
//! operation = the total collected / the count.
//!
//! Run natively it also prints the thread's CPU time per operation (Linux:
//! from `/proc/thread-self/stat`), after one untimed warm-up pass. On a busy
//! machine that figure, unlike the wall-clock one, leaves out the time other
//! processes held the CPU; it is for comparing builds, the criterion
//! benchmarks in `benches/stores.rs` carry the published numbers.
//!
//! Operations: `get`, `set`, `update` (one key set), `limited` (the same with
//! a 1 MiB size limit, as the layer sends every patch), `increment` (with the
//! limit), `touch`.

use std::hint::black_box;
use std::sync::Arc;

use sessionkit::{Changes, SessionStore, StoreKey};
use sessionkit_benches::fixtures::{self, Rng, payload};
use sessionkit_stores::MemoryStore;

/// The timed (and, under callgrind, counted) operations.
#[inline(never)]
fn measure(runtime: &tokio::runtime::Runtime, store: &Arc<dyn SessionStore>, op: &str, ids: &[StoreKey], count: usize) {
    run(runtime, store, op, ids, count);
}

/// One pass over every session first, as criterion warms up: not counted.
#[inline(never)]
fn warm_up(runtime: &tokio::runtime::Runtime, store: &Arc<dyn SessionStore>, op: &str, ids: &[StoreKey]) {
    run(runtime, store, op, ids, ids.len());
}

fn run(runtime: &tokio::runtime::Runtime, store: &Arc<dyn SessionStore>, op: &str, ids: &[StoreKey], count: usize) {
    let data = payload(100);
    let mut changes = Changes::new();
    changes.set("visits", serde_json::Value::from(43));
    let mut limited = changes.clone();
    limited.limit_size(1 << 20);
    let mut increment = Changes::new();
    increment.increment("visits", 1).expect("an increment of an untouched key");
    increment.limit_size(1 << 20);
    let expires_at = fixtures::expiry();
    let store: &dyn SessionStore = &**store;
    runtime.block_on(async {
        for i in 0..count {
            let id = &ids[i % ids.len()];
            match op {
                "get" => drop(black_box(store.get(id).await)),
                "set" => drop(black_box(store.set(id, &data, expires_at).await)),
                "update" => drop(black_box(store.update(id, &changes, expires_at).await)),
                "limited" => drop(black_box(store.update(id, &limited, expires_at).await)),
                "increment" => drop(black_box(store.update(id, &increment, expires_at).await)),
                "touch" => drop(black_box(store.touch(id, expires_at).await)),
                other => panic!("unknown operation {other}"),
            }
        }
    });
}

/// This thread's user and system time so far, in clock ticks (10 ms), if
/// the system says.
fn cpu_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
    // Fields after the command name, which is in parentheses: utime and
    // stime are the 12th and 13th of them.
    let fields: Vec<&str> = stat.get(stat.rfind(')')? + 2..)?.split(' ').collect();
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
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
    warm_up(&runtime, &store, op, &ids);
    let ticks = cpu_ticks();
    let start = std::time::Instant::now();
    measure(&runtime, &store, op, &ids, count);
    let wall = start.elapsed().as_nanos() as f64 / count as f64;
    match (ticks, cpu_ticks()) {
        (Some(before), Some(after)) => {
            let cpu = (after - before) as f64 * 1e7 / count as f64;
            eprintln!("{op}: {wall:.0} ns per operation, {cpu:.0} ns of CPU");
        }
        _ => eprintln!("{op}: {wall:.0} ns per operation"),
    }
}
