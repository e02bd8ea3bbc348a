//! Filling the user column of a table upgraded from the first layout, from
//! the data each row already holds.
//!
//! In Rust rather than in SQL: the user is read exactly as every write
//! reads it ([`reserved::user_of`] on the decoded data), whatever the data
//! holds. PostgreSQL's JSONB, the only way to read JSON in SQL, refuses the
//! escape `\u0000` anywhere in a document, which session data may contain
//! (the shipped SQL upgrade works around it for teams that run it
//! themselves). In batches, each its own short transaction that locks the
//! rows it reads, so that app servers still on the previous version keep
//! serving, and a row written meanwhile is read as written.

use sqlx::{Connection, PgConnection};

use super::row::user_column;
use super::table::Sql;

/// Rows read and written per transaction.
const BATCH: i64 = 1_000;

/// Fills the user column of every row whose data names a user; returns how
/// many rows it filled.
pub(super) async fn users(conn: &mut PgConnection, sql: &Sql) -> Result<u64, sqlx::Error> {
    let mut after = String::new();
    let mut filled = 0;
    loop {
        let mut tx = conn.begin().await?;
        let rows: Vec<(String, Option<Vec<u8>>, Option<String>)> =
            sqlx::query_as(&sql.backfill_batch).bind(&after).bind(BATCH).fetch_all(&mut *tx).await?;
        let (mut keys, mut users) = (Vec::new(), Vec::new());
        for (key, data, stored) in &rows {
            let user = data.as_deref().and_then(user_of);
            if user.as_deref() != stored.as_deref() {
                keys.push(key.clone());
                users.push(user);
            }
        }
        if !keys.is_empty() {
            let done = sqlx::query(&sql.backfill_write).bind(&keys).bind(&users).execute(&mut *tx).await?;
            filled += done.rows_affected();
        }
        tx.commit().await?;
        match rows.last() {
            Some((last, _, _)) if rows.len() == BATCH.unsigned_abs() as usize => after.clone_from(last),
            _ => return Ok(filled),
        }
    }
}

/// The user column's value for stored data: its user, or `None` when it
/// has none, does not decode (such a row reads as absent), or names a user
/// the column cannot hold (U+0000; logged).
fn user_of(data: &[u8]) -> Option<String> {
    let data: sessionkit::SessionMap = serde_json::from_slice(data).ok()?;
    match user_column(&data) {
        Ok(user) => user.map(str::to_owned),
        Err(_) => {
            tracing::warn!(
                "PostgreSQL session store: a session's user name holds U+0000, which PostgreSQL text cannot; \
                 it is left out of the user index"
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use sessionkit::reserved;

    use super::*;

    #[test]
    fn the_user_is_read_as_writes_read_it() {
        assert_eq!(user_of(br#"{"__sessionkit.user":"ada","a":"\u0000"}"#).as_deref(), Some("ada"));
        assert_eq!(user_of(br#"{"a":1}"#), None);
        assert_eq!(user_of(br#"{"__sessionkit.user":7}"#), None, "a user that is not a string is none");
        assert_eq!(user_of(br#"{"x":{"__sessionkit.user":"evil"}}"#), None, "only the top level counts");
        assert_eq!(user_of(br#"{"__sessionkit.user":"a\u0000b"}"#), None, "text cannot hold U+0000");
        assert_eq!(user_of(b"\xff{"), None);
        assert_eq!(user_of(b"[1]"), None);
        assert_eq!(reserved::USER, "__sessionkit.user", "the SQL upgrade looks for this key");
    }
}
