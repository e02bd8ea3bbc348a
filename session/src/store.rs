//! The `SessionStore` trait: what every storage engine provides.
//!
//! # Implementing a store
//!
//! A store maps a [`StoreKey`] to a [`SessionRecord`]. Four methods are
//! required; the others have defaults that are either correct but slow and
//! not atomic (say so where you keep them) or [`StoreError::Unsupported`]:
//!
//! | method | contract | default |
//! | --- | --- | --- |
//! | [`get`](SessionStore::get) | the record, or `None` when absent **or expired**; never an expired record, whether or not a sweep has run | required |
//! | [`set`](SessionStore::set) | upsert of the whole record | required |
//! | [`delete`](SessionStore::delete) | idempotent | required |
//! | [`delete_expired`](SessionStore::delete_expired) | remove expired records (and their index entries), return how many records | required |
//! | [`update`](SessionStore::update) | apply a [`Changes`] patch **atomically** against the stored data; on a missing or expired record write nothing and return [`UpdateOutcome::Missing`] | `get` + apply + `set`, **not atomic** |
//! | [`touch`](SessionStore::touch) | move the expiry only, leave the data alone, no-op on a missing id; returns whether the record existed | `update` with an empty patch |
//! | [`rename`](SessionStore::rename) | atomically, if `from` is live: the patched record under `to`, `from` gone, the user index following; else `Missing`, nothing written | `get`, apply, `set`, `delete`: **not atomic** |
//! | [`sessions_of`](SessionStore::sessions_of) | a user's live sessions | `Unsupported` |
//! | [`revoke`](SessionStore::revoke) | delete one session, only if it is that user's | `Unsupported` |
//! | [`revoke_all`](SessionStore::revoke_all) | delete all of a user's sessions, but one | `Unsupported` |
//! | [`scan`](SessionStore::scan) | page through every live record | `Unsupported` |
//! | [`try_lease`](SessionStore::try_lease) / [`release_lease`](SessionStore::release_lease) | exclusive leases, and the fencing of patches by them | `Unsupported` |
//!
//! # Atomicity
//!
//! Requests run concurrently, so the writes of one request can meet the
//! writes of another on the same session at any moment. Whatever the
//! interleaving, `update`, `touch` and `rename` never undo a concurrent
//! `delete` (a logout stays a logout), and two concurrent `update`s never
//! lose each other's keys or operations. The defaults read and write in
//! separate steps and break both promises under concurrency: override them
//! with the engine's own atomic read-modify-write (a transaction, a lock, a
//! server-side script). The conformance kit (feature `testing`, see
//! [`crate::testing`]) fails a store that relies on them.
//!
//! # Patches
//!
//! [`Changes::apply`] performs a patch (sets, removes, clears, increments,
//! pushes) and checks its size limit; a store that applies patches with it
//! gets every operation for free. A patch that fails to apply
//! ([`PatchError`](crate::PatchError)) is refused whole with
//! [`StoreError::Refused`]: nothing of it is written.
//!
//! # Users
//!
//! A session may belong to a user: [`reserved::USER`](crate::reserved::USER)
//! in its data holds the user's name ([`reserved::user_of`](crate::reserved::user_of)
//! reads it). A store with a user index keeps, beside its records, which
//! sessions each user has, and updates it in the same atomic step as the
//! record wherever its engine allows (where it cannot, it documents the
//! window and repairs stale entries on read). Listings show live sessions
//! only: never an expired, deleted or revoked one. `delete_expired` prunes
//! the index too, so it does not grow without bound.
//!
//! # Leases
//!
//! [`try_lease`](SessionStore::try_lease) grants at most one live lease per
//! key at a time, whether or not a record exists under the key. A patch
//! fenced by a lease ([`Changes::fence`]) is applied by `update` and
//! `rename` only while that lease is live, and otherwise refused with
//! [`PatchError::LeaseLost`](crate::PatchError::LeaseLost). Unfenced writes
//! ignore leases: routes that do not ask for exclusive sessions never wait.
//!
//! # Time
//!
//! Expiry instants have millisecond precision at rest (see [`crate::expiry`]):
//! a record read back must carry the same instant, to the millisecond, as the
//! one written. A record expires *at* its expiry instant.
//!
//! Stores on a blocking engine (files, SQLite, redb) must not block the async
//! runtime: run the engine on `spawn_blocking` or a dedicated thread.
//!
//! Prove an implementation with the conformance kit (feature `testing`), see
//! [`crate::testing`].

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::lease::{Lease, LeaseToken};
use crate::{Changes, ScanCursor, ScanPage, SessionMap, SessionRecord, StoreError, StoreKey};

/// What [`SessionStore::update`] or [`SessionStore::rename`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum UpdateOutcome {
    /// The record existed and the patch was applied.
    Applied,
    /// The record was absent or expired; nothing was written.
    Missing,
}

/// A session storage engine. See the [module docs](self) for the contract.
#[async_trait::async_trait]
pub trait SessionStore: Send + Sync + 'static {
    /// Loads a record; `None` when absent or expired.
    async fn get(&self, key: &StoreKey) -> Result<Option<SessionRecord>, StoreError>;

    /// Writes the whole record, replacing any previous one.
    async fn set(&self, key: &StoreKey, data: &SessionMap, expires_at: Option<SystemTime>) -> Result<(), StoreError>;

    /// Removes a record; removing a missing record is not an error.
    async fn delete(&self, key: &StoreKey) -> Result<(), StoreError>;

    /// Removes every expired record and returns how many it removed.
    async fn delete_expired(&self) -> Result<u64, StoreError>;

    /// Moves a live record's expiry without rewriting its data. Returns
    /// whether the record existed (absent or expired records are left alone).
    ///
    /// The default is [`update`](Self::update) with an empty patch, so it
    /// is exactly as safe as `update`: atomic when `update` is.
    async fn touch(&self, key: &StoreKey, expires_at: Option<SystemTime>) -> Result<bool, StoreError> {
        Ok(self.update(key, &Changes::new(), expires_at).await? == UpdateOutcome::Applied)
    }

    /// Applies `changes` to the stored data and sets the expiry, in one
    /// atomic step. A missing or expired record is not recreated.
    ///
    /// The default is `get`, [`Changes::apply`], `set`: **not atomic**. Two
    /// concurrent updates can lose one another's keys, and a delete between
    /// the `get` and the `set` is undone. Every store in `sessionkit-stores`
    /// overrides it.
    async fn update(
        &self,
        key: &StoreKey,
        changes: &Changes,
        expires_at: Option<SystemTime>,
    ) -> Result<UpdateOutcome, StoreError> {
        if changes.lease().is_some() {
            return Err(StoreError::unsupported("patches fenced by a lease"));
        }
        match self.get(key).await? {
            Some(record) => {
                let data = changes.applied_to(record.data).map_err(StoreError::Refused)?;
                self.set(key, &data, expires_at).await?;
                Ok(UpdateOutcome::Applied)
            }
            None => Ok(UpdateOutcome::Missing),
        }
    }

    /// Moves a live record from `from` to `to` with `changes` applied and
    /// `expires_at` set, in one atomic step: afterwards `to` holds the
    /// patched record, `from` holds nothing, and a user index lists `to`
    /// instead of `from`. A missing or expired `from` writes nothing and
    /// returns [`UpdateOutcome::Missing`]. `to` is a fresh key.
    ///
    /// This is how a session gets a new id (at login): the data moves, and a
    /// session destroyed meanwhile is not brought back under the new id.
    ///
    /// The default is `get`, apply, `set`, `delete`: **not atomic**. A
    /// delete of `from` between the `get` and the `set` is undone under the
    /// new key. Every store in `sessionkit-stores` overrides it.
    async fn rename(
        &self,
        from: &StoreKey,
        to: &StoreKey,
        changes: &Changes,
        expires_at: Option<SystemTime>,
    ) -> Result<UpdateOutcome, StoreError> {
        if changes.lease().is_some() {
            return Err(StoreError::unsupported("patches fenced by a lease"));
        }
        let Some(record) = self.get(from).await? else {
            return Ok(UpdateOutcome::Missing);
        };
        let data = changes.applied_to(record.data).map_err(StoreError::Refused)?;
        self.set(to, &data, expires_at).await?;
        self.delete(from).await?;
        Ok(UpdateOutcome::Applied)
    }

    /// Every live session of `user`, each with its key: the sessions whose
    /// [`reserved::USER`](crate::reserved::USER) is `user`. Never an expired,
    /// deleted or revoked session. In no particular order.
    ///
    /// The default is [`StoreError::Unsupported`].
    async fn sessions_of(&self, user: &str) -> Result<Vec<(StoreKey, SessionRecord)>, StoreError> {
        let _ = user;
        Err(StoreError::unsupported("listing a user's sessions"))
    }

    /// Deletes the session under `key` if it is live and belongs to `user`;
    /// returns whether it did. Someone else's session is left alone.
    ///
    /// The default is [`StoreError::Unsupported`].
    async fn revoke(&self, user: &str, key: &StoreKey) -> Result<bool, StoreError> {
        let _ = (user, key);
        Err(StoreError::unsupported("revoking a user's session"))
    }

    /// Deletes every live session of `user` except the one under `except`;
    /// returns how many it deleted.
    ///
    /// The default is [`StoreError::Unsupported`].
    async fn revoke_all(&self, user: &str, except: Option<&StoreKey>) -> Result<u64, StoreError> {
        let _ = (user, except);
        Err(StoreError::unsupported("revoking all of a user's sessions"))
    }

    /// One page of live records, from `cursor` ([`ScanCursor::start`] for
    /// the first page), of at most `limit` records (at least one is asked
    /// for; `0` counts as `1`). A scan returns every record that lives from
    /// its start to its end exactly once; records written or deleted
    /// meanwhile may or may not appear, never twice.
    ///
    /// The default is [`StoreError::Unsupported`].
    async fn scan(&self, cursor: &ScanCursor, limit: usize) -> Result<ScanPage, StoreError> {
        let _ = (cursor, limit);
        Err(StoreError::unsupported("scanning sessions"))
    }

    /// Takes the exclusive lease on `key` for `ttl` if nobody holds a live
    /// one: `Some` with a fresh token, or `None` while another holder's
    /// lease lives. See the [module docs](self#leases).
    ///
    /// The default is [`StoreError::Unsupported`].
    async fn try_lease(&self, key: &StoreKey, ttl: Duration) -> Result<Option<Lease>, StoreError> {
        let _ = (key, ttl);
        Err(StoreError::unsupported("exclusive leases"))
    }

    /// Ends the lease on `key` if `token` still holds it; otherwise does
    /// nothing (it ran out, and may belong to someone else now).
    ///
    /// The default is [`StoreError::Unsupported`].
    async fn release_lease(&self, key: &StoreKey, token: LeaseToken) -> Result<(), StoreError> {
        let _ = (key, token);
        Err(StoreError::unsupported("exclusive leases"))
    }
}

macro_rules! forward_store {
    ($ty:ty) => {
        #[async_trait::async_trait]
        impl<S: SessionStore + ?Sized> SessionStore for $ty {
            async fn get(&self, key: &StoreKey) -> Result<Option<SessionRecord>, StoreError> {
                (**self).get(key).await
            }
            async fn set(
                &self,
                key: &StoreKey,
                data: &SessionMap,
                expires_at: Option<SystemTime>,
            ) -> Result<(), StoreError> {
                (**self).set(key, data, expires_at).await
            }
            async fn delete(&self, key: &StoreKey) -> Result<(), StoreError> {
                (**self).delete(key).await
            }
            async fn delete_expired(&self) -> Result<u64, StoreError> {
                (**self).delete_expired().await
            }
            async fn touch(&self, key: &StoreKey, expires_at: Option<SystemTime>) -> Result<bool, StoreError> {
                (**self).touch(key, expires_at).await
            }
            async fn update(
                &self,
                key: &StoreKey,
                changes: &Changes,
                expires_at: Option<SystemTime>,
            ) -> Result<UpdateOutcome, StoreError> {
                (**self).update(key, changes, expires_at).await
            }
            async fn rename(
                &self,
                from: &StoreKey,
                to: &StoreKey,
                changes: &Changes,
                expires_at: Option<SystemTime>,
            ) -> Result<UpdateOutcome, StoreError> {
                (**self).rename(from, to, changes, expires_at).await
            }
            async fn sessions_of(&self, user: &str) -> Result<Vec<(StoreKey, SessionRecord)>, StoreError> {
                (**self).sessions_of(user).await
            }
            async fn revoke(&self, user: &str, key: &StoreKey) -> Result<bool, StoreError> {
                (**self).revoke(user, key).await
            }
            async fn revoke_all(&self, user: &str, except: Option<&StoreKey>) -> Result<u64, StoreError> {
                (**self).revoke_all(user, except).await
            }
            async fn scan(&self, cursor: &ScanCursor, limit: usize) -> Result<ScanPage, StoreError> {
                (**self).scan(cursor, limit).await
            }
            async fn try_lease(&self, key: &StoreKey, ttl: Duration) -> Result<Option<Lease>, StoreError> {
                (**self).try_lease(key, ttl).await
            }
            async fn release_lease(&self, key: &StoreKey, token: LeaseToken) -> Result<(), StoreError> {
                (**self).release_lease(key, token).await
            }
        }
    };
}

// A shared store is a store, so `Arc<dyn SessionStore>` and `Arc<MyStore>`
// can be handed to anything that takes one.
forward_store!(Arc<S>);
forward_store!(Box<S>);
