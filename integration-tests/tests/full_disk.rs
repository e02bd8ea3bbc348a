//! A full disk: each persistent store runs on a small tmpfs (mounted by the
//! test, as root). Writes fail with a clear error once it is full, nothing
//! acknowledged earlier is lost, and writing works again once space is freed.
//!
//! Mounting needs root; elsewhere the tests say loudly that they did not run
//! (under `CI=true`, where the machine runs as root, they must run).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use serde_json::json;
use sessionkit::{SessionMap, SessionStore, StoreError, expiry};
use sessionkit_integration_tests::support::error_chain;

/// A tmpfs mounted on a temporary directory, unmounted when dropped.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    /// Mounts a tmpfs of `bytes`, or explains why it cannot.
    fn mount(bytes: usize) -> Result<Self, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !status.success() {
            return Err(format!("mount -t tmpfs failed ({status}); the test needs root"));
        }
        Ok(Self { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

fn small_disk(bytes: usize) -> Option<SmallDisk> {
    match SmallDisk::mount(bytes) {
        Ok(disk) => Some(disk),
        Err(why) if std::env::var("CI").as_deref() == Ok("true") => panic!("full-disk test cannot run under CI: {why}"),
        Err(why) => {
            eprintln!("\n*** SKIPPED full-disk test: {why}. Run the suite as root (scripts/test in CI does). ***\n");
            None
        }
    }
}

fn record(i: usize) -> SessionMap {
    match json!({ "i": i, "pad": "p".repeat(2_000) }) {
        serde_json::Value::Object(map) => map,
        _ => SessionMap::new(),
    }
}

/// Fills the disk through `store` until a write fails; checks the failure is
/// a clear error, that every acknowledged write is intact, and that writes
/// work again after `free` releases space.
async fn fill_fail_free_recover(store: Arc<dyn SessionStore>, filler: PathBuf) {
    let expires_at = Some(expiry::now() + std::time::Duration::from_secs(3600));
    let mut written = Vec::new();
    let failure = loop {
        let id = sessionkit_integration_tests::support::key();
        match store.set(&id, &record(written.len()), expires_at).await {
            Ok(()) => written.push(id),
            Err(err) => break err,
        }
        assert!(written.len() < 100_000, "the disk never filled up");
    };
    assert!(!written.is_empty(), "no write fitted at all: the disk is too small for the test");
    let chain = error_chain(&failure);
    assert!(
        matches!(failure, StoreError::Backend { .. })
            && (chain.to_lowercase().contains("space") || chain.contains("full")),
        "a full disk must be a backend error that says so, got: {chain}"
    );
    println!("disk full after {} sessions: {chain}", written.len());

    for (i, id) in written.iter().enumerate() {
        let got = store.get(id).await.unwrap_or_else(|e| panic!("read of session {i} after the disk filled: {e}"));
        assert_eq!(got.map(|r| r.data), Some(record(i)), "session {i} was damaged by the full disk");
    }

    std::fs::remove_file(&filler).expect("free space");
    let id = sessionkit_integration_tests::support::key();
    store.set(&id, &record(0), expires_at).await.expect("writing works again once space is freed");
    assert_eq!(store.get(&id).await.expect("read").map(|r| r.data), Some(record(0)));
    let mut changes = sessionkit::Changes::new();
    changes.set("after", json!(true));
    assert_eq!(
        store.update(&written[0], &changes, expires_at).await.expect("update"),
        sessionkit::UpdateOutcome::Applied
    );
}

/// A file taking `bytes` of the disk, deleted later to free space.
fn filler(disk: &SmallDisk, bytes: usize) -> PathBuf {
    let path = disk.path().join("filler");
    std::fs::write(&path, vec![0u8; bytes]).expect("filler file");
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_store_survives_a_full_disk() {
    let Some(disk) = small_disk(4 << 20) else { return };
    let filler = filler(&disk, 1 << 20);
    let store = sessionkit_stores::FileStore::open(disk.path().join("sessions")).await.expect("open");
    fill_fail_free_recover(Arc::new(store), filler).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_survives_a_full_disk() {
    let Some(disk) = small_disk(4 << 20) else { return };
    let filler = filler(&disk, 1 << 20);
    let store = sessionkit_stores::SqliteStore::open(disk.path().join("sessions.db")).await.expect("open");
    fill_fail_free_recover(Arc::new(store), filler).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redb_survives_a_full_disk() {
    let Some(disk) = small_disk(8 << 20) else { return };
    let filler = filler(&disk, 2 << 20);
    let store = sessionkit_stores::RedbStore::open(disk.path().join("sessions.redb")).await.expect("open");
    fill_fail_free_recover(Arc::new(store), filler).await;
}
