//! `RedbStore`: the conformance kit through both constructors and every
//! durability, sessions surviving a restart, the expiry index, and bad input
//! (files that are not databases, corrupt values, a second open).

use std::error::Error as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde_json::{Value, json};
use sessionkit::testing::Guarded;
use sessionkit::{Changes, SessionRecord, SessionStore, StoreError, StoreKey, UpdateOutcome, expiry};
use sessionkit_integration_tests::support::{error_chain, in_secs, map};
use sessionkit_stores::{RedbDurability, RedbStore};
use tempfile::TempDir;

/// The documented layout, as a user inspecting the file would declare it.
const SESSIONS: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("sessionkit_sessions");
const EXPIRY: TableDefinition<(i64, &[u8; 32]), ()> = TableDefinition::new("sessionkit_expiry");
const USERS: TableDefinition<(&str, &[u8; 32]), ()> = TableDefinition::new("sessionkit_users");

fn temp_path() -> (TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("sessions.redb");
    (dir, path)
}

fn ago(secs: u64) -> SystemTime {
    expiry::now() - Duration::from_secs(secs)
}

/// The stored bytes of a record, in the previous version's layout (1),
/// which the store still reads: a tag, the expiry if any, the JSON.
fn encoded(value: &Value, expires_at: Option<SystemTime>) -> Vec<u8> {
    let mut bytes = match expires_at {
        None => vec![0x00],
        Some(at) => {
            let mut bytes = vec![0x01];
            bytes.extend_from_slice(&expiry::to_unix_ms(at).to_be_bytes());
            bytes
        }
    };
    bytes.extend_from_slice(&serde_json::to_vec(value).expect("json"));
    bytes
}

/// The stored bytes of a record in the documented current layout (2): a
/// tag, flags, the expiry and the user if any, the JSON.
fn encoded_v2(value: &Value, expires_at: Option<SystemTime>, user: Option<&str>) -> Vec<u8> {
    let flags = u8::from(expires_at.is_some()) | (u8::from(user.is_some()) << 1);
    let mut bytes = vec![0x02, flags];
    if let Some(at) = expires_at {
        bytes.extend_from_slice(&expiry::to_unix_ms(at).to_be_bytes());
    }
    if let Some(user) = user {
        bytes.extend_from_slice(&u32::try_from(user.len()).expect("short").to_be_bytes());
        bytes.extend_from_slice(user.as_bytes());
    }
    bytes.extend_from_slice(&serde_json::to_vec(value).expect("json"));
    bytes
}

/// Every entry of the user index.
fn user_entries(db: &Database) -> Vec<(String, [u8; 32])> {
    let txn = db.begin_read().expect("read");
    let table = txn.open_table(USERS).expect("users table");
    table
        .iter()
        .expect("iter")
        .map(|entry| entry.map(|(key, _)| (key.value().0.to_owned(), *key.value().1)).expect("entry"))
        .collect()
}

fn sorted_entries(list: &[(&str, &StoreKey)]) -> Vec<(String, [u8; 32])> {
    let mut list: Vec<_> = list.iter().map(|(user, key)| ((*user).to_owned(), *key.as_bytes())).collect();
    list.sort();
    list
}

/// Every entry of the expiry index.
fn index_entries(db: &Database) -> Vec<(i64, [u8; 32])> {
    let txn = db.begin_read().expect("read");
    let table = txn.open_table(EXPIRY).expect("expiry table");
    table
        .iter()
        .expect("iter")
        .map(|entry| entry.map(|(key, _)| (key.value().0, *key.value().1)).expect("entry"))
        .collect()
}

fn session_count(db: &Database) -> u64 {
    let txn = db.begin_read().expect("read");
    txn.open_table(SESSIONS).expect("sessions table").len().expect("len")
}

fn raw_value(db: &Database, id: &StoreKey) -> Option<Vec<u8>> {
    let txn = db.begin_read().expect("read");
    let table = txn.open_table(SESSIONS).expect("sessions table");
    table.get(id.as_bytes()).expect("get").map(|guard| guard.value().to_vec())
}

fn expect_config_error(result: Result<RedbStore, StoreError>) -> (String, StoreError) {
    match result {
        Ok(store) => panic!("expected a configuration error, got a store: {store:?}"),
        Err(err @ StoreError::Config { .. }) => {
            assert!(err.source().is_some(), "the redb error must be kept as the source: {err:?}");
            (error_chain(&err), err)
        }
        Err(other) => panic!("expected StoreError::Config, got {other:?}"),
    }
}

mod conformance_opened_from_a_path {
    sessionkit::store_conformance_tests!(async {
        let (dir, path) = super::temp_path();
        super::Guarded::new(super::RedbStore::open(path).expect("open"), dir)
    });
}

mod conformance_built_on_an_open_database {
    sessionkit::store_conformance_tests!(async {
        let (dir, path) = super::temp_path();
        let db = super::Database::create(path).expect("create");
        super::Guarded::new(super::RedbStore::from_database(db).expect("store"), dir)
    });
}

mod conformance_without_durable_commits {
    sessionkit::store_conformance_tests!(async {
        let (dir, path) = super::temp_path();
        let store = super::RedbStore::builder().durability(super::RedbDurability::None).open(path).expect("open");
        super::Guarded::new(store, dir)
    });
}

mod conformance_with_two_phase_commits {
    sessionkit::store_conformance_tests!(async {
        let (dir, path) = super::temp_path();
        let store = super::RedbStore::builder().durability(super::RedbDurability::Paranoid).open(path).expect("open");
        super::Guarded::new(store, dir)
    });
}

/// Writes a mix of sessions, returns them as they must read back.
async fn write_sessions(store: &RedbStore) -> Vec<(StoreKey, SessionRecord)> {
    let cases = vec![
        (
            sessionkit_integration_tests::support::key(),
            SessionRecord::new(map(json!({ "user": "ada", "cart": [1, 2] })), Some(in_secs(3600))),
        ),
        (
            sessionkit_integration_tests::support::key(),
            SessionRecord::new(map(json!({ "forever": true, "ключ": "😀" })), None),
        ),
        (sessionkit_integration_tests::support::key(), SessionRecord::new(map(json!({})), Some(in_secs(86_400 * 365)))),
    ];
    for (id, record) in &cases {
        store.set(id, &record.data, record.expires_at).await.expect("set");
    }
    // The last state must come from update and touch as well as set.
    let (id, record) = &cases[0];
    let mut changes = Changes::new();
    changes.set("theme", json!("dark"));
    let moved = in_secs(7200);
    assert_eq!(store.update(id, &changes, Some(moved)).await.expect("update"), UpdateOutcome::Applied);
    let touched = in_secs(9000);
    assert!(store.touch(&cases[1].0, Some(touched)).await.expect("touch"));
    let mut expected = cases.clone();
    expected[0].1 = SessionRecord::new(changes.applied_to(record.data.clone()).expect("applies"), Some(moved));
    expected[1].1.expires_at = Some(touched);
    expected
}

async fn assert_reads_back(store: &RedbStore, expected: &[(StoreKey, SessionRecord)]) {
    for (id, record) in expected {
        assert_eq!(store.get(id).await.expect("get").as_ref(), Some(record), "a session changed across a restart");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_survive_a_restart_from_the_same_path() {
    let (_dir, path) = temp_path();
    let store = RedbStore::open(&path).expect("open");
    let expected = write_sessions(&store).await;
    let deleted = sessionkit_integration_tests::support::key();
    store.set(&deleted, &map(json!({ "a": 1 })), None).await.expect("set");
    store.delete(&deleted).await.expect("delete");
    drop(store);

    // Reopening right after the drop works: the drop closed the file.
    let reopened = RedbStore::open(&path).expect("reopen right after the drop");
    assert_reads_back(&reopened, &expected).await;
    assert_eq!(reopened.get(&deleted).await.expect("get"), None, "a deleted session came back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_survive_a_restart_of_a_store_built_on_an_open_database() {
    let (_dir, path) = temp_path();
    let store = RedbStore::from_database(Database::create(&path).expect("create")).expect("store");
    let expected = write_sessions(&store).await;
    drop(store);

    // The store owned the database, so dropping it closed the file.
    let db = Database::create(&path).expect("the file must be closed once the store is dropped");
    let reopened = RedbStore::from_database(db).expect("store");
    assert_reads_back(&reopened, &expected).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_without_durable_commits_reach_the_file_on_flush_and_on_close() {
    let (_dir, path) = temp_path();
    let store = RedbStore::builder().durability(RedbDurability::None).open(&path).expect("open");
    let expected = write_sessions(&store).await;
    store.flush().await.expect("flush");
    let after_flush = sessionkit_integration_tests::support::key();
    store.set(&after_flush, &map(json!({ "late": 1 })), None).await.expect("set");
    drop(store);

    let reopened = RedbStore::open(&path).expect("reopen");
    assert_reads_back(&reopened, &expected).await;
    assert!(reopened.get(&after_flush).await.expect("get").is_some(), "closing the store must persist its writes");
}

#[tokio::test]
async fn a_file_that_is_not_a_database_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut noise = Vec::with_capacity(65_536);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..65_536 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        noise.push(x as u8);
    }
    let cases: [(&str, Vec<u8>); 3] = [
        ("notes.txt", b"these are my notes, not a database\n".to_vec()),
        ("noise.bin", noise),
        ("sessions.json", br#"{"id":{"user":"ada"}}"#.to_vec()),
    ];
    for (name, contents) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, &contents).expect("write");
        let (message, _) = expect_config_error(RedbStore::open(&path));
        assert!(message.contains("is not a redb database"), "{name}: unclear error: {message}");
        assert_eq!(std::fs::read(&path).expect("read"), contents, "{name}: a refused file must be left as it was");
    }
}

#[tokio::test]
async fn a_truncated_database_is_refused_and_left_alone() {
    let (_dir, path) = temp_path();
    let store = RedbStore::open(&path).expect("open");
    for i in 0..500 {
        store
            .set(&sessionkit_integration_tests::support::key(), &map(json!({ "n": i, "pad": "x".repeat(200) })), None)
            .await
            .expect("set");
    }
    drop(store);
    let whole = std::fs::read(&path).expect("read");
    let half = &whole[..whole.len() / 2];
    std::fs::write(&path, half).expect("truncate");

    let (message, _) = expect_config_error(RedbStore::open(&path));
    assert!(message.contains("corrupted redb database"), "unclear error: {message}");
    assert_eq!(std::fs::read(&path).expect("read"), half, "a refused file must be left as it was");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_open_of_the_same_file_says_it_is_already_open() {
    let (_dir, path) = temp_path();
    let store = RedbStore::open(&path).expect("open");
    let id = sessionkit_integration_tests::support::key();
    store.set(&id, &map(json!({ "kept": true })), None).await.expect("set");

    let (message, err) = expect_config_error(RedbStore::open(&path));
    assert!(message.contains("already open"), "unclear error: {message}");
    assert!(format!("{:?}", err.source()).contains("DatabaseAlreadyOpen"), "{err:?}");

    // The first store is unharmed.
    assert_eq!(store.get(&id).await.expect("get").map(|r| r.data), Some(map(json!({ "kept": true }))));
}

#[tokio::test]
async fn tables_of_the_same_name_with_other_types_are_refused() {
    let (_dir, path) = temp_path();
    let db = Database::create(&path).expect("create");
    let foreign: TableDefinition<&str, u64> = TableDefinition::new("sessionkit_sessions");
    let txn = db.begin_write().expect("write");
    txn.open_table(foreign).expect("table").insert("mine", &7).expect("insert");
    txn.commit().expect("commit");

    let (message, _) = expect_config_error(RedbStore::from_database(db));
    assert!(message.contains("sessionkit_sessions"), "the error must name the table: {message}");

    // The user's table is untouched.
    let db = Database::create(&path).expect("reopen");
    let txn = db.begin_read().expect("read");
    assert_eq!(txn.open_table(foreign).expect("table").get("mine").expect("get").map(|v| v.value()), Some(7));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_values_read_as_absent_and_nothing_else_is_lost() {
    let (_dir, path) = temp_path();
    let db = Arc::new(Database::create(&path).expect("create"));
    let store = RedbStore::from_database(Arc::clone(&db)).expect("store");
    let healthy = sessionkit_integration_tests::support::key();
    store.set(&healthy, &map(json!({ "ok": true })), Some(in_secs(600))).await.expect("set");

    let damaged: Vec<(&str, Vec<u8>)> = vec![
        ("empty", vec![]),
        ("unknown layout", b"{\"a\":1}".to_vec()),
        ("truncated expiry", vec![0x01, 0, 0, 1]),
        ("not JSON", vec![0x00, 0xff, 0xfe, 0x00]),
        ("JSON but not an object", b"\x00[1,2,3]".to_vec()),
        ("live expiry, broken JSON", encoded(&json!({ "a": 1 }), Some(in_secs(600)))[..12].to_vec()),
    ];
    let ids: Vec<StoreKey> = damaged.iter().map(|_| sessionkit_integration_tests::support::key()).collect();
    {
        let txn = db.begin_write().expect("write");
        {
            let mut table = txn.open_table(SESSIONS).expect("table");
            for (id, (_, bytes)) in ids.iter().zip(&damaged) {
                table.insert(id.as_bytes(), bytes.as_slice()).expect("insert");
            }
        }
        txn.commit().expect("commit");
    }

    let mut changes = Changes::new();
    changes.set("b", json!(2));
    for (id, (what, bytes)) in ids.iter().zip(&damaged) {
        assert_eq!(store.get(id).await.expect("get must not fail"), None, "{what}: must read as absent");
        assert!(!store.touch(id, Some(in_secs(60))).await.expect("touch must not fail"), "{what}: touch");
        let outcome = store.update(id, &changes, Some(in_secs(60))).await.expect("update must not fail");
        assert_eq!(outcome, UpdateOutcome::Missing, "{what}: update must find nothing to patch");
        assert_eq!(raw_value(&db, id).as_deref(), Some(bytes.as_slice()), "{what}: nothing may be written over it");
    }
    assert_eq!(store.delete_expired().await.expect("sweep"), 0);

    // A new write replaces a damaged value; deleting one works.
    store.set(&ids[0], &map(json!({ "fresh": 1 })), None).await.expect("set over a damaged value");
    assert_eq!(store.get(&ids[0]).await.expect("get").map(|r| r.data), Some(map(json!({ "fresh": 1 }))));
    store.delete(&ids[1]).await.expect("delete a damaged value");
    assert_eq!(raw_value(&db, &ids[1]), None);
    assert_eq!(store.get(&healthy).await.expect("get").map(|r| r.data), Some(map(json!({ "ok": true }))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sweep_leaves_the_index_holding_exactly_the_live_records_with_an_expiry() {
    let (_dir, path) = temp_path();
    let db = Arc::new(Database::create(&path).expect("create"));
    let store = Arc::new(RedbStore::from_database(Arc::clone(&db)).expect("store"));
    let live: Vec<(StoreKey, SystemTime)> =
        (0..300).map(|i| (sessionkit_integration_tests::support::key(), in_secs(600 + i))).collect();
    let expired: Vec<StoreKey> = (0..120).map(|_| sessionkit_integration_tests::support::key()).collect();
    let forever: Vec<StoreKey> = (0..30).map(|_| sessionkit_integration_tests::support::key()).collect();
    let writes: Vec<_> = live
        .iter()
        .map(|(id, at)| (id.clone(), Some(*at)))
        .chain(expired.iter().enumerate().map(|(i, id)| (id.clone(), Some(ago(1 + i as u64)))))
        .chain(forever.iter().map(|id| (id.clone(), None)))
        .map(|(id, at)| {
            let store = Arc::clone(&store);
            tokio::spawn(async move { store.set(&id, &map(json!({ "x": 1 })), at).await })
        })
        .collect();
    for write in writes {
        write.await.expect("task").expect("set");
    }
    assert_eq!(index_entries(&db).len(), live.len() + expired.len());

    assert_eq!(store.delete_expired().await.expect("sweep"), expired.len() as u64);

    let mut want: Vec<(i64, [u8; 32])> =
        live.iter().map(|(id, at)| (expiry::to_unix_ms(*at), *id.as_bytes())).collect();
    want.sort();
    assert_eq!(index_entries(&db), want, "the index must hold exactly the live records with an expiry");
    assert_eq!(session_count(&db), (live.len() + forever.len()) as u64);
    assert_eq!(store.delete_expired().await.expect("sweep"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_index_entry_never_deletes_a_live_record() {
    let (_dir, path) = temp_path();
    let db = Arc::new(Database::create(&path).expect("create"));
    let store = RedbStore::from_database(Arc::clone(&db)).expect("store");
    let id = sessionkit_integration_tests::support::key();
    let until = in_secs(600);
    store.set(&id, &map(json!({ "live": true })), Some(until)).await.expect("set");
    // An entry saying the record expired an hour ago, as a record that was
    // corrupt when it was overwritten would leave behind.
    let stale = expiry::to_unix_ms(ago(3600));
    {
        let txn = db.begin_write().expect("write");
        txn.open_table(EXPIRY).expect("table").insert((stale, id.as_bytes()), ()).expect("insert");
        txn.commit().expect("commit");
    }

    assert_eq!(store.delete_expired().await.expect("sweep"), 0, "a stale entry is not an expired record");
    assert!(store.get(&id).await.expect("get").is_some(), "the sweep deleted a live record");
    assert_eq!(index_entries(&db), vec![(expiry::to_unix_ms(until), *id.as_bytes())], "the stale entry is gone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_larger_than_one_sweep_transaction_is_cleared() {
    const EXPIRED: usize = 25_000;
    let (_dir, path) = temp_path();
    let db = Arc::new(Database::create(&path).expect("create"));
    let store = RedbStore::from_database(Arc::clone(&db)).expect("store");
    let keep = sessionkit_integration_tests::support::key();
    store.set(&keep, &map(json!({ "keep": 1 })), Some(in_secs(600))).await.expect("set");
    // Written straight into the documented layout, in one transaction, so the
    // backlog costs one commit to build.
    {
        let txn = db.begin_write().expect("write");
        {
            let mut sessions = txn.open_table(SESSIONS).expect("sessions");
            let mut index = txn.open_table(EXPIRY).expect("index");
            for i in 0..EXPIRED {
                let (id, at) = (sessionkit_integration_tests::support::key(), ago(1 + (i % 1000) as u64));
                sessions.insert(id.as_bytes(), encoded(&json!({ "i": i }), Some(at)).as_slice()).expect("insert");
                index.insert((expiry::to_unix_ms(at), id.as_bytes()), ()).expect("insert");
            }
        }
        txn.commit().expect("commit");
    }

    assert_eq!(store.delete_expired().await.expect("sweep"), EXPIRED as u64);
    assert_eq!(session_count(&db), 1);
    assert_eq!(index_entries(&db).len(), 1);
    assert!(store.get(&keep).await.expect("get").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stores_with_different_table_prefixes_share_a_database_without_mixing() {
    let (_dir, path) = temp_path();
    let db = Arc::new(Database::create(&path).expect("create"));
    let users = RedbStore::from_database(Arc::clone(&db)).expect("store");
    let admins = RedbStore::builder().table_prefix("admin").build(Arc::clone(&db)).expect("store");
    let id = sessionkit_integration_tests::support::key();
    users.set(&id, &map(json!({ "who": "user" })), None).await.expect("set");
    admins.set(&id, &map(json!({ "who": "admin" })), Some(ago(1))).await.expect("set");

    assert_eq!(users.get(&id).await.expect("get").map(|r| r.data), Some(map(json!({ "who": "user" }))));
    assert_eq!(admins.get(&id).await.expect("get"), None);
    assert_eq!(admins.delete_expired().await.expect("sweep"), 1);
    assert_eq!(users.delete_expired().await.expect("sweep"), 0);
    assert!(users.get(&id).await.expect("get").is_some());

    let txn = db.begin_read().expect("read");
    let names: Vec<String> =
        txn.list_tables().expect("tables").map(|t| redb::TableHandle::name(&t).to_owned()).collect();
    for table in [
        "sessionkit_sessions",
        "sessionkit_expiry",
        "sessionkit_users",
        "admin_sessions",
        "admin_expiry",
        "admin_users",
    ] {
        assert!(names.iter().any(|name| name == table), "missing table {table} in {names:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stored_bytes_and_the_indexes_are_as_documented() {
    let (_dir, path) = temp_path();
    let db = Arc::new(Database::create(&path).expect("create"));
    let store = RedbStore::from_database(Arc::clone(&db)).expect("store");
    let (owned, anonymous) =
        (sessionkit_integration_tests::support::key(), sessionkit_integration_tests::support::key());
    let at = in_secs(600);
    let data = json!({ "__sessionkit.user": "adä", "cart": [1] });
    store.set(&owned, &map(data.clone()), Some(at)).await.expect("set");
    store.set(&anonymous, &map(json!({ "a": 1 })), None).await.expect("set");

    assert_eq!(raw_value(&db, &owned), Some(encoded_v2(&data, Some(at), Some("adä"))));
    assert_eq!(raw_value(&db, &anonymous), Some(encoded_v2(&json!({ "a": 1 }), None, None)));
    assert_eq!(user_entries(&db), sorted_entries(&[("adä", &owned)]));
    assert_eq!(index_entries(&db), vec![(expiry::to_unix_ms(at), *owned.as_bytes())]);
}

/// What the previous version of the store left in a file: two tables, no
/// user index, values in layout 1 (whose header does not name the user).
fn write_previous_version_database(path: &std::path::Path, sessions: &[(StoreKey, Value, Option<SystemTime>)]) {
    let db = Database::create(path).expect("create");
    let txn = db.begin_write().expect("write");
    {
        let mut table = txn.open_table(SESSIONS).expect("sessions");
        let mut index = txn.open_table(EXPIRY).expect("expiry");
        for (id, value, at) in sessions {
            table.insert(id.as_bytes(), encoded(value, *at).as_slice()).expect("insert");
            if let Some(at) = at {
                index.insert((expiry::to_unix_ms(*at), id.as_bytes()), ()).expect("insert");
            }
        }
    }
    txn.commit().expect("commit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_written_by_the_previous_version_opens_reads_lists_and_upgrades_as_it_is_written() {
    let (_dir, path) = temp_path();
    let key = sessionkit_integration_tests::support::key;
    let (ada1, ada2, bob, anonymous, expired) = (key(), key(), key(), key(), key());
    let user = |name: &str, rest: Value| {
        let mut value = rest;
        value["__sessionkit.user"] = json!(name);
        value
    };
    let sessions = vec![
        (ada1.clone(), user("ada", json!({ "ua": "phone" })), Some(in_secs(3600))),
        (ada2.clone(), user("ada", json!({ "ua": "laptop" })), None),
        (bob.clone(), user("bob", json!({})), Some(in_secs(3600))),
        (anonymous.clone(), json!({ "theme": "dark" }), Some(in_secs(3600))),
        (expired.clone(), user("ada", json!({})), Some(ago(60))),
    ];
    write_previous_version_database(&path, &sessions);
    let tables = {
        let db = Database::open(&path).expect("open");
        let txn = db.begin_read().expect("read");
        txn.list_tables().expect("tables").map(|t| redb::TableHandle::name(&t).to_owned()).collect::<Vec<_>>()
    };
    assert!(!tables.iter().any(|name| name == "sessionkit_users"), "the old layout has no user index: {tables:?}");

    let store = RedbStore::open(&path).expect("a database of the previous version opens");
    for (id, value, at) in &sessions[..4] {
        let record = store.get(id).await.expect("get").expect("an old session reads back");
        assert_eq!(record, SessionRecord::new(map(value.clone()), *at));
    }
    assert_eq!(store.get(&expired).await.expect("get"), None);
    let listed = |user: &'static str| {
        let store = &store;
        async move {
            let mut keys: Vec<StoreKey> =
                store.sessions_of(user).await.expect("list").into_iter().map(|(key, _)| key).collect();
            keys.sort();
            keys
        }
    };
    let mut adas = vec![ada1.clone(), ada2.clone()];
    adas.sort();
    assert_eq!(listed("ada").await, adas, "old sessions are listed by their user, expired ones are not");
    assert_eq!(listed("bob").await, vec![bob.clone()]);
    let mut scanned = Vec::new();
    let mut cursor = sessionkit::ScanCursor::start();
    loop {
        let page = store.scan(&cursor, 2).await.expect("scan");
        scanned.extend(page.records.into_iter().map(|(key, _)| key));
        match page.next {
            Some(next) => cursor = next,
            None => break,
        }
    }
    scanned.sort();
    let mut live: Vec<StoreKey> = sessions[..4].iter().map(|(id, ..)| id.clone()).collect();
    live.sort();
    assert_eq!(scanned, live, "a scan returns the old live sessions");

    // Old values are rewritten in the current layout by their next write,
    // and the index follows.
    let db_path = path.clone();
    assert!(store.touch(&ada1, Some(in_secs(7200))).await.expect("touch"));
    let mut to_cy = Changes::new();
    to_cy.set("__sessionkit.user", json!("cy"));
    assert_eq!(store.update(&bob, &to_cy, Some(in_secs(3600))).await.expect("update"), UpdateOutcome::Applied);
    assert_eq!(listed("bob").await, Vec::new(), "an old session whose user changed leaves the old listing");
    assert_eq!(listed("cy").await, vec![bob.clone()]);
    assert!(store.revoke("ada", &ada2).await.expect("revoke"), "an old session is revoked by its user");
    assert_eq!(store.delete_expired().await.expect("sweep"), 1, "the old expired session is swept");
    drop(store);

    let db = Database::open(&db_path).expect("open");
    assert_eq!(user_entries(&db), sorted_entries(&[("ada", &ada1), ("cy", &bob)]));
    for (id, _, _) in [&sessions[0], &sessions[2]] {
        assert_eq!(raw_value(&db, id).map(|bytes| bytes[0]), Some(0x02), "a rewritten value is in layout 2");
    }
    assert_eq!(raw_value(&db, &anonymous).map(|bytes| bytes[0]), Some(0x01), "an untouched value is left as it was");
    assert_eq!(raw_value(&db, &expired), None);
    drop(db);

    let reopened = RedbStore::open(&db_path).expect("reopen");
    assert_eq!(reopened.sessions_of("ada").await.expect("list").len(), 1);
    assert!(reopened.get(&anonymous).await.expect("get").is_some());
}
