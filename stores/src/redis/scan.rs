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
//! format version, the node being walked (always 0 on a standalone server
//! or behind Sentinel), Redis's cursor on it, and the keys carried over.
//! Carried keys are store keys, the same handles the page hands out, so
//! keep a saved cursor as private as the listing itself. The start cursor
//! is the empty text.
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
//! issued it. The cursor's `<node>` numbers the primaries in the order of
//! the slots they serve (an order a failover keeps), so that a scan walks
//! each in turn: `SCAN` on node 0 to its end, then node 1 from cursor 0,
//! and so on. That walk needs a connection that can address one primary
//! at a time; until the store's connection offers it, a scan on a server
//! in cluster mode fails with [`StoreError::Unsupported`] rather than send
//! `SCAN` to whichever node the client picks, which would skip sessions
//! silently. A resharding during a scan can skip or repeat the keys it
//! moves.

use std::collections::{HashSet, VecDeque};

use futures_util::future::join_all;
use sessionkit::{ScanCursor, ScanPage, SessionStore as _, StoreError, StoreKey};

use super::{RedisStore, keys};

const VERSION: &str = "1";
/// `SCAN` calls per page at most: a sparse keyspace gives short pages, not
/// long ones.
const MAX_SCANS_PER_PAGE: usize = 64;

/// Where a scan stands.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Position {
    node: u32,
    /// Redis's cursor on that node; `None` once the node is done.
    cursor: Option<u64>,
    /// Keys `SCAN` returned that the last page had no room for.
    carried: VecDeque<StoreKey>,
}

impl Position {
    fn parse(cursor: &ScanCursor) -> Result<Self, StoreError> {
        if cursor.is_start() {
            return Ok(Self { node: 0, cursor: Some(0), carried: VecDeque::new() });
        }
        let invalid = || StoreError::config("not a RedisStore scan cursor");
        let mut parts = cursor.as_str().splitn(4, ':');
        let (Some(VERSION), Some(node), Some(position), Some(carried)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(invalid());
        };
        let node = node.parse().map_err(|_| invalid())?;
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
        ScanCursor::from_text(format!("{VERSION}:{}:{position}:{}", self.node, carried.join(",")))
    }

    fn is_done(&self) -> bool {
        self.cursor.is_none() && self.carried.is_empty()
    }
}

impl RedisStore {
    pub(super) async fn scan_page(&self, cursor: &ScanCursor, limit: usize) -> Result<ScanPage, StoreError> {
        let limit = limit.max(1);
        let mut position = Position::parse(cursor)?;
        self.refuse_cluster_scans().await?;
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
            let (next, found) = self
                .connection
                .run("redis store: scanning sessions", |mut connection| {
                    let mut scan = ::redis::cmd("SCAN");
                    scan.arg(at).arg("MATCH").arg(&pattern).arg("COUNT").arg(count).arg("TYPE").arg("hash");
                    async move { scan.query_async::<(u64, Vec<Vec<u8>>)>(&mut connection).await }
                })
                .await?;
            scans += 1;
            position.cursor = (next != 0).then_some(next);
            for found in found {
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

impl RedisStore {
    /// Fails on a server in cluster mode (see the [module docs](self)).
    async fn refuse_cluster_scans(&self) -> Result<(), StoreError> {
        let info = self
            .connection
            .run("redis store: checking for cluster mode", |mut connection| async move {
                ::redis::cmd("INFO").arg("cluster").query_async::<String>(&mut connection).await
            })
            .await?;
        if info.lines().any(|line| line.trim() == "cluster_enabled:1") {
            return Err(StoreError::unsupported("scanning a Redis Cluster node by node"));
        }
        Ok(())
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
            Position { node: 0, cursor: Some(0), carried: VecDeque::new() },
            Position { node: 2, cursor: Some(123_456), carried: VecDeque::from([key.clone(), other]) },
            Position { node: 0, cursor: None, carried: VecDeque::from([key]) },
        ] {
            let text = position.to_cursor();
            assert_eq!(Position::parse(&text).expect("parses"), position, "{}", text.as_str());
        }
        assert_eq!(
            Position::parse(&ScanCursor::start()).expect("start"),
            Position { node: 0, cursor: Some(0), carried: VecDeque::new() }
        );
    }

    #[test]
    fn foreign_cursors_are_refused() {
        for text in ["x", "2:0:0:", "1:a:0:", "1:0:zz:", "1:0:0:not-a-key", "1:0:0"] {
            assert!(Position::parse(&ScanCursor::from_text(text)).is_err(), "{text}");
        }
    }
}
