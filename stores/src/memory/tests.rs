//! Tests of `MemoryStore`'s own structures, beyond the conformance kit:
//! the user index under concurrency, its pruning, scans over few shards,
//! lease sweeping.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use sessionkit::reserved;
use sessionkit::testing::checks::key;

use super::*;

fn data(value: Value) -> SessionMap {
    value.as_object().cloned().expect("object")
}

fn owned(user: &str) -> SessionMap {
    data(json!({ reserved::USER: user, "x": 1 }))
}

fn in_secs(secs: u64) -> Option<SystemTime> {
    Some(expiry::now() + Duration::from_secs(secs))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(4).enable_all().build().expect("runtime")
}

/// Every record's user, read from its data, against the index.
fn assert_index_matches_records(store: &MemoryStore) {
    let mut by_user: HashMap<String, Vec<Key>> = HashMap::new();
    let mut records = 0;
    for shard in store.shards.iter() {
        for entry in read(shard).entries() {
            let decoded = decode(&entry.record).expect("decode");
            assert_eq!(entry.record.user(), reserved::user_of(&decoded), "a record's kept user is its data's");
            if let Some(user) = entry.record.user() {
                by_user.entry(user.to_owned()).or_default().push(entry.key);
                records += 1;
            }
        }
    }
    assert_eq!(store.users.entries(), records, "the index holds exactly the bound records");
    for (user, mut keys) in by_user {
        let mut indexed = store.users.keys(&user);
        keys.sort();
        indexed.sort();
        assert_eq!(indexed, keys, "{user}'s index entries");
    }
}

#[test]
fn the_user_index_follows_every_write_under_concurrency() {
    let store = Arc::new(MemoryStore::with_shards(4));
    let users = ["ada", "bob", "cy"];
    runtime().block_on(async {
        let tasks: Vec<_> = (0..8)
            .map(|task| {
                let store = Arc::clone(&store);
                tokio::spawn(async move {
                    let mut mine: Vec<StoreKey> = Vec::new();
                    for step in 0..300usize {
                        let user = users[(task + step) % users.len()];
                        match (task + step * 7) % 9 {
                            0 | 1 => {
                                let id = key();
                                store.set(&id, &owned(user), in_secs(600)).await?;
                                mine.push(id);
                            }
                            2 => {
                                if let Some(from) = mine.pop() {
                                    let to = key();
                                    let mut changes = Changes::new();
                                    changes.set(reserved::USER, json!(user));
                                    if store.rename(&from, &to, &changes, in_secs(600)).await? == UpdateOutcome::Applied
                                    {
                                        mine.push(to);
                                    }
                                }
                            }
                            3 => {
                                if let Some(id) = mine.last() {
                                    // A login on the same key: the user changes.
                                    let mut changes = Changes::new();
                                    changes.set(reserved::USER, json!(user));
                                    let _ = store.update(id, &changes, in_secs(600)).await?;
                                }
                            }
                            4 => {
                                if let Some(id) = mine.first() {
                                    let mut changes = Changes::new();
                                    if step % 2 == 0 {
                                        changes.remove(reserved::USER);
                                    } else {
                                        changes.clear();
                                        changes.set("y", json!(step));
                                    }
                                    let _ = store.update(id, &changes, in_secs(600)).await?;
                                }
                            }
                            5 => {
                                if let Some(id) = mine.pop() {
                                    store.delete(&id).await?;
                                }
                            }
                            6 => {
                                store.revoke_all(user, mine.last()).await?;
                            }
                            7 => {
                                if let Some(id) = mine.first() {
                                    store.revoke(user, id).await?;
                                }
                            }
                            _ => {
                                // An already expired login: listed by nobody, swept below.
                                store.set(&key(), &owned(user), Some(expiry::now() - Duration::from_secs(1))).await?;
                            }
                        }
                    }
                    Ok::<_, StoreError>(())
                })
            })
            .collect();
        for task in tasks {
            task.await.expect("task").expect("store");
        }
        assert_index_matches_records(&store);
        for user in users {
            for (listed, record) in store.sessions_of(user).await.expect("list") {
                assert_eq!(record.user(), Some(user));
                assert_eq!(store.get(&listed).await.expect("get").as_ref(), Some(&record));
            }
        }
        store.delete_expired().await.expect("sweep");
        assert_index_matches_records(&store);
        let listed: usize = {
            let mut total = 0;
            for user in users {
                total += store.sessions_of(user).await.expect("list").len();
            }
            total
        };
        assert_eq!(listed, store.users.entries(), "after a sweep every index entry is a live session");
    });
}

#[test]
fn a_revocation_catches_sessions_renamed_while_it_runs() {
    // Renames move a user's sessions between shards as fast as they can;
    // revoke_all must still end every one of them: a rename that lands in
    // a shard the revocation already visited must not escape it.
    for round in 0..20 {
        let store = Arc::new(MemoryStore::with_shards(16));
        runtime().block_on(async {
            let mut keys = Vec::new();
            for _ in 0..32 {
                let id = key();
                store.set(&id, &owned("ada"), in_secs(600)).await.expect("set");
                keys.push(id);
            }
            let renamers: Vec<_> = keys
                .into_iter()
                .map(|mut current| {
                    let store = Arc::clone(&store);
                    tokio::spawn(async move {
                        loop {
                            let next = key();
                            match store.rename(&current, &next, &Changes::new(), in_secs(600)).await? {
                                UpdateOutcome::Applied => current = next,
                                UpdateOutcome::Missing => return Ok::<_, StoreError>(()),
                            }
                            tokio::task::yield_now().await;
                        }
                    })
                })
                .collect();
            tokio::task::yield_now().await;
            let revoked = store.revoke_all("ada", None).await.expect("revoke_all");
            assert_eq!(revoked, 32, "round {round}: every session counted once");
            for renamer in renamers {
                renamer.await.expect("task").expect("store");
            }
            assert_eq!(store.len(), 0, "round {round}: a renamed session escaped the revocation");
            assert_eq!(store.sessions_of("ada").await.expect("list"), Vec::new());
            assert_eq!(store.users.entries(), 0);
        });
    }
}

#[test]
fn sweeping_prunes_the_index_and_the_leases() {
    let store = MemoryStore::with_shards(2);
    runtime().block_on(async {
        let past = Some(expiry::now() - Duration::from_secs(1));
        for i in 0..100 {
            store.set(&key(), &owned(if i % 2 == 0 { "ada" } else { "bob" }), past).await.expect("set");
        }
        let live = key();
        store.set(&live, &owned("ada"), in_secs(600)).await.expect("set");
        for _ in 0..10 {
            store.try_lease(&key(), Duration::from_millis(1)).await.expect("lease");
        }
        let held = key();
        store.try_lease(&held, Duration::from_secs(60)).await.expect("lease");
        assert_eq!(store.users.entries(), 101);
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert_eq!(store.delete_expired().await.expect("sweep"), 100);
        assert_eq!(store.users.entries(), 1, "expired sessions leave the index with their records");
        let leases: usize = store.shards.iter().map(|shard| read(shard).leases.len()).sum();
        assert_eq!(leases, 1, "leases that ran out are swept; the live one stays");
        assert!(store.try_lease(&held, Duration::from_secs(60)).await.expect("lease").is_none());
        let listed: Vec<StoreKey> = store.sessions_of("ada").await.expect("list").into_iter().map(|(k, _)| k).collect();
        assert_eq!(listed, vec![live]);
    });
}

#[test]
fn logins_and_logouts_leave_no_index_behind() {
    let store = MemoryStore::new();
    runtime().block_on(async {
        for round in 0..1_000 {
            let (anonymous, logged_in) = (key(), key());
            store.set(&anonymous, &data(json!({ "cart": [round] })), in_secs(600)).await.expect("set");
            let mut login = Changes::new();
            login.set(reserved::USER, json!(format!("user-{}", round % 7)));
            assert_eq!(
                store.rename(&anonymous, &logged_in, &login, in_secs(600)).await.expect("rename"),
                UpdateOutcome::Applied
            );
            store.delete(&logged_in).await.expect("logout");
        }
        assert_eq!(store.users.entries(), 0);
        assert!(store.is_empty());
    });
}

#[test]
fn scans_cover_few_and_many_shards_and_refuse_foreign_cursors() {
    for shards in [1, 3, 64] {
        let store = MemoryStore::with_shards(shards);
        runtime().block_on(async {
            let mut written: Vec<StoreKey> = (0..250).map(|_| key()).collect();
            for (i, id) in written.iter().enumerate() {
                store.set(id, &data(json!({ "i": i })), in_secs(600)).await.expect("set");
            }
            store.set(&key(), &SessionMap::new(), Some(expiry::now() - Duration::from_secs(1))).await.expect("set");
            for limit in [1, 7, 250, 1_000] {
                let mut seen = Vec::new();
                let mut cursor = ScanCursor::start();
                loop {
                    let page = store.scan(&cursor, limit).await.expect("scan");
                    assert!(page.records.len() <= limit);
                    for (id, record) in page.records {
                        assert_eq!(store.get(&id).await.expect("get"), Some(record));
                        seen.push(id);
                    }
                    match page.next {
                        Some(next) => cursor = next,
                        None => break,
                    }
                }
                seen.sort();
                written.sort();
                assert_eq!(seen, written, "{shards} shards, pages of {limit}");
            }
            let other = MemoryStore::with_shards(shards);
            let page = store.scan(&ScanCursor::start(), 1).await.expect("scan");
            let cursor = page.next.expect("more than one record");
            assert!(matches!(other.scan(&cursor, 10).await, Err(StoreError::Backend { .. })));
            assert!(matches!(
                store.scan(&ScanCursor::from_text("m1.nonsense"), 10).await,
                Err(StoreError::Backend { .. })
            ));
        });
    }
}

#[test]
fn a_renamed_session_keeps_its_user_unless_the_patch_changes_it() {
    let store = MemoryStore::with_shards(8);
    runtime().block_on(async {
        let (a, b, c) = (key(), key(), key());
        store.set(&a, &owned("ada"), in_secs(600)).await.expect("set");
        assert_eq!(store.rename(&a, &b, &Changes::new(), in_secs(600)).await.expect("rename"), UpdateOutcome::Applied);
        let mut to_bob = Changes::new();
        to_bob.set(reserved::USER, json!("bob"));
        assert_eq!(store.rename(&b, &c, &to_bob, in_secs(600)).await.expect("rename"), UpdateOutcome::Applied);
        assert_eq!(store.sessions_of("ada").await.expect("list"), Vec::new());
        let bobs: Vec<StoreKey> = store.sessions_of("bob").await.expect("list").into_iter().map(|(k, _)| k).collect();
        assert_eq!(bobs, vec![c.clone()]);
        // Onto a key that holds someone else's session: that one is replaced, and unlisted.
        let d = key();
        store.set(&d, &owned("cy"), in_secs(600)).await.expect("set");
        assert_eq!(store.rename(&c, &d, &Changes::new(), in_secs(600)).await.expect("rename"), UpdateOutcome::Applied);
        assert_eq!(store.sessions_of("cy").await.expect("list"), Vec::new());
        assert_eq!(store.sessions_of("bob").await.expect("list").len(), 1);
        assert_index_matches_records(&store);
    });
}
