//! The read-modify-writes: `update` and `rename`.
//!
//! Both run on the only writing connection, inside the batch's transaction
//! and their own savepoint, so nothing can change the row between the read
//! and the write, and a refused patch ([`StoreError::Refused`]) rolls back
//! alone while the rest of the batch commits. The patch is applied with
//! [`Changes::apply`] (sets, removes, clears, increments, pushes, the size
//! limit); the fence, if any, is checked first ([`leases::check_fence`]).
//! Every write keeps the `user` column equal to the user of the data it
//! writes, in the same statement, so the user index never disagrees with a
//! committed row; an `update` that keeps the user leaves the column out of
//! its `SET`, which spares SQLite the update of the index.

use rusqlite::{Connection, OptionalExtension, params};
use sessionkit::{Changes, SessionMap, SessionRecord, StoreError, UpdateOutcome, reserved};

use super::leases;
use super::row::RawRow;
use super::table::Sql;

/// The live, decodable record under `id`, with its `user` column. A corrupt
/// row is absent to every reader, so it is absent here too (and left as it
/// is, logged by `decode`).
fn live_record(
    conn: &Connection,
    sql: &Sql,
    table: &str,
    id: &str,
    now: i64,
) -> Result<Option<(SessionRecord, Option<String>)>, StoreError> {
    let row = conn
        .prepare_cached(&sql.get_for_update)
        .and_then(|mut statement| {
            statement
                .query_row(params![id, now], |row| {
                    // Anything but text (a value written by someone else) is
                    // no user, and is replaced by the write.
                    let user = row.get_ref(2)?.as_str_or_null().ok().flatten().map(str::to_owned);
                    Ok((RawRow::from_row(row)?, user))
                })
                .optional()
        })
        .map_err(read_error)?;
    Ok(row.and_then(|(raw, user)| raw.decode(table).map(|record| (record, user))))
}

/// The live row under `id`, undecoded.
pub(super) fn read_raw(conn: &Connection, sql: &Sql, id: &str, now: i64) -> rusqlite::Result<Option<RawRow>> {
    conn.prepare_cached(&sql.get)?.query_row(params![id, now], RawRow::from_row).optional()
}

/// The patched data and its encoding; a patch that cannot apply is refused.
fn patched(changes: &Changes, data: SessionMap) -> Result<(String, Option<String>), StoreError> {
    let data = changes.applied_to(data).map_err(StoreError::Refused)?;
    let json = serde_json::to_string(&data).map_err(StoreError::Encode)?;
    Ok((json, reserved::user_of(&data).map(str::to_owned)))
}

/// Applies `changes` to the live record under `id` and sets its expiry.
pub(super) fn update(
    conn: &Connection,
    sql: &Sql,
    table: &str,
    (id, changes, expires_at): (&str, &Changes, Option<i64>),
    now: i64,
) -> Result<UpdateOutcome, StoreError> {
    leases::check_fence(conn, sql, id, changes, now)?;
    let Some((record, indexed)) = live_record(conn, sql, table, id, now)? else {
        return Ok(UpdateOutcome::Missing);
    };
    let (json, user) = patched(changes, record.data)?;
    // Most updates keep the user: then the index is left alone. A column
    // that disagrees with the data (written by an earlier version) is
    // repaired here.
    if user == indexed {
        let mut statement = conn.prepare_cached(&sql.rewrite_data).map_err(write_error)?;
        statement.execute(params![id, json, expires_at]).map_err(write_error)?;
    } else {
        let mut statement = conn.prepare_cached(&sql.rewrite).map_err(write_error)?;
        statement.execute(params![id, json, expires_at, user]).map_err(write_error)?;
    }
    Ok(UpdateOutcome::Applied)
}

/// Moves the live record under `from` to `to`, patched, with its new
/// expiry; the user index follows, as it is a column of the row. The lease
/// that fences the patch is the one on `from`, the session the request
/// holds.
pub(super) fn rename(
    conn: &Connection,
    sql: &Sql,
    table: &str,
    (from, to, changes, expires_at): (&str, &str, &Changes, Option<i64>),
    now: i64,
) -> Result<UpdateOutcome, StoreError> {
    if from == to {
        // "Moving" a record onto itself must not delete it.
        return update(conn, sql, table, (from, changes, expires_at), now);
    }
    leases::check_fence(conn, sql, from, changes, now)?;
    let Some((record, _)) = live_record(conn, sql, table, from, now)? else {
        return Ok(UpdateOutcome::Missing);
    };
    let (json, user) = patched(changes, record.data)?;
    conn.prepare_cached(&sql.upsert)
        .and_then(|mut statement| statement.execute(params![to, json, expires_at, user]))
        .and_then(|_| conn.prepare_cached(&sql.delete)?.execute(params![from]))
        .map_err(write_error)?;
    Ok(UpdateOutcome::Applied)
}

pub(super) fn write_error(err: rusqlite::Error) -> StoreError {
    StoreError::backend("writing a session to SQLite", err)
}

pub(super) fn read_error(err: rusqlite::Error) -> StoreError {
    StoreError::backend("reading a session from SQLite", err)
}
