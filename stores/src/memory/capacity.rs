//! The optional bound on how many records a [`MemoryStore`] holds, and
//! the policy when it is reached.
//!
//! One counter for the whole store, of the records in its tables, expired
//! ones not yet swept included. A write that adds a record (a `set` of a
//! key the store does not hold) first takes a place with one atomic
//! compare-and-swap that never lets the count pass the maximum, while
//! holding the key's shard lock; every removal gives its places back under
//! the same lock. So the bound is exact, also under concurrent creation:
//! the tables never hold more records than the capacity.
//!
//! The policy when full: the write that would add a record is refused with
//! [`StoreError::Full`], writing nothing. Before refusing, the store sweeps
//! its expired records (they hold places until swept), so a store is only
//! ever full of live sessions. Writes that add no record are never refused:
//! updates, touches, deletes, and renames (which free one place as they
//! take one), so the sessions already held keep working.
//!
//! Only sessions are counted, not bytes: a byte count would change on every
//! update, a shared counter written by every request on every shard, and a
//! byte bound would have to refuse updates that grow a session, breaking
//! the sessions it holds. The configuration's
//! [`max_size`](sessionkit::SessionConfigBuilder::max_size) bounds each
//! session, so capacity × `max_size` bounds the data.

use std::sync::atomic::{AtomicUsize, Ordering};

use sessionkit::StoreError;

#[cfg(doc)]
use super::MemoryStore;

/// The maximum and how many places are taken.
#[derive(Debug)]
pub(super) struct Capacity {
    max: usize,
    /// The records in the store's tables, live or expired. Changed only
    /// under the lock of the shard whose table changes.
    held: AtomicUsize,
}

impl Capacity {
    pub(super) fn new(max: usize) -> Self {
        Self { max, held: AtomicUsize::new(0) }
    }

    pub(super) fn max(&self) -> usize {
        self.max
    }

    /// Takes a place for a new record; `false` when every place is taken.
    pub(super) fn try_take(&self) -> bool {
        self.held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| (held < self.max).then_some(held + 1))
            .is_ok()
    }

    /// Gives back the places of `records` removed records.
    pub(super) fn give_back(&self, records: usize) {
        if records > 0 {
            self.held.fetch_sub(records, Ordering::AcqRel);
        }
    }

    /// The refusal of a record past the maximum.
    pub(super) fn full(&self) -> StoreError {
        StoreError::Full { capacity: self.max }
    }

    #[cfg(test)]
    pub(super) fn held(&self) -> usize {
        self.held.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::{Duration, SystemTime};

    use sessionkit::testing::checks::key;
    use sessionkit::{Changes, SessionMap, SessionStore, StoreKey, UpdateOutcome, expiry, reserved};

    use super::super::MemoryStore;
    use super::*;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread().worker_threads(4).enable_all().build().expect("runtime")
    }

    fn in_secs(secs: u64) -> Option<SystemTime> {
        Some(expiry::now() + Duration::from_secs(secs))
    }

    fn owned(user: &str) -> SessionMap {
        let mut data = SessionMap::new();
        data.insert(reserved::USER.to_owned(), user.into());
        data
    }

    /// The counter against the tables: they must agree whenever no write
    /// is under way.
    fn assert_counted(store: &MemoryStore) {
        let held = store.capacity.as_ref().map(Capacity::held);
        assert_eq!(held, Some(store.len()), "the counter follows the tables");
    }

    async fn fill(store: &MemoryStore, n: usize) -> Vec<StoreKey> {
        let mut keys = Vec::new();
        for _ in 0..n {
            let key = key();
            store.set(&key, &SessionMap::new(), in_secs(60)).await.expect("room for it");
            keys.push(key);
        }
        keys
    }

    fn is_full(result: Result<(), StoreError>) -> bool {
        matches!(result, Err(StoreError::Full { capacity: 3 }))
    }

    #[tokio::test]
    async fn a_full_store_refuses_new_sessions_and_keeps_serving_its_own() {
        let store = MemoryStore::builder().shards(2).capacity(3).build();
        assert_eq!(store.capacity(), Some(3));
        let keys = fill(&store, 3).await;
        let late = key();
        assert!(is_full(store.set(&late, &SessionMap::new(), in_secs(60)).await), "a fourth session is refused");
        assert!(store.get(&late).await.expect("get").is_none(), "and nothing of it written");

        // The sessions it holds keep working, full or not.
        store.set(&keys[0], &SessionMap::new(), in_secs(120)).await.expect("an overwrite adds nothing");
        let changes = Changes::new();
        assert_eq!(store.update(&keys[1], &changes, in_secs(120)).await.expect("update"), UpdateOutcome::Applied);
        assert!(store.touch(&keys[2], in_secs(120)).await.expect("touch"));
        let renamed = key();
        let moved = store.rename(&keys[2], &renamed, &changes, in_secs(120)).await.expect("a rename frees a place");
        assert_eq!(moved, UpdateOutcome::Applied);
        assert_counted(&store);
        assert!(is_full(store.set(&late, &SessionMap::new(), in_secs(60)).await), "still full");

        // A logout frees a place for the next visitor.
        store.delete(&keys[0]).await.expect("delete");
        store.set(&late, &SessionMap::new(), in_secs(60)).await.expect("room again");
        assert_counted(&store);
    }

    #[tokio::test]
    async fn expired_sessions_do_not_keep_a_store_full() {
        let store = MemoryStore::builder().shards(4).capacity(3).build();
        let past = Some(expiry::now() - Duration::from_secs(1));
        for _ in 0..3 {
            store.set(&key(), &SessionMap::new(), past).await.expect("room for it");
        }
        assert_eq!(store.len(), 3, "expired, not yet swept");
        fill(&store, 3).await;
        assert_eq!(store.len(), 3, "the expired ones were swept to make room, in every shard");
        assert_counted(&store);
    }

    #[tokio::test]
    async fn every_removal_gives_its_place_back() {
        let store = MemoryStore::builder().shards(4).capacity(8).build();
        let ada = [key(), key(), key()];
        for key in &ada {
            store.set(key, &owned("ada"), in_secs(60)).await.expect("set");
        }
        let bob = key();
        store.set(&bob, &owned("bob"), in_secs(60)).await.expect("set");
        let keys = fill(&store, 2).await;
        store.set(&key(), &SessionMap::new(), Some(expiry::now() - Duration::from_secs(1))).await.expect("set");
        assert_counted(&store);

        assert!(store.revoke("bob", &bob).await.expect("revoke"));
        assert_counted(&store);
        assert_eq!(store.revoke_all("ada", Some(&ada[0])).await.expect("revoke_all"), 2);
        assert_counted(&store);
        let changes = Changes::new();
        let onto = store.rename(&keys[0], &keys[1], &changes, in_secs(60)).await.expect("rename onto a session");
        assert_eq!(onto, UpdateOutcome::Applied);
        assert_counted(&store);
        assert_eq!(store.delete_expired().await.expect("sweep"), 1);
        assert_counted(&store);
        assert_eq!(store.len(), 2, "ada's kept session and the renamed one");
        fill(&store, 6).await;
        assert!(store.set(&key(), &SessionMap::new(), None).await.is_err(), "full at exactly 8");
    }

    #[test]
    fn concurrent_creation_never_passes_the_capacity() {
        let store = Arc::new(MemoryStore::builder().shards(8).capacity(100).build());
        let created = runtime().block_on(async {
            let tasks: Vec<_> = (0..8)
                .map(|_| {
                    let store = Arc::clone(&store);
                    tokio::spawn(async move {
                        let mut created = 0;
                        for _ in 0..40 {
                            match store.set(&key(), &SessionMap::new(), in_secs(60)).await {
                                Ok(()) => created += 1,
                                Err(StoreError::Full { capacity: 100 }) => {}
                                Err(err) => panic!("unexpected error: {err}"),
                            }
                        }
                        created
                    })
                })
                .collect();
            let mut created = 0;
            for task in tasks {
                created += task.await.expect("task");
            }
            created
        });
        assert_eq!(created, 100, "exactly the capacity was created out of 320 attempts");
        assert_eq!(store.len(), 100);
        assert_counted(&store);
    }

    #[tokio::test]
    async fn zero_capacity_refuses_every_session_and_none_is_unbounded() {
        let none = MemoryStore::builder().capacity(0).build();
        assert!(matches!(none.set(&key(), &SessionMap::new(), None).await, Err(StoreError::Full { capacity: 0 })));
        let unbounded = MemoryStore::new();
        assert_eq!(unbounded.capacity(), None);
        fill(&unbounded, 50).await;
        assert_eq!(unbounded.len(), 50);
    }
}
