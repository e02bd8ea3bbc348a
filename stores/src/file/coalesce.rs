//! The writes of one session within a batch, applied in order in memory.
//!
//! A batch may hold several writes of one session: 32 concurrent requests
//! on one session each `update` it. They are applied here, one after
//! another in the order they were queued, to the record as it stands (read
//! once, only if a write needs it), so that the batch writes at most one
//! file per session, and each write gets the answer it would have had run
//! alone in that order: an `update` after a `delete` finds the session
//! missing, a `touch` after a `set` moves the new record's expiry.
//!
//! This is the one place where the file store applies a patch
//! ([`apply_patch`]) and decides what a write answers.

use sessionkit::{Changes, SessionMap, StoreError, UpdateOutcome};

use super::format::StoredRecord;
use super::is_live;

/// One write of a session, as queued.
#[derive(Debug)]
pub(super) enum Op {
    /// Replace the record.
    Set {
        /// The new data.
        data: SessionMap,
        /// Unix milliseconds; `None` never expires.
        expires_at: Option<i64>,
    },
    /// Patch the live record, if any.
    Update {
        /// The patch.
        changes: Changes,
        /// The record's new expiry.
        expires_at: Option<i64>,
    },
    /// Move the live record's expiry, if there is a live record.
    Touch {
        /// The new expiry.
        expires_at: Option<i64>,
    },
    /// Remove the record.
    Delete,
}

/// What one write answers, once its batch is durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Out {
    /// A `set` or `delete` was made.
    Done,
    /// Whether a `touch` found a live record.
    Touched(bool),
    /// What an `update` did.
    Updated(UpdateOutcome),
}

/// What the batch must do to a session's file.
#[derive(Debug)]
pub(super) enum Action {
    /// Leave it as it is: no write changed anything.
    Keep,
    /// Replace it with this record.
    Write(StoredRecord),
    /// Remove it (if it exists).
    Remove,
}

/// A session's writes, applied.
#[derive(Debug)]
pub(super) struct Coalesced {
    /// What to do to the file.
    pub(super) action: Action,
    /// One answer per write, in order. They hold only once the action is
    /// durable.
    pub(super) answers: Vec<Result<Out, StoreError>>,
}

/// Applies `ops`, in order, to a session whose live record `read` returns
/// (`None` when absent, expired or damaged); `read` is called at most once,
/// and only if a write needs the stored record. `now_ms` decides which
/// records are live.
///
/// # Errors
///
/// `read`'s error: without the stored record none of these writes can be
/// made.
pub(super) fn coalesce(
    ops: impl IntoIterator<Item = Op>,
    now_ms: i64,
    read: impl FnOnce() -> Result<Option<StoredRecord>, StoreError>,
) -> Result<Coalesced, StoreError> {
    // `None`: not read yet; `Some(None)`: no record.
    let mut state: Option<Option<StoredRecord>> = None;
    let mut read = Some(read);
    let mut changed = false;
    let mut answers = Vec::new();
    for op in ops {
        let answer = match op {
            Op::Set { data, expires_at } => {
                state = Some(Some(StoredRecord { data, expires_at }));
                changed = true;
                Ok(Out::Done)
            }
            Op::Delete => {
                state = Some(None);
                changed = true;
                Ok(Out::Done)
            }
            Op::Touch { expires_at } => match live(&mut state, &mut read, now_ms)? {
                Some(record) => {
                    record.expires_at = expires_at;
                    changed = true;
                    Ok(Out::Touched(true))
                }
                None => Ok(Out::Touched(false)),
            },
            Op::Update { changes, expires_at } => match live(&mut state, &mut read, now_ms)? {
                Some(record) => match apply_patch(&changes, &mut record.data) {
                    Ok(()) => {
                        record.expires_at = expires_at;
                        changed = true;
                        Ok(Out::Updated(UpdateOutcome::Applied))
                    }
                    Err(err) => Err(err),
                },
                None => Ok(Out::Updated(UpdateOutcome::Missing)),
            },
        };
        answers.push(answer);
    }
    let action = match state {
        Some(Some(record)) if changed => Action::Write(record),
        Some(None) if changed => Action::Remove,
        _ => Action::Keep,
    };
    Ok(Coalesced { action, answers })
}

/// The session's live record as the batch has it so far, reading the stored
/// one on first use.
fn live<'s, R>(
    state: &'s mut Option<Option<StoredRecord>>,
    read: &mut Option<R>,
    now_ms: i64,
) -> Result<Option<&'s mut StoredRecord>, StoreError>
where
    R: FnOnce() -> Result<Option<StoredRecord>, StoreError>,
{
    if state.is_none() {
        let stored = match read.take() {
            Some(read) => read()?,
            None => None,
        };
        *state = Some(stored);
    }
    // A record set earlier in the batch may already be expired: it is as
    // missing as an expired file.
    Ok(state.as_mut().and_then(Option::as_mut).filter(|record| is_live(record.expires_at, now_ms)))
}

/// Applies an `update`'s patch to the data it found. The one place the file
/// store applies patches; a patch that fails must leave `data` as it was,
/// so that the later writes of the batch see the record unchanged.
fn apply_patch(changes: &Changes, data: &mut SessionMap) -> Result<(), StoreError> {
    // On a refusal `Changes::apply` may have patched part of its input:
    // patch a copy, keep it only when the whole patch applied.
    *data = changes.applied_to(data.clone()).map_err(StoreError::Refused)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use serde_json::json;

    use super::*;

    const NOW: i64 = 1_000_000;

    fn data(value: serde_json::Value) -> SessionMap {
        value.as_object().cloned().expect("object")
    }

    fn record(value: serde_json::Value, expires_at: Option<i64>) -> StoredRecord {
        StoredRecord { data: data(value), expires_at }
    }

    fn set_key(key: &str, value: serde_json::Value) -> Op {
        let mut changes = Changes::new();
        changes.set(key, value);
        Op::Update { changes, expires_at: Some(NOW + 100) }
    }

    fn answers(coalesced: &Coalesced) -> Vec<Out> {
        coalesced.answers.iter().map(|answer| *answer.as_ref().expect("answer")).collect()
    }

    fn written(coalesced: &Coalesced) -> &StoredRecord {
        match &coalesced.action {
            Action::Write(record) => record,
            other => panic!("expected a write, got {other:?}"),
        }
    }

    #[test]
    fn successive_updates_of_one_session_all_land_in_one_write() {
        let ops = (0..32).map(|i| set_key(&format!("k{i}"), json!(i)));
        let coalesced = coalesce(ops, NOW, || Ok(Some(record(json!({ "base": true }), Some(NOW + 5))))).expect("ok");
        assert_eq!(answers(&coalesced), vec![Out::Updated(UpdateOutcome::Applied); 32]);
        let record = written(&coalesced);
        assert_eq!(record.data.len(), 33, "every update's key, and the stored one");
        assert_eq!(record.expires_at, Some(NOW + 100));
    }

    #[test]
    fn writes_apply_in_the_order_they_were_queued() {
        let reads = Cell::new(0);
        let ops = vec![
            set_key("a", json!(1)),
            set_key("a", json!(2)),
            Op::Delete,
            set_key("b", json!(1)),
            Op::Touch { expires_at: Some(NOW + 7) },
            Op::Set { data: data(json!({ "c": 3 })), expires_at: Some(NOW + 50) },
            Op::Touch { expires_at: Some(NOW + 60) },
            set_key("c", json!(4)),
        ];
        let coalesced = coalesce(ops, NOW, || {
            reads.set(reads.get() + 1);
            Ok(Some(record(json!({}), None)))
        })
        .expect("ok");
        assert_eq!(
            answers(&coalesced),
            vec![
                Out::Updated(UpdateOutcome::Applied),
                Out::Updated(UpdateOutcome::Applied),
                Out::Done,
                Out::Updated(UpdateOutcome::Missing),
                Out::Touched(false),
                Out::Done,
                Out::Touched(true),
                Out::Updated(UpdateOutcome::Applied),
            ],
            "after the delete the session is gone until the set"
        );
        assert_eq!(written(&coalesced).data, data(json!({ "c": 4 })));
        assert_eq!(reads.get(), 1, "the stored record is read once");
    }

    #[test]
    fn a_delete_last_removes_and_nothing_brings_the_session_back() {
        let ops = vec![set_key("a", json!(1)), Op::Delete, set_key("b", json!(2)), Op::Touch { expires_at: None }];
        let coalesced = coalesce(ops, NOW, || Ok(Some(record(json!({}), None)))).expect("ok");
        assert!(matches!(coalesced.action, Action::Remove), "{:?}", coalesced.action);
        assert_eq!(answers(&coalesced)[2..], [Out::Updated(UpdateOutcome::Missing), Out::Touched(false)]);
    }

    #[test]
    fn writes_that_change_nothing_leave_the_file_alone() {
        let ops = [set_key("a", json!(1)), Op::Touch { expires_at: None }];
        // Absent, or expired: both are missing, and nothing is written.
        for stored in [None, Some(record(json!({ "old": 1 }), Some(NOW)))] {
            let coalesced = coalesce(ops.iter().map(clone_op), NOW, || Ok(stored.clone())).expect("ok");
            assert!(matches!(coalesced.action, Action::Keep), "{:?}", coalesced.action);
            assert_eq!(answers(&coalesced), [Out::Updated(UpdateOutcome::Missing), Out::Touched(false)]);
        }
    }

    #[test]
    fn a_set_needs_no_read_and_an_expired_set_is_missing_to_later_writes() {
        let ops = vec![Op::Set { data: data(json!({ "a": 1 })), expires_at: Some(NOW - 1) }, set_key("b", json!(2))];
        let coalesced = coalesce(ops, NOW, || panic!("a batch starting with a set must not read")).expect("ok");
        assert_eq!(answers(&coalesced), [Out::Done, Out::Updated(UpdateOutcome::Missing)]);
        assert_eq!(written(&coalesced).data, data(json!({ "a": 1 })), "the set itself is still written");
    }

    #[test]
    fn a_failed_read_fails_the_session() {
        let ops = vec![set_key("a", json!(1))];
        let err = coalesce(ops, NOW, || Err(StoreError::backend("reading", std::io::Error::other("disk on fire"))))
            .expect_err("no record, no update");
        assert!(err.to_string().contains("reading"), "{err}");
    }

    fn clone_op(op: &Op) -> Op {
        match op {
            Op::Set { data, expires_at } => Op::Set { data: data.clone(), expires_at: *expires_at },
            Op::Update { changes, expires_at } => Op::Update { changes: changes.clone(), expires_at: *expires_at },
            Op::Touch { expires_at } => Op::Touch { expires_at: *expires_at },
            Op::Delete => Op::Delete,
        }
    }
}
