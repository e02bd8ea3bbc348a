//! Reads of many rows: a user's sessions (the user index) and a scan of
//! every live session, in pages.
//!
//! Both run on a read connection when the store has them, and on the
//! writer otherwise; either way one statement reads one consistent
//! snapshot, and the rows come back raw, to be decoded off the engine's
//! thread.
//!
//! # Scans
//!
//! A scan pages through the primary key: each page is `id > cursor`, in id
//! order, and its cursor is the last id it read. A record that lives from
//! the scan's first page to its last has one id throughout, and the pages
//! cover the ids in disjoint, increasing ranges, so it is returned exactly
//! once, whatever is written or deleted meanwhile; a record written or
//! deleted during the scan is returned at most once.

use rusqlite::{Connection, params};
use sessionkit::{ScanCursor, ScanPage, SessionRecord, StoreKey};

use super::row::RawRow;
use super::table::Sql;

/// A row of a listing: its id's text and its undecoded columns.
pub(super) type Listed = (String, RawRow);

fn rows(statement: &mut rusqlite::Statement<'_>, params: impl rusqlite::Params) -> rusqlite::Result<Vec<Listed>> {
    statement.query_map(params, |row| Ok((row.get(2)?, RawRow::from_row(row)?)))?.collect()
}

/// The rows of `user`'s live sessions, by the user index.
pub(super) fn sessions_of(conn: &Connection, sql: &Sql, user: &str, now: i64) -> rusqlite::Result<Vec<Listed>> {
    rows(&mut *conn.prepare_cached(&sql.sessions_of)?, params![user, now])
}

/// At most `limit` live rows whose id comes after `after`, in id order.
pub(super) fn scan(conn: &Connection, sql: &Sql, after: &str, limit: u32, now: i64) -> rusqlite::Result<Vec<Listed>> {
    rows(&mut *conn.prepare_cached(&sql.scan)?, params![after, now, limit])
}

/// The rows as records with their keys. Rows that do not decode (logged by
/// [`RawRow::decode`]) or whose id is not a store key (written by someone
/// else) are left out, as `get` would not find them either.
fn decoded(rows: Vec<Listed>, table: &str) -> impl Iterator<Item = (StoreKey, SessionRecord)> + '_ {
    rows.into_iter().filter_map(move |(id, raw)| {
        let Some(key) = StoreKey::parse(&id) else {
            tracing::warn!(table, "SQLite session store: a row's id is not a session store key; skipping it");
            return None;
        };
        raw.decode(table).map(|record| (key, record))
    })
}

/// `user`'s sessions from their rows. The data is the truth: a row listed
/// by the index whose data names another user (written by something else
/// than this store) is left out.
pub(super) fn decode_sessions(rows: Vec<Listed>, table: &str, user: &str) -> Vec<(StoreKey, SessionRecord)> {
    decoded(rows, table).filter(|(_, record)| record.user() == Some(user)).collect()
}

/// A scan's page from its rows: the next page starts after the last id read
/// (corrupt rows included, so they are not read again), and there is none
/// when fewer rows than asked for were left.
pub(super) fn decode_page(rows: Vec<Listed>, table: &str, limit: u32) -> ScanPage {
    let full = rows.len() >= limit as usize;
    let next = match rows.last() {
        Some((last, _)) if full => Some(ScanCursor::from_text(last.clone())),
        _ => None,
    };
    ScanPage { records: decoded(rows, table).collect(), next }
}
