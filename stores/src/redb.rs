//! `RedbStore`: sessions in a [redb](https://docs.rs/redb) database file.
//!
//! The store keeps three tables (the sessions, an expiry index and a user
//! index, see [`tables`]) that every write changes together in one
//! transaction; its writer thread batches concurrent writes into one commit
//! ([`writer`], [`apply`]) and decides exclusive leases ([`leases`]). The
//! public docs, layout included, are on [`RedbStore`].

mod apply;
mod codec;
mod handle;
mod leases;
mod reads;
mod tables;
mod writer;

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use ::redb::{Database, DatabaseError, ReadTransaction, ReadableDatabase, StorageError};
use sessionkit::{
    Changes, Lease, LeaseToken, ScanCursor, ScanPage, SessionMap, SessionRecord, SessionStore, StoreError, StoreKey,
    UpdateOutcome, expiry,
};

use self::codec::CorruptRecord;
use self::handle::{Fault, Handle, Reopen};
use self::leases::Leases;
use self::tables::Tables;
use self::writer::{Op, Out, Writer};
use crate::group_commit::GroupCommit;

/// Raw key bytes: the 32 bytes of a [`StoreKey`].
type Key = [u8; 32];

/// The table prefix unless the builder says otherwise.
const DEFAULT_TABLE_PREFIX: &str = "sessionkit";

/// The most expired records one sweep transaction removes. A large backlog
/// is cleared in several transactions, so requests' writes are not held up
/// behind one huge sweep.
const SWEEP_CHUNK: usize = 10_000;

/// How durable a commit is before its writes are acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum RedbDurability {
    /// The default. A write is acknowledged once the commit holding it is on
    /// disk (redb's `Durability::Immediate`): a crash or power loss after
    /// that loses nothing acknowledged. A torn commit is detected by redb's
    /// checksums and rolled back to the previous one on the next open.
    #[default]
    Immediate,
    /// [`Immediate`](Self::Immediate) with redb's two-phase commit: the new
    /// state is synced before the switch to it is written and synced again.
    /// This costs a second `fsync` per commit and closes a theoretical hole
    /// where an attacker controlling the workload, the disk's write order and
    /// the moment of a crash could get a partial commit accepted (see
    /// `redb::WriteTransaction::set_two_phase_commit`).
    Paranoid,
    /// Commits are not synced (redb's `Durability::None`). A write is
    /// acknowledged, and visible to every reader, as soon as its batch is
    /// applied in memory; it reaches the disk with the next durable commit:
    /// [`RedbStore::flush`], or when the store is dropped and closes the
    /// database. **A crash or power loss loses every write since that
    /// commit** (the file stays consistent and reopens as it was then), and
    /// so does an I/O error such as a full disk, after which the store
    /// reopens the file.
    /// Also refused by databases shared between processes
    /// (`redb::ConcurrencyMode` other than the default), at construction.
    None,
}

/// Configures a [`RedbStore`]: durability and table names.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use sessionkit_stores::{RedbDurability, RedbStore};
///
/// # let dir = tempfile::tempdir()?;
/// # let path = dir.path().join("sessions.redb");
/// let store = RedbStore::builder()
///     .durability(RedbDurability::Paranoid)
///     .table_prefix("admin_sessions")
///     .open(&path)?;
/// # drop(store);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct RedbStoreBuilder {
    durability: RedbDurability,
    table_prefix: String,
}

impl Default for RedbStoreBuilder {
    fn default() -> Self {
        Self { durability: RedbDurability::default(), table_prefix: DEFAULT_TABLE_PREFIX.to_owned() }
    }
}

impl RedbStoreBuilder {
    /// How durable a commit is before its writes are acknowledged
    /// [default: [`RedbDurability::Immediate`]].
    pub fn durability(mut self, durability: RedbDurability) -> Self {
        self.durability = durability;
        self
    }

    /// The tables are named `{prefix}_sessions` and `{prefix}_expiry`
    /// [default: `sessionkit`]. Stores with different prefixes keep separate
    /// sessions in one database.
    pub fn table_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.table_prefix = prefix.into();
        self
    }

    /// Opens the database file at `path`, creating it (but not its directory)
    /// if it does not exist.
    ///
    /// A file the store creates is readable and writable by its owner only
    /// (`0600` on Unix). A file that already exists keeps its mode: the
    /// store changes the mode of no existing file.
    ///
    /// After an I/O error (a full disk) the store closes the file and opens
    /// it again by itself, so writes work again once the cause is gone; see
    /// [`RedbStore`]'s "Failures".
    ///
    /// # Errors
    ///
    /// [`StoreError::Config`], with redb's error as its source, when the file
    /// is not a redb database, is already open (redb opens a file once, in
    /// this process or any other), cannot be read or written, or holds tables
    /// of the same names with other types.
    pub fn open(self, path: impl AsRef<Path>) -> Result<RedbStore, StoreError> {
        let path = path.as_ref();
        let db = open_private(path)
            .map_err(DatabaseError::from)
            .and_then(|file| Database::builder().create_with_backend(::redb::backends::FileBackend::new(file)?))
            .map_err(|err| open_error(path, err))?;
        let path = path.to_owned();
        // `open`, not `create`: a file that vanished must not come back empty.
        self.assemble(Arc::new(db), Some(Box::new(move || Database::open(&path))))
    }

    /// Builds the store on a database you opened yourself (to choose redb's
    /// cache size or concurrency mode, or to keep your own tables in the same
    /// file). Pass the `Database`, or an `Arc` of it to keep using it: the
    /// file then stays open until both the store and your handle are gone.
    ///
    /// The store cannot reopen a database it does not own: after an I/O
    /// error (a full disk), redb fails every later operation that needs the
    /// file until the database is closed and opened again, so the store's
    /// writes fail, with an error that says so, until your application
    /// reopens the database and builds a new store. Prefer
    /// [`open`](Self::open) when you do not need your own `Database`.
    ///
    /// # Errors
    ///
    /// [`StoreError::Config`] when the tables cannot be created or hold other
    /// types, or the durability is not one this database allows.
    pub fn build(self, db: impl Into<Arc<Database>>) -> Result<RedbStore, StoreError> {
        self.assemble(db.into(), None)
    }

    /// Builds the store on `db`, which `reopen`, when given, opens again
    /// after an I/O failure.
    fn assemble(self, db: Arc<Database>, reopen: Option<Reopen>) -> Result<RedbStore, StoreError> {
        let tables = Arc::new(Tables::new(&self.table_prefix));
        tables::create(&db, &tables, self.durability)?;
        let handle = Arc::new(Handle::new(db, reopen));
        let leases = Arc::new(Leases::default());
        let writer = Writer::new(Arc::clone(&handle), Arc::clone(&tables), Arc::clone(&leases), self.durability);
        let writer = GroupCommit::spawn("sessionkit-redb-writer", writer)?;
        Ok(RedbStore { writer, handle, tables, leases, durability: self.durability })
    }
}

/// Opens the file at `path` for redb, creating it empty and private to its
/// owner (`0600`) if it does not exist; an existing file keeps its mode.
/// Otherwise as `redb::Builder::create`, which would create it `0644` (less
/// the umask).
fn open_private(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

/// Says in words why a database file could not be opened.
fn open_error(path: &Path, err: DatabaseError) -> StoreError {
    let path = path.display();
    let message = match &err {
        DatabaseError::DatabaseAlreadyOpen => format!(
            "the redb database {path} is already open, by this process or another: open it once and share \
             the store (or build it on the open Database with RedbStore::from_database)"
        ),
        DatabaseError::UpgradeRequired(format) => {
            format!("{path} is in redb file format {format}, which must be upgraded before this redb can open it")
        }
        DatabaseError::Storage(StorageError::Io(io)) if io.kind() == std::io::ErrorKind::InvalidData => {
            format!("{path} is not a redb database")
        }
        DatabaseError::Storage(StorageError::Corrupted(_)) => format!("{path} is a corrupted redb database"),
        _ => format!("cannot open the redb database {path}"),
    };
    StoreError::config_caused_by(message, err)
}

/// A session store in a redb database file: persistent, durable by default,
/// with atomic `update` and an expiry index.
///
/// Dropping the store stops its writer thread and closes the database
/// (unless you still hold an `Arc` of it), so the same file can be reopened
/// right after. A `get` whose future was dropped mid-read may hold the file
/// open until that read finishes.
///
/// # Layout
///
/// Two tables, named `{prefix}_sessions` and `{prefix}_expiry` (the prefix is
/// `sessionkit` unless [`RedbStoreBuilder::table_prefix`] says otherwise, so
/// several session spaces, or your own tables, can share one file):
///
/// | table | key | value |
/// | --- | --- | --- |
/// | `sessionkit_sessions` | `&[u8; 32]`: the [`StoreKey`]'s bytes | `&[u8]`: a tag byte, the expiry when there is one (Unix ms, `i64` big-endian), then the data as compact JSON |
/// | `sessionkit_expiry` | `(i64, &[u8; 32])`: expiry in Unix ms, id | `()` |
///
/// The expiry index holds one entry per record that has an expiry, and moves
/// with it in the same transaction on every write. `delete_expired` walks it
/// from the oldest entry up to now and stops: a sweep costs what is expired,
/// not what is stored. Every read checks the expiry too, so an expired record
/// is never returned whether or not a sweep ran.
///
/// # Writes: one thread, one transaction per batch
///
/// redb runs one write transaction at a time. The store owns a writer thread
/// that takes every write queued while the previous commit was running and
/// applies them all in one transaction, committed once. So `update` and
/// `touch` are atomic read-modify-writes (nothing runs between their read and
/// their write), and concurrent writers share one `fsync` instead of paying
/// one each. No write is acknowledged before the commit holding it returns.
/// Reads run in their own read transactions on tokio's blocking pool, beside
/// the writer, and see every acknowledged write.
///
/// # Durability
///
/// [`RedbDurability::Immediate`] (the default) acknowledges a write once the
/// commit holding it is on disk. [`RedbDurability::Paranoid`] adds redb's
/// two-phase commit. [`RedbDurability::None`] trades crash safety for speed;
/// read its docs before choosing it.
///
/// # Failures
///
/// When the disk is full, or a read or write of the file fails, the
/// operations caught in it fail with [`StoreError::Backend`], the I/O error
/// as its cause. No failed write is acknowledged, and nothing acknowledged
/// before is lost (with [`RedbDurability::None`], only what a crash would
/// keep). redb then refuses every later operation on that database handle,
/// so a store that opened the file ([`RedbStore::open`],
/// [`RedbStoreBuilder::open`]) closes it and opens it again right away,
/// waiting up to a second for operations still holding it. Writes work again
/// as soon as the disk does, and reads go on meanwhile (unless the disk
/// cannot even be opened; then every operation tries again). A store built
/// [`from_database`](RedbStore::from_database) cannot reopen a database it
/// does not own: its writes fail, saying so, until the application reopens
/// the database and builds a new store.
///
/// # Writes, and callers that give up
///
/// At most 256 writes wait for the writer thread. When the disk is slow and
/// that queue is full, a write waits (asynchronously) for room, so a slow
/// disk slows callers down instead of growing the store's memory. A caller
/// that stops waiting (drops the future, for example on a timeout) before
/// the writer took its write into a batch can rely on the write never being
/// applied. Once taken, the write runs to its end and may commit: a caller
/// that gave up cannot tell which, and must treat the write as possibly
/// done.
///
/// # A writer that panics
///
/// If a commit panics (a bug), every write of that batch fails and none of
/// it is committed. A store that opened its file closes the database handle
/// and opens the file again, as after an I/O error (which also reclaims the
/// pages the abandoned transaction held), and goes on; while that fails,
/// every operation fails at once with the cause and the store tries again
/// (at least every 2 s). A store built
/// [`from_database`](RedbStore::from_database) cannot reopen a database it
/// does not own: from then on every operation fails at once with an error
/// that says so, and [`health`](RedbStore::health) reports it, until the
/// application reopens the database and builds a new store.
///
/// # Bad data
///
/// A stored value that cannot be decoded reads as absent (logged with
/// `tracing`, never with the session id): `get` returns `None`, `touch`
/// returns `false` and `update` returns `Missing`. A file that is not a redb
/// database, a database another handle already has open, or tables of the
/// same name with other types are refused at construction with
/// [`StoreError::Config`], the redb error as its source; the file is left as
/// it was.
///
/// # Example
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use sessionkit::{SessionId, StoreKey, SessionMap, SessionStore};
/// use sessionkit_stores::RedbStore;
///
/// # let dir = tempfile::tempdir()?;
/// let path = dir.path().join("sessions.redb");
/// let id = StoreKey::hashed(&SessionId::generate());
/// let store = RedbStore::open(&path)?;
/// store.set(&id, &SessionMap::new(), None).await?;
/// drop(store);
///
/// let reopened = RedbStore::open(&path)?;
/// assert!(reopened.get(&id).await?.is_some());
/// # Ok(()) }
/// ```
pub struct RedbStore {
    // Declared first so that it drops first: the writer thread is joined,
    // releasing its handle, before `handle` drops the last one and closes the
    // file.
    writer: GroupCommit<Writer>,
    handle: Arc<Handle>,
    tables: Arc<Tables>,
    leases: Arc<Leases>,
    durability: RedbDurability,
}

impl RedbStore {
    /// Opens the database file at `path` with the default settings,
    /// creating it if it does not exist. See [`RedbStoreBuilder::open`].
    ///
    /// # Errors
    ///
    /// [`StoreError::Config`] when the file is not a redb database, is
    /// already open, or cannot be opened.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::builder().open(path)
    }

    /// Builds the store on an open database with the default settings. See
    /// [`RedbStoreBuilder::build`], and why such a store cannot recover from
    /// an I/O error by itself.
    ///
    /// # Errors
    ///
    /// [`StoreError::Config`] when the tables cannot be created.
    pub fn from_database(db: impl Into<Arc<Database>>) -> Result<Self, StoreError> {
        Self::builder().build(db)
    }

    /// A builder, to choose the durability or the table names.
    pub fn builder() -> RedbStoreBuilder {
        RedbStoreBuilder::default()
    }

    /// Whether the store can serve operations, for a health check: `Ok`
    /// while its writer runs. Cheap and immediate: it touches neither the
    /// writer's queue nor the disk.
    ///
    /// `Ok` does not promise that the next write succeeds: a full disk fails
    /// the writes caught in it, with their own error (see "Failures" above).
    ///
    /// # Errors
    ///
    /// [`StoreError::Backend`], the same error every operation gets at once
    /// meanwhile: for good after a commit panicked in a store built
    /// [`from_database`](Self::from_database) (it says the application must
    /// reopen the database and build a new store); for as long as a store
    /// that opened its file cannot open it again after a panic (with the
    /// cause). See "A writer that panics" above.
    pub fn health(&self) -> Result<(), StoreError> {
        self.writer.health()
    }

    /// Makes every acknowledged write durable now. Only
    /// [`RedbDurability::None`] needs it; with the other settings every
    /// write is durable before it is acknowledged and this commits nothing
    /// new.
    ///
    /// # Errors
    ///
    /// [`StoreError::Backend`] when the commit fails.
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.write(Op::Flush, done).await
    }

    /// Runs `read` in a read transaction on tokio's blocking pool.
    async fn read<T, F>(&self, read: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: Fn(&ReadTransaction, &Tables) -> Result<T, StoreError> + Send + 'static,
    {
        // Reads fail with the writer, so the store is either in service or
        // not.
        self.writer.health()?;
        let (handle, tables) = (Arc::clone(&self.handle), Arc::clone(&self.tables));
        tokio::task::spawn_blocking(move || read_blocking(&handle, &tables, read))
            .await
            .map_err(|err| StoreError::backend("redb store: a read task failed", err))?
    }
}

/// Runs `read` in a read transaction on the current database handle. When
/// the handle has failed, or was closed under the read by a recovery, the
/// read tries once more on the replacement.
fn read_blocking<T>(
    handle: &Handle,
    tables: &Tables,
    read: impl Fn(&ReadTransaction, &Tables) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let mut retry = handle.can_reopen();
    loop {
        let (used, result) = {
            let db = handle.get()?;
            // The transaction keeps what it reads from alive; the `Arc` is
            // let go at once, so a recovery does not wait for this read.
            let txn = db.begin_read();
            (Arc::downgrade(&db), txn)
        };
        let result = result
            .map_err(|err| StoreError::backend("redb store: beginning a read", err))
            .and_then(|txn| read(&txn, tables));
        let err = match result {
            Ok(value) => return Ok(value),
            Err(err) => err,
        };
        match handle::fault(&err) {
            Fault::Failed if retry => {
                if let Err(reopen) = handle.recover(&used) {
                    tracing::error!(
                        error = &reopen as &dyn std::error::Error,
                        "redb store: the database could not be reopened after an I/O error"
                    );
                    return Err(err);
                }
            }
            Fault::Closed if retry => {}
            _ => return Err(handle.after_error(&used, err)),
        }
        retry = false;
    }
}

impl fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedbStore")
            .field("sessions_table", &self.tables.sessions)
            .field("expiry_table", &self.tables.expiry)
            .field("users_table", &self.tables.users)
            .field("durability", &self.durability)
            .finish_non_exhaustive()
    }
}

fn now_ms() -> i64 {
    expiry::to_unix_ms(SystemTime::now())
}

/// Corrupt records read as absent; say so without naming the session.
fn log_corrupt(err: &CorruptRecord) {
    tracing::warn!(
        error = err as &dyn std::error::Error,
        "redb store: a stored session cannot be decoded and is treated as absent"
    );
}

/// The writer answered an operation with another operation's answer: a bug
/// in this module, reported as an error rather than a panic.
fn unexpected(out: &Out) -> StoreError {
    StoreError::backend(
        "redb store: the writer thread answered the wrong kind of result",
        std::io::Error::other(format!("{out:?}")),
    )
}

impl RedbStore {
    /// Submits `op` and expects the answer `pick` accepts.
    async fn write<T>(&self, op: Op, pick: impl FnOnce(Out) -> Result<T, Out>) -> Result<T, StoreError> {
        pick(self.writer.submit(op).await?).map_err(|other| unexpected(&other))
    }
}

#[sessionkit::async_trait]
impl SessionStore for RedbStore {
    async fn get(&self, id: &StoreKey) -> Result<Option<SessionRecord>, StoreError> {
        let key = *id.as_bytes();
        self.read(move |txn, tables| reads::record(txn, tables, &key)).await
    }

    async fn set(&self, id: &StoreKey, data: &SessionMap, expires_at: Option<SystemTime>) -> Result<(), StoreError> {
        // Serialised here, on the caller's task, so the writer thread spends
        // its time in the transaction and not on JSON.
        let value = codec::encode(data, expires_at.map(expiry::to_unix_ms))?;
        self.write(Op::Set { key: *id.as_bytes(), value }, done).await
    }

    async fn delete(&self, id: &StoreKey) -> Result<(), StoreError> {
        self.write(Op::Delete { key: *id.as_bytes() }, done).await
    }

    async fn touch(&self, id: &StoreKey, expires_at: Option<SystemTime>) -> Result<bool, StoreError> {
        let op = Op::Touch { key: *id.as_bytes(), expires_at_ms: expires_at.map(expiry::to_unix_ms) };
        self.write(op, |out| match out {
            Out::Touched(existed) => Ok(existed),
            other => Err(other),
        })
        .await
    }

    async fn update(
        &self,
        id: &StoreKey,
        changes: &Changes,
        expires_at: Option<SystemTime>,
    ) -> Result<UpdateOutcome, StoreError> {
        let op = Op::Update {
            key: *id.as_bytes(),
            changes: changes.clone(),
            expires_at_ms: expires_at.map(expiry::to_unix_ms),
        };
        self.write(op, updated).await
    }

    async fn rename(
        &self,
        from: &StoreKey,
        to: &StoreKey,
        changes: &Changes,
        expires_at: Option<SystemTime>,
    ) -> Result<UpdateOutcome, StoreError> {
        let op = Op::Rename {
            from: *from.as_bytes(),
            to: *to.as_bytes(),
            changes: changes.clone(),
            expires_at_ms: expires_at.map(expiry::to_unix_ms),
        };
        self.write(op, updated).await
    }

    async fn delete_expired(&self) -> Result<u64, StoreError> {
        let mut removed = 0;
        loop {
            let (now, more) = self
                .write(Op::Sweep { limit: SWEEP_CHUNK }, |out| match out {
                    Out::Swept { removed, more } => Ok((removed, more)),
                    other => Err(other),
                })
                .await?;
            removed += now;
            if !more {
                return Ok(removed);
            }
        }
    }

    async fn sessions_of(&self, user: &str) -> Result<Vec<(StoreKey, SessionRecord)>, StoreError> {
        let user = user.to_owned();
        self.read(move |txn, tables| reads::sessions_of(txn, tables, &user)).await
    }

    async fn revoke(&self, user: &str, key: &StoreKey) -> Result<bool, StoreError> {
        let op = Op::Revoke { user: user.to_owned(), key: *key.as_bytes() };
        self.write(op, |out| match out {
            Out::Revoked(revoked) => Ok(revoked),
            other => Err(other),
        })
        .await
    }

    async fn revoke_all(&self, user: &str, except: Option<&StoreKey>) -> Result<u64, StoreError> {
        let op = Op::RevokeAll { user: user.to_owned(), except: except.map(|key| *key.as_bytes()) };
        self.write(op, |out| match out {
            Out::RevokedAll(count) => Ok(count),
            other => Err(other),
        })
        .await
    }

    async fn scan(&self, cursor: &ScanCursor, limit: usize) -> Result<ScanPage, StoreError> {
        let after = reads::cursor_key(cursor)?;
        self.read(move |txn, tables| reads::scan_page(txn, tables, after, limit)).await
    }

    async fn try_lease(&self, key: &StoreKey, ttl: Duration) -> Result<Option<Lease>, StoreError> {
        // Through the writer, so that the grant is ordered after every write
        // the previous holder was allowed to make (see `leases`).
        self.write(Op::Lease { key: *key.as_bytes(), ttl }, |out| match out {
            Out::Leased(lease) => Ok(lease),
            other => Err(other),
        })
        .await
    }

    async fn release_lease(&self, key: &StoreKey, token: LeaseToken) -> Result<(), StoreError> {
        self.writer.health()?;
        self.leases.release(key.as_bytes(), token);
        Ok(())
    }
}

/// Accepts `Out::Done`.
fn done(out: Out) -> Result<(), Out> {
    match out {
        Out::Done => Ok(()),
        other => Err(other),
    }
}

/// Accepts `Out::Updated`.
fn updated(out: Out) -> Result<UpdateOutcome, Out> {
    match out {
        Out::Updated(outcome) => Ok(outcome),
        other => Err(other),
    }
}

/// Every way this store reads a stored value, for the fuzz targets in
/// `fuzz/` (built with `--cfg fuzzing` only).
#[cfg(fuzzing)]
pub(crate) fn fuzz_read(bytes: &[u8]) {
    if let Ok(stored) = codec::Stored::parse(bytes) {
        let _ = stored.is_live(0);
        let _ = stored.data();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::group_commit::test_hooks::{
        assert_only_acknowledged_writes_stored, chain, numbered, panicking_data, race_a_panicking_write,
    };

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_commit_that_panics_fails_its_batch_and_the_store_reopens_its_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.redb");
        let store = Arc::new(RedbStore::open(&path).expect("open"));
        let before = sessionkit::testing::checks::key();
        store.set(&before, &numbered(0), None).await.expect("set");
        let first_handle = Arc::downgrade(&store.handle.get().expect("handle"));

        let race = race_a_panicking_write(&store).await;
        store.health().expect("the writer restarted");
        assert_eq!(first_handle.strong_count(), 0, "the handle the panic struck was not closed");
        assert_only_acknowledged_writes_stored(&*store, &race).await;

        let after = sessionkit::testing::checks::key();
        store.set(&after, &numbered(1), Some(expiry::now() + std::time::Duration::from_secs(60))).await.expect("set");
        let mut changes = Changes::new();
        changes.set("updated", serde_json::json!(true));
        assert_eq!(store.update(&before, &changes, None).await.expect("update"), UpdateOutcome::Applied);
        assert!(store.touch(&after, None).await.expect("touch"));
        store.delete(&after).await.expect("delete");
        drop(store);

        let reopened = RedbStore::open(&path).expect("reopen");
        assert_eq!(
            reopened.get(&before).await.expect("get").map(|r| r.data),
            Some(changes.applied_to(numbered(0)).expect("applies"))
        );
        assert_eq!(reopened.get(&after).await.expect("get"), None);
        assert_only_acknowledged_writes_stored(&reopened, &race).await;
    }

    #[tokio::test]
    async fn a_store_on_the_applications_database_is_out_of_service_after_a_panic_and_says_so() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.redb");
        let store = RedbStore::from_database(Database::create(&path).expect("create")).expect("store");
        let kept = sessionkit::testing::checks::key();
        store.set(&kept, &numbered(0), None).await.expect("set");
        let panicked = sessionkit::testing::checks::key();
        let err = store.set(&panicked, &panicking_data(), None).await.expect_err("the commit panics");
        assert!(chain(&err).contains("panicked"), "{}", chain(&err));

        for _ in 0..3 {
            let health = chain(&store.health().expect_err("out of service for good"));
            assert!(health.contains("from_database") && health.contains("builds a new store"), "{health}");
            let read = store.get(&kept).await.expect_err("reads fail at once");
            assert_eq!(chain(&read), health, "every operation reports the lasting error");
            let write =
                store.set(&sessionkit::testing::checks::key(), &numbered(1), None).await.expect_err("writes fail");
            assert_eq!(chain(&write), health);
            assert!(store.flush().await.is_err());
        }
        drop(store);

        // What the application does: open the database again, a new store.
        let store = RedbStore::open(&path).expect("reopen");
        store.health().expect("a new store is healthy");
        assert_eq!(store.get(&kept).await.expect("get").map(|r| r.data), Some(numbered(0)));
        assert_eq!(store.get(&panicked).await.expect("get"), None, "the panicked write was rolled back");
    }

    #[cfg(unix)]
    #[test]
    fn the_database_file_a_store_creates_is_private_and_an_existing_file_keeps_its_mode() {
        use std::os::unix::fs::PermissionsExt;
        let mode = |path: &Path| std::fs::metadata(path).expect("metadata").permissions().mode() & 0o777;

        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sessions.redb");
        drop(RedbStore::open(&path).expect("open"));
        assert_eq!(mode(&path), 0o600, "a new database file must be private");

        let shared = dir.path().join("shared.redb");
        std::fs::write(&shared, b"").expect("create");
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o640)).expect("chmod");
        drop(RedbStore::open(&shared).expect("open"));
        assert_eq!(mode(&shared), 0o640, "the store changed the mode of an existing file");
    }

    #[tokio::test]
    async fn the_expiry_index_follows_every_write() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = Arc::new(Database::create(dir.path().join("s.redb")).expect("create"));
        let store = RedbStore::from_database(Arc::clone(&db)).expect("store");
        let index = || -> Vec<(i64, Key)> {
            let txn = db.begin_read().expect("read");
            let table = txn.open_table(store.tables.expiry()).expect("table");
            ::redb::ReadableTable::iter(&table)
                .expect("iter")
                .map(|entry| entry.map(|(key, _)| (key.value().0, *key.value().1)).expect("entry"))
                .collect()
        };
        let id = sessionkit::testing::checks::key();
        let key = *id.as_bytes();
        let soon = expiry::now() + std::time::Duration::from_secs(60);
        let later = soon + std::time::Duration::from_secs(60);
        let (soon_ms, later_ms) = (expiry::to_unix_ms(soon), expiry::to_unix_ms(later));

        store.set(&id, &SessionMap::new(), Some(soon)).await.expect("set");
        assert_eq!(index(), vec![(soon_ms, key)]);
        assert!(store.touch(&id, Some(later)).await.expect("touch"));
        assert_eq!(index(), vec![(later_ms, key)]);
        assert_eq!(store.update(&id, &Changes::new(), Some(soon)).await.expect("update"), UpdateOutcome::Applied);
        assert_eq!(index(), vec![(soon_ms, key)]);
        store.set(&id, &SessionMap::new(), None).await.expect("set");
        assert_eq!(index(), vec![], "a record without expiry is not indexed");
        store.set(&id, &SessionMap::new(), Some(later)).await.expect("set");
        store.delete(&id).await.expect("delete");
        assert_eq!(index(), vec![]);
    }
}
