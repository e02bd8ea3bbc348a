//! Exclusive leases, in process: at most one live lease per key.
//!
//! Each shard keeps the leases on its keys beside its records, under the
//! same lock, so that the fencing check of a patch (is this token's lease
//! still live?) and the write it guards are one atomic step. A lease needs
//! no record: a request can hold a session's lease before the session is
//! stored. Each grant gets a fresh random [`LeaseToken`] and its own expiry;
//! a lease that ran out is replaced by the next taker, dropped when a
//! fenced write finds it, and swept by `delete_expired`, so leases that
//! were never released do not accumulate.

use std::collections::HashMap;
use std::time::Duration;

use foldhash::fast::RandomState;
use sessionkit::{Lease, LeaseToken, StoreKey, expiry};

/// The leases of one shard.
#[derive(Default)]
pub(super) struct Leases {
    held: HashMap<StoreKey, Held, RandomState>,
}

struct Held {
    token: LeaseToken,
    expires_at_ms: i64,
}

impl Leases {
    /// Grants the lease on `key` for `ttl` unless a live one is held.
    pub(super) fn try_take(&mut self, key: &StoreKey, ttl: Duration, now_ms: i64) -> Option<Lease> {
        if self.held.get(key).is_some_and(|held| held.expires_at_ms > now_ms) {
            return None;
        }
        // At least a millisecond, the precision kept: a lease that expires
        // the moment it is granted would fence every write it guards.
        let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX).max(1);
        let expires_at_ms = now_ms.saturating_add(ttl_ms);
        let token = LeaseToken::generate();
        self.held.insert(key.clone(), Held { token, expires_at_ms });
        Some(Lease { token, expires_at: expiry::from_unix_ms(expires_at_ms) })
    }

    /// Ends the lease on `key` if `token` holds it.
    pub(super) fn release(&mut self, key: &StoreKey, token: LeaseToken) {
        if self.held.get(key).is_some_and(|held| held.token == token) {
            self.held.remove(key);
        }
    }

    /// Whether `token` holds a live lease on `key`: the fencing check. A
    /// lease found expired is dropped.
    pub(super) fn holds(&mut self, key: &StoreKey, token: LeaseToken, now_ms: i64) -> bool {
        match self.held.get(key) {
            Some(held) if held.expires_at_ms > now_ms => held.token == token,
            Some(_) => {
                self.held.remove(key);
                false
            }
            None => false,
        }
    }

    /// Drops every lease that ran out; returns how many.
    pub(super) fn sweep(&mut self, now_ms: i64) -> usize {
        let before = self.held.len();
        self.held.retain(|_, held| held.expires_at_ms > now_ms);
        before - self.held.len()
    }

    /// How many leases are kept, live or not.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.held.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_excludes_until_released_or_expired_and_fences_by_token() {
        let mut leases = Leases::default();
        let key = sessionkit::testing::checks::key();
        let ttl = Duration::from_millis(100);
        let first = leases.try_take(&key, ttl, 1_000).expect("free");
        assert_eq!(first.expires_at, expiry::from_unix_ms(1_100));
        assert!(leases.try_take(&key, ttl, 1_050).is_none(), "held");
        assert!(leases.holds(&key, first.token, 1_099));
        assert!(!leases.holds(&key, LeaseToken::generate(), 1_050), "another token does not hold it");
        leases.release(&key, LeaseToken::generate());
        assert!(leases.try_take(&key, ttl, 1_050).is_none(), "released with the wrong token: still held");
        assert!(!leases.holds(&key, first.token, 1_100), "expired at its expiry");
        assert_eq!(leases.len(), 0, "a lease found expired is dropped");
        let second = leases.try_take(&key, ttl, 1_100).expect("expired: free again");
        assert_ne!(second.token, first.token);
        leases.release(&key, second.token);
        assert_eq!(leases.len(), 0);
        assert!(
            leases
                .try_take(&key, Duration::ZERO, 2_000)
                .is_some_and(|lease| lease.expires_at > expiry::from_unix_ms(2_000))
        );
    }

    #[test]
    fn sweeping_drops_only_leases_that_ran_out() {
        let mut leases = Leases::default();
        let keys: Vec<StoreKey> = (0..6).map(|_| sessionkit::testing::checks::key()).collect();
        for (i, key) in keys.iter().enumerate() {
            leases.try_take(key, Duration::from_millis(10 * (i as u64 + 1)), 0);
        }
        assert_eq!(leases.sweep(30), 3, "those of 10, 20 and 30 ms");
        assert_eq!(leases.len(), 3);
        assert!(leases.try_take(&keys[5], Duration::from_millis(1), 30).is_none(), "the 60 ms lease lives on");
    }
}
