//! The crash-safety workload: writes whose every intermediate state is a
//! pure function of `(session, seq)`, so that after a SIGKILL a checker can
//! tell an intact acknowledged write from a torn or invented one.
//!
//! The writer (`src/bin/crash-writer.rs`) prints `B <sid> <seq>` before it
//! starts an operation and `A <sid> <seq>` once the store acknowledged it.
//! Operations on one session are sequential, so after a kill each session
//! holds the state of its last acknowledged operation, or of the one
//! operation that was in flight, and nothing else.

use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use serde_json::{Value, json};
use sessionkit::{Changes, SessionMap, SessionStore, StoreError, StoreKey, expiry};

/// Concurrent writer tasks.
pub const TASKS: usize = 8;
/// Sessions each task owns.
pub const SESSIONS_PER_TASK: usize = 4;
/// Every session the workload touches.
pub const SESSIONS: usize = TASKS * SESSIONS_PER_TASK;
/// Sequence numbers of round `r` start at `r * ROUND_SEQS`, so they grow
/// across rounds.
pub const ROUND_SEQS: u64 = 1_000_000;

/// The fixed expiry of every record (2100-01-01), checked after a crash too.
pub fn expires_at() -> SystemTime {
    expiry::from_unix_ms(4_102_444_800_000)
}

/// A stable id for session number `sid`.
pub fn session_id(sid: usize) -> StoreKey {
    let mut bytes = [0xa5u8; 32];
    bytes[..8].copy_from_slice(&(sid as u64).to_le_bytes());
    StoreKey::from_bytes(bytes)
}

/// Opens the store of `kind` at `path`, as the writer children and the
/// checkers do: `file`, `sqlite`, `redb`, or `redb-volatile` (redb with
/// `RedbDurability::None`, which acknowledges before durability: only for
/// the tests that prove their check can fail).
pub async fn open_store(kind: &str, path: &Path) -> Result<Arc<dyn SessionStore>, StoreError> {
    Ok(match kind {
        "file" => Arc::new(sessionkit_stores::FileStore::open(path).await?),
        "sqlite" => Arc::new(sessionkit_stores::SqliteStore::open(path).await?),
        "redb" => Arc::new(sessionkit_stores::RedbStore::open(path).await?),
        "redb-volatile" => Arc::new(
            sessionkit_stores::RedbStore::builder()
                .durability(sessionkit_stores::RedbDurability::None)
                .open(path)
                .await?,
        ),
        other => return Err(StoreError::config(format!("unknown store kind {other}"))),
    })
}

/// What operation `seq` is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Set,
    Update,
    Delete,
}

pub fn op(seq: u64) -> Op {
    match seq % 10 {
        9 => Op::Delete,
        s if s % 2 == 0 => Op::Set,
        _ => Op::Update,
    }
}

fn mix(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x
}

/// A blob of 0 to 24 KiB whose length and bytes depend on `(sid, seq)`:
/// large writes span several disk blocks, where a torn write would show.
fn blob(sid: usize, seq: u64) -> String {
    let seed = mix(seq.wrapping_mul(31).wrapping_add(sid as u64));
    let len = (seed % (24 * 1024)) as usize;
    (0..len).map(|i| char::from(b'a' + (mix(seed.wrapping_add(i as u64)) % 26) as u8)).collect()
}

fn checksum(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// The session's data right after operation `seq` (`None`: deleted).
pub fn state_after(sid: usize, seq: u64) -> Option<SessionMap> {
    if op(seq) == Op::Delete {
        return None;
    }
    let blob = blob(sid, seq);
    let sum = checksum(&blob);
    match json!({ "sid": sid, "seq": seq, "blob": blob, "sum": sum }) {
        Value::Object(map) => Some(map),
        _ => None,
    }
}

/// Performs operation `seq` on session `sid`.
pub async fn perform(store: &dyn SessionStore, sid: usize, seq: u64) -> Result<(), StoreError> {
    let id = session_id(sid);
    let Some(state) = state_after(sid, seq) else {
        return store.delete(&id).await;
    };
    if op(seq) == Op::Update {
        let mut changes = Changes::new();
        for (key, value) in &state {
            changes.set(key.clone(), value.clone());
        }
        if store.update(&id, &changes, Some(expires_at())).await? == sessionkit::UpdateOutcome::Applied {
            return Ok(());
        }
        // Deleted by the previous operation: start the session again.
    }
    store.set(&id, &state, Some(expires_at())).await
}

/// One line of the writer's log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    Begun { sid: usize, seq: u64 },
    Acked { sid: usize, seq: u64 },
}

/// Parses a log line; `None` for anything else (a line cut by the kill).
pub fn parse(line: &str) -> Option<Event> {
    let mut parts = line.split(' ');
    let kind = parts.next()?;
    let sid = parts.next()?.parse().ok()?;
    let seq = parts.next()?.parse().ok()?;
    if parts.next().is_some() {
        return None;
    }
    match kind {
        "B" => Some(Event::Begun { sid, seq }),
        "A" => Some(Event::Acked { sid, seq }),
        _ => None,
    }
}
