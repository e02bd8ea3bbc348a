//! `RedbStore`: sessions in a [redb](https://docs.rs/redb) database file.
//!
//! The store keeps three tables (the sessions, an expiry index and a user
//! index, see [`tables`]) that every write changes together in one
//! transaction; its writer thread batches concurrent writes into one commit
//! ([`writer`], [`apply`]) and decides exclusive leases ([`leases`]). The
//! public docs, layout included, are on [`RedbStore`].

mod apply;
mod codec;
mod file;
mod handle;
mod leases;
mod reads;
mod tables;
mod writer;

use std::fmt;
use std::path::Path;
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};

use ::redb::{Database, ReadTransaction, ReadableDatabase};
use sessionkit::lease::{Lease, LeaseToken};
use sessionkit::{
    Changes, ScanCursor, ScanPage, SessionMap, SessionRecord, SessionStore, StoreError, StoreKey, UpdateOutcome, expiry,
};

use self::codec::CorruptRecord;
use self::handle::{Fault, Handle, Reopen};
use self::leases::Leases;
use self::tables::Tables;
use self::writer::{Op, Out, Writer};
use crate::group_commit::GroupCommit;
use crate::inline_reads::InlineReads;

/// Raw key bytes: the 32 bytes of a [`StoreKey`].
type Key = [u8; 32];

/// The table prefix unless the builder says otherwise.
const DEFAULT_PREFIX: &str = "sessionkit";

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
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use sessionkit_stores::{RedbDurability, RedbStore};
///
/// # let dir = tempfile::tempdir()?;
/// # let path = dir.path().join("sessions.redb");
/// let store = RedbStore::builder()
///     .durability(RedbDurability::Paranoid)
///     .prefix("admin_sessions")
///     .open(&path)
///     .await?;
/// # drop(store);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct RedbStoreBuilder {
    durability: RedbDurability,
    prefix: String,
}

impl Default for RedbStoreBuilder {
    fn default() -> Self {
        Self { durability: RedbDurability::default(), prefix: RedbStore::DEFAULT_PREFIX.to_owned() }
    }
}

impl RedbStoreBuilder {
    /// How durable a commit is before its writes are acknowledged
    /// [default: [`RedbDurability::Immediate`]].
    pub fn durability(mut self, durability: RedbDurability) -> Self {
        self.durability = durability;
        self
    }

    /// The tables are named `{prefix}_sessions`, `{prefix}_expiry` and
    /// `{prefix}_users` [default: `sessionkit`]. Stores with different prefixes keep separate
    /// sessions in one database.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Opens the database file at `path`, creating it (but not its directory)
    /// if it does not exist.
    ///
    /// A file the store creates is readable and writable by its owner only
    /// (`0600` on Unix). A file that already exists keeps its mode: the
    /// store changes the mode of no existing file. A new database is
    /// initialised under a temporary name beside it (`.{name}.new-{pid}`)
    /// and given its name only once whole, so a crash during the very first
    /// open cannot leave a file that no later open accepts.
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
    pub async fn open(self, path: impl AsRef<Path>) -> Result<RedbStore, StoreError> {
        let path = path.as_ref().to_owned();
        // Opening creates, checks and syncs the file: off the async runtime.
        tokio::task::spawn_blocking(move || {
            let db = file::open(&path)?;
            // `open`, not `create`: a file that vanished must not come back empty.
            self.assemble(Arc::new(db), Some(Box::new(move || Database::open(&path))))
        })
        .await
        .map_err(|err| StoreError::backend("redb store: opening the database failed", err))?
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
    pub async fn from_database(self, db: impl Into<Arc<Database>>) -> Result<RedbStore, StoreError> {
        let db = db.into();
        // Creating the tables commits a write transaction: off the async runtime.
        tokio::task::spawn_blocking(move || self.assemble(db, None))
            .await
            .map_err(|err| StoreError::backend("redb store: creating its tables failed", err))?
    }

    /// Builds the store on `db`, which `reopen`, when given, opens again
    /// after an I/O failure.
    fn assemble(self, db: Arc<Database>, reopen: Option<Reopen>) -> Result<RedbStore, StoreError> {
        let tables = Arc::new(Tables::new(&self.prefix));
        tables::create(&db, &tables, self.durability)?;
        let handle = Arc::new(Handle::new(db, reopen));
        let leases = Arc::new(Leases::default());
        let writer = Writer::new(Arc::clone(&handle), Arc::clone(&tables), Arc::clone(&leases), self.durability);
        let writer = GroupCommit::spawn("sessionkit-redb-writer", writer)?;
        Ok(RedbStore { writer, handle, tables, leases, durability: self.durability, inline_reads: InlineReads::new() })
    }
}

/// A session store in a redb database file: persistent, durable by default,
/// with atomic `update` and `rename`, an expiry index, a user index,
/// in-process exclusive leases and scans: every part of the
/// [`SessionStore`] contract.
///
/// Dropping the store stops its writer thread and closes the database
/// (unless you still hold an `Arc` of it), so the same file can be reopened
/// right after. A `get` whose future was dropped mid-read may hold the file
/// open until that read finishes.
///
/// # Layout
///
/// Three tables, named `{prefix}_sessions`, `{prefix}_expiry` and
/// `{prefix}_users` (the prefix is `sessionkit` unless
/// [`RedbStoreBuilder::prefix`] says otherwise, so several session
/// spaces, or your own tables, can share one file):
///
/// | table | key | value |
/// | --- | --- | --- |
/// | `sessionkit_sessions` | `&[u8; 32]`: the [`StoreKey`]'s bytes | `&[u8]`: `0x02`, a flags byte (`0x01`: an expiry follows, `0x02`: a user follows), the expiry (Unix ms, `i64` big-endian), the user (length as `u32` big-endian, then UTF-8), then the data as compact JSON |
/// | `sessionkit_expiry` | `(i64, &[u8; 32])`: expiry in Unix ms, key | `()` |
/// | `sessionkit_users` | `(&str, &[u8; 32])`: user, key | `()` |
///
/// The indexes hold one entry per record that has an expiry, and per record
/// that has a user (the [`reserved::USER`](sessionkit::reserved::USER) in
/// its data), and move with it in the same transaction on every write, so a
/// listing and a sweep never see a record without its entry or the other
/// way round. `delete_expired` walks the expiry index from the oldest entry
/// up to now and stops: a sweep costs what is expired, not what is stored.
/// Every read checks the expiry too, so an expired record is never returned
/// (nor listed, nor scanned) whether or not a sweep ran.
///
/// # Files of the previous version
///
/// The previous version kept no user index and wrote values whose header is
/// `0x00` (no expiry) or `0x01` and the expiry, without the user. Opening
/// such a file creates `{prefix}_users` and fills it from the sessions'
/// JSON, in one transaction (done once: a file that has the table has a
/// complete index). Old values are read as they are and rewritten in the
/// current layout by their next write. Going back to the previous version
/// afterwards is not supported: it reads values in the current layout as
/// corrupt, that is as absent (those users are signed out), and does not
/// keep the user index.
///
/// # Users
///
/// [`sessions_of`](SessionStore::sessions_of) reads the user's index entries
/// and each record in one read transaction, and returns the live ones that
/// really are that user's. [`revoke`](SessionStore::revoke) and
/// [`revoke_all`](SessionStore::revoke_all) are writes like the others:
/// they check the owner and remove record and entries in the writer's
/// transaction, so a revocation racing a login, a rename or an update of
/// the same sessions is ordered before or after it, never in between.
///
/// # Exclusive leases
///
/// Leases live in this process's memory (redb opens a file in one process
/// only, so every writer of these sessions is here). A grant is decided by
/// the writer thread, in queue order with the writes, and answered once
/// every write queued before it has committed; the fencing check of a
/// patch runs on the writer thread too, right before its write, against the
/// same clock reading as any grant in its batch. So a holder whose lease ran
/// out cannot write, and the next holder reads everything its predecessor
/// was allowed to write. A `try_lease` waits for the commit in front of it
/// in the queue (a batch of grants alone commits nothing); `release_lease`
/// does not wait. Leases are lost with the process, as their holders are.
///
/// # Scans
///
/// [`scan`](SessionStore::scan) reads the sessions table in key order, a
/// page per read transaction, from the key after the cursor (the text form
/// of the last key the previous page looked at). Keys are unique and pages
/// advance strictly, so a record that lives from the first page to the last
/// is returned exactly once, whatever is written meanwhile. A page skips at
/// most a few thousand expired or unreadable records beyond its limit, so
/// it may hold fewer records than asked for before the end.
///
/// # Writes: one thread, one transaction per batch
///
/// redb runs one write transaction at a time. The store owns a writer thread
/// that takes every write queued while the previous commit was running and
/// applies them all in one transaction, committed once. So `update`,
/// `touch`, `rename` and the revocations are atomic read-modify-writes
/// (nothing runs between their read and their write), and concurrent
/// writers share one `fsync` instead of paying one each. A patch that is
/// refused ([`StoreError::Refused`]: an operation on a value of the wrong
/// type, the size limit, a lost lease) writes nothing, and the other writes
/// of its batch go on. No write is acknowledged before the commit holding it
/// returns. Reads run in their own read transactions on tokio's blocking
/// pool, beside the writer, and see every acknowledged write.
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
/// let store = RedbStore::open(&path).await?;
/// store.set(&id, &SessionMap::new(), None).await?;
/// drop(store);
///
/// let reopened = RedbStore::open(&path).await?;
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
    inline_reads: InlineReads,
}

impl RedbStore {
    /// The prefix of the table names unless [`RedbStoreBuilder::prefix`]
    /// says otherwise: `sessionkit`.
    pub const DEFAULT_PREFIX: &'static str = DEFAULT_PREFIX;

    /// Opens the database file at `path` with the default settings,
    /// creating it if it does not exist. See [`RedbStoreBuilder::open`].
    ///
    /// # Errors
    ///
    /// [`StoreError::Config`] when the file is not a redb database, is
    /// already open, or cannot be opened.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::builder().open(path).await
    }

    /// Builds the store on an open database with the default settings. See
    /// [`RedbStoreBuilder::from_database`], and why such a store cannot recover from
    /// an I/O error by itself.
    ///
    /// # Errors
    ///
    /// [`StoreError::Config`] when the tables cannot be created.
    pub async fn from_database(db: impl Into<Arc<Database>>) -> Result<Self, StoreError> {
        Self::builder().from_database(db).await
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
        self.read_after(None, read).await
    }

    /// [`Self::read`], after a first attempt elsewhere that `failed` (on
    /// this database, with this error) if given.
    async fn read_after<T, F>(&self, failed: Option<(Weak<Database>, StoreError)>, read: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: Fn(&ReadTransaction, &Tables) -> Result<T, StoreError> + Send + 'static,
    {
        // Reads fail with the writer, so the store is either in service or
        // not.
        self.writer.health()?;
        let (handle, tables) = (Arc::clone(&self.handle), Arc::clone(&self.tables));
        tokio::task::spawn_blocking(move || read_blocking(&handle, &tables, failed, read))
            .await
            .map_err(|err| StoreError::backend("redb store: a read task failed", err))?
    }
}

/// Runs `read` in a read transaction on the current database handle. When
/// the handle has failed, or was closed under the read by a recovery, the
/// read tries once more on the replacement. `failed`: a first attempt
/// already made, on that database, with that error.
fn read_blocking<T>(
    handle: &Handle,
    tables: &Tables,
    mut failed: Option<(Weak<Database>, StoreError)>,
    read: impl Fn(&ReadTransaction, &Tables) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let mut retry = handle.can_reopen();
    loop {
        let (used, err) = match failed.take() {
            Some(failure) => failure,
            None => {
                let (used, result) = {
                    let db = handle.get()?;
                    // The transaction keeps what it reads from alive; the
                    // `Arc` is let go at once, so a recovery does not wait
                    // for this read.
                    let txn = db.begin_read();
                    (Arc::downgrade(&db), txn)
                };
                let result = result
                    .map_err(|err| StoreError::backend("redb store: beginning a read", err))
                    .and_then(|txn| read(&txn, tables));
                match result {
                    Ok(value) => return Ok(value),
                    Err(err) => (used, err),
                }
            }
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
        // On the caller's task while reads come from cache (see
        // `inline_reads`); anything else, including every error (whose
        // recovery may reopen the file), goes the way that may wait.
        let mut failed = None;
        if self.inline_reads.allowed() {
            self.writer.health()?;
            if let Some(db) = self.handle.in_service() {
                let read = self.inline_reads.run(|| {
                    let txn =
                        db.begin_read().map_err(|err| StoreError::backend("redb store: beginning a read", err))?;
                    reads::record(&txn, &self.tables, &key)
                });
                match read {
                    Ok(record) => return Ok(record),
                    // Recovered from (or reported) off the runtime, as if
                    // the blocking read had failed so.
                    Err(err) => failed = Some((Arc::downgrade(&db), err)),
                }
            }
        }
        self.read_after(failed, move |txn, tables| reads::record(txn, tables, &key)).await
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
        let _ = stored.user();
    }
}

#[cfg(test)]
mod tests;
