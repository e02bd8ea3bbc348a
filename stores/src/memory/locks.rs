//! The store's locks, and the order they are taken in (see the
//! [lock order](super#lock-order)): helpers that take record shards one,
//! two or many at a time, always in ascending index.

use std::collections::BTreeSet;
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::MemoryStore;
use super::shard::{Key, Shard};

/// How many times a listing or a revocation retries locking a user's
/// shards before it locks them all.
const LOCK_ATTEMPTS: usize = 4;

pub(super) fn read(shard: &RwLock<Shard>) -> RwLockReadGuard<'_, Shard> {
    // Nothing below panics while holding a lock, so a poisoned lock still
    // guards consistent data.
    shard.read().unwrap_or_else(PoisonError::into_inner)
}

pub(super) fn write(shard: &RwLock<Shard>) -> RwLockWriteGuard<'_, Shard> {
    shard.write().unwrap_or_else(PoisonError::into_inner)
}

/// A record shard's write guard, or two for a move between shards.
pub(super) enum Pair<'a> {
    One(RwLockWriteGuard<'a, Shard>),
    Two { from: RwLockWriteGuard<'a, Shard>, to: RwLockWriteGuard<'a, Shard> },
}

impl Pair<'_> {
    pub(super) fn from(&mut self) -> &mut Shard {
        match self {
            Pair::One(shard) | Pair::Two { from: shard, .. } => shard,
        }
    }

    pub(super) fn to(&mut self) -> &mut Shard {
        match self {
            Pair::One(shard) | Pair::Two { to: shard, .. } => shard,
        }
    }
}

impl MemoryStore {
    /// Locks the shards of indexes `from` and `to`, in ascending order.
    pub(super) fn lock_pair(&self, from: usize, to: usize) -> Pair<'_> {
        use std::cmp::Ordering;
        match from.cmp(&to) {
            Ordering::Equal => Pair::One(write(&self.shards[from])),
            Ordering::Less => {
                let from = write(&self.shards[from]);
                Pair::Two { from, to: write(&self.shards[to]) }
            }
            Ordering::Greater => {
                let to = write(&self.shards[to]);
                Pair::Two { from: write(&self.shards[from]), to }
            }
        }
    }

    /// Locks the record shards of `user`'s sessions with `lock`, in
    /// ascending order, and returns the guards with the user's keys as they
    /// were at a moment when every one of those keys' shards was held (see
    /// [the user index](super#the-user-index)).
    pub(super) fn lock_sessions_of<'s, G>(
        &'s self,
        user: &str,
        lock: impl Fn(&'s RwLock<Shard>) -> G,
    ) -> (Vec<(usize, G)>, Vec<Key>) {
        let mut wanted = BTreeSet::new();
        let mut keys = self.users.keys(user);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let every_shard = attempt > LOCK_ATTEMPTS;
            if every_shard {
                wanted.extend(0..self.shards.len());
            } else {
                wanted.extend(keys.iter().map(|key| self.shard_index(self.hash(key))));
            }
            let guards: Vec<(usize, G)> = wanted.iter().map(|&index| (index, lock(&self.shards[index]))).collect();
            keys = self.users.keys(user);
            if every_shard || keys.iter().all(|key| wanted.contains(&self.shard_index(self.hash(key)))) {
                return (guards, keys);
            }
        }
    }
}

/// The guard of `index` among guards sorted by index.
pub(super) fn guard_of<G>(guards: &mut [(usize, G)], index: usize) -> Option<&mut G> {
    let at = guards.binary_search_by_key(&index, |(held, _)| *held).ok()?;
    Some(&mut guards[at].1)
}
