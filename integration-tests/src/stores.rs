//! Factories for every store in the repository, each fresh and empty, for the
//! HTTP suite. A factory returns `None` only when its store needs a server
//! this machine lacks (Redis, PostgreSQL), after saying so loudly; under `CI=true` that
//! is a failure instead.

use std::any::Any;
use std::sync::Arc;

use sessionkit::SessionStore;

/// A fresh store and whatever must outlive it (a temporary directory, a
/// server process).
pub struct StoreUnderTest {
    pub name: &'static str,
    pub store: Arc<dyn SessionStore>,
    _guard: Box<dyn Any + Send + Sync>,
}

impl StoreUnderTest {
    /// A store with nothing to keep alive beside it.
    pub fn new(name: &'static str, store: impl SessionStore) -> Self {
        Self::guarded(name, store, ())
    }

    /// A store that needs `guard` to live as long as it does.
    pub fn guarded(name: &'static str, store: impl SessionStore, guard: impl Any + Send + Sync) -> Self {
        Self { name, store: Arc::new(store), _guard: Box::new(guard) }
    }
}

/// The in-process memory store.
pub async fn memory() -> Option<StoreUnderTest> {
    Some(StoreUnderTest::new("memory", sessionkit_stores::MemoryStore::new()))
}

/// A redb database in a temporary directory, with durable commits.
pub async fn redb() -> Option<StoreUnderTest> {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = sessionkit_stores::RedbStore::open(dir.path().join("sessions.redb")).await.expect("open redb");
    Some(StoreUnderTest::guarded("redb", store, dir))
}

/// A SQLite database file in a temporary directory (WAL, synchronous=FULL).
pub async fn sqlite() -> Option<StoreUnderTest> {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = sessionkit_stores::SqliteStore::open(dir.path().join("sessions.db")).await.expect("open sqlite");
    Some(StoreUnderTest::guarded("sqlite", store, dir))
}

/// A directory of JSON files in a temporary directory.
pub async fn file() -> Option<StoreUnderTest> {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = sessionkit_stores::FileStore::open(dir.path().join("sessions")).await.expect("open file store");
    Some(StoreUnderTest::guarded("file", store, dir))
}

/// A `RedisStore` on its own throwaway `redis-server` (memory only).
pub async fn redis() -> Option<StoreUnderTest> {
    let server = crate::redis_server::RedisServer::start_or_skip()?;
    let store = sessionkit_stores::RedisStore::open(&server.url()).await.expect("open the redis store");
    Some(StoreUnderTest::guarded("redis", store, server))
}

/// A `PostgresStore` in a schema of its own on the test binary's shared
/// PostgreSQL server (see `postgres_server`), created by the store itself.
pub async fn postgres() -> Option<StoreUnderTest> {
    use crate::postgres_server::{PostgresServer, unique_name};
    let server = PostgresServer::shared_or_skip()?;
    let table = format!("{}.http_sessions", unique_name("http"));
    let store = sessionkit_stores::PostgresStore::builder()
        .table(table)
        .open(&server.url())
        .await
        .expect("open the postgres store");
    Some(StoreUnderTest::guarded("postgres", store, server))
}
