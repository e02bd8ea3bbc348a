//! Opening and preparing a database: connection settings, the schema, and
//! turning what goes wrong at that point into an error a user can act on.
//!
//! SQLite opens files lazily, so a path to something that is not a database
//! only fails on the first read. Setup reads (the journal mode, the schema)
//! before the store exists, so that failure surfaces at construction as a
//! [`StoreError::Config`] rather than as a 500 on the first request.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, OpenFlags};
use sessionkit::StoreError;

use super::migrate;
use super::table::{Sql, Table};

/// How long a connection this store opened waits for another connection's
/// lock (a second process on the same file, a checkpoint) before failing.
pub(super) const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Whether `path` names a database private to one connection (`""` and
/// `:memory:`): a second connection to it would see another, empty
/// database, and there is no file.
pub(super) fn is_private(path: &Path) -> bool {
    path.as_os_str().is_empty() || path.as_os_str() == ":memory:"
}

/// Whether [`open_writer`] may create the database file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Create {
    /// When the store is built: a new file is created, private.
    IfMissing,
    /// When the writer reopens its file: a file that vanished must not come
    /// back empty, as if every session had been deleted.
    Never,
}

/// The write connection for a database file, opened by the store, and
/// whether it is in WAL mode (and so can be read by other connections while
/// it writes).
pub(super) fn open_writer(
    path: &Path,
    table: &Table,
    sql: &Sql,
    create: Create,
) -> Result<(Connection, bool), StoreError> {
    let shown = path.display();
    // No SQLITE_OPEN_URI: the path is a file name, even if it starts with `file:`.
    let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    if create == Create::IfMissing {
        if !is_private(path) {
            create_private(path);
        }
        flags |= OpenFlags::SQLITE_OPEN_CREATE;
    }
    let conn = Connection::open_with_flags(path, flags)
        .map_err(|err| setup_error(format!("cannot open the SQLite database {shown}"), err))?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(|err| setup_error(format!("cannot configure {shown}"), err))?;
    // WAL: readers do not block the writer nor the writer readers, and a
    // commit appends to one file. The first statement to read the file,
    // so a file that is not a database fails here.
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
        .map_err(|err| setup_error(format!("cannot use {shown} as a SQLite database"), err))?;
    // FULL, not NORMAL: in WAL mode NORMAL skips the fsync at each commit,
    // so a power loss can drop commits already acknowledged. Group commit
    // pays that fsync once per batch instead of once per write.
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(|err| setup_error(format!("cannot configure {shown}"), err))?;
    prepare_schema(&conn, table, sql)?;
    Ok((conn, mode.eq_ignore_ascii_case("wal")))
}

/// Creates the database file, empty and private to its owner (`0600`), if
/// it does not exist. SQLite would create it `0644` (less the umask), and it
/// creates the `-wal` and `-shm` files with the database file's mode, so a
/// private database file keeps all three private. An empty file is an empty
/// database to SQLite.
///
/// `create_new`, so an existing file is never opened here: closing a second
/// descriptor of a file would drop the POSIX locks SQLite connections of
/// this process hold on it. Any other failure is left for SQLite's own open
/// to report, in the words the rest of setup uses.
fn create_private(path: &Path) {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    if let Err(err) = options.open(path)
        && err.kind() != std::io::ErrorKind::AlreadyExists
    {
        tracing::debug!(error = &err as &dyn std::error::Error, "could not create the SQLite database file");
    }
}

/// A connection for reads only, beside a writer in WAL mode.
pub(super) fn open_reader(path: &Path) -> rusqlite::Result<Connection> {
    // Read-write flags with `query_only` rather than a read-only open: a
    // read-only connection cannot create or rebuild the WAL's shared-memory
    // index, and reads must work whenever the writer's do.
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "query_only", true)?;
    Ok(conn)
}

/// Creates the tables if absent, migrates a sessions table of the previous
/// layout (see [`migrate`]), checks that every statement the store runs
/// compiles against them, then creates the indexes if absent. An existing
/// table of the same name with other columns or without a key on `id` is a
/// configuration error now (and is left as it was), not a failure on each
/// request later.
pub(super) fn prepare_schema(conn: &Connection, table: &Table, sql: &Sql) -> Result<(), StoreError> {
    let name = table.name();
    let not_a_session_table = |err| {
        setup_error(
            format!(
                "table {name:?} (or {name}_leases) exists but is not a session table \
                 (it needs columns id TEXT PRIMARY KEY, data TEXT, expires_at INTEGER)"
            ),
            err,
        )
    };
    conn.execute(&sql.create_table, [])
        .map_err(|err| setup_error(format!("cannot create the session table {name:?}"), err))?;
    migrate::add_user_column(conn, table, sql, not_a_session_table)?;
    conn.execute(&sql.create_leases, [])
        .map_err(|err| setup_error(format!("cannot create the lease table {name}_leases"), err))?;
    for query in sql.all_queries() {
        conn.prepare_cached(query).map_err(not_a_session_table)?;
    }
    for (index, what) in [
        (&sql.create_index, "the expiry index"),
        (&sql.create_user_index, "the user index"),
        (&sql.create_leases_index, "the lease expiry index"),
    ] {
        conn.execute(index, []).map_err(|err| setup_error(format!("cannot create {what} of table {name:?}"), err))?;
    }
    Ok(())
}

/// A setup failure. Busy and locked databases are passing conditions, so
/// they are backend errors (try again); everything else (a file that is
/// not a database, a directory, no permission, a foreign table) is a
/// configuration error that names the problem and keeps SQLite's error.
pub(super) fn setup_error(message: String, err: rusqlite::Error) -> StoreError {
    match err.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
            StoreError::backend("setting up the SQLite session store", err)
        }
        Some(ErrorCode::NotADatabase) => {
            StoreError::config_caused_by(format!("{message}: the file is not a SQLite database"), err)
        }
        _ => StoreError::config_caused_by(message, err),
    }
}
