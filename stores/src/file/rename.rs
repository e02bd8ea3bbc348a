//! `rename`: a session moved to a new key (the regenerate step of a login),
//! atomically across threads and processes, and durably.
//!
//! Under the stripe locks of both keys (ascending, once when they share a
//! stripe), so no write of either key, in any process, comes between:
//!
//! 1. check the fence (the lease of `from`), read `from`: not live, or
//!    fenced by a lost lease, and nothing is written;
//! 2. apply the patch; if the patched record names a user, add the index
//!    entry for `to` and sync it (`users`);
//! 3. write `to` to a temporary file, `fdatasync` it, rename it into place,
//!    and sync the directory: `to` is durable;
//! 4. remove `from`, sync the directory again, then answer;
//! 5. drop the index entry of `from`.
//!
//! A crash leaves one of three states: before step 3's directory sync,
//! `from` alone (nothing happened); after step 4's, `to` alone (done); in
//! between, both. The third is a rename that was never answered, so the
//! client still holds the id of `from`, which is whole and live; `to` is
//! an orphan whose id nobody knows (it lived only in the crashed process,
//! and a store key cannot be turned back into an id). It is never read by
//! a client; it shows in its user's listing and is ended by a revocation
//! or its expiry like any session. The two directory syncs exist to rule
//! out the fourth state, `from` gone and `to` not yet there, which a single
//! sync could leave on file systems that reorder directory updates, and
//! which would log the client out. Why this order is in
//! `docs/file-store-users-and-leases.md`.

use std::fs;
use std::io::Write;

use sessionkit::{Changes, PatchError, StoreError, UpdateOutcome};

use super::commit::{owner, sync_file};
use super::format::{self, StoredRecord};
use super::{Inner, Key, now_ms};

impl Inner {
    /// See the [module docs](self).
    pub(super) fn rename(
        &self,
        from: &Key,
        to: &Key,
        changes: &Changes,
        expires_at: Option<i64>,
    ) -> Result<UpdateOutcome, StoreError> {
        let _guards = self.lock_stripes([from, to])?;
        let now = now_ms();
        if let Some(token) = changes.lease()
            && !self
                .leases
                .holds(from, token, now)
                .map_err(|err| StoreError::backend("file store: reading a lease", err))?
        {
            return Err(StoreError::Refused(PatchError::LeaseLost));
        }
        let Some(record) = self.read_live(from, now)? else {
            return Ok(UpdateOutcome::Missing);
        };
        let old_user = owner(&record);
        let moved = StoredRecord { data: changes.applied_to(record.data).map_err(StoreError::Refused)?, expires_at };
        let bytes = format::encode(&moved.data, moved.expires_at)?;
        if let Some(user) = owner(&moved) {
            let index = |err| StoreError::backend("file store: indexing a user's session", err);
            if self.users.add(&user, to).map_err(index)?
                && let Err(err) = self.users.sync([user.clone()])
            {
                // As in a batch: an entry whose sync failed must not be
                // taken for durable by the next write.
                let _ = self.users.remove(&user, to);
                return Err(index(err));
            }
        }
        self.write_durably(to, &bytes)?;
        #[cfg(test)]
        if self.faults.crash_rename_midway.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(StoreError::backend("file store: renaming", std::io::Error::other("injected: a crash")));
        }
        self.remove(from)?;
        self.sync_dir()?;
        if let Some(user) = old_user
            && let Err(err) = self.users.remove(&user, from)
        {
            // Left over: reads skip it, the sweeper retries.
            tracing::warn!(error = &err as &dyn std::error::Error, "could not drop a user index entry");
        }
        Ok(UpdateOutcome::Applied)
    }

    /// Writes `bytes` as the session file of `key`, durably (file and
    /// directory synced), outside a batch. Under the stripe lock of `key`.
    fn write_durably(&self, key: &Key, bytes: &[u8]) -> Result<(), StoreError> {
        let failed = |what: &'static str| move |err| StoreError::backend(what, err);
        let (temp, mut file) =
            self.create_temp(key).map_err(failed("file store: creating a temporary session file"))?;
        let written = file
            .write_all(bytes)
            .map_err(failed("file store: writing a session file"))
            .and_then(|()| sync_file(self, &file).map_err(failed("file store: syncing a session file")))
            .and_then(|()| fs::rename(&temp, self.path(key)).map_err(failed("file store: renaming a session file")));
        if written.is_err() {
            let _ = fs::remove_file(&temp);
        }
        written?;
        self.sync_dir()
    }
}
