//! Store operations, one at a time: `get`, `set`, `update`, `touch` and
//! `delete` on every store, with payloads of 100 B, 4 KiB and 64 KiB, while
//! the store holds 1,000 or 100,000 live sessions (and a million for the
//! memory store); `delete_expired` when 1% of 100,000 sessions expired; and
//! what the user index costs ([`index_cost`]); and, next to the file
//! store's `get`, an open, read and close of the same files
//! ([`file_read_floor`]).
//!
//! # How an operation is timed
//!
//! Each criterion sample runs a batch of operations inside one `block_on` of
//! a current-thread tokio runtime and times the whole batch, so the runtime's
//! entry and exit are paid once per batch, not per operation. Each operation
//! is a call through `Arc<dyn SessionStore>`, as the layer makes it,
//! boxed future included.
//!
//! # What the store holds
//!
//! Every store is filled with sessions of 100 B (the population). Operations
//! on 100 B payloads go to all of them, in an order unrelated to the order
//! they were written in; operations on 4 KiB
//! and 64 KiB payloads go to 1,000 of them, first rewritten to that size
//! (a million 64 KiB sessions would not fit in this machine's memory).
//!
//! The `index-cost` group ([`index_cost`]) compares each write on sessions
//! with and without a user.

use std::hint::black_box;
use std::time::{Duration, Instant, SystemTime};

use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput};
use sessionkit::{Changes, SessionStore, StoreError, StoreKey, UpdateOutcome};
use sessionkit_benches::fixtures::{self, BACKGROUND_BYTES, PAYLOADS, Rng, payload};
use sessionkit_benches::registry::{self, StoreSpec};
use sessionkit_benches::results::RunStart;
use sessionkit_benches::settings;
use tokio::runtime::Runtime;

// In a subdirectory, so that cargo does not take it for a bench of its own.
#[path = "stores/index_cost.rs"]
mod index_cost;

/// Sessions rewritten to a large payload for the 4 KiB and 64 KiB runs.
const LARGE_TARGETS: usize = 1_000;

fn main() {
    RunStart::record("stores");
    let (warm_up, measurement, samples) = settings::timing();
    let mut criterion = Criterion::default()
        .warm_up_time(warm_up)
        .measurement_time(measurement)
        .sample_size(samples)
        .configure_from_args();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime");
    for spec in registry::selected() {
        for population in settings::populations(spec.name) {
            operations(&mut criterion, &runtime, spec, population);
        }
        delete_expired(&mut criterion, &runtime, spec);
        index_cost::measure(&mut criterion, &runtime, spec);
    }
    criterion.final_summary();
}

/// `1_000` → `1k`, `100_000` → `100k`, `1_000_000` → `1M`.
fn count_label(count: usize) -> String {
    match count {
        n if n >= 1_000_000 && n.is_multiple_of(1_000_000) => format!("{}M", n / 1_000_000),
        n if n >= 1_000 && n.is_multiple_of(1_000) => format!("{}k", n / 1_000),
        n => n.to_string(),
    }
}

fn ok<T>(result: Result<T, StoreError>, what: &str) -> T {
    match result {
        Ok(value) => value,
        Err(err) => panic!("{what} failed: {err} ({err:?})"),
    }
}

/// The five single-session operations at every payload size, on a store
/// holding `population` sessions.
fn operations(criterion: &mut Criterion, runtime: &Runtime, spec: &'static StoreSpec, population: usize) {
    let Some(open) = ok(runtime.block_on(spec.open()), "opening the store") else {
        return;
    };
    // Called as the layer calls it: through `&dyn SessionStore`.
    let store: &dyn SessionStore = &*open.store;
    let mut rng = Rng::new(population as u64);
    let started = Instant::now();
    let mut ids = ok(runtime.block_on(fixtures::populate(&open.store, spec.waits, population, &mut rng)), "populating");
    // Visit sessions in another order than they were written in: requests
    // come for any session, not for neighbours in memory.
    rng.shuffle(&mut ids);
    eprintln!("sessionkit-benches: {} filled with {population} sessions in {:.1?}", spec.name, started.elapsed());
    let pop = count_label(population);
    for (label, bytes) in PAYLOADS {
        let data = payload(bytes);
        let targets: &[StoreKey] = if bytes == BACKGROUND_BYTES {
            &ids
        } else {
            let targets = &ids[..LARGE_TARGETS.min(ids.len())];
            ok(
                runtime.block_on(fixtures::fill(&open.store, spec.waits, targets, &data, fixtures::expiry())),
                "resizing",
            );
            targets
        };
        let bench_id = BenchmarkId::new(format!("{}/{label}", spec.name), &pop);
        let mut next = {
            let mut index = 0;
            move || {
                index = (index + 1) % targets.len();
                &targets[index]
            }
        };

        let mut group = group_for(criterion, "get", spec);
        group.bench_function(bench_id.clone(), |b| {
            b.iter_custom(|iters| {
                runtime.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        black_box(ok(store.get(black_box(next())).await, "get"));
                    }
                    start.elapsed()
                })
            })
        });
        group.finish();
        if spec.name == "file" && bytes == BACKGROUND_BYTES {
            file_read_floor(criterion, runtime, spec, &open, &pop, &mut next);
        }

        let mut group = group_for(criterion, "set", spec);
        let expires_at = fixtures::expiry();
        group.bench_function(bench_id.clone(), |b| {
            b.iter_custom(|iters| {
                runtime.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        ok(store.set(black_box(next()), &data, expires_at).await, "set");
                    }
                    start.elapsed()
                })
            })
        });
        group.finish();

        let mut changes = Changes::new();
        changes.set("visits", serde_json::Value::from(43));
        let mut group = group_for(criterion, "update", spec);
        group.bench_function(bench_id.clone(), |b| {
            b.iter_custom(|iters| {
                runtime.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        let outcome = ok(store.update(black_box(next()), &changes, expires_at).await, "update");
                        assert_eq!(outcome, UpdateOutcome::Applied, "a benchmark session went missing");
                    }
                    start.elapsed()
                })
            })
        });
        group.finish();

        // Two alternating expiries, so that every touch really moves one.
        let later = expires_at.map(|at| at + Duration::from_secs(1));
        let mut group = group_for(criterion, "touch", spec);
        group.bench_function(bench_id.clone(), |b| {
            b.iter_custom(|iters| {
                runtime.block_on(async {
                    let start = Instant::now();
                    for i in 0..iters {
                        let at = if i % 2 == 0 { later } else { expires_at };
                        let found = ok(store.touch(black_box(next()), at).await, "touch");
                        assert!(found, "a benchmark session went missing");
                    }
                    start.elapsed()
                })
            })
        });
        group.finish();

        // Deleting needs something to delete: each batch first writes as
        // many fresh sessions as it will delete, untimed.
        let mut group = group_for(criterion, "delete", spec);
        group.bench_function(bench_id, |b| {
            b.iter_custom(|iters| {
                let doomed: Vec<StoreKey> = (0..iters).map(|_| rng.id()).collect();
                runtime.block_on(async {
                    ok(
                        fixtures::fill(&open.store, spec.waits, &doomed, &data, expires_at).await,
                        "writing sessions to delete",
                    );
                    let start = Instant::now();
                    for id in &doomed {
                        ok(store.delete(black_box(id)).await, "delete");
                    }
                    start.elapsed()
                })
            })
        });
        group.finish();
    }
}

/// What the file store's `get` is measured against: the floor under any
/// read of a session file, an open, read and close of that file
/// (`std::fs::read` of its path, on the same task), session after session
/// as `get` visits them.
fn file_read_floor<'k>(
    criterion: &mut Criterion,
    runtime: &Runtime,
    spec: &StoreSpec,
    open: &registry::OpenStore,
    pop: &str,
    next: &mut impl FnMut() -> &'k StoreKey,
) {
    // The file layout FileStore documents: `<store key>.json`.
    let dir = open.dir().join("sessions");
    let mut group = group_for(criterion, "file-read-floor", spec);
    group.bench_function(BenchmarkId::new("open-read-close/100B", pop), |b| {
        b.iter_custom(|iters| {
            runtime.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    let path = dir.join(format!("{}.json", next().as_str()));
                    black_box(std::fs::read(black_box(path)).expect("reading a session file"));
                }
                start.elapsed()
            })
        })
    });
    group.finish();
}

/// A criterion group for one operation, reporting operations per second.
fn group_for<'c>(
    criterion: &'c mut Criterion,
    op: &str,
    spec: &StoreSpec,
) -> criterion::BenchmarkGroup<'c, criterion::measurement::WallTime> {
    let mut group = criterion.benchmark_group(op);
    group.throughput(Throughput::Elements(1));
    if spec.waits {
        // Up to milliseconds per operation: linear sampling would ask for
        // more iterations than the measurement time holds.
        group.sampling_mode(SamplingMode::Flat);
    }
    group
}

/// `delete_expired` on a store of 100,000 sessions of which 1% expired.
fn delete_expired(criterion: &mut Criterion, runtime: &Runtime, spec: &'static StoreSpec) {
    let Some(open) = ok(runtime.block_on(spec.open()), "opening the store") else {
        return;
    };
    let store: &dyn SessionStore = &*open.store;
    let population = settings::large_population();
    let expired = population / 100;
    let mut rng = Rng::new(7);
    ok(runtime.block_on(fixtures::populate(&open.store, spec.waits, population - expired, &mut rng)), "populating");
    let data = payload(BACKGROUND_BYTES);
    let mut group = criterion.benchmark_group("delete_expired");
    group.throughput(Throughput::Elements(expired as u64));
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(10);
    let id = BenchmarkId::new(spec.name, format!("{}-of-{}", count_label(expired), count_label(population)));
    group.bench_function(id, |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let doomed: Vec<StoreKey> = (0..expired).map(|_| rng.id()).collect();
                let past = Some(SystemTime::now() - Duration::from_secs(1));
                total += runtime.block_on(async {
                    ok(fixtures::fill(&open.store, spec.waits, &doomed, &data, past).await, "writing expired sessions");
                    let start = Instant::now();
                    let removed = ok(store.delete_expired().await, "delete_expired");
                    let elapsed = start.elapsed();
                    // Redis drops expired keys itself: nothing is left to sweep.
                    let expected = if spec.expires_itself { 0 } else { expired as u64 };
                    assert_eq!(removed, expected, "{}: delete_expired removed the wrong count", spec.name);
                    elapsed
                });
            }
            total
        })
    });
    group.finish();
}
