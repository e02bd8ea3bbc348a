//! The `SessionStore` trait: what every storage engine provides.
//!
//! # Implementing a store
//!
//! A store maps a [`SessionId`] to a [`SessionRecord`]. Four methods are
//! required and two have working defaults:
//!
//! | method | contract |
//! | --- | --- |
//! | [`get`](SessionStore::get) | the record, or `None` when absent **or expired**; never an expired record, whether or not a sweep has run |
//! | [`set`](SessionStore::set) | upsert of the whole record |
//! | [`delete`](SessionStore::delete) | idempotent |
//! | [`touch`](SessionStore::touch) | move the expiry only, leave the data alone, no-op on a missing id; returns whether the record existed. Default: `get` + `set` |
//! | [`update`](SessionStore::update) | apply a [`Changes`] patch **atomically** against the stored data; on a missing or expired record write nothing and return [`UpdateOutcome::Missing`]. Default: `get` + apply + `set`, **not atomic** |
//! | [`delete_expired`](SessionStore::delete_expired) | remove expired records, return how many |
//!
//! Expiry instants have millisecond precision at rest (see [`crate::expiry`]):
//! a record read back must carry the same instant, to the millisecond, as the
//! one written. A record expires *at* its expiry instant.
//!
//! Stores on a blocking engine (files, SQLite, redb) must not block the async
//! runtime: run the engine on `spawn_blocking` or a dedicated thread.
//!
//! The default `update` is correct only when a single request touches a
//! session at a time. Override it with the engine's own atomic
//! read-modify-write (a transaction, a lock, a server-side script) so that
//! concurrent requests on one session never erase each other's keys.
//!
//! Prove an implementation with the conformance kit (feature `testing`), see
//! [`crate::testing`].

use std::sync::Arc;
use std::time::SystemTime;

use crate::{Changes, SessionId, SessionMap, SessionRecord, StoreError};

/// What [`SessionStore::update`] found.
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
    async fn get(&self, id: &SessionId) -> Result<Option<SessionRecord>, StoreError>;

    /// Writes the whole record, replacing any previous one.
    async fn set(&self, id: &SessionId, data: &SessionMap, expires_at: Option<SystemTime>) -> Result<(), StoreError>;

    /// Removes a record; removing a missing record is not an error.
    async fn delete(&self, id: &SessionId) -> Result<(), StoreError>;

    /// Moves a live record's expiry without rewriting its data. Returns
    /// whether the record existed (absent or expired records are left alone).
    ///
    /// The default reads and rewrites the record; override it when the
    /// engine can move the expiry alone.
    async fn touch(&self, id: &SessionId, expires_at: Option<SystemTime>) -> Result<bool, StoreError> {
        match self.get(id).await? {
            Some(record) => {
                self.set(id, &record.data, expires_at).await?;
                Ok(true)
            }
            None => Ok(false),
        }
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
        id: &SessionId,
        changes: &Changes,
        expires_at: Option<SystemTime>,
    ) -> Result<UpdateOutcome, StoreError> {
        match self.get(id).await? {
            Some(record) => {
                let data = changes.applied_to(record.data);
                self.set(id, &data, expires_at).await?;
                Ok(UpdateOutcome::Applied)
            }
            None => Ok(UpdateOutcome::Missing),
        }
    }

    /// Removes every expired record and returns how many it removed.
    async fn delete_expired(&self) -> Result<u64, StoreError>;
}

macro_rules! forward_store {
    ($ty:ty) => {
        #[async_trait::async_trait]
        impl<S: SessionStore + ?Sized> SessionStore for $ty {
            async fn get(&self, id: &SessionId) -> Result<Option<SessionRecord>, StoreError> {
                (**self).get(id).await
            }
            async fn set(
                &self,
                id: &SessionId,
                data: &SessionMap,
                expires_at: Option<SystemTime>,
            ) -> Result<(), StoreError> {
                (**self).set(id, data, expires_at).await
            }
            async fn delete(&self, id: &SessionId) -> Result<(), StoreError> {
                (**self).delete(id).await
            }
            async fn touch(&self, id: &SessionId, expires_at: Option<SystemTime>) -> Result<bool, StoreError> {
                (**self).touch(id, expires_at).await
            }
            async fn update(
                &self,
                id: &SessionId,
                changes: &Changes,
                expires_at: Option<SystemTime>,
            ) -> Result<UpdateOutcome, StoreError> {
                (**self).update(id, changes, expires_at).await
            }
            async fn delete_expired(&self) -> Result<u64, StoreError> {
                (**self).delete_expired().await
            }
        }
    };
}

// A shared store is a store, so `Arc<dyn SessionStore>` and `Arc<MyStore>`
// can be handed to anything that takes one.
forward_store!(Arc<S>);
forward_store!(Box<S>);
