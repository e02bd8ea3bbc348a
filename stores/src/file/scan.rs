//! `scan`: paging through the live sessions of a directory in the order of
//! their store keys.
//!
//! A cursor is `f1.<last key looked at>`: the next page starts after it.
//! Keys only ever come and go (a file is never renamed to another session
//! file name but by `rename`, whose target is a fresh key), so a page that
//! starts after a key returns no key twice, and a session that lives
//! throughout the scan is found on the page whose range holds its key.
//! Each page lists the directory once (names only) and reads the files of
//! at most the records it returns, plus the expired or damaged ones it
//! skips on the way.

use std::fmt;
use std::fs;

use sessionkit::{ScanCursor, ScanPage, SessionRecord, StoreError, StoreKey, expiry};

use super::{Inner, now_ms, session_file_id};

const PREFIX: &str = "f1.";

/// Where a cursor resumes: after this key, or from the start.
fn parse(cursor: &ScanCursor) -> Result<Option<StoreKey>, StoreError> {
    if cursor.is_start() {
        return Ok(None);
    }
    let key = cursor.as_str().strip_prefix(PREFIX).and_then(StoreKey::parse);
    key.map(Some).ok_or_else(|| StoreError::backend("file store: resuming a scan", InvalidCursor))
}

fn cursor_after(key: &StoreKey) -> ScanCursor {
    ScanCursor::from_text(format!("{PREFIX}{key}"))
}

#[derive(Debug)]
struct InvalidCursor;

impl fmt::Display for InvalidCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the scan cursor was not issued by a FileStore")
    }
}

impl std::error::Error for InvalidCursor {}

impl Inner {
    /// One page of at most `limit` (at least one) live records after
    /// `cursor`.
    pub(super) fn scan(&self, cursor: &ScanCursor, limit: usize) -> Result<ScanPage, StoreError> {
        let after = parse(cursor)?;
        let limit = limit.max(1);
        let listing = |err| StoreError::backend("file store: listing the session directory", err);
        let mut keys = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(listing)? {
            let entry = entry.map_err(listing)?;
            if let Some(key) = entry.file_name().to_str().and_then(session_file_id)
                && after.as_ref().is_none_or(|after| key > *after)
            {
                keys.push(key);
            }
        }
        keys.sort_unstable();
        let now = now_ms();
        let mut records = Vec::new();
        let mut keys = keys.into_iter();
        let mut last = None;
        for key in keys.by_ref() {
            if let Some(record) = self.read_live(&key, now)? {
                let expires_at = record.expires_at.map(expiry::from_unix_ms);
                records.push((key.clone(), SessionRecord::new(record.data, expires_at)));
            }
            last = Some(key);
            if records.len() == limit {
                break;
            }
        }
        let next = match last {
            Some(last) if keys.len() > 0 => Some(cursor_after(&last)),
            _ => None,
        };
        Ok(ScanPage { records, next })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_foreign_ones_are_refused() {
        let key = sessionkit::testing::checks::key();
        assert_eq!(parse(&cursor_after(&key)).expect("ours"), Some(key));
        assert_eq!(parse(&ScanCursor::start()).expect("start"), None);
        for bad in ["x", "f1.", "f1.short", "m1.0000000000000007.1.", "f2.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"]
        {
            assert!(parse(&ScanCursor::from_text(bad)).is_err(), "{bad:?}");
        }
    }
}
