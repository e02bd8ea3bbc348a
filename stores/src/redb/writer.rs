//! The write side of a [`RedbStore`](super::RedbStore): every write is an
//! [`Op`], and the group-commit thread applies each batch of them inside one
//! redb write transaction (see [`super::apply`] for what each one does).
//!
//! Applying a batch in one transaction is what makes the store both atomic
//! and fast. redb runs one write transaction at a time, so each operation's
//! read-modify-write (`touch`, `update`, `rename`, the revocations, the
//! sweep) sees every earlier operation and nothing can slip in between its
//! read and its write; and the whole batch pays for one commit (one `fsync`
//! when durable) instead of one per operation.
//!
//! Lease grants are decided here too, in queue order, and answered with
//! their batch (see [`super::leases`]). A batch of nothing but grants opens
//! no transaction. A batch that fails takes its grants back.
//!
//! A batch the engine fails (an I/O error, a full disk) fails as a whole and
//! commits nothing; before the next batch the database handle is replaced
//! (see [`super::handle`]), so a failure does not outlive its cause.
//!
//! A batch that panics is handled the same way: redb keeps a handle whose
//! write transaction was abandoned by a panic usable but leaks the pages
//! that transaction took, until the file is opened again, which repairs it.
//! So before the next batch the writer replaces the handle, as after an I/O
//! error; a store on the application's `Database` cannot, and stops for
//! good (see [`crate::group_commit`]).

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use redb::{Database, WriteTransaction};
use sessionkit::{Changes, Lease, LeaseToken, StoreError, UpdateOutcome};

use super::apply::WriteTables;
use super::handle::Handle;
use super::leases::Leases;
use super::{Key, RedbDurability, Tables, now_ms};
use crate::group_commit::{Committer, Restart};

/// One write, as submitted to the writer thread. Not `Debug`: it holds
/// store keys, which must never reach a log (with ids not hashed at rest, a
/// key is the id).
pub(super) enum Op {
    /// Store `value` (already encoded) under `key`.
    Set { key: Key, value: Vec<u8> },
    /// Remove `key`.
    Delete { key: Key },
    /// Move a live record's expiry.
    Touch { key: Key, expires_at_ms: Option<i64> },
    /// Apply `changes` to a live record and set its expiry.
    Update { key: Key, changes: Changes, expires_at_ms: Option<i64> },
    /// Move a live record from `from` to `to`, with `changes` applied.
    Rename { from: Key, to: Key, changes: Changes, expires_at_ms: Option<i64> },
    /// Remove `key` if it is live and `user`'s.
    Revoke { user: String, key: Key },
    /// Remove every live session of `user` but `except`.
    RevokeAll { user: String, except: Option<Key> },
    /// Remove up to `limit` expired records.
    Sweep { limit: usize },
    /// Grant the lease on `key` for `ttl` if nobody holds a live one.
    Lease { key: Key, ttl: Duration },
    /// Nothing, but the batch holding it commits durably whatever the
    /// configured durability.
    Flush,
}

impl Op {
    /// Whether the operation needs the write transaction (all but grants).
    fn writes(&self) -> bool {
        !matches!(self, Op::Lease { .. })
    }
}

/// What one [`Op`] answers.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Out {
    /// `Set`, `Delete`, `Flush`.
    Done,
    /// `Touch`: whether the record was live.
    Touched(bool),
    /// `Update`, `Rename`.
    Updated(UpdateOutcome),
    /// `Revoke`: whether it removed the session.
    Revoked(bool),
    /// `RevokeAll`: how many sessions it removed.
    RevokedAll(u64),
    /// `Sweep`: how many records it removed, and whether it stopped at its
    /// limit (more expired index entries may remain).
    Swept { removed: u64, more: bool },
    /// `Lease`: the grant, or `None` while another holder's lease lives.
    Leased(Option<Lease>),
}

/// Owns the write side of the database on the group-commit thread.
pub(super) struct Writer {
    handle: Arc<Handle>,
    tables: Arc<Tables>,
    leases: Arc<Leases>,
    durability: RedbDurability,
    /// The handle the last batch ran on: the one to replace if it panicked.
    used: Weak<Database>,
}

impl Writer {
    pub(super) fn new(
        handle: Arc<Handle>,
        tables: Arc<Tables>,
        leases: Arc<Leases>,
        durability: RedbDurability,
    ) -> Self {
        Self { handle, tables, leases, durability, used: Weak::new() }
    }
}

impl Committer for Writer {
    type Op = Op;
    type Out = Out;

    /// Commits `ops` on the current database handle. When the handle has
    /// failed (a full disk), the batch fails with the cause, and the handle
    /// is replaced before this returns, so the next batch can commit.
    fn commit(&mut self, ops: Vec<Op>) -> Result<Vec<Result<Out, StoreError>>, StoreError> {
        // Taken back unless the batch commits, even if it panics.
        let mut grants = Grants { leases: &self.leases, granted: Vec::new(), committed: false };
        if !ops.iter().any(Op::writes) {
            let now = Batch { ms: now_ms(), instant: Instant::now() };
            let results = ops.into_iter().map(|op| grant(&mut grants, op, now)).collect();
            grants.committed = true;
            return Ok(results);
        }
        let db = self.handle.get()?;
        self.used = Arc::downgrade(&db);
        let result = commit_batch(&db, &self.tables, &mut grants, self.durability, ops);
        // Let go of the handle first: replacing it waits for every holder.
        drop(db);
        grants.committed = result.is_ok();
        result.map_err(|err| self.handle.after_error(&self.used, err))
    }

    /// Replaces the handle the panicked batch ran on (a panic unwinding out
    /// of `commit` has let go of it already), unless a reader replaced it
    /// first.
    fn restart(&mut self) -> Result<(), Restart> {
        if !self.handle.can_reopen() {
            return Err(Restart::Impossible(
                "this RedbStore was built on a Database the application owns (RedbStore::from_database or \
                 RedbStoreBuilder::build), which it cannot close and open again; every operation fails until the \
                 application reopens the database and builds a new store",
            ));
        }
        self.handle.recover(&self.used).map_err(Restart::Failed)
    }
}

/// The instant a batch happens at: one clock reading per batch, in Unix ms
/// for records and on the monotonic clock for leases.
#[derive(Debug, Clone, Copy)]
pub(super) struct Batch {
    pub(super) ms: i64,
    pub(super) instant: Instant,
}

/// The leases a batch granted, released again when it does not commit.
pub(super) struct Grants<'a> {
    pub(super) leases: &'a Leases,
    granted: Vec<(Key, LeaseToken)>,
    committed: bool,
}

impl Grants<'_> {
    /// Grants the lease on `key`, remembering it until the batch commits.
    pub(super) fn grant(&mut self, key: &Key, ttl: Duration, now: Instant) -> Result<Option<Lease>, StoreError> {
        let lease = self.leases.grant(key, ttl, now)?;
        if let Some(lease) = &lease {
            self.granted.push((*key, lease.token));
        }
        Ok(lease)
    }
}

impl Drop for Grants<'_> {
    fn drop(&mut self) {
        if !self.committed {
            // Nobody was told of these grants: nobody would release them.
            for (key, token) in &self.granted {
                self.leases.release(key, *token);
            }
        }
    }
}

/// Answers an operation of a batch that opens no transaction: a grant.
fn grant(grants: &mut Grants<'_>, op: Op, now: Batch) -> Result<Out, StoreError> {
    match op {
        Op::Lease { key, ttl } => grants.grant(&key, ttl, now.instant).map(Out::Leased),
        // Only grants come here (see `Op::writes`); reported, not assumed.
        _ => Err(StoreError::backend(
            "redb store: a write reached the writer without a transaction",
            std::io::Error::other("a batch without writes held a write"),
        )),
    }
}

/// Applies `ops` in one write transaction and commits it.
fn commit_batch(
    db: &Database,
    tables: &Tables,
    grants: &mut Grants<'_>,
    durability: RedbDurability,
    ops: Vec<Op>,
) -> Result<Vec<Result<Out, StoreError>>, StoreError> {
    let flush = ops.iter().any(|op| matches!(op, Op::Flush));
    let txn = begin_write(db, durability, flush)?;
    // One clock reading per batch: the whole batch happens at one instant.
    let now = Batch { ms: now_ms(), instant: Instant::now() };
    let results = {
        let mut tables = WriteTables::open(&txn, tables)?;
        let mut results = Vec::with_capacity(ops.len());
        for op in ops {
            match tables.apply(op, now, grants) {
                Ok(out) => results.push(Ok(out)),
                Err(Failure::Rejected(err)) => results.push(Err(err)),
                // Returning drops the transaction, which rolls it back: a
                // half-applied batch is never committed.
                Err(Failure::Engine(err)) => return Err(err),
            }
        }
        results
    };
    txn.commit().map_err(|err| StoreError::backend("redb store: committing a batch of writes", err))?;
    Ok(results)
}

/// Why an operation failed.
pub(super) enum Failure {
    /// The engine failed: the transaction can no longer be trusted, so the
    /// whole batch fails.
    Engine(StoreError),
    /// This operation alone was refused, before it changed anything; the
    /// rest of the batch goes on.
    Rejected(StoreError),
}

/// Begins a write transaction with the store's durability; `flush` forces a
/// durable commit.
fn begin_write(db: &Database, durability: RedbDurability, flush: bool) -> Result<WriteTransaction, StoreError> {
    let mut txn = db.begin_write().map_err(|err| StoreError::backend("redb store: beginning a write", err))?;
    match durability {
        // redb's default: `commit` returns once the data is on disk.
        RedbDurability::Immediate => {}
        RedbDurability::Paranoid => txn.set_two_phase_commit(true),
        RedbDurability::None if flush => {}
        RedbDurability::None => txn
            .set_durability(redb::Durability::None)
            .map_err(|err| StoreError::backend("redb store: choosing non-durable commits", err))?,
    }
    Ok(txn)
}
