//! `PostgresStore`: sessions in a PostgreSQL table, shared by every app
//! server that points at the same database. The table layout, durability
//! and outage behaviour are documented on the type, for users; this page
//! says how the operations keep the contract.
//!
//! # Why these statements
//!
//! - `get`, `set` (an upsert), `delete` and `touch` are one statement each,
//!   so each is atomic on its own. Expiry is compared in SQL, against the
//!   app server's clock passed as a parameter, on every read, touch and
//!   update: an expired row is never returned, swept or not.
//! - `update` is a transaction: `SELECT ... FOR UPDATE` locks the live row
//!   (or finds none: `Missing`, nothing written), the patch is applied in
//!   Rust with [`Changes::apply`] (sets, increments, pushes, the size
//!   limit), and the row is written back before `COMMIT`. Concurrent
//!   updates of one session, from any number of app servers, queue on the
//!   row lock and each sees the previous one's result, so none loses
//!   another's keys or increments; a delete that commits first leaves no
//!   row to lock, so a deleted session is never recreated. A patch that
//!   does not apply rolls the transaction back: [`StoreError::Refused`].
//! - `rename` is the same transaction, writing the patched record under
//!   the new key and deleting the old row before `COMMIT`: a session
//!   deleted meanwhile is `Missing` and nothing is written.
//! - The user index is a column, `user_id`, that every write (`set`,
//!   `update`, `rename`) fills from the data it writes, in the same
//!   statement, so it can never disagree with the data. Listing and
//!   revoking are single statements on its partial index, live rows only.
//! - Leases live in a table of their own, one row per key. `try_lease` is
//!   one `INSERT ... ON CONFLICT DO UPDATE ... WHERE` the held lease ran
//!   out; a fenced `update` or `rename` first `SELECT`s the lease row
//!   `FOR SHARE` with its token and a live expiry, in its transaction, and
//!   is refused ([`PatchError::LeaseLost`]) if there is none. The share lock
//!   makes a takeover (which updates the row) wait until the fenced write
//!   has committed, so a write is never applied after its lease passed on.
//! - `scan` pages on the key column in its bytewise order, after the
//!   cursor's key: a record that lives throughout keeps its key, so it is
//!   on exactly one page.
//! - `delete_expired` deletes at most 1,000 rows per statement, each its own
//!   transaction, skipping rows another transaction holds: a large sweep
//!   never holds many locks for long, and sweeps on several app servers
//!   share the work. Leases that ran out are swept the same way.
//! - Every operation runs under the store's timeout, so a server that has
//!   gone silent gives [`StoreError::Timeout`], never a hung request.

mod backfill;
mod row;
mod setup;
mod table;

use std::future::Future;
use std::str::FromStr;
use std::time::{Duration, SystemTime};

use sessionkit::{
    Changes, Lease, LeaseToken, PatchError, ScanCursor, ScanPage, SessionMap, SessionRecord, SessionStore, StoreError,
    StoreKey, UpdateOutcome, expiry,
};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgConnection, PgPool};

use self::row::{key, user_column};
use self::table::{Sql, Table};

/// Rows `delete_expired` removes per statement (and so per transaction).
const SWEEP_BATCH: i64 = 1_000;

/// The most records one `scan` page holds, whatever the caller asks.
const MAX_SCAN_PAGE: usize = 10_000;

/// A session store in a PostgreSQL table, for deployments where several app
/// servers share one session space and already run PostgreSQL.
///
/// Build it from a URL ([`open`](Self::open)) or from the [`PgPool`] your
/// application already has ([`from_pool`](Self::from_pool)); options go
/// through [`builder`](Self::builder). The table, `http_sessions` unless you
/// name another (`schema.table` allowed), is created with its expiry index
/// if it does not exist; teams that run migrations themselves turn that off
/// with [`create_table(false)`](PostgresStoreBuilder::create_table) and
/// apply [`schema_sql`](Self::schema_sql).
///
/// # Table layout
///
/// ```sql
/// CREATE TABLE IF NOT EXISTS "http_sessions" (
///     id         TEXT COLLATE "C" NOT NULL PRIMARY KEY, -- the 43-character key
///     data       BYTEA NOT NULL,                        -- the data, as JSON in UTF-8
///     expires_at BIGINT,                                -- Unix ms; NULL never expires
///     user_id    TEXT COLLATE "C"                       -- the session's user; NULL for none
/// );
/// CREATE INDEX IF NOT EXISTS "http_sessions_expires_at" ON "http_sessions" (expires_at);
/// CREATE INDEX IF NOT EXISTS "http_sessions_user_id" ON "http_sessions" (user_id)
///     WHERE user_id IS NOT NULL;
/// ```
///
/// The user index is the `user_id` column: the string under
/// [`reserved::USER`](sessionkit::reserved::USER) in the session's data,
/// written by every write from the data it writes (a user name holding
/// U+0000, which PostgreSQL text cannot hold, is refused with
/// [`StoreError::Encode`]). Exclusive leases are rows of
/// `<table>_leases` (`id`, `token`, `expires_at`) beside it; see
/// [`PostgresStore::schema_sql`] for the whole schema.
///
/// One row per session. The data is JSON bytes rather than `JSONB`, which
/// refuses strings holding U+0000 that session data may contain; read it
/// with `convert_from(data, 'UTF8')::json`. Expired rows stay until
/// [`delete_expired`](SessionStore::delete_expired) (a
/// [`Sweeper`](crate::Sweeper)) removes them, but are never returned. A
/// row whose data is not a JSON object reads as absent and is logged.
///
/// # Durability
///
/// A write is acknowledged once its `COMMIT` has returned. With
/// PostgreSQL's default `synchronous_commit = on` that means the commit is
/// flushed to the write-ahead log on disk: an acknowledged session survives
/// a crash of the database server or its machine. Concurrent commits share
/// WAL flushes, so many app servers writing at once do not queue for one
/// `fsync` each. A server set to `synchronous_commit = off` may lose the
/// last few hundred milliseconds of writes in a crash, as its operators
/// chose.
///
/// # When the database restarts
///
/// Requests that reach the store while PostgreSQL is down or restarting
/// fail with a [`StoreError`], which the session layer turns into an empty
/// 500, within the [timeout](PostgresStoreBuilder::timeout) (2 s by
/// default) at most; nothing panics. Requests in flight when the server
/// shuts down fail at once; later ones wait for a connection until the
/// timeout. The pool checks each idle connection before handing it out
/// (sqlx's default, which a pool given to [`from_pool`](Self::from_pool)
/// keeps unless its owner turned it off) and opens new ones as needed, so
/// once the server is back the next request works, with the same sessions,
/// and the app needs no restart. A request that was already waiting for a
/// connection notices within a fifth of the timeout (sqlx retries
/// connecting with a backoff capped there).
///
/// # Upgrading from the first version
///
/// A table made by the first version of this store (no `user_id` column,
/// no leases table) is upgraded when the store opens it, unless
/// [`create_table(false)`](PostgresStoreBuilder::create_table): the column
/// is added (instant), every row's user is read from its data and written
/// to it, in batches of 1,000 rows that each lock only their own rows, and
/// the user index is built last (which briefly holds writes to the table).
/// App servers starting together wait for the first one's upgrade (up to
/// ten minutes) under an advisory lock; an interrupted upgrade starts over
/// on the next open. With creation off, opening such a table is a
/// [`StoreError::Config`] until [`upgrade_sql`](Self::upgrade_sql)
/// (`stores/sql/postgres_upgrade_2.sql`) has been applied. A session that
/// an app server still on the first version writes after the upgrade is
/// listed under its user once an upgraded server writes it again.
///
/// # Clocks
///
/// Expiry instants come from the app servers' clocks, and reads compare
/// against the reading app server's clock: keep them in sync (NTP), as with
/// any shared session store. Leases too: a lease taken for 10 s on one
/// server runs out at that server's now + 10 s, and another server takes it
/// over once *its* clock has passed that instant, so a server whose clock
/// runs ahead by a second takes leases over a second early (and may then
/// write while the first holder still runs; the holder's own fenced write
/// is refused then, never applied after the takeover). Keep clock skew
/// well below [`exclusive_lease`](sessionkit::SessionConfig::exclusive_lease).
///
/// # Why sqlx
///
/// sqlx's [`PgPool`] is what axum and tower applications on PostgreSQL
/// usually hold already, so [`from_pool`](Self::from_pool) lets the store
/// share the application's pool, its settings and its TLS setup; tower's
/// own session crate builds on it too. It is pure Rust (no libpq), its pool
/// reconnects by itself after a server restart, and it is used here with
/// its macros, migrations and `any` driver off, which keeps its compile
/// cost to its PostgreSQL driver. tokio-postgres is leaner, but leaves the
/// choice of pool (deadpool, bb8) and TLS connector to each application,
/// so there would be no single pool type for an app to hand over. sqlx 0.8
/// is the line this workspace's minimum Rust version supports; the crate is
/// re-exported as [`sessionkit_stores::sqlx`](crate::sqlx) for building a
/// pool of the matching version.
///
/// TLS: this crate enables no TLS backend of sqlx. An application that
/// needs `sslmode=require` enables one in its own sqlx dependency (for
/// example the `tls-rustls` feature); cargo unifies the features, and URLs
/// given to [`open`](Self::open) can then use TLS.
///
/// # Example
///
/// ```no_run
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), sessionkit::StoreError> {
/// use std::time::Duration;
/// use sessionkit::{SessionConfig, SessionLayer};
/// use sessionkit_stores::PostgresStore;
///
/// // Defaults: table `http_sessions`, created if missing; 2 s timeout.
/// let store = PostgresStore::open("postgres://app:secret@db.internal/app").await?;
///
/// // Or on the application's own pool, in a table its migrations made:
/// let pool = sessionkit_stores::sqlx::PgPool::connect_lazy("postgres://app:secret@db.internal/app")
///     .map_err(|err| sessionkit::StoreError::config_caused_by("bad URL", err))?;
/// let store = PostgresStore::builder()
///     .table("auth.web_sessions")
///     .create_table(false)
///     .timeout(Duration::from_secs(1))
///     .from_pool(pool)
///     .await?;
/// let layer = SessionLayer::new(SessionConfig::new(store));
/// # let _ = layer;
/// # Ok(()) }
/// ```
pub struct PostgresStore {
    pool: PgPool,
    table: Table,
    sql: Sql,
    timeout: Duration,
}

/// Options for a [`PostgresStore`], then one of two ways to connect it.
#[derive(Debug, Clone)]
#[must_use]
pub struct PostgresStoreBuilder {
    table: String,
    create_table: bool,
    timeout: Duration,
    max_connections: u32,
}

impl PostgresStoreBuilder {
    /// The table holding the sessions [default: `http_sessions`]: `name` or
    /// `schema.name`, each part a lowercase identifier (`[a-z_][a-z0-9_]*`,
    /// at most 63 bytes, not starting with `pg_`). It is checked when the
    /// store is built; anything else is a [`StoreError::Config`].
    pub fn table(mut self, table: impl Into<String>) -> Self {
        self.table = table.into();
        self
    }

    /// Whether to create the tables (and their schema, if named and
    /// missing) when they do not exist, and upgrade a table of the store's
    /// first version [default: true]. With `false`, for teams that run
    /// migrations themselves, a missing table is a [`StoreError::Config`]
    /// when the store is built (apply [`PostgresStore::schema_sql`] first),
    /// and so is a table of the first version (apply
    /// [`PostgresStore::upgrade_sql`]). Either way an existing table is
    /// checked for the columns the store needs; a table of another shape is
    /// reported and never altered.
    pub fn create_table(mut self, create: bool) -> Self {
        self.create_table = create;
        self
    }

    /// How long any one operation may take, waiting for a connection
    /// included, before it fails with [`StoreError::Timeout`] [default:
    /// 2 s]. While PostgreSQL is unreachable, this is how long a request
    /// waits at most before its empty 500. `delete_expired` applies it to
    /// each batch.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The most connections the pool [`open`](Self::open) makes may hold
    /// [default: 10]. A pool given to [`from_pool`](Self::from_pool) keeps
    /// its own limit.
    pub fn max_connections(mut self, max: u32) -> Self {
        self.max_connections = max;
        self
    }

    /// Connects to the database at `url`
    /// (`postgres://[user[:password]@]host[:port]/database[?options]`, as
    /// libpq takes it, `postgresql://` too) with a pool of its own, then
    /// prepares the table.
    ///
    /// # Errors
    ///
    /// [`StoreError::Config`] for a URL that does not parse (the URL itself
    /// is not repeated: it may hold a password), an invalid table name, a
    /// missing table with creation off, a table of another shape, or a
    /// server that refuses what the store needs (authentication, the right
    /// to create the table). [`StoreError::Backend`] when the server cannot
    /// be reached within the timeout.
    pub async fn open(self, url: &str) -> Result<PostgresStore, StoreError> {
        let scheme = url.split_once("://").map(|(scheme, _)| scheme.to_ascii_lowercase());
        if !matches!(scheme.as_deref(), Some("postgres" | "postgresql")) {
            // sqlx would take any scheme and dial localhost:5432.
            return Err(StoreError::config("invalid PostgreSQL URL: it must start with postgres:// or postgresql://"));
        }
        let mut options = PgConnectOptions::from_str(url)
            .map_err(|err| StoreError::config_caused_by("invalid PostgreSQL URL", err))?;
        if options.get_application_name().is_none() {
            // So that a DBA can tell the store's connections in pg_stat_activity.
            options = options.application_name("sessionkit");
        }
        let table = Table::new(&self.table)?;
        let pool = PgPoolOptions::new()
            .max_connections(self.max_connections)
            .acquire_timeout(self.timeout)
            .connect_lazy_with(options);
        self.finish(pool, table).await
    }

    /// Uses `pool`, the application's own, with its settings (size, TLS,
    /// timeouts, health checks) as they are, then prepares the table.
    ///
    /// # Errors
    ///
    /// As for [`open`](Self::open), less the URL.
    pub async fn from_pool(self, pool: PgPool) -> Result<PostgresStore, StoreError> {
        let table = Table::new(&self.table)?;
        self.finish(pool, table).await
    }

    async fn finish(self, pool: PgPool, table: Table) -> Result<PostgresStore, StoreError> {
        let sql = Sql::new(&table);
        let setup_timeout = self.timeout.max(SETUP_TIMEOUT);
        setup::prepare(&pool, &table, &sql, self.create_table, setup_timeout, MIGRATION_TIMEOUT).await?;
        Ok(PostgresStore { pool, table, sql, timeout: self.timeout })
    }
}

/// The least time setup gets, however short the operation timeout: it runs
/// several statements, and on a busy server may wait for another app
/// server's table creation.
const SETUP_TIMEOUT: Duration = Duration::from_secs(10);

/// The most time creating or upgrading the tables may take, waiting for
/// another app server doing it included: an upgrade fills the user column
/// of every row.
const MIGRATION_TIMEOUT: Duration = Duration::from_secs(600);

impl PostgresStore {
    /// The table used unless [`PostgresStoreBuilder::table`] says otherwise.
    pub const DEFAULT_TABLE: &'static str = table::DEFAULT_TABLE;
    /// The operation timeout used unless [`PostgresStoreBuilder::timeout`] says otherwise.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);
    /// The pool size [`open`](Self::open) uses unless
    /// [`PostgresStoreBuilder::max_connections`] says otherwise.
    pub const DEFAULT_MAX_CONNECTIONS: u32 = 10;

    /// Options, then a way to connect: [`open`](PostgresStoreBuilder::open)
    /// a URL or [`from_pool`](PostgresStoreBuilder::from_pool).
    pub fn builder() -> PostgresStoreBuilder {
        PostgresStoreBuilder {
            table: Self::DEFAULT_TABLE.to_owned(),
            create_table: true,
            timeout: Self::DEFAULT_TIMEOUT,
            max_connections: Self::DEFAULT_MAX_CONNECTIONS,
        }
    }

    /// Connects to `url` with the default options; see
    /// [`PostgresStoreBuilder::open`].
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        Self::builder().open(url).await
    }

    /// Uses the application's `pool` with the default options; see
    /// [`PostgresStoreBuilder::from_pool`].
    pub async fn from_pool(pool: PgPool) -> Result<Self, StoreError> {
        Self::builder().from_pool(pool).await
    }

    /// The SQL that creates the table `table` (`name` or `schema.name`), its
    /// expiry and user indexes, and the leases table `table_leases` beside
    /// it (`stores/sql/postgres.sql` with the names put in), for migrations: what the store runs itself unless
    /// [`create_table(false)`](PostgresStoreBuilder::create_table). The
    /// schema of a qualified name must exist. Idempotent (`IF NOT EXISTS`).
    ///
    /// # Errors
    ///
    /// [`StoreError::Config`] for a name the store would refuse.
    pub fn schema_sql(table: &str) -> Result<String, StoreError> {
        Ok(Table::new(table)?.schema_sql())
    }

    /// The SQL that upgrades a table `table` made by the first version of
    /// this store (columns `id`, `data`, `expires_at` only) to the current
    /// layout: the `user_id` column, filled from each session's data, its
    /// index, and the leases table. The store runs the same steps itself
    /// when it opens such a table, unless
    /// [`create_table(false)`](PostgresStoreBuilder::create_table); then it
    /// refuses the table until this has been applied. Idempotent.
    ///
    /// # Errors
    ///
    /// [`StoreError::Config`] for a name the store would refuse.
    pub fn upgrade_sql(table: &str) -> Result<String, StoreError> {
        Ok(Table::new(table)?.upgrade_sql())
    }

    /// The table holding the sessions, as configured (`name` or `schema.name`).
    pub fn table(&self) -> &str {
        self.table.display()
    }

    /// The pool the store runs on.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// How long one operation may take before [`StoreError::Timeout`].
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Runs one operation under the store's timeout.
    async fn run<T>(&self, operation: impl Future<Output = Result<T, StoreError>>) -> Result<T, StoreError> {
        match tokio::time::timeout(self.timeout, operation).await {
            Ok(result) => result,
            Err(_) => Err(StoreError::Timeout(self.timeout)),
        }
    }

    /// Turns a driver error into a store error that keeps it as its cause.
    /// No connection within the pool's own acquire timeout is a timeout.
    fn failed(&self, context: &'static str) -> impl Fn(sqlx::Error) -> StoreError {
        let timeout = self.timeout;
        move |err| match err {
            sqlx::Error::PoolTimedOut => StoreError::Timeout(timeout),
            other => backend_error(context, other),
        }
    }
}

/// A driver error as a [`StoreError::Backend`], cause kept.
fn backend_error(context: &'static str, err: sqlx::Error) -> StoreError {
    StoreError::backend(context, err)
}

/// The patch applied to the stored data: the one place an update's result
/// is computed, whatever operations [`Changes`] carries.
/// A patch that cannot apply is refused whole (the transaction is rolled
/// back when dropped).
fn patched(data: SessionMap, changes: &Changes) -> Result<SessionMap, StoreError> {
    changes.applied_to(data).map_err(StoreError::Refused)
}

fn now_ms() -> i64 {
    expiry::to_unix_ms(SystemTime::now())
}

fn ms(instant: Option<SystemTime>) -> Option<i64> {
    instant.map(expiry::to_unix_ms)
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not the pool: its connect options hold the password.
        f.debug_struct("PostgresStore")
            .field("table", &self.table.display())
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

#[sessionkit::async_trait]
impl SessionStore for PostgresStore {
    async fn get(&self, id: &StoreKey) -> Result<Option<SessionRecord>, StoreError> {
        let row: Option<(Vec<u8>, Option<i64>)> = self
            .run(async {
                sqlx::query_as(&self.sql.get)
                    .bind(key(id))
                    .bind(now_ms())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(self.failed("postgres store: reading a session"))
            })
            .await?;
        Ok(row.and_then(|(data, expires_at)| row::decode(&data, expires_at, self.table.display())))
    }

    async fn set(&self, id: &StoreKey, data: &SessionMap, expires_at: Option<SystemTime>) -> Result<(), StoreError> {
        let user = user_column(data)?;
        let data = row::encode(data)?;
        self.run(async {
            sqlx::query(&self.sql.upsert)
                .bind(key(id))
                .bind(&data)
                .bind(ms(expires_at))
                .bind(user)
                .execute(&self.pool)
                .await
                .map_err(self.failed("postgres store: writing a session"))
        })
        .await
        .map(drop)
    }

    async fn delete(&self, id: &StoreKey) -> Result<(), StoreError> {
        self.run(async {
            sqlx::query(&self.sql.delete)
                .bind(key(id))
                .execute(&self.pool)
                .await
                .map_err(self.failed("postgres store: deleting a session"))
        })
        .await
        .map(drop)
    }

    /// One `UPDATE` of the expiry column of a live row; the data is not
    /// read or rewritten.
    async fn touch(&self, id: &StoreKey, expires_at: Option<SystemTime>) -> Result<bool, StoreError> {
        let done = self
            .run(async {
                sqlx::query(&self.sql.touch)
                    .bind(key(id))
                    .bind(ms(expires_at))
                    .bind(now_ms())
                    .execute(&self.pool)
                    .await
                    .map_err(self.failed("postgres store: moving a session's expiry"))
            })
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Atomic across app servers: lock the live row, patch it, write it
    /// back, in one transaction. A row whose data does not decode is
    /// `Missing` and is left as it is.
    async fn update(
        &self,
        id: &StoreKey,
        changes: &Changes,
        expires_at: Option<SystemTime>,
    ) -> Result<UpdateOutcome, StoreError> {
        let failed = self.failed("postgres store: updating a session");
        self.run(async {
            let now = now_ms();
            let mut tx = self.pool.begin().await.map_err(&failed)?;
            self.check_fence(&mut tx, id, changes, now).await?;
            let Some(data) = self.lock_live(&mut tx, id, now).await? else {
                tx.rollback().await.map_err(&failed)?;
                return Ok(UpdateOutcome::Missing);
            };
            let data = patched(data, changes)?;
            let user = user_column(&data)?;
            sqlx::query(&self.sql.rewrite)
                .bind(key(id))
                .bind(row::encode(&data)?)
                .bind(ms(expires_at))
                .bind(user)
                .execute(&mut *tx)
                .await
                .map_err(&failed)?;
            tx.commit().await.map_err(&failed)?;
            Ok(UpdateOutcome::Applied)
        })
        .await
    }

    /// One transaction: lock the live `from` row (and, for a fenced patch,
    /// the lease), patch it, write it under `to` with its user, delete
    /// `from`. A `from` that is not live writes nothing.
    async fn rename(
        &self,
        from: &StoreKey,
        to: &StoreKey,
        changes: &Changes,
        expires_at: Option<SystemTime>,
    ) -> Result<UpdateOutcome, StoreError> {
        let failed = self.failed("postgres store: moving a session to a new key");
        self.run(async {
            let now = now_ms();
            let mut tx = self.pool.begin().await.map_err(&failed)?;
            self.check_fence(&mut tx, from, changes, now).await?;
            let Some(data) = self.lock_live(&mut tx, from, now).await? else {
                tx.rollback().await.map_err(&failed)?;
                return Ok(UpdateOutcome::Missing);
            };
            let data = patched(data, changes)?;
            let user = user_column(&data)?;
            sqlx::query(&self.sql.upsert)
                .bind(key(to))
                .bind(row::encode(&data)?)
                .bind(ms(expires_at))
                .bind(user)
                .execute(&mut *tx)
                .await
                .map_err(&failed)?;
            sqlx::query(&self.sql.delete).bind(key(from)).execute(&mut *tx).await.map_err(&failed)?;
            tx.commit().await.map_err(&failed)?;
            Ok(UpdateOutcome::Applied)
        })
        .await
    }

    /// One indexed `SELECT` of the user's live rows. A row whose data names
    /// another user than its column (a hand edit) is not listed.
    async fn sessions_of(&self, user: &str) -> Result<Vec<(StoreKey, SessionRecord)>, StoreError> {
        let rows: Vec<(String, Vec<u8>, Option<i64>)> = self
            .run(async {
                sqlx::query_as(&self.sql.sessions_of)
                    .bind(user)
                    .bind(now_ms())
                    .fetch_all(&self.pool)
                    .await
                    .map_err(self.failed("postgres store: listing a user's sessions"))
            })
            .await?;
        Ok(self.records(rows).filter(|(_, record)| record.user() == Some(user)).collect())
    }

    /// One `DELETE` of the row if it is live and the user's.
    async fn revoke(&self, user: &str, id: &StoreKey) -> Result<bool, StoreError> {
        let done = self
            .run(async {
                sqlx::query(&self.sql.revoke)
                    .bind(key(id))
                    .bind(user)
                    .bind(now_ms())
                    .execute(&self.pool)
                    .await
                    .map_err(self.failed("postgres store: revoking a session"))
            })
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// One `DELETE` of the user's live rows but `except`.
    async fn revoke_all(&self, user: &str, except: Option<&StoreKey>) -> Result<u64, StoreError> {
        let done = self
            .run(async {
                sqlx::query(&self.sql.revoke_all)
                    .bind(user)
                    .bind(except.map(key))
                    .bind(now_ms())
                    .execute(&self.pool)
                    .await
                    .map_err(self.failed("postgres store: revoking a user's sessions"))
            })
            .await?;
        Ok(done.rows_affected())
    }

    /// Keyset pagination on the key column: the rows after the cursor's
    /// key, in key order (bytewise, collation "C"), live ones only. A row
    /// that lives throughout the scan keeps its key, so it is on exactly
    /// one page. The cursor is the last key of the page; a short page is
    /// the last.
    async fn scan(&self, cursor: &ScanCursor, limit: usize) -> Result<ScanPage, StoreError> {
        let limit = limit.clamp(1, MAX_SCAN_PAGE);
        let rows: Vec<(String, Vec<u8>, Option<i64>)> = self
            .run(async {
                sqlx::query_as(&self.sql.scan)
                    .bind(cursor.as_str())
                    .bind(now_ms())
                    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
                    .fetch_all(&self.pool)
                    .await
                    .map_err(self.failed("postgres store: scanning sessions"))
            })
            .await?;
        // Rows that do not read as records (bad data, a foreign key) are
        // skipped, but still move the cursor.
        let next = (rows.len() == limit).then(|| rows.last().map(|(id, _, _)| ScanCursor::from_text(id.clone())));
        Ok(ScanPage { records: self.records(rows).collect(), next: next.flatten() })
    }

    /// One statement: insert the lease, or take over one that ran out.
    async fn try_lease(&self, id: &StoreKey, ttl: Duration) -> Result<Option<Lease>, StoreError> {
        let token = LeaseToken::generate();
        let now = now_ms();
        let until = now.saturating_add(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX));
        let granted: Option<(i64,)> = self
            .run(async {
                sqlx::query_as(&self.sql.try_lease)
                    .bind(key(id))
                    .bind(token.to_string())
                    .bind(until)
                    .bind(now)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(self.failed("postgres store: taking a lease"))
            })
            .await?;
        Ok(granted.map(|(until,)| Lease { token, expires_at: expiry::from_unix_ms(until) }))
    }

    /// One `DELETE` of the lease, if `token` still holds it.
    async fn release_lease(&self, id: &StoreKey, token: LeaseToken) -> Result<(), StoreError> {
        self.run(async {
            sqlx::query(&self.sql.release_lease)
                .bind(key(id))
                .bind(token.to_string())
                .execute(&self.pool)
                .await
                .map_err(self.failed("postgres store: releasing a lease"))
        })
        .await
        .map(drop)
    }

    /// Removes expired rows 1,000 per statement, each its own transaction
    /// under its own timeout, until a batch comes back short; then leases
    /// that ran out, likewise. Rows another transaction holds (another app
    /// server's sweep) are skipped, for a later sweep. Counts sessions only.
    async fn delete_expired(&self) -> Result<u64, StoreError> {
        let now = expiry::to_unix_ms(expiry::now());
        let sessions = self.sweep(&self.sql.delete_expired, now, "postgres store: deleting expired sessions").await?;
        self.sweep(&self.sql.delete_expired_leases, now, "postgres store: deleting leases that ran out").await?;
        Ok(sessions)
    }
}

impl PostgresStore {
    /// In `tx`, before anything is read: refuses a patch fenced by a lease
    /// that its token no longer holds live, and share-locks the lease row,
    /// so that nobody can take the lease over (which updates that row)
    /// until the transaction has ended.
    async fn check_fence(
        &self,
        tx: &mut PgConnection,
        id: &StoreKey,
        changes: &Changes,
        now: i64,
    ) -> Result<(), StoreError> {
        let Some(token) = changes.lease() else { return Ok(()) };
        let held: Option<(i32,)> = sqlx::query_as(&self.sql.lease_held)
            .bind(key(id))
            .bind(token.to_string())
            .bind(now)
            .fetch_optional(&mut *tx)
            .await
            .map_err(self.failed("postgres store: checking a lease"))?;
        match held {
            Some(_) => Ok(()),
            None => Err(StoreError::Refused(PatchError::LeaseLost)),
        }
    }

    /// In `tx`: the live record's data, its row locked until the
    /// transaction ends; `None` when absent, expired or not decodable.
    async fn lock_live(
        &self,
        tx: &mut PgConnection,
        id: &StoreKey,
        now: i64,
    ) -> Result<Option<SessionMap>, StoreError> {
        let stored: Option<(Vec<u8>,)> = sqlx::query_as(&self.sql.lock_live)
            .bind(key(id))
            .bind(now)
            .fetch_optional(&mut *tx)
            .await
            .map_err(self.failed("postgres store: locking a session"))?;
        Ok(stored.and_then(|(bytes,)| row::decode_data(&bytes, self.table.display())))
    }

    /// Rows of `(id, data, expires_at)` as records with their keys; rows
    /// that do not decode (logged) or whose id is not a store key are
    /// skipped.
    fn records(
        &self,
        rows: Vec<(String, Vec<u8>, Option<i64>)>,
    ) -> impl Iterator<Item = (StoreKey, SessionRecord)> + '_ {
        rows.into_iter().filter_map(|(id, data, expires_at)| {
            let id = StoreKey::parse(&id)?;
            Some((id, row::decode(&data, expires_at, self.table.display())?))
        })
    }

    /// Runs a bounded `DELETE` (`$1` now, `$2` batch size) until a batch
    /// comes back short; returns how many rows it deleted.
    async fn sweep(&self, statement: &str, now: i64, context: &'static str) -> Result<u64, StoreError> {
        let mut total = 0;
        loop {
            let done = self
                .run(async {
                    sqlx::query(statement)
                        .bind(now)
                        .bind(SWEEP_BATCH)
                        .execute(&self.pool)
                        .await
                        .map_err(self.failed(context))
                })
                .await?;
            total += done.rows_affected();
            if done.rows_affected() < SWEEP_BATCH.unsigned_abs() {
                return Ok(total);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn patches_apply_to_the_stored_data() {
        let stored = match json!({ "a": 1, "b": 2 }) {
            serde_json::Value::Object(map) => map,
            _ => unreachable!("an object literal"),
        };
        let mut changes = Changes::new();
        changes.set("c", json!(3));
        changes.remove("a");
        assert_eq!(serde_json::Value::Object(patched(stored, &changes).expect("applies")), json!({ "b": 2, "c": 3 }));
    }

    #[tokio::test]
    async fn bad_urls_and_table_names_are_config_errors_before_any_connection() {
        // Port 1 on loopback: nothing listens, and nothing is ever dialled,
        // because each fails before the store connects.
        for url in ["postgres://127.0.0.1:notaport/db", "redis://127.0.0.1/", "127.0.0.1:5432", ""] {
            let err = PostgresStore::open(url).await.expect_err(url);
            assert!(matches!(err, StoreError::Config { .. }), "{url}: {err:?}");
        }
        let err = PostgresStore::builder().table("x; DROP TABLE y").open("postgres://127.0.0.1:1/db").await;
        assert!(matches!(err, Err(StoreError::Config { .. })), "{err:?}");
    }

    #[tokio::test]
    async fn debug_never_shows_the_connection() {
        let pool = PgPoolOptions::new().connect_lazy("postgres://app:hunter2@127.0.0.1:1/db").expect("valid URL");
        let table = Table::new("t").expect("valid");
        let store = PostgresStore { sql: Sql::new(&table), pool, table, timeout: Duration::from_secs(1) };
        let shown = format!("{store:?}");
        assert!(!shown.contains("hunter2") && !shown.contains("app"), "{shown}");
    }
}
