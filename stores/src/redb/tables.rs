//! The three tables of a [`RedbStore`](super::RedbStore), and how a store
//! creates them, and fills the user index of a database written before it
//! had one.
//!
//! | table | key | value |
//! | --- | --- | --- |
//! | `{prefix}_sessions` | the store key's 32 bytes | header and JSON (see [`super::codec`]) |
//! | `{prefix}_expiry` | `(expiry in Unix ms, store key)` | `()` |
//! | `{prefix}_users` | `(user, store key)` | `()` |
//!
//! Every write changes all three together, in one transaction, so the
//! indexes name exactly the records with an expiry, and with a user.
//!
//! # Databases from before the user index
//!
//! The previous version had no users table, and wrote values whose header
//! does not name the user (layout version 1). Opening such a database
//! creates the users table and fills it from the sessions' JSON in the same
//! transaction: it commits whole or not at all, so the table's existence
//! says the index is complete, and an interrupted fill is redone on the next
//! open. The values themselves are left as they are (rewriting them all
//! would cost a write of every session); each is rewritten in the new
//! layout by its next write.

use redb::{Database, ReadableTable, TableDefinition, TableError, TableHandle, WriteTransaction};
use sessionkit::StoreError;

use super::codec::Stored;
use super::{Key, RedbDurability, now_ms};

/// The names of the tables of one store.
#[derive(Debug)]
pub(super) struct Tables {
    pub(super) sessions: String,
    pub(super) expiry: String,
    pub(super) users: String,
}

impl Tables {
    pub(super) fn new(prefix: &str) -> Self {
        Self {
            sessions: format!("{prefix}_sessions"),
            expiry: format!("{prefix}_expiry"),
            users: format!("{prefix}_users"),
        }
    }

    /// id → header and JSON.
    pub(super) fn sessions(&self) -> TableDefinition<'_, &'static Key, &'static [u8]> {
        TableDefinition::new(&self.sessions)
    }

    /// (expiry, id) → (), one entry per record with an expiry.
    pub(super) fn expiry(&self) -> TableDefinition<'_, (i64, &'static Key), ()> {
        TableDefinition::new(&self.expiry)
    }

    /// (user, id) → (), one entry per record with a user.
    pub(super) fn users(&self) -> TableDefinition<'_, (&'static str, &'static Key), ()> {
        TableDefinition::new(&self.users)
    }
}

/// Creates the tables (filling the user index of an older database) in one
/// durable transaction with the store's settings, so every way the database
/// could refuse them shows up now, as a configuration error, and not on a
/// request's first write. Returns how many index entries the fill wrote.
pub(super) fn create(db: &Database, tables: &Tables, durability: RedbDurability) -> Result<u64, StoreError> {
    let refused = |message: String| move |err: TableError| StoreError::config_caused_by(message, err);
    let mut txn =
        db.begin_write().map_err(|err| StoreError::config_caused_by("cannot write to the redb database", err))?;
    if durability == RedbDurability::None {
        // Tried here so that a database that refuses it says so now.
        txn.set_durability(redb::Durability::None).map_err(|err| {
            StoreError::config_caused_by("this redb database does not allow RedbDurability::None", err)
        })?;
        txn.set_durability(redb::Durability::Immediate)
            .map_err(|err| StoreError::config_caused_by("cannot make the redb table creation durable", err))?;
    }
    let had_index = txn
        .list_tables()
        .map_err(|err| StoreError::config_caused_by("cannot list the tables of the redb database", err))?
        .any(|table| table.name() == tables.users);
    txn.open_table(tables.sessions())
        .map_err(refused(format!("cannot use `{}` as the sessions table", tables.sessions)))?;
    txn.open_table(tables.expiry())
        .map_err(refused(format!("cannot use `{}` as the session expiry index", tables.expiry)))?;
    txn.open_table(tables.users()).map_err(refused(format!("cannot use `{}` as the user index", tables.users)))?;
    let filled = if had_index { 0 } else { fill_user_index(&txn, tables)? };
    txn.commit().map_err(|err| StoreError::config_caused_by("cannot commit to the redb database", err))?;
    if filled > 0 {
        tracing::info!(sessions = filled, "redb store: built the user index of a database written before it had one");
    }
    Ok(filled)
}

/// Adds an index entry for every live session with a user. Corrupt values
/// are skipped (they read as absent), expired ones too (the sweep removes
/// them).
fn fill_user_index(txn: &WriteTransaction, tables: &Tables) -> Result<u64, StoreError> {
    let failed = |err: redb::StorageError| StoreError::config_caused_by("cannot build the redb user index", err);
    let sessions = txn
        .open_table(tables.sessions())
        .map_err(|err| StoreError::config_caused_by("cannot build the redb user index", err))?;
    let mut users = txn
        .open_table(tables.users())
        .map_err(|err| StoreError::config_caused_by("cannot build the redb user index", err))?;
    let now = now_ms();
    let mut filled = 0;
    for entry in sessions.iter().map_err(failed)? {
        let (key, value) = entry.map_err(failed)?;
        let user = Stored::parse(value.value()).ok().filter(|stored| stored.is_live(now)).and_then(|s| s.user().ok());
        if let Some(Some(user)) = user {
            users.insert((user.as_str(), key.value()), ()).map_err(failed)?;
            filled += 1;
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_follow_the_prefix() {
        let tables = Tables::new("admin");
        assert_eq!(
            (tables.sessions.as_str(), tables.expiry.as_str(), tables.users.as_str()),
            ("admin_sessions", "admin_expiry", "admin_users")
        );
    }
}
