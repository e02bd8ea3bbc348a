//! `rename`: moving a session to a new key (a login's new id) without ever
//! bringing back a session deleted meanwhile, and without losing an update
//! acknowledged meanwhile.
//!
//! The old and the new key carry different hash tags, so on a Cluster
//! they live in different slots (usually on different nodes) and no script
//! can touch both. The move is two scripts, and the same two on a
//! standalone server (one code path):
//!
//! 1. **Out** (`rename_out.lua`, on the old key's slot): if the session is
//!    live and the lease fencing the patch (if any) holds, apply the patch
//!    to its fields in memory and check the size limit; then replace the
//!    session by a *moved* marker naming the new key (it lives for the
//!    grace period, 5 minutes or more) and return the patched fields. An
//!    `update` or `touch` of the old key that runs before this step is in
//!    the fields moved; one that runs after it finds no session and
//!    reports `Missing`: nothing it acknowledges is lost.
//! 2. **In** (`set.lua` in rename mode, on the new key's slot): write the
//!    patched record under the new key, unless a *tombstone* is there.
//!
//! Between the two, the user index learns the new key (before step 2, as
//! every index addition precedes its session write; while step 1 runs
//! when the patch names the user, as a login's does), and the old key's
//! entry is removed (after step 1, while step 2 runs).
//!
//! A `delete` (or `revoke`) of the old key between the steps finds the
//! moved marker, removes it, and *buries* the new key (`bury.lua`): if
//! step 2 has written it, it is deleted; otherwise a tombstone is left
//! that makes step 2 write nothing (the rename then reports `Missing`, so
//! the layer answers as for a destroyed session). A delete after both
//! steps finds nothing under the old key, as for any renamed session.
//!
//! What an app server dying mid-way leaves:
//!
//! - **the renaming one, between its steps**: the session is gone (the
//!   old key holds a marker until it expires, the new key was never
//!   written): that user is logged out. Never duplicated, never revived.
//! - **a deleting one, between removing the marker and burying the new
//!   key**: that delete was never acknowledged, and the renamed session
//!   may live on under its new key, as if the delete had not run. (The
//!   layer's logout also revokes the session's lineage through the index,
//!   which catches it once the user's index lists it.)

use sessionkit::{Changes, StoreError, StoreKey, UpdateOutcome};

use super::calls::{self, PatchArgs};
use super::reply::{self, Tagged};
use super::{RedisStore, expiry_ms, now_ms, patch};

/// How many renames of renames `bury` follows before it gives up.
const MAX_CHAIN: usize = 8;

impl RedisStore {
    pub(super) async fn rename_session(
        &self,
        from: &StoreKey,
        to: &StoreKey,
        changes: &Changes,
        expires_at: Option<std::time::SystemTime>,
    ) -> Result<UpdateOutcome, StoreError> {
        const CONTEXT: &str = "redis store: renaming a session";
        let corrupt = |err: reply::Corrupt| err.into_store_error(CONTEXT);
        let now = now_ms();
        let expires_ms = expiry_ms(expires_at);
        let expires = expires_ms.map(|at| at.to_string()).unwrap_or_default();
        let encoded = patch::encode(changes)?;
        let size_limit = changes.size_limit().map(|limit| limit.to_string()).unwrap_or_default();
        let fence = changes.lease().map(|token| token.to_string()).unwrap_or_default();
        let args = PatchArgs {
            now,
            expires_at: &expires,
            cleared: changes.is_cleared(),
            size_limit: &size_limit,
            fence: &fence,
            changes: &encoded,
        };
        let out = calls::rename_out(&self.prefix, from, to, &args, self.grace_ms());
        let still_to_live = expires_ms.is_none_or(|at| at > now);
        // A login names its user in the patch: index the new key while
        // step 1 runs, saving a round trip.
        let (early, out) = match patch::user_set(changes).filter(|_| still_to_live) {
            Some(user) => {
                let (index, out) = tokio::join!(self.index_add(user, to, expires_ms), self.invoke(CONTEXT, &out));
                (Some((user, index)), out)
            }
            None => (None, self.invoke(CONTEXT, &out).await),
        };
        let reply = Tagged::parse(out?).map_err(corrupt)?;
        match reply.tag.as_slice() {
            b"missing" => return Ok(UpdateOutcome::Missing),
            b"refused" => return Err(StoreError::Refused(patch::refused(&reply).map_err(corrupt)?)),
            b"ended" => {
                if let Some(old_user) = reply.optional(0).map_err(corrupt)? {
                    self.unindex(old_user, from, now).await?;
                }
                return Ok(UpdateOutcome::Applied);
            }
            b"moved" => {}
            _ => return Err(corrupt(reply::Corrupt::Shape)),
        }
        let size = reply.text(0).map_err(corrupt)?.to_owned();
        let old_user = reply.optional(1).map_err(corrupt)?.map(<[u8]>::to_vec);
        let new_user = match reply.optional(2).map_err(corrupt)? {
            Some(json) => Some(reply::user(json).map_err(corrupt)?),
            None => None,
        };
        let fields = reply.tail(3).map_err(corrupt)?;

        // The index covers the new key before step 2 writes it. If the
        // early addition failed, or was for another user, add it now; if
        // that fails, the session is lost, never unlisted.
        let index = match (new_user, early) {
            (None, _) => String::new(),
            (Some(user), Some((early_user, Ok(index)))) if user == early_user => index,
            (Some(user), _) => self.index_add(&user, to, expires_ms).await?,
        };
        let write = calls::set(&self.prefix, to, &expires, &size, &index, true, fields);
        // The old key is gone since step 1: its index entry can go while
        // step 2 runs.
        let unindex_from = async {
            match &old_user {
                Some(old_user) => self.unindex(old_user, from, now).await,
                None => Ok(()),
            }
        };
        let (written, unindexed) = tokio::join!(self.invoke(CONTEXT, &write), unindex_from);
        let written = Tagged::parse(written?).map_err(corrupt)?;
        unindexed?;
        match written.tag.as_slice() {
            // Deleted between the steps: it stays deleted.
            b"gone" => return Ok(UpdateOutcome::Missing),
            b"ok" => {
                if let Some(stale) = written.optional(0).map_err(corrupt)? {
                    self.unindex(stale, to, now).await?;
                }
            }
            _ => return Err(corrupt(reply::Corrupt::Shape)),
        }
        Ok(UpdateOutcome::Applied)
    }

    /// Ends the session a rename is moving into `key` (see the [module
    /// docs](self)), following renames of renames, but never the session
    /// under `spare` (the one a `revoke_all` keeps: a regenerate's old key
    /// leads to it). Returns the key of the live session it deleted, if it
    /// deleted one: `None` when the chain reached `spare`, or ended in a
    /// tombstone. (A tombstone stops a rename still under way, but an old
    /// key's marker cannot tell that rename from one whose session has
    /// since ended: counting tombstones would count such sessions twice.)
    pub(super) async fn bury(&self, key: &StoreKey, spare: Option<&StoreKey>) -> Result<Option<StoreKey>, StoreError> {
        const CONTEXT: &str = "redis store: ending a session caught mid-rename";
        let corrupt = |err: reply::Corrupt| err.into_store_error(CONTEXT);
        let mut key = key.clone();
        for _ in 0..MAX_CHAIN {
            if Some(&key) == spare {
                return Ok(None);
            }
            let now = now_ms();
            let call = calls::bury(&self.prefix, &key, self.grace_ms());
            let reply = Tagged::parse(self.invoke(CONTEXT, &call).await?).map_err(corrupt)?;
            match reply.tag.as_slice() {
                b"deleted" => {
                    if let Some(user) = reply.optional(0).map_err(corrupt)? {
                        self.unindex(user, &key, now).await?;
                    }
                    return Ok(Some(key));
                }
                b"moved" => {
                    if let Some(user) = reply.optional(1).map_err(corrupt)? {
                        self.unindex(user, &key, now).await?;
                    }
                    key = StoreKey::parse(reply.text(0).map_err(corrupt)?)
                        .ok_or_else(|| corrupt(reply::Corrupt::Shape))?;
                }
                _ => return Ok(None),
            }
        }
        Err(StoreError::backend(CONTEXT, "a session was renamed more than 8 times while it was being deleted"))
    }
}
