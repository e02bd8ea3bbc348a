//! What a user index costs: `set` (a new session), `update`, `rename` (to a
//! new key) and `delete` of sessions that belong to a user against the same
//! operations on sessions that belong to nobody, on every store. Ids:
//! `index-cost/<store>/<op>/with-user` and `.../without-user`.
//!
//! A store whose operations wait on I/O runs them in waves of [`WAVE`]
//! concurrent ones, as a loaded server would: a durable store then shares
//! one commit among a wave, and what differs between the two variants (the
//! index entries written, moved or removed) is not lost in the time of a
//! `fsync` per operation. The others run one operation at a time. Each
//! operation's future is made before the clock starts.
//!
//! The store holds [`BACKGROUND`] other sessions; the sessions of the
//! "with-user" variant belong to [`USERS`] users, round robin.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput};
use serde_json::Value;
use sessionkit::{Changes, SessionMap, SessionStore, StoreError, StoreKey, UpdateOutcome, reserved};
use sessionkit_benches::fixtures::{self, BACKGROUND_BYTES, Rng, payload};
use sessionkit_benches::registry::StoreSpec;
use sessionkit_benches::settings;
use tokio::runtime::Runtime;

/// Operations in flight at once on a store that waits on I/O: as many as
/// the SQLite and redb writers commit together.
const WAVE: usize = 256;
/// Sessions in the store besides the measured ones.
const BACKGROUND: usize = 10_000;
/// Live sessions that `update` and `rename` work on, per variant.
const TARGETS: usize = 1_000;
/// How many users the "with-user" sessions belong to.
const USERS: usize = 100;

type Job = Pin<Box<dyn Future<Output = ()> + Send>>;

fn ok<T>(result: Result<T, StoreError>, what: &str) -> T {
    match result {
        Ok(value) => value,
        Err(err) => panic!("{what} failed: {err} ({err:?})"),
    }
}

/// Session data of [`BACKGROUND_BYTES`], bound to a user when `user` is.
fn data(user: Option<usize>) -> SessionMap {
    let mut data = payload(BACKGROUND_BYTES);
    if let Some(n) = user {
        data.insert(reserved::USER.to_owned(), Value::from(format!("bench-user-{}", n % USERS)));
    }
    data
}

/// Operations made ahead of the clock at a time: bounds the memory a fast
/// store's millions of iterations would take.
const CHUNK: u64 = 4_096;

/// Runs `jobs`, one at a time or in waves, and times them.
async fn run(jobs: Vec<Job>, waits: bool) -> Duration {
    let start = Instant::now();
    if !waits {
        for job in jobs {
            job.await;
        }
        return start.elapsed();
    }
    let mut jobs = jobs.into_iter().peekable();
    while jobs.peek().is_some() {
        let mut wave = tokio::task::JoinSet::new();
        for job in jobs.by_ref().take(WAVE) {
            wave.spawn(job);
        }
        while let Some(done) = wave.join_next().await {
            if let Err(panicked) = done {
                std::panic::resume_unwind(panicked.into_panic());
            }
        }
    }
    start.elapsed()
}

/// Times `count` operations, each made by `make` before the clock starts.
fn timed(runtime: &Runtime, waits: bool, count: u64, mut make: impl FnMut() -> Job) -> Duration {
    let (mut total, mut left) = (Duration::ZERO, count);
    while left > 0 {
        let now = left.min(CHUNK);
        let jobs = (0..now).map(|_| make()).collect();
        total += runtime.block_on(run(jobs, waits));
        left -= now;
    }
    total
}

/// Runs `jobs`, untimed.
fn untimed(runtime: &Runtime, waits: bool, jobs: impl IntoIterator<Item = Job>) {
    let mut jobs = jobs.into_iter().peekable();
    while jobs.peek().is_some() {
        runtime.block_on(run(jobs.by_ref().take(CHUNK as usize).collect(), waits));
    }
}

/// One variant's sessions: whether they have users, the live sessions
/// `update` and `rename` work on, and where it stands in them.
struct Variant {
    name: &'static str,
    with_user: bool,
    /// How many sessions it wrote: the next one's user is the next one.
    written: usize,
    targets: Vec<StoreKey>,
    slot: usize,
}

impl Variant {
    fn next_data(&mut self) -> SessionMap {
        self.written += 1;
        data(self.with_user.then_some(self.written))
    }

    /// The next target; slots advance one per operation, so a wave never
    /// works on one session twice.
    fn next_slot(&mut self) -> usize {
        self.slot = (self.slot + 1) % self.targets.len();
        self.slot
    }
}

/// The `index-cost` group for `spec`. The two variants of each operation
/// run one right after the other, so that the machine's load drifts as
/// little as possible between them.
pub fn measure(criterion: &mut Criterion, runtime: &Runtime, spec: &'static StoreSpec) {
    let Some(open) = ok(runtime.block_on(spec.open()), "opening the store") else {
        return;
    };
    let store = Arc::clone(&open.store);
    let waits = spec.waits;
    let mut rng = Rng::new(11);
    let background = if settings::quick() { BACKGROUND / 10 } else { BACKGROUND };
    ok(runtime.block_on(fixtures::populate(&store, waits, background, &mut rng)), "populating");
    let expires_at = fixtures::expiry();
    let set = |key: StoreKey, data: SessionMap| {
        let store = Arc::clone(&store);
        Box::pin(async move { ok(store.set(&key, &data, expires_at).await, "set") }) as Job
    };
    let delete = |key: StoreKey| {
        let store = Arc::clone(&store);
        Box::pin(async move { ok(store.delete(&key).await, "delete") }) as Job
    };
    let mut variants = [("without-user", false), ("with-user", true)].map(|(name, with_user)| Variant {
        name,
        with_user,
        written: 0,
        targets: (0..TARGETS).map(|_| rng.id()).collect(),
        slot: 0,
    });
    for variant in &mut variants {
        let jobs: Vec<Job> = variant.targets.clone().into_iter().map(|key| set(key, variant.next_data())).collect();
        untimed(runtime, waits, jobs);
    }

    let mut group = criterion.benchmark_group("index-cost");
    group.throughput(Throughput::Elements(1));
    if waits {
        group.sampling_mode(SamplingMode::Flat);
    }
    let id = |op: &str, variant: &Variant| BenchmarkId::new(format!("{}/{op}", spec.name), variant.name);
    for variant in &mut variants {
        group.bench_function(id("set", variant), |b| {
            b.iter_custom(|iters| {
                let mut written = Vec::new();
                let elapsed = timed(runtime, waits, iters, || {
                    let key = rng.id();
                    written.push(key.clone());
                    set(key, variant.next_data())
                });
                // The new sessions go again, untimed, so the store does not grow.
                untimed(runtime, waits, written.into_iter().map(delete));
                elapsed
            })
        });
    }
    for variant in &mut variants {
        group.bench_function(id("update", variant), |b| {
            b.iter_custom(|iters| {
                let mut i = 0u64;
                timed(runtime, waits, iters, || {
                    i += 1;
                    let slot = variant.next_slot();
                    let (store, key) = (Arc::clone(&store), variant.targets[slot].clone());
                    let mut changes = Changes::new();
                    changes.set("visits", Value::from(i));
                    Box::pin(async move {
                        let outcome = ok(store.update(&key, &changes, expires_at).await, "update");
                        assert_eq!(outcome, UpdateOutcome::Applied, "a benchmark session went missing");
                    }) as Job
                })
            })
        });
    }
    for variant in &mut variants {
        group.bench_function(id("rename", variant), |b| {
            b.iter_custom(|iters| {
                timed(runtime, waits, iters, || {
                    let slot = variant.next_slot();
                    let (from, to) = (variant.targets[slot].clone(), rng.id());
                    variant.targets[slot] = to.clone();
                    let store = Arc::clone(&store);
                    Box::pin(async move {
                        let outcome = ok(store.rename(&from, &to, &Changes::new(), expires_at).await, "rename");
                        assert_eq!(outcome, UpdateOutcome::Applied, "a benchmark session went missing");
                    }) as Job
                })
            })
        });
    }
    for variant in &mut variants {
        group.bench_function(id("delete", variant), |b| {
            b.iter_custom(|iters| {
                let doomed: Vec<StoreKey> = (0..iters).map(|_| rng.id()).collect();
                untimed(runtime, waits, doomed.iter().map(|key| set(key.clone(), variant.next_data())));
                let mut doomed = doomed.into_iter();
                timed(runtime, waits, iters, || match doomed.next() {
                    Some(key) => delete(key),
                    None => Box::pin(async {}),
                })
            })
        });
    }
    group.finish();
}
