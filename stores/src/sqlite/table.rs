//! The sessions table (and its lease table): its name, validated and
//! quoted, and every statement the store runs against them.
//!
//! A table name is the one piece of SQL text a caller configures, so it is
//! checked against a plain-identifier grammar before any statement is built
//! and then always written quoted. Every value (ids, data, instants) goes
//! through a bound parameter, never through the SQL text.

use sessionkit::StoreError;

/// The table a store uses unless told otherwise.
pub(super) const DEFAULT_TABLE: &str = "http_sessions";

/// The longest accepted table name, in bytes (all of them ASCII).
const MAX_LEN: usize = 63;

/// A validated table name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Table {
    name: String,
}

impl Table {
    /// Accepts `[A-Za-z_][A-Za-z0-9_]{0,62}`, except names SQLite keeps for
    /// itself (`sqlite_...`). Anything else is a configuration error that
    /// names the rejected input and says which rule it broke.
    pub(super) fn new(name: &str) -> Result<Self, StoreError> {
        let reject = |why: &str| StoreError::config(format!("invalid SQLite session table name {name:?}: {why}"));
        let Some(first) = name.chars().next() else {
            return Err(reject("it is empty"));
        };
        if name.len() > MAX_LEN {
            return Err(reject("it is longer than 63 bytes"));
        }
        if !(first.is_ascii_alphabetic() || first == '_') {
            return Err(reject("it must start with an ASCII letter or `_`"));
        }
        if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(reject("it may contain only ASCII letters, digits and `_`"));
        }
        if name.get(..7).is_some_and(|prefix| prefix.eq_ignore_ascii_case("sqlite_")) {
            return Err(reject("names starting with `sqlite_` are reserved by SQLite"));
        }
        Ok(Self { name: name.to_owned() })
    }

    /// The name as given.
    pub(super) fn name(&self) -> &str {
        &self.name
    }
}

/// `ident` as a quoted SQL identifier. Validation already rules out quotes;
/// escaping them anyway keeps this function safe on its own.
fn quote(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

/// The text of every statement, built once per store from its table name.
/// Positional parameters: `?1` is always the session id (or, for the user
/// index, the user).
///
/// Besides the sessions table `T` (`id`, `data`, `expires_at`, `user`), a
/// store keeps its exclusive leases in `T_leases` (`id`, `token`,
/// `expires_at`), and indexes `T_expires_at`, `T_user` (partial: sessions
/// with a user only) and `T_leases_expires_at`.
#[derive(Debug)]
pub(super) struct Sql {
    pub(super) create_table: String,
    pub(super) create_index: String,
    /// The user index: partial, so that sessions without a user cost it
    /// nothing. `user = ?` implies `user IS NOT NULL`, which lets SQLite use
    /// a partial index for it.
    pub(super) create_user_index: String,
    pub(super) create_leases: String,
    pub(super) create_leases_index: String,
    /// `?1` the table's name: whether it has the `user` column (tables
    /// written before the user index lack it).
    pub(super) has_user_column: String,
    /// Adds the `user` column to a table of the previous layout.
    pub(super) add_user_column: String,
    /// Fills `user` from each row's data, with SQLite's JSON functions, as
    /// [`sessionkit::reserved::user_of`] reads it (a string under
    /// `__sessionkit.user`); rows whose data is not JSON text keep `NULL`.
    /// The nested `CASE`s, because SQLite does not promise to short-circuit
    /// `AND`, and `json_type` fails on malformed JSON.
    pub(super) backfill_users: String,
    /// The statements of the previous layout, which a table must accept
    /// before it is migrated: a foreign table of the same name is left alone.
    pub(super) legacy: [String; 2],
    /// `?1` id, `?2` now (ms): the live record's data and expiry.
    pub(super) get: String,
    /// `?1` id, `?2` data, `?3` expiry, `?4` user: insert or replace the
    /// whole record.
    pub(super) upsert: String,
    /// `?1` id.
    pub(super) delete: String,
    /// `?1` id, `?2` new expiry, `?3` now: moves a live record's expiry.
    pub(super) touch: String,
    /// `?1` id, `?2` now: the live record's data, expiry and `user` column,
    /// for a read-modify-write.
    pub(super) get_for_update: String,
    /// `?1` id, `?2` data, `?3` expiry, `?4` user: rewrites a record known
    /// to exist.
    pub(super) rewrite: String,
    /// `?1` id, `?2` data, `?3` expiry: rewrites a record known to exist
    /// whose `user` stays as it is. Leaving the column out of the `SET`
    /// spares SQLite the update of the user index.
    pub(super) rewrite_data: String,
    /// `?1` now, `?2` at most this many rows.
    pub(super) delete_expired: String,
    /// `?1` user, `?2` now: data, expiry and id of the user's live records.
    pub(super) sessions_of: String,
    /// `?1` id, `?2` user, `?3` now: deletes the record if it is live and
    /// the user's.
    pub(super) revoke: String,
    /// `?1` user, `?2` the id to spare (or `NULL`), `?3` now: deletes the
    /// user's other live records.
    pub(super) revoke_all: String,
    /// `?1` after this id, `?2` now, `?3` at most this many: data, expiry
    /// and id of live records, in id order.
    pub(super) scan: String,
    /// `?1` id, `?2` token, `?3` expiry, `?4` now: takes the lease if nobody
    /// holds it or its holder's ran out; one row changed when granted.
    pub(super) lease_take: String,
    /// `?1` id, `?2` token: ends the lease if that token still holds it.
    pub(super) lease_release: String,
    /// `?1` id, `?2` token, `?3` now: one row while that lease is live.
    pub(super) lease_held: String,
    /// `?1` now, `?2` at most this many: removes leases that ran out.
    pub(super) lease_sweep: String,
}

impl Sql {
    pub(super) fn new(table: &Table) -> Self {
        let t = quote(&table.name);
        let index = quote(&format!("{}_expires_at", table.name));
        let user_index = quote(&format!("{}_user", table.name));
        let l = quote(&format!("{}_leases", table.name));
        let lease_index = quote(&format!("{}_leases_expires_at", table.name));
        // A live record: expiry is inclusive (a record expires *at* its
        // instant), and `NULL` never expires.
        let live = |now: &str| format!("(expires_at IS NULL OR expires_at > {now})");
        let user_path = format!("'$.\"{}\"'", sessionkit::reserved::USER);
        let text = "CAST(data AS TEXT)";
        Self {
            // A rowid table rather than WITHOUT ROWID: session rows are often
            // larger than the ~1/20 of a page where WITHOUT ROWID pays off,
            // and the primary key index keeps lookups by id to one search.
            create_table: format!(
                "CREATE TABLE IF NOT EXISTS {t} \
                 (id TEXT PRIMARY KEY NOT NULL, data TEXT NOT NULL, expires_at INTEGER, \"user\" TEXT)"
            ),
            create_index: format!("CREATE INDEX IF NOT EXISTS {index} ON {t} (expires_at)"),
            create_user_index: format!(
                "CREATE INDEX IF NOT EXISTS {user_index} ON {t} (\"user\") WHERE \"user\" IS NOT NULL"
            ),
            create_leases: format!(
                "CREATE TABLE IF NOT EXISTS {l} \
                 (id TEXT PRIMARY KEY NOT NULL, token TEXT NOT NULL, expires_at INTEGER NOT NULL)"
            ),
            create_leases_index: format!("CREATE INDEX IF NOT EXISTS {lease_index} ON {l} (expires_at)"),
            has_user_column: "SELECT count(*) FROM pragma_table_info(?1) WHERE lower(name) = 'user'".to_owned(),
            add_user_column: format!("ALTER TABLE {t} ADD COLUMN \"user\" TEXT"),
            backfill_users: format!(
                "UPDATE {t} SET \"user\" = \
                 CASE WHEN typeof(data) IN ('text', 'blob') AND json_valid({text}) THEN \
                   CASE WHEN json_type({text}, {user_path}) = 'text' THEN json_extract({text}, {user_path}) END \
                 END"
            ),
            legacy: [
                format!(
                    "INSERT INTO {t} (id, data, expires_at) VALUES (?1, ?2, ?3) \
                     ON CONFLICT (id) DO UPDATE SET data = excluded.data, expires_at = excluded.expires_at"
                ),
                format!("SELECT data, expires_at FROM {t} WHERE id = ?1"),
            ],
            get: format!("SELECT data, expires_at FROM {t} WHERE id = ?1 AND {}", live("?2")),
            upsert: format!(
                "INSERT INTO {t} (id, data, expires_at, \"user\") VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT (id) DO UPDATE SET data = excluded.data, expires_at = excluded.expires_at, \
                 \"user\" = excluded.\"user\""
            ),
            delete: format!("DELETE FROM {t} WHERE id = ?1"),
            touch: format!("UPDATE {t} SET expires_at = ?2 WHERE id = ?1 AND {}", live("?3")),
            get_for_update: format!("SELECT data, expires_at, \"user\" FROM {t} WHERE id = ?1 AND {}", live("?2")),
            rewrite: format!("UPDATE {t} SET data = ?2, expires_at = ?3, \"user\" = ?4 WHERE id = ?1"),
            rewrite_data: format!("UPDATE {t} SET data = ?2, expires_at = ?3 WHERE id = ?1"),
            delete_expired: format!("DELETE FROM {t} WHERE id IN (SELECT id FROM {t} WHERE expires_at <= ?1 LIMIT ?2)"),
            sessions_of: format!("SELECT data, expires_at, id FROM {t} WHERE \"user\" = ?1 AND {}", live("?2")),
            revoke: format!("DELETE FROM {t} WHERE id = ?1 AND \"user\" = ?2 AND {}", live("?3")),
            revoke_all: format!("DELETE FROM {t} WHERE \"user\" = ?1 AND id IS NOT ?2 AND {}", live("?3")),
            scan: format!("SELECT data, expires_at, id FROM {t} WHERE id > ?1 AND {} ORDER BY id LIMIT ?3", live("?2")),
            lease_take: format!(
                "INSERT INTO {l} (id, token, expires_at) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (id) DO UPDATE SET token = excluded.token, expires_at = excluded.expires_at \
                 WHERE {l}.expires_at <= ?4"
            ),
            lease_release: format!("DELETE FROM {l} WHERE id = ?1 AND token = ?2"),
            lease_held: format!("SELECT 1 FROM {l} WHERE id = ?1 AND token = ?2 AND expires_at > ?3"),
            lease_sweep: format!("DELETE FROM {l} WHERE id IN (SELECT id FROM {l} WHERE expires_at <= ?1 LIMIT ?2)"),
        }
    }

    /// The statements a working store runs, for checking up front that
    /// existing tables have the columns and the keys they need.
    pub(super) fn all_queries(&self) -> [&str; 16] {
        [
            &self.get,
            &self.upsert,
            &self.delete,
            &self.touch,
            &self.get_for_update,
            &self.rewrite,
            &self.rewrite_data,
            &self.delete_expired,
            &self.sessions_of,
            &self.revoke,
            &self.revoke_all,
            &self.scan,
            &self.lease_take,
            &self.lease_release,
            &self.lease_held,
            &self.lease_sweep,
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_identifiers_are_accepted() {
        for name in ["http_sessions", "_x", "S", "a1_B2", &"x".repeat(63)] {
            assert_eq!(Table::new(name).expect(name).name(), name);
        }
    }

    #[test]
    fn everything_else_is_rejected_with_the_rule_it_broke() {
        let cases = [
            ("", "empty"),
            ("x; DROP TABLE y", "only ASCII letters"),
            ("\"quoted\"", "start with"),
            ("a\"b", "only ASCII letters"),
            ("1abc", "start with"),
            ("sessions-2", "only ASCII letters"),
            ("séssions", "only ASCII letters"),
            ("with space", "only ASCII letters"),
            ("nul\0", "only ASCII letters"),
            ("sqlite_master", "reserved"),
            ("SQLite_sessions", "reserved"),
        ];
        for (name, why) in cases {
            let err = Table::new(name).expect_err(name).to_string();
            assert!(err.contains(why), "{name:?}: {err}");
            assert!(err.contains(&format!("{name:?}")), "the error must name the input: {err}");
        }
        let long = "x".repeat(64);
        assert!(Table::new(&long).expect_err("too long").to_string().contains("longer than 63"));
    }

    #[test]
    fn statements_quote_the_table_name() {
        let sql = Sql::new(&Table::new("my_sessions").expect("valid"));
        assert!(sql.create_table.contains("\"my_sessions\" ("));
        assert!(sql.create_index.contains("\"my_sessions_expires_at\" ON \"my_sessions\""));
        assert!(sql.create_user_index.contains("\"my_sessions_user\" ON \"my_sessions\" (\"user\")"));
        assert!(sql.create_leases.contains("\"my_sessions_leases\" ("));
        assert!(sql.create_leases_index.contains("\"my_sessions_leases_expires_at\" ON \"my_sessions_leases\""));
        for query in sql.all_queries() {
            assert!(query.contains("\"my_sessions\"") || query.contains("\"my_sessions_leases\""), "{query}");
        }
    }

    #[test]
    fn quoting_escapes_embedded_quotes() {
        assert_eq!(quote("a\"b"), "\"a\"\"b\"");
    }
}
