//! `sessionkit migrate`: how fast the CLI moves sessions from the embedded
//! redb store (the demo's default) to each other store.
//!
//! The source is a redb file holding a population of 100 B sessions, half
//! of them bound to a user, all with an expiry a day away. Each criterion
//! iteration is one whole `migrate` run, as a user would start it
//! (`sessionkit_cli::migrate::run` with the default batch and parallelism):
//! the keying check, every page scanned from redb, every session written to
//! the destination. The destination is opened fresh once; later iterations
//! write the same sessions again (a second run of a migration, which
//! replaces them), which costs every destination the same as the first.
//!
//! The result is sessions copied per second, per destination.

use std::num::NonZeroUsize;
use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput};
use serde_json::Value;
use sessionkit::{SessionId, SessionMap, SessionStore, StoreKey, reserved};
use sessionkit_benches::fixtures;
use sessionkit_benches::registry::{self, StoreSpec};
use sessionkit_benches::results::RunStart;
use sessionkit_benches::settings;
use sessionkit_cli::args::MigrateArgs;
use sessionkit_stores::RedbStore;
use tokio::runtime::Runtime;

/// Sessions in the source.
fn population() -> usize {
    if settings::quick() { 1_000 } else { 10_000 }
}

fn main() {
    RunStart::record("migrate");
    let mut criterion = Criterion::default()
        .warm_up_time(Duration::from_millis(1))
        .measurement_time(Duration::from_secs(if settings::quick() { 1 } else { 10 }))
        .sample_size(10)
        .configure_from_args();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a tokio runtime");
    let dir = match std::env::var_os("SESSIONKIT_BENCH_DIR") {
        Some(base) => tempfile::tempdir_in(base),
        None => tempfile::tempdir(),
    }
    .expect("a directory for the migration's source");
    let source = dir.path().join("source.redb");
    let count = population();
    runtime.block_on(fill_source(&source, count));
    let from = format!("redb:{}", source.display());
    for spec in registry::selected() {
        if spec.name == "memory" {
            // A memory store lives in one process: the CLI's copy would be
            // gone when the command exits.
            continue;
        }
        migrate_to(&mut criterion, &runtime, spec, &from, dir.path(), count);
    }
    criterion.final_summary();
}

/// Writes `count` sessions to a new redb file at `path`, and closes it (the
/// CLI opens it again, and redb allows one opener).
async fn fill_source(path: &Path, count: usize) {
    let store = RedbStore::open(path).await.expect("the migration's source store");
    let expires_at = fixtures::expiry();
    for i in 0..count {
        let mut data: SessionMap = fixtures::payload(fixtures::BACKGROUND_BYTES);
        if i % 2 == 0 {
            data.insert(reserved::USER.to_owned(), Value::from(format!("user-{}", i % 1_000)));
        }
        let key = StoreKey::hashed(&SessionId::generate());
        store.set(&key, &data, expires_at).await.expect("writing the migration's source");
    }
}

fn migrate_to(
    criterion: &mut Criterion,
    runtime: &Runtime,
    spec: &'static StoreSpec,
    from: &str,
    dir: &Path,
    count: usize,
) {
    let (to, _open) = match spec.name {
        // Embedded stores are named by a path of this run's own.
        "file" => (format!("file:{}", dir.join("to-file").display()), None),
        "sqlite" => (format!("sqlite:{}", dir.join("to.db").display()), None),
        "redb" => (format!("redb:{}", dir.join("to.redb").display()), None),
        // A server's store: the registry's fresh one, kept open (with its
        // server) while the CLI writes to it through its URL.
        _ => match runtime.block_on(spec.open()) {
            Ok(Some(open)) => match open.url.clone() {
                Some(url) => (url, Some(open)),
                None => {
                    eprintln!("sessionkit-benches: migrate: the {} store has no URL; skipped", spec.name);
                    return;
                }
            },
            Ok(None) => return,
            Err(err) => panic!("opening the {} store failed: {err} ({err:?})", spec.name),
        },
    };
    let mut group = criterion.benchmark_group("migrate");
    group.sampling_mode(SamplingMode::Flat).throughput(Throughput::Elements(count as u64));
    group.bench_function(BenchmarkId::new(format!("redb-to-{}", spec.name), count), |b| {
        b.iter_custom(|iters| {
            runtime.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let args = MigrateArgs {
                        from: from.to_owned(),
                        to: to.clone(),
                        batch: NonZeroUsize::new(1_000).expect("1,000 is not zero"),
                        parallel: NonZeroUsize::new(32).expect("32 is not zero"),
                        resume: None,
                        ignore_keying: false,
                    };
                    let mut report = Vec::new();
                    let start = Instant::now();
                    if let Err(err) = sessionkit_cli::migrate::run(args, &mut report).await {
                        panic!("migrate to {} failed: {err}", spec.name);
                    }
                    total += start.elapsed();
                    let report = String::from_utf8_lossy(&report);
                    assert!(report.contains(&format!("copied {count} sessions")), "{report}");
                }
                total
            })
        })
    });
    group.finish();
}
