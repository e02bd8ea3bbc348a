//! The stores under test. Every benchmark runs against every store listed in
//! [`STORES`]: adding a store to the benchmarks is one line there.
//!
//! `SESSIONKIT_BENCH_STORES=memory,redb` restricts a run to some stores.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use sessionkit::{SessionStore, StoreError};
use sessionkit_stores::{MemoryStore, RedbStore, SqliteStore};
use tempfile::TempDir;

/// A store being opened: `Ok(None)` when it cannot run on this machine (a
/// server that is not reachable), which skips it.
pub type Opening = Pin<Box<dyn Future<Output = Result<Option<Arc<dyn SessionStore>>, StoreError>> + Send>>;

/// One store the benchmarks know how to open.
#[derive(Debug)]
pub struct StoreSpec {
    /// Its name in benchmark ids and in the report.
    pub name: &'static str,
    /// Whether it acknowledges writes only once they are on disk.
    pub durable: bool,
    /// Opens a fresh, empty store whose files go under the given directory.
    open: fn(PathBuf) -> Opening,
}

/// Every store in the repository, in the order the report lists them.
pub const STORES: &[StoreSpec] = &[
    StoreSpec { name: "memory", durable: false, open: |_| Box::pin(async { Ok(Some(shared(MemoryStore::new()))) }) },
    StoreSpec {
        name: "sqlite",
        durable: true,
        open: |dir| Box::pin(async move { Ok(Some(shared(SqliteStore::open(dir.join("sessions.db")).await?))) }),
    },
    StoreSpec {
        name: "redb",
        durable: true,
        open: |dir| Box::pin(async move { Ok(Some(shared(RedbStore::open(dir.join("sessions.redb"))?))) }),
    },
];

fn shared(store: impl SessionStore) -> Arc<dyn SessionStore> {
    Arc::new(store)
}

/// A store opened for one benchmark, with the directory holding its files.
pub struct OpenStore {
    /// The spec it was opened from.
    pub spec: &'static StoreSpec,
    /// The store. Declared before `dir` so that it closes before its files go.
    pub store: Arc<dyn SessionStore>,
    /// Removed when the store is dropped.
    _dir: TempDir,
}

impl StoreSpec {
    /// Opens a fresh, empty instance, or `None` when it cannot run here (the
    /// reason is printed).
    ///
    /// Files go to a new directory under `SESSIONKIT_BENCH_DIR`, or the
    /// system's temporary directory.
    pub async fn open(&'static self) -> Result<Option<OpenStore>, StoreError> {
        let dir = match std::env::var_os("SESSIONKIT_BENCH_DIR") {
            Some(base) => tempfile::tempdir_in(base),
            None => tempfile::tempdir(),
        }
        .map_err(|err| StoreError::backend("creating a directory for a benchmark store", err))?;
        match (self.open)(dir.path().to_owned()).await? {
            Some(store) => Ok(Some(OpenStore { spec: self, store, _dir: dir })),
            None => {
                eprintln!("sessionkit-benches: skipping the {} store: it cannot run on this machine", self.name);
                Ok(None)
            }
        }
    }
}

/// The stores this run measures: [`STORES`], narrowed by
/// `SESSIONKIT_BENCH_STORES` (a comma-separated list of names) if set.
pub fn selected() -> Vec<&'static StoreSpec> {
    let wanted = std::env::var("SESSIONKIT_BENCH_STORES").unwrap_or_default();
    let wanted: Vec<&str> = wanted.split(',').map(str::trim).filter(|name| !name.is_empty()).collect();
    STORES.iter().filter(|spec| wanted.is_empty() || wanted.contains(&spec.name)).collect()
}
