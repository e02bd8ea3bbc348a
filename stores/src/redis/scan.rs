//! `scan`: paging through every live session with Redis's `SCAN`.
//!
//! Each page walks `SCAN <cursor> MATCH <prefix>{* TYPE hash` (leases are
//! strings and user indexes sorted sets, so the server skips both), keeps
//! the keys shaped exactly like a session hash (`<prefix>{<43 chars>}`),
//! and reads each with the `get` script, which drops rename markers,
//! tombstones and expired sessions. `SCAN` may answer more keys than the
//! page has room for; those that do not fit travel in the cursor and open
//! the next page, so no key is skipped and none is read twice by our own
//! doing.
//!
//! # Cursor text
//!
//! `1:<node>:<SCAN cursor, or "end">:<store key>,<store key>,...`: the
//! format version, the node being walked (`0` on a standalone server or
//! behind Sentinel; `<slot>.<node id>` on a Cluster, see [`walk`](super::walk)),
//! Redis's cursor on it, and the keys carried over. Carried keys are store
//! keys, the same handles the page hands out, so keep a saved cursor as
//! private as the listing itself. The start cursor is the empty text.
//!
//! # Exactly once, and what is left of it
//!
//! `SCAN` returns every key present from the start to the end of a full
//! iteration at least once; it can return a key twice when the keyspace's
//! hash table shrinks (a mass deletion) between pages, or while it is
//! being rehashed. Duplicates within one page are dropped here; across
//! pages they cannot be, without keeping every key seen, so the contract's
//! "never twice" holds except after such a shrink: a consumer that must
//! not see duplicates (a migration) should upsert, which is idempotent.
//! Keys written or deleted during the scan may or may not appear.
//!
//! # On a Redis Cluster
//!
//! `SCAN` walks one node, and its cursor is only valid on the node that
//! issued it: a scan walks the primaries one after another, in the order
//! of the lowest slot each serves. A failover of the primary being walked
//! makes the scan walk its promoted replica from the start (sessions of
//! that shard come twice, none is skipped); a resharding during a scan can
//! skip or repeat the sessions it moves. [`walk`](super::walk) has the
//! details.

use std::collections::{HashSet, VecDeque};

use futures_util::future::join_all;
use sessionkit::{ScanCursor, ScanPage, SessionStore as _, StoreError, StoreKey};

use super::walk::{self, Node};
use super::{RedisStore, keys};

const VERSION: &str = "1";
/// `SCAN` calls per page at most: a sparse keyspace gives short pages, not
/// long ones.
const MAX_SCANS_PER_PAGE: usize = 64;

/// Where a scan stands.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Position {
    node: Node,
    /// Redis's cursor on that node; `None` once every node is done.
    cursor: Option<u64>,
    /// Keys `SCAN` returned that the last page had no room for.
    carried: VecDeque<StoreKey>,
}

impl Position {
    fn parse(cursor: &ScanCursor) -> Result<Self, StoreError> {
        if cursor.is_start() {
            return Ok(Self { node: Node::FIRST, cursor: Some(0), carried: VecDeque::new() });
        }
        let invalid = || StoreError::config("not a RedisStore scan cursor");
        let mut parts = cursor.as_str().splitn(4, ':');
        let (Some(VERSION), Some(node), Some(position), Some(carried)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(invalid());
        };
        let node = Node::parse(node).ok_or_else(invalid)?;
        let cursor = match position {
            "end" => None,
            number => Some(number.parse().map_err(|_| invalid())?),
        };
        let carried = carried
            .split(',')
            .filter(|key| !key.is_empty())
            .map(|key| StoreKey::parse(key).ok_or_else(invalid))
            .collect::<Result<_, _>>()?;
        Ok(Self { node, cursor, carried })
    }

    fn to_cursor(&self) -> ScanCursor {
        let position = self.cursor.map_or_else(|| "end".to_owned(), |cursor| cursor.to_string());
        let carried: Vec<&str> = self.carried.iter().map(StoreKey::as_str).collect();
        ScanCursor::from_text(format!("{VERSION}:{}:{position}:{}", self.node.to_text(), carried.join(",")))
    }

    fn is_done(&self) -> bool {
        self.cursor.is_none() && self.carried.is_empty()
    }
}

impl RedisStore {
    pub(super) async fn scan_page(&self, cursor: &ScanCursor, limit: usize) -> Result<ScanPage, StoreError> {
        let limit = limit.max(1);
        let mut position = Position::parse(cursor)?;
        if !position.node.is_single() && !self.connection.is_cluster() {
            return Err(StoreError::config("a Redis Cluster's scan cursor, given to a store on one server"));
        }
        let pattern = keys::session_pattern(&self.prefix);
        let mut records = Vec::new();
        let mut seen: HashSet<StoreKey> = position.carried.iter().cloned().collect();
        let mut scans = 0;
        loop {
            // Read as many carried keys as the page has room for.
            while records.len() < limit && !position.carried.is_empty() {
                let take = (limit - records.len()).min(position.carried.len());
                let batch: Vec<StoreKey> = position.carried.drain(..take).collect();
                let reads = join_all(batch.iter().map(|key| self.get(key))).await;
                for (key, read) in batch.into_iter().zip(reads) {
                    if let Some(record) = read? {
                        records.push((key, record));
                    }
                }
            }
            if records.len() >= limit || scans >= MAX_SCANS_PER_PAGE {
                break;
            }
            let Some(at) = position.cursor else { break };
            let count = (limit - records.len()).clamp(10, 1_000);
            let found = self
                .connection
                .run("redis store: scanning sessions", |link| {
                    let (node, pattern) = (position.node.clone(), pattern.as_str());
                    async move { walk::scan(link, node, at, pattern, count).await }
                })
                .await?;
            scans += 1;
            position.node = found.node;
            position.cursor = found.cursor;
            for found in found.keys {
                if let Some(key) = keys::parse_session(&self.prefix, &found)
                    && seen.insert(key.clone())
                {
                    position.carried.push_back(key);
                }
            }
        }
        let next = (!position.is_done()).then(|| position.to_cursor());
        Ok(ScanPage { records, next })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_through_text() {
        let key = StoreKey::from_bytes([7; 32]);
        let other = StoreKey::from_bytes([8; 32]);
        for position in [
            Position { node: Node::FIRST, cursor: Some(0), carried: VecDeque::new() },
            Position {
                node: Node::parse(&format!("5461.{}", "ab".repeat(20))).expect("a Cluster node"),
                cursor: Some(123_456),
                carried: VecDeque::from([key.clone(), other]),
            },
            Position { node: Node::FIRST, cursor: None, carried: VecDeque::from([key]) },
        ] {
            let text = position.to_cursor();
            assert_eq!(Position::parse(&text).expect("parses"), position, "{}", text.as_str());
        }
        assert_eq!(
            Position::parse(&ScanCursor::start()).expect("start"),
            Position { node: Node::FIRST, cursor: Some(0), carried: VecDeque::new() }
        );
    }

    #[test]
    fn foreign_cursors_are_refused() {
        for text in ["x", "2:0:0:", "1:a:0:", "1:0:zz:", "1:0:0:not-a-key", "1:0:0", "1:16384:0:", "1:1.xyz:0:"] {
            assert!(Position::parse(&ScanCursor::from_text(text)).is_err(), "{text}");
        }
    }
}
