//! A store written the way a third party would: in its own module, through
//! sessionkit's public API only, proven with the conformance kit. And proof
//! that the kit catches a store whose `update` is not atomic.

mod map_store {
    //! `MapStore`: sessions in a `HashMap` behind one async lock.

    use std::collections::HashMap;
    use std::time::SystemTime;

    use sessionkit::{Changes, SessionMap, SessionRecord, SessionStore, StoreError, StoreKey, UpdateOutcome, expiry};
    use tokio::sync::Mutex;

    /// One lock around every operation: simple, and atomic because of it.
    #[derive(Default)]
    pub struct MapStore {
        records: Mutex<HashMap<StoreKey, SessionRecord>>,
    }

    fn live<'a>(records: &'a mut HashMap<StoreKey, SessionRecord>, id: &StoreKey) -> Option<&'a mut SessionRecord> {
        let now = expiry::now();
        records.get_mut(id).filter(|record| !record.is_expired_at(now))
    }

    #[sessionkit::async_trait]
    impl SessionStore for MapStore {
        async fn get(&self, id: &StoreKey) -> Result<Option<SessionRecord>, StoreError> {
            Ok(live(&mut *self.records.lock().await, id).map(|record| record.clone()))
        }

        async fn set(
            &self,
            id: &StoreKey,
            data: &SessionMap,
            expires_at: Option<SystemTime>,
        ) -> Result<(), StoreError> {
            self.records.lock().await.insert(id.clone(), SessionRecord::new(data.clone(), expires_at));
            Ok(())
        }

        async fn delete(&self, id: &StoreKey) -> Result<(), StoreError> {
            self.records.lock().await.remove(id);
            Ok(())
        }

        async fn touch(&self, id: &StoreKey, expires_at: Option<SystemTime>) -> Result<bool, StoreError> {
            let mut records = self.records.lock().await;
            let Some(record) = live(&mut records, id) else { return Ok(false) };
            record.expires_at = expires_at;
            Ok(true)
        }

        async fn update(
            &self,
            id: &StoreKey,
            changes: &Changes,
            expires_at: Option<SystemTime>,
        ) -> Result<UpdateOutcome, StoreError> {
            let mut records = self.records.lock().await;
            let Some(record) = live(&mut records, id) else { return Ok(UpdateOutcome::Missing) };
            // A patch that fails is refused whole: apply it to a copy.
            record.data = changes.applied_to(record.data.clone()).map_err(StoreError::Refused)?;
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
            let mut records = self.records.lock().await;
            let Some(record) = live(&mut records, from) else { return Ok(UpdateOutcome::Missing) };
            let data = changes.applied_to(record.data.clone()).map_err(StoreError::Refused)?;
            records.remove(from);
            records.insert(to.clone(), SessionRecord::new(data, expires_at));
            Ok(UpdateOutcome::Applied)
        }

        async fn delete_expired(&self) -> Result<u64, StoreError> {
            let now = expiry::now();
            let mut records = self.records.lock().await;
            let before = records.len();
            records.retain(|_, record| !record.is_expired_at(now));
            Ok((before - records.len()) as u64)
        }
    }
}

mod racy_store {
    //! `RacyStore`: relies on the trait's default (non-atomic) `update`, with
    //! a slow `get` that widens the race window the default leaves open.

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

mod map_store_conformance {
    sessionkit::store_conformance_tests!(async { super::map_store::MapStore::default() });
}

/// The single-function entry point runs every check too.
#[test]
fn run_all_passes_for_the_third_party_store() {
    sessionkit::testing::block_on(sessionkit::testing::run_all(
        || async { map_store::MapStore::default() },
        sessionkit::testing::Options::default(),
    ));
}

/// The kit is not a rubber stamp: the default, non-atomic `update` loses
/// concurrent writes, and the kit says so.
#[test]
#[should_panic(expected = "update is not atomic")]
fn the_kit_catches_a_non_atomic_update() {
    sessionkit::testing::block_on(sessionkit::testing::checks::concurrent_updates_lose_no_key(
        std::sync::Arc::new(racy_store::RacyStore::default()),
        sessionkit::testing::Options::default(),
    ));
}
