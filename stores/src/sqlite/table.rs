//! The sessions table: its name, validated and quoted, and every statement
//! the store runs against it.
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
/// Positional parameters: `?1` is always the session id.
#[derive(Debug)]
pub(super) struct Sql {
    pub(super) create_table: String,
    pub(super) create_index: String,
    /// `?1` id, `?2` now (ms): the live record's data and expiry.
    pub(super) get: String,
    /// `?1` id, `?2` data, `?3` expiry: insert or replace the whole record.
    pub(super) upsert: String,
    /// `?1` id.
    pub(super) delete: String,
    /// `?1` id, `?2` new expiry, `?3` now: moves a live record's expiry.
    pub(super) touch: String,
    /// `?1` id, `?2` data, `?3` expiry: rewrites a record known to exist.
    pub(super) rewrite: String,
    /// `?1` now, `?2` at most this many rows.
    pub(super) delete_expired: String,
}

impl Sql {
    pub(super) fn new(table: &Table) -> Self {
        let t = quote(&table.name);
        let index = quote(&format!("{}_expires_at", table.name));
        // A live record: expiry is inclusive (a record expires *at* its
        // instant), and `NULL` never expires.
        let live = "(expires_at IS NULL OR expires_at > ?2)";
        Self {
            // A rowid table rather than WITHOUT ROWID: session rows are often
            // larger than the ~1/20 of a page where WITHOUT ROWID pays off,
            // and the primary key index keeps lookups by id to one search.
            create_table: format!(
                "CREATE TABLE IF NOT EXISTS {t} (id TEXT PRIMARY KEY NOT NULL, data TEXT NOT NULL, expires_at INTEGER)"
            ),
            create_index: format!("CREATE INDEX IF NOT EXISTS {index} ON {t} (expires_at)"),
            get: format!("SELECT data, expires_at FROM {t} WHERE id = ?1 AND {live}"),
            upsert: format!(
                "INSERT INTO {t} (id, data, expires_at) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (id) DO UPDATE SET data = excluded.data, expires_at = excluded.expires_at"
            ),
            delete: format!("DELETE FROM {t} WHERE id = ?1"),
            touch: format!("UPDATE {t} SET expires_at = ?2 WHERE id = ?1 AND (expires_at IS NULL OR expires_at > ?3)"),
            rewrite: format!("UPDATE {t} SET data = ?2, expires_at = ?3 WHERE id = ?1"),
            delete_expired: format!("DELETE FROM {t} WHERE id IN (SELECT id FROM {t} WHERE expires_at <= ?1 LIMIT ?2)"),
        }
    }

    /// The statements a working store runs, for checking up front that an
    /// existing table has the columns and the key they need.
    pub(super) fn all_queries(&self) -> [&str; 6] {
        [&self.get, &self.upsert, &self.delete, &self.touch, &self.rewrite, &self.delete_expired]
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
        for query in sql.all_queries() {
            assert!(query.contains("\"my_sessions\""), "{query}");
        }
    }

    #[test]
    fn quoting_escapes_embedded_quotes() {
        assert_eq!(quote("a\"b"), "\"a\"\"b\"");
    }
}
