//! Tests of the second-round contract that only the file store can be put
//! through: index entries left over, a rename stopped midway, and two
//! stores on one directory standing for two processes (they share nothing
//! but the files and their locks).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use serde_json::json;
use sessionkit::{PatchError, reserved};

use super::*;

fn owned(user: &str, extra: serde_json::Value) -> SessionMap {
    let mut data = extra.as_object().cloned().expect("object");
    data.insert(reserved::USER.into(), json!(user));
    data
}

fn in_secs(secs: u64) -> Option<SystemTime> {
    Some(SystemTime::now() + Duration::from_secs(secs))
}

fn entry(dir: &Path, user: &str, key: &StoreKey) -> PathBuf {
    dir.join(USERS_DIR).join(user_dir_name(user)).join(key.as_str())
}

fn keys(listing: Vec<(StoreKey, SessionRecord)>) -> Vec<StoreKey> {
    let mut keys: Vec<StoreKey> = listing.into_iter().map(|(key, _)| key).collect();
    keys.sort();
    keys
}

async fn two_stores() -> (tempfile::TempDir, FileStore, FileStore) {
    let dir = tempfile::tempdir().expect("tempdir");
    let ours = FileStore::open(dir.path()).await.expect("open");
    let theirs = FileStore::open(dir.path()).await.expect("open again");
    (dir, ours, theirs)
}

#[tokio::test]
async fn left_over_index_entries_are_never_listed_and_reads_remove_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = FileStore::open(dir.path()).await.expect("open");
    let (session, gone) = (sessionkit::testing::checks::key(), sessionkit::testing::checks::key());
    store.set(&session, &owned("ada", json!({})), in_secs(600)).await.expect("set");
    // What a crash between the steps (or another user's write) can leave:
    // an entry under the wrong user, an entry of a session that is gone.
    for (user, key) in [("bob", &session), ("ada", &gone)] {
        fs::create_dir_all(entry(dir.path(), user, key).parent().expect("parent")).expect("mkdir");
        fs::write(entry(dir.path(), user, key), b"").expect("plant an entry");
    }
    assert_eq!(keys(store.sessions_of("bob").await.expect("list")), Vec::new(), "bob does not own it");
    assert!(!entry(dir.path(), "bob", &session).exists(), "the listing removed the left-over entry");
    assert_eq!(keys(store.sessions_of("ada").await.expect("list")), vec![session.clone()]);
    assert!(!entry(dir.path(), "ada", &gone).exists(), "the entry of a missing session is removed");
    assert!(entry(dir.path(), "ada", &session).exists(), "a current entry is kept");
    assert!(!store.revoke("bob", &session).await.expect("revoke"), "a planted entry grants no revocation");

    // A delete does not read the owner: its entry is left over until read
    // or swept, and the sweep removes the emptied user directory too.
    store.delete(&session).await.expect("delete");
    store.delete_expired().await.expect("sweep");
    assert!(!entry(dir.path(), "ada", &session).parent().expect("parent").exists(), "the sweep prunes the index");
}

/// An entry that exists is taken as durable by the next write, so one
/// whose sync failed must be gone when the write fails: the next login
/// then creates and syncs it again.
#[tokio::test]
async fn an_index_entry_whose_sync_failed_is_taken_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = FileStore::open(dir.path()).await.expect("open");
    let key = sessionkit::testing::checks::key();
    store.inner.faults.fail_index_sync.store(true, Ordering::SeqCst);
    assert!(store.set(&key, &owned("ada", json!({})), in_secs(60)).await.is_err(), "the write must fail");
    assert!(!entry(dir.path(), "ada", &key).exists(), "an entry whose sync failed must not stay behind");
    assert_eq!(store.get(&key).await.expect("get"), None, "nothing may be written after the index failed");

    store.inner.faults.fail_index_sync.store(false, Ordering::SeqCst);
    store.set(&key, &owned("ada", json!({})), in_secs(60)).await.expect("set");
    assert!(entry(dir.path(), "ada", &key).exists(), "the next write creates the entry again");
    assert_eq!(keys(store.sessions_of("ada").await.expect("list")), vec![key]);
}

#[tokio::test]
async fn the_sweeper_prunes_the_entries_and_leases_of_what_ran_out() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = FileStore::open(dir.path()).await.expect("open");
    let (expiring, live) = (sessionkit::testing::checks::key(), sessionkit::testing::checks::key());
    store
        .set(&expiring, &owned("ada", json!({})), Some(SystemTime::now() + Duration::from_millis(50)))
        .await
        .expect("set");
    store.set(&live, &owned("ada", json!({})), in_secs(600)).await.expect("set");
    store.try_lease(&expiring, Duration::from_millis(50)).await.expect("lease").expect("free");
    store.try_lease(&live, Duration::from_secs(600)).await.expect("lease").expect("free");
    tokio::time::sleep(Duration::from_millis(80)).await;
    assert_eq!(store.delete_expired().await.expect("sweep"), 1);
    assert!(!entry(dir.path(), "ada", &expiring).exists(), "an expired session's entry is swept with it");
    assert!(entry(dir.path(), "ada", &live).exists());
    assert_eq!(store.inner.leases.keys().expect("leases"), vec![live.clone()], "only the lease that ran out goes");
}

#[tokio::test]
async fn a_rename_stopped_midway_leaves_the_old_session_whole() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = FileStore::open(dir.path()).await.expect("open");
    let (from, to) = (sessionkit::testing::checks::key(), sessionkit::testing::checks::key());
    let data = owned("ada", json!({ "cart": [1, 2] }));
    store.set(&from, &data, in_secs(600)).await.expect("set");
    store.inner.faults.crash_rename_midway.store(true, Ordering::SeqCst);
    let mut changes = Changes::new();
    changes.set("logged_in", json!(true));
    store.rename(&from, &to, &changes, in_secs(600)).await.expect_err("the rename stops before removing `from`");
    store.inner.faults.crash_rename_midway.store(false, Ordering::SeqCst);

    // The client, never answered, still holds `from`: whole and unchanged.
    assert_eq!(store.get(&from).await.expect("get").map(|record| record.data), Some(data.clone()));
    // `to` is complete (never torn) and listed, so its user can end it.
    let orphan = store.get(&to).await.expect("get").expect("the new key was durable first");
    assert_eq!(orphan.data.get("logged_in"), Some(&json!(true)));
    assert_eq!(keys(store.sessions_of("ada").await.expect("list")), {
        let mut both = vec![from.clone(), to.clone()];
        both.sort();
        both
    });
    assert_eq!(store.revoke_all("ada", Some(&from)).await.expect("revoke_all"), 1);
    assert_eq!(keys(store.sessions_of("ada").await.expect("list")), vec![from.clone()]);
    // And the session can still be renamed, as at the client's next login.
    let again = sessionkit::testing::checks::key();
    assert_eq!(store.rename(&from, &again, &changes, in_secs(600)).await.expect("rename"), UpdateOutcome::Applied);
    assert_eq!(store.get(&from).await.expect("get"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leases_exclude_and_fence_across_stores_on_one_directory() {
    let (_dir, ours, theirs) = two_stores().await;
    let key = sessionkit::testing::checks::key();
    ours.set(&key, &owned("ada", json!({ "n": 0 })), in_secs(600)).await.expect("set");
    let lease = ours.try_lease(&key, Duration::from_secs(30)).await.expect("lease").expect("free");
    assert_eq!(theirs.try_lease(&key, Duration::from_secs(30)).await.expect("lease"), None, "held elsewhere");
    let fenced = |token, n| {
        let mut changes = Changes::new();
        changes.set("n", json!(n));
        changes.fence(token);
        changes
    };
    assert_eq!(theirs.update(&key, &fenced(lease.token, 1), None).await.expect("update"), UpdateOutcome::Applied);
    match theirs.update(&key, &fenced(LeaseToken::generate(), 2), None).await {
        Err(StoreError::Refused(PatchError::LeaseLost)) => {}
        other => panic!("a foreign token must be refused, got {other:?}"),
    }
    theirs.release_lease(&key, LeaseToken::generate()).await.expect("release");
    assert_eq!(theirs.try_lease(&key, Duration::from_secs(30)).await.expect("lease"), None, "a wrong token kept it");
    ours.release_lease(&key, lease.token).await.expect("release");
    let short = theirs.try_lease(&key, Duration::from_millis(100)).await.expect("lease").expect("released: free");

    // Its holder "crashes" (the store is dropped without releasing): the
    // session is blocked until the lease runs out, no longer.
    drop(theirs);
    assert_eq!(ours.try_lease(&key, Duration::from_secs(30)).await.expect("lease"), None);
    tokio::time::sleep(Duration::from_millis(150)).await;
    let next = ours.try_lease(&key, Duration::from_secs(30)).await.expect("lease").expect("ran out: free");
    match ours.update(&key, &fenced(short.token, 3), None).await {
        Err(StoreError::Refused(PatchError::LeaseLost)) => {}
        other => panic!("the crashed holder's token must not write, got {other:?}"),
    }
    let to = sessionkit::testing::checks::key();
    assert_eq!(ours.rename(&key, &to, &fenced(next.token, 4), None).await.expect("rename"), UpdateOutcome::Applied);
    assert_eq!(ours.get(&to).await.expect("get").and_then(|record| record.data.get("n").cloned()), Some(json!(4)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_takers_in_two_stores_get_one_lease() {
    let (_dir, ours, theirs) = two_stores().await;
    let stores = [Arc::new(ours), Arc::new(theirs)];
    let key = sessionkit::testing::checks::key();
    let takers: Vec<_> = (0..16)
        .map(|i| {
            let (store, key) = (Arc::clone(&stores[i % 2]), key.clone());
            tokio::spawn(async move { store.try_lease(&key, Duration::from_secs(30)).await })
        })
        .collect();
    let mut granted = 0;
    for taker in takers {
        granted += usize::from(taker.await.expect("task").expect("try_lease").is_some());
    }
    assert_eq!(granted, 1, "two processes' takers must share one lease");
}

/// A rename in one store racing an update in another (two processes): the
/// update lands in the renamed record or reports the session missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rename_never_loses_an_update_from_another_store() {
    let (_dir, ours, theirs) = two_stores().await;
    let (ours, theirs) = (Arc::new(ours), Arc::new(theirs));
    for round in 0..50 {
        let (from, to) = (sessionkit::testing::checks::key(), sessionkit::testing::checks::key());
        ours.set(&from, &owned("ada", json!({ "round": round })), in_secs(600)).await.expect("set");
        let rename = {
            let (store, from, to) = (Arc::clone(&ours), from.clone(), to.clone());
            tokio::spawn(async move { store.rename(&from, &to, &Changes::new(), in_secs(600)).await })
        };
        let update = {
            let (store, from) = (Arc::clone(&theirs), from.clone());
            tokio::spawn(async move {
                let mut changes = Changes::new();
                changes.set("cart", json!(["book"]));
                store.update(&from, &changes, in_secs(600)).await
            })
        };
        assert_eq!(rename.await.expect("task").expect("rename"), UpdateOutcome::Applied);
        let moved = theirs.get(&to).await.expect("get").expect("the renamed record");
        if update.await.expect("task").expect("update") == UpdateOutcome::Applied {
            assert_eq!(moved.data.get("cart"), Some(&json!(["book"])), "round {round}: an applied update was lost");
        }
        assert_eq!(theirs.get(&from).await.expect("get"), None);
        assert_eq!(keys(theirs.sessions_of("ada").await.expect("list")), vec![to.clone()], "round {round}");
        ours.delete(&to).await.expect("delete");
    }
}

#[tokio::test]
async fn opening_creates_every_directory_of_the_layout() {
    let root = tempfile::tempdir().expect("tempdir");
    let dir = root.path().join("a").join("b").join("sessions");
    FileStore::open(&dir).await.expect("open, creating the parents");
    for sub in [LOCK_DIR, USERS_DIR, LEASES_DIR] {
        assert!(dir.join(sub).is_dir(), "{sub}");
    }
}

/// A read writes nothing, not even the file's access time: with
/// `relatime`, the first read after a write would otherwise dirty the
/// inode, a journal transaction on the reading task.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn reading_a_session_leaves_its_access_time_alone() {
    use std::os::unix::fs::MetadataExt;

    use nix::sys::stat::{UtimensatFlags, utimensat};
    use nix::sys::time::TimeSpec;

    let dir = tempfile::tempdir().expect("tempdir");
    let store = FileStore::open(dir.path()).await.expect("open");
    let key = sessionkit::testing::checks::key();
    store.set(&key, &owned("ada", json!({ "n": 1 })), in_secs(60)).await.expect("set");
    let path = store.inner.path(&key);
    // An access time older than the last change, which `relatime` (and
    // `strictatime`) would move on the next read.
    let old = TimeSpec::new(1_000_000, 0);
    utimensat(nix::fcntl::AT_FDCWD, &path, &old, &TimeSpec::UTIME_OMIT, UtimensatFlags::FollowSymlink)
        .expect("setting the access time");
    assert_eq!(fs::metadata(&path).expect("metadata").atime(), 1_000_000);
    assert!(store.get(&key).await.expect("get").is_some());
    assert_eq!(fs::metadata(&path).expect("metadata").atime(), 1_000_000, "the read changed the access time");
}
