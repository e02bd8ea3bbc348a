//! The writer: the one connection that writes, on its own thread, applying
//! each batch of queued operations in one transaction (see
//! [`crate::group_commit`]).
//!
//! One transaction per batch means one fsync per batch: under concurrency
//! many writes share a sync, and no caller hears back before the commit that
//! holds its write has returned. Each write runs inside its own savepoint,
//! so an operation that fails is rolled back alone and the rest of the batch
//! still commits. If SQLite aborts the whole transaction instead (a full
//! disk, an I/O error), the writes before it in the batch are gone too, so
//! the whole batch fails: nothing is acknowledged that was not committed.
//!
//! If a commit panics, the open transaction is rolled back as the panic
//! unwinds, and before the next batch the writer replaces its connection by
//! a fresh one to the same file ([`Reopen`]); a connection the application
//! handed over, or a private in-memory database, cannot be replaced, and the
//! store then stops for good (see [`crate::group_commit`]).

use std::path::PathBuf;
use std::sync::Arc;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use sessionkit::{Changes, SessionMap, StoreError, UpdateOutcome, expiry};

use super::row::RawRow;
use super::setup;
use super::table::{Sql, Table};
use crate::group_commit::{Committer, Restart};

/// One queued operation. Ids are the 43-character text form of a
/// [`sessionkit::StoreKey`]; instants are Unix milliseconds.
#[derive(Debug)]
pub(super) enum Op {
    /// Insert or replace the whole record; `json` is already encoded.
    Set {
        id: String,
        json: String,
        expires_at: Option<i64>,
    },
    Delete {
        id: String,
    },
    Touch {
        id: String,
        expires_at: Option<i64>,
    },
    /// Read, patch and rewrite the record, atomically.
    Update {
        id: String,
        changes: Changes,
        expires_at: Option<i64>,
    },
    /// Delete up to `limit` records that expired at or before `now`.
    DeleteExpired {
        now: i64,
        limit: u32,
    },
    /// Read the live record: used when there is no separate read connection
    /// (the store was given its connection, or the database is in memory).
    Get {
        id: String,
    },
}

impl Op {
    fn writes(&self) -> bool {
        !matches!(self, Self::Get { .. })
    }
}

/// What an operation answers; each `Op` has its own variant.
#[derive(Debug)]
pub(super) enum Out {
    Done,
    Touched(bool),
    Updated(UpdateOutcome),
    Removed(u64),
    /// The raw row; the caller decodes it, off this thread.
    Row(Option<RawRow>),
}

/// Where the writer gets a new connection after a commit panicked.
#[derive(Debug)]
pub(super) enum Reopen {
    /// The database file the store opened itself: a new connection to it,
    /// set up as the first one was.
    File { path: PathBuf, table: Table },
    /// A connection the application handed over
    /// (`SqliteStore::from_connection`).
    Never,
    /// A private in-memory database: it lives in its one connection, and a
    /// new connection would start empty.
    NeverInMemory,
}

/// The write side of a store: owns the connection.
pub(super) struct Writer {
    conn: Connection,
    sql: Arc<Sql>,
    table: String,
    reopen: Reopen,
}

impl Writer {
    pub(super) fn new(conn: Connection, sql: Arc<Sql>, table: String, reopen: Reopen) -> Self {
        Self { conn, sql, table, reopen }
    }
}

impl Committer for Writer {
    type Op = Op;
    type Out = Out;

    fn commit(&mut self, ops: Vec<Op>) -> Result<Vec<Result<Out, StoreError>>, StoreError> {
        let Self { conn, sql, table, .. } = self;
        if !ops.iter().any(Op::writes) {
            // Reads alone need no transaction, and so no commit or sync.
            return Ok(ops.into_iter().map(|op| apply(conn, sql, table, op)).collect());
        }
        // IMMEDIATE takes the write lock up front (waiting out the busy
        // timeout if another process holds it) instead of failing halfway
        // through the batch when a read lock cannot be upgraded.
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|err| StoreError::backend("beginning a SQLite transaction", err))?;
        let mut results = Vec::with_capacity(ops.len());
        for op in ops {
            let result = if op.writes() { apply_alone(&tx, sql, table, op)? } else { apply(&tx, sql, table, op) };
            results.push(result);
        }
        // Dropping a transaction whose COMMIT failed rolls it back.
        tx.commit().map_err(|err| StoreError::backend("committing session writes to SQLite", err))?;
        Ok(results)
    }

    /// A fresh connection to the file replaces the one that was committing
    /// when the panic struck, so no statement, savepoint or cached state of
    /// the interrupted batch survives. The old connection closes when it is
    /// replaced (SQLite rolls back whatever it still had open; in WAL mode
    /// the new one opens beside it without waiting for its lock).
    fn restart(&mut self) -> Result<(), Restart> {
        match &self.reopen {
            Reopen::File { path, table } => {
                let (conn, _wal) =
                    setup::open_writer(path, table, &self.sql, setup::Create::Never).map_err(Restart::Failed)?;
                self.conn = conn;
                Ok(())
            }
            Reopen::Never => Err(Restart::Impossible(
                "this SqliteStore was built on a connection the application handed over \
                 (SqliteStore::from_connection), which it cannot open again; every operation fails until the \
                 application opens a new connection and builds a new store",
            )),
            Reopen::NeverInMemory => Err(Restart::Impossible(
                "this SqliteStore's database is in memory, private to the connection that panicked, and a new \
                 connection would start empty; every operation fails until the application builds a new store",
            )),
        }
    }
}

/// Applies one write inside a savepoint. The outer `Err` means the batch's
/// transaction is lost and the whole batch must fail; the inner one is this
/// operation's own failure, already rolled back.
fn apply_alone(conn: &Connection, sql: &Sql, table: &str, op: Op) -> Result<Result<Out, StoreError>, StoreError> {
    let batch_failed = |err| StoreError::backend("applying a batch of session writes to SQLite", err);
    conn.prepare_cached("SAVEPOINT op").and_then(|mut s| s.execute([])).map_err(batch_failed)?;
    match apply(conn, sql, table, op) {
        Ok(out) => {
            conn.prepare_cached("RELEASE op").and_then(|mut s| s.execute([])).map_err(batch_failed)?;
            Ok(Ok(out))
        }
        Err(err) => {
            if conn.is_autocommit() {
                // SQLite rolled back the whole transaction (SQLITE_FULL,
                // SQLITE_IOERR, ...): earlier writes in the batch are undone.
                return Err(err);
            }
            conn.prepare_cached("ROLLBACK TO op")
                .and_then(|mut s| s.execute([]))
                .and_then(|_| conn.prepare_cached("RELEASE op").and_then(|mut s| s.execute([])))
                .map_err(batch_failed)?;
            Ok(Err(err))
        }
    }
}

fn now_ms() -> i64 {
    expiry::to_unix_ms(expiry::now())
}

/// Runs one operation on `conn`. Every write is at most one modifying
/// statement, preceded by at most one read.
fn apply(conn: &Connection, sql: &Sql, table: &str, op: Op) -> Result<Out, StoreError> {
    match op {
        Op::Set { id, json, expires_at } => {
            let mut statement = conn.prepare_cached(&sql.upsert).map_err(write_error)?;
            statement.execute(params![id, json, expires_at]).map_err(write_error)?;
            // After the write, so the panic strikes inside a transaction
            // that has changed the table.
            #[cfg(test)]
            crate::group_commit::test_hooks::panic_if_marked(json.as_bytes());
            Ok(Out::Done)
        }
        Op::Delete { id } => {
            let mut statement = conn.prepare_cached(&sql.delete).map_err(write_error)?;
            statement.execute(params![id]).map_err(write_error)?;
            Ok(Out::Done)
        }
        Op::Touch { id, expires_at } => {
            let mut statement = conn.prepare_cached(&sql.touch).map_err(write_error)?;
            let changed = statement.execute(params![id, expires_at, now_ms()]).map_err(write_error)?;
            Ok(Out::Touched(changed > 0))
        }
        Op::Update { id, changes, expires_at } => update(conn, sql, table, &id, &changes, expires_at),
        Op::DeleteExpired { now, limit } => {
            let mut statement = conn.prepare_cached(&sql.delete_expired).map_err(write_error)?;
            let removed = statement.execute(params![now, limit]).map_err(write_error)?;
            Ok(Out::Removed(removed as u64))
        }
        Op::Get { id } => Ok(Out::Row(read_raw(conn, sql, &id).map_err(read_error)?)),
    }
}

/// The read-modify-write of `update`. It runs on the only writing
/// connection, inside the batch's transaction, so nothing can change the
/// row between the read and the write.
fn update(
    conn: &Connection,
    sql: &Sql,
    table: &str,
    id: &str,
    changes: &Changes,
    expires_at: Option<i64>,
) -> Result<Out, StoreError> {
    let Some(raw) = read_raw(conn, sql, id).map_err(read_error)? else {
        return Ok(Out::Updated(UpdateOutcome::Missing));
    };
    // A corrupt row is absent to every reader, so it is absent here too:
    // `Missing`, and the row is left as it is (logged by `decode`).
    let Some(record) = raw.decode(table) else {
        return Ok(Out::Updated(UpdateOutcome::Missing));
    };
    let data: SessionMap = changes.applied_to(record.data).map_err(StoreError::Refused)?;
    let json = serde_json::to_string(&data).map_err(StoreError::Encode)?;
    let mut statement = conn.prepare_cached(&sql.rewrite).map_err(write_error)?;
    statement.execute(params![id, json, expires_at]).map_err(write_error)?;
    Ok(Out::Updated(UpdateOutcome::Applied))
}

/// The live row under `id`, undecoded.
fn read_raw(conn: &Connection, sql: &Sql, id: &str) -> rusqlite::Result<Option<RawRow>> {
    let mut statement = conn.prepare_cached(&sql.get)?;
    statement.query_row(params![id, now_ms()], RawRow::from_row).optional()
}

fn write_error(err: rusqlite::Error) -> StoreError {
    StoreError::backend("writing a session to SQLite", err)
}

fn read_error(err: rusqlite::Error) -> StoreError {
    StoreError::backend("reading a session from SQLite", err)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    /// A writer on table `t` of a new file, whose `data` column refuses
    /// values of 100 bytes or more: a way to make one write fail on its own.
    fn writer(dir: &Path) -> Writer {
        let conn = Connection::open(dir.join("t.db")).expect("open");
        conn.execute_batch(
            "CREATE TABLE t (id TEXT PRIMARY KEY NOT NULL, data TEXT NOT NULL CHECK (length(data) < 100), \
             expires_at INTEGER)",
        )
        .expect("table");
        let table = Table::new("t").expect("name");
        let sql = Arc::new(Sql::new(&table));
        setup::prepare_schema(&conn, &table, &sql).expect("schema");
        Writer::new(conn, sql, "t".to_owned(), Reopen::Never)
    }

    fn set(id: &str, json: &str) -> Op {
        Op::Set { id: id.to_owned(), json: json.to_owned(), expires_at: None }
    }

    fn big() -> String {
        format!("{{\"blob\":\"{}\"}}", "x".repeat(200))
    }

    /// The data stored under each id, read through another connection.
    fn stored(dir: &Path, ids: &[&str]) -> Vec<Option<String>> {
        let conn = Connection::open(dir.join("t.db")).expect("open");
        ids.iter()
            .map(|id| conn.query_row("SELECT data FROM t WHERE id = ?1", [id], |row| row.get(0)).optional())
            .collect::<Result<_, _>>()
            .expect("read")
    }

    #[test]
    fn a_failing_write_fails_alone_and_the_rest_of_its_batch_commits() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut writer = writer(dir.path());
        writer.commit(vec![set("u", r#"{"n":1}"#)]).expect("seed");
        let mut too_big = Changes::new();
        too_big.set("blob", serde_json::Value::String("x".repeat(200)));
        let mut fine = Changes::new();
        fine.set("n", serde_json::json!(2));
        let results = writer
            .commit(vec![
                set("a", "{}"),
                set("b", &big()),
                Op::Update { id: "u".to_owned(), changes: too_big, expires_at: None },
                set("c", "{}"),
                Op::Update { id: "u".to_owned(), changes: fine, expires_at: None },
            ])
            .expect("the batch commits");
        let failed: Vec<bool> = results.iter().map(Result::is_err).collect();
        assert_eq!(failed, [false, true, true, false, false]);
        let cause = results[1].as_ref().err().and_then(std::error::Error::source).map(ToString::to_string);
        assert!(cause.is_some_and(|cause| cause.contains("CHECK constraint failed")));
        assert_eq!(
            stored(dir.path(), &["a", "b", "c", "u"]),
            [Some("{}".to_owned()), None, Some("{}".to_owned()), Some(r#"{"n":2}"#.to_owned())],
        );
    }

    #[test]
    fn every_write_acknowledged_in_a_batch_that_fills_the_database_is_committed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut writer = writer(dir.path());
        writer.conn.pragma_update(None, "max_page_count", 8).expect("cap the file");
        let ids: Vec<String> = (0..400).map(|i| format!("id-{i:03}")).collect();
        let json = format!("{{\"pad\":\"{}\"}}", "p".repeat(80));
        let mut acknowledged = Vec::new();
        for chunk in ids.chunks(50) {
            // Either the batch fails whole, or each Ok is a committed write.
            if let Ok(results) = writer.commit(chunk.iter().map(|id| set(id, &json)).collect()) {
                acknowledged.extend(chunk.iter().zip(results).filter(|(_, r)| r.is_ok()).map(|(id, _)| id.as_str()));
            }
        }
        assert!(acknowledged.len() < ids.len(), "the database never filled up: the test proves nothing");
        assert!(!acknowledged.is_empty());
        for (id, data) in acknowledged.iter().zip(stored(dir.path(), &acknowledged)) {
            assert_eq!(data.as_deref(), Some(json.as_str()), "{id} was acknowledged but is not stored");
        }
    }

    #[test]
    fn a_batch_of_reads_needs_no_write_lock() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut writer = writer(dir.path());
        writer.commit(vec![set("a", "{}")]).expect("seed");
        writer.conn.busy_timeout(std::time::Duration::ZERO).expect("no waiting");
        let other = Connection::open(dir.path().join("t.db")).expect("open");
        other.execute_batch("BEGIN IMMEDIATE").expect("another connection takes the write lock");
        let results = writer.commit(vec![Op::Get { id: "a".to_owned() }, Op::Get { id: "b".to_owned() }]);
        let found: Vec<bool> =
            results.expect("reads").into_iter().map(|r| matches!(r, Ok(Out::Row(Some(_))))).collect();
        assert_eq!(found, [true, false]);
        assert!(writer.commit(vec![set("c", "{}")]).is_err(), "a write does need the lock");
    }
}
