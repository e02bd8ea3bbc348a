//! The child process of the crash-safety test: opens a store and writes the
//! crash workload until it is killed, logging each operation before it starts
//! and after the store acknowledged it.
//!
//! Usage: `crash-writer <file|sqlite|redb|redb-volatile> <path> <round>`
//!
//! The crash tests (SIGKILL) and the power-cut tests (a simulated power
//! loss on the power-loss filesystem) both run it.

use std::io::Write;
use std::sync::Arc;

use sessionkit::SessionStore;
use sessionkit_integration_tests::crash_workload::{self, ROUND_SEQS, SESSIONS_PER_TASK, TASKS};

fn log(line: &str) {
    let mut out = std::io::stdout().lock();
    // The parent reads this pipe; if it is gone there is nobody to tell.
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

async fn open(kind: &str, path: &str) -> Arc<dyn SessionStore> {
    crash_workload::open_store(kind, std::path::Path::new(path))
        .await
        .unwrap_or_else(|err| panic!("cannot open the {kind} store at {path}: {err:?}"))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, kind, path, round] = args.as_slice() else {
        panic!("usage: crash-writer <file|sqlite|redb> <path> <round>");
    };
    let round: u64 = round.parse().expect("round number");
    let store = open(kind, path).await;
    log("READY");
    let tasks: Vec<_> = (0..TASKS)
        .map(|task| {
            let store = store.clone();
            tokio::spawn(async move {
                for n in 0.. {
                    let sid = task * SESSIONS_PER_TASK + (n % SESSIONS_PER_TASK as u64) as usize;
                    let seq = round * ROUND_SEQS + n / SESSIONS_PER_TASK as u64;
                    log(&format!("B {sid} {seq}"));
                    match crash_workload::perform(&*store, sid, seq).await {
                        Ok(()) => log(&format!("A {sid} {seq}")),
                        Err(err) => {
                            log(&format!("E {sid} {seq} {err}"));
                            return;
                        }
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        let _ = task.await;
    }
}
