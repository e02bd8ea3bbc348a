//! The user index: which sessions each user has, for listings and
//! revocation.
//!
//! A user's index is a sorted set, `<prefix>user:{<user>}`, in its own slot
//! (see `index.lua` for its members and scores). On a Cluster it lives on
//! another node than the user's sessions, so no script can update it in the
//! same atomic step as a session write. The writes are ordered instead, so
//! that **the index always holds at least every live session**:
//!
//! - an entry is added (or its expiry bound raised) *before* the session
//!   write it covers: `set`, a login's `rename`, an `update` that sets the
//!   user, and a `touch` or `update` that moves the expiry past the bound
//!   the session hash records (its `\xffindex` field). The script that
//!   writes the session checks that the index covers the result, and asks
//!   for the index to be raised first otherwise (writing nothing);
//! - an entry is removed only *after* its session is gone or belongs to
//!   someone else, and never when it was added within the last *grace*
//!   period (5 minutes, or 4 store timeouts if longer): such an entry's
//!   session may be about to be written by a request between its two
//!   steps.
//!
//! Entries therefore go stale, never missing: a crash between the two
//! steps of a write leaves an entry whose session does not exist (or has
//! another user, or a shorter life). Readers repair that: a listing reads
//! every listed session, shows only the live ones of that user, and
//! removes the others' entries; `revoke` and `revoke_all` do the same for
//! what they touch. Expired sessions drop out by score: every index write
//! or listing trims the entries whose expiry bound has passed (by more
//! than a minute, the margin for clock skew between app servers), and the
//! index key expires with its last entry.
//!
//! Bounds carry slack: an entry's score is the session's expiry plus its
//! remaining lifetime, so a rolling session raises its entry about once
//! per lifetime (one extra round trip a day for a 24 h `ttl`), not on
//! every refresh. An expired session's entry may so outlive it by up to
//! one lifetime until a listing or a login of that user trims it.
//!
//! The windows left:
//!
//! - A session written more than the grace period after its index entry
//!   (a request stalled for minutes between its two steps) may be missing
//!   from listings and from `revoke_all` if a listing repaired its entry
//!   in between.
//! - App server clocks more than a minute apart can trim a live session's
//!   entry early.
//! - `delete_expired` does not visit indexes (finding them would scan the
//!   whole keyspace); they are trimmed on use and expire by themselves.

use std::collections::HashSet;

use futures_util::future::join_all;
use sessionkit::{SessionRecord, SessionStore as _, StoreError, StoreKey};

use super::reply::{self, Tagged};
use super::{RedisStore, calls, now_ms};

/// How far app server clocks may disagree before index trimming can drop
/// a live session's entry, in milliseconds.
pub(super) const CLOCK_MARGIN_MS: i64 = 60_000;
/// The least grace period, in milliseconds (see the [module docs](self)).
const MIN_GRACE_MS: i64 = 300_000;

/// What a revocation did to one session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Revoked {
    /// Not that user's live session: nothing done.
    No,
    /// The session was deleted.
    Ended,
    /// The key was a rename's old key: the live session it moved to,
    /// under the key given here (the end of the chain of renames), was
    /// deleted. (Had the rename not written it yet, it is stopped, but not
    /// counted: see [`bury`](RedisStore::bury).)
    Moved(StoreKey),
}

impl RedisStore {
    /// How long an index addition protects its entry from repair, and how
    /// long a rename's marker and tombstone live: the longest a request
    /// may take between two of its steps.
    pub(super) fn grace_ms(&self) -> i64 {
        let timeout = i64::try_from(self.timeout().as_millis()).unwrap_or(i64::MAX / 8);
        MIN_GRACE_MS.max(timeout.saturating_mul(4))
    }

    /// Adds `key` to `user`'s index (or raises its bound) so that it covers
    /// a session expiring at `expires_at_ms`; returns the session hash's
    /// INDEX field that is true from now on.
    pub(super) async fn index_add(
        &self,
        user: &str,
        key: &StoreKey,
        expires_at_ms: Option<i64>,
    ) -> Result<String, StoreError> {
        let now = now_ms();
        let bound = bound(expires_at_ms, now);
        let call = calls::index_add(&self.prefix, user, now, CLOCK_MARGIN_MS, key, &bound, now + 2 * self.grace_ms());
        self.invoke("redis store: adding a session to its user's index", &call).await?;
        let user_json = serde_json::to_string(user).map_err(StoreError::Encode)?;
        Ok(format!("{bound} {user_json}"))
    }

    /// Removes the entries of `keys` from `user`'s index, which the caller
    /// saw stale at `observed` (see the [module docs](self) for when an
    /// entry is kept anyway).
    pub(super) async fn index_remove(&self, user: &str, keys: &[&[u8]], observed: i64) -> Result<(), StoreError> {
        if keys.is_empty() {
            return Ok(());
        }
        let call = calls::index_remove(
            &self.prefix,
            user,
            now_ms(),
            CLOCK_MARGIN_MS,
            observed,
            self.grace_ms(),
            keys.iter().copied(),
        );
        self.invoke("redis store: removing stale entries from a user's index", &call).await.map(drop)
    }

    /// [`index_remove`](Self::index_remove) for a user named by the JSON
    /// text of a user field, as the scripts report it.
    pub(super) async fn unindex(&self, user_json: &[u8], key: &StoreKey, observed: i64) -> Result<(), StoreError> {
        let user = reply::user(user_json).map_err(|err| err.into_store_error("redis store: reading a user"))?;
        self.index_remove(&user, &[key.as_str().as_bytes()], observed).await
    }

    /// The store keys in `user`'s index, lapsed entries trimmed.
    async fn index_members(&self, user: &str) -> Result<Vec<Vec<u8>>, StoreError> {
        let call = calls::index_read(&self.prefix, user, now_ms(), CLOCK_MARGIN_MS);
        let reply = self.invoke("redis store: reading a user's index", &call).await?;
        match reply {
            ::redis::Value::Array(items) => Ok(items.iter().filter_map(reply::bytes).map(<[u8]>::to_vec).collect()),
            _ => Err(reply::Corrupt::Shape.into_store_error("redis store: reading a user's index")),
        }
    }

    /// Every live session of `user`, repairing stale entries on the way.
    pub(super) async fn listing(&self, user: &str) -> Result<Vec<(StoreKey, SessionRecord)>, StoreError> {
        let members = self.index_members(user).await?;
        let observed = now_ms();
        let keys: Vec<Option<StoreKey>> =
            members.iter().map(|m| std::str::from_utf8(m).ok().and_then(StoreKey::parse)).collect();
        let reads = join_all(keys.iter().map(|key| async move {
            match key {
                Some(key) => self.get(key).await,
                None => Ok(None),
            }
        }))
        .await;
        let mut live = Vec::new();
        let mut stale: Vec<&[u8]> = Vec::new();
        let mut seen = HashSet::new();
        for ((member, key), read) in members.iter().zip(keys).zip(reads) {
            match (key, read?) {
                (Some(key), Some(record)) if record.user() == Some(user) => {
                    if seen.insert(key.clone()) {
                        live.push((key, record));
                    }
                }
                _ => stale.push(member),
            }
        }
        self.index_remove(user, &stale, observed).await?;
        Ok(live)
    }

    /// Revokes `key` if it is `user`'s live session (or a rename's old key
    /// of one, but never leading to `spare`); the index entry is cleaned up
    /// after.
    pub(super) async fn revoke_one(
        &self,
        user: &str,
        key: &StoreKey,
        spare: Option<&StoreKey>,
        observed: i64,
    ) -> Result<Revoked, StoreError> {
        const CONTEXT: &str = "redis store: revoking a session";
        let user_json = serde_json::to_string(user).map_err(StoreError::Encode)?;
        let call = calls::revoke(&self.prefix, key, observed, &user_json);
        let reply = Tagged::parse(self.invoke(CONTEXT, &call).await?).map_err(|err| err.into_store_error(CONTEXT))?;
        let corrupt = |err: reply::Corrupt| err.into_store_error(CONTEXT);
        match reply.tag.as_slice() {
            b"deleted" => {
                if let Some(indexed) = reply.optional(0).map_err(corrupt)?
                    && indexed != user_json.as_bytes()
                {
                    self.unindex(indexed, key, observed).await?;
                }
            }
            b"moved" => {
                let target =
                    StoreKey::parse(reply.text(0).map_err(corrupt)?).ok_or_else(|| corrupt(reply::Corrupt::Shape))?;
                return Ok(match self.bury(&target, spare).await? {
                    Some(ended) => Revoked::Moved(ended),
                    None => Revoked::No,
                });
            }
            _ => return Ok(Revoked::No),
        }
        Ok(Revoked::Ended)
    }

    /// `revoke` of the trait: one session, then its index entry.
    pub(super) async fn revoke_session(&self, user: &str, key: &StoreKey) -> Result<bool, StoreError> {
        let observed = now_ms();
        let revoked = self.revoke_one(user, key, None, observed).await?;
        self.index_remove(user, &[key.as_str().as_bytes()], observed).await?;
        Ok(revoked != Revoked::No)
    }

    /// `revoke_all` of the trait: every session in the user's index but
    /// `except`, concurrently; then their entries.
    pub(super) async fn revoke_sessions(&self, user: &str, except: Option<&StoreKey>) -> Result<u64, StoreError> {
        let members = self.index_members(user).await?;
        let observed = now_ms();
        let keys: Vec<StoreKey> = members
            .iter()
            .filter_map(|m| std::str::from_utf8(m).ok().and_then(StoreKey::parse))
            .filter(|key| Some(key) != except)
            .collect();
        let results = join_all(keys.iter().map(|key| self.revoke_one(user, key, except, observed))).await;
        // A session caught mid-rename may be listed under both its keys:
        // count it once, by the key it ended under.
        let mut ended = HashSet::new();
        let mut moved = HashSet::new();
        for (key, result) in keys.iter().zip(results) {
            match result? {
                Revoked::No => {}
                Revoked::Ended => drop(ended.insert(key.clone())),
                Revoked::Moved(target) => drop(moved.insert(target)),
            }
        }
        let ended = (ended.difference(&moved).count() + moved.len()) as u64;
        let done: Vec<&[u8]> = members
            .iter()
            .map(Vec::as_slice)
            .filter(|m| except.is_none_or(|except| *m != except.as_str().as_bytes()))
            .collect();
        self.index_remove(user, &done, observed).await?;
        Ok(ended)
    }
}

/// The score of a session's index entry: a bound on its expiry, with as
/// much slack again as it has left to live (see the [module docs](self)).
fn bound(expires_at_ms: Option<i64>, now: i64) -> String {
    match expires_at_ms {
        None => "inf".to_owned(),
        Some(at) => at.saturating_add(at.saturating_sub(now).max(0)).to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_double_the_remaining_lifetime() {
        assert_eq!(bound(None, 5), "inf");
        assert_eq!(bound(Some(1_000), 400), "1600");
        assert_eq!(bound(Some(100), 400), "100", "an expiry already past gets no slack");
    }
}
