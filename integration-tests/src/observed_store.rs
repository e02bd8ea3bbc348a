//! `ObservedStore`: wraps any store, counts the calls the layer makes, and
//! fails every call on demand (a store outage).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use sessionkit::lease::{Lease, LeaseToken};
use sessionkit::{
    Changes, ScanCursor, ScanPage, SessionMap, SessionRecord, SessionStore, StoreError, StoreKey, UpdateOutcome,
};

/// Call counters, one per store method.
#[derive(Debug, Default)]
pub struct Calls {
    pub get: AtomicUsize,
    pub set: AtomicUsize,
    pub delete: AtomicUsize,
    pub touch: AtomicUsize,
    pub update: AtomicUsize,
    pub rename: AtomicUsize,
    pub listing: AtomicUsize,
    pub revoke: AtomicUsize,
    pub lease: AtomicUsize,
}

impl Calls {
    /// Every call so far, all methods together.
    pub fn total(&self) -> usize {
        [
            &self.get,
            &self.set,
            &self.delete,
            &self.touch,
            &self.update,
            &self.rename,
            &self.listing,
            &self.revoke,
            &self.lease,
        ]
        .iter()
        .map(|c| c.load(Ordering::SeqCst))
        .sum()
    }

    /// Calls of one method.
    pub fn of(counter: &AtomicUsize) -> usize {
        counter.load(Ordering::SeqCst)
    }
}

/// A store that records what is asked of it and can be switched off.
pub struct ObservedStore {
    inner: Arc<dyn SessionStore>,
    calls: Arc<Calls>,
    down: Arc<AtomicBool>,
    write_delay_ms: Arc<AtomicU64>,
}

/// The test's handle on an [`ObservedStore`] it gave away to a layer.
#[derive(Clone)]
pub struct Observer {
    pub calls: Arc<Calls>,
    down: Arc<AtomicBool>,
    write_delay_ms: Arc<AtomicU64>,
}

impl Observer {
    /// Makes every store call fail (`true`) or work again (`false`).
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// Makes every write (`set`, `update`, `rename`, `delete`) wait this
    /// long before it reaches the store: a slow disk or network.
    pub fn set_write_delay(&self, delay: Duration) {
        self.write_delay_ms.store(u64::try_from(delay.as_millis()).unwrap_or(u64::MAX), Ordering::SeqCst);
    }
}

impl ObservedStore {
    /// Wraps `inner`, returning the store and the test's handle on it.
    pub fn wrap(inner: Arc<dyn SessionStore>) -> (Self, Observer) {
        let calls = Arc::new(Calls::default());
        let down = Arc::new(AtomicBool::new(false));
        let write_delay_ms = Arc::new(AtomicU64::new(0));
        let observer = Observer { calls: calls.clone(), down: down.clone(), write_delay_ms: write_delay_ms.clone() };
        (Self { inner, calls, down, write_delay_ms }, observer)
    }

    fn enter(&self, counter: &AtomicUsize) -> Result<(), StoreError> {
        counter.fetch_add(1, Ordering::SeqCst);
        if self.down.load(Ordering::SeqCst) {
            return Err(StoreError::backend("observed store", std::io::Error::other("the store is down (test)")));
        }
        Ok(())
    }

    async fn before_write(&self) {
        let delay = self.write_delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
    }
}

#[sessionkit::async_trait]
impl SessionStore for ObservedStore {
    async fn get(&self, key: &StoreKey) -> Result<Option<SessionRecord>, StoreError> {
        self.enter(&self.calls.get)?;
        self.inner.get(key).await
    }
    async fn set(&self, key: &StoreKey, data: &SessionMap, expires_at: Option<SystemTime>) -> Result<(), StoreError> {
        self.enter(&self.calls.set)?;
        self.before_write().await;
        self.inner.set(key, data, expires_at).await
    }
    async fn delete(&self, key: &StoreKey) -> Result<(), StoreError> {
        self.enter(&self.calls.delete)?;
        self.before_write().await;
        self.inner.delete(key).await
    }
    async fn delete_expired(&self) -> Result<u64, StoreError> {
        self.inner.delete_expired().await
    }
    async fn touch(&self, key: &StoreKey, expires_at: Option<SystemTime>) -> Result<bool, StoreError> {
        self.enter(&self.calls.touch)?;
        self.inner.touch(key, expires_at).await
    }
    async fn update(
        &self,
        key: &StoreKey,
        changes: &Changes,
        expires_at: Option<SystemTime>,
    ) -> Result<UpdateOutcome, StoreError> {
        self.enter(&self.calls.update)?;
        self.before_write().await;
        self.inner.update(key, changes, expires_at).await
    }
    async fn rename(
        &self,
        from: &StoreKey,
        to: &StoreKey,
        changes: &Changes,
        expires_at: Option<SystemTime>,
    ) -> Result<UpdateOutcome, StoreError> {
        self.enter(&self.calls.rename)?;
        self.before_write().await;
        self.inner.rename(from, to, changes, expires_at).await
    }
    async fn sessions_of(&self, user: &str) -> Result<Vec<(StoreKey, SessionRecord)>, StoreError> {
        self.enter(&self.calls.listing)?;
        self.inner.sessions_of(user).await
    }
    async fn revoke(&self, user: &str, key: &StoreKey) -> Result<bool, StoreError> {
        self.enter(&self.calls.revoke)?;
        self.inner.revoke(user, key).await
    }
    async fn revoke_all(&self, user: &str, except: Option<&StoreKey>) -> Result<u64, StoreError> {
        self.enter(&self.calls.revoke)?;
        self.inner.revoke_all(user, except).await
    }
    async fn scan(&self, cursor: &ScanCursor, limit: usize) -> Result<ScanPage, StoreError> {
        self.inner.scan(cursor, limit).await
    }
    async fn try_lease(&self, key: &StoreKey, ttl: Duration) -> Result<Option<Lease>, StoreError> {
        self.enter(&self.calls.lease)?;
        self.inner.try_lease(key, ttl).await
    }
    async fn release_lease(&self, key: &StoreKey, token: LeaseToken) -> Result<(), StoreError> {
        self.inner.release_lease(key, token).await
    }
}
