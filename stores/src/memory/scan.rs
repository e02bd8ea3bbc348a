//! Scans: the cursor's text, and one shard's share of a page.
//!
//! A scan visits the shards in turn and, within a shard, its live records
//! in the order of their keys' bytes: each page takes the smallest keys
//! past the cursor's, under the shard's read lock. A record that lives
//! throughout the scan is in its shard at every page, so it is returned by
//! the page whose range of keys covers it, and by no other: the ranges of
//! successive pages do not overlap. Records written or deleted meanwhile
//! appear if the scan reaches their key while they live. Writes never pay
//! for it: there is no ordered index to keep; instead each page costs a
//! pass over one shard (a few microseconds at 100,000 sessions).
//!
//! The cursor is `m1.<tag>.<shard>.<key>`: this store's random tag (16 hex
//! digits: the shards a key falls in differ between stores, so another
//! store's cursor is refused rather than misread), the shard the scan is
//! in, and the last key returned there, as its 43-character text (empty at
//! the shard's start).

use std::fmt;

use sessionkit::{ScanCursor, StoreError, StoreKey};

use super::record::Record;
use super::shard::{Key, Shard};

/// Where a scan stands.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Position {
    /// The shard the scan is in.
    pub(super) shard: usize,
    /// The last key returned in it; `None` at its start.
    pub(super) after: Option<Key>,
}

impl Position {
    /// Reads `cursor`, which `tag`'s store issued for its `shards` shards.
    pub(super) fn parse(cursor: &ScanCursor, tag: u64, shards: usize) -> Result<Self, StoreError> {
        if cursor.is_start() {
            return Ok(Self { shard: 0, after: None });
        }
        let invalid = || StoreError::backend("memory store: resuming a scan", InvalidCursor);
        let mut parts = cursor.as_str().split('.');
        let (Some("m1"), Some(cursor_tag), Some(shard), Some(after), None) =
            (parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(invalid());
        };
        if u64::from_str_radix(cursor_tag, 16).ok() != Some(tag) || cursor_tag.len() != 16 {
            return Err(invalid());
        }
        let shard = shard.parse::<usize>().ok().filter(|&shard| shard < shards).ok_or_else(invalid)?;
        let after = match after {
            "" => None,
            key => Some(*StoreKey::parse(key).ok_or_else(invalid)?.as_bytes()),
        };
        Ok(Self { shard, after })
    }

    /// The cursor's text, for `tag`'s store.
    pub(super) fn to_cursor(&self, tag: u64) -> ScanCursor {
        let after = self.after.map(StoreKey::from_bytes);
        ScanCursor::from_text(format!("m1.{tag:016x}.{}.{}", self.shard, after.as_ref().map_or("", StoreKey::as_str)))
    }
}

/// A cursor this store did not issue (or not in this form).
#[derive(Debug)]
struct InvalidCursor;

impl fmt::Display for InvalidCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the scan cursor was not issued by this MemoryStore")
    }
}

impl std::error::Error for InvalidCursor {}

/// Up to `want` of `shard`'s live records whose keys come after `after`,
/// in key order, with their keys and expiries; and whether they are all
/// that is left of the shard.
pub(super) fn take(
    shard: &Shard,
    after: Option<&Key>,
    want: usize,
    now_ms: i64,
) -> (Vec<(Key, Record, Option<i64>)>, bool) {
    let mut candidates: Vec<_> =
        shard.entries().filter(|entry| entry.is_live(now_ms) && after.is_none_or(|after| entry.key > *after)).collect();
    let rest = candidates.len() <= want;
    if !rest {
        candidates.select_nth_unstable_by_key(want - 1, |entry| entry.key);
        candidates.truncate(want);
    }
    candidates.sort_unstable_by_key(|entry| entry.key);
    (candidates.into_iter().map(|entry| (entry.key, entry.record.clone(), entry.expires_at_ms())).collect(), rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_foreign_ones_are_refused() {
        let key = sessionkit::testing::checks::key();
        for position in [Position { shard: 0, after: None }, Position { shard: 63, after: Some(*key.as_bytes()) }] {
            assert_eq!(Position::parse(&position.to_cursor(7), 7, 64).expect("parse"), position);
        }
        assert_eq!(Position::parse(&ScanCursor::start(), 7, 64).expect("start"), Position { shard: 0, after: None });
        let ours = Position { shard: 3, after: None }.to_cursor(7);
        assert!(Position::parse(&ours, 8, 64).is_err(), "another store's cursor");
        assert!(Position::parse(&ours, 7, 3).is_err(), "a shard this store does not have");
        for bad in ["x", "m1.0000000000000007.1", "m1.0000000000000007.1.short", "m1.7.1.", "m1.0000000000000007.-1."] {
            assert!(Position::parse(&ScanCursor::from_text(bad), 7, 64).is_err(), "{bad:?}");
        }
    }
}
