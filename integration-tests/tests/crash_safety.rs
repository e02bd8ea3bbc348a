//! Crash safety: a child process writes to a persistent store and is killed
//! with SIGKILL at a random moment, round after round. After each kill the
//! store is reopened and every session must hold exactly the state of its
//! last acknowledged write, or of the single write that was in flight: no
//! acknowledged write lost, nothing torn, nothing invented.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sessionkit::{SessionMap, SessionStore};
use sessionkit_integration_tests::crash_workload::{self, Event, SESSIONS};

const ROUNDS: u64 = 25;

/// A small deterministic generator: the seed is printed, so a failing run
/// can be replayed with `SESSIONKIT_CRASH_SEED`.
struct Rng(u64);

impl Rng {
    fn from_env_or_clock() -> Self {
        let seed = std::env::var("SESSIONKIT_CRASH_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1));
        println!("crash test seed: {seed} (replay with SESSIONKIT_CRASH_SEED={seed})");
        Self(seed | 1)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// What one round of the child did, from its log.
#[derive(Default)]
struct Round {
    last_begun: BTreeMap<usize, u64>,
    last_acked: BTreeMap<usize, u64>,
    acked: usize,
    errors: Vec<String>,
    ready: bool,
}

/// Runs one child until a random moment, kills it with SIGKILL, and returns its log.
fn run_child(kind: &str, path: &Path, round: u64, rng: &mut Rng) -> Round {
    let mut child = Command::new(env!("CARGO_BIN_EXE_crash-writer"))
        .args([kind, &path.display().to_string(), &round.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the crash writer");
    let stdout = child.stdout.take().expect("piped stdout");
    let lines = Arc::new(Mutex::new(Vec::new()));
    // Signalled when the store is open (or the child is gone); a send never blocks.
    let (ready, opened) = std::sync::mpsc::channel();
    let reader = {
        let lines = lines.clone();
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
    // One round in five dies while opening the store (recovery included);
    // the others after writing for a random while.
    if rng.below(5) == 0 {
        std::thread::sleep(Duration::from_millis(rng.below(60)));
    } else {
        opened.recv_timeout(Duration::from_secs(30)).expect("the writer opened its store");
        std::thread::sleep(Duration::from_millis(20 + rng.below(400)));
    }
    child.kill().expect("SIGKILL the writer");
    child.wait().expect("reap the writer");
    reader.join().expect("log reader");

    let mut round_log = Round::default();
    for line in lines.lock().expect("lock").iter() {
        if line == "READY" {
            round_log.ready = true;
        } else if line.starts_with("E ") {
            round_log.errors.push(line.clone());
        } else {
            match crash_workload::parse(line) {
                Some(Event::Begun { sid, seq }) => {
                    round_log.last_begun.insert(sid, seq);
                }
                Some(Event::Acked { sid, seq }) => {
                    round_log.last_acked.insert(sid, seq);
                    round_log.acked += 1;
                }
                None => {}
            }
        }
    }
    round_log
}

async fn reopen(kind: &str, path: &Path) -> Arc<dyn SessionStore> {
    match kind {
        "file" => Arc::new(sessionkit_stores::FileStore::open(path).await.expect("reopen the file store")),
        "sqlite" => Arc::new(sessionkit_stores::SqliteStore::open(path).await.expect("reopen sqlite")),
        "redb" | "redb-volatile" => Arc::new(sessionkit_stores::RedbStore::open(path).await.expect("reopen redb")),
        other => panic!("unknown store kind {other}"),
    }
}

/// Runs `rounds` kill-and-check rounds; returns the directory holding the store.
async fn crash_rounds(kind: &str, file: &str, rounds: u64) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join(file);
    let mut rng = Rng::from_env_or_clock();
    // The state each session is known to be in after the previous round.
    let mut known: Vec<Option<SessionMap>> = vec![None; SESSIONS];
    let (mut acked_total, mut in_flight_total) = (0usize, 0usize);
    let started = Instant::now();
    for round in 1..=rounds {
        let log = run_child(kind, &path, round, &mut rng);
        assert!(log.errors.is_empty(), "round {round}: the store failed a write: {:?}", log.errors);
        acked_total += log.acked;
        let store = reopen(kind, &path).await;
        for (sid, known) in known.iter_mut().enumerate() {
            let got = store.get(&crash_workload::session_id(sid)).await.expect("read after crash");
            if let Some(record) = &got {
                assert_eq!(
                    record.expires_at,
                    Some(crash_workload::expires_at()),
                    "round {round}, session {sid}: expiry torn"
                );
            }
            let got = got.map(|record| record.data);
            let mut allowed = Vec::new();
            match (log.last_acked.get(&sid), log.last_begun.get(&sid)) {
                (None, None) => allowed.push(known.clone()),
                (None, Some(&begun)) => {
                    allowed.push(known.clone());
                    allowed.push(crash_workload::state_after(sid, begun));
                }
                (Some(&acked), begun) => {
                    allowed.push(crash_workload::state_after(sid, acked));
                    if let Some(&begun) = begun.filter(|&&b| b > acked) {
                        allowed.push(crash_workload::state_after(sid, begun));
                    }
                }
            }
            if !allowed.contains(&got) {
                panic!(
                    "round {round}, session {sid}: state after the crash is neither the last acknowledged write \
                     ({:?}) nor the one in flight ({:?}); found seq {:?}",
                    log.last_acked.get(&sid),
                    log.last_begun.get(&sid),
                    got.as_ref().and_then(|d| d.get("seq")),
                );
            }
            if got != allowed[0] {
                in_flight_total += 1;
            }
            *known = got;
        }
        drop(store);
    }
    println!(
        "{kind}: {rounds} SIGKILL rounds in {:.1?}, {acked_total} acknowledged writes all intact, \
         {in_flight_total} in-flight writes found committed, none torn",
        started.elapsed()
    );
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_store_survives_sigkill() {
    let dir = crash_rounds("file", "sessions", ROUNDS).await;
    // Writers killed mid-write leave temporary files behind. They never broke
    // a read above; once stale, the sweeper removes them.
    let temps = || {
        std::fs::read_dir(dir.path().join("sessions"))
            .expect("list the store")
            .filter_map(Result::ok)
            .filter(|entry| entry.file_name().to_string_lossy().starts_with(".tmp-"))
            .map(|entry| entry.path())
            .collect::<Vec<_>>()
    };
    let left = temps();
    println!("file: {} temporary files left behind by the kills", left.len());
    let an_hour_ago = SystemTime::now() - Duration::from_secs(3600);
    for temp in &left {
        let file = std::fs::File::options().write(true).open(temp).expect("open a leftover");
        file.set_modified(an_hour_ago).expect("age the leftover");
    }
    let store = reopen("file", &dir.path().join("sessions")).await;
    // Every session file on disk is whole: named by a session of the
    // workload, and readable.
    for entry in std::fs::read_dir(dir.path().join("sessions")).expect("list the store").filter_map(Result::ok) {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(id) = name.strip_suffix(".json") else { continue };
        let id = sessionkit::StoreKey::parse(id).unwrap_or_else(|| panic!("a stray file {name:?}"));
        assert!(
            (0..SESSIONS).any(|sid| crash_workload::session_id(sid) == id),
            "a file for a session the workload never wrote: {name:?}"
        );
        assert!(store.get(&id).await.expect("read").is_some(), "a session file is not whole: {name:?}");
    }
    store.delete_expired().await.expect("sweep");
    assert_eq!(temps(), Vec::<std::path::PathBuf>::new(), "the sweeper must remove stale temporary files");
    for sid in 0..SESSIONS {
        store.get(&crash_workload::session_id(sid)).await.expect("reads still work after the sweep");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_survives_sigkill() {
    crash_rounds("sqlite", "sessions.db", ROUNDS).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redb_survives_sigkill() {
    crash_rounds("redb", "sessions.redb", ROUNDS).await;
}

/// The check has teeth: redb with `Durability::None` acknowledges commits
/// that a crash loses, and the check catches it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[should_panic(expected = "neither the last acknowledged write")]
async fn the_check_catches_a_store_that_acknowledges_too_early() {
    crash_rounds("redb-volatile", "sessions.redb", 8).await;
}
