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

use rusqlite::{Connection, TransactionBehavior, params};
use sessionkit::{Changes, StoreError, UpdateOutcome, expiry};

use super::listing::{self, Listed};
use super::patch::{self, read_error, write_error};
use super::row::RawRow;
use super::table::{Sql, Table};
use super::{leases, setup};
use crate::group_commit::{Committer, Restart};

/// One queued operation. Ids are the 43-character text form of a
/// [`sessionkit::StoreKey`]; instants are Unix milliseconds; lease tokens
/// are their 32 hexadecimal digits.
#[derive(Debug)]
pub(super) enum Op {
    /// Insert or replace the whole record; `json` is already encoded, and
    /// `user` read from the data it encodes.
    Set {
        id: String,
        json: String,
        user: Option<String>,
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
    /// Read, patch, write under `to` and delete `from`, atomically.
    Rename {
        from: String,
        to: String,
        changes: Changes,
        expires_at: Option<i64>,
    },
    /// Delete the live record `id` if it is `user`'s.
    Revoke {
        user: String,
        id: String,
    },
    /// Delete `user`'s live records but `except`.
    RevokeAll {
        user: String,
        except: Option<String>,
    },
    TryLease {
        id: String,
        token: String,
        ttl_ms: i64,
    },
    ReleaseLease {
        id: String,
        token: String,
    },
    /// Delete up to `limit` records, and up to `limit` leases, that expired
    /// at or before `now`.
    DeleteExpired {
        now: i64,
        limit: u32,
    },
    /// Read the live record: used when there is no separate read connection
    /// (the store was given its connection, or the database is in memory);
    /// so are the two reads below.
    Get {
        id: String,
    },
    SessionsOf {
        user: String,
    },
    Scan {
        after: String,
        limit: u32,
    },
}

impl Op {
    fn writes(&self) -> bool {
        !matches!(self, Self::Get { .. } | Self::SessionsOf { .. } | Self::Scan { .. })
    }
}

/// What an operation answers; each `Op` has its own variant.
#[derive(Debug)]
pub(super) enum Out {
    Done,
    /// `touch` and `revoke`: whether a live record was there.
    Found(bool),
    Updated(UpdateOutcome),
    /// `revoke_all`: how many records went.
    Removed(u64),
    Swept {
        records: u64,
        leases: u64,
    },
    /// A granted lease's expiry, or `None` while another holds it.
    Leased(Option<i64>),
    /// The raw row; the caller decodes it, off this thread.
    Row(Option<RawRow>),
    Rows(Vec<Listed>),
}

impl Out {
    /// The variant's name, for errors (never the rows, which carry ids).
    pub(super) fn kind(&self) -> &'static str {
        match self {
            Self::Done => "Done",
            Self::Found(_) => "Found",
            Self::Updated(_) => "Updated",
            Self::Removed(_) => "Removed",
            Self::Swept { .. } => "Swept",
            Self::Leased(_) => "Leased",
            Self::Row(_) => "Row",
            Self::Rows(_) => "Rows",
        }
    }
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

/// Runs one operation on `conn`. Every write is at most a few statements,
/// inside the savepoint [`apply_alone`] opened.
fn apply(conn: &Connection, sql: &Sql, table: &str, op: Op) -> Result<Out, StoreError> {
    let now = now_ms();
    let execute = |query: &str, params: &[&dyn rusqlite::ToSql]| {
        conn.prepare_cached(query).and_then(|mut statement| statement.execute(params)).map_err(write_error)
    };
    match op {
        Op::Set { id, json, user, expires_at } => {
            execute(&sql.upsert, params![id, json, expires_at, user])?;
            // After the write, so the panic strikes inside a transaction
            // that has changed the table.
            #[cfg(test)]
            crate::group_commit::test_hooks::panic_if_marked(json.as_bytes());
            Ok(Out::Done)
        }
        Op::Delete { id } => {
            execute(&sql.delete, params![id])?;
            Ok(Out::Done)
        }
        Op::Touch { id, expires_at } => Ok(Out::Found(execute(&sql.touch, params![id, expires_at, now])? > 0)),
        Op::Update { id, changes, expires_at } => {
            patch::update(conn, sql, table, (&id, &changes, expires_at), now).map(Out::Updated)
        }
        Op::Rename { from, to, changes, expires_at } => {
            patch::rename(conn, sql, table, (&from, &to, &changes, expires_at), now).map(Out::Updated)
        }
        Op::Revoke { user, id } => Ok(Out::Found(execute(&sql.revoke, params![id, user, now])? > 0)),
        Op::RevokeAll { user, except } => {
            Ok(Out::Removed(execute(&sql.revoke_all, params![user, except, now])? as u64))
        }
        Op::TryLease { id, token, ttl_ms } => leases::take(conn, sql, &id, &token, ttl_ms, now)
            .map(Out::Leased)
            .map_err(|err| StoreError::backend("taking a session lease in SQLite", err)),
        Op::ReleaseLease { id, token } => leases::release(conn, sql, &id, &token)
            .map(|()| Out::Done)
            .map_err(|err| StoreError::backend("releasing a session lease in SQLite", err)),
        Op::DeleteExpired { now, limit } => {
            let records = execute(&sql.delete_expired, params![now, limit])? as u64;
            let leases = leases::sweep(conn, sql, now, limit).map_err(write_error)?;
            Ok(Out::Swept { records, leases })
        }
        Op::Get { id } => Ok(Out::Row(patch::read_raw(conn, sql, &id, now).map_err(read_error)?)),
        Op::SessionsOf { user } => Ok(Out::Rows(listing::sessions_of(conn, sql, &user, now).map_err(read_error)?)),
        Op::Scan { after, limit } => Ok(Out::Rows(listing::scan(conn, sql, &after, limit, now).map_err(read_error)?)),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use rusqlite::OptionalExtension;

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
        Op::Set { id: id.to_owned(), json: json.to_owned(), user: None, expires_at: None }
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

    fn update(id: &str, changes: Changes) -> Op {
        Op::Update { id: id.to_owned(), changes, expires_at: None }
    }

    fn rename(from: &str, to: &str, changes: Changes) -> Op {
        Op::Rename { from: from.to_owned(), to: to.to_owned(), changes, expires_at: None }
    }

    fn refused(result: &Result<Out, StoreError>) -> Option<&sessionkit::PatchError> {
        match result {
            Err(StoreError::Refused(err)) => Some(err),
            _ => None,
        }
    }

    #[test]
    fn refused_patches_and_renames_roll_back_alone_and_the_rest_of_the_batch_commits() {
        use sessionkit::PatchError;
        use sessionkit::lease::LeaseToken;

        let dir = tempfile::tempdir().expect("tempdir");
        let mut writer = writer(dir.path());
        writer.commit(vec![set("u", r#"{"n":1,"s":"x"}"#), set("r", r#"{"k":"text"}"#)]).expect("seed");
        let mut not_an_integer = Changes::new();
        not_an_integer.set("m", serde_json::json!(1));
        not_an_integer.increment("s", 1).expect("increment");
        let mut too_large = Changes::new();
        too_large.push("items", serde_json::json!("0123456789"), None).expect("push");
        too_large.limit_size(20);
        let mut lost = Changes::new();
        lost.set("m", serde_json::json!(2));
        lost.fence(LeaseToken::generate());
        let mut increment = Changes::new();
        increment.increment("n", 1).expect("increment");
        let mut rename_not_an_integer = Changes::new();
        rename_not_an_integer.increment("k", 1).expect("increment");
        // A valid patch, but a trigger refuses the delete of `r` after the
        // insert under the new key happened: the insert must be undone.
        writer
            .conn
            .execute_batch(
                "CREATE TRIGGER keep_r BEFORE DELETE ON t WHEN old.id = 'r' BEGIN SELECT RAISE(ABORT, 'r is kept'); END",
            )
            .expect("trigger");
        let mut rename_fine = Changes::new();
        rename_fine.set("moved", serde_json::json!(true));

        let results = writer
            .commit(vec![
                update("u", not_an_integer),
                update("u", too_large),
                update("u", lost.clone()),
                rename("r", "r2", lost),
                rename("r", "r3", rename_not_an_integer),
                rename("r", "r4", rename_fine),
                update("u", increment),
                set("c", "{}"),
            ])
            .expect("the batch commits");
        assert!(matches!(refused(&results[0]), Some(PatchError::NotAnInteger { .. })), "{:?}", results[0]);
        assert!(matches!(refused(&results[1]), Some(PatchError::TooLarge { limit: 20, .. })), "{:?}", results[1]);
        assert_eq!(refused(&results[2]), Some(&PatchError::LeaseLost));
        assert_eq!(refused(&results[3]), Some(&PatchError::LeaseLost));
        assert!(matches!(refused(&results[4]), Some(PatchError::NotAnInteger { .. })), "{:?}", results[4]);
        let cause = results[5].as_ref().err().and_then(std::error::Error::source).map(ToString::to_string);
        assert!(cause.is_some_and(|cause| cause.contains("r is kept")), "{:?}", results[5]);
        assert!(matches!(results[6], Ok(Out::Updated(UpdateOutcome::Applied))), "{:?}", results[6]);
        assert!(matches!(results[7], Ok(Out::Done)));
        assert_eq!(
            stored(dir.path(), &["u", "r", "r2", "r3", "r4", "c"]),
            [
                Some(r#"{"n":2,"s":"x"}"#.to_owned()),
                Some(r#"{"k":"text"}"#.to_owned()),
                None,
                None,
                None,
                Some("{}".to_owned())
            ],
            "only the refused writes are missing"
        );
    }

    #[test]
    fn every_write_acknowledged_in_a_batch_that_fills_the_database_is_committed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut writer = writer(dir.path());
        // Room for a few pages of sessions beyond the schema's own.
        let schema: i64 = writer.conn.query_row("PRAGMA page_count", [], |row| row.get(0)).expect("page count");
        writer.conn.pragma_update(None, "max_page_count", schema + 4).expect("cap the file");
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
