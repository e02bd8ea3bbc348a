//! What the user index costs: `set`, `update`, `rename` and `delete` of a
//! session bound to a user (`with-user`, which the index must follow)
//! against the same operation on a session without one (`without-user`),
//! on every store: `index-cost/<store>/<op>/{with,without}-user`.
//!
//! The store holds [`settings::large_population`] sessions, half of them
//! owned by users of four sessions each. Both kinds of session have the
//! same size: the ones without a user carry a key of the same length in
//! place of the user's, so the difference between the two is the index.
//!
//! Operations run [`IN_FLIGHT`] at a time, as concurrent requests do: on the
//! durable stores a lone write waits for its own `fsync`, which would hide
//! the index's cost; with group commit the cost per operation is the
//! engine's work, index included.

use std::cell::RefCell;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use criterion::{BenchmarkId, Criterion};
use serde_json::Value;
use sessionkit::{Changes, SessionMap, SessionStore, StoreKey, UpdateOutcome, reserved};
use sessionkit_benches::fixtures::{self, BACKGROUND_BYTES, Rng, payload};
use sessionkit_benches::registry::StoreSpec;
use sessionkit_benches::settings;
use tokio::runtime::Runtime;
use tokio::task::JoinSet;

use super::{group_for, ok};

/// Operations in flight at once.
const IN_FLIGHT: usize = 64;
/// Sessions of each kind the timed operations go to.
const TARGETS: usize = 1_000;
/// Sessions per user in the population.
const PER_USER: usize = 4;

/// A session's data: the background payload, with a user or with a
/// non-reserved key of the same length in its place.
fn data(owned: bool, n: usize) -> SessionMap {
    let mut data = payload(BACKGROUND_BYTES);
    let name = Value::from(format!("user-{:06}", n / PER_USER));
    if owned {
        data.insert(reserved::USER.to_owned(), name);
    } else {
        data.insert(format!("{:_<1$}", "unowned", reserved::USER.len()), name);
    }
    data
}

/// `count` fresh sessions, with users (four sessions each, numbered from
/// `first`) or without.
fn sessions(rng: &mut Rng, owned: bool, first: usize, count: usize) -> Vec<(StoreKey, SessionMap)> {
    (first..first + count).map(|n| (rng.id(), data(owned, n))).collect()
}

/// Writes `sessions`, [`IN_FLIGHT`] at a time.
async fn write(store: &Arc<dyn SessionStore>, sessions: &[(StoreKey, SessionMap)], expires_at: Option<SystemTime>) {
    in_flight(
        sessions.len() as u64,
        |i| {
            let (store, (key, data)) = (Arc::clone(store), sessions[i as usize].clone());
            async move { ok(store.set(&key, &data, expires_at).await, "writing sessions") }
        },
        drop,
    )
    .await;
}

fn label(owned: bool) -> &'static str {
    if owned { "with-user" } else { "without-user" }
}

/// Runs `iters` operations, [`IN_FLIGHT`] at a time; `op(i)` is the i-th,
/// and `done` hears each answer once its group of [`IN_FLIGHT`] is over
/// (before the next group starts). Returns the time taken.
async fn in_flight<T, F>(iters: u64, mut op: impl FnMut(u64) -> F, mut done: impl FnMut(T)) -> Duration
where
    T: Send + 'static,
    F: Future<Output = T> + Send + 'static,
{
    let start = Instant::now();
    let mut next = 0;
    while next < iters {
        let chunk = (iters - next).min(IN_FLIGHT as u64);
        let mut tasks = JoinSet::new();
        for i in next..next + chunk {
            tasks.spawn(op(i));
        }
        tasks.join_all().await.into_iter().for_each(&mut done);
        next += chunk;
    }
    start.elapsed()
}

/// The four operations, with and without a user, on a store holding a
/// large population.
pub fn index_cost(criterion: &mut Criterion, runtime: &Runtime, spec: &'static StoreSpec) {
    let Some(open) = ok(runtime.block_on(spec.open()), "opening the store") else {
        return;
    };
    let store: Arc<dyn SessionStore> = Arc::clone(&open.store);
    let mut rng = Rng::new(11);
    let population = settings::large_population();
    let expires_at = fixtures::expiry();
    let mut targets: [Vec<(StoreKey, SessionMap)>; 2] = [Vec::new(), Vec::new()];
    for (kind, owned) in [(0, true), (1, false)] {
        let sessions = sessions(&mut rng, owned, 0, population / 2);
        runtime.block_on(write(&store, &sessions, expires_at));
        targets[kind] = sessions[..TARGETS.min(sessions.len())].to_vec();
    }

    let mut group = group_for(criterion, "index-cost", spec);
    for (kind, owned) in [(0, true), (1, false)] {
        let targets = &targets[kind];
        let id = BenchmarkId::new(format!("{}/set", spec.name), label(owned));
        group.bench_function(id, |b| {
            b.iter_custom(|iters| {
                runtime.block_on(in_flight(
                    iters,
                    |i| {
                        let (store, (key, data)) = (Arc::clone(&store), targets[i as usize % targets.len()].clone());
                        async move { ok(store.set(&key, &data, expires_at).await, "set") }
                    },
                    drop,
                ))
            })
        });
    }
    for (kind, owned) in [(0, true), (1, false)] {
        let targets = &targets[kind];
        let mut changes = Changes::new();
        changes.set("visits", Value::from(43));
        let id = BenchmarkId::new(format!("{}/update", spec.name), label(owned));
        group.bench_function(id, |b| {
            b.iter_custom(|iters| {
                runtime.block_on(in_flight(
                    iters,
                    |i| {
                        let (store, key, changes) =
                            (Arc::clone(&store), targets[i as usize % targets.len()].0.clone(), changes.clone());
                        async move {
                            let outcome = ok(store.update(&key, &changes, expires_at).await, "update");
                            assert_eq!(outcome, UpdateOutcome::Applied, "a benchmark session went missing");
                        }
                    },
                    drop,
                ))
            })
        });
    }
    for (kind, owned) in [(0, true), (1, false)] {
        // Each rename moves a target to a fresh key, which the next rename
        // of that target starts from once its group of renames is over.
        let keys: RefCell<Vec<StoreKey>> = RefCell::new(targets[kind].iter().map(|(key, _)| key.clone()).collect());
        let id = BenchmarkId::new(format!("{}/rename", spec.name), label(owned));
        group.bench_function(id, |b| {
            b.iter_custom(|iters| {
                let count = keys.borrow().len();
                let rename = |i: u64| {
                    let slot = i as usize % count;
                    let (store, from, to) = (Arc::clone(&store), keys.borrow()[slot].clone(), rng.id());
                    async move {
                        let outcome = ok(store.rename(&from, &to, &Changes::new(), expires_at).await, "rename");
                        assert_eq!(outcome, UpdateOutcome::Applied, "a benchmark session went missing");
                        (slot, to)
                    }
                };
                runtime.block_on(in_flight(iters, rename, |(slot, to)| keys.borrow_mut()[slot] = to))
            })
        });
    }
    for owned in [true, false] {
        let id = BenchmarkId::new(format!("{}/delete", spec.name), label(owned));
        group.bench_function(id, |b| {
            b.iter_custom(|iters| {
                // Something to delete, written untimed: fresh sessions of
                // the kind measured.
                let doomed = sessions(&mut rng, owned, population, iters as usize);
                runtime.block_on(write(&store, &doomed, expires_at));
                runtime.block_on(in_flight(
                    iters,
                    |i| {
                        let (store, key) = (Arc::clone(&store), doomed[i as usize].0.clone());
                        async move { ok(store.delete(&key).await, "delete") }
                    },
                    drop,
                ))
            })
        });
    }
    group.finish();
}
