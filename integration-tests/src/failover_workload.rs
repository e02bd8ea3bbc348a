//! The write load of the failover tests: concurrent writers through one
//! `RedisStore`, each adding a numbered field to its own session as fast as
//! the store acknowledges, remembering which writes were acknowledged and
//! when each attempt failed or succeeded. After the failover, everything is
//! read back: an acknowledged field that is missing is a lost write.
//!
//! Each write adds a new field (`w1`, `w2`, ...) rather than overwriting one
//! counter, so that a write lost before the failover is still visible as
//! missing after later writes succeed.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use serde_json::json;
use sessionkit::{Changes, SessionMap, SessionStore, StoreKey, UpdateOutcome};
use sessionkit_stores::RedisStore;
use tokio::task::JoinHandle;

/// What one writer saw.
#[derive(Debug, Default)]
struct WriterLog {
    acknowledged: BTreeSet<u64>,
    /// When each failed attempt ended.
    failures: Vec<Instant>,
    /// When each acknowledged write ended, with how long it took.
    successes: Vec<(Instant, Duration)>,
}

/// Writers running against a store.
pub struct Writers {
    store: Arc<RedisStore>,
    ids: Vec<StoreKey>,
    stop: Arc<AtomicBool>,
    successes: Arc<Vec<AtomicU64>>,
    handles: Vec<JoinHandle<WriterLog>>,
}

impl Writers {
    /// Creates one session per id and starts a writer on each.
    pub async fn start(store: Arc<RedisStore>, ids: Vec<StoreKey>) -> Self {
        for id in &ids {
            // A write that waits for a replica can time out on a machine
            // busy with other tests; the setup tries again.
            let mut attempts = 0;
            while let Err(err) = store.set(id, &SessionMap::new(), Some(in_an_hour())).await {
                attempts += 1;
                assert!(attempts < 20, "cannot create a writer's session: {err:?}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        let stop = Arc::new(AtomicBool::new(false));
        let successes = Arc::new(ids.iter().map(|_| AtomicU64::new(0)).collect::<Vec<_>>());
        let handles = ids
            .iter()
            .enumerate()
            .map(|(writer, id)| {
                let (store, id, stop, successes) = (store.clone(), id.clone(), stop.clone(), successes.clone());
                tokio::spawn(async move {
                    let mut log = WriterLog::default();
                    let mut n = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        n += 1;
                        let mut changes = Changes::new();
                        changes.set(format!("w{n}"), json!(n));
                        let started = Instant::now();
                        let result = store.update(&id, &changes, Some(in_an_hour())).await;
                        let ended = Instant::now();
                        match result {
                            Ok(UpdateOutcome::Applied) => {
                                log.acknowledged.insert(n);
                                log.successes.push((ended, ended - started));
                                successes[writer].fetch_add(1, Ordering::Relaxed);
                            }
                            // The session is gone: the failover lost its creation.
                            Ok(UpdateOutcome::Missing) => log.failures.push(ended),
                            Err(_) => log.failures.push(ended),
                        }
                        // A little air for the harness on a two-core machine.
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                    log
                })
            })
            .collect();
        Self { store, ids, stop, successes, handles }
    }

    /// Acknowledged writes so far, per writer.
    fn counts(&self) -> Vec<u64> {
        self.successes.iter().map(|count| count.load(Ordering::Relaxed)).collect()
    }

    /// Waits until every writer has had `more` acknowledged writes beyond
    /// what it had at the call, or `limit` passes; returns whether they all did.
    pub async fn every_writer_succeeds(&self, more: u64, limit: Duration) -> bool {
        let base = self.counts();
        let started = Instant::now();
        while started.elapsed() < limit {
            if self.counts().iter().zip(&base).all(|(now, then)| *now >= then + more) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }

    /// Stops the writers, reads every session back, and reports.
    pub async fn finish(self, killed_at: Instant) -> FailoverReport {
        self.stop.store(true, Ordering::Relaxed);
        let mut logs = Vec::new();
        for handle in self.handles {
            logs.push(handle.await.expect("a writer panicked"));
        }
        let mut lost = 0;
        for (id, log) in self.ids.iter().zip(&logs) {
            let present: BTreeSet<u64> = match self.store.get(id).await.expect("read a writer's session back") {
                Some(record) => record.data.values().filter_map(serde_json::Value::as_u64).collect(),
                None => BTreeSet::new(),
            };
            lost += log.acknowledged.difference(&present).count() as u64;
        }
        let failures: Vec<Instant> = logs.iter().flat_map(|log| log.failures.iter().copied()).collect();
        let successes: Vec<(Instant, Duration)> = logs.iter().flat_map(|log| log.successes.iter().copied()).collect();
        let first_failure = failures.iter().copied().filter(|at| *at >= killed_at).min();
        let last_failure = failures.iter().copied().max();
        let resumed = last_failure.and_then(|last| successes.iter().map(|(at, _)| *at).filter(|at| *at > last).min());
        let outage = match (first_failure, resumed) {
            (Some(first), Some(resumed)) => Some(resumed - first),
            _ => None,
        };
        let mut steady: Vec<Duration> =
            successes.iter().filter(|(at, _)| *at < killed_at).map(|(_, took)| *took).collect();
        steady.sort();
        FailoverReport {
            acknowledged: logs.iter().map(|log| log.acknowledged.len() as u64).sum(),
            failed: failures.len() as u64,
            lost,
            outage,
            resumed_after_kill: resumed.map(|at| at - killed_at),
            median_write: steady.get(steady.len() / 2).copied(),
            p99_write: steady.get(steady.len() * 99 / 100).copied(),
        }
    }
}

/// What a failover cost the writers.
#[derive(Debug)]
pub struct FailoverReport {
    /// Writes the store acknowledged.
    pub acknowledged: u64,
    /// Attempts that failed (errors, timeouts).
    pub failed: u64,
    /// Acknowledged writes missing when read back after the failover.
    pub lost: u64,
    /// From the first failure after the kill to the first success after the
    /// last failure: how long requests failed.
    pub outage: Option<Duration>,
    /// From the kill to that first success.
    pub resumed_after_kill: Option<Duration>,
    /// Latency of acknowledged writes before the kill.
    pub median_write: Option<Duration>,
    pub p99_write: Option<Duration>,
}

impl std::fmt::Display for FailoverReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "writes back {:?} after the kill (failures seen from the first to the first success after the last: {:?}), \
             {} failed attempts, {} acknowledged writes, {} acknowledged writes lost; before the kill a write took {:?} (median), {:?} (p99)",
            self.resumed_after_kill,
            self.outage,
            self.failed,
            self.acknowledged,
            self.lost,
            self.median_write,
            self.p99_write
        )
    }
}

fn in_an_hour() -> SystemTime {
    SystemTime::now() + Duration::from_secs(3600)
}
