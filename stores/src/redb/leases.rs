//! The exclusive leases of a [`RedbStore`](super::RedbStore): in memory,
//! for this process (redb opens a file in one process only, so every
//! request that can write the sessions runs here).
//!
//! # Who decides
//!
//! Grants and fencing checks are both made on the writer thread, in queue
//! order, against one clock reading per batch: at that instant a lease is
//! live if its deadline lies after it, for the check and for a grant alike,
//! so a lease that runs out exactly then has run out for both. Because the
//! grant is answered only once the batch holding it has committed, a new
//! holder cannot read the session before the last write its predecessor was
//! allowed to make is on disk and visible: a fenced write that passed its
//! check is either in an earlier batch or earlier in the same one. A
//! release needs no ordering (the holder has had its writes answered) and
//! goes straight to the map.
//!
//! Deadlines are on the monotonic clock, so a wall-clock step neither
//! shortens nor extends a lease. Leases that ran out are dropped when their
//! key is leased again, by every sweep (`delete_expired`), and whenever the
//! map has doubled since it was last pruned, so they do not accumulate.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use sessionkit::{Lease, LeaseToken, StoreError};

use super::Key;

/// The map is pruned when it holds this many more leases than after its
/// last pruning (at least this many).
const PRUNE_SLACK: usize = 64;

/// One lease.
#[derive(Debug, Clone, Copy)]
struct Held {
    token: LeaseToken,
    deadline: Instant,
}

/// Every lease of one store, shared by the store and its writer thread.
#[derive(Debug, Default)]
pub(super) struct Leases {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    held: HashMap<Key, Held>,
    /// The size past which a grant prunes the map first.
    prune_at: usize,
}

impl Leases {
    /// Grants the lease on `key` for `ttl` if none is live at `now`.
    pub(super) fn grant(&self, key: &Key, ttl: Duration, now: Instant) -> Result<Option<Lease>, StoreError> {
        let too_long = || StoreError::config(format!("an exclusive lease of {ttl:?} runs past the clock's range"));
        let deadline = now.checked_add(ttl).ok_or_else(too_long)?;
        let expires_at = SystemTime::now().checked_add(ttl).ok_or_else(too_long)?;
        let mut state = self.lock();
        if state.held.get(key).is_some_and(|held| held.deadline > now) {
            return Ok(None);
        }
        if state.held.len() >= state.prune_at {
            state.prune(now);
        }
        let token = LeaseToken::generate();
        state.held.insert(*key, Held { token, deadline });
        Ok(Some(Lease { token, expires_at }))
    }

    /// Whether `token` holds a live lease on `key` at `now`: the fencing
    /// check.
    pub(super) fn holds(&self, key: &Key, token: LeaseToken, now: Instant) -> bool {
        self.lock().held.get(key).is_some_and(|held| held.token == token && held.deadline > now)
    }

    /// Ends the lease on `key` if `token` holds it (live or not); otherwise
    /// it is someone else's, or gone, and stays as it is.
    pub(super) fn release(&self, key: &Key, token: LeaseToken) {
        let mut state = self.lock();
        if state.held.get(key).is_some_and(|held| held.token == token) {
            state.held.remove(key);
        }
    }

    /// Drops every lease that ran out by `now`.
    pub(super) fn prune(&self, now: Instant) {
        self.lock().prune(now);
    }

    /// How many leases the map holds, live or not.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.lock().held.len()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every change is one map operation: a panic cannot leave it half-done.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl State {
    fn prune(&mut self, now: Instant) {
        self.held.retain(|_, held| held.deadline > now);
        self.prune_at = self.held.len().saturating_mul(2).max(PRUNE_SLACK);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: Key = [7; 32];

    #[test]
    fn a_lease_excludes_until_its_deadline_and_not_at_it() {
        let leases = Leases::default();
        let start = Instant::now();
        let ttl = Duration::from_millis(100);
        let first = leases.grant(&KEY, ttl, start).expect("grant").expect("free");
        assert!(leases.holds(&KEY, first.token, start));
        assert!(leases.grant(&KEY, ttl, start + ttl / 2).expect("grant").is_none(), "a live lease excludes");
        // At the deadline the lease has run out, for the fence and for a grant.
        let deadline = start + ttl;
        assert!(!leases.holds(&KEY, first.token, deadline));
        let second = leases.grant(&KEY, ttl, deadline).expect("grant").expect("ran out");
        assert_ne!(first.token, second.token, "every grant has its own token");
        assert!(!leases.holds(&KEY, first.token, deadline), "the old token never fences again");
        assert!(leases.holds(&KEY, second.token, deadline));
    }

    #[test]
    fn only_the_holders_token_releases() {
        let leases = Leases::default();
        let now = Instant::now();
        let lease = leases.grant(&KEY, Duration::from_secs(30), now).expect("grant").expect("free");
        leases.release(&KEY, LeaseToken::generate());
        assert!(leases.holds(&KEY, lease.token, now), "another token must not release");
        leases.release(&KEY, lease.token);
        assert_eq!(leases.len(), 0);
        assert!(leases.grant(&KEY, Duration::from_secs(30), now).expect("grant").is_some());
    }

    #[test]
    fn leases_that_ran_out_do_not_accumulate() {
        let leases = Leases::default();
        let start = Instant::now();
        let ttl = Duration::from_millis(10);
        for i in 0..10_000u32 {
            let mut key = [0; 32];
            key[..4].copy_from_slice(&i.to_be_bytes());
            // Each one has run out by the time the next is granted.
            let now = start + ttl * i;
            leases.grant(&key, ttl, now).expect("grant").expect("free");
        }
        assert!(leases.len() <= 2 * PRUNE_SLACK, "{} leases held, nearly all of them over", leases.len());
        leases.prune(start + ttl * 10_000);
        assert_eq!(leases.len(), 0);
    }

    #[test]
    fn a_lease_past_the_clocks_range_is_refused_not_a_panic() {
        let leases = Leases::default();
        let err = leases.grant(&KEY, Duration::MAX, Instant::now()).expect_err("too long");
        assert!(err.to_string().contains("configuration"), "{err}");
        assert_eq!(leases.len(), 0);
    }
}
