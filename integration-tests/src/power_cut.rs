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

mod children;
mod verdict;

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sessionkit::SessionMap;
use sessionkit_powerloss_fs::Mounted;

pub use self::children::{CheckerReport, ChildLog, Children, Found, run_checker, run_writer};
pub use self::verdict::{Verdict, judge, judge_data};
use crate::crash_workload::{self, SESSIONS};

/// The parent's probe session: one past the workload's.
pub const PROBE: usize = SESSIONS;

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
    /// A checker creates the store first (and writes the first probe). No
    /// sync of the mount's root follows: every store makes its own creation
    /// durable, and the cuts test that too.
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
