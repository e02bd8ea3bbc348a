//! `ObservedStore`: wraps any store, counts the calls the layer makes, and
//! fails every call on demand (a store outage).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::SystemTime;

use sessionkit::{Changes, SessionId, SessionMap, SessionRecord, SessionStore, StoreError, UpdateOutcome};

/// Call counters, one per store method.
#[derive(Debug, Default)]
pub struct Calls {
    pub get: AtomicUsize,
    pub set: AtomicUsize,
    pub delete: AtomicUsize,
    pub touch: AtomicUsize,
    pub update: AtomicUsize,
}

impl Calls {
    /// Every call so far, all methods together.
    pub fn total(&self) -> usize {
        [&self.get, &self.set, &self.delete, &self.touch, &self.update].iter().map(|c| c.load(Ordering::SeqCst)).sum()
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
}

/// The test's handle on an [`ObservedStore`] it gave away to a layer.
#[derive(Clone)]
pub struct Observer {
    pub calls: Arc<Calls>,
    down: Arc<AtomicBool>,
}

impl Observer {
    /// Makes every store call fail (`true`) or work again (`false`).
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }
}

impl ObservedStore {
    /// Wraps `inner`, returning the store and the test's handle on it.
    pub fn wrap(inner: Arc<dyn SessionStore>) -> (Self, Observer) {
        let calls = Arc::new(Calls::default());
        let down = Arc::new(AtomicBool::new(false));
        let observer = Observer { calls: calls.clone(), down: down.clone() };
        (Self { inner, calls, down }, observer)
    }

    fn enter(&self, counter: &AtomicUsize) -> Result<(), StoreError> {
        counter.fetch_add(1, Ordering::SeqCst);
        if self.down.load(Ordering::SeqCst) {
            return Err(StoreError::backend("observed store", std::io::Error::other("the store is down (test)")));
        }
        Ok(())
    }
}

#[sessionkit::async_trait]
impl SessionStore for ObservedStore {
    async fn get(&self, id: &SessionId) -> Result<Option<SessionRecord>, StoreError> {
        self.enter(&self.calls.get)?;
        self.inner.get(id).await
    }
    async fn set(&self, id: &SessionId, data: &SessionMap, expires_at: Option<SystemTime>) -> Result<(), StoreError> {
        self.enter(&self.calls.set)?;
        self.inner.set(id, data, expires_at).await
    }
    async fn delete(&self, id: &SessionId) -> Result<(), StoreError> {
        self.enter(&self.calls.delete)?;
        self.inner.delete(id).await
    }
    async fn touch(&self, id: &SessionId, expires_at: Option<SystemTime>) -> Result<bool, StoreError> {
        self.enter(&self.calls.touch)?;
        self.inner.touch(id, expires_at).await
    }
    async fn update(
        &self,
        id: &SessionId,
        changes: &Changes,
        expires_at: Option<SystemTime>,
    ) -> Result<UpdateOutcome, StoreError> {
        self.enter(&self.calls.update)?;
        self.inner.update(id, changes, expires_at).await
    }
    async fn delete_expired(&self) -> Result<u64, StoreError> {
        self.inner.delete_expired().await
    }
}
