//! What each write operation of a [`RedbStore`](super::RedbStore) does to
//! its three tables, inside the batch's write transaction.
//!
//! The sessions table, the expiry index and the user index change together
//! in every operation, so the indexes always name exactly the records with
//! an expiry, and with a user (see [`super::tables`]). The old entries of a
//! record are found from the header of the value it replaces, so keeping the
//! indexes costs no JSON parsing, except once for a value written before the
//! user index (layout version 1), whose user only its JSON knows.
//!
//! An operation that can be refused (a patch that fails, a lost lease)
//! computes everything it will write before its first write: a refusal
//! leaves the transaction as it found it, and the rest of the batch goes on.
//!
//! A record found corrupt cannot tell its old index entries, which may then
//! linger; they are harmless. The sweep checks the record's own expiry
//! before deleting it, a listing checks the record's own user, and
//! `revoke_all` removes the entries it finds stale.

use redb::{ReadableTable, StorageError, Table, WriteTransaction};
use sessionkit::{Changes, PatchError, SessionMap, StoreError, UpdateOutcome, reserved};

use super::codec::{self, Owner, Stored};
use super::writer::{Batch, Failure, Grants, Op, Out};
use super::{Key, Tables, log_corrupt};

/// Wraps an engine error from doing `context` as a batch failure.
fn engine(context: &'static str) -> impl Fn(StorageError) -> Failure {
    move |err| Failure::Engine(StoreError::backend(context, err))
}

/// The index entries a stored value has.
#[derive(Debug, Default)]
struct Entries {
    expiry: Option<i64>,
    user: Option<String>,
    /// Written before the user index: its user entry may be missing (an old
    /// version wrote it after the index was built), so a rewrite adds it
    /// even when the user stays.
    unsure: bool,
}

impl Entries {
    /// Reads the entries from a value's header (and, for a version 1 value,
    /// its JSON). A corrupt value has none that it can tell.
    fn of(value: &[u8]) -> Self {
        let Ok(stored) = Stored::parse(value) else {
            return Self::default();
        };
        Self {
            expiry: stored.expires_at_ms,
            user: stored.user().unwrap_or_default(),
            unsure: stored.owner == Owner::InJson,
        }
    }
}

/// A live record as the writer reads it: its data, parsed, and its user.
struct Live {
    data: SessionMap,
    user: Option<String>,
}

/// The three tables, open for writing in one transaction.
pub(super) struct WriteTables<'txn> {
    sessions: Table<'txn, &'static Key, &'static [u8]>,
    expiry: Table<'txn, (i64, &'static Key), ()>,
    users: Table<'txn, (&'static str, &'static Key), ()>,
}

impl<'txn> WriteTables<'txn> {
    /// Opens (and on first use creates) the tables.
    pub(super) fn open(txn: &'txn WriteTransaction, tables: &Tables) -> Result<Self, StoreError> {
        let sessions = txn
            .open_table(tables.sessions())
            .map_err(|err| StoreError::backend("redb store: opening the sessions table", err))?;
        let expiry = txn
            .open_table(tables.expiry())
            .map_err(|err| StoreError::backend("redb store: opening the expiry index", err))?;
        let users = txn
            .open_table(tables.users())
            .map_err(|err| StoreError::backend("redb store: opening the user index", err))?;
        Ok(Self { sessions, expiry, users })
    }

    pub(super) fn apply(&mut self, op: Op, now: Batch, grants: &mut Grants<'_>) -> Result<Out, Failure> {
        match op {
            Op::Set { key, value } => {
                self.put(&key, &value)?;
                // After the write, so the panic strikes inside a transaction
                // that has changed every table.
                #[cfg(test)]
                crate::group_commit::test_hooks::panic_if_marked(&value);
                Ok(Out::Done)
            }
            Op::Delete { key } => self.delete(&key).map(|_| Out::Done),
            Op::Touch { key, expires_at_ms } => self.touch(&key, expires_at_ms, now.ms).map(Out::Touched),
            Op::Update { key, changes, expires_at_ms } => {
                fence(grants, &key, &changes, now)?;
                self.update(&key, &changes, expires_at_ms, now.ms).map(Out::Updated)
            }
            Op::Rename { from, to, changes, expires_at_ms } => {
                fence(grants, &from, &changes, now)?;
                self.rename(&from, &to, &changes, expires_at_ms, now.ms).map(Out::Updated)
            }
            Op::Revoke { user, key } => self.revoke(&user, &key, now.ms).map(Out::Revoked),
            Op::RevokeAll { user, except } => self.revoke_all(&user, except.as_ref(), now.ms).map(Out::RevokedAll),
            Op::Sweep { limit } => {
                grants.leases.prune(now.instant);
                self.sweep(now.ms, limit).map(|(removed, more)| Out::Swept { removed, more })
            }
            Op::Lease { key, ttl } => grants.grant(&key, ttl, now.instant).map(Out::Leased).map_err(Failure::Rejected),
            Op::Flush => Ok(Out::Done),
        }
    }

    /// Writes `value` (encoded by this version) under `key` and moves its
    /// index entries.
    fn put(&mut self, key: &Key, value: &[u8]) -> Result<(), Failure> {
        let new = Stored::parse(value).map_err(|err| {
            // `codec` wrote it a moment ago: reported, never stored.
            Failure::Rejected(StoreError::backend("redb store: encoding a session", err))
        })?;
        let Owner::Known(new_user) = new.owner else {
            return Err(Failure::Rejected(StoreError::backend(
                "redb store: encoding a session",
                std::io::Error::other("a value to store is not in the current layout"),
            )));
        };
        let old = match self.sessions.insert(key, value) {
            Ok(old) => old.map(|old| Entries::of(old.value())).unwrap_or_default(),
            // redb checks the size before touching the tree, so the
            // transaction is intact and only this write fails.
            Err(err @ StorageError::ValueTooLarge(_)) => {
                return Err(Failure::Rejected(StoreError::backend("redb store: storing a session", err)));
            }
            Err(err) => return Err(engine("redb store: storing a session")(err)),
        };
        self.reindex(key, &old, new.expires_at_ms, new_user)
    }

    /// Moves `key`'s index entries from `old` to the new expiry and user.
    fn reindex(&mut self, key: &Key, old: &Entries, expiry: Option<i64>, user: Option<&str>) -> Result<(), Failure> {
        if old.expiry != expiry {
            let index = engine("redb store: updating the expiry index");
            if let Some(at) = old.expiry {
                self.expiry.remove((at, key)).map_err(&index)?;
            }
            if let Some(at) = expiry {
                self.expiry.insert((at, key), ()).map_err(&index)?;
            }
        }
        let moved = old.user.as_deref() != user;
        if moved || old.unsure {
            let index = engine("redb store: updating the user index");
            if let Some(old_user) = old.user.as_deref().filter(|_| moved) {
                self.users.remove((old_user, key)).map_err(&index)?;
            }
            if let Some(user) = user {
                self.users.insert((user, key), ()).map_err(&index)?;
            }
        }
        Ok(())
    }

    /// Removes `key` and its index entries; returns the entries it had.
    fn delete(&mut self, key: &Key) -> Result<Option<Entries>, Failure> {
        let old = self
            .sessions
            .remove(key)
            .map_err(engine("redb store: deleting a session"))?
            .map(|old| Entries::of(old.value()));
        if let Some(old) = &old {
            self.unindex(key, old)?;
        }
        Ok(old)
    }

    /// Removes the index entries `old` of a removed record.
    fn unindex(&mut self, key: &Key, old: &Entries) -> Result<(), Failure> {
        if let Some(at) = old.expiry {
            self.expiry.remove((at, key)).map_err(engine("redb store: updating the expiry index"))?;
        }
        if let Some(user) = old.user.as_deref() {
            self.users.remove((user, key)).map_err(engine("redb store: updating the user index"))?;
        }
        Ok(())
    }

    /// The live record under `key`, its header and its JSON copied out:
    /// `None` when absent, expired or corrupt (logged).
    fn live_value(&self, key: &Key, now: i64) -> Result<Option<Vec<u8>>, Failure> {
        let Some(guard) = self.sessions.get(key).map_err(engine("redb store: reading a session"))? else {
            return Ok(None);
        };
        match Stored::parse(guard.value()) {
            Ok(stored) if stored.is_live(now) => Ok(Some(guard.value().to_vec())),
            Ok(_) => Ok(None),
            Err(err) => {
                log_corrupt(&err);
                Ok(None)
            }
        }
    }

    /// The live record under `key`, parsed: `None` when absent, expired or
    /// unreadable (logged), as a `get` would find it.
    fn live(&self, key: &Key, now: i64) -> Result<Option<Live>, Failure> {
        let Some(value) = self.live_value(key, now)? else {
            return Ok(None);
        };
        let parsed = Stored::parse(&value).and_then(|stored| {
            let data = stored.data()?;
            let user = match stored.owner {
                Owner::Known(user) => user.map(str::to_owned),
                Owner::InJson => reserved::user_of(&data).map(str::to_owned),
            };
            Ok(Live { data, user })
        });
        match parsed {
            Ok(live) => Ok(Some(live)),
            Err(err) => {
                log_corrupt(&err);
                Ok(None)
            }
        }
    }

    fn touch(&mut self, key: &Key, expires_at_ms: Option<i64>, now: i64) -> Result<bool, Failure> {
        let Some(value) = self.live_value(key, now)? else {
            return Ok(false);
        };
        let Ok(stored) = Stored::parse(&value) else {
            return Ok(false);
        };
        // Unreadable data reads as absent everywhere: touch must not keep
        // alive what `get` would not return, so it decodes what it keeps
        // (which also tells the user of a version 1 value).
        let data = match stored.data() {
            Ok(data) => data,
            Err(err) => {
                log_corrupt(&err);
                return Ok(false);
            }
        };
        let user = match stored.owner {
            Owner::Known(user) => user.map(str::to_owned),
            Owner::InJson => reserved::user_of(&data).map(str::to_owned),
        };
        // The JSON bytes are kept as they are: touch never re-serialises the
        // data.
        let moved = codec::encode_json(stored.json, expires_at_ms, user.as_deref()).map_err(Failure::Rejected)?;
        self.put(key, &moved)?;
        Ok(true)
    }

    /// The value of the live record `record` with `changes` applied, or the
    /// reason to refuse the patch; writes nothing.
    fn patched(record: Live, changes: &Changes, expires_at_ms: Option<i64>) -> Result<Vec<u8>, Failure> {
        let data = changes.applied_to(record.data).map_err(|err| Failure::Rejected(StoreError::Refused(err)))?;
        codec::encode(&data, expires_at_ms).map_err(Failure::Rejected)
    }

    fn update(
        &mut self,
        key: &Key,
        changes: &Changes,
        expires_at_ms: Option<i64>,
        now: i64,
    ) -> Result<UpdateOutcome, Failure> {
        let Some(record) = self.live(key, now)? else {
            return Ok(UpdateOutcome::Missing);
        };
        let value = Self::patched(record, changes, expires_at_ms)?;
        self.put(key, &value)?;
        Ok(UpdateOutcome::Applied)
    }

    /// Moves the live record under `from` to `to`, patched, with the index
    /// entries following.
    fn rename(
        &mut self,
        from: &Key,
        to: &Key,
        changes: &Changes,
        expires_at_ms: Option<i64>,
        now: i64,
    ) -> Result<UpdateOutcome, Failure> {
        if from == to {
            return self.update(from, changes, expires_at_ms, now);
        }
        let Some(record) = self.live(from, now)? else {
            return Ok(UpdateOutcome::Missing);
        };
        // Everything is computed before the first write: a refusal leaves
        // both keys as they were.
        let value = Self::patched(record, changes, expires_at_ms)?;
        self.put(to, &value)?;
        self.delete(from)?;
        Ok(UpdateOutcome::Applied)
    }

    /// Removes `key` if it is live and `user`'s.
    fn revoke(&mut self, user: &str, key: &Key, now: i64) -> Result<bool, Failure> {
        let owned = self.live(key, now)?.is_some_and(|record| record.user.as_deref() == Some(user));
        if owned {
            self.delete(key)?;
        }
        Ok(owned)
    }

    /// Removes every live session of `user` but `except`, and the index
    /// entries of `user` that are stale; counts the live sessions removed.
    fn revoke_all(&mut self, user: &str, except: Option<&Key>, now: i64) -> Result<u64, Failure> {
        let index = engine("redb store: reading the user index");
        let keys: Vec<Key> = self
            .users
            .range::<(&str, &Key)>((user, &[0; 32])..=(user, &[u8::MAX; 32]))
            .map_err(&index)?
            .map(|entry| entry.map(|(key, _)| *key.value().1))
            .collect::<Result<_, _>>()
            .map_err(&index)?;
        let mut removed = 0;
        for key in keys.iter().filter(|key| Some(*key) != except) {
            let current = self.sessions.get(key).map_err(engine("redb store: reading a session"))?.map(|guard| {
                let stored = Stored::parse(guard.value()).ok();
                let live = stored.is_some_and(|stored| stored.is_live(now));
                (Entries::of(guard.value()), live)
            });
            match current {
                Some((entries, live)) if entries.user.as_deref() == Some(user) => {
                    // An expired session of the user goes too, uncounted:
                    // the sweep would remove it anyway.
                    self.delete(key)?;
                    removed += u64::from(live);
                }
                // Gone, someone else's now, or unreadable: a stale entry.
                _ => {
                    self.users.remove((user, key)).map_err(engine("redb store: updating the user index"))?;
                }
            }
        }
        Ok(removed)
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
            let guard = self.sessions.get(id).map_err(engine("redb store: reading a session"))?;
            // Only the record's own expiry counts: an entry left behind by a
            // record that was corrupt when it was rewritten must not delete
            // its live successor. A record whose header is unreadable and
            // whose index entry says it is due is removed with it.
            let state = guard.map(|guard| Stored::parse(guard.value()).map(|stored| stored.expires_at_ms == Some(*at)));
            match state {
                // `delete` removes this very entry with the record.
                Some(Ok(true)) => {
                    self.delete(id)?;
                    removed += 1;
                }
                Some(Err(_)) => {
                    self.delete(id)?;
                    self.expiry.remove((*at, id)).map_err(&index)?;
                    removed += 1;
                }
                Some(Ok(false)) | None => {
                    self.expiry.remove((*at, id)).map_err(&index)?;
                }
            }
        }
        Ok((removed, due.len() == limit))
    }
}

/// Refuses a patch fenced by a lease that is not live at the batch's
/// instant: the check runs on the writer thread right before the write, and
/// nothing else writes in between.
fn fence(grants: &Grants<'_>, key: &Key, changes: &Changes, now: Batch) -> Result<(), Failure> {
    match changes.lease() {
        Some(token) if !grants.leases.holds(key, token, now.instant) => {
            Err(Failure::Rejected(StoreError::Refused(PatchError::LeaseLost)))
        }
        _ => Ok(()),
    }
}
