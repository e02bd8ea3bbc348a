//! `MemoryStore`: sessions in this process's memory, in a sharded map.
//!
//! # Records
//!
//! Records are kept encoded (see [`codec`]) rather than as
//! `serde_json::Map`s: a small map costs several times its JSON size in
//! allocations, and a million sessions must fit in a few hundred MiB. The
//! encoding is text with raw, length-prefixed strings, so that a read, the
//! hottest path, copies strings out instead of parsing JSON. Each record is
//! one allocation holding its user and its data ([`record`]); a table slot
//! holds the key, a pointer to the record, the expiry and the data's length
//! as JSON ([`shard`]).
//!
//! A key is hashed once per operation; the hash picks the shard and then
//! the slot in the shard's table. Each shard holds its records, an expiry
//! index ordered by expiry time (so `delete_expired` pops exactly the
//! expired entries instead of scanning everything) and the leases on its
//! keys. Expiry is also checked on every read, so an expired record is
//! never returned even if no sweep has run.
//!
//! `update` and `rename` patch the encoded record ([`patch`], [`ops`]):
//! untouched keys are copied, operations run on the stored encoding, and
//! the size limit is checked against the record's JSON length, which every
//! patched record keeps (a record written by `set` is measured once, by the
//! first patch with a limit).
//!
//! # The user index
//!
//! [`users`] maps each user to the keys of their sessions, in its own
//! shards (by the user's hash). Every write that can change a session's
//! user (`set`, `update` and `rename` through
//! [`reserved::USER`](sessionkit::reserved::USER) or a
//! clear, `delete`, `revoke`, `revoke_all`, `delete_expired`) changes the
//! index in the same critical section as the record: while it holds the
//! record's shard lock. Writes that keep a session's user, and anonymous
//! sessions, never touch it.
//!
//! A listing (`sessions_of`) and a revocation of all of a user's sessions
//! (`revoke_all`) must see the user's sessions at one instant, although
//! they live in many shards. They read the user's keys, lock those keys'
//! record shards (read locks for a listing, write locks for a revocation),
//! and read the keys again: if every key is in a shard they hold, no write
//! can add, move or remove any of the user's sessions in those shards until
//! they let go, so they act on exactly the user's sessions of that instant
//! (a session written afterwards into another shard comes after them). If
//! a key is in a shard they do not hold, a write came in between: they let
//! go and retry with those shards too, and after a few retries lock every
//! shard. So a `rename` of a user's session (a login, a regenerate) racing
//! a `revoke_all` either happens before it, and the new key is revoked, or
//! after it, and finds nothing to rename.
//!
//! # Lock order
//!
//! Taken by the helpers in [`locks`]:
//!
//! 1. Record shards, in ascending index: one for most operations, two for
//!    a `rename` between shards, a set for listings and revocations, all of
//!    them in turn for `delete_expired` and `scan` (one at a time).
//! 2. Then a user-index shard, only while holding the record shards of
//!    every key it changes or checks, and never more than one at a time.
//! 3. Nothing is locked while a user-index shard is held.
//!
//! Every thread takes locks in this one order, so no two can each hold
//! what the other waits for: there is no deadlock.
//!
//! # Leases
//!
//! [`leases`]: in process, one live lease per key, kept in the key's shard
//! with a random token and an expiry per grant. `update` and `rename` of a
//! patch fenced by a token check, under the shard's lock, that the token's
//! lease is live, and otherwise refuse with
//! [`PatchError::LeaseLost`] writing
//! nothing. Expired leases are replaced by the next taker and swept by
//! `delete_expired`.
//!
//! # Capacity
//!
//! [`capacity`]: an optional bound on the records held, one counter for
//! the store, exact under concurrency. When full, a write that would add a
//! record is refused with [`StoreError::Full`] after sweeping the expired
//! ones; writes to sessions the store holds are never refused.
//!
//! # Scans
//!
//! [`scan`]: shard by shard, each shard's live records in key order, the
//! cursor naming the shard and the last key returned; a record that lives
//! throughout a scan is returned exactly once. Cursors are valid for the
//! store that issued them.

mod capacity;
mod codec;
mod json_len;
mod leases;
mod locks;
mod ops;
mod patch;
mod record;
mod scan;
mod shard;
mod users;

use std::sync::{RwLock, RwLockWriteGuard};
use std::time::{Duration, SystemTime};

use foldhash::fast::RandomState;
use sessionkit::lease::{Lease, LeaseToken};
use sessionkit::{
    Changes, PatchError, ScanCursor, ScanPage, SessionMap, SessionRecord, SessionStore, StoreError, StoreKey,
    UpdateOutcome, expiry,
};

use self::capacity::Capacity;
use self::locks::{guard_of, read, write};
use self::record::Record;
use self::shard::{Entry, Key, Shard};
use self::users::{UserAfter, UserIndex};

/// An in-memory session store, safe to share between threads and requests.
///
/// Sessions do not survive a restart and are not shared between processes;
/// use a persistent store for that. Every part of the store contract is
/// offered, each atomic under the store's shard locks:
///
/// - patches with operations and size limits, applied to the stored
///   encoding without decoding the whole session;
/// - `rename`, which moves a live session to its new key or reports it
///   missing, never bringing back a destroyed one;
/// - the user index (`sessions_of`, `revoke`, `revoke_all`), which lists
///   and revokes a user's sessions as they are at one instant, even while
///   they are renamed;
/// - exclusive leases, one per key, with fencing of the patches they guard;
/// - scans, whose cursors are valid for the store that issued them.
///
/// # Capacity
///
/// Unbounded unless [`MemoryStoreBuilder::capacity`] says otherwise. A store
/// with a capacity holds at most that many sessions, exactly, also under
/// concurrent logins. When it is full, a write that would add a session (a
/// `set` of a key it does not hold) fails with [`StoreError::Full`] and
/// writes nothing; through [`SessionLayer`](sessionkit::SessionLayer) the
/// visitor gets an empty 503 and no cookie. Expired sessions do not count:
/// before refusing, the store sweeps them. The sessions it holds keep
/// working: updates, refreshes, logouts, and renames (a login or a
/// regenerate moves a session, adding none) are never refused. Only
/// sessions are counted, not bytes; bound each session's size with
/// [`max_size`](sessionkit::SessionConfigBuilder::max_size).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), sessionkit::StoreError> {
/// use sessionkit::{SessionId, SessionMap, SessionStore, StoreError, StoreKey};
/// use sessionkit_stores::MemoryStore;
///
/// let store = MemoryStore::builder().capacity(1).build();
/// let first = StoreKey::hashed(&SessionId::generate());
/// store.set(&first, &SessionMap::new(), None).await?;
/// let second = StoreKey::hashed(&SessionId::generate());
/// let refused = store.set(&second, &SessionMap::new(), None).await;
/// assert!(matches!(refused, Err(StoreError::Full { capacity: 1 })));
/// store.set(&first, &SessionMap::new(), None).await?; // the first keeps working
/// store.delete(&first).await?;
/// store.set(&second, &SessionMap::new(), None).await?; // and its place is free again
/// # Ok(()) }
/// ```
///
/// Design notes: [`docs/memory-store.md`](https://github.com/sessionkit/sessionkit/blob/main/docs/memory-store.md).
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
    users: UserIndex,
    /// Seeded at random per store. Hash flooding needs many stored keys
    /// that collide, and no client can choose a stored key: the layer
    /// stores only ids it generated (or their SHA-256), never one a client
    /// sent. A fast keyed hash is therefore enough, and it is on every
    /// operation's path.
    hasher: RandomState,
    /// Random, names this store in its scan cursors.
    scan_tag: u64,
    /// The bound on the records held, if any.
    capacity: Option<Capacity>,
}

/// Records up to this size are decoded under the shard's read lock, which
/// holds up that shard's writers for well under a microsecond; larger ones
/// are decoded after releasing it, from a shared copy.
const DECODE_UNDER_LOCK: usize = 1024;

impl MemoryStore {
    /// How many independently locked shards a store has unless
    /// [`MemoryStoreBuilder::shards`] says otherwise: plenty for contention
    /// on any common core count, and few enough that a sweep visits few
    /// empty shards.
    pub const DEFAULT_SHARDS: usize = 64;

    /// An empty store with the default settings.
    pub fn new() -> Self {
        Self::builder().build()
    }

    /// A builder, to choose the number of shards and a capacity.
    pub fn builder() -> MemoryStoreBuilder {
        MemoryStoreBuilder { shards: Self::DEFAULT_SHARDS, capacity: None }
    }

    /// The most sessions the store holds ([`MemoryStoreBuilder::capacity`]);
    /// `None`: unbounded.
    pub fn capacity(&self) -> Option<usize> {
        self.capacity.as_ref().map(Capacity::max)
    }

    /// The number of records held, including expired ones not yet swept.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|shard| read(shard).len()).sum()
    }

    /// Whether the store holds no record at all.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn hash(&self, key: &Key) -> u64 {
        shard::hash_key(&self.hasher, key)
    }

    /// The shard of a hash, from bits of it that the shard's table does not
    /// use (it takes the lowest bits for the slot and the top seven as a
    /// tag), so that keys of one shard still spread over its table.
    fn shard_index(&self, hash: u64) -> usize {
        (hash >> 32) as usize % self.shards.len()
    }

    fn shard(&self, hash: u64) -> &RwLock<Shard> {
        &self.shards[self.shard_index(hash)]
    }

    /// The write lock on the shard of `key`, with a place for its record:
    /// the key has one already (live or expired: a `set` replaces it), or a
    /// free place was taken for it. When none is free, the expired records
    /// are swept (holding no lock, as the lock order wants) and the place
    /// asked for once more before the store is called full.
    fn lock_with_place(&self, hash: u64, key: &Key) -> Result<RwLockWriteGuard<'_, Shard>, StoreError> {
        let Some(capacity) = &self.capacity else {
            return Ok(write(self.shard(hash)));
        };
        for sweep_first in [false, true] {
            if sweep_first {
                self.sweep(now_ms());
            }
            let shard = write(self.shard(hash));
            if shard.find(hash, key).is_some() || capacity.try_take() {
                return Ok(shard);
            }
        }
        Err(capacity.full())
    }

    /// Gives back the places of `records` records just removed, under the
    /// lock of their shard.
    fn freed(&self, records: usize) {
        if let Some(capacity) = &self.capacity {
            capacity.give_back(records);
        }
    }

    /// Removes every record expired at `now_ms`, and expired leases;
    /// returns how many records.
    fn sweep(&self, now_ms: i64) -> u64 {
        let mut removed = 0;
        for shard in self.shards.iter() {
            let mut shard = write(shard);
            let expired = shard.take_expired(&self.hasher, now_ms);
            for entry in &expired {
                if let Some(user) = entry.record.user() {
                    self.users.moved(&entry.key, Some(user), None);
                }
            }
            self.freed(expired.len());
            shard.leases.sweep(now_ms);
            drop(shard);
            removed += expired.len() as u64;
        }
        removed
    }
}

/// Builds a [`MemoryStore`]; made by [`MemoryStore::builder`].
#[derive(Debug, Clone)]
#[must_use]
pub struct MemoryStoreBuilder {
    shards: usize,
    capacity: Option<usize>,
}

impl MemoryStoreBuilder {
    /// The number of independently locked shards (at least 1)
    /// [default: [`MemoryStore::DEFAULT_SHARDS`]].
    pub fn shards(mut self, shards: usize) -> Self {
        self.shards = shards;
        self
    }

    /// The most sessions the store holds, expired ones not counted
    /// [default: `None`, unbounded]. When it is full, a write that would
    /// add a session is refused with [`StoreError::Full`]; see
    /// [`MemoryStore#capacity`] for the policy. A capacity of 0 refuses
    /// every session.
    pub fn capacity(mut self, sessions: impl Into<Option<usize>>) -> Self {
        self.capacity = sessions.into();
        self
    }

    /// The empty store. Nothing to open, so nothing can fail.
    pub fn build(self) -> MemoryStore {
        let shards = self.shards.max(1);
        MemoryStore {
            shards: (0..shards).map(|_| RwLock::new(Shard::default())).collect(),
            users: UserIndex::new(shards),
            hasher: RandomState::default(),
            // A token is 128 random bits from the operating system: half of
            // one is a tag no other store will have.
            scan_tag: LeaseToken::generate().as_u128() as u64,
            capacity: self.capacity.map(Capacity::new),
        }
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("shards", &self.shards.len())
            .field("capacity", &self.capacity())
            .finish_non_exhaustive()
    }
}

fn now_ms() -> i64 {
    expiry::to_unix_ms(SystemTime::now())
}

fn decode(record: &Record) -> Result<SessionMap, StoreError> {
    // Only this store wrote these bytes, so a failure is a bug, reported as one.
    codec::decode(record.data()).map_err(|err| StoreError::backend("memory store: decoding a stored record", err))
}

fn session_record(record: &Record, expires_at_ms: Option<i64>) -> Result<SessionRecord, StoreError> {
    Ok(SessionRecord::new(decode(record)?, expires_at_ms.map(expiry::from_unix_ms)))
}

/// The fencing check: a patch fenced by a lease applies only while that
/// lease is live.
fn check_fence(shard: &mut Shard, key: &StoreKey, changes: &Changes, now_ms: i64) -> Result<(), StoreError> {
    match changes.lease() {
        Some(token) if !shard.leases.holds(key, token, now_ms) => Err(StoreError::Refused(PatchError::LeaseLost)),
        _ => Ok(()),
    }
}

#[sessionkit::async_trait]
impl SessionStore for MemoryStore {
    async fn get(&self, id: &StoreKey) -> Result<Option<SessionRecord>, StoreError> {
        let key = id.as_bytes();
        let hash = self.hash(key);
        let shard = read(self.shard(hash));
        let Some(entry) = shard.find(hash, key).filter(|entry| entry.is_live_now()) else {
            return Ok(None);
        };
        if entry.record.len() <= DECODE_UNDER_LOCK {
            session_record(&entry.record, entry.expires_at_ms()).map(Some)
        } else {
            let (record, expires_at_ms) = (entry.record.clone(), entry.expires_at_ms());
            drop(shard);
            session_record(&record, expires_at_ms).map(Some)
        }
    }

    async fn set(&self, id: &StoreKey, data: &SessionMap, expires_at: Option<SystemTime>) -> Result<(), StoreError> {
        // Not measured: see `patch` for why a `set` leaves that to the
        // first patch that needs it.
        let (record, user) = Record::build_finding_user(|out| codec::encode(out, data))?;
        let key = id.as_bytes();
        let hash = self.hash(key);
        let mut shard = self.lock_with_place(hash, key)?;
        let replaced = shard.put(&self.hasher, hash, key, (record, None), expires_at.map(expiry::to_unix_ms));
        self.users.moved(key, replaced.as_ref().and_then(Record::user), user);
        drop(shard);
        // Freed after releasing the lock: freeing a large session is work
        // other requests on this shard need not wait for.
        drop(replaced);
        Ok(())
    }

    async fn delete(&self, id: &StoreKey) -> Result<(), StoreError> {
        let key = id.as_bytes();
        let hash = self.hash(key);
        let mut shard = write(self.shard(hash));
        let removed = shard.take(hash, key);
        if let Some(user) = removed.as_ref().and_then(|entry| entry.record.user()) {
            self.users.moved(key, Some(user), None);
        }
        self.freed(usize::from(removed.is_some()));
        drop(shard);
        drop(removed);
        Ok(())
    }

    async fn touch(&self, id: &StoreKey, expires_at: Option<SystemTime>) -> Result<bool, StoreError> {
        let key = id.as_bytes();
        let hash = self.hash(key);
        let mut shard = write(self.shard(hash));
        if shard.find(hash, key).is_none_or(|entry| !entry.is_live_now()) {
            return Ok(false);
        }
        Ok(shard.set_expiry(hash, key, expires_at.map(expiry::to_unix_ms)))
    }

    async fn update(
        &self,
        id: &StoreKey,
        changes: &Changes,
        expires_at: Option<SystemTime>,
    ) -> Result<UpdateOutcome, StoreError> {
        let key = id.as_bytes();
        let hash = self.hash(key);
        let user_after = UserAfter::of(changes);
        // The whole read-modify-write happens under the shard's write lock:
        // that is what makes concurrent updates of one session lose nothing.
        let mut shard = write(self.shard(hash));
        let now = now_ms();
        check_fence(&mut shard, id, changes, now)?;
        let Some(entry) = shard.live(hash, key, now) else {
            return Ok(UpdateOutcome::Missing);
        };
        let old = &entry.record;
        let record = Record::build(user_after.applied_to(old.user()), |out| {
            patch::patch(out, old.data(), entry.json_len(), changes)
        })?;
        let replaced = shard.put(&self.hasher, hash, key, record, expires_at.map(expiry::to_unix_ms));
        let before = replaced.as_ref().and_then(Record::user);
        self.users.moved(key, before, user_after.applied_to(before));
        drop(shard);
        drop(replaced);
        Ok(UpdateOutcome::Applied)
    }

    async fn rename(
        &self,
        from: &StoreKey,
        to: &StoreKey,
        changes: &Changes,
        expires_at: Option<SystemTime>,
    ) -> Result<UpdateOutcome, StoreError> {
        if from == to {
            return self.update(from, changes, expires_at).await;
        }
        let (from_key, to_key) = (from.as_bytes(), to.as_bytes());
        let (from_hash, to_hash) = (self.hash(from_key), self.hash(to_key));
        let user_after = UserAfter::of(changes);
        let mut shards = self.lock_pair(self.shard_index(from_hash), self.shard_index(to_hash));
        let now = now_ms();
        check_fence(shards.from(), from, changes, now)?;
        let Some(entry) = shards.from().live(from_hash, from_key, now) else {
            return Ok(UpdateOutcome::Missing);
        };
        let old = &entry.record;
        let record = Record::build(user_after.applied_to(old.user()), |out| {
            patch::patch(out, old.data(), entry.json_len(), changes)
        })?;
        // Live a moment ago, under the lock still held.
        let Some(moved) = shards.from().take(from_hash, from_key) else {
            return Ok(UpdateOutcome::Missing);
        };
        let replaced = shards.to().put(&self.hasher, to_hash, to_key, record, expires_at.map(expiry::to_unix_ms));
        let user = moved.record.user();
        self.users.moved(from_key, user, None);
        self.users.moved(to_key, replaced.as_ref().and_then(Record::user), user_after.applied_to(user));
        // One record moved; one more gone if it replaced another.
        self.freed(usize::from(replaced.is_some()));
        drop(shards);
        drop((moved, replaced));
        Ok(UpdateOutcome::Applied)
    }

    async fn delete_expired(&self) -> Result<u64, StoreError> {
        Ok(self.sweep(now_ms()))
    }

    async fn sessions_of(&self, user: &str) -> Result<Vec<(StoreKey, SessionRecord)>, StoreError> {
        let (mut guards, keys) = self.lock_sessions_of(user, read);
        let now = now_ms();
        let mut found = Vec::with_capacity(keys.len());
        for key in keys {
            let hash = self.hash(&key);
            let Some(shard) = guard_of(&mut guards, self.shard_index(hash)) else {
                continue;
            };
            if let Some(entry) = shard.live(hash, &key, now).filter(|entry| entry.record.user() == Some(user)) {
                found.push((key, entry.record.clone(), entry.expires_at_ms()));
            }
        }
        drop(guards);
        found
            .into_iter()
            .map(|(key, record, expires_at_ms)| {
                Ok((StoreKey::from_bytes(key), session_record(&record, expires_at_ms)?))
            })
            .collect()
    }

    async fn revoke(&self, user: &str, key: &StoreKey) -> Result<bool, StoreError> {
        let key = key.as_bytes();
        let hash = self.hash(key);
        let mut shard = write(self.shard(hash));
        if shard.live(hash, key, now_ms()).is_none_or(|entry| entry.record.user() != Some(user)) {
            return Ok(false);
        }
        let removed = shard.take(hash, key);
        self.users.moved(key, Some(user), None);
        self.freed(usize::from(removed.is_some()));
        drop(shard);
        drop(removed);
        Ok(true)
    }

    async fn revoke_all(&self, user: &str, except: Option<&StoreKey>) -> Result<u64, StoreError> {
        let (mut guards, keys) = self.lock_sessions_of(user, write);
        let now = now_ms();
        let mut removed: Vec<Entry> = Vec::new();
        let mut unindexed = Vec::new();
        let mut revoked = 0;
        let except = except.map(StoreKey::as_bytes);
        for key in keys {
            if except == Some(&key) {
                continue;
            }
            let hash = self.hash(&key);
            let Some(shard) = guard_of(&mut guards, self.shard_index(hash)) else {
                continue;
            };
            if shard.find(hash, &key).is_none_or(|entry| entry.record.user() != Some(user)) {
                continue;
            }
            if let Some(entry) = shard.take(hash, &key) {
                // An expired one goes too, but was not a live session.
                revoked += u64::from(entry.is_live(now));
                removed.push(entry);
                unindexed.push(key);
            }
        }
        self.users.remove(user, &unindexed);
        self.freed(removed.len());
        drop(guards);
        drop(removed);
        Ok(revoked)
    }

    async fn scan(&self, cursor: &ScanCursor, limit: usize) -> Result<ScanPage, StoreError> {
        let mut position = scan::Position::parse(cursor, self.scan_tag, self.shards.len())?;
        let limit = limit.max(1);
        let now = now_ms();
        let mut taken = Vec::new();
        let next = loop {
            let (page, rest) =
                scan::take(&read(&self.shards[position.shard]), position.after.as_ref(), limit - taken.len(), now);
            let last = page.last().map(|(key, _, _)| *key);
            taken.extend(page);
            if !rest {
                position.after = last;
                break Some(position);
            }
            if position.shard + 1 == self.shards.len() {
                break None;
            }
            position = scan::Position { shard: position.shard + 1, after: None };
            if taken.len() == limit {
                break Some(position);
            }
        };
        let records = taken
            .iter()
            .map(|(key, record, expires_at_ms)| {
                Ok((StoreKey::from_bytes(*key), session_record(record, *expires_at_ms)?))
            })
            .collect::<Result<_, StoreError>>()?;
        Ok(ScanPage { records, next: next.map(|position| position.to_cursor(self.scan_tag)) })
    }

    async fn try_lease(&self, key: &StoreKey, ttl: Duration) -> Result<Option<Lease>, StoreError> {
        let hash = self.hash(key.as_bytes());
        Ok(write(self.shard(hash)).leases.try_take(key, ttl, now_ms()))
    }

    async fn release_lease(&self, key: &StoreKey, token: LeaseToken) -> Result<(), StoreError> {
        let hash = self.hash(key.as_bytes());
        write(self.shard(hash)).leases.release(key, token);
        Ok(())
    }
}

#[cfg(test)]
mod tests;
