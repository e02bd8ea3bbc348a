//! The sessions table: its name, validated and quoted, the schema file with
//! that name put in, and every statement the store runs against it.
//!
//! The table name is the one piece of SQL text a caller configures, so it is
//! checked against a plain-identifier grammar before any statement is built
//! and then always written quoted. Every value (keys, data, instants) goes
//! through a bound parameter, never through the SQL text.

use sessionkit::StoreError;

/// The table a store uses unless told otherwise.
pub(super) const DEFAULT_TABLE: &str = "http_sessions";

/// The schema, with `{table}` and `{index}` for the quoted names.
const SCHEMA_TEMPLATE: &str = include_str!("../../sql/postgres.sql");

/// PostgreSQL's longest identifier, in bytes (`NAMEDATALEN - 1`); longer
/// ones are silently truncated by the server, so they are refused here.
const MAX_IDENT: usize = 63;

/// What the expiry index's name adds to the table's.
const INDEX_SUFFIX: &str = "_expires_at";

/// A validated table name: `name` or `schema.name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Table {
    schema: Option<String>,
    name: String,
    /// `name` or `schema.name`, as given.
    shown: String,
}

impl Table {
    /// Accepts `name` or `schema.name`, each part `[a-z_][a-z0-9_]*` of at
    /// most 63 bytes and not starting with `pg_`. Anything else is a
    /// configuration error that names the input and the rule it broke.
    pub(super) fn new(spec: &str) -> Result<Self, StoreError> {
        let reject = |why: &str| StoreError::config(format!("invalid PostgreSQL session table name {spec:?}: {why}"));
        let (schema, name) = match spec.split_once('.') {
            Some((schema, name)) => (Some(schema), name),
            None => (None, spec),
        };
        for part in schema.into_iter().chain([name]) {
            check_identifier(part).map_err(|why| reject(&why))?;
        }
        Ok(Self { schema: schema.map(str::to_owned), name: name.to_owned(), shown: spec.to_owned() })
    }

    /// The name as given: `name` or `schema.name`.
    pub(super) fn display(&self) -> &str {
        &self.shown
    }

    /// The schema part, quoted, if one was given.
    pub(super) fn quoted_schema(&self) -> Option<String> {
        self.schema.as_deref().map(quote)
    }

    /// The name as SQL: `"name"` or `"schema"."name"`.
    pub(super) fn quoted(&self) -> String {
        match &self.schema {
            Some(schema) => format!("{}.{}", quote(schema), quote(&self.name)),
            None => quote(&self.name),
        }
    }

    /// The expiry index's name, quoted. An index lives in its table's
    /// schema, so it is never qualified; a long table name is cut so that
    /// the index name stays within 63 bytes (the name is ASCII, so any cut
    /// falls between characters).
    fn quoted_index(&self) -> String {
        let keep = self.name.len().min(MAX_IDENT - INDEX_SUFFIX.len());
        quote(&format!("{}{INDEX_SUFFIX}", &self.name[..keep]))
    }

    /// The key of the advisory lock that serialises creating this table, so
    /// that app servers starting together do not race on `CREATE TABLE IF
    /// NOT EXISTS` (which can fail on a concurrent creation). FNV-1a: fixed
    /// across builds and platforms, unlike std's hasher.
    pub(super) fn lock_key(&self) -> i64 {
        let hash = self
            .quoted()
            .bytes()
            .chain(*b"sessionkit")
            .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3));
        i64::from_ne_bytes(hash.to_ne_bytes())
    }

    /// The schema file with this table's names put in.
    pub(super) fn schema_sql(&self) -> String {
        SCHEMA_TEMPLATE.replace("{table}", &self.quoted()).replace("{index}", &self.quoted_index())
    }
}

/// Why `part` is not an identifier this store accepts, if it is not.
fn check_identifier(part: &str) -> Result<(), String> {
    let Some(first) = part.chars().next() else {
        return Err("a name or schema is empty".into());
    };
    if part.len() > MAX_IDENT {
        return Err(format!("{part:?} is longer than {MAX_IDENT} bytes"));
    }
    if !(first.is_ascii_alphabetic() || first == '_') {
        return Err(format!("{part:?} must start with a lowercase ASCII letter or `_`"));
    }
    if !part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(format!(
            "{part:?} may contain only lowercase ASCII letters, digits and `_` (and one `.` after a schema)"
        ));
    }
    if part.chars().any(|c| c.is_ascii_uppercase()) {
        // The store quotes names, so `Sessions` would be a different table
        // from the `sessions` an unquoted `CREATE TABLE Sessions` makes.
        return Err("use lowercase: PostgreSQL folds unquoted names to lowercase, so a quoted \
                    mixed-case name would not be the table your SQL calls by that name"
            .into());
    }
    if part.starts_with("pg_") {
        return Err(format!("{part:?}: names starting with `pg_` are reserved by PostgreSQL"));
    }
    Ok(())
}

/// `ident` as a quoted SQL identifier. Validation already rules out quotes;
/// escaping them anyway keeps this function safe on its own.
fn quote(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

/// The text of every statement, built once per store from its table name.
/// `$1` is always the store key where there is one.
#[derive(Debug)]
pub(super) struct Sql {
    /// `$1` key, `$2` now (ms): the live record's data and expiry.
    pub(super) get: String,
    /// `$1` key, `$2` data, `$3` expiry: insert or replace the whole record.
    pub(super) upsert: String,
    /// `$1` key.
    pub(super) delete: String,
    /// `$1` key, `$2` new expiry, `$3` now: moves a live record's expiry.
    pub(super) touch: String,
    /// `$1` key, `$2` now: the live record's data, row locked until the
    /// transaction ends.
    pub(super) lock_live: String,
    /// `$1` key, `$2` data, `$3` expiry: rewrites a record locked above.
    pub(super) rewrite: String,
    /// `$1` now, `$2` at most this many rows: deletes expired rows that no
    /// other transaction holds, and reports how many.
    pub(super) delete_expired: String,
}

impl Sql {
    pub(super) fn new(table: &Table) -> Self {
        let t = table.quoted();
        // A live record: expiry is inclusive (a record expires *at* its
        // instant), and NULL never expires.
        let live = |now: &str| format!("(expires_at IS NULL OR expires_at > {now})");
        Self {
            get: format!("SELECT data, expires_at FROM {t} WHERE id = $1 AND {}", live("$2")),
            upsert: format!(
                "INSERT INTO {t} (id, data, expires_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (id) DO UPDATE SET data = EXCLUDED.data, expires_at = EXCLUDED.expires_at"
            ),
            delete: format!("DELETE FROM {t} WHERE id = $1"),
            touch: format!("UPDATE {t} SET expires_at = $2 WHERE id = $1 AND {}", live("$3")),
            lock_live: format!("SELECT data FROM {t} WHERE id = $1 AND {} FOR UPDATE", live("$2")),
            rewrite: format!("UPDATE {t} SET data = $2, expires_at = $3 WHERE id = $1"),
            // SKIP LOCKED: sweepers on several app servers take disjoint
            // batches instead of queueing behind one another, and a row a
            // request holds is left for the next sweep.
            delete_expired: format!(
                "DELETE FROM {t} WHERE id IN \
                 (SELECT id FROM {t} WHERE expires_at <= $1 LIMIT $2 FOR UPDATE SKIP LOCKED)"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_schema_qualified_names_are_accepted() {
        for spec in ["http_sessions", "_x", "a1_b2", "app.sessions", "_s._t", &"x".repeat(63)] {
            assert_eq!(Table::new(spec).expect(spec).display(), spec);
        }
        let qualified = Table::new("app.sessions").expect("valid");
        assert_eq!(qualified.quoted(), "\"app\".\"sessions\"");
        assert_eq!(qualified.quoted_schema().as_deref(), Some("\"app\""));
        assert_eq!(Table::new("sessions").expect("valid").quoted_schema(), None);
    }

    #[test]
    fn everything_else_is_rejected_with_the_rule_it_broke() {
        let cases = [
            ("", "empty"),
            (".sessions", "empty"),
            ("app.", "empty"),
            ("a.b.c", "only lowercase"),
            ("x; DROP TABLE y", "only lowercase"),
            ("\"quoted\"", "start with"),
            ("a\"b", "only lowercase"),
            ("a'b", "only lowercase"),
            ("1abc", "start with"),
            ("sessions-2", "only lowercase"),
            ("séssions", "only lowercase"),
            ("with space", "only lowercase"),
            ("nul\0", "only lowercase"),
            ("Sessions", "use lowercase"),
            ("app.Sessions", "use lowercase"),
            ("pg_sessions", "reserved"),
            ("pg_catalog.sessions", "reserved"),
        ];
        for (spec, why) in cases {
            let err = Table::new(spec).expect_err(spec).to_string();
            assert!(err.contains(why), "{spec:?}: {err}");
            assert!(err.contains(&format!("{spec:?}")), "the error must name the input: {err}");
        }
        let long = "x".repeat(64);
        assert!(Table::new(&long).expect_err("too long").to_string().contains("longer than 63"));
        assert!(Table::new(&format!("app.{long}")).expect_err("too long").to_string().contains("longer than 63"));
    }

    #[test]
    fn the_schema_file_gets_the_quoted_names_and_nothing_else_changes() {
        let sql = Table::new("app.web_sessions").expect("valid").schema_sql();
        assert!(sql.contains("CREATE TABLE IF NOT EXISTS \"app\".\"web_sessions\" ("), "{sql}");
        assert!(sql.contains("CREATE INDEX IF NOT EXISTS \"web_sessions_expires_at\" ON \"app\".\"web_sessions\""));
        assert!(!sql.contains("{table}") && !sql.contains("{index}"), "a placeholder was left: {sql}");
        assert_eq!(
            sql.replace("\"app\".\"web_sessions\"", "{table}").replace("\"web_sessions_expires_at\"", "{index}"),
            SCHEMA_TEMPLATE
        );
    }

    #[test]
    fn index_names_of_long_tables_stay_within_the_limit() {
        let table = Table::new(&"t".repeat(63)).expect("valid");
        let index = table.quoted_index();
        assert_eq!(index.len(), 63 + 2, "{index}");
        assert!(index.ends_with("_expires_at\""));
    }

    #[test]
    fn every_statement_names_the_quoted_table_and_binds_its_values() {
        let sql = Sql::new(&Table::new("app.s").expect("valid"));
        for query in [&sql.get, &sql.upsert, &sql.delete, &sql.touch, &sql.lock_live, &sql.rewrite, &sql.delete_expired]
        {
            assert!(query.contains("\"app\".\"s\""), "{query}");
            assert!(query.contains("$1"), "{query}");
        }
    }

    #[test]
    fn lock_keys_differ_per_table_and_are_stable() {
        let a = Table::new("a").expect("valid").lock_key();
        assert_eq!(a, Table::new("a").expect("valid").lock_key());
        assert_ne!(a, Table::new("b").expect("valid").lock_key());
        assert_ne!(a, Table::new("x.a").expect("valid").lock_key());
    }
}
