//! Test doubles for this crate's unit tests.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use serde_json::Value;

use crate::{SessionMap, SessionRecord, SessionStore, StoreError, StoreKey};

/// A JSON object literal as a map.
pub(crate) fn object(value: Value) -> SessionMap {
    match value {
        Value::Object(map) => map,
        other => panic!("test data must be an object, not {other}"),
    }
}

pub(crate) fn run<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("test runtime").block_on(future)
}

/// A store that holds nothing and is never called by config-only tests.
pub(crate) struct NullStore;

#[async_trait::async_trait]
impl SessionStore for NullStore {
    async fn get(&self, _: &StoreKey) -> Result<Option<SessionRecord>, StoreError> {
        Ok(None)
    }
    async fn set(&self, _: &StoreKey, _: &SessionMap, _: Option<SystemTime>) -> Result<(), StoreError> {
        Ok(())
    }
    async fn delete(&self, _: &StoreKey) -> Result<(), StoreError> {
        Ok(())
    }
    async fn delete_expired(&self) -> Result<u64, StoreError> {
        Ok(0)
    }
}

/// A plain map that counts its calls and can be told to fail.
#[derive(Clone, Default)]
pub(crate) struct MapStore {
    records: Arc<Mutex<HashMap<StoreKey, SessionRecord>>>,
    calls: Arc<AtomicUsize>,
    failing: bool,
}

impl MapStore {
    pub(crate) fn failing() -> Self {
        Self { failing: true, ..Self::default() }
    }

    pub(crate) fn insert(&self, id: &StoreKey, data: Value, expires_at: Option<SystemTime>) {
        let data = object(data);
        self.records.lock().expect("lock").insert(id.clone(), SessionRecord::new(data, expires_at));
    }

    pub(crate) fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    fn call(&self) -> Result<(), StoreError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self.failing {
            return Err(StoreError::backend("test store", std::io::Error::other("failing on purpose")));
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl SessionStore for MapStore {
    async fn get(&self, id: &StoreKey) -> Result<Option<SessionRecord>, StoreError> {
        self.call()?;
        Ok(self.records.lock().expect("lock").get(id).cloned())
    }
    async fn set(&self, id: &StoreKey, data: &SessionMap, expires_at: Option<SystemTime>) -> Result<(), StoreError> {
        self.call()?;
        self.records.lock().expect("lock").insert(id.clone(), SessionRecord::new(data.clone(), expires_at));
        Ok(())
    }
    async fn delete(&self, id: &StoreKey) -> Result<(), StoreError> {
        self.call()?;
        self.records.lock().expect("lock").remove(id);
        Ok(())
    }
    async fn delete_expired(&self) -> Result<u64, StoreError> {
        self.call()?;
        Ok(0)
    }
}
