//! `SqliteStore`: the conformance kit on every way to construct it, restart
//! survival, and bad input (hostile table names, corrupt rows, files that
//! are not databases, foreign tables), each with a clear error or a fresh
//! session and nothing lost.

use std::error::Error as _;
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use serde_json::json;
use sessionkit::{Changes, SessionMap, SessionRecord, SessionStore, StoreError, StoreKey, UpdateOutcome, expiry};
use sessionkit_integration_tests::support::{error_chain, in_secs, map};
use sessionkit_stores::SqliteStore;
use sessionkit_stores::rusqlite::{self, Connection, params};
use tempfile::TempDir;

/// A store on a fresh database file, opened from its path.
async fn on_path() -> (SqliteStore, TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(dir.path().join("sessions.db")).await.expect("open");
    (store, dir)
}

/// A store on a connection to a fresh database file.
async fn on_connection() -> (SqliteStore, TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let conn = Connection::open(dir.path().join("sessions.db")).expect("connection");
    let store = SqliteStore::from_connection(conn).await.expect("from_connection");
    (store, dir)
}

mod conformance_from_path {
    sessionkit::store_conformance_tests!(async {
        let (store, dir) = super::on_path().await;
        sessionkit::testing::Guarded::new(store, dir)
    });
}

mod conformance_from_file_connection {
    sessionkit::store_conformance_tests!(async {
        let (store, dir) = super::on_connection().await;
        sessionkit::testing::Guarded::new(store, dir)
    });
}

mod conformance_from_in_memory_connection {
    sessionkit::store_conformance_tests!(async {
        let conn = sessionkit_stores::rusqlite::Connection::open_in_memory().expect("in-memory connection");
        sessionkit_stores::SqliteStore::from_connection(conn).await.expect("from_connection")
    });
}

mod conformance_from_memory_path {
    sessionkit::store_conformance_tests!(async {
        sessionkit_stores::SqliteStore::open(":memory:").await.expect("open :memory:")
    });
}

/// Every row of `table` in the database file at `path`, read with a
/// connection of its own.
fn rows(path: &Path, table: &str) -> Vec<(String, Option<String>, Option<i64>)> {
    let conn = Connection::open(path).expect("inspect connection");
    let mut statement = conn.prepare(&format!("SELECT * FROM \"{table}\" ORDER BY 1")).expect("select");
    statement
        .query_map([], |row| Ok((row.get::<_, String>(0)?, row.get(1).ok(), row.get(2).ok())))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows")
}

fn table_names(path: &Path) -> Vec<String> {
    let conn = Connection::open(path).expect("inspect connection");
    let mut statement =
        conn.prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").expect("select");
    statement.query_map([], |row| row.get(0)).expect("query").collect::<Result<_, _>>().expect("names")
}

// --- Restart survival ----------------------------------------------------

/// Sessions of several shapes, and the records they must read back as.
fn varied_sessions() -> Vec<(StoreKey, SessionRecord)> {
    vec![
        (
            sessionkit_integration_tests::support::key(),
            SessionRecord::new(
                map(json!({ "user": { "name": "Zoë", "roles": ["admin"] }, "cart": [1, 2, 3], "emoji": "🦀" })),
                Some(in_secs(3600)),
            ),
        ),
        (sessionkit_integration_tests::support::key(), SessionRecord::new(map(json!({ "forever": true })), None)),
        (sessionkit_integration_tests::support::key(), SessionRecord::new(SessionMap::new(), Some(in_secs(60)))),
    ]
}

async fn write_all(store: &SqliteStore, sessions: &[(StoreKey, SessionRecord)]) {
    for (id, record) in sessions {
        store.set(id, &record.data, record.expires_at).await.expect("set");
    }
}

async fn assert_all_read_back(store: &SqliteStore, sessions: &[(StoreKey, SessionRecord)]) {
    for (id, expected) in sessions {
        let got = store.get(id).await.expect("get");
        assert_eq!(got.as_ref(), Some(expected), "a session must survive a restart unchanged, expiry included");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_survive_a_restart_from_the_same_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("sessions.db");
    let mut sessions = varied_sessions();
    let updated = sessionkit_integration_tests::support::key();
    let deleted = sessionkit_integration_tests::support::key();
    {
        let store = SqliteStore::open(&path).await.expect("open");
        write_all(&store, &sessions).await;
        // An update and a touch must be as durable as a set, and a delete
        // must stay deleted.
        store.set(&updated, &map(json!({ "a": 1 })), Some(in_secs(60))).await.expect("set");
        let mut changes = Changes::new();
        changes.set("b", json!(2));
        let later = in_secs(7200);
        assert_eq!(store.update(&updated, &changes, Some(later)).await.expect("update"), UpdateOutcome::Applied);
        assert!(store.touch(&sessions[2].0, None).await.expect("touch"));
        sessions[2].1.expires_at = None;
        sessions.push((updated.clone(), SessionRecord::new(map(json!({ "a": 1, "b": 2 })), Some(later))));
        store.set(&deleted, &map(json!({ "gone": true })), None).await.expect("set");
        store.delete(&deleted).await.expect("delete");
    }
    let reopened = SqliteStore::open(&path).await.expect("reopen");
    assert_all_read_back(&reopened, &sessions).await;
    assert_eq!(reopened.get(&deleted).await.expect("get"), None, "a deleted session came back after a restart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_written_through_a_connection_survive_reopening_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("app.db");
    let sessions = varied_sessions();
    {
        let conn = Connection::open(&path).expect("connection");
        let store = SqliteStore::builder().table("web_sessions").from_connection(conn).await.expect("from_connection");
        write_all(&store, &sessions).await;
    }
    let by_path = SqliteStore::builder().table("web_sessions").open(&path).await.expect("open");
    assert_all_read_back(&by_path, &sessions).await;
    drop(by_path);
    let conn = Connection::open(&path).expect("connection");
    let by_connection =
        SqliteStore::builder().table("web_sessions").from_connection(conn).await.expect("from_connection");
    assert_all_read_back(&by_connection, &sessions).await;
}

/// Writes that were in flight when the store was dropped are finished, not
/// lost: the drop drains the writer's queue before closing the database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_concurrent_write_survives_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("sessions.db");
    let store = Arc::new(SqliteStore::open(&path).await.expect("open"));
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let id = sessionkit_integration_tests::support::key();
                store.set(&id, &map(json!({ "n": i })), None).await.map(|()| (id, i))
            })
        })
        .collect();
    let mut written = Vec::new();
    for task in tasks {
        written.push(task.await.expect("task").expect("set"));
    }
    drop(Arc::into_inner(store).expect("the only handle"));
    let reopened = SqliteStore::open(&path).await.expect("reopen");
    for (id, i) in written {
        let got = reopened.get(&id).await.expect("get").expect("an acknowledged write was lost");
        assert_eq!(got.data.get("n"), Some(&json!(i)));
    }
}

// --- Table names ---------------------------------------------------------

const HOSTILE_NAMES: [&str; 9] = [
    "x; DROP TABLE y",
    "y\"; DROP TABLE y; --",
    "\"quoted\"",
    "",
    "1starts_with_a_digit",
    "sessions-with-dashes",
    "séssions",
    "sqlite_master",
    "a_name_that_is_far_too_long_to_be_a_table_name_of_a_session_store",
];

/// A database with a table `y` holding one row: what a hostile name would
/// try to destroy.
fn database_with_a_victim_table(path: &Path) {
    let conn = Connection::open(path).expect("connection");
    conn.execute_batch("CREATE TABLE y (v TEXT); INSERT INTO y VALUES ('precious');").expect("victim table");
}

#[tokio::test]
async fn hostile_table_names_are_rejected_before_touching_the_database() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("app.db");
    database_with_a_victim_table(&path);
    for name in HOSTILE_NAMES {
        let err = SqliteStore::builder().table(name).open(&path).await.expect_err(name);
        assert!(matches!(err, StoreError::Config { .. }), "{name:?}: {err:?}");
        let message = err.to_string();
        assert!(message.contains("invalid SQLite session table name"), "{name:?}: {message}");
        assert!(message.contains(&format!("{name:?}")), "the error must show the rejected name: {message}");

        let conn = Connection::open(&path).expect("connection");
        let err = SqliteStore::builder().table(name).from_connection(conn).await.expect_err(name);
        assert!(matches!(err, StoreError::Config { .. }), "{name:?}: {err:?}");
    }
    assert_eq!(table_names(&path), ["y"], "a rejected name must not create or drop anything");
    let conn = Connection::open(&path).expect("connection");
    let kept: String = conn.query_row("SELECT v FROM y", [], |row| row.get(0)).expect("the victim table is intact");
    assert_eq!(kept, "precious");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_custom_table_works_and_two_tables_in_one_database_are_separate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("app.db");
    database_with_a_victim_table(&path);
    let admin = SqliteStore::builder().table("admin_sessions").open(&path).await.expect("admin");
    let public = SqliteStore::builder().table("Public_Sessions_2").open(&path).await.expect("public");
    assert_eq!(admin.table(), "admin_sessions");

    let shared = sessionkit_integration_tests::support::key();
    admin.set(&shared, &map(json!({ "who": "admin" })), None).await.expect("set");
    public.set(&shared, &map(json!({ "who": "public" })), None).await.expect("set");
    let only_admin = sessionkit_integration_tests::support::key();
    admin.set(&only_admin, &map(json!({})), Some(expiry::now() - Duration::from_secs(1))).await.expect("set");
    public
        .set(
            &sessionkit_integration_tests::support::key(),
            &map(json!({})),
            Some(expiry::now() - Duration::from_secs(1)),
        )
        .await
        .expect("set");

    assert_eq!(admin.get(&shared).await.expect("get").map(|r| r.data), Some(map(json!({ "who": "admin" }))));
    assert_eq!(public.get(&shared).await.expect("get").map(|r| r.data), Some(map(json!({ "who": "public" }))));
    assert_eq!(public.delete_expired().await.expect("sweep"), 1, "a sweep must stay in its own table");
    admin.delete(&shared).await.expect("delete");
    assert!(public.get(&shared).await.expect("get").is_some(), "a delete must stay in its own table");
    assert_eq!(rows(&path, "admin_sessions").len(), 1, "the admin table still holds its expired session");
    assert_eq!(
        table_names(&path),
        ["Public_Sessions_2", "Public_Sessions_2_leases", "admin_sessions", "admin_sessions_leases", "y"],
        "each store has its sessions table and its lease table, and nothing else is created"
    );
}

#[tokio::test]
async fn a_foreign_table_with_the_same_name_is_a_clear_error_and_is_left_alone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("app.db");
    {
        let conn = Connection::open(&path).expect("connection");
        conn.execute_batch("CREATE TABLE http_sessions (name TEXT); INSERT INTO http_sessions VALUES ('mine');")
            .expect("foreign table");
    }
    let err = SqliteStore::open(&path).await.expect_err("a table of another shape");
    assert!(matches!(err, StoreError::Config { .. }), "{err:?}");
    assert!(error_chain(&err).contains("exists but is not a session table"), "{}", error_chain(&err));
    assert!(err.source().is_some(), "the SQLite error must be kept as the cause");

    // The same table with an `id` column but no key on it cannot be upserted into.
    let conn = Connection::open(&path).expect("connection");
    conn.execute_batch("CREATE TABLE keyless (id TEXT, data TEXT, expires_at INTEGER)").expect("keyless table");
    let err = SqliteStore::builder().table("keyless").from_connection(conn).await.expect_err("no primary key");
    assert!(error_chain(&err).contains("exists but is not a session table"), "{}", error_chain(&err));

    assert_eq!(rows(&path, "http_sessions"), [("mine".to_owned(), None, None)]);
}

#[tokio::test]
async fn a_connection_inside_a_transaction_is_refused() {
    let conn = Connection::open_in_memory().expect("connection");
    conn.execute_batch("BEGIN").expect("begin");
    let err = SqliteStore::from_connection(conn).await.expect_err("inside a transaction");
    assert!(matches!(err, StoreError::Config { .. }), "{err:?}");
    assert!(err.to_string().contains("inside a transaction"), "{err}");
}

// --- Files that are not databases ----------------------------------------

#[tokio::test]
async fn a_file_that_is_not_a_database_is_a_clear_error_and_stays_unchanged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("notes.txt");
    let contents = "These are my notes, not a database.\n".repeat(200);
    std::fs::write(&path, &contents).expect("write");

    let err = SqliteStore::open(&path).await.expect_err("not a database");
    assert!(matches!(err, StoreError::Config { .. }), "{err:?}");
    assert!(err.to_string().contains("not a SQLite database"), "{err}");
    assert!(err.to_string().contains("notes.txt"), "the error must name the file: {err}");
    let source = err.source().expect("the rusqlite error is kept as the cause");
    assert!(source.downcast_ref::<rusqlite::Error>().is_some(), "{source:?}");

    let conn = Connection::open(&path).expect("SQLite opens lazily");
    let err = SqliteStore::from_connection(conn).await.expect_err("not a database");
    assert!(err.to_string().contains("not a SQLite database"), "{err}");

    assert_eq!(std::fs::read_to_string(&path).expect("read"), contents, "the file must not be modified");
}

#[tokio::test]
async fn a_directory_or_a_missing_parent_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let err = SqliteStore::open(dir.path()).await.expect_err("a directory");
    assert!(matches!(err, StoreError::Config { .. }), "{err:?}");
    assert!(err.to_string().contains("cannot open the SQLite database"), "{err}");
    assert!(err.source().is_some());

    let err = SqliteStore::open(dir.path().join("no/such/dir/sessions.db")).await.expect_err("no parent");
    assert!(matches!(err, StoreError::Config { .. }), "{err:?}");
}

// --- Corrupt rows --------------------------------------------------------

/// Log lines written by every test in this binary.
fn logs() -> &'static Mutex<Vec<u8>> {
    static LOGS: OnceLock<Mutex<Vec<u8>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        struct Capture;
        impl Write for Capture {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                logs().lock().unwrap_or_else(|e| e.into_inner()).extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let subscriber = tracing_subscriber::fmt()
            .with_writer(|| Capture)
            .with_ansi(false)
            .with_max_level(tracing_subscriber::filter::LevelFilter::WARN);
        subscriber.try_init().expect("install the log capture");
        Mutex::new(Vec::new())
    })
}

/// Rows that the store did not write and cannot read: bad JSON, JSON that
/// is not an object, binary garbage, a number, an expiry that is text.
fn corrupt_rows() -> Vec<(StoreKey, rusqlite::types::Value, rusqlite::types::Value)> {
    use rusqlite::types::Value as Sql;
    vec![
        (sessionkit_integration_tests::support::key(), Sql::Text("{\"cart\": [1, 2".into()), Sql::Null),
        (sessionkit_integration_tests::support::key(), Sql::Text("[\"not\", \"an\", \"object\"]".into()), Sql::Null),
        (sessionkit_integration_tests::support::key(), Sql::Blob(vec![0xff, 0xfe, 0x00, 0x7b]), Sql::Null),
        (sessionkit_integration_tests::support::key(), Sql::Integer(42), Sql::Null),
        (sessionkit_integration_tests::support::key(), Sql::Text("{}".into()), Sql::Text("next tuesday".into())),
        (sessionkit_integration_tests::support::key(), Sql::Text("{}".into()), Sql::Real(1.0e300)),
    ]
}

async fn corrupt_rows_read_as_absent_and_are_kept(store: &SqliteStore, db: &Path) {
    let _ = logs();
    let good = sessionkit_integration_tests::support::key();
    store.set(&good, &map(json!({ "fine": true })), Some(in_secs(600))).await.expect("set");
    let corrupt = corrupt_rows();
    {
        let conn = Connection::open(db).expect("a second connection");
        for (id, data, expires_at) in &corrupt {
            conn.execute(
                "INSERT INTO http_sessions (id, data, expires_at) VALUES (?1, ?2, ?3)",
                params![id.as_str(), data, expires_at],
            )
            .expect("insert a corrupt row");
        }
    }
    let mut changes = Changes::new();
    changes.set("a", json!(1));
    for (id, _, _) in &corrupt {
        assert_eq!(store.get(id).await.expect("a corrupt row is not an error"), None, "a corrupt row reads as absent");
        assert_eq!(
            store.update(id, &changes, Some(in_secs(60))).await.expect("update of a corrupt row"),
            UpdateOutcome::Missing,
            "an update of a corrupt row is Missing"
        );
    }
    assert_eq!(
        store.get(&good).await.expect("get").map(|r| r.data),
        Some(map(json!({ "fine": true }))),
        "corrupt rows must not affect the others"
    );
    assert_eq!(rows(db, "http_sessions").len(), corrupt.len() + 1, "corrupt rows are kept for inspection");
    store.delete(&corrupt[0].0).await.expect("a corrupt row can be deleted");
    assert_eq!(rows(db, "http_sessions").len(), corrupt.len());

    let logged = String::from_utf8_lossy(&logs().lock().unwrap_or_else(|e| e.into_inner())).into_owned();
    assert!(logged.contains("a stored session is corrupt"), "corrupt rows must be logged: {logged}");
    assert!(logged.contains("not a JSON object") && logged.contains("not an integer"), "{logged}");
    for (id, _, _) in &corrupt {
        assert!(!logged.contains(id.as_str()), "a log line carries a session id: {logged}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_rows_read_as_absent_through_the_read_connections() {
    let (store, dir) = on_path().await;
    corrupt_rows_read_as_absent_and_are_kept(&store, &dir.path().join("sessions.db")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_rows_read_as_absent_through_a_given_connection() {
    let (store, dir) = on_connection().await;
    corrupt_rows_read_as_absent_and_are_kept(&store, &dir.path().join("sessions.db")).await;
}

// --- Engine behaviour ----------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_it_opened_is_in_wal_mode_with_an_expiry_index() {
    let (store, dir) = on_path().await;
    store.set(&sessionkit_integration_tests::support::key(), &SessionMap::new(), None).await.expect("set");
    let conn = Connection::open(dir.path().join("sessions.db")).expect("connection");
    let mode: String = conn.query_row("PRAGMA journal_mode", [], |row| row.get(0)).expect("journal mode");
    assert_eq!(mode, "wal");
    let plan: String = conn
        .query_row("EXPLAIN QUERY PLAN DELETE FROM http_sessions WHERE expires_at <= 5", [], |row| row.get(3))
        .expect("plan");
    assert!(plan.contains("http_sessions_expires_at"), "a sweep must use the expiry index: {plan}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sweep_larger_than_one_chunk_removes_every_expired_record() {
    let (store, _dir) = on_path().await;
    let past = expiry::now() - Duration::from_secs(1);
    let store = Arc::new(store);
    let tasks: Vec<_> = (0..64)
        .map(|task| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                for i in 0..40 {
                    let at = if (task + i) % 10 == 0 { None } else { Some(past) };
                    store.set(&sessionkit_integration_tests::support::key(), &SessionMap::new(), at).await?;
                }
                Ok::<_, StoreError>(())
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("task").expect("set");
    }
    // 2,560 records, 256 without expiry: 2,304 expired, over two chunks.
    assert_eq!(store.delete_expired().await.expect("sweep"), 2_304);
    assert_eq!(store.delete_expired().await.expect("sweep"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_stores_on_one_file_see_each_others_writes() {
    // Two processes sharing a database, as two stores in one: each has its
    // own writer, so they contend for SQLite's write lock.
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("sessions.db");
    let first = Arc::new(SqliteStore::open(&path).await.expect("first"));
    let second = Arc::new(SqliteStore::open(&path).await.expect("second"));
    let id = sessionkit_integration_tests::support::key();
    first.set(&id, &map(json!({ "base": true })), Some(in_secs(600))).await.expect("set");
    let tasks: Vec<_> = (0..40)
        .map(|i| {
            let store = if i % 2 == 0 { Arc::clone(&first) } else { Arc::clone(&second) };
            let id = id.clone();
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
    let got = second.get(&id).await.expect("get").expect("the session");
    assert_eq!(got.data.len(), 41, "updates from two stores on one file lost keys: {:?}", got.data.keys());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listings_use_the_user_index_and_scans_the_primary_key() {
    let (store, dir) = on_path().await;
    store.set(&sessionkit_integration_tests::support::key(), &SessionMap::new(), None).await.expect("set");
    let conn = Connection::open(dir.path().join("sessions.db")).expect("connection");
    let plan = |query: &str| -> String {
        let mut statement = conn.prepare(&format!("EXPLAIN QUERY PLAN {query}")).expect("plan");
        let rows = statement.query_map([], |row| row.get::<_, String>(3)).expect("query");
        rows.collect::<Result<Vec<_>, _>>().expect("rows").join("; ")
    };
    let listing =
        plan("SELECT data FROM http_sessions WHERE \"user\" = 'ada' AND (expires_at IS NULL OR expires_at > 5)");
    assert!(listing.contains("http_sessions_user"), "a listing must use the user index: {listing}");
    let scan = plan("SELECT data FROM http_sessions WHERE id > 'x' ORDER BY id LIMIT 10");
    assert!(scan.contains("USING INDEX sqlite_autoindex_http_sessions_1"), "a scan must walk the key: {scan}");
    assert!(!scan.contains("TEMP B-TREE"), "a scan must not sort: {scan}");
}

// --- Tables of the previous layout ---------------------------------------

/// The sessions table as the store created it before the user index.
const OLD_LAYOUT: &str = "CREATE TABLE http_sessions (id TEXT PRIMARY KEY NOT NULL, data TEXT NOT NULL, expires_at INTEGER); \
     CREATE INDEX http_sessions_expires_at ON http_sessions (expires_at);";

/// A database file with a table of the previous layout and rows of every
/// kind in it. Returns the keys each user must be listed with.
fn old_database(path: &Path) -> Vec<(&'static str, Vec<StoreKey>)> {
    use rusqlite::types::Value as Sql;
    let conn = Connection::open(path).expect("connection");
    conn.execute_batch(OLD_LAYOUT).expect("the old table");
    let hour = expiry::to_unix_ms(in_secs(3600));
    let past = expiry::to_unix_ms(expiry::now() - Duration::from_secs(1));
    let key = sessionkit_integration_tests::support::key;
    let user = sessionkit::reserved::USER;
    let (ada_phone, ada_laptop, ada_blob, bob, zoe) = (key(), key(), key(), key(), key());
    let rows: Vec<(StoreKey, Sql, Option<i64>)> = vec![
        (ada_phone.clone(), Sql::Text(json!({ user: "ada", "ua": "phone" }).to_string()), Some(hour)),
        (ada_laptop.clone(), Sql::Text(json!({ user: "ada", "cart": [1] }).to_string()), None),
        // Data as a blob reads as JSON too, so its user is listed.
        (ada_blob.clone(), Sql::Blob(json!({ user: "ada" }).to_string().into_bytes()), Some(hour)),
        (key(), Sql::Text(json!({ user: "ada" }).to_string()), Some(past)),
        (bob.clone(), Sql::Text(json!({ "a": { user: "not bob" }, user: "bob" }).to_string()), Some(hour)),
        (zoe.clone(), Sql::Text(json!({ user: "Zoë \"quoted\"" }).to_string()), Some(hour)),
        (key(), Sql::Text(json!({ "anonymous": true }).to_string()), Some(hour)),
        (key(), Sql::Text(json!({ user: 42 }).to_string()), Some(hour)),
        (key(), Sql::Text(format!("{{\"{user}\": \"ada\", broken")), Some(hour)),
        (key(), Sql::Text(json!(["ada"]).to_string()), Some(hour)),
        (key(), Sql::Blob(vec![0xff, 0x00, 0x7b]), Some(hour)),
    ];
    for (id, data, expires_at) in rows {
        conn.execute(
            "INSERT INTO http_sessions (id, data, expires_at) VALUES (?1, ?2, ?3)",
            params![id.as_str(), data, expires_at],
        )
        .expect("an old row");
    }
    vec![("ada", vec![ada_phone, ada_laptop, ada_blob]), ("bob", vec![bob]), ("Zoë \"quoted\"", vec![zoe])]
}

async fn assert_listed(store: &SqliteStore, expected: &[(&str, Vec<StoreKey>)]) {
    for (user, keys) in expected {
        let mut listed: Vec<StoreKey> =
            store.sessions_of(user).await.expect("sessions_of").into_iter().map(|(key, _)| key).collect();
        listed.sort();
        let mut keys = keys.clone();
        keys.sort();
        assert_eq!(listed, keys, "{user}'s sessions after the migration");
    }
}

fn columns(path: &Path, table: &str) -> Vec<String> {
    let conn = Connection::open(path).expect("connection");
    let mut statement = conn.prepare("SELECT name FROM pragma_table_info(?1) ORDER BY cid").expect("select");
    statement.query_map([table], |row| row.get(0)).expect("query").collect::<Result<_, _>>().expect("names")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_of_the_previous_layout_gets_the_user_column_and_lists_its_users_sessions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("old.db");
    let expected = old_database(&path);
    let before = rows(&path, "http_sessions");
    assert_eq!(columns(&path, "http_sessions"), ["id", "data", "expires_at"]);

    let store = SqliteStore::open(&path).await.expect("open an old table");
    assert_eq!(columns(&path, "http_sessions"), ["id", "data", "expires_at", "user"]);
    assert_listed(&store, &expected).await;
    assert_eq!(rows(&path, "http_sessions"), before, "the migration changed no session");
    // Every old session still works, and the index follows new writes.
    let (ada_phone, ada_laptop) = (&expected[0].1[0], &expected[0].1[1]);
    let mut changes = Changes::new();
    changes.increment("visits", 1).expect("increment");
    assert_eq!(store.update(ada_phone, &changes, Some(in_secs(600))).await.expect("update"), UpdateOutcome::Applied);
    assert!(store.revoke("ada", ada_laptop).await.expect("revoke"), "an old session can be revoked");
    assert_eq!(store.revoke_all("ada", Some(ada_phone)).await.expect("revoke_all"), 1, "the blob session goes");
    drop(store);

    // Opening again finds the column and changes nothing.
    let store = SqliteStore::open(&path).await.expect("reopen");
    assert_listed(&store, &[("ada", vec![ada_phone.clone()]), ("bob", expected[1].1.clone())]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_of_the_previous_layout_is_migrated_through_a_handed_over_connection_too() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("app.db");
    let expected = old_database(&path);
    let store = SqliteStore::from_connection(Connection::open(&path).expect("connection")).await.expect("store");
    assert_listed(&store, &expected).await;
    assert_eq!(columns(&path, "http_sessions"), ["id", "data", "expires_at", "user"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stores_opening_an_old_table_at_the_same_moment_migrate_it_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("old.db");
    let expected = old_database(&path);
    let opening: Vec<_> = (0..4)
        .map(|_| {
            let path = path.clone();
            tokio::spawn(async move { SqliteStore::open(&path).await })
        })
        .collect();
    for store in opening {
        let store = store.await.expect("task").expect("every store opens");
        assert_listed(&store, &expected).await;
    }
    assert_eq!(columns(&path, "http_sessions"), ["id", "data", "expires_at", "user"]);
}

#[tokio::test]
async fn a_foreign_table_is_not_migrated() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("app.db");
    {
        let conn = Connection::open(&path).expect("connection");
        conn.execute_batch("CREATE TABLE http_sessions (id TEXT, data TEXT, expires_at INTEGER)").expect("keyless");
    }
    let err = SqliteStore::open(&path).await.expect_err("no key on id");
    assert!(error_chain(&err).contains("exists but is not a session table"), "{}", error_chain(&err));
    assert_eq!(columns(&path, "http_sessions"), ["id", "data", "expires_at"], "a foreign table was altered");
    assert_eq!(table_names(&path), ["http_sessions"], "nothing else is created beside a foreign table");
}

// --- Leases across stores and processes ----------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_stores_on_one_file_share_leases_and_their_fencing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("sessions.db");
    let first = Arc::new(SqliteStore::open(&path).await.expect("first"));
    let second = Arc::new(SqliteStore::open(&path).await.expect("second"));
    let id = sessionkit_integration_tests::support::key();
    first.set(&id, &map(json!({ "n": 0 })), None).await.expect("set");
    let fenced = |token, n: u64| {
        let mut changes = Changes::new();
        changes.set("n", json!(n));
        changes.fence(token);
        changes
    };

    let held = first.try_lease(&id, Duration::from_millis(400)).await.expect("lease").expect("granted");
    assert_eq!(second.try_lease(&id, Duration::from_secs(30)).await.expect("lease"), None, "the other store excludes");
    // The token is the truth, whichever store carries the write.
    assert_eq!(second.update(&id, &fenced(held.token, 1), None).await.expect("update"), UpdateOutcome::Applied);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let taken =
        second.try_lease(&id, Duration::from_secs(30)).await.expect("lease").expect("an expired lease is taken");
    match first.update(&id, &fenced(held.token, 2), None).await {
        Err(StoreError::Refused(sessionkit::PatchError::LeaseLost)) => {}
        other => panic!("a holder whose lease ran out wrote through another store: {other:?}"),
    }
    first.release_lease(&id, held.token).await.expect("a stale release");
    assert_eq!(first.try_lease(&id, Duration::from_secs(30)).await.expect("lease"), None, "a stale release freed it");
    second.release_lease(&id, taken.token).await.expect("release");
    assert_eq!(second.get(&id).await.expect("get").map(|r| r.data), Some(map(json!({ "n": 1 }))));

    // Many takers through both stores at once: exactly one wins.
    let contested = sessionkit_integration_tests::support::key();
    let takers: Vec<_> = (0..16)
        .map(|i| {
            let store = if i % 2 == 0 { Arc::clone(&first) } else { Arc::clone(&second) };
            let contested = contested.clone();
            tokio::spawn(async move { store.try_lease(&contested, Duration::from_secs(30)).await })
        })
        .collect();
    let mut granted = 0;
    for taker in takers {
        granted += usize::from(taker.await.expect("task").expect("try_lease").is_some());
    }
    assert_eq!(granted, 1, "takers of one lease through two stores on one file: exactly one must win");

    // Leases that ran out are swept with the sessions.
    first.try_lease(&sessionkit_integration_tests::support::key(), Duration::from_millis(1)).await.expect("lease");
    tokio::time::sleep(Duration::from_millis(5)).await;
    first.delete_expired().await.expect("sweep");
    let conn = Connection::open(&path).expect("connection");
    let left: i64 = conn.query_row("SELECT count(*) FROM http_sessions_leases", [], |row| row.get(0)).expect("count");
    assert_eq!(left, 1, "the sweep must remove the expired lease and keep the live one");
}

/// The helper program that takes leases from another process.
const LEASE_WORKER: &str = env!("CARGO_BIN_EXE_sqlite-lease-worker");

/// A helper process, killed (and reaped) when the test ends, passing or not.
struct Worker(Option<std::process::Child>);

impl Worker {
    fn spawn(path: &Path, args: &[&str]) -> Self {
        let child = std::process::Command::new(LEASE_WORKER)
            .arg(path)
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start a lease worker");
        Self(Some(child))
    }

    async fn finish(mut self) -> std::process::Output {
        let child = self.0.take().expect("running");
        tokio::task::spawn_blocking(move || child.wait_with_output()).await.expect("join").expect("wait")
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Real processes (three helpers and this test), each with its own store on
/// one file, incrementing one counter by reading it and writing its
/// successor under an exclusive lease: only the lease rows in the shared
/// file keep them apart, and no increment is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leases_exclude_across_processes_sharing_a_file() {
    const PER_PROCESS: u64 = 20;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("sessions.db");
    let store = SqliteStore::open(&path).await.expect("open");
    let id = sessionkit_integration_tests::support::key();
    store.set(&id, &map(json!({ "n": 0 })), None).await.expect("set");
    let workers: Vec<_> =
        (0..3).map(|_| Worker::spawn(&path, &["increments", id.as_str(), &PER_PROCESS.to_string()])).collect();
    for _ in 0..PER_PROCESS {
        sessionkit_integration_tests::exclusive_counter::increment(&store, &id).await.expect("increment");
    }
    for worker in workers {
        let output = worker.finish().await;
        assert!(output.status.success(), "a worker failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    let n = store.get(&id).await.expect("get").and_then(|r| r.data.get("n").cloned());
    assert_eq!(n, Some(json!(4 * PER_PROCESS)), "read-modify-writes under leases from four processes lost some");
}

/// A process killed while it holds a lease blocks the session until the
/// lease runs out, and not longer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lease_of_a_killed_process_runs_out() {
    use std::io::BufRead;

    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("sessions.db");
    let store = SqliteStore::open(&path).await.expect("open");
    let id = sessionkit_integration_tests::support::key();
    let mut worker = Worker::spawn(&path, &["hold", id.as_str(), "1500"]);
    let stdout = worker.0.as_mut().and_then(|child| child.stdout.take()).expect("stdout");
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        std::io::BufReader::new(stdout).read_line(&mut line).map(|_| line)
    })
    .await
    .expect("join")
    .expect("read");
    let until: i64 = line.strip_prefix("held ").and_then(|ms| ms.trim().parse().ok()).unwrap_or_else(|| {
        panic!("the worker did not take the lease: {line:?}");
    });
    drop(worker);

    assert_eq!(
        store.try_lease(&id, Duration::from_secs(30)).await.expect("lease"),
        None,
        "the dead holder's lease lives"
    );
    let granted = loop {
        if let Some(lease) = store.try_lease(&id, Duration::from_secs(30)).await.expect("lease") {
            break lease;
        }
        assert!(expiry::to_unix_ms(expiry::now()) < until + 5_000, "the dead holder's lease never ran out");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(expiry::to_unix_ms(expiry::now()) >= until, "a lease was granted before the dead holder's ran out");
    assert!(granted.expires_at > expiry::now());
}
