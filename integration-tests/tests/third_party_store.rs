//! A store written the way a third party would: in its own module, through
//! sessionkit's public API only, with every part of the contract (atomic
//! patches and renames, a user index, leases, scans), proven with the
//! conformance kit. And proof that the kit is no rubber stamp: for each of
//! its checks, a store built to break exactly that promise fails it.

mod map_store {
    //! `MapStore`: sessions in a `HashMap` behind one async lock, which is
    //! what makes every operation atomic. The user index is the records
    //! themselves (each knows its user), read under the same lock.

    use std::collections::HashMap;
    use std::time::{Duration, SystemTime};

    use sessionkit::lease::{Lease, LeaseToken};
    use sessionkit::{
        Changes, PatchError, ScanCursor, ScanPage, SessionMap, SessionRecord, SessionStore, StoreError, StoreKey,
        UpdateOutcome, expiry,
    };
    use tokio::sync::{Mutex, MutexGuard};

    /// One way to break the contract, for the tests that prove the kit
    /// catches it.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Fault {
        /// `rename` copies the record and forgets to remove the old key.
        RenameKeepsTheOldKey,
        /// `rename` writes the new key even when the old one is gone.
        RenameRecreates,
        /// The listing shows sessions whatever their expiry.
        ListsExpiredSessions,
        /// `revoke` deletes the key whoever it belongs to.
        RevokeIgnoresTheUser,
        /// `revoke_all` ends its exception too.
        RevokeAllSparesNothing,
        /// The index is a per-user list updated by a separate read, then
        /// write: concurrent logins lose entries.
        IndexLosesConcurrentAdds,
        /// A patch whose operation fails still writes its other changes.
        PartialPatches,
        /// Patches ignore their size limit.
        IgnoresTheSizeLimit,
        /// Leases never run out.
        LeasesNeverExpire,
        /// Fenced patches are applied whatever the lease.
        NoFencing,
        /// Each scan page repeats the last record of the page before.
        ScanRepeats,
    }

    #[derive(Default)]
    struct State {
        records: HashMap<StoreKey, SessionRecord>,
        leases: HashMap<StoreKey, Lease>,
        /// Only for [`Fault::IndexLosesConcurrentAdds`].
        index: HashMap<String, Vec<StoreKey>>,
    }

    #[derive(Default)]
    pub struct MapStore {
        state: Mutex<State>,
        fault: Option<Fault>,
    }

    impl MapStore {
        pub fn with_fault(fault: Fault) -> Self {
            Self { state: Mutex::default(), fault: Some(fault) }
        }

        fn broken(&self, fault: Fault) -> bool {
            self.fault == Some(fault)
        }

        async fn lock(&self) -> MutexGuard<'_, State> {
            self.state.lock().await
        }

        /// The faulty index's read-modify-write, with room for a
        /// concurrent one in between.
        async fn index_add(&self, user: &str, key: &StoreKey) {
            let mut list = self.lock().await.index.get(user).cloned().unwrap_or_default();
            tokio::time::sleep(Duration::from_millis(1)).await;
            list.push(key.clone());
            self.lock().await.index.insert(user.to_owned(), list);
        }
    }

    fn live<'a>(state: &'a mut State, key: &StoreKey) -> Option<&'a mut SessionRecord> {
        let now = expiry::now();
        state.records.get_mut(key).filter(|record| !record.is_expired_at(now))
    }

    /// The lease fencing `changes`, if any, is live: else the patch is refused.
    fn fenced(state: &State, key: &StoreKey, changes: &Changes) -> Result<(), StoreError> {
        let Some(token) = changes.lease() else { return Ok(()) };
        match state.leases.get(key) {
            Some(lease) if lease.token == token && lease.expires_at > expiry::now() => Ok(()),
            _ => Err(StoreError::Refused(PatchError::LeaseLost)),
        }
    }

    impl MapStore {
        fn patch(&self, data: &SessionMap, changes: &Changes) -> Result<SessionMap, StoreError> {
            if self.broken(Fault::PartialPatches) {
                let mut data = data.clone();
                for change in changes {
                    let mut one = Changes::new();
                    match change {
                        sessionkit::Change::Set(key, value) => one.set(key, value.clone()),
                        sessionkit::Change::Remove(key) => one.remove(key),
                        sessionkit::Change::Modify(..) => continue,
                    }
                    let _ = one.apply(&mut data);
                }
                return Ok(data);
            }
            let mut unlimited;
            let changes = if self.broken(Fault::IgnoresTheSizeLimit) {
                unlimited = Changes::new();
                if changes.is_cleared() {
                    unlimited.clear();
                }
                for change in changes {
                    match change {
                        sessionkit::Change::Set(key, value) => unlimited.set(key, value.clone()),
                        sessionkit::Change::Remove(key) => unlimited.remove(key),
                        sessionkit::Change::Modify(key, ops) => {
                            for op in ops {
                                if let sessionkit::Op::Push { value, keep_last } = op {
                                    unlimited.push(key, value.clone(), *keep_last).map_err(StoreError::Refused)?;
                                }
                            }
                        }
                    }
                }
                &unlimited
            } else {
                changes
            };
            // A patch that fails is refused whole: apply it to a copy.
            changes.applied_to(data.clone()).map_err(StoreError::Refused)
        }
    }

    #[sessionkit::async_trait]
    impl SessionStore for MapStore {
        async fn get(&self, key: &StoreKey) -> Result<Option<SessionRecord>, StoreError> {
            Ok(live(&mut *self.lock().await, key).map(|record| record.clone()))
        }

        async fn set(
            &self,
            key: &StoreKey,
            data: &SessionMap,
            expires_at: Option<SystemTime>,
        ) -> Result<(), StoreError> {
            let record = SessionRecord::new(data.clone(), expires_at);
            let user = record.user().map(str::to_owned);
            self.lock().await.records.insert(key.clone(), record);
            if self.broken(Fault::IndexLosesConcurrentAdds)
                && let Some(user) = user
            {
                self.index_add(&user, key).await;
            }
            Ok(())
        }

        async fn delete(&self, key: &StoreKey) -> Result<(), StoreError> {
            self.lock().await.records.remove(key);
            Ok(())
        }

        async fn touch(&self, key: &StoreKey, expires_at: Option<SystemTime>) -> Result<bool, StoreError> {
            let mut state = self.lock().await;
            let Some(record) = live(&mut state, key) else { return Ok(false) };
            record.expires_at = expires_at;
            Ok(true)
        }

        async fn update(
            &self,
            key: &StoreKey,
            changes: &Changes,
            expires_at: Option<SystemTime>,
        ) -> Result<UpdateOutcome, StoreError> {
            let mut state = self.lock().await;
            if !self.broken(Fault::NoFencing) {
                fenced(&state, key, changes)?;
            }
            let Some(record) = live(&mut state, key) else { return Ok(UpdateOutcome::Missing) };
            record.data = self.patch(&record.data, changes)?;
            record.expires_at = expires_at;
            Ok(UpdateOutcome::Applied)
        }

        async fn rename(
            &self,
            from: &StoreKey,
            to: &StoreKey,
            changes: &Changes,
            expires_at: Option<SystemTime>,
        ) -> Result<UpdateOutcome, StoreError> {
            let mut state = self.lock().await;
            fenced(&state, from, changes)?;
            let data = match live(&mut state, from) {
                Some(record) => self.patch(&record.data, changes)?,
                None if self.broken(Fault::RenameRecreates) => SessionMap::new(),
                None => return Ok(UpdateOutcome::Missing),
            };
            if !self.broken(Fault::RenameKeepsTheOldKey) {
                state.records.remove(from);
            }
            state.leases.remove(from);
            state.records.insert(to.clone(), SessionRecord::new(data, expires_at));
            Ok(UpdateOutcome::Applied)
        }

        async fn delete_expired(&self) -> Result<u64, StoreError> {
            let now = expiry::now();
            let mut state = self.lock().await;
            let before = state.records.len();
            state.records.retain(|_, record| !record.is_expired_at(now));
            state.leases.retain(|_, lease| lease.expires_at > now);
            Ok((before - state.records.len()) as u64)
        }

        async fn sessions_of(&self, user: &str) -> Result<Vec<(StoreKey, SessionRecord)>, StoreError> {
            let now = expiry::now();
            let state = self.lock().await;
            if self.broken(Fault::IndexLosesConcurrentAdds) {
                let listed = state.index.get(user).cloned().unwrap_or_default();
                return Ok(listed
                    .into_iter()
                    .filter_map(|key| {
                        let record = state.records.get(&key).filter(|r| !r.is_expired_at(now))?;
                        (record.user() == Some(user)).then(|| (key.clone(), record.clone()))
                    })
                    .collect());
            }
            let lists_expired = self.broken(Fault::ListsExpiredSessions);
            Ok(state
                .records
                .iter()
                .filter(|(_, record)| record.user() == Some(user) && (lists_expired || !record.is_expired_at(now)))
                .map(|(key, record)| (key.clone(), record.clone()))
                .collect())
        }

        async fn revoke(&self, user: &str, key: &StoreKey) -> Result<bool, StoreError> {
            let mut state = self.lock().await;
            let owned = live(&mut state, key).is_some_and(|record| record.user() == Some(user));
            if owned || (self.broken(Fault::RevokeIgnoresTheUser) && live(&mut state, key).is_some()) {
                state.records.remove(key);
                return Ok(true);
            }
            Ok(false)
        }

        async fn revoke_all(&self, user: &str, except: Option<&StoreKey>) -> Result<u64, StoreError> {
            let now = expiry::now();
            let mut state = self.lock().await;
            let before = state.records.len();
            let spares = !self.broken(Fault::RevokeAllSparesNothing);
            state.records.retain(|key, record| {
                record.user() != Some(user) || record.is_expired_at(now) || (spares && Some(key) == except)
            });
            Ok((before - state.records.len()) as u64)
        }

        async fn scan(&self, cursor: &ScanCursor, limit: usize) -> Result<ScanPage, StoreError> {
            let after = if cursor.is_start() {
                None
            } else {
                Some(StoreKey::parse(cursor.as_str()).ok_or_else(|| StoreError::config("not a MapStore scan cursor"))?)
            };
            let now = expiry::now();
            let state = self.lock().await;
            let mut keys: Vec<&StoreKey> = state
                .records
                .iter()
                .filter(|(key, record)| !record.is_expired_at(now) && after.as_ref().is_none_or(|after| *key > after))
                .map(|(key, _)| key)
                .collect();
            keys.sort();
            let limit = limit.max(1);
            let more = keys.len() > limit;
            let mut page: Vec<(StoreKey, SessionRecord)> =
                keys.into_iter().take(limit).map(|key| (key.clone(), state.records[key].clone())).collect();
            if self.broken(Fault::ScanRepeats)
                && let Some(after) = &after
                && let Some(record) = state.records.get(after)
            {
                page.insert(0, (after.clone(), record.clone()));
                page.truncate(limit);
            }
            let next = match (more, page.last()) {
                (true, Some((last, _))) => Some(ScanCursor::from_text(last.as_str())),
                _ => None,
            };
            Ok(ScanPage { records: page, next })
        }

        async fn try_lease(&self, key: &StoreKey, ttl: Duration) -> Result<Option<Lease>, StoreError> {
            let now = expiry::now();
            let mut state = self.lock().await;
            let expires = !self.broken(Fault::LeasesNeverExpire);
            if state.leases.get(key).is_some_and(|lease| !expires || lease.expires_at > now) {
                return Ok(None);
            }
            let lease = Lease { token: LeaseToken::generate(), expires_at: now + ttl };
            state.leases.insert(key.clone(), lease);
            Ok(Some(lease))
        }

        async fn release_lease(&self, key: &StoreKey, token: LeaseToken) -> Result<(), StoreError> {
            let mut state = self.lock().await;
            if state.leases.get(key).is_some_and(|lease| lease.token == token) {
                state.leases.remove(key);
            }
            Ok(())
        }
    }
}

mod racy_store {
    //! `RacyStore`: relies on the trait's non-atomic defaults for `update`,
    //! `touch` and `rename`, with a read slow enough (5 ms) that concurrent
    //! writes land between its read and its write.

    use std::time::{Duration, SystemTime};

    use sessionkit::{SessionMap, SessionRecord, SessionStore, StoreError, StoreKey};

    #[derive(Default)]
    pub struct RacyStore {
        inner: sessionkit_stores::MemoryStore,
    }

    #[sessionkit::async_trait]
    impl SessionStore for RacyStore {
        async fn get(&self, id: &StoreKey) -> Result<Option<SessionRecord>, StoreError> {
            let record = self.inner.get(id).await;
            tokio::time::sleep(Duration::from_millis(5)).await;
            record
        }
        async fn set(
            &self,
            id: &StoreKey,
            data: &SessionMap,
            expires_at: Option<SystemTime>,
        ) -> Result<(), StoreError> {
            self.inner.set(id, data, expires_at).await
        }
        async fn delete(&self, id: &StoreKey) -> Result<(), StoreError> {
            self.inner.delete(id).await
        }
        async fn delete_expired(&self) -> Result<u64, StoreError> {
            self.inner.delete_expired().await
        }
    }
}

use std::sync::Arc;

use map_store::{Fault, MapStore};
use sessionkit::testing::{Options, block_on, checks};

mod map_store_conformance {
    sessionkit::store_conformance_tests!(async { super::map_store::MapStore::default() });
}

/// The single-function entry point runs every check too.
#[test]
fn run_all_passes_for_the_third_party_store() {
    block_on(sessionkit::testing::run_all(|| async { MapStore::default() }, Options::default()));
}

/// One test per kit check: `$check` on a store built to break it panics
/// with a message containing `$expected`.
macro_rules! caught {
    ($($name:ident: $check:ident on $store:expr, expecting $expected:literal;)*) => {$(
        #[test]
        #[should_panic(expected = $expected)]
        fn $name() {
            block_on(checks::$check(Arc::new($store), Options::default()));
        }
    )*};
}

caught! {
    a_non_atomic_update_loses_keys: concurrent_updates_lose_no_key on racy_store::RacyStore::default(),
        expecting "update is not atomic";
    a_non_atomic_update_undoes_a_delete: update_and_touch_never_undo_a_concurrent_delete on racy_store::RacyStore::default(),
        expecting "brought the session back";
    a_non_atomic_rename_loses_an_update: rename_never_loses_a_concurrent_update on racy_store::RacyStore::default(),
        expecting "rename is not atomic";
    a_non_atomic_update_loses_increments: concurrent_increments_all_count on racy_store::RacyStore::default(),
        expecting "concurrent increments were lost";
    a_non_atomic_update_loses_pushes: concurrent_pushes_all_land_and_keep_last_holds on racy_store::RacyStore::default(),
        expecting "concurrent pushes were lost";
    a_rename_that_keeps_the_old_key: rename_moves_the_patched_record on MapStore::with_fault(Fault::RenameKeepsTheOldKey),
        expecting "rename must remove the old key";
    a_rename_that_recreates: rename_never_recreates_a_missing_record on MapStore::with_fault(Fault::RenameRecreates),
        expecting "rename of a record that is not live must report Missing";
    a_listing_that_shows_expired_sessions: sessions_of_lists_a_users_live_sessions on MapStore::with_fault(Fault::ListsExpiredSessions),
        expecting "a listing shows a session that is not live";
    a_revoke_that_ignores_the_user: revoke_reaches_only_the_users_own_sessions on MapStore::with_fault(Fault::RevokeIgnoresTheUser),
        expecting "revoking another user's session must refuse";
    a_revoke_all_that_spares_nothing: revoke_all_spares_a_session_just_renamed on MapStore::with_fault(Fault::RevokeAllSparesNothing),
        expecting "revoke_all must count the one other live session";
    an_index_that_loses_concurrent_logins: the_user_index_matches_the_records_under_a_storm on MapStore::with_fault(Fault::IndexLosesConcurrentAdds),
        expecting "listing is not the set of";
    a_patch_applied_in_part: a_failing_operation_refuses_the_whole_patch on MapStore::with_fault(Fault::PartialPatches),
        expecting "must be refused with NotAnInteger";
    a_size_limit_ignored: the_size_limit_holds_on_the_stored_result on MapStore::with_fault(Fault::IgnoresTheSizeLimit),
        expecting "past the limit";
    leases_that_never_expire: leases_exclude_expire_and_fence on MapStore::with_fault(Fault::LeasesNeverExpire),
        expecting "a lease that ran out must be granted again";
    leases_without_fencing: leases_exclude_expire_and_fence on MapStore::with_fault(Fault::NoFencing),
        expecting "must be refused with LeaseLost";
    a_scan_that_repeats: scan_returns_every_live_record_once on MapStore::with_fault(Fault::ScanRepeats),
        expecting "more than once";
}
