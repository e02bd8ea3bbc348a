//! The read side of a [`RedbStore`](super::RedbStore): a record, a user's
//! listing and a scan page, each in one read transaction (a snapshot of the
//! last commit), beside the writer.
//!
//! Every read checks the record's own expiry, so an expired record is never
//! returned whether or not a sweep ran; a listing also checks the record's
//! own user, so an index entry that is stale (see [`super::apply`]) never
//! shows a session under the wrong user.

use std::ops::Bound;

use redb::{ReadTransaction, StorageError, TableError};
use sessionkit::{ScanCursor, ScanPage, SessionRecord, StoreError, StoreKey, expiry, reserved};

use super::codec::Stored;
use super::{Key, Tables, log_corrupt, now_ms};

/// How many records a scan page may skip (expired or corrupt ones) beyond
/// its limit, so that a page over a large backlog of expired records still
/// answers quickly; such a page holds fewer records than asked for.
const SCAN_SKIP_BUDGET: usize = 4_096;

fn opening(what: &'static str) -> impl Fn(TableError) -> StoreError {
    move |err| StoreError::backend(what, err)
}

fn reading(what: &'static str) -> impl Fn(StorageError) -> StoreError {
    move |err| StoreError::backend(what, err)
}

/// The record in `bytes` if it is live at `now`: `None` when expired or
/// corrupt (logged).
fn decode_live(bytes: &[u8], now: i64) -> Option<SessionRecord> {
    let decoded = Stored::parse(bytes).and_then(|stored| {
        if stored.is_live(now) { stored.data().map(|data| Some((data, stored.expires_at_ms))) } else { Ok(None) }
    });
    match decoded {
        Ok(record) => record.map(|(data, at)| SessionRecord::new(data, at.map(expiry::from_unix_ms))),
        Err(err) => {
            log_corrupt(&err);
            None
        }
    }
}

/// The live record under `key`, if any.
pub(super) fn record(txn: &ReadTransaction, tables: &Tables, key: &Key) -> Result<Option<SessionRecord>, StoreError> {
    let table = txn.open_table(tables.sessions()).map_err(opening("redb store: opening the sessions table"))?;
    let guard = table.get(key).map_err(reading("redb store: reading a session"))?;
    Ok(guard.and_then(|guard| decode_live(guard.value(), now_ms())))
}

/// Every live session of `user`, in key order.
pub(super) fn sessions_of(
    txn: &ReadTransaction,
    tables: &Tables,
    user: &str,
) -> Result<Vec<(StoreKey, SessionRecord)>, StoreError> {
    let users = txn.open_table(tables.users()).map_err(opening("redb store: opening the user index"))?;
    let sessions = txn.open_table(tables.sessions()).map_err(opening("redb store: opening the sessions table"))?;
    let now = now_ms();
    let mut listed = Vec::new();
    let entries = users
        .range::<(&str, &Key)>((user, &[0; 32])..=(user, &[u8::MAX; 32]))
        .map_err(reading("redb store: reading the user index"))?;
    for entry in entries {
        let key = *entry.map_err(reading("redb store: reading the user index"))?.0.value().1;
        let Some(guard) = sessions.get(&key).map_err(reading("redb store: reading a session"))? else {
            continue;
        };
        if let Some(record) =
            decode_live(guard.value(), now).filter(|record| reserved::user_of(&record.data) == Some(user))
        {
            listed.push((StoreKey::from_bytes(key), record));
        }
    }
    Ok(listed)
}

/// Reads a cursor this store issued: empty for the first page, else the
/// text form of the last key the previous page looked at.
pub(super) fn cursor_key(cursor: &ScanCursor) -> Result<Option<Key>, StoreError> {
    if cursor.is_start() {
        return Ok(None);
    }
    // The text is not repeated: a cursor names a store key.
    StoreKey::parse(cursor.as_str()).map(|key| Some(*key.as_bytes())).ok_or_else(|| {
        StoreError::config("not a RedbStore scan cursor (the text of a store key, as a previous page gave it)")
    })
}

/// One page of a scan: up to `limit` live records with keys after `after`,
/// in key order.
///
/// Keys are unique and every page starts strictly after the last key the
/// previous one looked at, so a record that lives from the first page to
/// the last is returned exactly once, whatever is written meanwhile (each
/// page reads its own snapshot).
pub(super) fn scan_page(
    txn: &ReadTransaction,
    tables: &Tables,
    after: Option<Key>,
    limit: usize,
) -> Result<ScanPage, StoreError> {
    let limit = limit.max(1);
    let table = txn.open_table(tables.sessions()).map_err(opening("redb store: opening the sessions table"))?;
    let read = reading("redb store: scanning sessions");
    let lower = match &after {
        Some(key) => Bound::Excluded(key),
        None => Bound::Unbounded,
    };
    let mut entries = table.range::<&Key>((lower, Bound::Unbounded)).map_err(&read)?;
    let now = now_ms();
    let budget = limit.saturating_add(SCAN_SKIP_BUDGET);
    let (mut records, mut last, mut examined) = (Vec::new(), None, 0);
    while records.len() < limit && examined < budget {
        let Some(entry) = entries.next() else {
            return Ok(ScanPage { records, next: None });
        };
        let (key, value) = entry.map_err(&read)?;
        let key = *key.value();
        examined += 1;
        last = Some(key);
        if let Some(record) = decode_live(value.value(), now) {
            records.push((StoreKey::from_bytes(key), record));
        }
    }
    let more = entries.next().transpose().map_err(&read)?.is_some();
    let next = last.filter(|_| more).map(|key| ScanCursor::from_text(StoreKey::from_bytes(key).as_str()));
    Ok(ScanPage { records, next })
}
