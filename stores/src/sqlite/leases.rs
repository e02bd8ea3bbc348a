//! Exclusive leases, in the `<table>_leases` table: one row per key while
//! someone holds (or held, until the sweep) its lease.
//!
//! The row is the truth, so leases exclude across every process that opens
//! the database file: each process's writer runs these statements inside
//! its write transaction, and SQLite's write lock lets one writer at a time
//! in. Taking a lease is one statement, an insert that takes over the row
//! only if its lease ran out:
//!
//! ```sql
//! INSERT INTO "t_leases" (id, token, expires_at) VALUES (?1, ?2, ?3)
//! ON CONFLICT (id) DO UPDATE SET token = excluded.token, expires_at = excluded.expires_at
//! WHERE "t_leases".expires_at <= ?4 -- now
//! ```
//!
//! and it was granted when it changed a row. Releasing deletes the row if
//! the token still holds it. A fenced write checks, in the same savepoint as
//! the write and so under the same lock, that its token's lease is live.
//! Instants come from the clock of the process that runs the statement:
//! processes sharing a file share a machine, and so a clock.

use rusqlite::{Connection, OptionalExtension, params};
use sessionkit::{Changes, PatchError, StoreError};

use super::table::Sql;

/// Grants the lease on `id` to `token` until `now + ttl_ms` if nobody holds
/// a live one; returns its expiry when granted.
pub(super) fn take(
    conn: &Connection,
    sql: &Sql,
    id: &str,
    token: &str,
    ttl_ms: i64,
    now: i64,
) -> rusqlite::Result<Option<i64>> {
    let expires_at = now.saturating_add(ttl_ms);
    let changed = conn.prepare_cached(&sql.lease_take)?.execute(params![id, token, expires_at, now])?;
    Ok((changed > 0).then_some(expires_at))
}

/// Ends the lease on `id` if `token` holds it.
pub(super) fn release(conn: &Connection, sql: &Sql, id: &str, token: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(&sql.lease_release)?.execute(params![id, token])?;
    Ok(())
}

/// Removes up to `limit` leases that ran out by `now`; returns how many.
pub(super) fn sweep(conn: &Connection, sql: &Sql, now: i64, limit: u32) -> rusqlite::Result<u64> {
    Ok(conn.prepare_cached(&sql.lease_sweep)?.execute(params![now, limit])? as u64)
}

/// Refuses `changes` with [`PatchError::LeaseLost`] if it is fenced by a
/// lease on `id` that is not live at `now`. Unfenced patches pass.
pub(super) fn check_fence(
    conn: &Connection,
    sql: &Sql,
    id: &str,
    changes: &Changes,
    now: i64,
) -> Result<(), StoreError> {
    let Some(token) = changes.lease() else {
        return Ok(());
    };
    let held = conn
        .prepare_cached(&sql.lease_held)
        .and_then(|mut statement| statement.query_row(params![id, token.to_string(), now], |_| Ok(())).optional())
        .map_err(|err| StoreError::backend("checking a session lease in SQLite", err))?;
    match held {
        Some(()) => Ok(()),
        None => Err(StoreError::Refused(PatchError::LeaseLost)),
    }
}
