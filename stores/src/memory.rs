//! `MemoryStore`: sessions in this process's memory, in a sharded map.
//!
//! Records are kept encoded (see [`codec`]) rather than as
//! `serde_json::Map`s: a small map costs several times its JSON size in
//! allocations, and a million sessions must fit in a few hundred MiB. The
//! encoding is text with raw, length-prefixed strings, so that a read, the
//! hottest path, copies strings out instead of parsing JSON.
//!
//! A key is hashed once per operation; the hash picks the shard and then
//! the slot in the shard's table. Each shard holds its records and an expiry
//! index ordered by expiry time, so `delete_expired` pops exactly the
//! expired entries instead of scanning everything. Expiry is also checked on
//! every read, so an expired record is never returned even if no sweep has
//! run.

mod codec;

use std::collections::BTreeSet;
use std::hash::BuildHasher;
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::SystemTime;

use foldhash::fast::RandomState;
use hashbrown::HashTable;
use hashbrown::hash_table::Entry as TableEntry;
use sessionkit::{Changes, SessionMap, SessionRecord, SessionStore, StoreError, StoreKey, UpdateOutcome, expiry};

/// Raw key bytes: the 32 bytes of a [`StoreKey`].
type Key = [u8; 32];

/// An in-memory session store, safe to share between threads and requests.
///
/// Sessions do not survive a restart and are not shared between processes;
/// use a persistent store for that.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), sessionkit::StoreError> {
/// use sessionkit::{SessionMap, SessionStore, StoreKey, SessionId};
/// use sessionkit_stores::MemoryStore;
///
/// let store = MemoryStore::new();
/// let id = StoreKey::hashed(&SessionId::generate());
/// store.set(&id, &SessionMap::new(), None).await?;
/// assert!(store.get(&id).await?.is_some());
/// # Ok(()) }
/// ```
pub struct MemoryStore {
    shards: Box<[RwLock<Shard>]>,
    /// Seeded at random per store. Hash flooding needs many stored keys
    /// that collide, and no client can choose a stored key: the layer
    /// stores only ids it generated (or their SHA-256), never one a client
    /// sent. A fast keyed hash is therefore enough, and it is on every
    /// operation's path.
    hasher: RandomState,
}

#[derive(Default)]
struct Shard {
    records: HashTable<Entry>,
    /// `(expires_at_ms, key)` for every record with an expiry, the key as two
    /// integers: comparing those is cheaper than comparing byte arrays.
    by_expiry: BTreeSet<(i64, IndexKey)>,
}

/// A key in the expiry index.
type IndexKey = (u128, u128);

fn index_key(key: &Key) -> IndexKey {
    let (high, low) = key.split_at(16);
    // Both halves are exactly 16 bytes, so the conversions cannot fail.
    let half = |bytes: &[u8]| u128::from_le_bytes(bytes.try_into().unwrap_or([0; 16]));
    (half(high), half(low))
}

fn key_of(index: IndexKey) -> Key {
    let mut key = [0u8; 32];
    key[..16].copy_from_slice(&index.0.to_le_bytes());
    key[16..].copy_from_slice(&index.1.to_le_bytes());
    key
}

struct Entry {
    key: Key,
    /// The data, encoded. Shared, so a read copies a pointer under the lock
    /// and decodes after releasing it.
    data: Arc<str>,
    expires_at_ms: Option<i64>,
}

impl Entry {
    fn is_live(&self, now_ms: i64) -> bool {
        self.expires_at_ms.is_none_or(|at| at > now_ms)
    }
}

/// Records up to this size are decoded under the shard's read lock, which
/// holds up that shard's writers for well under a microsecond; larger ones
/// are decoded after releasing it, from a shared copy.
const DECODE_UNDER_LOCK: usize = 1024;

/// Default shard count: plenty for contention on any common core count, and
/// small enough that a sweep visits few empty shards.
const DEFAULT_SHARDS: usize = 64;

impl MemoryStore {
    /// An empty store with the default number of shards.
    pub fn new() -> Self {
        Self::with_shards(DEFAULT_SHARDS)
    }

    /// An empty store with `shards` independently locked shards (at least 1).
    pub fn with_shards(shards: usize) -> Self {
        let shards = (0..shards.max(1)).map(|_| RwLock::new(Shard::default())).collect();
        Self { shards, hasher: RandomState::default() }
    }

    /// The number of records held, including expired ones not yet swept.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|shard| read(shard).records.len()).sum()
    }

    /// Whether the store holds no record at all.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn hash(&self, key: &Key) -> u64 {
        self.hasher.hash_one(key)
    }

    /// The shard of a key, from bits of its hash that the shard's table
    /// does not use (it takes the lowest bits for the slot and the top
    /// seven as a tag), so that keys of one shard still spread over its
    /// table.
    fn shard(&self, hash: u64) -> &RwLock<Shard> {
        &self.shards[(hash >> 32) as usize % self.shards.len()]
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore").field("shards", &self.shards.len()).finish_non_exhaustive()
    }
}

fn read(shard: &RwLock<Shard>) -> RwLockReadGuard<'_, Shard> {
    // Nothing below panics while holding a lock, so a poisoned lock still
    // guards consistent data.
    shard.read().unwrap_or_else(PoisonError::into_inner)
}

fn write(shard: &RwLock<Shard>) -> RwLockWriteGuard<'_, Shard> {
    shard.write().unwrap_or_else(PoisonError::into_inner)
}

fn now_ms() -> i64 {
    expiry::to_unix_ms(SystemTime::now())
}

fn decode(data: &str) -> Result<SessionMap, StoreError> {
    // Only this store wrote these bytes, so a failure is a bug, reported as one.
    codec::decode(data).map_err(|err| StoreError::backend("memory store: decoding a stored record", err))
}

impl Shard {
    /// Inserts or replaces a record, keeping the expiry index in step.
    fn put(&mut self, hasher: &RandomState, hash: u64, key: Key, data: Arc<str>, expires_at_ms: Option<i64>) {
        let rehash = |entry: &Entry| hasher.hash_one(entry.key);
        match self.records.entry(hash, |entry| entry.key == key, rehash) {
            TableEntry::Occupied(mut slot) => {
                let entry = slot.get_mut();
                if entry.expires_at_ms != expires_at_ms {
                    if let Some(old) = entry.expires_at_ms {
                        self.by_expiry.remove(&(old, index_key(&key)));
                    }
                    if let Some(new) = expires_at_ms {
                        self.by_expiry.insert((new, index_key(&key)));
                    }
                    entry.expires_at_ms = expires_at_ms;
                }
                entry.data = data;
            }
            TableEntry::Vacant(slot) => {
                slot.insert(Entry { key, data, expires_at_ms });
                if let Some(new) = expires_at_ms {
                    self.by_expiry.insert((new, index_key(&key)));
                }
            }
        }
    }

    fn take(&mut self, hash: u64, key: &Key) -> Option<Entry> {
        let (entry, _) = self.records.find_entry(hash, |entry| entry.key == *key).ok()?.remove();
        if let Some(at) = entry.expires_at_ms {
            self.by_expiry.remove(&(at, index_key(key)));
        }
        Some(entry)
    }

    fn live(&self, hash: u64, key: &Key, now_ms: i64) -> Option<&Entry> {
        self.records.find(hash, |entry| entry.key == *key).filter(|entry| entry.is_live(now_ms))
    }
}

#[sessionkit::async_trait]
impl SessionStore for MemoryStore {
    async fn get(&self, id: &StoreKey) -> Result<Option<SessionRecord>, StoreError> {
        let key = id.as_bytes();
        let hash = self.hash(key);
        let shard = read(self.shard(hash));
        let Some(entry) = shard.live(hash, key, now_ms()) else {
            return Ok(None);
        };
        let expires_at = entry.expires_at_ms.map(expiry::from_unix_ms);
        let data = if entry.data.len() <= DECODE_UNDER_LOCK {
            decode(&entry.data)
        } else {
            let data = Arc::clone(&entry.data);
            drop(shard);
            decode(&data)
        };
        Ok(Some(SessionRecord::new(data?, expires_at)))
    }

    async fn set(&self, id: &StoreKey, data: &SessionMap, expires_at: Option<SystemTime>) -> Result<(), StoreError> {
        let key = *id.as_bytes();
        let hash = self.hash(&key);
        let data = codec::encode(data)?;
        write(self.shard(hash)).put(&self.hasher, hash, key, data, expires_at.map(expiry::to_unix_ms));
        Ok(())
    }

    async fn delete(&self, id: &StoreKey) -> Result<(), StoreError> {
        let key = id.as_bytes();
        let hash = self.hash(key);
        // Drop the record after releasing the lock: freeing a large session
        // is work other requests on this shard need not wait for.
        let removed = write(self.shard(hash)).take(hash, key);
        drop(removed);
        Ok(())
    }

    async fn touch(&self, id: &StoreKey, expires_at: Option<SystemTime>) -> Result<bool, StoreError> {
        let key = *id.as_bytes();
        let hash = self.hash(&key);
        let mut shard = write(self.shard(hash));
        let Some(data) = shard.live(hash, &key, now_ms()).map(|entry| Arc::clone(&entry.data)) else {
            return Ok(false);
        };
        shard.put(&self.hasher, hash, key, data, expires_at.map(expiry::to_unix_ms));
        Ok(true)
    }

    async fn update(
        &self,
        id: &StoreKey,
        changes: &Changes,
        expires_at: Option<SystemTime>,
    ) -> Result<UpdateOutcome, StoreError> {
        let key = *id.as_bytes();
        let hash = self.hash(&key);
        // The whole read-modify-write happens under the shard's write lock:
        // that is what makes concurrent updates of one session lose nothing.
        let mut shard = write(self.shard(hash));
        let Some(entry) = shard.live(hash, &key, now_ms()) else {
            return Ok(UpdateOutcome::Missing);
        };
        // Patched in its encoded form: the keys the request did not touch
        // are copied, not decoded and encoded again.
        let data = codec::patch(&entry.data, changes)?;
        shard.put(&self.hasher, hash, key, data, expires_at.map(expiry::to_unix_ms));
        Ok(UpdateOutcome::Applied)
    }

    async fn delete_expired(&self) -> Result<u64, StoreError> {
        let now = now_ms();
        let mut removed = 0;
        for shard in self.shards.iter() {
            let mut shard = write(shard);
            while let Some(&(at, index)) = shard.by_expiry.first() {
                if at > now {
                    break;
                }
                shard.by_expiry.pop_first();
                let key = key_of(index);
                if let Ok(entry) = shard.records.find_entry(self.hash(&key), |entry| entry.key == key) {
                    entry.remove();
                }
                removed += 1;
            }
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;

    use super::*;

    fn data(value: serde_json::Value) -> SessionMap {
        value.as_object().cloned().expect("object")
    }

    #[tokio::test]
    async fn the_expiry_index_follows_every_write() {
        let store = MemoryStore::with_shards(1);
        let id = sessionkit::testing::checks::key();
        let soon = expiry::now() + Duration::from_secs(60);
        let later = soon + Duration::from_secs(60);
        store.set(&id, &data(json!({ "a": 1 })), Some(soon)).await.expect("set");
        assert!(store.touch(&id, Some(later)).await.expect("touch"));
        store.set(&id, &data(json!({ "a": 2 })), None).await.expect("set");
        assert!(read(&store.shards[0]).by_expiry.is_empty(), "a record without expiry is not indexed");
        store.set(&id, &data(json!({ "a": 3 })), Some(soon)).await.expect("set");
        store.delete(&id).await.expect("delete");
        let shard = read(&store.shards[0]);
        assert!(shard.by_expiry.is_empty() && shard.records.is_empty());
    }

    #[tokio::test]
    async fn delete_expired_visits_only_expired_entries() {
        let store = MemoryStore::with_shards(4);
        let past = expiry::now() - Duration::from_secs(1);
        let future = expiry::now() + Duration::from_secs(600);
        for i in 0..100 {
            let at = if i % 10 == 0 { past } else { future };
            store.set(&sessionkit::testing::checks::key(), &SessionMap::new(), Some(at)).await.expect("set");
        }
        assert_eq!(store.len(), 100);
        assert_eq!(store.delete_expired().await.expect("sweep"), 10);
        assert_eq!(store.len(), 90);
        assert_eq!(store.delete_expired().await.expect("sweep"), 0);
    }
}
