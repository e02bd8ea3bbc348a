//! Preparing the tables when a store is built: creating them on demand,
//! upgrading a table of the first layout, and checking that existing ones
//! have the shape the statements need.
//!
//! Every problem a store can know about before its first request is
//! reported here, as a [`StoreError::Config`] that says what to do, rather
//! than as a 500 on every request later: a missing table when creation is
//! off, a table of the first layout when creation is off, a table of
//! another shape, no right to create it.
//!
//! Creating and upgrading run under one advisory lock per table, held by a
//! connection of their own for as long as the work takes: app servers
//! starting at once wait for the first one's work instead of racing it,
//! then find nothing left to do. The connection is taken out of the pool,
//! so that if the work fails or is abandoned (a timeout), closing it
//! releases the lock and rolls back whatever was under way.

use std::time::Duration;

use sessionkit::StoreError;
use sqlx::{Connection, Executor, PgConnection, PgPool};

use super::backfill;
use super::table::{Sql, Table};

/// The sessions table's columns the statements need, with the types
/// `format_type` names.
const COLUMNS: [(&str, &[&str]); 4] = [
    ("id", &["text", "character varying"]),
    ("data", &["bytea"]),
    ("expires_at", &["bigint"]),
    ("user_id", &["text", "character varying"]),
];

/// The leases table's columns.
const LEASE_COLUMNS: [(&str, &[&str]); 3] =
    [("id", &["text", "character varying"]), ("token", &["text", "character varying"]), ("expires_at", &["bigint"])];

/// The DDL to point at in errors about an existing table.
const EXPECTED: &str = "id TEXT PRIMARY KEY, data BYTEA NOT NULL, expires_at BIGINT, user_id TEXT \
                        (see PostgresStore::schema_sql)";

/// What the database holds of the store's objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Found {
    table: bool,
    user_column: bool,
    user_index: bool,
    leases: bool,
}

impl Found {
    /// Whether the store can run on what is there. A store that creates
    /// its tables also wants its own user index, the mark of a finished
    /// upgrade; a team that migrates itself may index the column as it
    /// likes.
    fn ready(self, create: bool) -> bool {
        self.table && self.user_column && self.leases && (self.user_index || !create)
    }
}

/// Creates or upgrades the tables as needed (when `create` is on), then
/// checks them. Quick steps are bounded by `setup_timeout`; creating and
/// upgrading, which may wait for another app server's and backfill a large
/// table, by `migration_timeout`.
pub(super) async fn prepare(
    pool: &PgPool,
    table: &Table,
    sql: &Sql,
    create: bool,
    setup_timeout: Duration,
    migration_timeout: Duration,
) -> Result<(), StoreError> {
    let found = bounded(setup_timeout, inspect(pool, table)).await?;
    if !found.ready(create) {
        if found.table {
            // Only a table of the first layout is upgraded: anything else
            // is left as it is, and reported.
            bounded(setup_timeout, check_first_layout(pool, table)).await?;
        }
        if !create {
            return Err(not_ready(table, found));
        }
        bounded(migration_timeout, migrate(pool, table, sql)).await?;
    }
    bounded(setup_timeout, async {
        check_columns(pool, table).await?;
        check_statements(pool, sql).await
    })
    .await
}

/// Runs `work` for at most `limit`.
async fn bounded<T>(limit: Duration, work: impl Future<Output = Result<T, StoreError>>) -> Result<T, StoreError> {
    tokio::time::timeout(limit, work).await.unwrap_or(Err(StoreError::Timeout(limit)))
}

/// The error for tables that are not ready while creation is off.
fn not_ready(table: &Table, found: Found) -> StoreError {
    let shown = table.display();
    if !found.table {
        return StoreError::config(format!(
            "the session table {shown:?} does not exist, and creating it is turned off \
             (create_table(false)); apply PostgresStore::schema_sql to the database first"
        ));
    }
    StoreError::config(format!(
        "the session table {shown:?} has the layout of an earlier version of PostgresStore \
         (it lacks {}), and creating or upgrading tables is turned off (create_table(false)); \
         apply PostgresStore::upgrade_sql({shown:?}) (stores/sql/postgres_upgrade_2.sql) to the \
         database first, or open the store once with create_table(true) to upgrade it",
        if found.user_column {
            format!("the leases table {}", table.leases_display())
        } else {
            "the user_id column".into()
        }
    ))
}

/// What exists, as the store's statements would find it (an unqualified
/// name through the connection's `search_path`).
async fn inspect<'c, E>(db: E, table: &Table) -> Result<Found, StoreError>
where
    E: Executor<'c, Database = sqlx::Postgres>,
{
    let (table_found, user_column, user_index, leases): (bool, bool, bool, bool) = sqlx::query_as(
        "SELECT to_regclass($1) IS NOT NULL, \
                EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass($1) \
                        AND attname = 'user_id' AND NOT attisdropped), \
                EXISTS (SELECT 1 FROM pg_index JOIN pg_class ON pg_class.oid = pg_index.indexrelid \
                        WHERE pg_index.indrelid = to_regclass($1) AND pg_class.relname = $2), \
                to_regclass($3) IS NOT NULL",
    )
    .bind(table.quoted())
    .bind(table.user_index_name())
    .bind(table.quoted_leases())
    .fetch_one(db)
    .await
    .map_err(|err| setup_error(format!("cannot look up the session table {:?}", table.display()), err))?;
    Ok(Found { table: table_found, user_column, user_index, leases })
}

/// Creates the tables, or upgrades a table of the first layout, under the
/// table's advisory lock, on a connection of its own.
async fn migrate(pool: &PgPool, table: &Table, sql: &Sql) -> Result<(), StoreError> {
    let shown = table.display();
    let fail = |err| setup_error(format!("cannot create or upgrade the session table {shown:?}"), err);
    // Out of the pool: dropped (on an error or a timeout), it is closed,
    // and the server releases the lock with it.
    let mut conn = pool.acquire().await.map_err(fail)?.detach();
    sqlx::query("SELECT pg_advisory_lock($1)").bind(table.lock_key()).execute(&mut conn).await.map_err(fail)?;
    migrate_locked(&mut conn, table, sql).await?;
    sqlx::query("SELECT pg_advisory_unlock($1)").bind(table.lock_key()).execute(&mut conn).await.map_err(fail)?;
    conn.close().await.map_err(fail)
}

/// The work [`migrate`] does once it holds the lock: whatever another app
/// server has not done already.
async fn migrate_locked(conn: &mut PgConnection, table: &Table, sql: &Sql) -> Result<(), StoreError> {
    let shown = table.display();
    let fail = |err| setup_error(format!("cannot create or upgrade the session table {shown:?}"), err);
    let found = inspect(&mut *conn, table).await?;
    if !found.table {
        return create_tables(conn, table).await;
    }
    let steps = table.upgrade_steps();
    if !(found.user_column && found.leases) {
        let mut tx = conn.begin().await.map_err(fail)?;
        tx.execute(sqlx::raw_sql(&steps.schema)).await.map_err(fail)?;
        tx.commit().await.map_err(fail)?;
    }
    if !found.user_index {
        let filled = backfill::users(conn, sql).await.map_err(fail)?;
        tracing::info!(table = shown, filled, "PostgreSQL session store: upgraded the table, users indexed");
        conn.execute(sqlx::raw_sql(&steps.index)).await.map_err(fail)?;
    }
    Ok(())
}

/// Runs the schema file (and `CREATE SCHEMA` for a schema that does not
/// exist yet) in one transaction.
async fn create_tables(conn: &mut PgConnection, table: &Table) -> Result<(), StoreError> {
    let shown = table.display();
    let fail = |err| setup_error(format!("cannot create the session table {shown:?}"), err);
    let mut tx = conn.begin().await.map_err(fail)?;
    if let Some(schema) = table.quoted_schema() {
        // Only when missing: `CREATE SCHEMA IF NOT EXISTS` needs the right to
        // create schemas even when the schema is there.
        let missing: bool = sqlx::query_scalar("SELECT to_regnamespace($1) IS NULL")
            .bind(&schema)
            .fetch_one(&mut *tx)
            .await
            .map_err(fail)?;
        if missing {
            let create_schema = format!("CREATE SCHEMA IF NOT EXISTS {schema}");
            tx.execute(sqlx::raw_sql(&create_schema)).await.map_err(fail)?;
        }
    }
    // Through `Executor::execute`, whose future is `Send` for any borrow of
    // the connection (`RawSql::execute` on `&mut *tx` is not).
    let schema_sql = table.schema_sql();
    tx.execute(sqlx::raw_sql(&schema_sql)).await.map_err(fail)?;
    tx.commit().await.map_err(fail)
}

/// Checks that an existing table has what the first layout had (the
/// columns, and the unique key upserts need), before anything is added to
/// it: a table of another shape is reported, not upgraded.
async fn check_first_layout(pool: &PgPool, table: &Table) -> Result<(), StoreError> {
    let shown = table.display();
    check_table_columns(pool, &table.quoted(), shown, &COLUMNS[..3]).await?;
    let upsert = format!(
        "EXPLAIN INSERT INTO {} (id, data, expires_at) VALUES ('', '', NULL) ON CONFLICT (id) DO NOTHING",
        table.quoted()
    );
    sqlx::raw_sql(&upsert).execute(pool).await.map_err(|err| {
        setup_error(format!("table {shown:?} exists but does not work as a session table (it needs {EXPECTED})"), err)
    })?;
    Ok(())
}

/// Checks that the tables have each column the statements read and write,
/// with a type they can decode. Other columns are left alone.
async fn check_columns(pool: &PgPool, table: &Table) -> Result<(), StoreError> {
    check_table_columns(pool, &table.quoted(), table.display(), &COLUMNS).await?;
    check_table_columns(pool, &table.quoted_leases(), &table.leases_display(), &LEASE_COLUMNS).await
}

async fn check_table_columns(
    pool: &PgPool,
    quoted: &str,
    shown: &str,
    expected: &[(&str, &[&str])],
) -> Result<(), StoreError> {
    let columns: Vec<(String, String)> = sqlx::query_as(
        "SELECT attname::text, format_type(atttypid, atttypmod) FROM pg_attribute \
         WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped",
    )
    .bind(quoted)
    .fetch_all(pool)
    .await
    .map_err(|err| setup_error(format!("cannot read the columns of the table {shown:?}"), err))?;
    for (name, types) in expected {
        let found = columns.iter().find(|(column, _)| column == name).map(|(_, ty)| ty.as_str());
        // `character varying(64)` is a `character varying` too.
        let fits = found.is_some_and(|ty| types.iter().any(|t| ty == *t || ty.starts_with(&format!("{t}("))));
        if !fits {
            let found = found.map_or_else(|| "no such column".to_owned(), |ty| format!("it is {ty}"));
            return Err(StoreError::config(format!(
                "table {shown:?} exists but is not a session table: column {name} must be {} ({found}); \
                 the store needs {EXPECTED}",
                types[0]
            )));
        }
    }
    Ok(())
}

/// Plans every statement (`EXPLAIN`, which runs nothing), so that what only
/// the planner checks, such as the unique key `ON CONFLICT (id)` needs,
/// fails now and not on the first write.
async fn check_statements(pool: &PgPool, sql: &Sql) -> Result<(), StoreError> {
    let fail = |err| setup_error(format!("the session tables do not work as such (the store needs {EXPECTED})"), err);
    let (key, token, user) = ("", "", Some(""));
    let data: &[u8] = b"{}";
    let (now, expiry, limit) = (0_i64, Some(0_i64), 1_i64);
    let keys: Vec<String> = Vec::new();
    let mut checked = 0;
    // The statement text lives until its `EXPLAIN` has run.
    macro_rules! plan {
        ($statement:expr $(, $value:expr)* $(,)?) => {{
            sqlx::query(&format!("EXPLAIN {}", $statement))$(.bind($value))*.execute(pool).await.map_err(fail)?;
            checked += 1;
        }};
    }
    plan!(sql.get, key, now);
    plan!(sql.upsert, key, data, expiry, user);
    plan!(sql.delete, key);
    plan!(sql.touch, key, expiry, now);
    plan!(sql.lock_live, key, now);
    plan!(sql.rewrite, key, data, expiry, user);
    plan!(sql.delete_expired, now, limit);
    plan!(sql.sessions_of, user, now);
    plan!(sql.revoke, key, user, now);
    plan!(sql.revoke_all, user, Some(key), now);
    plan!(sql.scan, key, now, limit);
    plan!(sql.try_lease, key, token, now, now);
    plan!(sql.release_lease, key, token);
    plan!(sql.lease_held, key, token, now);
    plan!(sql.delete_expired_leases, now, limit);
    plan!(sql.backfill_batch, key, limit);
    plan!(sql.backfill_write, &keys, &keys);
    debug_assert_eq!(checked, sql.all().len(), "a statement is not checked");
    Ok(())
}

/// A setup failure: what the server refused (no such schema, no right to
/// create, a table of another shape) is a configuration error; not
/// reaching the server is a backend error (try again), or a timeout.
fn setup_error(message: String, err: sqlx::Error) -> StoreError {
    match err {
        sqlx::Error::Database(_) => StoreError::config_caused_by(message, err),
        other => super::backend_error("setting up the PostgreSQL session store", other),
    }
}
