//! The write side of a [`RedbStore`](super::RedbStore): every write is an
//! [`Op`], and the group-commit thread applies each batch of them inside one
//! redb write transaction.
//!
//! Applying a batch in one transaction is what makes the store both atomic
//! and fast. redb runs one write transaction at a time, so each operation's
//! read-modify-write (`touch`, `update`, the sweep) sees every earlier
//! operation and nothing can slip in between its read and its write; and the
//! whole batch pays for one commit (one `fsync` when durable) instead of one
//! per operation.
//!
//! The sessions table and the expiry index change together in every
//! operation, so the index always names exactly the records with an expiry
//! (see [`super::Tables`]). If a record was found corrupt and could not tell
//! its old expiry, its stale index entry is harmless: the sweep checks the
//! record's own expiry before deleting it.
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

use redb::{Database, ReadableTable, StorageError, Table, WriteTransaction};
use sessionkit::{Changes, StoreError, UpdateOutcome};

use super::codec::{self, Stored};
use super::handle::Handle;
use super::{Key, RedbDurability, Tables, now_ms};
use crate::group_commit::{Committer, Restart};

/// One write, as submitted to the writer thread. Not `Debug`: it holds a
/// session id, which must never reach a log.
pub(super) enum Op {
    /// Store `value` (already encoded) under `key`.
    Set { key: Key, value: Vec<u8>, expires_at_ms: Option<i64> },
    /// Remove `key`.
    Delete { key: Key },
    /// Move a live record's expiry.
    Touch { key: Key, expires_at_ms: Option<i64> },
    /// Apply `changes` to a live record and set its expiry.
    Update { key: Key, changes: Changes, expires_at_ms: Option<i64> },
    /// Remove up to `limit` expired records.
    Sweep { limit: usize },
    /// Nothing, but the batch holding it commits durably whatever the
    /// configured durability.
    Flush,
}

/// What one [`Op`] answers.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Out {
    /// `Set`, `Delete`, `Flush`.
    Done,
    /// `Touch`: whether the record was live.
    Touched(bool),
    /// `Update`.
    Updated(UpdateOutcome),
    /// `Sweep`: how many records it removed, and whether it stopped at its
    /// limit (more expired index entries may remain).
    Swept { removed: u64, more: bool },
}

/// Owns the write side of the database on the group-commit thread.
pub(super) struct Writer {
    handle: Arc<Handle>,
    tables: Arc<Tables>,
    durability: RedbDurability,
    /// The handle the last batch ran on: the one to replace if it panicked.
    used: Weak<Database>,
}

impl Writer {
    pub(super) fn new(handle: Arc<Handle>, tables: Arc<Tables>, durability: RedbDurability) -> Self {
        Self { handle, tables, durability, used: Weak::new() }
    }
}

impl Committer for Writer {
    type Op = Op;
    type Out = Out;

    /// Commits `ops` on the current database handle. When the handle has
    /// failed (a full disk), the batch fails with the cause, and the handle
    /// is replaced before this returns, so the next batch can commit.
    fn commit(&mut self, ops: Vec<Op>) -> Result<Vec<Result<Out, StoreError>>, StoreError> {
        let db = self.handle.get()?;
        self.used = Arc::downgrade(&db);
        let result = commit_batch(&db, &self.tables, self.durability, ops);
        // Let go of the handle first: replacing it waits for every holder.
        drop(db);
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

/// Applies `ops` in one write transaction and commits it.
fn commit_batch(
    db: &Database,
    tables: &Tables,
    durability: RedbDurability,
    ops: Vec<Op>,
) -> Result<Vec<Result<Out, StoreError>>, StoreError> {
    let flush = ops.iter().any(|op| matches!(op, Op::Flush));
    let txn = begin_write(db, durability, flush)?;
    // One clock reading per batch: the whole batch happens at one instant.
    let now = now_ms();
    let results = {
        let mut tables = WriteTables::open(&txn, tables)?;
        let mut results = Vec::with_capacity(ops.len());
        for op in ops {
            match tables.apply(op, now) {
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
enum Failure {
    /// The engine failed: the transaction can no longer be trusted, so the
    /// whole batch fails.
    Engine(StoreError),
    /// This operation alone was refused, before it changed anything; the
    /// rest of the batch goes on.
    Rejected(StoreError),
}

/// Wraps an engine error from doing `context` as a batch failure.
fn engine(context: &'static str) -> impl Fn(StorageError) -> Failure {
    move |err| Failure::Engine(StoreError::backend(context, err))
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

/// Both tables, open for writing in one transaction.
struct WriteTables<'txn> {
    sessions: Table<'txn, &'static Key, &'static [u8]>,
    expiry: Table<'txn, (i64, &'static Key), ()>,
}

impl<'txn> WriteTables<'txn> {
    /// Opens (and on first use creates) both tables.
    fn open(txn: &'txn WriteTransaction, tables: &Tables) -> Result<Self, StoreError> {
        let sessions = txn
            .open_table(tables.sessions())
            .map_err(|err| StoreError::backend("redb store: opening the sessions table", err))?;
        let expiry = txn
            .open_table(tables.expiry())
            .map_err(|err| StoreError::backend("redb store: opening the expiry index", err))?;
        Ok(Self { sessions, expiry })
    }

    fn apply(&mut self, op: Op, now: i64) -> Result<Out, Failure> {
        match op {
            Op::Set { key, value, expires_at_ms } => {
                self.put(&key, &value, expires_at_ms)?;
                // After the write, so the panic strikes inside a transaction
                // that has changed both tables.
                #[cfg(test)]
                crate::group_commit::test_hooks::panic_if_marked(&value);
                Ok(Out::Done)
            }
            Op::Delete { key } => self.delete(&key).map(|()| Out::Done),
            Op::Touch { key, expires_at_ms } => self.touch(&key, expires_at_ms, now).map(Out::Touched),
            Op::Update { key, changes, expires_at_ms } => {
                self.update(&key, &changes, expires_at_ms, now).map(Out::Updated)
            }
            Op::Sweep { limit } => self.sweep(now, limit).map(|(removed, more)| Out::Swept { removed, more }),
            Op::Flush => Ok(Out::Done),
        }
    }

    /// Writes `value` under `key` and moves its index entry.
    fn put(&mut self, key: &Key, value: &[u8], expires_at_ms: Option<i64>) -> Result<(), Failure> {
        let old_expiry = match self.sessions.insert(key, value) {
            Ok(old) => old.and_then(|old| expiry_of(old.value())),
            // redb checks the size before touching the tree, so the
            // transaction is intact and only this write fails.
            Err(err @ StorageError::ValueTooLarge(_)) => {
                return Err(Failure::Rejected(StoreError::backend("redb store: storing a session", err)));
            }
            Err(err) => return Err(engine("redb store: storing a session")(err)),
        };
        self.reindex(key, old_expiry, expires_at_ms)
    }

    /// Moves `key`'s index entry from `old` to `new`.
    fn reindex(&mut self, key: &Key, old: Option<i64>, new: Option<i64>) -> Result<(), Failure> {
        if old == new {
            return Ok(());
        }
        let index = engine("redb store: updating the expiry index");
        if let Some(at) = old {
            self.expiry.remove((at, key)).map_err(&index)?;
        }
        if let Some(at) = new {
            self.expiry.insert((at, key), ()).map_err(&index)?;
        }
        Ok(())
    }

    fn delete(&mut self, key: &Key) -> Result<(), Failure> {
        let old_expiry = self
            .sessions
            .remove(key)
            .map_err(engine("redb store: deleting a session"))?
            .and_then(|old| expiry_of(old.value()));
        self.reindex(key, old_expiry, None)
    }

    /// The JSON of the live record under `key`, copied out: `None` when
    /// absent, expired or corrupt (logged).
    fn live_json(&self, key: &Key, now: i64) -> Result<Option<Vec<u8>>, Failure> {
        let Some(guard) = self.sessions.get(key).map_err(engine("redb store: reading a session"))? else {
            return Ok(None);
        };
        match Stored::parse(guard.value()) {
            Ok(stored) if stored.is_live(now) => Ok(Some(stored.json.to_vec())),
            Ok(_) => Ok(None),
            Err(err) => {
                super::log_corrupt(&err);
                Ok(None)
            }
        }
    }

    fn touch(&mut self, key: &Key, expires_at_ms: Option<i64>, now: i64) -> Result<bool, Failure> {
        let Some(json) = self.live_json(key, now)? else {
            return Ok(false);
        };
        // Unreadable data reads as absent everywhere: touch must not keep
        // alive what `get` would not return, so it decodes what it keeps.
        if let Err(err) = (Stored { expires_at_ms: None, json: &json }).data() {
            super::log_corrupt(&err);
            return Ok(false);
        }
        // The bytes are kept as they are: touch never re-serialises the data.
        self.put(key, &codec::encode_json(&json, expires_at_ms), expires_at_ms)?;
        Ok(true)
    }

    fn update(
        &mut self,
        key: &Key,
        changes: &Changes,
        expires_at_ms: Option<i64>,
        now: i64,
    ) -> Result<UpdateOutcome, Failure> {
        let Some(json) = self.live_json(key, now)? else {
            return Ok(UpdateOutcome::Missing);
        };
        let data = match serde_json::from_slice(&json) {
            Ok(data) => data,
            Err(err) => {
                // Unreadable data reads as absent everywhere, so an update
                // finds nothing to patch, as a `get` would.
                super::log_corrupt(&codec::CorruptRecord::Json(err));
                return Ok(UpdateOutcome::Missing);
            }
        };
        let data = changes.applied_to(data).map_err(|err| Failure::Rejected(StoreError::Refused(err)))?;
        let value = codec::encode(&data, expires_at_ms).map_err(Failure::Rejected)?;
        self.put(key, &value, expires_at_ms)?;
        Ok(UpdateOutcome::Applied)
    }

    /// Removes up to `limit` expired records, walking the expiry index from
    /// its oldest entry up to `now` and no further: the cost is what is
    /// expired, not what is stored. Also says whether it stopped at `limit`.
    fn sweep(&mut self, now: i64, limit: usize) -> Result<(u64, bool), Failure> {
        let index = engine("redb store: walking the expiry index");
        let due: Vec<(i64, Key)> = self
            .expiry
            .range::<(i64, &Key)>(..=(now, &[u8::MAX; 32]))
            .map_err(&index)?
            .take(limit)
            .map(|entry| entry.map(|(key, _)| (key.value().0, *key.value().1)))
            .collect::<Result<_, _>>()
            .map_err(&index)?;
        let mut removed = 0;
        for (at, id) in &due {
            self.expiry.remove((*at, id)).map_err(&index)?;
            let guard = self.sessions.get(id).map_err(engine("redb store: reading a session"))?;
            // Only the record's own expiry counts: an entry left behind by a
            // record that was corrupt when it was rewritten must not delete
            // its live successor. A record whose header is unreadable and
            // whose index entry says it is due is removed with it.
            let due = guard.is_some_and(|guard| match Stored::parse(guard.value()) {
                Ok(stored) => stored.expires_at_ms == Some(*at),
                Err(_) => true,
            });
            if due {
                self.sessions.remove(id).map_err(engine("redb store: deleting an expired session"))?;
                removed += 1;
            }
        }
        Ok((removed, due.len() == limit))
    }
}

/// The expiry recorded in a stored value, `None` when it has none or its
/// header is unreadable (the sweep then cleans up after it).
fn expiry_of(value: &[u8]) -> Option<i64> {
    Stored::parse(value).ok().and_then(|stored| stored.expires_at_ms)
}
