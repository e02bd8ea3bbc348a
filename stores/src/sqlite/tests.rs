//! The store around its writer: a commit that panics (in a store that can
//! reopen its file and in ones that cannot), a caller that gives up while
//! the writer waits, and the modes of the files the store creates.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rusqlite::Connection;
use sessionkit::{Changes, SessionStore, UpdateOutcome};

use super::SqliteStore;
use crate::group_commit::test_hooks::{
    assert_only_acknowledged_writes_stored, chain, numbered, panicking_data, race_a_panicking_write,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_that_panics_fails_its_batch_and_the_writer_goes_on_with_a_new_connection() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("s.db");
    let store = Arc::new(SqliteStore::open(&path).await.expect("open"));
    let before = sessionkit::testing::checks::key();
    store.set(&before, &numbered(0), None).await.expect("set");

    let race = race_a_panicking_write(&store).await;
    store.health().expect("the writer restarted");
    assert_only_acknowledged_writes_stored(&*store, &race).await;

    // Every kind of write works on the new connection.
    let after = sessionkit::testing::checks::key();
    store.set(&after, &numbered(1), None).await.expect("set after the panic");
    let mut changes = Changes::new();
    changes.set("updated", serde_json::json!(true));
    assert_eq!(store.update(&before, &changes, None).await.expect("update"), UpdateOutcome::Applied);
    assert!(store.touch(&after, None).await.expect("touch"));
    store.delete(&after).await.expect("delete");
    assert_eq!(store.get(&after).await.expect("get"), None);
    drop(store);

    let reopened = SqliteStore::open(&path).await.expect("reopen");
    assert_eq!(
        reopened.get(&before).await.expect("get").map(|r| r.data),
        Some(changes.applied_to(numbered(0)).expect("applies"))
    );
    assert_only_acknowledged_writes_stored(&reopened, &race).await;
}

#[tokio::test]
async fn a_store_on_a_handed_over_connection_is_out_of_service_after_a_panic_and_says_so() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("app.db");
    let store = SqliteStore::from_connection(Connection::open(&path).expect("open")).await.expect("store");
    let kept = sessionkit::testing::checks::key();
    store.set(&kept, &numbered(0), None).await.expect("set");
    let panicked = sessionkit::testing::checks::key();
    let err = store.set(&panicked, &panicking_data(), None).await.expect_err("the commit panics");
    assert!(chain(&err).contains("panicked"), "{}", chain(&err));

    for _ in 0..3 {
        let health = chain(&store.health().expect_err("out of service for good"));
        assert!(health.contains("from_connection") && health.contains("builds a new store"), "{health}");
        let read = store.get(&kept).await.expect_err("reads fail at once");
        assert_eq!(chain(&read), health, "every operation reports the lasting error");
        let write =
            store.set(&sessionkit::testing::checks::key(), &numbered(1), None).await.expect_err("writes fail at once");
        assert_eq!(chain(&write), health);
        assert!(store.delete_expired().await.is_err());
    }
    drop(store);

    // What the application does: a new connection, a new store.
    let store = SqliteStore::from_connection(Connection::open(&path).expect("open")).await.expect("store");
    store.health().expect("a new store is healthy");
    assert_eq!(store.get(&kept).await.expect("get").map(|r| r.data), Some(numbered(0)));
    assert_eq!(store.get(&panicked).await.expect("get"), None, "the panicked write was rolled back");
}

#[tokio::test]
async fn an_in_memory_store_is_out_of_service_after_a_panic_rather_than_silently_empty() {
    let store = SqliteStore::open(":memory:").await.expect("open");
    let kept = sessionkit::testing::checks::key();
    store.set(&kept, &numbered(0), None).await.expect("set");
    store.set(&sessionkit::testing::checks::key(), &panicking_data(), None).await.expect_err("the commit panics");
    let health = chain(&store.health().expect_err("out of service"));
    assert!(health.contains("in memory") && health.contains("would start empty"), "{health}");
    assert_eq!(chain(&store.get(&kept).await.expect_err("reads fail")), health);
}

/// Waits until `done` holds, for at most ten seconds.
async fn until(what: &str, done: impl Fn() -> bool) {
    for _ in 0..10_000 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    panic!("timed out waiting until {what}");
}

// A current-thread runtime, so that the spawned write has certainly been
// sent once the test has slept.
#[tokio::test(flavor = "current_thread")]
async fn a_write_whose_caller_gave_up_before_the_writer_took_it_is_never_applied() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("s.db");
    let store = Arc::new(SqliteStore::open(&path).await.expect("open"));
    // Another connection holds the write lock: the writer's next commit
    // waits for it (up to the 5 s busy timeout), like a very slow disk.
    let blocker = Connection::open(&path).expect("open");
    blocker.execute_batch("BEGIN IMMEDIATE").expect("take the write lock");

    let first = sessionkit::testing::checks::key();
    let waiting = {
        let (store, first) = (Arc::clone(&store), first.clone());
        tokio::spawn(async move { store.set(&first, &numbered(1), None).await })
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    until("the writer takes the first write", || store.writer.queued() == 0).await;

    let abandoned = sessionkit::testing::checks::key();
    let gave_up = tokio::time::timeout(Duration::from_millis(100), store.set(&abandoned, &numbered(2), None)).await;
    assert!(gave_up.is_err(), "the write was answered while the writer was stuck");
    assert_eq!(store.writer.queued(), 1, "the abandoned write waits in the queue");
    assert!(!waiting.is_finished(), "the writer was not stuck: the test proves nothing");

    blocker.execute_batch("COMMIT").expect("let go of the lock");
    waiting.await.expect("task").expect("the first write commits");
    let later = sessionkit::testing::checks::key();
    store.set(&later, &numbered(3), None).await.expect("a later write commits");
    assert_eq!(store.get(&abandoned).await.expect("get"), None, "a write nobody waited for was applied");
    assert!(store.get(&first).await.expect("get").is_some());
    assert!(store.get(&later).await.expect("get").is_some());
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap_or_else(|err| panic!("{}: {err}", path.display())).permissions().mode() & 0o777
}

#[cfg(unix)]
fn with_suffix(path: &Path, suffix: &str) -> std::path::PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    name.into()
}

#[cfg(unix)]
#[tokio::test]
async fn the_database_files_a_store_creates_are_private_and_an_existing_file_keeps_its_mode() {
    use std::os::unix::fs::PermissionsExt;

    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("sessions.db");
    let store = SqliteStore::open(&path).await.expect("open");
    store.set(&sessionkit::testing::checks::key(), &numbered(0), None).await.expect("set");
    // While the store is open: SQLite removes `-wal` and `-shm` on close.
    for file in [path.clone(), with_suffix(&path, "-wal"), with_suffix(&path, "-shm")] {
        assert_eq!(mode(&file), 0o600, "{} is not private", file.display());
    }
    drop(store);

    let shared = dir.path().join("shared.db");
    std::fs::write(&shared, b"").expect("create");
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o640)).expect("chmod");
    let store = SqliteStore::open(&shared).await.expect("open");
    store.set(&sessionkit::testing::checks::key(), &numbered(0), None).await.expect("set");
    assert_eq!(mode(&shared), 0o640, "the store changed the mode of an existing file");
    assert_eq!(mode(&with_suffix(&shared, "-wal")), 0o640, "the WAL follows its database file");
}

/// The `user` column of every row, read with a connection of its own.
fn user_column(path: &Path) -> Vec<(String, Option<String>)> {
    let conn = Connection::open(path).expect("open");
    let mut statement = conn.prepare("SELECT id, \"user\" FROM http_sessions ORDER BY id").expect("select");
    statement
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows")
}

#[tokio::test]
async fn the_user_column_follows_every_write() {
    use sessionkit::reserved::USER;
    use sessionkit::{SessionMap, StoreKey};

    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("s.db");
    let store = SqliteStore::open(&path).await.expect("open");
    let owned = |user: &str| -> SessionMap {
        let mut data = numbered(0);
        data.insert(USER.to_owned(), serde_json::json!(user));
        data
    };
    let mut keys: Vec<StoreKey> = (0..4).map(|_| sessionkit::testing::checks::key()).collect();
    // In the order SQLite lists them: by their text.
    keys.sort_by(|x, y| x.as_str().cmp(y.as_str()));
    let [a, b, c, d] = <[StoreKey; 4]>::try_from(keys).expect("four keys");
    let column = |entries: &[(&StoreKey, Option<&str>)]| -> Vec<(String, Option<String>)> {
        entries.iter().map(|(key, user)| (key.as_str().to_owned(), user.map(str::to_owned))).collect()
    };

    store.set(&a, &owned("ada"), None).await.expect("set");
    store.set(&b, &numbered(1), None).await.expect("set");
    store.set(&d, &owned("ada"), None).await.expect("set");
    // A user that is not a string is no user, as `reserved::user_of` reads it.
    let mut odd = numbered(2);
    odd.insert(USER.to_owned(), serde_json::json!(7));
    store.set(&c, &odd, None).await.expect("set");
    assert_eq!(user_column(&path), column(&[(&a, Some("ada")), (&b, None), (&c, None), (&d, Some("ada"))]));

    let mut login = Changes::new();
    login.set(USER, serde_json::json!("bob"));
    assert_eq!(store.update(&b, &login, None).await.expect("update"), UpdateOutcome::Applied);
    let mut logout = Changes::new();
    logout.remove(USER);
    assert_eq!(store.update(&a, &logout, None).await.expect("update"), UpdateOutcome::Applied);
    store.set(&d, &numbered(3), None).await.expect("a set without a user clears the column");
    store.delete(&c).await.expect("delete");
    assert_eq!(user_column(&path), column(&[(&a, None), (&b, Some("bob")), (&d, None)]));

    // The entry moves with a rename, and goes with a clear.
    assert_eq!(store.rename(&b, &c, &Changes::new(), None).await.expect("rename"), UpdateOutcome::Applied);
    assert_eq!(user_column(&path), column(&[(&a, None), (&c, Some("bob")), (&d, None)]));
    let mut clear = Changes::new();
    clear.clear();
    assert_eq!(store.update(&c, &clear, None).await.expect("update"), UpdateOutcome::Applied);
    assert_eq!(user_column(&path), column(&[(&a, None), (&c, None), (&d, None)]));

    // A row written by an earlier version (data with a user, no column) is
    // indexed by the next update, even one that keeps the user.
    Connection::open(&path)
        .expect("open")
        .execute(
            "UPDATE http_sessions SET data = ?2, \"user\" = NULL WHERE id = ?1",
            rusqlite::params![d.as_str(), serde_json::to_string(&owned("eve")).expect("json")],
        )
        .expect("an old write");
    let mut visit = Changes::new();
    visit.increment("visits", 1).expect("increment");
    assert_eq!(store.update(&d, &visit, None).await.expect("update"), UpdateOutcome::Applied);
    assert_eq!(user_column(&path), column(&[(&a, None), (&c, None), (&d, Some("eve"))]));
}
