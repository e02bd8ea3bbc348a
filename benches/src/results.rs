//! The result files of the benchmarks criterion does not run (HTTP load,
//! memory use) and of every run's start, as JSON under
//! [`settings::results_dir`]. The report reads them back.

use std::path::PathBuf;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::machine::{self, Machine};
use crate::settings;

/// When and under what load one benchmark binary started.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunStart {
    /// The benchmark binary (`stores`, `middleware`, ...).
    pub bench: String,
    /// Seconds since the Unix epoch.
    pub started_unix: u64,
    /// The 1-, 5- and 15-minute load averages when it started.
    pub load: [f64; 3],
    /// Whether it was a quick (smoke) run.
    pub quick: bool,
    /// The machine it ran on.
    pub machine: Machine,
}

impl RunStart {
    /// Records that `bench` starts now, in `run-<bench>.json`, and says so on
    /// stderr. A failure to write is reported, not fatal: the numbers
    /// themselves still land in criterion's files.
    ///
    /// A run narrowed to some stores (`SESSIONKIT_BENCH_STORES`) adds to the
    /// last full run: it keeps that run's start, so the report still reads
    /// the full run's results along with the new ones.
    pub fn record(bench: &str) -> Self {
        let partial = std::env::var("SESSIONKIT_BENCH_STORES").is_ok_and(|stores| !stores.trim().is_empty());
        if partial && let Some(previous) = read::<Self>(&format!("run-{bench}")) {
            eprintln!(
                "sessionkit-benches: {bench}: a run narrowed to some stores, added to the run of {}",
                previous.started_unix
            );
            return previous;
        }
        let start = Self {
            bench: bench.to_owned(),
            started_unix: machine::unix_now(),
            load: machine::load_average(),
            quick: settings::quick(),
            machine: Machine::current(),
        };
        eprintln!(
            "sessionkit-benches: {bench} starting at load {:.2} {:.2} {:.2}{}",
            start.load[0],
            start.load[1],
            start.load[2],
            if start.quick { " (quick mode)" } else { "" }
        );
        write(&format!("run-{bench}"), &start);
        start
    }
}

/// Requests per second of one middleware variant.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Variant {
    /// Short id (`bare`, `sessionkit-memory`, `sessionkit-memory-one-session`, ...).
    pub id: String,
    /// What it is, for the report.
    pub label: String,
    /// The stack measured, whatever the load's shape (`bare`,
    /// `sessionkit-memory`, `tower-sessions-redis`, ...).
    #[serde(default)]
    pub stack: String,
    /// How the load used sessions: `per-connection` (each connection its
    /// own session, counting up), `one-session` (every connection on one
    /// session) or `read-only` (each connection its own session, read and
    /// never written after the first request).
    #[serde(default)]
    pub shape: String,
    /// The Redis server's work per request, for a stack on Redis.
    #[serde(default)]
    pub redis: Option<crate::redis_stats::Work>,
    /// Requests per second in each round.
    pub rounds: Vec<f64>,
    /// The median of `rounds`.
    pub median: f64,
    /// Responses that were not 200 or broke the counter's sequence.
    pub errors: u64,
}

/// The middleware benchmark's output.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Middleware {
    /// Keep-alive connections the load generator held open.
    pub connections: usize,
    /// Seconds each variant was driven per round.
    pub round_secs: f64,
    /// The server's worker threads.
    pub server_threads: usize,
    /// The variants, in the order they were listed.
    pub variants: Vec<Variant>,
}

/// The memory benchmark's output.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Memory {
    /// Sessions stored.
    pub sessions: usize,
    /// The JSON size of each session's data.
    pub payload_bytes: usize,
    /// Resident set size before the store was filled.
    pub rss_before: u64,
    /// Resident set size with every session stored.
    pub rss_after: u64,
    /// The same measurement for tower-sessions' `MemoryStore`, for scale.
    pub peer_rss_growth: Option<u64>,
    /// Nanoseconds per dependent load at random addresses of a 32 MiB
    /// buffer: what one cache miss costs on this machine.
    pub random_load_ns: Option<f64>,
}

fn path(name: &str) -> PathBuf {
    settings::results_dir().join(format!("{name}.json"))
}

/// Writes `value` as `<results_dir>/<name>.json`.
pub fn write<T: Serialize>(name: &str, value: &T) {
    let path = path(name);
    let written = std::fs::create_dir_all(settings::results_dir())
        .and_then(|()| serde_json::to_vec_pretty(value).map_err(std::io::Error::other))
        .and_then(|json| std::fs::write(&path, json));
    if let Err(err) = written {
        eprintln!("sessionkit-benches: could not write {}: {err}", path.display());
    }
}

/// Reads `<results_dir>/<name>.json`, if a run wrote it.
pub fn read<T: DeserializeOwned>(name: &str) -> Option<T> {
    let bytes = std::fs::read(path(name)).ok()?;
    serde_json::from_slice(&bytes).ok()
}
