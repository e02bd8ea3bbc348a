//! The [`RedbStore`](super::RedbStore)'s database handle, and how it is
//! replaced after an I/O failure.
//!
//! redb stops trusting a `Database` once one of its file operations has
//! failed (a commit on a full disk, a read error): from then on everything
//! that needs the file answers `StorageError::PreviousIo` ("close and re-open
//! the database"), even once the disk has room again. A store that opened
//! the file itself does exactly that, here: it takes the failed handle out of
//! service, waits briefly for the threads still holding it, closes it and
//! opens the file again, which rolls back to the last durable commit.
//! Nothing acknowledged is lost: every acknowledged write was in a commit
//! that returned, and opening the file finds that commit (except writes
//! acknowledged without a sync under `RedbDurability::None`, lost as in a
//! crash).
//!
//! Every read and every batch of writes asks the [`Handle`] for the current
//! database, so they all move to the new one. A read holds its `Arc` only
//! while it begins its transaction (the transaction keeps what it needs), so
//! a recovery rarely waits; a read whose handle was closed under it tries
//! once more on the new one.
//!
//! A store built on a `Database` the application owns cannot close it, so
//! its operations keep failing, with an error that says so, until the
//! application reopens the database and builds a new store.

use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant};

use redb::{CommitError, Database, DatabaseError, StorageError, TableError, TransactionError};
use sessionkit::StoreError;

/// Opens the store's file again after a failure. Only stores that opened the
/// file themselves have one.
pub(super) type Reopen = Box<dyn Fn() -> Result<Database, DatabaseError> + Send + Sync>;

/// How long a recovery waits for other threads to let go of the failed
/// handle before it gives up until the next failure. They hold it for the
/// start of a read or for one batch of writes, both far shorter than this.
const RELEASE_WAIT: Duration = Duration::from_secs(1);

/// What the store was doing when opening the file again failed.
const REOPENING: &str = "redb store: reopening the database after an I/O error";

/// Says what to do after the database handle failed: in a store built on an
/// application's `Database`, the application must reopen it.
#[derive(Debug, thiserror::Error)]
#[error(
    "the redb database failed an I/O operation and must be closed and opened again; this store was built on a \
     Database the application owns (RedbStore::from_database), so it cannot do that itself: its writes (and the \
     reads that need the file) fail until the application reopens the database and builds a new store"
)]
pub(super) struct MustReopen(#[source] StoreError);

/// A recovery found the failed handle still in use after [`RELEASE_WAIT`].
#[derive(Debug, thiserror::Error)]
#[error(
    "the redb database needs reopening after an I/O error, but other threads held it for longer than {RELEASE_WAIT:?}; \
     the next failed operation tries again"
)]
struct StillInUse;

/// What a failed operation says about the handle it ran on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Fault {
    /// Nothing: the operation failed on its own (a value too large, corrupt
    /// data) and the handle is fine.
    None,
    /// The handle has failed (an I/O error, or redb's `PreviousIo`) and must
    /// be closed and opened again.
    Failed,
    /// The handle was closed under the operation by a recovery: the current
    /// one works.
    Closed,
}

/// Reads the redb error behind `err` to tell whether the handle failed.
pub(super) fn fault(err: &StoreError) -> Fault {
    let Some(source) = std::error::Error::source(err) else {
        return Fault::None;
    };
    let storage = if let Some(err) = source.downcast_ref::<StorageError>() {
        err
    } else if let Some(TransactionError::Storage(err)) = source.downcast_ref() {
        err
    } else if let Some(TableError::Storage(err)) = source.downcast_ref() {
        err
    } else if let Some(CommitError::Storage(err)) = source.downcast_ref() {
        err
    } else {
        return Fault::None;
    };
    match storage {
        // A failed file operation marks redb's handle failed; a panic inside
        // redb leaves its locks poisoned. Either way only a new handle helps.
        StorageError::Io(_) | StorageError::PreviousIo | StorageError::LockPoisoned(_) => Fault::Failed,
        StorageError::DatabaseClosed => Fault::Closed,
        _ => Fault::None,
    }
}

/// Where the handle is.
enum Slot {
    /// In service.
    Open(Arc<Database>),
    /// A recovery is closing the failed handle and opening the file again.
    Reopening,
    /// The last attempt to open the file again failed; the next operation
    /// tries again.
    Closed,
}

/// The store's current database, shared by its readers and its writer.
pub(super) struct Handle {
    slot: Mutex<Slot>,
    /// Signalled whenever the slot leaves [`Slot::Reopening`].
    changed: Condvar,
    /// `None` for a store built on the application's `Database`.
    reopen: Option<Reopen>,
}

impl Handle {
    pub(super) fn new(db: Arc<Database>, reopen: Option<Reopen>) -> Self {
        Self { slot: Mutex::new(Slot::Open(db)), changed: Condvar::new(), reopen }
    }

    /// The database if it is in service right now, without waiting: `None`
    /// while a recovery holds or has changed the slot (the caller then goes
    /// the way that may wait, off the async runtime).
    pub(super) fn in_service(&self) -> Option<Arc<Database>> {
        match &*self.slot.try_lock().ok()? {
            Slot::Open(db) => Some(Arc::clone(db)),
            Slot::Reopening | Slot::Closed => None,
        }
    }

    /// The database to use now. Waits while a recovery is under way, and
    /// opens the file again if the last recovery could not.
    pub(super) fn get(&self) -> Result<Arc<Database>, StoreError> {
        let mut slot = self.lock();
        loop {
            match &*slot {
                Slot::Open(db) => return Ok(Arc::clone(db)),
                Slot::Reopening => slot = self.changed.wait(slot).unwrap_or_else(PoisonError::into_inner),
                // Opened under the lock, so that concurrent callers wait for
                // this attempt instead of racing each other for the file.
                Slot::Closed => {
                    let db = Arc::new(self.open()?);
                    *slot = Slot::Open(Arc::clone(&db));
                    tracing::info!("redb store: reopened the database after an I/O error");
                    return Ok(db);
                }
            }
        }
    }

    /// Whether this store can replace its database (it opened the file).
    pub(super) fn can_reopen(&self) -> bool {
        self.reopen.is_some()
    }

    /// Handles `err`, which an operation on `failed` returned, and gives
    /// back the error to report: the same one, after replacing the handle
    /// when it has failed; or, for a store that cannot replace it, one that
    /// says the application must.
    pub(super) fn after_error(&self, failed: &Weak<Database>, err: StoreError) -> StoreError {
        if fault(&err) != Fault::Failed {
            return err;
        }
        if !self.can_reopen() {
            return StoreError::backend("redb store: the database handle has failed", MustReopen(err));
        }
        if let Err(reopen) = self.recover(failed) {
            // The operation reports its own failure; the next one retries
            // the reopen (or the recovery) and reports how that went.
            tracing::error!(
                error = &reopen as &dyn std::error::Error,
                "redb store: the database could not be reopened after an I/O error"
            );
        }
        err
    }

    /// Replaces `failed` by a freshly opened handle, unless another thread
    /// has replaced it already or is doing so. Does nothing in a store that
    /// cannot reopen its database.
    pub(super) fn recover(&self, failed: &Weak<Database>) -> Result<(), StoreError> {
        let Some(reopen) = &self.reopen else {
            return Ok(());
        };
        let current = {
            let mut slot = self.lock();
            match std::mem::replace(&mut *slot, Slot::Reopening) {
                Slot::Open(current) if std::ptr::eq(Arc::as_ptr(&current), failed.as_ptr()) => current,
                // Replaced already, or being replaced: nothing to do.
                other => {
                    *slot = other;
                    return Ok(());
                }
            }
        };
        tracing::warn!("redb store: the database failed an I/O operation; closing and reopening it");
        // From here on the slot is `Reopening`: the guard makes sure it
        // leaves that state whatever happens, or readers would wait forever.
        let mut guard = Reopening { handle: self, done: false };
        let db = match sole_owner(current, RELEASE_WAIT) {
            Ok(db) => db,
            Err(still_shared) => {
                // Keep serving what the old handle can still serve (its
                // cached pages); the next failed operation tries again.
                guard.finish(Slot::Open(still_shared));
                return Err(StoreError::backend(REOPENING, StillInUse));
            }
        };
        // Closing a failed handle reports the failure again: expected.
        if let Err(err) = db.close() {
            tracing::debug!(error = &err as &dyn std::error::Error, "redb store: closing the failed database handle");
        }
        match reopen() {
            Ok(db) => {
                guard.finish(Slot::Open(Arc::new(db)));
                tracing::info!("redb store: reopened the database after an I/O error");
                Ok(())
            }
            Err(err) => {
                guard.finish(Slot::Closed);
                Err(StoreError::backend(REOPENING, err))
            }
        }
    }

    /// Opens the file again.
    fn open(&self) -> Result<Database, StoreError> {
        let reopen = self.reopen.as_ref().ok_or_else(|| {
            // Only a recovery empties the slot, and only a store that can
            // reopen recovers: reported rather than assumed.
            StoreError::backend(REOPENING, std::io::Error::other("the store has no database handle"))
        })?;
        reopen().map_err(|err| StoreError::backend(REOPENING, err))
    }

    fn lock(&self) -> MutexGuard<'_, Slot> {
        // The slot is replaced whole, so a panic elsewhere cannot leave it
        // half-written.
        self.slot.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Takes the slot out of [`Slot::Reopening`]: to what the recovery reached,
/// or to [`Slot::Closed`] if it unwound, so the next operation tries again.
struct Reopening<'a> {
    handle: &'a Handle,
    done: bool,
}

impl Reopening<'_> {
    fn finish(&mut self, slot: Slot) {
        *self.handle.lock() = slot;
        self.done = true;
        self.handle.changed.notify_all();
    }
}

impl Drop for Reopening<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.finish(Slot::Closed);
        }
    }
}

/// Waits until `db` is the last `Arc` of its database, for at most `wait`:
/// redb locks the file per `Database`, so it must be closed before the file
/// can be opened again.
fn sole_owner(mut db: Arc<Database>, wait: Duration) -> Result<Database, Arc<Database>> {
    let deadline = Instant::now() + wait;
    loop {
        match Arc::try_unwrap(db) {
            Ok(db) => return Ok(db),
            Err(shared) if Instant::now() >= deadline => return Err(shared),
            Err(shared) => {
                db = shared;
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! Disk failures injected through a redb storage backend, so these run
    //! without root (the full-disk test in integration-tests mounts a real
    //! tmpfs).

    use std::ops::Bound;
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    use redb::StorageBackend;
    use redb::backends::FileBackend;
    use serde_json::json;
    use sessionkit::{Changes, SessionMap, SessionStore, StoreKey, UpdateOutcome};

    use super::*;
    use crate::redb::RedbStore;

    /// Which file operations fail, switched by the test.
    #[derive(Debug)]
    struct Faults {
        /// Writes that reach at or past this offset fail as on a full disk.
        full_at: AtomicU64,
        /// Every write, resize and sync fails.
        writes: AtomicBool,
        /// Every read fails.
        reads: AtomicBool,
    }

    impl Faults {
        fn none() -> Arc<Self> {
            Arc::new(Self {
                full_at: AtomicU64::new(u64::MAX),
                writes: AtomicBool::new(false),
                reads: AtomicBool::new(false),
            })
        }

        /// The disk is full from the file's current end on.
        fn fill(&self, path: &Path) {
            self.full_at.store(std::fs::metadata(path).expect("metadata").len(), Ordering::SeqCst);
        }

        fn clear(&self) {
            self.full_at.store(u64::MAX, Ordering::SeqCst);
            self.writes.store(false, Ordering::SeqCst);
            self.reads.store(false, Ordering::SeqCst);
        }
    }

    fn no_space() -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::StorageFull, "no space left on the test disk")
    }

    fn read_error() -> std::io::Error {
        std::io::Error::other("the test disk cannot read")
    }

    /// redb's file backend, failing as `faults` says.
    #[derive(Debug)]
    struct Flaky {
        file: FileBackend,
        faults: Arc<Faults>,
    }

    impl StorageBackend for Flaky {
        fn len(&self) -> Result<u64, std::io::Error> {
            self.file.len()
        }

        fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), std::io::Error> {
            if self.faults.reads.load(Ordering::SeqCst) {
                return Err(read_error());
            }
            self.file.read(offset, out)
        }

        fn set_len(&self, len: u64) -> Result<(), std::io::Error> {
            // Growing a file is free on the filesystems that run out of space
            // (tmpfs, ext4 keep it sparse): writing into it is what fails.
            if self.faults.writes.load(Ordering::SeqCst) {
                return Err(no_space());
            }
            self.file.set_len(len)
        }

        fn sync_data(&self) -> Result<(), std::io::Error> {
            if self.faults.writes.load(Ordering::SeqCst) {
                return Err(no_space());
            }
            self.file.sync_data()
        }

        fn write(&self, offset: u64, data: &[u8]) -> Result<(), std::io::Error> {
            let end = offset.saturating_add(data.len() as u64);
            if self.faults.writes.load(Ordering::SeqCst) || end > self.faults.full_at.load(Ordering::SeqCst) {
                return Err(no_space());
            }
            self.file.write(offset, data)
        }

        fn close(&self) -> Result<(), std::io::Error> {
            self.file.close()
        }

        fn try_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, redb::BackendError> {
            self.file.try_lock_range(start, end)
        }

        fn try_lock_shared_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, redb::BackendError> {
            self.file.try_lock_shared_range(start, end)
        }

        fn lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), redb::BackendError> {
            self.file.lock_range(start, end)
        }

        fn lock_shared_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), redb::BackendError> {
            self.file.lock_shared_range(start, end)
        }

        fn unlock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), redb::BackendError> {
            self.file.unlock_range(start, end)
        }

        fn query_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, redb::BackendError> {
            self.file.query_lock_range(start, end)
        }
    }

    /// Opens `path` on a [`Flaky`] backend, without a read cache, so that
    /// reads reach the file.
    fn flaky(path: PathBuf, faults: Arc<Faults>) -> impl Fn() -> Result<Database, DatabaseError> + Send + Sync {
        move || {
            let file = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path)?;
            let backend = Flaky { file: FileBackend::new(file)?, faults: Arc::clone(&faults) };
            Database::builder().set_cache_size(0).create_with_backend(backend)
        }
    }

    /// A store that opened `path` itself, on a [`Flaky`] backend.
    fn reopening_store(path: &Path, faults: &Arc<Faults>) -> RedbStore {
        let open = flaky(path.to_owned(), Arc::clone(faults));
        let db = open().expect("open");
        RedbStore::builder().assemble(Arc::new(db), Some(Box::new(open))).expect("store")
    }

    fn record(i: usize) -> SessionMap {
        match json!({ "i": i, "pad": "p".repeat(4_000) }) {
            serde_json::Value::Object(map) => map,
            _ => SessionMap::new(),
        }
    }

    fn chain(err: &StoreError) -> String {
        let mut text = err.to_string();
        let mut source = std::error::Error::source(err);
        while let Some(cause) = source {
            text.push_str(": ");
            text.push_str(&cause.to_string());
            source = cause.source();
        }
        text
    }

    /// Writes sessions until one fails; returns those written and the error.
    async fn fill(store: &RedbStore, written: &mut Vec<StoreKey>) -> StoreError {
        loop {
            let id = sessionkit::testing::checks::key();
            match store.set(&id, &record(written.len()), None).await {
                Ok(()) => written.push(id),
                Err(err) => return err,
            }
            assert!(written.len() < 20_000, "the disk never filled up");
        }
    }

    /// Checks `written[from..]` read back as written.
    async fn assert_intact_from(store: &RedbStore, written: &[StoreKey], from: usize) {
        for (i, id) in written.iter().enumerate().skip(from) {
            let got = store.get(id).await.unwrap_or_else(|err| panic!("read of session {i}: {}", chain(&err)));
            assert_eq!(got.map(|record| record.data), Some(record(i)), "session {i} was damaged");
        }
    }

    async fn assert_intact(store: &RedbStore, written: &[StoreKey]) {
        assert_intact_from(store, written, 0).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_disk_fails_writes_keeps_reads_and_writes_work_again_once_space_is_freed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.redb");
        let faults = Faults::none();
        let store = reopening_store(&path, &faults);
        let mut written = Vec::new();
        for _ in 0..20 {
            let id = sessionkit::testing::checks::key();
            store.set(&id, &record(written.len()), None).await.expect("set");
            written.push(id);
        }

        faults.fill(&path);
        let failure = fill(&store, &mut written).await;
        assert!(matches!(failure, StoreError::Backend { .. }), "{failure:?}");
        assert!(chain(&failure).contains("no space left"), "the error must say why: {}", chain(&failure));
        assert_intact(&store, &written).await;

        // Still full: writes keep failing, on the disk and not on redb's
        // "previous I/O error", so the store did reopen the file.
        let refused = sessionkit::testing::checks::key();
        let again = store.set(&refused, &record(0), None).await.expect_err("the disk is still full");
        assert!(chain(&again).contains("no space left"), "{}", chain(&again));
        assert!(!chain(&again).contains("Previous I/O"), "the failed handle was not replaced: {}", chain(&again));
        assert_eq!(store.get(&refused).await.expect("get"), None, "a failed write must not be there");
        assert_intact(&store, &written).await;

        faults.clear();
        let id = sessionkit::testing::checks::key();
        store.set(&id, &record(written.len()), None).await.expect("writing works again once space is freed");
        written.push(id);
        let mut changes = Changes::new();
        changes.set("after", json!(true));
        assert_eq!(store.update(&written[0], &changes, None).await.expect("update"), UpdateOutcome::Applied);
        assert!(store.touch(&written[1], None).await.expect("touch"));
        drop(store);

        // Everything acknowledged is on disk.
        let reopened = RedbStore::open(&path).await.expect("reopen");
        assert_eq!(
            reopened.get(&written[0]).await.expect("get").map(|r| r.data),
            Some(changes.applied_to(record(0)).expect("applies"))
        );
        assert_intact_from(&reopened, &written, 1).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_disk_that_fails_every_write_is_reopened_once_it_works_again() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.redb");
        let faults = Faults::none();
        let store = reopening_store(&path, &faults);
        let id = sessionkit::testing::checks::key();
        store.set(&id, &record(0), None).await.expect("set");

        faults.writes.store(true, Ordering::SeqCst);
        let failure = store.set(&sessionkit::testing::checks::key(), &record(1), None).await.expect_err("writes fail");
        assert!(chain(&failure).contains("no space left"), "{}", chain(&failure));
        // Opening the file needs a write too, so the store has no handle now:
        // every operation tries to reopen and says why it cannot.
        let refused =
            store.set(&sessionkit::testing::checks::key(), &record(1), None).await.expect_err("still failing");
        assert!(chain(&refused).contains("reopening the database"), "{}", chain(&refused));
        let unread = store.get(&id).await.expect_err("no handle to read from");
        assert!(chain(&unread).contains("no space left"), "{}", chain(&unread));

        faults.clear();
        assert_eq!(store.get(&id).await.expect("a read reopens").map(|r| r.data), Some(record(0)));
        let later = sessionkit::testing::checks::key();
        store.set(&later, &record(2), None).await.expect("writes work again");
        assert_eq!(store.get(&later).await.expect("get").map(|r| r.data), Some(record(2)));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_read_error_is_recovered_from_once_reads_work_again() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.redb");
        let faults = Faults::none();
        let mut written = Vec::new();
        {
            let store = reopening_store(&path, &faults);
            for i in 0..20 {
                let id = sessionkit::testing::checks::key();
                store.set(&id, &record(i), None).await.expect("set");
                written.push(id);
            }
        }
        let store = reopening_store(&path, &faults);
        faults.reads.store(true, Ordering::SeqCst);
        let failure = store.get(&written[7]).await.expect_err("the read fails");
        assert!(chain(&failure).contains("cannot read"), "{}", chain(&failure));

        faults.clear();
        assert_intact(&store, &written).await;
        let id = sessionkit::testing::checks::key();
        store.set(&id, &record(0), None).await.expect("writes work");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_store_on_the_applications_database_says_the_application_must_reopen_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.redb");
        let faults = Faults::none();
        let open = flaky(path.clone(), Arc::clone(&faults));
        let store = RedbStore::from_database(open().expect("open")).await.expect("store");
        let mut written = Vec::new();
        faults.fill(&path);
        let failure = fill(&store, &mut written).await;
        assert!(chain(&failure).contains("no space left"), "{}", chain(&failure));

        faults.clear();
        let refused =
            store.set(&sessionkit::testing::checks::key(), &record(0), None).await.expect_err("the handle has failed");
        let text = chain(&refused);
        assert!(text.contains("RedbStore::from_database") && text.contains("reopens the database"), "{text}");
        drop(store);

        // What the application does: reopen, build a new store.
        let store = RedbStore::from_database(open().expect("reopen")).await.expect("store");
        assert_intact(&store, &written).await;
        store.set(&sessionkit::testing::checks::key(), &record(0), None).await.expect("writes work");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn reads_running_through_failures_and_recoveries_never_see_wrong_data() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.redb");
        let faults = Faults::none();
        let store = Arc::new(reopening_store(&path, &faults));
        let mut written = Vec::new();
        for i in 0..100 {
            let id = sessionkit::testing::checks::key();
            store.set(&id, &record(i), None).await.expect("set");
            written.push(id);
        }
        let written = Arc::new(written);
        let stop = Arc::new(AtomicBool::new(false));
        let readers: Vec<_> = (0..4)
            .map(|reader| {
                let (store, written, stop) = (Arc::clone(&store), Arc::clone(&written), Arc::clone(&stop));
                tokio::spawn(async move {
                    let (mut ok, mut failed) = (0u64, 0u64);
                    let mut i = reader;
                    while !stop.load(Ordering::SeqCst) {
                        let at = i % written.len();
                        match store.get(&written[at]).await {
                            Ok(got) => {
                                assert_eq!(got.map(|r| r.data), Some(record(at)), "a read saw wrong data");
                                ok += 1;
                            }
                            Err(err) => {
                                assert!(matches!(err, StoreError::Backend { .. }), "{err:?}");
                                failed += 1;
                            }
                        }
                        i += 7;
                    }
                    (ok, failed)
                })
            })
            .collect();

        let churn = async {
            for _ in 0..4 {
                faults.fill(&path);
                // Waves of concurrent writes until one fails: they share
                // commits, so the disk fills in few fsyncs.
                let mut acknowledged = Vec::new();
                let mut failed = false;
                while !failed {
                    let mut wave = tokio::task::JoinSet::new();
                    for _ in 0..32 {
                        let store = Arc::clone(&store);
                        wave.spawn(async move {
                            let id = sessionkit::testing::checks::key();
                            store.set(&id, &record(0), None).await.map(|()| id)
                        });
                    }
                    for result in wave.join_all().await {
                        match result {
                            Ok(id) => acknowledged.push(id),
                            Err(_) => failed = true,
                        }
                    }
                    assert!(acknowledged.len() < 20_000, "the disk never filled up");
                }
                faults.clear();
                for id in &acknowledged {
                    assert!(store.get(id).await.expect("get").is_some(), "an acknowledged write was lost");
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(60), churn).await.expect("recoveries must not hang");
        stop.store(true, Ordering::SeqCst);
        for reader in readers {
            let (ok, failed) =
                tokio::time::timeout(Duration::from_secs(10), reader).await.expect("a reader hung").expect("reader");
            assert!(ok > 0, "a reader never read ({failed} failures)");
        }
        store.set(&sessionkit::testing::checks::key(), &record(0), None).await.expect("writes work after the churn");
    }

    fn plain(path: &Path) -> Reopen {
        let path = path.to_owned();
        Box::new(move || Database::create(&path))
    }

    #[test]
    fn a_recovery_waits_for_a_holder_to_let_go_then_replaces_the_handle() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.redb");
        let handle = Arc::new(Handle::new(Arc::new(Database::create(&path).expect("create")), Some(plain(&path))));
        let held = handle.get().expect("get");
        let failed = Arc::downgrade(&held);
        let letting_go = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            drop(held);
        });
        handle.recover(&failed).expect("recover");
        letting_go.join().expect("thread");
        let current = handle.get().expect("get");
        assert!(!Weak::ptr_eq(&Arc::downgrade(&current), &failed), "the handle was not replaced");
        assert_eq!(failed.strong_count(), 0, "the failed handle is still open");
        // Already replaced: a second recovery of the same handle does nothing.
        handle.recover(&failed).expect("recover");
        assert!(Arc::ptr_eq(&current, &handle.get().expect("get")));
    }

    #[test]
    fn a_recovery_gives_up_on_a_handle_held_too_long_and_keeps_it_in_service() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.redb");
        let handle = Handle::new(Arc::new(Database::create(&path).expect("create")), Some(plain(&path)));
        let held = handle.get().expect("get");
        let err = handle.recover(&Arc::downgrade(&held)).expect_err("held past the wait");
        assert!(chain(&err).contains("other threads held it"), "{}", chain(&err));
        assert!(Arc::ptr_eq(&held, &handle.get().expect("get")), "the old handle must stay in service");
    }

    #[test]
    fn only_engine_io_failures_call_for_a_new_handle() {
        let backend = |err| StoreError::backend("test", err);
        assert_eq!(fault(&backend(StorageError::PreviousIo)), Fault::Failed);
        assert_eq!(fault(&backend(StorageError::Io(no_space()))), Fault::Failed);
        assert_eq!(fault(&backend(StorageError::DatabaseClosed)), Fault::Closed);
        assert_eq!(
            fault(&StoreError::backend("test", TransactionError::Storage(StorageError::PreviousIo))),
            Fault::Failed
        );
        assert_eq!(
            fault(&StoreError::backend("test", CommitError::Storage(StorageError::Io(no_space())))),
            Fault::Failed
        );
        assert_eq!(fault(&StoreError::backend("test", TableError::Storage(StorageError::PreviousIo))), Fault::Failed);
        assert_eq!(fault(&backend(StorageError::ValueTooLarge(1))), Fault::None);
        assert_eq!(fault(&StoreError::backend("test", no_space())), Fault::None, "not from redb");
        assert_eq!(fault(&StoreError::config("test")), Fault::None);
    }
}
