//! The power-cut rounds' child processes: the writer (`crash-writer`),
//! killed at a random moment, and the checker (`power-cut-checker`), which
//! reopens the store after the cut; how to run them and read their output.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sessionkit::SessionMap;

use super::Rng;
use crate::crash_workload::{self, Event};

/// The two child programs of a run.
#[derive(Debug, Clone)]
pub struct Children {
    /// `crash-writer`.
    pub writer: PathBuf,
    /// `power-cut-checker`.
    pub checker: PathBuf,
}

/// What one writer child did, from its log.
#[derive(Debug, Default)]
pub struct ChildLog {
    /// Per session, the last operation begun.
    pub last_begun: BTreeMap<usize, u64>,
    /// Per session, the last operation acknowledged.
    pub last_acked: BTreeMap<usize, u64>,
    /// Acknowledgements logged.
    pub acked: u64,
    /// Writes the store failed.
    pub errors: Vec<String>,
}

/// Runs `writer` (the `crash-writer` binary) on the store at `path` until a
/// random moment, kills it with SIGKILL and reaps it, and returns its log.
///
/// One round in five dies while opening the store (recovery included), the
/// others after writing for 20 to 270 ms.
///
/// # Panics
///
/// If the child cannot be started or reaped.
pub fn run_writer(writer: &Path, kind: &str, path: &Path, round: u64, rng: &mut Rng) -> ChildLog {
    let mut child = Command::new(writer)
        .args([kind, &path.display().to_string(), &round.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the writer");
    let stdout = child.stdout.take().expect("piped stdout");
    let lines = Arc::new(Mutex::new(Vec::new()));
    let (ready, opened) = std::sync::mpsc::channel();
    let reader = {
        let lines = Arc::clone(&lines);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line == "READY" {
                    let _ = ready.send(());
                }
                lines.lock().expect("lock").push(line);
            }
            let _ = ready.send(());
        })
    };
    if rng.below(5) == 0 {
        std::thread::sleep(Duration::from_millis(rng.below(60)));
    } else {
        // A child that never gets its store open is killed after the
        // timeout; the empty log then shows no acknowledged writes.
        let _ = opened.recv_timeout(Duration::from_secs(30));
        std::thread::sleep(Duration::from_millis(20 + rng.below(250)));
    }
    child.kill().expect("SIGKILL the writer");
    child.wait().expect("reap the writer");
    reader.join().expect("log reader");

    let mut log = ChildLog::default();
    for line in lines.lock().expect("lock").iter() {
        if line.starts_with("E ") {
            log.errors.push(line.clone());
            continue;
        }
        match crash_workload::parse(line) {
            Some(Event::Begun { sid, seq }) => {
                log.last_begun.insert(sid, seq);
            }
            Some(Event::Acked { sid, seq }) => {
                log.last_acked.insert(sid, seq);
                log.acked += 1;
            }
            None => {}
        }
    }
    log
}

/// A session as the checker read it.
#[derive(Debug, Clone, PartialEq)]
pub struct Found {
    /// Its expiry, in Unix milliseconds.
    pub expires_ms: Option<i64>,
    /// Its data.
    pub data: SessionMap,
}

/// What a checker child reported.
#[derive(Debug, Default)]
pub struct CheckerReport {
    /// The reopen's error, if it failed.
    pub open_error: Option<String>,
    /// Per session: what it holds, or why it could not be read.
    pub reads: BTreeMap<usize, Result<Option<Found>, String>>,
    /// The probe write and read-back: `Ok`, or what went wrong.
    pub probe: Option<Result<(), String>>,
}

/// Runs `checker` (the `power-cut-checker` binary) on the store at `path`,
/// with `probe_seq` as the probe's next write, and parses its report.
///
/// # Panics
///
/// If the child cannot be started or does not finish within a minute.
pub fn run_checker(checker: &Path, kind: &str, path: &Path, probe_seq: u64) -> CheckerReport {
    let mut child = Command::new(checker)
        .args([kind, &path.display().to_string(), &probe_seq.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the checker");
    let stdout = child.stdout.take().expect("piped stdout");
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let lines: Vec<String> = BufReader::new(stdout).lines().map_while(Result::ok).collect();
        let _ = done.send(lines);
    });
    let lines = finished.recv_timeout(Duration::from_secs(60));
    if lines.is_err() {
        let _ = child.kill();
    }
    let _ = child.wait();
    let lines = lines.expect("the checker finishes within a minute");
    let mut report = CheckerReport::default();
    for line in lines {
        let mut parts = line.splitn(4, ' ');
        match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some("E"), _, _, _) => report.open_error = Some(line[2..].to_owned()),
            (Some("S"), Some(sid), Some("null"), None) => {
                if let Ok(sid) = sid.parse() {
                    report.reads.insert(sid, Ok(None));
                }
            }
            (Some("S"), Some(sid), Some(expires), Some(json)) => {
                let Ok(sid) = sid.parse() else { continue };
                let found = match serde_json::from_str::<serde_json::Value>(json) {
                    Ok(serde_json::Value::Object(data)) => Ok(Some(Found { expires_ms: expires.parse().ok(), data })),
                    other => Err(format!("the checker printed no object: {other:?}")),
                };
                report.reads.insert(sid, found);
            }
            (Some("R"), Some(sid), _, _) => {
                if let Ok(sid) = sid.parse() {
                    let error = line.splitn(3, ' ').nth(2).unwrap_or_default().to_owned();
                    report.reads.insert(sid, Err(error));
                }
            }
            (Some("P"), Some("ok"), None, None) => report.probe = Some(Ok(())),
            (Some("P"), _, _, _) => report.probe = Some(Err(line[2..].to_owned())),
            _ => {}
        }
    }
    report
}
