//! Run settings: quick mode and where results go.
//!
//! `SESSIONKIT_BENCH_QUICK=1` shrinks every benchmark (smaller populations,
//! short measurements) so that a smoke run finishes in a few minutes; its
//! numbers are not for publishing.

use std::path::PathBuf;
use std::time::Duration;

/// Whether `SESSIONKIT_BENCH_QUICK` asks for a smoke run.
pub fn quick() -> bool {
    std::env::var("SESSIONKIT_BENCH_QUICK").is_ok_and(|value| !value.is_empty() && value != "0")
}

/// Cargo's target directory, where criterion writes too.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../target")),
    }
}

/// Where criterion keeps its estimates.
pub fn criterion_dir() -> PathBuf {
    target_dir().join("criterion")
}

/// Where the benchmarks that criterion does not run (load, memory) write
/// their results.
pub fn results_dir() -> PathBuf {
    target_dir().join("sessionkit-bench")
}

/// The numbers of live sessions a store holds while one operation is
/// measured. The memory store is also measured at a million.
pub fn populations(store: &str) -> Vec<usize> {
    match (quick(), store) {
        (true, _) => vec![1_000],
        (false, "memory") => vec![1_000, 100_000, 1_000_000],
        (false, _) => vec![1_000, 100_000],
    }
}

/// The population the concurrency and sweep benchmarks run against.
pub fn large_population() -> usize {
    if quick() { 10_000 } else { 100_000 }
}

/// Criterion's timing for one benchmark: (warm-up, measurement, samples).
pub fn timing() -> (Duration, Duration, usize) {
    if quick() {
        (Duration::from_millis(100), Duration::from_millis(300), 10)
    } else {
        (Duration::from_millis(500), Duration::from_millis(1500), 30)
    }
}
