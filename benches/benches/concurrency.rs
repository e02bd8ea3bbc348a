//! Throughput under concurrency: 1, 8 and 64 tokio tasks sharing one store
//! on a multi-thread runtime with one worker per core, each task running
//!
//! - `concurrent-mix`: a realistic mix, 80% `get`, 15% `update`, 5% new
//!   session (`set` under a fresh id), on random sessions of a store
//!   holding 100,000;
//! - `concurrent-set`: only `set`, overwriting random sessions: the
//!   durable stores' group commit at work, one writer against 64.
//!
//! A criterion iteration is one operation: each sample splits its
//! iterations among the tasks and times them all, so the reported time is
//! wall time per operation and the throughput is operations per second
//! across all tasks. Payloads are 100 B.

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput};
use sessionkit::{Changes, SessionMap, SessionStore, StoreError, StoreKey, UpdateOutcome};
use sessionkit_benches::fixtures::{self, BACKGROUND_BYTES, Rng, payload};
use sessionkit_benches::registry::{self, StoreSpec};
use sessionkit_benches::results::RunStart;
use sessionkit_benches::settings;
use tokio::runtime::Runtime;

/// The numbers of concurrent tasks.
const TASKS: [usize; 3] = [1, 8, 64];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Workload {
    /// 80% get, 15% update, 5% new session.
    Mix,
    /// Overwrite random sessions.
    Set,
}

impl Workload {
    fn group(self) -> &'static str {
        match self {
            Workload::Mix => "concurrent-mix",
            Workload::Set => "concurrent-set",
        }
    }
}

fn ok<T>(result: Result<T, StoreError>, what: &str) -> T {
    match result {
        Ok(value) => value,
        Err(err) => panic!("{what} failed: {err} ({err:?})"),
    }
}

fn main() {
    RunStart::record("concurrency");
    let (warm_up, measurement, _) = settings::timing();
    let mut criterion = Criterion::default()
        .warm_up_time(warm_up)
        .measurement_time(measurement * 2)
        .sample_size(10)
        .configure_from_args();
    let workers = std::thread::available_parallelism().map_or(2, usize::from);
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(workers).enable_all().build().expect("a runtime");
    for spec in registry::selected() {
        store(&mut criterion, &runtime, spec);
    }
    criterion.final_summary();
}

fn store(criterion: &mut Criterion, runtime: &Runtime, spec: &'static StoreSpec) {
    let Some(open) = ok(runtime.block_on(spec.open()), "opening the store") else {
        return;
    };
    let population = settings::large_population();
    let ids: Arc<[StoreKey]> =
        ok(runtime.block_on(fixtures::populate(&open.store, spec.waits, population, &mut Rng::new(3))), "populating")
            .into();
    let seeds = Arc::new(AtomicU64::new(1));
    for workload in [Workload::Mix, Workload::Set] {
        let mut group = criterion.benchmark_group(workload.group());
        group.throughput(Throughput::Elements(1));
        group.sampling_mode(SamplingMode::Flat);
        for tasks in TASKS {
            group.bench_function(BenchmarkId::new(spec.name, tasks), |b| {
                b.iter_custom(|iters| runtime.block_on(run(&open.store, &ids, workload, tasks, iters, &seeds)))
            });
        }
        group.finish();
    }
}

/// Runs `iters` operations split among `tasks` tasks; returns the wall time.
async fn run(
    store: &Arc<dyn SessionStore>,
    ids: &Arc<[StoreKey]>,
    workload: Workload,
    tasks: usize,
    iters: u64,
    seeds: &AtomicU64,
) -> Duration {
    let data = Arc::new(payload(BACKGROUND_BYTES));
    let start = Instant::now();
    let mut running = tokio::task::JoinSet::new();
    for task in 0..tasks as u64 {
        let share = iters / tasks as u64 + u64::from(task < iters % tasks as u64);
        let mut rng = Rng::new(seeds.fetch_add(1, Ordering::Relaxed));
        let (store, ids, data) = (Arc::clone(store), Arc::clone(ids), Arc::clone(&data));
        running.spawn(async move {
            for _ in 0..share {
                operation(&*store, &ids, &data, workload, &mut rng).await;
            }
        });
    }
    while let Some(done) = running.join_next().await {
        if let Err(panicked) = done {
            std::panic::resume_unwind(panicked.into_panic());
        }
    }
    start.elapsed()
}

async fn operation(store: &dyn SessionStore, ids: &[StoreKey], data: &SessionMap, workload: Workload, rng: &mut Rng) {
    let id = &ids[rng.below(ids.len())];
    let expires_at = fixtures::expiry();
    match (workload, rng.below(100)) {
        (Workload::Set, _) => ok(store.set(id, data, expires_at).await, "set"),
        (Workload::Mix, 0..80) => {
            black_box(ok(store.get(id).await, "get"));
        }
        (Workload::Mix, 80..95) => {
            let mut changes = Changes::new();
            changes.set("visits", serde_json::Value::from(rng.below(1_000)));
            let outcome = ok(store.update(id, &changes, expires_at).await, "update");
            assert_eq!(outcome, UpdateOutcome::Applied, "a benchmark session went missing");
        }
        (Workload::Mix, _) => ok(store.set(&rng.id(), data, expires_at).await, "set"),
    }
}
