//! Bringing a sessions table of the previous layout up to date: the `user`
//! column that the user index needs.
//!
//! Tables written before the user index have `id`, `data` and `expires_at`
//! only. On open, such a table gets the column (`ALTER TABLE ... ADD COLUMN
//! "user" TEXT`) and every row's user is filled in from its JSON data with
//! SQLite's JSON functions (built into the bundled SQLite), both in one
//! `IMMEDIATE` transaction: another process opening the same file at the same
//! moment waits for it and then finds the column there, and a crash midway
//! leaves the table as it was. Rows whose data is not JSON text keep a `NULL`
//! user (they read as absent anyway).
//!
//! A table that does not accept the previous layout's statements is not a
//! session table: it is reported and left alone, never altered.

use rusqlite::{Connection, Transaction, TransactionBehavior};
use sessionkit::StoreError;

use super::setup::setup_error;
use super::table::{Sql, Table};

/// Adds and fills the `user` column if `table` lacks it. `foreign` turns
/// the error of a statement the table does not accept into the report that
/// it is not a session table.
pub(super) fn add_user_column(
    conn: &Connection,
    table: &Table,
    sql: &Sql,
    foreign: impl Fn(rusqlite::Error) -> StoreError,
) -> Result<(), StoreError> {
    let name = table.name();
    let failed = |err| setup_error(format!("cannot add the user column to the session table {name:?}"), err);
    if has_user_column(conn, table, sql).map_err(failed)? {
        return Ok(());
    }
    for query in &sql.legacy {
        conn.prepare(query).map_err(&foreign)?;
    }
    // Unchecked: the connection is borrowed, and the store made sure it is
    // not inside a transaction. IMMEDIATE: the write lock before the check.
    let tx = Transaction::new_unchecked(conn, TransactionBehavior::Immediate).map_err(failed)?;
    // Again, under the write lock: another process may have migrated the
    // table while this one waited for it.
    if has_user_column(&tx, table, sql).map_err(failed)? {
        return Ok(());
    }
    tx.execute(&sql.add_user_column, []).map_err(failed)?;
    let filled = tx.execute(&sql.backfill_users, []).map_err(failed)?;
    tx.commit().map_err(failed)?;
    tracing::info!(table = name, rows = filled, "SQLite session store: added the user column to a session table");
    Ok(())
}

fn has_user_column(conn: &Connection, table: &Table, sql: &Sql) -> rusqlite::Result<bool> {
    conn.query_row(&sql.has_user_column, [table.name()], |row| row.get::<_, i64>(0)).map(|n| n > 0)
}
