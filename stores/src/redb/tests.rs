//! The RedbStore's own tests: panics in commits, file modes, the indexes
//! as raw tables, hand-made batches, lease grants of failed batches.

use super::*;
use crate::group_commit::test_hooks::{
    assert_only_acknowledged_writes_stored, chain, numbered, panicking_data, race_a_panicking_write,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_that_panics_fails_its_batch_and_the_store_reopens_its_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("s.redb");
    let store = Arc::new(RedbStore::open(&path).expect("open"));
    let before = sessionkit::testing::checks::key();
    store.set(&before, &numbered(0), None).await.expect("set");
    let first_handle = Arc::downgrade(&store.handle.get().expect("handle"));

    let race = race_a_panicking_write(&store).await;
    store.health().expect("the writer restarted");
    assert_eq!(first_handle.strong_count(), 0, "the handle the panic struck was not closed");
    assert_only_acknowledged_writes_stored(&*store, &race).await;

    let after = sessionkit::testing::checks::key();
    store.set(&after, &numbered(1), Some(expiry::now() + std::time::Duration::from_secs(60))).await.expect("set");
    let mut changes = Changes::new();
    changes.set("updated", serde_json::json!(true));
    assert_eq!(store.update(&before, &changes, None).await.expect("update"), UpdateOutcome::Applied);
    assert!(store.touch(&after, None).await.expect("touch"));
    store.delete(&after).await.expect("delete");
    drop(store);

    let reopened = RedbStore::open(&path).expect("reopen");
    assert_eq!(
        reopened.get(&before).await.expect("get").map(|r| r.data),
        Some(changes.applied_to(numbered(0)).expect("applies"))
    );
    assert_eq!(reopened.get(&after).await.expect("get"), None);
    assert_only_acknowledged_writes_stored(&reopened, &race).await;
}

#[tokio::test]
async fn a_store_on_the_applications_database_is_out_of_service_after_a_panic_and_says_so() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("s.redb");
    let store = RedbStore::from_database(Database::create(&path).expect("create")).expect("store");
    let kept = sessionkit::testing::checks::key();
    store.set(&kept, &numbered(0), None).await.expect("set");
    let panicked = sessionkit::testing::checks::key();
    let err = store.set(&panicked, &panicking_data(), None).await.expect_err("the commit panics");
    assert!(chain(&err).contains("panicked"), "{}", chain(&err));

    for _ in 0..3 {
        let health = chain(&store.health().expect_err("out of service for good"));
        assert!(health.contains("from_database") && health.contains("builds a new store"), "{health}");
        let read = store.get(&kept).await.expect_err("reads fail at once");
        assert_eq!(chain(&read), health, "every operation reports the lasting error");
        let write = store.set(&sessionkit::testing::checks::key(), &numbered(1), None).await.expect_err("writes fail");
        assert_eq!(chain(&write), health);
        assert!(store.flush().await.is_err());
    }
    drop(store);

    // What the application does: open the database again, a new store.
    let store = RedbStore::open(&path).expect("reopen");
    store.health().expect("a new store is healthy");
    assert_eq!(store.get(&kept).await.expect("get").map(|r| r.data), Some(numbered(0)));
    assert_eq!(store.get(&panicked).await.expect("get"), None, "the panicked write was rolled back");
}

#[cfg(unix)]
#[test]
fn the_database_file_a_store_creates_is_private_and_an_existing_file_keeps_its_mode() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |path: &Path| std::fs::metadata(path).expect("metadata").permissions().mode() & 0o777;

    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("sessions.redb");
    drop(RedbStore::open(&path).expect("open"));
    assert_eq!(mode(&path), 0o600, "a new database file must be private");

    let shared = dir.path().join("shared.redb");
    std::fs::write(&shared, b"").expect("create");
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o640)).expect("chmod");
    drop(RedbStore::open(&shared).expect("open"));
    assert_eq!(mode(&shared), 0o640, "the store changed the mode of an existing file");
}

#[tokio::test]
async fn the_expiry_index_follows_every_write() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Arc::new(Database::create(dir.path().join("s.redb")).expect("create"));
    let store = RedbStore::from_database(Arc::clone(&db)).expect("store");
    let index = || -> Vec<(i64, Key)> {
        let txn = db.begin_read().expect("read");
        let table = txn.open_table(store.tables.expiry()).expect("table");
        ::redb::ReadableTable::iter(&table)
            .expect("iter")
            .map(|entry| entry.map(|(key, _)| (key.value().0, *key.value().1)).expect("entry"))
            .collect()
    };
    let id = sessionkit::testing::checks::key();
    let key = *id.as_bytes();
    let soon = expiry::now() + std::time::Duration::from_secs(60);
    let later = soon + std::time::Duration::from_secs(60);
    let (soon_ms, later_ms) = (expiry::to_unix_ms(soon), expiry::to_unix_ms(later));

    store.set(&id, &SessionMap::new(), Some(soon)).await.expect("set");
    assert_eq!(index(), vec![(soon_ms, key)]);
    assert!(store.touch(&id, Some(later)).await.expect("touch"));
    assert_eq!(index(), vec![(later_ms, key)]);
    assert_eq!(store.update(&id, &Changes::new(), Some(soon)).await.expect("update"), UpdateOutcome::Applied);
    assert_eq!(index(), vec![(soon_ms, key)]);
    store.set(&id, &SessionMap::new(), None).await.expect("set");
    assert_eq!(index(), vec![], "a record without expiry is not indexed");
    store.set(&id, &SessionMap::new(), Some(later)).await.expect("set");
    store.delete(&id).await.expect("delete");
    assert_eq!(index(), vec![]);
}

/// Every entry of the user index, in its order.
fn user_index(db: &Database, tables: &Tables) -> Vec<(String, Key)> {
    let txn = db.begin_read().expect("read");
    let table = txn.open_table(tables.users()).expect("table");
    ::redb::ReadableTable::iter(&table)
        .expect("iter")
        .map(|entry| entry.map(|(key, _)| (key.value().0.to_owned(), *key.value().1)).expect("entry"))
        .collect()
}

fn owned(user: &str, value: serde_json::Value) -> SessionMap {
    let mut data = value.as_object().cloned().expect("an object");
    data.insert(sessionkit::reserved::USER.to_owned(), serde_json::Value::from(user));
    data
}

fn entries(list: &[(&str, &StoreKey)]) -> Vec<(String, Key)> {
    let mut list: Vec<(String, Key)> = list.iter().map(|(user, key)| ((*user).to_owned(), *key.as_bytes())).collect();
    list.sort();
    list
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_user_index_follows_every_write() {
    use serde_json::json;
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Arc::new(Database::create(dir.path().join("s.redb")).expect("create"));
    let store = RedbStore::from_database(Arc::clone(&db)).expect("store");
    let index = || user_index(&db, &store.tables);
    let later = Some(expiry::now() + Duration::from_secs(600));
    let (k1, k2, k3, k4, k5) = (
        sessionkit::testing::checks::key(),
        sessionkit::testing::checks::key(),
        sessionkit::testing::checks::key(),
        sessionkit::testing::checks::key(),
        sessionkit::testing::checks::key(),
    );
    let patch = |build: &dyn Fn(&mut Changes)| {
        let mut changes = Changes::new();
        build(&mut changes);
        changes
    };

    store.set(&k1, &owned("ada", json!({})), later).await.expect("set");
    store.set(&k2, &SessionMap::new(), later).await.expect("set");
    assert_eq!(index(), entries(&[("ada", &k1)]), "a session without a user is not indexed");

    let to_bob = patch(&|c| c.set(sessionkit::reserved::USER, json!("bob")));
    assert_eq!(store.update(&k2, &to_bob, later).await.expect("update"), UpdateOutcome::Applied);
    assert_eq!(index(), entries(&[("ada", &k1), ("bob", &k2)]), "an update that sets the user indexes it");
    let anonymous = patch(&|c| c.remove(sessionkit::reserved::USER));
    assert_eq!(store.update(&k1, &anonymous, later).await.expect("update"), UpdateOutcome::Applied);
    assert_eq!(index(), entries(&[("bob", &k2)]), "an update that removes the user unindexes it");
    store.set(&k1, &owned("ada", json!({})), later).await.expect("set");
    assert_eq!(store.update(&k1, &patch(&|c| c.clear()), later).await.expect("update"), UpdateOutcome::Applied);
    assert_eq!(index(), entries(&[("bob", &k2)]), "a clear drops the user");

    store.set(&k1, &owned("ada", json!({})), later).await.expect("set");
    assert_eq!(store.rename(&k1, &k3, &Changes::new(), later).await.expect("rename"), UpdateOutcome::Applied);
    assert_eq!(index(), entries(&[("ada", &k3), ("bob", &k2)]), "a rename moves the entry");
    assert!(store.touch(&k3, None).await.expect("touch"));
    assert_eq!(index(), entries(&[("ada", &k3), ("bob", &k2)]), "a touch keeps the entry");
    store.set(&k2, &owned("ada", json!({})), later).await.expect("set");
    assert_eq!(index(), entries(&[("ada", &k2), ("ada", &k3)]), "a set that changes the user moves the entry");

    assert!(!store.revoke("bob", &k2).await.expect("revoke"));
    assert!(store.revoke("ada", &k2).await.expect("revoke"));
    assert_eq!(index(), entries(&[("ada", &k3)]), "a revoke unindexes");

    store.set(&k4, &owned("ada", json!({})), Some(expiry::now() - Duration::from_secs(1))).await.expect("set");
    assert_eq!(index(), entries(&[("ada", &k3), ("ada", &k4)]));
    assert_eq!(store.sessions_of("ada").await.expect("list").len(), 1, "an expired session is never listed");
    assert_eq!(store.delete_expired().await.expect("sweep"), 1);
    assert_eq!(index(), entries(&[("ada", &k3)]), "the sweep removes the entries of what it removes");

    store.set(&k5, &owned("cy", json!({})), None).await.expect("set");
    store.delete(&k5).await.expect("delete");
    assert_eq!(index(), entries(&[("ada", &k3)]), "a delete unindexes");
    assert_eq!(store.revoke_all("ada", None).await.expect("revoke_all"), 1);
    assert_eq!(index(), vec![]);
}

/// A writer of its own on a fresh database, to commit hand-made batches.
fn bare_writer(dir: &tempfile::TempDir) -> (Arc<Database>, Arc<Tables>, Arc<Leases>, Writer) {
    let db = Arc::new(Database::create(dir.path().join("s.redb")).expect("create"));
    let tables = Arc::new(Tables::new(DEFAULT_TABLE_PREFIX));
    tables::create(&db, &tables, RedbDurability::Immediate).expect("tables");
    let leases = Arc::new(Leases::default());
    let handle = Arc::new(Handle::new(Arc::clone(&db), None));
    let writer = Writer::new(handle, Arc::clone(&tables), Arc::clone(&leases), RedbDurability::Immediate);
    (db, tables, leases, writer)
}

fn raw(db: &Database, tables: &Tables, key: &StoreKey) -> Option<Vec<u8>> {
    let txn = db.begin_read().expect("read");
    let table = txn.open_table(tables.sessions()).expect("table");
    table.get(key.as_bytes()).expect("get").map(|guard| guard.value().to_vec())
}

#[test]
fn a_refused_patch_leaves_the_record_and_the_rest_of_its_batch_intact() {
    use crate::group_commit::Committer;
    use serde_json::json;
    use sessionkit::PatchError;

    let dir = tempfile::tempdir().expect("tempdir");
    let (db, tables, _, mut writer) = bare_writer(&dir);
    let key = sessionkit::testing::checks::key;
    let (a, b, c, d, e) = (key(), key(), key(), key(), key());
    let at = expiry::to_unix_ms(expiry::now() + Duration::from_secs(600));
    let set = |key: &StoreKey, data: &SessionMap| Op::Set {
        key: *key.as_bytes(),
        value: codec::encode(data, Some(at)).expect("encode"),
    };
    let results = writer
        .commit(vec![
            set(&a, &owned("ada", json!({ "visits": "many", "cart": { "not": "a list" } }))),
            set(&b, &owned("bob", json!({}))),
        ])
        .expect("commit");
    assert!(results.iter().all(Result::is_ok));
    let a_before = raw(&db, &tables, &a);

    let mut increment = Changes::new();
    increment.set("theme", json!("dark"));
    increment.increment("visits", 1).expect("increment");
    let mut push = Changes::new();
    push.set("theme", json!("dark"));
    push.push("cart", json!(1), None).expect("push");
    let mut too_large = Changes::new();
    too_large.set("pad", json!("x".repeat(200)));
    too_large.limit_size(100);
    let mut fenced = Changes::new();
    fenced.set("fenced", json!(true));
    fenced.fence(sessionkit::LeaseToken::generate());
    let mut fine = Changes::new();
    fine.set("x", json!(1));
    let later = Some(at + 60_000);
    let results = writer
        .commit(vec![
            Op::Update { key: *a.as_bytes(), changes: increment, expires_at_ms: later },
            Op::Update { key: *b.as_bytes(), changes: fine.clone(), expires_at_ms: Some(at) },
            Op::Rename { from: *a.as_bytes(), to: *c.as_bytes(), changes: push, expires_at_ms: later },
            Op::Rename { from: *b.as_bytes(), to: *d.as_bytes(), changes: too_large, expires_at_ms: later },
            Op::Update { key: *b.as_bytes(), changes: fenced.clone(), expires_at_ms: later },
            Op::Rename { from: *b.as_bytes(), to: *d.as_bytes(), changes: fenced, expires_at_ms: later },
            set(&e, &owned("ada", json!({ "after": "the refusals" }))),
        ])
        .expect("the batch commits");
    let refusals: Vec<String> = results
        .iter()
        .map(|result| match result {
            Ok(out) => format!("{out:?}"),
            Err(StoreError::Refused(err)) => format!("{err:?}"),
            Err(err) => panic!("unexpected error {err:?}"),
        })
        .collect();
    assert!(matches!(&results[0], Err(StoreError::Refused(PatchError::NotAnInteger { .. }))), "{refusals:?}");
    assert_eq!(results[1].as_ref().ok(), Some(&Out::Updated(UpdateOutcome::Applied)), "{refusals:?}");
    assert!(matches!(&results[2], Err(StoreError::Refused(PatchError::NotAnArray { .. }))), "{refusals:?}");
    assert!(matches!(&results[3], Err(StoreError::Refused(PatchError::TooLarge { .. }))), "{refusals:?}");
    assert!(matches!(&results[4], Err(StoreError::Refused(PatchError::LeaseLost))), "{refusals:?}");
    assert!(matches!(&results[5], Err(StoreError::Refused(PatchError::LeaseLost))), "{refusals:?}");
    assert_eq!(results[6].as_ref().ok(), Some(&Out::Done), "{refusals:?}");

    assert_eq!(raw(&db, &tables, &a), a_before, "a refused patch must leave the record byte for byte");
    assert_eq!(raw(&db, &tables, &c), None, "a refused rename writes nothing under the new key");
    assert_eq!(raw(&db, &tables, &d), None, "a refused rename writes nothing under the new key");
    let txn = db.begin_read().expect("read");
    let b_now = reads::record(&txn, &tables, b.as_bytes()).expect("read").expect("b is there");
    assert_eq!(b_now.data, fine.applied_to(owned("bob", json!({}))).expect("applies"));
    assert!(reads::record(&txn, &tables, e.as_bytes()).expect("read").is_some(), "the batch went on");
    assert_eq!(user_index(&db, &tables), entries(&[("ada", &a), ("ada", &e), ("bob", &b)]));
    let expiry_table = txn.open_table(tables.expiry()).expect("expiry");
    let indexed: Vec<Key> = ::redb::ReadableTable::iter(&expiry_table)
        .expect("iter")
        .map(|entry| *entry.expect("entry").0.value().1)
        .collect();
    assert_eq!(indexed.len(), 3, "the expiry index holds a, b and e, at their own expiries");
    assert!(indexed.contains(a.as_bytes()) && indexed.contains(b.as_bytes()) && indexed.contains(e.as_bytes()));
}

#[test]
fn a_batch_that_does_not_commit_takes_its_lease_grants_back() {
    use crate::group_commit::Committer;

    let dir = tempfile::tempdir().expect("tempdir");
    let (_db, _tables, leases, mut writer) = bare_writer(&dir);
    let key = *sessionkit::testing::checks::key().as_bytes();
    let ttl = Duration::from_secs(30);
    let panicking = Op::Set {
        key: *sessionkit::testing::checks::key().as_bytes(),
        value: codec::encode(&panicking_data(), None).expect("encode"),
    };
    let struck = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        writer.commit(vec![Op::Lease { key, ttl }, panicking])
    }));
    assert!(struck.is_err(), "the test hook makes the commit panic");
    assert_eq!(leases.len(), 0, "nobody heard of the grant: it must not block the session");

    // A batch of grants alone needs no transaction, and answers at once.
    let results = writer.commit(vec![Op::Lease { key, ttl }, Op::Lease { key, ttl }]).expect("commit");
    assert!(matches!(results[0], Ok(Out::Leased(Some(_)))), "{results:?}");
    assert!(matches!(results[1], Ok(Out::Leased(None))), "one holder at a time, within a batch too: {results:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_is_granted_after_the_previous_holders_last_write_and_fences_it_from_then_on() {
    use serde_json::json;
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(RedbStore::open(dir.path().join("s.redb")).expect("open"));
    let id = sessionkit::testing::checks::key();
    store.set(&id, &SessionMap::new(), None).await.expect("set");
    let ttl = Duration::from_millis(50);
    for round in 0..20u64 {
        let first = loop {
            if let Some(lease) = store.try_lease(&id, ttl).await.expect("lease") {
                break lease;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        // The holder writes as its lease runs out, while another request
        // waits to take it over: whatever the holder was allowed to write,
        // the next holder reads.
        let mut changes = Changes::new();
        changes.set("round", json!(round));
        changes.fence(first.token);
        let writer = {
            let (store, id) = (Arc::clone(&store), id.clone());
            tokio::spawn(async move {
                tokio::time::sleep(ttl.saturating_sub(Duration::from_millis(round % 5))).await;
                store.update(&id, &changes, None).await
            })
        };
        let second = loop {
            if let Some(lease) = store.try_lease(&id, ttl).await.expect("lease") {
                break lease;
            }
            tokio::task::yield_now().await;
        };
        let seen = store.get(&id).await.expect("get").expect("the session").data.get("round").cloned();
        let written = writer.await.expect("task");
        match written {
            Ok(UpdateOutcome::Applied) => {
                assert_eq!(seen, Some(json!(round)), "the next holder read before the write it was ordered after");
            }
            Err(StoreError::Refused(sessionkit::PatchError::LeaseLost)) => {
                let now = store.get(&id).await.expect("get").expect("the session").data.get("round").cloned();
                assert_ne!(now, Some(json!(round)), "a refused write was stored");
            }
            other => panic!("round {round}: {other:?}"),
        }
        store.release_lease(&id, second.token).await.expect("release");
    }
}
