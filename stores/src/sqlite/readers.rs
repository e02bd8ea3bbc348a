//! Reads on their own connections, beside the writer.
//!
//! In WAL mode a reader sees the last committed state without waiting for
//! the writer, so `get`, listings and scans need not queue behind a batch
//! that is being synced.
//! Reads run on tokio's blocking pool; a semaphore caps how many run at
//! once, and that many connections are kept open for reuse. A `get` runs
//! on the caller's task instead while reads come from cache (see
//! [`crate::inline_reads`]), on an idle connection told not to wait for a
//! lock: anything that would wait (no idle connection, a busy database, an
//! error) goes to the blocking pool.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rusqlite::Connection;
use sessionkit::{SessionRecord, StoreError, expiry};
use tokio::sync::Semaphore;

use super::row;
use super::setup;
use super::table::Sql;
use crate::inline_reads::InlineReads;

/// At most this many reads run (and connections stay open) at once. Reads
/// are short: more than a few per core would only queue inside SQLite.
const MAX_READERS: usize = 8;

/// A bounded pool of reading connections to one database file.
pub(super) struct Readers {
    path: PathBuf,
    table: String,
    sql: Arc<Sql>,
    idle: Mutex<Vec<Connection>>,
    permits: Arc<Semaphore>,
    inline: InlineReads,
}

impl Readers {
    /// Readers for the database at `path`, opened on first use.
    pub(super) fn new(path: PathBuf, table: String, sql: Arc<Sql>) -> Self {
        Self {
            path,
            table,
            sql,
            idle: Mutex::new(Vec::new()),
            permits: Arc::new(Semaphore::new(MAX_READERS)),
            inline: InlineReads::new(),
        }
    }

    /// The live record stored under `id`, read off the async runtime.
    pub(super) async fn get(self: &Arc<Self>, id: String) -> Result<Option<SessionRecord>, StoreError> {
        if let Some(found) = self.get_inline(&id) {
            return Ok(found);
        }
        let table = self.table.clone();
        self.read("reading a session from SQLite", move |conn, sql| read_live(conn, sql, &table, &id)).await
    }

    /// Runs `read` on a read connection, off the async runtime.
    pub(super) async fn read<T: Send + 'static>(
        self: &Arc<Self>,
        what: &'static str,
        read: impl FnOnce(&Connection, &Sql) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let permit = Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .map_err(|err| StoreError::backend("waiting for a SQLite read connection", err))?;
        let readers = Arc::clone(self);
        let read = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            readers.read_blocking(what, read)
        });
        read.await.map_err(|err| StoreError::backend(what, err))?
    }

    fn read_blocking<T>(
        &self,
        what: &'static str,
        read: impl FnOnce(&Connection, &Sql) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        let conn = match self.take_idle() {
            Some(conn) => conn,
            None => setup::open_reader(&self.path)
                .map_err(|err| StoreError::backend("opening a SQLite read connection", err))?,
        };
        let found = read(&conn, &self.sql).map_err(|err| StoreError::backend(what, err))?;
        // Only a connection that just worked goes back for reuse.
        self.idle.lock().unwrap_or_else(PoisonError::into_inner).push(conn);
        Ok(found)
    }

    /// The record under `id` read on the caller's task, or `None` when the
    /// read must go to the blocking pool.
    fn get_inline(&self, id: &str) -> Option<Option<SessionRecord>> {
        if !self.inline.allowed() {
            return None;
        }
        // A free permit, or the pool is full and this read waits its turn.
        let permit = self.permits.try_acquire().ok()?;
        let conn = self.take_idle()?;
        let read = self.inline.run(|| {
            // Never SQLite's busy handler, which sleeps, on the runtime.
            conn.busy_timeout(Duration::ZERO)?;
            let found = read_live(&conn, &self.sql, &self.table, id);
            conn.busy_timeout(setup::BUSY_TIMEOUT)?;
            found
        });
        drop(permit);
        // Only a connection that just worked goes back for reuse; a failed
        // read is tried again, the way that may wait.
        let found = read.ok()?;
        self.idle.lock().unwrap_or_else(PoisonError::into_inner).push(conn);
        Some(found)
    }

    fn take_idle(&self) -> Option<Connection> {
        // The list is only pushed to and popped from, so a panic elsewhere
        // while it was locked cannot have left it inconsistent.
        self.idle.lock().unwrap_or_else(PoisonError::into_inner).pop()
    }
}

/// The live record under `id`, decoded straight from SQLite's buffers;
/// a corrupt row reads as `None` (logged).
fn read_live(conn: &Connection, sql: &Sql, table: &str, id: &str) -> rusqlite::Result<Option<SessionRecord>> {
    let mut statement = conn.prepare_cached(&sql.get)?;
    let mut rows = statement.query(rusqlite::params![id, expiry::to_unix_ms(expiry::now())])?;
    match rows.next()? {
        Some(found) => Ok(row::decode_or_log(found.get_ref(0)?, found.get_ref(1)?, table)),
        None => Ok(None),
    }
}

impl std::fmt::Debug for Readers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Readers").field("path", &self.path).field("max", &MAX_READERS).finish_non_exhaustive()
    }
}
