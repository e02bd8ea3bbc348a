//! Preparing the table when a store is built: creating it on demand, and
//! checking that an existing one has the shape the statements need.
//!
//! Every problem a store can know about before its first request is
//! reported here, as a [`StoreError::Config`] that says what to do, rather
//! than as a 500 on every request later: a missing table when creation is
//! off, a table of another shape, no right to create it.

use sessionkit::StoreError;
use sqlx::{Executor, PgPool, Postgres, Transaction};

use super::table::{Sql, Table};

/// The columns the statements need, with the types `format_type` names.
const COLUMNS: [(&str, &[&str]); 3] =
    [("id", &["text", "character varying"]), ("data", &["bytea"]), ("expires_at", &["bigint"])];

/// The DDL to point at in errors about an existing table.
const EXPECTED: &str = "id TEXT PRIMARY KEY, data BYTEA NOT NULL, expires_at BIGINT (see PostgresStore::schema_sql)";

/// Creates the table if it is missing and `create` is on, then checks it.
pub(super) async fn prepare(pool: &PgPool, table: &Table, sql: &Sql, create: bool) -> Result<(), StoreError> {
    let exists = table_exists(pool, table).await?;
    if !exists {
        if !create {
            return Err(StoreError::config(format!(
                "the session table {:?} does not exist, and creating it is turned off \
                 (create_table(false)); apply PostgresStore::schema_sql to the database first",
                table.display()
            )));
        }
        create_table(pool, table).await?;
    }
    check_columns(pool, table).await?;
    check_statements(pool, table, sql).await
}

/// Whether the table exists, as the store's statements would find it
/// (an unqualified name through the connection's `search_path`).
async fn table_exists(pool: &PgPool, table: &Table) -> Result<bool, StoreError> {
    sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
        .bind(table.quoted())
        .fetch_one(pool)
        .await
        .map_err(|err| setup_error(format!("cannot look up the session table {:?}", table.display()), err))
}

/// Runs the schema file (and `CREATE SCHEMA` for a schema that does not
/// exist yet) in one transaction, under an advisory lock so that app
/// servers starting at once create the table once.
async fn create_table(pool: &PgPool, table: &Table) -> Result<(), StoreError> {
    let shown = table.display();
    let fail = |err| setup_error(format!("cannot create the session table {shown:?}"), err);
    let mut tx: Transaction<'_, Postgres> = pool.begin().await.map_err(fail)?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(table.lock_key()).execute(&mut *tx).await.map_err(fail)?;
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

/// Checks that the table has each column the statements read and write,
/// with a type they can decode. Other columns are left alone.
async fn check_columns(pool: &PgPool, table: &Table) -> Result<(), StoreError> {
    let shown = table.display();
    let columns: Vec<(String, String)> = sqlx::query_as(
        "SELECT attname::text, format_type(atttypid, atttypmod) FROM pg_attribute \
         WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped",
    )
    .bind(table.quoted())
    .fetch_all(pool)
    .await
    .map_err(|err| setup_error(format!("cannot read the columns of the session table {shown:?}"), err))?;
    for (name, types) in COLUMNS {
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
async fn check_statements(pool: &PgPool, table: &Table, sql: &Sql) -> Result<(), StoreError> {
    let shown = table.display();
    let fail = |err| {
        setup_error(format!("table {shown:?} exists but does not work as a session table (it needs {EXPECTED})"), err)
    };
    let key = "";
    let data: &[u8] = b"{}";
    let (now, expiry, limit) = (0_i64, Some(0_i64), 1_i64);
    let explain = |statement: &str| format!("EXPLAIN {statement}");
    sqlx::query(&explain(&sql.get)).bind(key).bind(now).execute(pool).await.map_err(fail)?;
    sqlx::query(&explain(&sql.upsert)).bind(key).bind(data).bind(expiry).execute(pool).await.map_err(fail)?;
    sqlx::query(&explain(&sql.delete)).bind(key).execute(pool).await.map_err(fail)?;
    sqlx::query(&explain(&sql.touch)).bind(key).bind(expiry).bind(now).execute(pool).await.map_err(fail)?;
    sqlx::query(&explain(&sql.lock_live)).bind(key).bind(now).execute(pool).await.map_err(fail)?;
    sqlx::query(&explain(&sql.rewrite)).bind(key).bind(data).bind(expiry).execute(pool).await.map_err(fail)?;
    sqlx::query(&explain(&sql.delete_expired)).bind(now).bind(limit).execute(pool).await.map_err(fail)?;
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
