//! `FileStore`: the conformance kit, restart survival, and the bad input a
//! directory of files invites (hostile ids, damaged files, leftovers of
//! crashed writers, a wrong path), plus two stores sharing one directory as
//! two processes would.

use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde_json::{Value, json};
use sessionkit::{Changes, SessionRecord, SessionStore, StoreError, StoreKey, UpdateOutcome, expiry};
use sessionkit_integration_tests::support::{in_secs, map};
use sessionkit_stores::FileStore;
use tempfile::TempDir;

mod conformance {
    sessionkit::store_conformance_tests!(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = sessionkit_stores::FileStore::open(dir.path()).await.expect("open the file store");
        sessionkit::testing::Guarded::new(store, dir)
    });
}

fn session_file(dir: &Path, id: &StoreKey) -> std::path::PathBuf {
    dir.join(format!("{id}.json"))
}

/// Every name in the directory, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .expect("read_dir")
        .map(|entry| entry.expect("entry").file_name().into_string().expect("utf-8 name"))
        .collect();
    names.sort();
    names
}

async fn store_in(dir: &TempDir) -> FileStore {
    FileStore::open(dir.path()).await.expect("open the file store")
}

/// Makes `path` look `age` old.
fn backdate(path: &Path, age: Duration) {
    let file = fs::File::options().write(true).open(path).expect("open to backdate");
    file.set_modified(SystemTime::now() - age).expect("set_modified");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sessions_survive_a_restart_with_their_expiry() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("sessions");
    let rich = json!({ "user": { "name": "Zoë", "roles": ["admin"] }, "n": 9_007_199_254_740_993_i64, "f": 0.1 });
    let expires = in_secs(3600);
    let expected: Vec<(StoreKey, SessionRecord)> = vec![
        (sessionkit_integration_tests::support::key(), SessionRecord::new(map(rich.clone()), Some(expires))),
        (sessionkit_integration_tests::support::key(), SessionRecord::new(map(json!({ "forever": true })), None)),
        (sessionkit_integration_tests::support::key(), SessionRecord::new(map(json!({})), Some(in_secs(60)))),
    ];
    let updated = sessionkit_integration_tests::support::key();
    let deleted = sessionkit_integration_tests::support::key();
    let expired = sessionkit_integration_tests::support::key();
    {
        let store = FileStore::open(&path).await.expect("open");
        for (id, record) in &expected {
            store.set(id, &record.data, record.expires_at).await.expect("set");
        }
        store.set(&updated, &map(json!({ "a": 1, "b": 2 })), Some(in_secs(60))).await.expect("set");
        let mut changes = Changes::new();
        changes.set("c", json!(3));
        changes.remove("a");
        assert_eq!(store.update(&updated, &changes, Some(expires)).await.expect("update"), UpdateOutcome::Applied);
        store.set(&deleted, &map(json!({ "gone": true })), None).await.expect("set");
        store.delete(&deleted).await.expect("delete");
        store
            .set(&expired, &map(json!({ "old": true })), Some(expiry::now() - Duration::from_secs(1)))
            .await
            .expect("set");
    }
    // A new store on the same path, as after a restart.
    let store = FileStore::open(&path).await.expect("reopen");
    for (id, record) in &expected {
        assert_eq!(store.get(id).await.expect("get").as_ref(), Some(record), "a session changed across a restart");
    }
    assert_eq!(
        store.get(&updated).await.expect("get"),
        Some(SessionRecord::new(map(json!({ "b": 2, "c": 3 })), Some(expires))),
        "an update must survive a restart"
    );
    assert_eq!(store.get(&deleted).await.expect("get"), None, "a delete must survive a restart");
    assert_eq!(store.get(&expired).await.expect("get"), None);
    assert_eq!(store.delete_expired().await.expect("sweep"), 1, "the reopened store sweeps what the old one wrote");
}

#[tokio::test]
async fn the_file_holds_data_and_expires_at_in_unix_milliseconds() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store_in(&dir).await;
    let (id, expires) = (sessionkit_integration_tests::support::key(), in_secs(60));
    store.set(&id, &map(json!({ "k": "v" })), Some(expires)).await.expect("set");
    let stored: Value = serde_json::from_slice(&fs::read(session_file(dir.path(), &id)).expect("read")).expect("json");
    assert_eq!(stored, json!({ "data": { "k": "v" }, "expiresAt": expiry::to_unix_ms(expires) }));

    // A file laid out differently (by hand, by another tool) reads and sweeps the same.
    let foreign = sessionkit_integration_tests::support::key();
    let past = expiry::to_unix_ms(expiry::now()) - 1000;
    let text = format!("{{\n  \"data\": {{ \"x\": [1, 2] }},\n  \"expiresAt\": {}\n}}\n", expiry::to_unix_ms(expires));
    fs::write(session_file(dir.path(), &foreign), text).expect("write");
    let record = store.get(&foreign).await.expect("get").expect("a hand-written file reads");
    assert_eq!((record.data, record.expires_at), (map(json!({ "x": [1, 2] })), Some(expires)));
    fs::write(session_file(dir.path(), &foreign), format!("{{ \"data\": {{}}, \"expiresAt\": {past} }}"))
        .expect("write");
    assert_eq!(store.delete_expired().await.expect("sweep"), 1, "an expired file of another layout is swept");
    assert!(store.get(&id).await.expect("get").is_some());
}

#[tokio::test]
async fn traversal_shaped_ids_never_reach_the_filesystem() {
    let root = tempfile::tempdir().expect("tempdir");
    let dir = root.path().join("sessions");
    let store = FileStore::open(&dir).await.expect("open");
    let valid = sessionkit_integration_tests::support::key().to_string();
    let hostile = [
        "../../etc/passwd".to_string(),
        "../../../../../../../../../../../../../../../../../../etc/passwd".to_string(),
        format!("../{}", &valid[..40]),
        format!("{}/..", &valid[..40]),
        format!("..\\{}", &valid[..40]),
        format!("{}%2F", &valid[..40]),
        format!("/{}", &valid[..42]),
        format!("{}\0", &valid[..42]),
        format!("{}.", &valid[..42]),
        format!("{}~", &valid[..42]),
        ".".repeat(43),
        String::new(),
    ];
    for text in &hostile {
        assert_eq!(StoreKey::parse(text), None, "{text:?} must not parse as a session id");
    }
    // The store is reachable only through parsed ids; exercise every
    // operation and check that the directory holds nothing else.
    let ids: Vec<StoreKey> = (0..20).map(|_| sessionkit_integration_tests::support::key()).collect();
    for (i, id) in ids.iter().enumerate() {
        store.set(id, &map(json!({ "i": i })), Some(in_secs(60))).await.expect("set");
    }
    let mut changes = Changes::new();
    changes.set("touched", json!(true));
    assert_eq!(store.update(&ids[0], &changes, None).await.expect("update"), UpdateOutcome::Applied);
    assert!(store.touch(&ids[1], Some(in_secs(120))).await.expect("touch"));
    store.delete(&ids[2]).await.expect("delete");
    store.delete_expired().await.expect("sweep");

    let mut expected: Vec<String> = ids.iter().skip(3).chain(&ids[..2]).map(|id| format!("{id}.json")).collect();
    expected.extend([".leases", ".locks", ".users"].map(String::from));
    expected.sort();
    assert_eq!(listing(&dir), expected, "the directory holds only `<id>.json` files named by valid ids");
    assert_eq!(listing(root.path()), vec!["sessions".to_string()], "nothing is written outside the directory");
}

#[tokio::test]
async fn a_corrupt_file_reads_as_absent_and_a_new_session_replaces_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store_in(&dir).await;
    let (damaged, healthy) =
        (sessionkit_integration_tests::support::key(), sessionkit_integration_tests::support::key());
    store.set(&damaged, &map(json!({ "a": 1 })), Some(in_secs(60))).await.expect("set");
    store.set(&healthy, &map(json!({ "b": 2 })), Some(in_secs(60))).await.expect("set");
    let expired = sessionkit_integration_tests::support::key();
    store.set(&expired, &map(json!({})), Some(expiry::now() - Duration::from_secs(1))).await.expect("set");

    for garbage in [&b"{ not json"[..], b"", b"[1, 2, 3]", b"{\"data\": 5}", b"\xff\xfe binary \x00"] {
        fs::write(session_file(dir.path(), &damaged), garbage).expect("corrupt the file");
        assert_eq!(store.get(&damaged).await.expect("a damaged file is not an error"), None);
        let mut changes = Changes::new();
        changes.set("c", json!(3));
        assert_eq!(store.update(&damaged, &changes, None).await.expect("update"), UpdateOutcome::Missing);
        assert!(!store.touch(&damaged, None).await.expect("touch"));
        assert_eq!(
            fs::read(session_file(dir.path(), &damaged)).expect("read"),
            garbage,
            "the damaged file is left as is"
        );
    }
    assert_eq!(store.delete_expired().await.expect("a damaged file must not break the sweep"), 1);
    assert!(session_file(dir.path(), &damaged).exists(), "the sweeper cannot know the expiry, so it keeps the file");
    assert_eq!(store.get(&healthy).await.expect("get").map(|r| r.data), Some(map(json!({ "b": 2 }))));

    // A session written afresh under that id replaces the damaged file.
    store.set(&damaged, &map(json!({ "fresh": true })), None).await.expect("set over a damaged file");
    assert_eq!(store.get(&damaged).await.expect("get").map(|r| r.data), Some(map(json!({ "fresh": true }))));
    store.delete(&damaged).await.expect("delete");
}

#[tokio::test]
async fn a_truncated_file_reads_as_absent_and_is_swept_once_expired() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store_in(&dir).await;
    let big = map(json!({ "blob": "x".repeat(4096) }));
    let (live, expired) = (sessionkit_integration_tests::support::key(), sessionkit_integration_tests::support::key());
    store.set(&live, &big, Some(in_secs(60))).await.expect("set");
    store.set(&expired, &big, Some(expiry::now() + Duration::from_millis(200))).await.expect("set");
    for id in [&live, &expired] {
        let path = session_file(dir.path(), id);
        let len = fs::metadata(&path).expect("metadata").len();
        fs::File::options().write(true).open(&path).expect("open").set_len(len / 2).expect("truncate");
        assert_eq!(store.get(id).await.expect("a truncated file is not an error"), None);
    }
    tokio::time::sleep(Duration::from_millis(250)).await;
    // Its expiry is in the intact first bytes, so the sweeper can still tell.
    assert_eq!(store.delete_expired().await.expect("sweep"), 1);
    assert!(!session_file(dir.path(), &expired).exists(), "an expired truncated file is swept");
    assert!(session_file(dir.path(), &live).exists(), "a live truncated file is kept until it expires");
}

#[tokio::test]
async fn leftover_temporary_files_never_break_reads_and_are_swept_once_stale() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store_in(&dir).await;
    let id = sessionkit_integration_tests::support::key();
    let record = SessionRecord::new(map(json!({ "committed": true })), Some(in_secs(60)));
    store.set(&id, &record.data, record.expires_at).await.expect("set");

    // What a writer killed mid-write leaves: a half-written temporary file
    // named after the session, and one from before the name scheme.
    let stale = dir.path().join(format!(".tmp-{id}-4242-7"));
    let fresh = dir.path().join(format!(".tmp-{id}-4242-8"));
    let stale_unnamed = dir.path().join(".tmp-probe-4242-9");
    for path in [&stale, &fresh, &stale_unnamed] {
        fs::write(path, br#"{"expiresAt":null,"data":{"half"#).expect("write a leftover");
    }
    backdate(&stale, Duration::from_secs(3600));
    backdate(&stale_unnamed, Duration::from_secs(3600));

    assert_eq!(store.get(&id).await.expect("get").as_ref(), Some(&record), "leftovers must not affect reads");
    let mut changes = Changes::new();
    changes.set("after", json!(1));
    assert_eq!(store.update(&id, &changes, record.expires_at).await.expect("update"), UpdateOutcome::Applied);

    assert_eq!(store.delete_expired().await.expect("sweep"), 0, "temporary files are not counted as sessions");
    assert!(!stale.exists() && !stale_unnamed.exists(), "stale temporary files are removed");
    assert!(fresh.exists(), "a recent temporary file may belong to a writer at work: it is kept");
    let got = store.get(&id).await.expect("get").expect("the session survives the sweep");
    assert_eq!(got.data, map(json!({ "committed": true, "after": 1 })));
}

#[tokio::test]
async fn a_path_that_is_not_a_directory_is_a_clear_config_error() {
    let root = tempfile::tempdir().expect("tempdir");
    let file = root.path().join("sessions");
    fs::write(&file, b"I am a file").expect("write");
    for path in [file.clone(), file.join("nested")] {
        let err = FileStore::open(&path).await.expect_err("a file is not a session directory");
        match &err {
            StoreError::Config { message, .. } => {
                assert!(message.contains("session directory"), "unclear message: {message}");
                assert!(message.contains(&*file.to_string_lossy()), "the message must name the path: {message}");
            }
            other => panic!("expected a configuration error, got {other:?}"),
        }
    }
    assert_eq!(fs::read(&file).expect("read"), b"I am a file", "the file is left alone");
}

#[cfg(unix)]
#[tokio::test]
async fn sessions_are_readable_by_their_owner_only() {
    use std::os::unix::fs::PermissionsExt as _;

    let root = tempfile::tempdir().expect("tempdir");
    let dir = root.path().join("sessions");
    let store = FileStore::open(&dir).await.expect("open");
    let id = sessionkit_integration_tests::support::key();
    store.set(&id, &map(json!({ "secret": 1 })), None).await.expect("set");
    let mode = |path: &Path| fs::metadata(path).expect("metadata").permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700, "a directory the store creates is private");
    assert_eq!(mode(&session_file(&dir, &id)), 0o600, "session files are private");
}

/// Two stores on one directory share nothing but the files and their locks,
/// like two processes: concurrent updates through both lose no key.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_stores_on_one_directory_update_atomically() {
    const WRITERS: usize = 64;
    let dir = tempfile::tempdir().expect("tempdir");
    let stores = [Arc::new(store_in(&dir).await), Arc::new(store_in(&dir).await)];
    let id = sessionkit_integration_tests::support::key();
    stores[0].set(&id, &map(json!({ "base": true })), Some(in_secs(600))).await.expect("set");
    let tasks: Vec<_> = (0..WRITERS)
        .map(|i| {
            let (store, id) = (Arc::clone(&stores[i % 2]), id.clone());
            tokio::spawn(async move {
                let mut changes = Changes::new();
                changes.set(format!("k{i}"), json!(i));
                store.update(&id, &changes, Some(in_secs(600))).await
            })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.expect("task").expect("update"), UpdateOutcome::Applied);
    }
    let got = stores[1].get(&id).await.expect("get").expect("the session");
    assert_eq!(got.data.len(), WRITERS + 1, "updates through two stores lost keys: the file lock does not hold");
}

/// An update racing a delete from another store (process) either lands
/// before the delete or finds the session gone: it never brings it back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_update_racing_a_delete_elsewhere_never_resurrects_the_session() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ours, theirs) = (Arc::new(store_in(&dir).await), Arc::new(store_in(&dir).await));
    for _ in 0..50 {
        let id = sessionkit_integration_tests::support::key();
        ours.set(&id, &map(json!({ "cart": [] })), Some(in_secs(600))).await.expect("set");
        let update = {
            let (store, id) = (Arc::clone(&ours), id.clone());
            tokio::spawn(async move {
                let mut changes = Changes::new();
                changes.set("cart", json!([1]));
                store.update(&id, &changes, Some(in_secs(600))).await
            })
        };
        let delete = {
            let (store, id) = (Arc::clone(&theirs), id.clone());
            tokio::spawn(async move { store.delete(&id).await })
        };
        let _: UpdateOutcome = update.await.expect("task").expect("update");
        delete.await.expect("task").expect("delete");
        assert_eq!(ours.get(&id).await.expect("get"), None, "an update brought a deleted session back");
    }
}

/// The helper program that writes to a store from another process.
const WRITER: &str = env!("CARGO_BIN_EXE_file-store-writer");

/// Real processes (two helpers and this test) updating one session through
/// their own stores: only the lock files coordinate them, and no key is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn updates_from_three_processes_lose_no_key() {
    const PER_WRITER: usize = 40;
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store_in(&dir).await;
    let id = sessionkit_integration_tests::support::key();
    store.set(&id, &map(json!({ "base": true })), None).await.expect("set");
    let children: Vec<_> = ["a", "b"]
        .iter()
        .map(|prefix| {
            std::process::Command::new(WRITER)
                .arg(dir.path())
                .args(["update", id.as_str(), prefix, &PER_WRITER.to_string()])
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("start a writer process")
        })
        .collect();
    for i in 0..PER_WRITER {
        let mut changes = Changes::new();
        changes.set(format!("c{i}"), json!(i));
        assert_eq!(store.update(&id, &changes, None).await.expect("update"), UpdateOutcome::Applied);
    }
    for child in children {
        let output = tokio::task::spawn_blocking(move || child.wait_with_output()).await.expect("join").expect("wait");
        assert!(output.status.success(), "a writer process failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    let got = store.get(&id).await.expect("get").expect("the session");
    let lost: Vec<String> = ["a", "b", "c"]
        .iter()
        .flat_map(|prefix| (0..PER_WRITER).map(move |i| format!("{prefix}{i}")))
        .filter(|key| !got.data.contains_key(key))
        .collect();
    assert!(lost.is_empty(), "updates from separate processes lost keys {lost:?}");
}
