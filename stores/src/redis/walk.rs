//! One `SCAN` call of a [`scan`](super::scan), on the one server or on one
//! primary of a Redis Cluster, and the order in which a scan walks a
//! Cluster's primaries.
//!
//! # One node at a time
//!
//! `SCAN` reads one node's keyspace, and its cursor means something only
//! to the process that issued it: Redis orders its table by a hash whose
//! seed it draws at startup, so the same keys lie in another order on a
//! replica, or on the same node after a restart. On a Cluster a scan
//! therefore walks the primaries one after another, ordered by the lowest
//! slot each serves, and the cursor names the node it is on by that slot
//! and by the node's id:
//!
//! - Each `SCAN` goes to the primary of the node's slot, in one pipeline
//!   with `CLUSTER MYID` and `CLUSTER SLOTS`: the store learns which node
//!   ran it, and how that node sees the Cluster, from the same connection
//!   and the same moment.
//! - When a node's `SCAN` ends, the walk goes on with the primary whose
//!   lowest slot is the next higher one, from cursor 0. The order needs no
//!   list kept anywhere, and a failover keeps it (a promoted replica serves
//!   exactly its old primary's slots).
//! - When the node that answers for the slot is not the one the cursor
//!   names, and the cursor is past its start, that cursor means nothing
//!   there: the node that answers is walked from its start instead.
//! - When the node that answers does not serve the slot by its own account
//!   (the client fell back to a replica while the primary was unreachable,
//!   or its view of the Cluster is stale), the call is turned away as
//!   `TRYAGAIN`, which the [connection](super::connection) sends again
//!   within the store's timeout.
//!
//! # What a failover or a resharding does to a scan
//!
//! - **The primary being walked fails over.** The promoted replica is
//!   walked from its start: every session of that shard is returned, and
//!   those the old primary had already returned are returned once more. No
//!   session is skipped, except writes the failover itself lost
//!   (replication is asynchronous; see `wait_for_replicas`).
//! - **Another primary fails over.** Nothing changes: a node already walked
//!   is not walked again, and one not yet walked is found by its slot.
//! - **During the failover** (no primary for the slot yet, `CLUSTERDOWN`),
//!   a page is retried within the store's timeout, then fails with
//!   [`StoreError::Timeout`](sessionkit::StoreError::Timeout); its cursor
//!   stays valid, and asking again later goes on from there.
//! - **A resharding** moves slots, with their keys, between primaries: a
//!   key moved from a node not yet walked to one already walked is
//!   skipped, one moved the other way is returned twice; if the node being
//!   walked gives away its lowest slot, the slot's new owner is walked from
//!   its start in its place. A primary added with a lower first slot than
//!   the one being walked is not walked (its slots came from nodes that
//!   were, or will be, walked). The walk still ends: the slot that orders
//!   it only grows, except for one restart per change of owner.
//!
//! On one server (standalone, or the primary Sentinel names), a restart or
//! a Sentinel failover during a scan hands Redis a cursor from another
//! process: `SCAN` then may skip or repeat keys, and the store cannot tell.

use ::redis::{Cmd, ErrorKind, FromRedisValue, RedisError, RedisResult, ServerErrorKind, Value};

use super::link::Link;

/// Redis Cluster's number of hash slots.
const SLOTS: u16 = 16_384;

/// The node a scan is on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Node {
    /// On a Cluster, the lowest slot the node served when the walk reached
    /// it; 0 on one server.
    slot: u16,
    /// Its Cluster node id, once it has answered; never on one server.
    id: Option<String>,
}

impl Node {
    /// Where every scan starts: the one server, or the Cluster's primary
    /// of slot 0.
    pub(super) const FIRST: Node = Node { slot: 0, id: None };

    /// Whether this can be a node of a scan on one server.
    pub(super) fn is_single(&self) -> bool {
        *self == Self::FIRST
    }

    /// `<slot>` or `<slot>.<node id>`.
    pub(super) fn to_text(&self) -> String {
        match &self.id {
            Some(id) => format!("{}.{id}", self.slot),
            None => self.slot.to_string(),
        }
    }

    /// The inverse of [`to_text`](Self::to_text); `None` for anything else.
    pub(super) fn parse(text: &str) -> Option<Self> {
        let (slot, id) = match text.split_once('.') {
            Some((slot, id)) => (slot, Some(id)),
            None => (text, None),
        };
        let slot: u16 = slot.parse().ok().filter(|slot| *slot < SLOTS)?;
        // Node ids are 40 hex digits.
        let id = match id {
            Some(id) if id.len() == 40 && id.bytes().all(|b| b.is_ascii_hexdigit()) => Some(id.to_owned()),
            Some(_) => return None,
            None => None,
        };
        Some(Self { slot, id })
    }
}

/// What one `SCAN` call found, and where the walk goes on.
#[derive(Debug)]
pub(super) struct Found {
    pub(super) node: Node,
    /// The `SCAN` cursor on `node`; `None` once every node is done.
    pub(super) cursor: Option<u64>,
    pub(super) keys: Vec<Vec<u8>>,
}

/// One `SCAN <cursor> MATCH <pattern> COUNT <count> TYPE hash` on `node`.
pub(super) async fn scan(mut link: Link, node: Node, cursor: u64, pattern: &str, count: usize) -> RedisResult<Found> {
    if link.is_cluster() {
        scan_primary(link, node, cursor, pattern, count).await
    } else {
        let (next, keys) = scan_cmd(cursor, pattern, count).query_async::<(u64, Vec<Vec<u8>>)>(&mut link).await?;
        Ok(Found { node, cursor: (next != 0).then_some(next), keys })
    }
}

fn scan_cmd(cursor: u64, pattern: &str, count: usize) -> Cmd {
    let mut scan = ::redis::cmd("SCAN");
    // Leases are strings and user indexes sorted sets: the server skips both.
    scan.arg(cursor).arg("MATCH").arg(pattern).arg("COUNT").arg(count).arg("TYPE").arg("hash");
    scan
}

/// `SCAN` on a Cluster primary; see the [module docs](self).
async fn scan_primary(
    mut link: Link,
    mut node: Node,
    mut cursor: u64,
    pattern: &str,
    count: usize,
) -> RedisResult<Found> {
    // Twice at most: once more from the start when the node has changed.
    loop {
        let mut pipeline = ::redis::pipe();
        pipeline.cmd("CLUSTER").arg("MYID");
        pipeline.cmd("CLUSTER").arg("SLOTS");
        pipeline.add_command(scan_cmd(cursor, pattern, count));
        let replies = link.send_to_primary_of_slot(node.slot, pipeline).await?;
        let Ok([myid, slots, scanned]) = <[Value; 3]>::try_from(replies) else {
            return Err(unexpected("a pipeline of three commands got another number of replies"));
        };
        let answered: String = reply(myid)?;
        let primaries = Primaries::parse(reply(slots)?)?;
        if primaries.serving(node.slot) != Some(answered.as_str()) {
            return Err(RedisError::from((
                ErrorKind::Server(ServerErrorKind::TryAgain),
                "the node that answered for a slot does not serve it by its own account; the Cluster is changing",
                format!("slot {}", node.slot),
            )));
        }
        if cursor != 0 && node.id.as_deref() != Some(answered.as_str()) {
            tracing::info!(
                slot = node.slot,
                "the Cluster primary a scan was walking has changed (a failover or a resharding): \
                 walking the new one from its start, so some sessions are returned twice"
            );
            node.id = Some(answered);
            cursor = 0;
            continue;
        }
        let (next, keys): (u64, Vec<Vec<u8>>) = reply(scanned)?;
        node.id = Some(answered);
        return Ok(match (next, primaries.after(node.slot)) {
            (0, Some(following)) => Found { node: following, cursor: Some(0), keys },
            (0, None) => Found { node, cursor: None, keys },
            (next, _) => Found { node, cursor: Some(next), keys },
        });
    }
}

/// A reply from a pipeline: a server error as an error, anything else
/// converted.
fn reply<T: FromRedisValue>(value: Value) -> RedisResult<T> {
    match value {
        Value::ServerError(err) => Err(err.into()),
        value => Ok(::redis::from_redis_value(value)?),
    }
}

fn unexpected(what: &'static str) -> RedisError {
    RedisError::from((ErrorKind::UnexpectedReturnType, what))
}

/// The slot ranges of a `CLUSTER SLOTS` reply and the id of each range's
/// primary.
#[derive(Debug, PartialEq, Eq)]
struct Primaries(Vec<(u16, u16, String)>);

impl Primaries {
    /// Reads `[[start, end, [host, port, id, ...], replicas...], ...]`.
    fn parse(ranges: Vec<Value>) -> RedisResult<Self> {
        let shape = || unexpected("CLUSTER SLOTS answered something other than slot ranges with node ids");
        let mut out = Vec::with_capacity(ranges.len());
        for range in ranges {
            let Value::Array(range) = range else { return Err(shape()) };
            let mut range = range.into_iter();
            let (Some(start), Some(end), Some(Value::Array(primary))) = (range.next(), range.next(), range.next())
            else {
                return Err(shape());
            };
            let (start, end): (u16, u16) = (reply(start)?, reply(end)?);
            let id: String = match primary.into_iter().nth(2) {
                Some(id) => reply(id)?,
                None => return Err(shape()),
            };
            out.push((start, end, id));
        }
        Ok(Self(out))
    }

    /// The primary serving `slot`.
    fn serving(&self, slot: u16) -> Option<&str> {
        self.0.iter().find(|(start, end, _)| (*start..=*end).contains(&slot)).map(|(_, _, id)| id.as_str())
    }

    /// The primary whose lowest slot is the lowest one above `slot`.
    fn after(&self, slot: u16) -> Option<Node> {
        let mut lowest: Vec<(u16, &str)> = Vec::new();
        for (start, _, id) in &self.0 {
            match lowest.iter_mut().find(|(_, known)| known == id) {
                Some((first, _)) => *first = (*first).min(*start),
                None => lowest.push((*start, id)),
            }
        }
        lowest
            .into_iter()
            .filter(|(first, _)| *first > slot)
            .min()
            .map(|(first, id)| Node { slot: first, id: Some(id.to_owned()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> String {
        format!("{n:040x}")
    }

    fn range(start: i64, end: i64, primary: u8, replica: u8) -> Value {
        let node = |n: u8| {
            Value::Array(vec![
                Value::BulkString(b"127.0.0.1".to_vec()),
                Value::Int(7000 + i64::from(n)),
                Value::BulkString(id(n).into_bytes()),
                Value::Array(vec![]),
            ])
        };
        Value::Array(vec![Value::Int(start), Value::Int(end), node(primary), node(replica)])
    }

    #[test]
    fn primaries_are_walked_by_their_lowest_slot() {
        // Node 2 serves two ranges, one of them below node 1's.
        let primaries = Primaries::parse(vec![
            range(0, 99, 3, 13),
            range(10_000, 16_383, 1, 11),
            range(100, 5_000, 2, 12),
            range(5_001, 9_999, 2, 12),
        ])
        .expect("parses");
        assert_eq!(primaries.serving(0), Some(id(3).as_str()));
        assert_eq!(primaries.serving(5_001), Some(id(2).as_str()));
        assert_eq!(primaries.serving(16_383), Some(id(1).as_str()));
        let mut walked = vec![];
        let mut slot = 0;
        while let Some(node) = primaries.after(slot) {
            slot = node.slot;
            walked.push(node);
        }
        assert_eq!(walked, vec![Node { slot: 100, id: Some(id(2)) }, Node { slot: 10_000, id: Some(id(1)) }]);
    }

    #[test]
    fn a_reply_without_node_ids_is_refused() {
        let bare = Value::Array(vec![
            Value::Int(0),
            Value::Int(16_383),
            Value::Array(vec![Value::BulkString(b"127.0.0.1".to_vec()), Value::Int(7000)]),
        ]);
        assert!(Primaries::parse(vec![bare]).is_err());
        assert!(Primaries::parse(vec![Value::Int(1)]).is_err());
    }

    #[test]
    fn nodes_round_trip_through_text_and_nothing_else_parses() {
        for node in [Node::FIRST, Node { slot: 5_461, id: Some(id(7)) }, Node { slot: 16_383, id: None }] {
            assert_eq!(Node::parse(&node.to_text()), Some(node));
        }
        assert!(Node::FIRST.is_single());
        assert!(!Node { slot: 0, id: Some(id(1)) }.is_single());
        for text in ["", "x", "16384", "-1", "1.", "1.abc", &format!("1.{}", "g".repeat(40)), "1.2.3"] {
            assert_eq!(Node::parse(text), None, "{text}");
        }
    }
}
