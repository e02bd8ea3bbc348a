//! Power-cut rounds on the power-loss filesystem
//! (`sessionkit-powerloss-fs`): a child process writes the crash workload
//! ([`crate::crash_workload`], through `crash-writer`) to a store whose
//! files are on the mount; at a random moment the child is killed and the
//! power cut; the store is reopened on what was durable and checked.
//!
//! The test process only serves the filesystem and judges: every store
//! access happens in a child (`crash-writer` writes, `power-cut-checker`
//! reopens, reads every session and writes a probe), because a process
//! must not map files of a mount it serves itself (SQLite's `-shm`: see the
//! `sessionkit-powerloss-fs` docs).
//!
//! A session must then hold the state of its last acknowledged write, or
//! of the one write that was in flight: anything older is **lost**;
//! anything that is no state of the workload at all (a record that does
//! not match its checksum, fails to decode, or has the wrong expiry) is
//! **torn**. A reopen that fails is counted too. After reading, the checker
//! writes and reads back a probe session, so the store is shown to keep
//! working, and the probe's acknowledged state is checked after the next
//! cut like the writer's.
//!
//! The store-facing code is [`crash_workload::open_store`],
//! [`crash_workload::perform`] and the two children's `get` calls.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sessionkit::SessionMap;
use sessionkit_powerloss_fs::Mounted;

use crate::crash_workload::{self, Event, SESSIONS};

/// The parent's probe session: one past the workload's.
pub const PROBE: usize = SESSIONS;

/// The store kinds that create their directory (FileStore) or file (redb)
/// without syncing the directory that names it: on a strict filesystem,
/// a cut before anything else syncs that directory loses the whole store,
/// acknowledged writes included (see `docs/durability.md`). Their runs
/// sync the mount's root once the store exists, and so test what comes
/// after; SQLite syncs the directory itself when it creates its WAL, and
/// is tested from its creation on. Empty this list once the stores sync.
pub const CREATE_WITHOUT_PARENT_SYNC: &[&str] = &["file", "redb", "redb-volatile"];

/// A small deterministic generator; the seed is printed so a failing run
/// can be replayed with `SESSIONKIT_POWERLOSS_SEED`.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// From `SESSIONKIT_POWERLOSS_SEED`, or the clock; prints the seed.
    pub fn from_env_or_clock(what: &str) -> Self {
        let seed = std::env::var("SESSIONKIT_POWERLOSS_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1));
        println!("{what}: power-cut seed {seed} (replay with SESSIONKIT_POWERLOSS_SEED={seed})");
        Self(seed | 1)
    }

    /// The seed for the filesystem's own random choices (torn writes).
    pub fn fs_seed(&mut self) -> u64 {
        self.below(u64::MAX)
    }

    /// A value in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

/// What a run of power cuts found.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    /// Power cuts made.
    pub cuts: u64,
    /// Writes acknowledged before a cut (the child's and the probe's).
    pub acked: u64,
    /// Sessions, at some cut, missing their last acknowledged write.
    pub lost: u64,
    /// Sessions, at some cut, holding something no write produced.
    pub torn: u64,
    /// Reopens after a cut that failed.
    pub reopen_failures: u64,
    /// Writes the store failed (child or probe), or a probe that did not
    /// read back.
    pub write_failures: u64,
    /// Writes in flight at the kill that turned out committed.
    pub in_flight_committed: u64,
    /// Files the cuts left with a torn prefix of their unsynced writes
    /// (torn mode at work).
    pub files_torn: u64,
    /// The first few failures, described.
    pub failures: Vec<String>,
}

impl Tally {
    /// Whether the run found any damage: the outcome a broken store must have.
    pub fn caught(&self) -> bool {
        self.lost + self.torn + self.reopen_failures + self.write_failures > 0
    }

    /// Records a failure's description (the first few are kept).
    pub fn fail(&mut self, what: String) {
        if self.failures.len() < 8 {
            self.failures.push(what);
        }
    }

    /// One line: the numbers the issue asks for.
    pub fn summary(&self) -> String {
        format!(
            "{} cuts, {} acknowledged writes, lost {}, torn {}, reopen failures {}, write failures {}, \
             {} in-flight writes found committed, {} files left with torn writes",
            self.cuts,
            self.acked,
            self.lost,
            self.torn,
            self.reopen_failures,
            self.write_failures,
            self.in_flight_committed,
            self.files_torn
        )
    }
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

/// How a session read after a cut compares with what was acknowledged.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The last acknowledged state (or the known one, if none was).
    Intact,
    /// The state of the write that was in flight.
    InFlight,
    /// An older state of the workload: an acknowledged write is missing.
    Lost(String),
    /// Something no write produced.
    Torn(String),
}

/// Judges what a read of session `sid` returned after a cut. `known` is
/// its state after the previous check; `acked` and `begun` the last
/// operations acknowledged and begun since.
pub fn judge(
    sid: usize,
    read: &Result<Option<Found>, String>,
    known: &Option<SessionMap>,
    acked: Option<u64>,
    begun: Option<u64>,
) -> Verdict {
    let got = match read {
        Ok(got) => got,
        Err(err) => return Verdict::Torn(format!("session {sid}: the read failed: {err}")),
    };
    let expires_ms = sessionkit::expiry::to_unix_ms(crash_workload::expires_at());
    if let Some(found) = got
        && found.expires_ms != Some(expires_ms)
    {
        return Verdict::Torn(format!("session {sid}: expiry {:?} was never written", found.expires_ms));
    }
    judge_data(sid, got.as_ref().map(|found| found.data.clone()), known, acked, begun)
}

/// Judges a session's data after a cut (`None`: absent), as [`judge`]
/// does once the read succeeded and the expiry is right.
pub fn judge_data(
    sid: usize,
    data: Option<SessionMap>,
    known: &Option<SessionMap>,
    acked: Option<u64>,
    begun: Option<u64>,
) -> Verdict {
    let expected = match acked {
        Some(acked) => crash_workload::state_after(sid, acked),
        None => known.clone(),
    };
    if data == expected {
        return Verdict::Intact;
    }
    if let Some(begun) = begun.filter(|&begun| acked.is_none_or(|acked| begun > acked))
        && data == crash_workload::state_after(sid, begun)
    {
        return Verdict::InFlight;
    }
    let seq_of = |data: &Option<SessionMap>| data.as_ref().and_then(|map| map.get("seq")).and_then(|seq| seq.as_u64());
    let wanted = format!("acknowledged {acked:?}, in flight {begun:?}, expected seq {:?}", seq_of(&expected));
    match seq_of(&data) {
        _ if data.is_none() => Verdict::Lost(format!("session {sid}: gone ({wanted})")),
        Some(seq) if crash_workload::state_after(sid, seq) == data => {
            Verdict::Lost(format!("session {sid}: holds the older seq {seq} ({wanted})"))
        }
        _ => Verdict::Torn(format!("session {sid}: holds a record no write produced ({wanted})")),
    }
}

/// The two child programs of a run.
#[derive(Debug, Clone)]
pub struct Children {
    /// `crash-writer`.
    pub writer: PathBuf,
    /// `power-cut-checker`.
    pub checker: PathBuf,
}

/// Rounds of write, kill, cut, reopen, check on one store.
pub struct PowerCutRun {
    children: Children,
    /// The kind the writer opens (`redb-volatile` for a broken redb).
    writer_kind: String,
    /// The kind the checker reopens.
    checker_kind: String,
    path: PathBuf,
    fs: Mounted,
    rng: Rng,
    /// Each session's state after the last check, the probe's last.
    known: Vec<Option<SessionMap>>,
    probe_seq: u64,
    round: u64,
    started: Instant,
    tally: Tally,
}

impl PowerCutRun {
    /// A run of writers on a store of `writer_kind` at `file` on the mount,
    /// reopened by checkers as `checker_kind`.
    ///
    /// A checker creates the store first (and writes the first probe); for
    /// the kinds of [`CREATE_WITHOUT_PARENT_SYNC`] the mount's root is then
    /// synced.
    ///
    /// # Panics
    ///
    /// If the store cannot be created.
    pub fn start(
        children: &Children,
        writer_kind: &str,
        checker_kind: &str,
        fs: Mounted,
        file: &str,
        rng: Rng,
    ) -> Self {
        let path = fs.path().join(file);
        let created = run_checker(&children.checker, checker_kind, &path, 1);
        assert_eq!(created.open_error, None, "creating the {checker_kind} store");
        assert_eq!(created.probe, Some(Ok(())), "the first write to the new {checker_kind} store");
        if CREATE_WITHOUT_PARENT_SYNC.contains(&checker_kind) {
            File::open(fs.path()).and_then(|root| root.sync_all()).expect("sync the mount's root");
        }
        let mut known = vec![None; SESSIONS + 1];
        known[PROBE] = crash_workload::state_after(PROBE, 1);
        Self {
            children: children.clone(),
            writer_kind: writer_kind.to_owned(),
            checker_kind: checker_kind.to_owned(),
            path,
            fs,
            rng,
            known,
            probe_seq: 1,
            round: 0,
            started: Instant::now(),
            tally: Tally::default(),
        }
    }

    /// The mount, to turn faults on.
    pub fn fs(&self) -> &Mounted {
        &self.fs
    }

    /// What the rounds found so far.
    pub fn tally(&self) -> &Tally {
        &self.tally
    }

    /// Time since [`start`](Self::start).
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// One round: a writer runs until killed, the power is cut, a checker
    /// reopens the store, reads every session and writes the probe.
    ///
    /// # Panics
    ///
    /// If the filesystem cannot be cut and remounted, or a child cannot run.
    pub fn round(&mut self) {
        self.round += 1;
        let round = self.round;
        let log = run_writer(&self.children.writer, &self.writer_kind, &self.path, round, &mut self.rng);
        self.tally.acked += log.acked;
        for error in &log.errors {
            self.tally.write_failures += 1;
            self.tally.fail(format!("cut {round}: the store failed a write: {error}"));
        }
        let cut = self.fs.cut().expect("cut the power and remount");
        self.tally.cuts += 1;
        self.tally.files_torn += cut.files_torn as u64;
        let report = run_checker(&self.children.checker, &self.checker_kind, &self.path, self.probe_seq + 1);
        if let Some(error) = report.open_error {
            self.tally.reopen_failures += 1;
            self.tally.fail(format!("cut {round}: reopening failed: {error}"));
            return;
        }
        for sid in 0..=SESSIONS {
            let read = report.reads.get(&sid).cloned().unwrap_or_else(|| Err("the checker did not report it".into()));
            let (acked, begun) = if sid == PROBE {
                (None, None)
            } else {
                (log.last_acked.get(&sid).copied(), log.last_begun.get(&sid).copied())
            };
            match judge(sid, &read, &self.known[sid], acked, begun) {
                Verdict::Intact => {}
                Verdict::InFlight => self.tally.in_flight_committed += 1,
                Verdict::Lost(what) => {
                    self.tally.lost += 1;
                    self.tally.fail(format!("cut {round}: {what}"));
                }
                Verdict::Torn(what) => {
                    self.tally.torn += 1;
                    self.tally.fail(format!("cut {round}: {what}"));
                }
            }
            // Judge the next round against what is there, not what should be.
            self.known[sid] = read.ok().flatten().map(|found| found.data);
        }
        match report.probe {
            Some(Ok(())) => {
                self.probe_seq += 1;
                self.tally.acked += 1;
                self.known[PROBE] = crash_workload::state_after(PROBE, self.probe_seq);
            }
            other => {
                self.tally.write_failures += 1;
                self.tally.fail(format!("cut {round}: the reopened store does not work: {other:?}"));
            }
        }
    }
}
