//! `SqliteStore`: sessions in a table of a SQLite database, through rusqlite.
//!
//! # Writes
//!
//! One connection writes, on a dedicated thread ([`crate::group_commit`]):
//! writes that arrive while a commit is being synced are applied together in
//! the next transaction, so concurrent requests share fsyncs instead of
//! queueing for one each. A caller hears back only once the commit that
//! holds its write has returned. `update` reads, patches and rewrites the
//! row on that thread inside the transaction, so it is atomic: concurrent
//! updates of one session lose no key, and a deleted session stays deleted.
//!
//! `rename` moves a record the same way (read, patch, insert under the new
//! key, delete the old one, in one savepoint), and every write keeps the
//! row's `user` column equal to the user of the data it writes, in the same
//! statement: the user index is a column, so it can never disagree with a
//! committed row.
//! Exclusive leases live in a table of their own beside the sessions and are
//! taken and checked on the writer too, so they exclude across processes
//! that share the database file (see [`leases`]).
//!
//! # Reads
//!
//! When the store opened the database itself (from a path) it is in WAL
//! mode, and `get`, `sessions_of` and `scan` run on a small pool of separate
//! connections on tokio's blocking pool: readers see the last commit without
//! waiting for the writer. When the store was handed an open connection, that connection is
//! the only one, so reads are queued to the writer thread too (a batch of
//! reads alone opens no transaction and syncs nothing).
//!
//! # Durability
//!
//! A database the store opens is switched to WAL with `synchronous = FULL`:
//! every commit is fsynced before it is acknowledged, and a process killed
//! at any moment leaves each write either fully there or not at all. A
//! connection handed to the store keeps the settings its owner chose.
//!
//! # A writer that panics
//!
//! A panic inside a commit fails that batch (see [`crate::group_commit`]);
//! the writer then goes on with a fresh connection to the file, or, when it
//! has no file to reopen, stops for good and [`SqliteStore::health`] says
//! so. The choices are explained in [`docs/store-writers.md`](https://github.com/sessionkit/sessionkit/blob/main/docs/store-writers.md).
//!
//! # Expiry and corrupt rows
//!
//! Expiry is Unix milliseconds in an indexed `expires_at` column and is
//! checked in SQL on every read, touch and update. A row whose data is not
//! a JSON object reads as absent and is logged (without its id); see
//! [`row`].

mod leases;
mod listing;
mod migrate;
mod patch;
mod readers;
mod row;
mod setup;
mod table;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rusqlite::Connection;
use sessionkit::lease::{Lease, LeaseToken};
use sessionkit::{
    Changes, ScanCursor, ScanPage, SessionMap, SessionRecord, SessionStore, StoreError, StoreKey, UpdateOutcome,
    expiry, reserved,
};

use crate::group_commit::GroupCommit;
use readers::Readers;
use table::{Sql, Table};
use writer::{Op, Out, Reopen, Writer};

/// Records `delete_expired` removes per transaction, so that a large sweep
/// lets other writes in between its steps.
const SWEEP_CHUNK: u32 = 1_000;

/// A session store in a SQLite table.
///
/// Construct it from a path ([`open`](Self::open)) or from a
/// [`rusqlite::Connection`] you opened ([`from_connection`](Self::from_connection));
/// the table, `http_sessions` unless you name another, is created with its
/// indexes if it does not exist, and so is its lease table
/// (`http_sessions_leases`). Constructors are `async`: the file is
/// opened and the schema prepared on tokio's blocking pool, and every error
/// (a file that is not a database, an invalid table name, an existing
/// table of another shape) is reported there, as [`StoreError::Config`].
///
/// Dropping the store finishes the writes already queued and closes the
/// database, so the same file can be opened again as soon as the drop
/// returns.
///
/// # Tables
///
/// | table | columns | indexes |
/// | --- | --- | --- |
/// | `T` (`http_sessions`) | `id TEXT PRIMARY KEY`, `data TEXT` (JSON), `expires_at INTEGER` (Unix ms, `NULL`: never), `user TEXT` (`NULL`: no user) | `T_expires_at`, `T_user` (partial: rows with a user) |
/// | `T_leases` | `id TEXT PRIMARY KEY`, `token TEXT`, `expires_at INTEGER` | `T_leases_expires_at` |
///
/// A table written by an earlier version, without the `user` column, gets
/// it when a store opens it (by path or through
/// [`from_connection`](Self::from_connection)): the column is added and
/// filled from each session's data in one transaction, so its users'
/// sessions are listed at once. Processes of the earlier version still
/// writing to the table meanwhile (a rolling upgrade) do not set the column:
/// a session they create under a user is not listed until it is written
/// again by this version. See [`docs/sqlite-store.md`](https://github.com/sessionkit/sessionkit/blob/main/docs/sqlite-store.md).
///
/// # Files
///
/// A database file the store creates ([`open`](Self::open) on a path that
/// does not exist yet) is readable and writable by its owner only (`0600`
/// on Unix), and SQLite creates the `-wal` and `-shm` files beside it with
/// the database file's mode, so they are private too. A database file that
/// already exists keeps its mode (and new `-wal` and `-shm` files follow
/// it), as do `-wal` and `-shm` files that already exist: the store changes
/// the mode of no existing file. The directory must exist and is left as
/// it is. A connection handed to [`from_connection`](Self::from_connection)
/// was opened by the application, with the modes it chose.
///
/// # Writes, and callers that give up
///
/// Writes go through one writer thread that commits each batch of queued
/// writes in one transaction; at most 256 wait for it. When the disk is
/// slow and that queue is full, a write waits (asynchronously) for room, so
/// a slow disk slows callers down instead of growing the store's memory.
///
/// A caller that stops waiting (drops the future, for example on a
/// timeout) before the writer took its write into a batch can rely on the
/// write never being applied. Once taken, the write runs to its end and may
/// commit: a caller that gave up cannot tell which, and must treat the
/// write as possibly done.
///
/// # A writer that panics
///
/// If a commit panics (a bug), every write of that batch fails and none of
/// it is acknowledged (the transaction is rolled back). A store that opened
/// its file replaces its write connection by a new one and goes on; while
/// it cannot open the file, every operation fails at once with the cause,
/// and it tries again (at least every 2 s). A store built
/// [`from_connection`](Self::from_connection), or on `:memory:`, cannot open
/// its database again: from then on every operation fails at once with an
/// error that says so, and [`health`](Self::health) reports it, until the
/// application builds a new store.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use sessionkit::{SessionId, StoreKey, SessionMap, SessionStore};
/// use sessionkit_stores::SqliteStore;
///
/// let dir = tempfile::tempdir()?;
/// let store = SqliteStore::open(dir.path().join("sessions.db")).await?;
/// let id = StoreKey::hashed(&SessionId::generate());
/// store.set(&id, &SessionMap::new(), None).await?;
/// assert!(store.get(&id).await?.is_some());
///
/// // Or in a table of a database the application already uses:
/// let conn = sessionkit_stores::rusqlite::Connection::open(dir.path().join("app.db"))?;
/// let store = SqliteStore::builder().table("web_sessions").from_connection(conn).await?;
/// assert_eq!(store.table(), "web_sessions");
/// # Ok(()) }
/// ```
pub struct SqliteStore {
    // Declared first so it drops first: queued writes finish and the write
    // connection closes before anything else goes.
    writer: GroupCommit<Writer>,
    /// `None`: reads go through the writer.
    readers: Option<Arc<Readers>>,
    table: Table,
    path: Option<PathBuf>,
}

impl SqliteStore {
    /// The table a store uses unless told otherwise: `http_sessions`.
    pub const DEFAULT_TABLE: &'static str = table::DEFAULT_TABLE;

    /// Opens (creating it if needed) the database file at `path` and uses
    /// its `http_sessions` table. See [`SqliteStoreBuilder::open`].
    ///
    /// # Errors
    ///
    /// As [`SqliteStoreBuilder::open`].
    pub async fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::builder().open(path).await
    }

    /// Uses `conn`'s `http_sessions` table. See
    /// [`SqliteStoreBuilder::from_connection`].
    ///
    /// # Errors
    ///
    /// As [`SqliteStoreBuilder::from_connection`].
    pub async fn from_connection(conn: Connection) -> Result<Self, StoreError> {
        Self::builder().from_connection(conn).await
    }

    /// A builder, to choose the table.
    pub fn builder() -> SqliteStoreBuilder {
        SqliteStoreBuilder { table: Self::DEFAULT_TABLE.to_owned() }
    }

    fn start(
        conn: Connection,
        table: Table,
        sql: Arc<Sql>,
        readers: Option<Arc<Readers>>,
        reopen: Reopen,
        path: Option<PathBuf>,
    ) -> Result<Self, StoreError> {
        let writer = GroupCommit::spawn("sessionkit-sqlite", Writer::new(conn, sql, table.name().to_owned(), reopen))?;
        Ok(Self { writer, readers, table, path })
    }

    ///
    /// The name of the table holding the sessions.
    pub fn table(&self) -> &str {
        self.table.name()
    }

    /// Whether the store can serve operations, for a health check: `Ok`
    /// while its writer runs. Cheap and immediate: it touches neither the
    /// queue nor the disk.
    ///
    /// `Ok` does not promise that the next write succeeds (a full disk fails
    /// that write alone, with its own error); see "A writer that panics"
    /// above for when it is not `Ok`.
    ///
    /// # Errors
    ///
    /// [`StoreError::Backend`], the same error every operation gets at once
    /// meanwhile: for good after a commit panicked in a store that cannot
    /// open its database again (it says the application must build a new
    /// store); for as long as a store that opened its file cannot open it
    /// again after a panic (with the cause).
    pub fn health(&self) -> Result<(), StoreError> {
        self.writer.health()
    }

    async fn submit(&self, op: Op) -> Result<Out, StoreError> {
        self.writer.submit(op).await
    }
}

/// Builds a [`SqliteStore`] on another table than `http_sessions`; made by
/// [`SqliteStore::builder`].
#[derive(Debug, Clone)]
#[must_use]
pub struct SqliteStoreBuilder {
    table: String,
}

impl SqliteStoreBuilder {
    /// The table holding the sessions [default: `http_sessions`]; its
    /// leases live in `{table}_leases`. Stores on different tables keep
    /// separate sessions in one database.
    pub fn table(mut self, table: impl Into<String>) -> Self {
        self.table = table.into();
        self
    }

    /// Opens (creating it if needed) the database file at `path` and uses
    /// the table, creating it if absent.
    ///
    /// The database is switched to WAL mode with `synchronous = FULL` and a
    /// 5 s busy timeout. Reads use up to 8 extra connections to the same
    /// file. A path of `:memory:` gives a private in-memory database, read
    /// and written through one connection.
    ///
    /// # Errors
    ///
    /// [`StoreError::Config`] when `table` is not a plain identifier
    /// (`[A-Za-z_][A-Za-z0-9_]*`, at most 63 bytes, not starting with
    /// `sqlite_`), when the file cannot be opened or is not a SQLite
    /// database, or when a table of that name (or of that name with
    /// `_leases` appended) exists with other columns.
    /// [`StoreError::Backend`] when the database stayed locked by another
    /// process for the whole busy timeout.
    pub async fn open(self, path: impl AsRef<Path>) -> Result<SqliteStore, StoreError> {
        let table = Table::new(&self.table)?;
        let path = path.as_ref().to_owned();
        let private = setup::is_private(&path);
        let path = if private {
            path
        } else {
            // Readers open the file later: pin a relative path to today's
            // working directory.
            std::path::absolute(&path).map_err(|err| {
                StoreError::config_caused_by(format!("cannot resolve the SQLite path {}", path.display()), err)
            })?
        };
        let sql = Arc::new(Sql::new(&table));
        let (conn, wal) = {
            let (path, table, sql) = (path.clone(), table.clone(), Arc::clone(&sql));
            blocking(move || setup::open_writer(&path, &table, &sql, setup::Create::IfMissing)).await?
        };
        let readers =
            (wal && !private).then(|| Arc::new(Readers::new(path.clone(), table.name().to_owned(), Arc::clone(&sql))));
        let reopen =
            if private { Reopen::NeverInMemory } else { Reopen::File { path: path.clone(), table: table.clone() } };
        SqliteStore::start(conn, table, sql, readers, reopen, Some(path))
    }

    /// Uses the table `table` of the database `conn` is open on, creating it
    /// if absent. The store owns the connection from then on and does every
    /// read and write through it, on its writer thread.
    ///
    /// The connection's settings are left as they are: its journal mode,
    /// `synchronous` level and busy timeout decide durability and locking.
    /// For the same durability as [`open`](Self::open), run
    /// `PRAGMA journal_mode = WAL` and `PRAGMA synchronous = FULL` on it
    /// first.
    ///
    /// # Errors
    ///
    /// [`StoreError::Config`] for an invalid table name (as in
    /// [`open`](Self::open)), a connection inside an
    /// open transaction, a file that is not a SQLite database, or a table of
    /// that name with other columns.
    pub async fn from_connection(self, conn: Connection) -> Result<SqliteStore, StoreError> {
        let table = Table::new(&self.table)?;
        if !conn.is_autocommit() {
            return Err(StoreError::config(
                "the SQLite connection given to the session store is inside a transaction; \
                 commit or roll it back first",
            ));
        }
        let sql = Arc::new(Sql::new(&table));
        let conn = {
            let (table, sql) = (table.clone(), Arc::clone(&sql));
            blocking(move || setup::prepare_schema(&conn, &table, &sql).map(|()| conn)).await?
        };
        SqliteStore::start(conn, table, sql, None, Reopen::Never, None)
    }
}

/// Runs blocking setup work off the async runtime.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|err| StoreError::backend("setting up the SQLite session store", err))?
}

/// An answer of the wrong kind from the writer: each `Op` has one `Out`
/// variant, so this is a bug in this module, reported rather than panicking.
/// Names the answer's kind only: rows would carry ids and data.
fn unexpected(out: Out) -> StoreError {
    StoreError::backend(
        "SQLite session store writer",
        std::io::Error::other(format!("unexpected answer from the writer thread: {}", out.kind())),
    )
}

fn key(id: &StoreKey) -> String {
    id.as_str().to_owned()
}

fn now_ms() -> i64 {
    expiry::to_unix_ms(expiry::now())
}

fn ms(instant: Option<SystemTime>) -> Option<i64> {
    instant.map(expiry::to_unix_ms)
}

#[sessionkit::async_trait]
impl SessionStore for SqliteStore {
    async fn get(&self, id: &StoreKey) -> Result<Option<SessionRecord>, StoreError> {
        if let Some(readers) = &self.readers {
            // Reads beside the writer fail with it, so the store is either
            // in service or not.
            self.health()?;
            return readers.get(key(id)).await;
        }
        match self.submit(Op::Get { id: key(id) }).await? {
            Out::Row(raw) => Ok(raw.and_then(|raw| raw.decode(self.table.name()))),
            other => Err(unexpected(other)),
        }
    }

    async fn set(&self, id: &StoreKey, data: &SessionMap, expires_at: Option<SystemTime>) -> Result<(), StoreError> {
        // Encoded here, so the writer thread spends its time on the database.
        let json = serde_json::to_string(data).map_err(StoreError::Encode)?;
        let user = reserved::user_of(data).map(str::to_owned);
        match self.submit(Op::Set { id: key(id), json, user, expires_at: ms(expires_at) }).await? {
            Out::Done => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    async fn delete(&self, id: &StoreKey) -> Result<(), StoreError> {
        match self.submit(Op::Delete { id: key(id) }).await? {
            Out::Done => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// Moves the expiry in SQL without reading or rewriting the data. A row
    /// whose data is corrupt still has its expiry moved (and still reads as
    /// absent): checking would mean parsing the data on every touch.
    async fn touch(&self, id: &StoreKey, expires_at: Option<SystemTime>) -> Result<bool, StoreError> {
        match self.submit(Op::Touch { id: key(id), expires_at: ms(expires_at) }).await? {
            Out::Found(existed) => Ok(existed),
            other => Err(unexpected(other)),
        }
    }

    /// Atomic: the read, patch and rewrite happen in one transaction on the
    /// writer thread. A corrupt row is `Missing` and is left untouched.
    async fn update(
        &self,
        id: &StoreKey,
        changes: &Changes,
        expires_at: Option<SystemTime>,
    ) -> Result<UpdateOutcome, StoreError> {
        let op = Op::Update { id: key(id), changes: changes.clone(), expires_at: ms(expires_at) };
        match self.submit(op).await? {
            Out::Updated(outcome) => Ok(outcome),
            other => Err(unexpected(other)),
        }
    }

    /// Atomic: the read, patch, insert under `to` and delete of `from`
    /// happen in one savepoint of one transaction on the writer thread. A
    /// patch fenced by a lease is checked against the lease on `from`.
    async fn rename(
        &self,
        from: &StoreKey,
        to: &StoreKey,
        changes: &Changes,
        expires_at: Option<SystemTime>,
    ) -> Result<UpdateOutcome, StoreError> {
        let op = Op::Rename { from: key(from), to: key(to), changes: changes.clone(), expires_at: ms(expires_at) };
        match self.submit(op).await? {
            Out::Updated(outcome) => Ok(outcome),
            other => Err(unexpected(other)),
        }
    }

    /// By the `user` column's index, from a read connection when the store
    /// has them; expiry is checked in SQL.
    async fn sessions_of(&self, user: &str) -> Result<Vec<(StoreKey, SessionRecord)>, StoreError> {
        let rows = if let Some(readers) = &self.readers {
            self.health()?;
            let (user, now) = (user.to_owned(), now_ms());
            readers
                .read("listing a user's sessions in SQLite", move |conn, sql| {
                    listing::sessions_of(conn, sql, &user, now)
                })
                .await?
        } else {
            match self.submit(Op::SessionsOf { user: user.to_owned() }).await? {
                Out::Rows(rows) => rows,
                other => return Err(unexpected(other)),
            }
        };
        Ok(listing::decode_sessions(rows, self.table.name(), user))
    }

    /// One `DELETE` that matches the id, the user and liveness together.
    async fn revoke(&self, user: &str, id: &StoreKey) -> Result<bool, StoreError> {
        match self.submit(Op::Revoke { user: user.to_owned(), id: key(id) }).await? {
            Out::Found(revoked) => Ok(revoked),
            other => Err(unexpected(other)),
        }
    }

    /// One `DELETE` by the user index. Expired sessions of the user are not
    /// counted; the sweep removes them.
    async fn revoke_all(&self, user: &str, except: Option<&StoreKey>) -> Result<u64, StoreError> {
        match self.submit(Op::RevokeAll { user: user.to_owned(), except: except.map(key) }).await? {
            Out::Removed(removed) => Ok(removed),
            other => Err(unexpected(other)),
        }
    }

    /// Keyset pagination on the primary key (`id > cursor ORDER BY id`),
    /// from a read connection when the store has them. The cursor is the
    /// text of the last id a page read, so a scan can be resumed by a
    /// later process. A record that lives throughout the scan is returned
    /// exactly once: its id does not change, and the pages cover disjoint,
    /// increasing ranges of ids.
    async fn scan(&self, cursor: &ScanCursor, limit: usize) -> Result<ScanPage, StoreError> {
        let limit = u32::try_from(limit.max(1)).unwrap_or(u32::MAX);
        let after = cursor.as_str().to_owned();
        let rows = if let Some(readers) = &self.readers {
            self.health()?;
            let now = now_ms();
            readers
                .read("scanning sessions in SQLite", move |conn, sql| listing::scan(conn, sql, &after, limit, now))
                .await?
        } else {
            match self.submit(Op::Scan { after, limit }).await? {
                Out::Rows(rows) => rows,
                other => return Err(unexpected(other)),
            }
        };
        Ok(listing::decode_page(rows, self.table.name(), limit))
    }

    /// One upsert on the writer, in the `<table>_leases` table, so that
    /// leases exclude across every process on the database file.
    async fn try_lease(&self, id: &StoreKey, ttl: Duration) -> Result<Option<Lease>, StoreError> {
        let token = LeaseToken::generate();
        // Rounded up, so that a lease never ends before its ttl.
        let ttl_ms = i64::try_from(ttl.as_nanos().div_ceil(1_000_000)).unwrap_or(i64::MAX);
        match self.submit(Op::TryLease { id: key(id), token: token.to_string(), ttl_ms }).await? {
            Out::Leased(granted) => Ok(granted.map(|at| Lease { token, expires_at: expiry::from_unix_ms(at) })),
            other => Err(unexpected(other)),
        }
    }

    async fn release_lease(&self, id: &StoreKey, token: LeaseToken) -> Result<(), StoreError> {
        match self.submit(Op::ReleaseLease { id: key(id), token: token.to_string() }).await? {
            Out::Done => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// Removes expired records 1,000 at a time, each batch its own
    /// commit, so a large sweep does not hold up other writes. Leases that
    /// ran out go in the same steps (they are not counted). The user index
    /// is a column of the rows, so it goes with them.
    async fn delete_expired(&self) -> Result<u64, StoreError> {
        let now = now_ms();
        let mut total = 0;
        loop {
            match self.submit(Op::DeleteExpired { now, limit: SWEEP_CHUNK }).await? {
                Out::Swept { records, leases } => {
                    total += records;
                    if records < u64::from(SWEEP_CHUNK) && leases < u64::from(SWEEP_CHUNK) {
                        return Ok(total);
                    }
                }
                other => return Err(unexpected(other)),
            }
        }
    }
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("table", &self.table.name())
            .field("path", &self.path)
            .field("separate_readers", &self.readers.is_some())
            .finish_non_exhaustive()
    }
}

/// The decoding of a row's two columns, for the fuzz targets in `fuzz/`
/// (built with `--cfg fuzzing` only).
#[cfg(fuzzing)]
pub(crate) fn fuzz_read(data: rusqlite::types::ValueRef<'_>, expires_at: rusqlite::types::ValueRef<'_>) {
    let _ = row::decode(data, expires_at);
}

#[cfg(test)]
mod tests;
