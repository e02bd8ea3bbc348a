//! The user index: for each user, the keys of their sessions.
//!
//! Sharded by the user's hash, each shard behind its own mutex. The index
//! holds a key under a user exactly when the store holds a record under
//! that key bound to that user (see [`super::record`]), expired or not:
//! every write changes both in one critical section, while holding the
//! lock of the record's shard (see the lock order in [`super`]). Listings
//! skip expired records; `delete_expired` removes their index entries with
//! them, so the index does not outgrow the records.
//!
//! Anonymous sessions never touch it, and neither do writes that keep a
//! session's user: only logins, logouts and deletes of bound sessions pay
//! for the index.

use std::collections::{HashMap, HashSet};
use std::hash::BuildHasher;
use std::sync::{Mutex, MutexGuard, PoisonError};

use foldhash::fast::RandomState;
use sessionkit::{Change, Changes, reserved};

use super::shard::Key;

type Keys = HashSet<Key, RandomState>;

/// The user a session has after `changes`, as far as the patch decides it.
#[derive(Clone, Copy)]
pub(super) enum UserAfter<'c> {
    /// The patch leaves [`reserved::USER`] alone: the user stays.
    Kept,
    /// The patch decides: a set of a string binds that user; a set of
    /// anything else, a removal, a clear, or an operation (which succeeds
    /// only on what is not a string) leaves none.
    Now(Option<&'c str>),
}

impl<'c> UserAfter<'c> {
    pub(super) fn of(changes: &'c Changes) -> Self {
        match changes.get(reserved::USER) {
            Some(Change::Set(_, value)) => UserAfter::Now(value.as_str()),
            Some(Change::Remove(_) | Change::Modify(..)) => UserAfter::Now(None),
            None if changes.is_cleared() => UserAfter::Now(None),
            None => UserAfter::Kept,
        }
    }

    pub(super) fn applied_to<'a>(self, before: Option<&'a str>) -> Option<&'a str>
    where
        'c: 'a,
    {
        match self {
            UserAfter::Kept => before,
            UserAfter::Now(user) => user,
        }
    }
}

/// The user index of one store.
pub(super) struct UserIndex {
    shards: Box<[Mutex<HashMap<String, Keys, RandomState>>]>,
    hasher: RandomState,
}

impl UserIndex {
    pub(super) fn new(shards: usize) -> Self {
        let shards = (0..shards.max(1)).map(|_| Mutex::new(HashMap::default())).collect();
        Self { shards, hasher: RandomState::default() }
    }

    /// The one lock taken here, and only ever one at a time.
    fn shard(&self, user: &str) -> MutexGuard<'_, HashMap<String, Keys, RandomState>> {
        let index = (self.hasher.hash_one(user) >> 32) as usize % self.shards.len();
        // Nothing panics while holding it, so a poisoned lock still guards
        // consistent data.
        self.shards[index].lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records that the session under `key` moved from user `from` to user
    /// `to` (either `None`: no user). The caller holds the lock of `key`'s
    /// record shard.
    #[inline]
    pub(super) fn moved(&self, key: &Key, from: Option<&str>, to: Option<&str>) {
        // Most writes keep the session's user (or have none): no lock then.
        if from != to {
            self.reassign(key, from, to);
        }
    }

    fn reassign(&self, key: &Key, from: Option<&str>, to: Option<&str>) {
        if let Some(from) = from {
            self.remove(from, std::slice::from_ref(key));
        }
        if let Some(to) = to {
            self.shard(to).entry(to.to_owned()).or_default().insert(*key);
        }
    }

    /// Removes `keys` from `user`'s sessions. The caller holds the locks of
    /// the keys' record shards.
    pub(super) fn remove(&self, user: &str, keys: &[Key]) {
        let mut shard = self.shard(user);
        if let Some(sessions) = shard.get_mut(user) {
            for key in keys {
                sessions.remove(key);
            }
            if sessions.is_empty() {
                shard.remove(user);
            }
        }
    }

    /// The keys of `user`'s sessions, now.
    pub(super) fn keys(&self, user: &str) -> Vec<Key> {
        self.shard(user).get(user).map(|keys| keys.iter().copied().collect()).unwrap_or_default()
    }

    /// How many (user, key) entries the index holds, for tests.
    #[cfg(test)]
    pub(super) fn entries(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| shard.lock().unwrap_or_else(PoisonError::into_inner).values().map(HashSet::len).sum::<usize>())
            .sum()
    }
}
