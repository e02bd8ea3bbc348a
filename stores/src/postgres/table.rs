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

/// The schema, with `{table}`, `{index}`, `{user_index}`, `{leases}` and
/// `{leases_index}` for the quoted names.
const SCHEMA_TEMPLATE: &str = include_str!("../../sql/postgres.sql");

/// The upgrade from the first layout, with the same names to put in, in
/// three sections the store runs apart (see [`Table::upgrade_steps`]).
const UPGRADE_TEMPLATE: &str = include_str!("../../sql/postgres_upgrade_2.sql");

/// The markers that open the upgrade file's sections.
const UPGRADE_SECTIONS: [&str; 3] = ["-- sessionkit: schema\n", "-- sessionkit: backfill\n", "-- sessionkit: index\n"];

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
    /// falls between characters). Tables of the first layout have their
    /// index under this name, so it stays as it was.
    fn quoted_index(&self) -> String {
        let keep = self.name.len().min(MAX_IDENT - INDEX_SUFFIX.len());
        quote(&format!("{}{INDEX_SUFFIX}", &self.name[..keep]))
    }

    /// The user index's name, quoted (in the table's schema).
    pub(super) fn quoted_user_index(&self) -> String {
        quote(&derived(&self.name, "_user_id"))
    }

    /// The bare name of the user index, as `pg_indexes` lists it.
    pub(super) fn user_index_name(&self) -> String {
        derived(&self.name, "_user_id")
    }

    /// The leases table beside the sessions table, quoted and qualified
    /// like it: `"name_leases"` or `"schema"."name_leases"`.
    pub(super) fn quoted_leases(&self) -> String {
        let leases = derived(&self.name, "_leases");
        match &self.schema {
            Some(schema) => format!("{}.{}", quote(schema), quote(&leases)),
            None => quote(&leases),
        }
    }

    /// The leases table as the user would write it, for messages.
    pub(super) fn leases_display(&self) -> String {
        let leases = derived(&self.name, "_leases");
        match &self.schema {
            Some(schema) => format!("{schema}.{leases}"),
            None => leases,
        }
    }

    /// The leases table's expiry index, quoted.
    fn quoted_leases_index(&self) -> String {
        quote(&derived(&self.name, "_leases_expires_at"))
    }

    /// The key of the advisory lock that serialises creating and upgrading
    /// this table, so that app servers starting together do not race on
    /// `CREATE TABLE IF NOT EXISTS` (which can fail on a concurrent
    /// creation) or run an upgrade twice at once. FNV-1a: fixed across
    /// builds and platforms, unlike std's hasher.
    pub(super) fn lock_key(&self) -> i64 {
        let hash = fnv1a(self.quoted().bytes().chain(*b"sessionkit"));
        i64::from_ne_bytes(hash.to_ne_bytes())
    }

    /// `template` with this table's names put in.
    fn fill(&self, template: &str) -> String {
        template
            .replace("{table}", &self.quoted())
            .replace("{index}", &self.quoted_index())
            .replace("{user_index}", &self.quoted_user_index())
            .replace("{leases}", &self.quoted_leases())
            .replace("{leases_index}", &self.quoted_leases_index())
    }

    /// The schema file with this table's names put in.
    pub(super) fn schema_sql(&self) -> String {
        self.fill(SCHEMA_TEMPLATE)
    }

    /// The upgrade file from the first layout with this table's names put
    /// in, whole: what a team that runs its own migrations applies.
    pub(super) fn upgrade_sql(&self) -> String {
        self.fill(UPGRADE_TEMPLATE)
    }

    /// The upgrade's sections the store runs, names put in: the schema
    /// changes and the user index that marks the upgrade done. The section
    /// between them, the backfill in SQL, the store replaces by its own, in
    /// batches.
    pub(super) fn upgrade_steps(&self) -> UpgradeSteps {
        let sql = self.upgrade_sql();
        let at = |marker: &str| sql.find(marker).unwrap_or(sql.len());
        let (schema, backfill, index) = (at(UPGRADE_SECTIONS[0]), at(UPGRADE_SECTIONS[1]), at(UPGRADE_SECTIONS[2]));
        UpgradeSteps { schema: sql[schema..backfill].to_owned(), index: sql[index..].to_owned() }
    }
}

/// The upgrade from the first layout, in the steps the store runs apart.
#[derive(Debug)]
pub(super) struct UpgradeSteps {
    /// The new column and the leases table: instant, one transaction.
    pub(super) schema: String,
    /// The user index, built last: its presence says the upgrade finished.
    pub(super) index: String,
}

/// FNV-1a of `bytes`: a hash fixed across builds and platforms.
fn fnv1a(bytes: impl IntoIterator<Item = u8>) -> u64 {
    bytes
        .into_iter()
        .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3))
}

/// The name of an object that belongs to table `name`: `name` + `suffix`,
/// or, when that would pass 63 bytes (which PostgreSQL would cut
/// silently), a cut of `name`, a hash of the whole of it and `suffix`, so
/// that two long table names sharing a beginning still get two objects.
fn derived(name: &str, suffix: &str) -> String {
    if name.len() + suffix.len() <= MAX_IDENT {
        return format!("{name}{suffix}");
    }
    let hash = fnv1a(name.bytes()) as u32;
    // `_` and eight hexadecimal digits; the name is ASCII, so any cut falls
    // between characters.
    let keep = MAX_IDENT - suffix.len() - 9;
    format!("{}_{hash:08x}{suffix}", &name[..keep])
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
/// `$1` is always the store key where there is one; instants are Unix ms
/// from the app server's clock.
#[derive(Debug)]
pub(super) struct Sql {
    /// `$1` key, `$2` now: the live record's data and expiry.
    pub(super) get: String,
    /// `$1` key, `$2` data, `$3` expiry, `$4` user: insert or replace the
    /// whole record.
    pub(super) upsert: String,
    /// `$1` key.
    pub(super) delete: String,
    /// `$1` key, `$2` new expiry, `$3` now: moves a live record's expiry.
    pub(super) touch: String,
    /// `$1` key, `$2` now: the live record's data, row locked until the
    /// transaction ends.
    pub(super) lock_live: String,
    /// `$1` key, `$2` data, `$3` expiry, `$4` user: rewrites a record
    /// locked above.
    pub(super) rewrite: String,
    /// `$1` now, `$2` at most this many rows: deletes expired rows that no
    /// other transaction holds, and reports how many.
    pub(super) delete_expired: String,
    /// `$1` user, `$2` now: the user's live records, with their keys.
    pub(super) sessions_of: String,
    /// `$1` key, `$2` user, `$3` now: deletes the record if it is live and
    /// the user's.
    pub(super) revoke: String,
    /// `$1` user, `$2` the key to spare (or NULL), `$3` now: deletes the
    /// user's other live records.
    pub(super) revoke_all: String,
    /// `$1` the last key of the previous page (`''` for the first), `$2`
    /// now, `$3` at most this many: the next live records in key order.
    pub(super) scan: String,
    /// `$1` key, `$2` token, `$3` the new lease's expiry, `$4` now: takes
    /// the lease unless a live one is held; a row back means granted.
    pub(super) try_lease: String,
    /// `$1` key, `$2` token: ends the lease if that token holds it.
    pub(super) release_lease: String,
    /// `$1` key, `$2` token, `$3` now: a row if that token's lease is live,
    /// share-locked so that nobody takes the lease over until the
    /// transaction ends.
    pub(super) lease_held: String,
    /// `$1` now, `$2` at most this many rows: deletes leases that ran out.
    pub(super) delete_expired_leases: String,
    /// `$1` the last key of the previous batch, `$2` at most this many:
    /// rows to backfill the user column of, locked, in key order.
    pub(super) backfill_batch: String,
    /// `$1` keys, `$2` users: sets each row's user column.
    pub(super) backfill_write: String,
}

impl Sql {
    pub(super) fn new(table: &Table) -> Self {
        let t = table.quoted();
        let leases = table.quoted_leases();
        // A live record: expiry is inclusive (a record expires *at* its
        // instant), and NULL never expires.
        let live = |now: &str| format!("(expires_at IS NULL OR expires_at > {now})");
        Self {
            get: format!("SELECT data, expires_at FROM {t} WHERE id = $1 AND {}", live("$2")),
            upsert: format!(
                "INSERT INTO {t} (id, data, expires_at, user_id) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (id) DO UPDATE \
                 SET data = EXCLUDED.data, expires_at = EXCLUDED.expires_at, user_id = EXCLUDED.user_id"
            ),
            delete: format!("DELETE FROM {t} WHERE id = $1"),
            touch: format!("UPDATE {t} SET expires_at = $2 WHERE id = $1 AND {}", live("$3")),
            lock_live: format!("SELECT data FROM {t} WHERE id = $1 AND {} FOR UPDATE", live("$2")),
            rewrite: format!("UPDATE {t} SET data = $2, expires_at = $3, user_id = $4 WHERE id = $1"),
            // SKIP LOCKED: sweepers on several app servers take disjoint
            // batches instead of queueing behind one another, and a row a
            // request holds is left for the next sweep.
            delete_expired: format!(
                "DELETE FROM {t} WHERE id IN \
                 (SELECT id FROM {t} WHERE expires_at <= $1 LIMIT $2 FOR UPDATE SKIP LOCKED)"
            ),
            sessions_of: format!("SELECT id, data, expires_at FROM {t} WHERE user_id = $1 AND {}", live("$2")),
            revoke: format!("DELETE FROM {t} WHERE id = $1 AND user_id = $2 AND {}", live("$3")),
            revoke_all: format!(
                "DELETE FROM {t} WHERE user_id = $1 AND ($2::text IS NULL OR id <> $2) AND {}",
                live("$3")
            ),
            scan: format!("SELECT id, data, expires_at FROM {t} WHERE id > $1 AND {} ORDER BY id LIMIT $3", live("$2")),
            // One statement: of concurrent takers, the first insert (or the
            // first update of a lease that ran out) wins, and the others
            // find its live lease, so they get no row.
            try_lease: format!(
                "INSERT INTO {leases} AS held (id, token, expires_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (id) DO UPDATE SET token = EXCLUDED.token, expires_at = EXCLUDED.expires_at \
                 WHERE held.expires_at <= $4 \
                 RETURNING held.expires_at"
            ),
            release_lease: format!("DELETE FROM {leases} WHERE id = $1 AND token = $2"),
            lease_held: format!("SELECT 1 FROM {leases} WHERE id = $1 AND token = $2 AND expires_at > $3 FOR SHARE"),
            delete_expired_leases: format!(
                "DELETE FROM {leases} WHERE id IN \
                 (SELECT id FROM {leases} WHERE expires_at <= $1 LIMIT $2 FOR UPDATE SKIP LOCKED)"
            ),
            backfill_batch: format!("SELECT id, data, user_id FROM {t} WHERE id > $1 ORDER BY id LIMIT $2 FOR UPDATE"),
            backfill_write: format!(
                "UPDATE {t} SET user_id = filled.user_id \
                 FROM unnest($1::text[], $2::text[]) AS filled (id, user_id) WHERE {t}.id = filled.id"
            ),
        }
    }

    /// Every statement, for checks that go through all of them.
    pub(super) fn all(&self) -> [&str; 17] {
        [
            &self.get,
            &self.upsert,
            &self.delete,
            &self.touch,
            &self.lock_live,
            &self.rewrite,
            &self.delete_expired,
            &self.sessions_of,
            &self.revoke,
            &self.revoke_all,
            &self.scan,
            &self.try_lease,
            &self.release_lease,
            &self.lease_held,
            &self.delete_expired_leases,
            &self.backfill_batch,
            &self.backfill_write,
        ]
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

    /// Puts the placeholders back where `table`'s names went in.
    fn unfilled(table: &Table, sql: &str) -> String {
        sql.replace(&table.quoted_leases(), "{leases}")
            .replace(&table.quoted(), "{table}")
            .replace(&table.quoted_index(), "{index}")
            .replace(&table.quoted_user_index(), "{user_index}")
            .replace(&table.quoted_leases_index(), "{leases_index}")
    }

    #[test]
    fn the_schema_files_get_the_quoted_names_and_nothing_else_changes() {
        let table = Table::new("app.web_sessions").expect("valid");
        let sql = table.schema_sql();
        assert!(sql.contains("CREATE TABLE IF NOT EXISTS \"app\".\"web_sessions\" ("), "{sql}");
        assert!(sql.contains("CREATE INDEX IF NOT EXISTS \"web_sessions_expires_at\" ON \"app\".\"web_sessions\""));
        assert!(
            sql.contains("CREATE INDEX IF NOT EXISTS \"web_sessions_user_id\" ON \"app\".\"web_sessions\" (user_id)")
        );
        assert!(sql.contains("CREATE TABLE IF NOT EXISTS \"app\".\"web_sessions_leases\" ("), "{sql}");
        let upgrade = table.upgrade_sql();
        assert!(upgrade.contains("ALTER TABLE \"app\".\"web_sessions\" ADD COLUMN IF NOT EXISTS user_id"));
        for filled in [&sql, &upgrade] {
            for placeholder in ["{table}", "{index}", "{user_index}", "{leases}", "{leases_index}"] {
                assert!(!filled.contains(placeholder), "{placeholder} was left: {filled}");
            }
        }
        assert_eq!(unfilled(&table, &sql), SCHEMA_TEMPLATE);
        assert_eq!(unfilled(&table, &upgrade), UPGRADE_TEMPLATE);
    }

    #[test]
    fn the_upgrade_makes_the_same_leases_table_as_the_schema_and_has_its_three_steps() {
        let block = |sql: &str| {
            let start = sql.find("CREATE TABLE IF NOT EXISTS {leases}").expect("the leases table");
            let end = sql[start..].find("(expires_at);").expect("its index") + start;
            sql[start..end].to_owned()
        };
        assert_eq!(block(SCHEMA_TEMPLATE), block(UPGRADE_TEMPLATE));
        let steps = Table::new("s").expect("valid").upgrade_steps();
        assert!(steps.schema.starts_with(UPGRADE_SECTIONS[0]) && steps.schema.contains("ADD COLUMN IF NOT EXISTS"));
        assert!(steps.schema.contains("CREATE TABLE IF NOT EXISTS \"s_leases\""));
        let backfill = UPGRADE_TEMPLATE.find(UPGRADE_SECTIONS[1]).expect("the backfill section");
        assert!(UPGRADE_TEMPLATE[backfill..].contains("DO $backfill$"));
        assert!(backfill < UPGRADE_TEMPLATE.find(UPGRADE_SECTIONS[2]).expect("the index section"));
        assert!(steps.index.starts_with(UPGRADE_SECTIONS[2]) && steps.index.contains("\"s_user_id\""));
        assert!(!steps.schema.contains("DO $") && !steps.index.contains("DO $"));
    }

    #[test]
    fn names_of_long_tables_stay_within_the_limit_and_apart() {
        let table = Table::new(&"t".repeat(63)).expect("valid");
        let index = table.quoted_index();
        assert_eq!(index.len(), 63 + 2, "{index}");
        assert!(index.ends_with("_expires_at\""));
        let (a, b) = (format!("{}a", "t".repeat(62)), format!("{}b", "t".repeat(62)));
        let (a, b) = (Table::new(&a).expect("valid"), Table::new(&b).expect("valid"));
        for (name_a, name_b) in [
            (a.quoted_leases(), b.quoted_leases()),
            (a.quoted_user_index(), b.quoted_user_index()),
            (a.quoted_leases_index(), b.quoted_leases_index()),
        ] {
            assert!(name_a.len() <= 63 + 2, "{name_a}");
            assert_ne!(name_a, name_b, "two long tables share an object");
        }
        assert!(a.quoted_leases().ends_with("_leases\""));
        assert_eq!(Table::new("s").expect("valid").quoted_leases(), "\"s_leases\"");
        assert_eq!(Table::new("app.s").expect("valid").quoted_leases(), "\"app\".\"s_leases\"");
        assert_eq!(Table::new("app.s").expect("valid").leases_display(), "app.s_leases");
    }

    #[test]
    fn every_statement_names_the_quoted_table_and_binds_its_values() {
        let sql = Sql::new(&Table::new("app.s").expect("valid"));
        for query in sql.all() {
            assert!(query.contains("\"app\".\"s"), "{query}");
            assert!(query.contains("$1"), "{query}");
        }
        for lease_query in [&sql.try_lease, &sql.release_lease, &sql.lease_held, &sql.delete_expired_leases] {
            assert!(lease_query.contains("\"app\".\"s_leases\""), "{lease_query}");
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
