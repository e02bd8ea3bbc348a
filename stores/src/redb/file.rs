//! How a [`RedbStore`](super::RedbStore) opens its database file, and
//! creates it so that a crash cannot leave a file that never opens again.
//!
//! redb initialises a new file in steps: it sizes the file, writes and syncs
//! a header, then writes the magic number that makes it a database. A
//! process killed in between leaves a file of the right size without the
//! magic number, which every later open refuses as "not a redb database":
//! the store could never start again until someone deleted the file. So a
//! file that does not exist yet is initialised under a temporary name in the
//! same directory and linked into place only once redb has written it
//! whole; the directory is then synced, so the name survives a power cut.
//! A crash leaves at most the temporary file (`.{name}.new-{pid}`) behind,
//! never a broken database under the real name.
//!
//! A file the store creates is private to its owner (`0600`): redb would
//! create it `0644` (less the umask). An existing file keeps its mode, and
//! an existing empty file (one the operator created, to choose its mode) is
//! initialised in place, as redb does.

use std::fs::{File, OpenOptions};
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use redb::backends::FileBackend;
use redb::{Database, DatabaseError, StorageError};
use sessionkit::StoreError;

/// Opens the database at `path`, creating it if it does not exist.
pub(super) fn open(path: &Path) -> Result<Database, StoreError> {
    open_or_create(path).map_err(|err| open_error(path, err))
}

fn open_or_create(path: &Path) -> Result<Database, DatabaseError> {
    let file = match options(false).open(path) {
        Ok(file) => file,
        Err(err) if err.kind() == ErrorKind::NotFound => {
            create(path)?;
            options(false).open(path)?
        }
        Err(err) => return Err(err.into()),
    };
    Database::builder().create_with_backend(FileBackend::new(file)?)
}

/// Read and write, and with `create` a new file private to its owner.
fn options(create: bool) -> OpenOptions {
    let mut options = OpenOptions::new();
    options.read(true).write(true);
    if create {
        // Truncated: a leftover of a crashed creation by a process of the
        // same id is started over.
        options.create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    }
    options
}

/// Creates an initialised database at `path`, unless someone else creates
/// one there first.
fn create(path: &Path) -> Result<(), DatabaseError> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
        _ => PathBuf::from("."),
    };
    let name = path.file_name().ok_or_else(|| std::io::Error::new(ErrorKind::InvalidInput, "not a file path"))?;
    let temporary = dir.join(format!(".{}.new-{}", name.to_string_lossy(), std::process::id()));
    let initialised = options(true)
        .open(&temporary)
        .map_err(DatabaseError::from)
        .and_then(|file| Database::builder().create_with_backend(FileBackend::new(file)?))
        // Closed before it gets its real name: the store opens it again.
        .map(drop);
    // A hard link does not replace a file that appeared meanwhile (another
    // process creating the same database): that one wins, and is opened.
    let linked = initialised.and_then(|()| match std::fs::hard_link(&temporary, path) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == ErrorKind::AlreadyExists => Ok(()),
        // A filesystem without hard links: renaming is as atomic, only not
        // exclusive.
        Err(_) => std::fs::rename(&temporary, path).map_err(DatabaseError::from),
    });
    if let Err(err) = std::fs::remove_file(&temporary)
        && err.kind() != ErrorKind::NotFound
    {
        tracing::warn!(error = &err as &dyn std::error::Error, "redb store: cannot remove a temporary database file");
    }
    linked?;
    sync_dir(&dir).map_err(DatabaseError::from)
}

/// Makes the directory's new entry durable.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    File::open(dir)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Says in words why a database file could not be opened.
fn open_error(path: &Path, err: DatabaseError) -> StoreError {
    let path = path.display();
    let message = match &err {
        DatabaseError::DatabaseAlreadyOpen => format!(
            "the redb database {path} is already open, by this process or another: open it once and share \
             the store (or build it on the open Database with RedbStore::from_database)"
        ),
        DatabaseError::UpgradeRequired(format) => {
            format!("{path} is in redb file format {format}, which must be upgraded before this redb can open it")
        }
        DatabaseError::Storage(StorageError::Io(io)) if io.kind() == ErrorKind::InvalidData => {
            format!("{path} is not a redb database")
        }
        DatabaseError::Storage(StorageError::Corrupted(_)) => format!("{path} is a corrupted redb database"),
        _ => format!("cannot open the redb database {path}"),
    };
    StoreError::config_caused_by(message, err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_database_appears_whole_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sessions.redb");
        drop(open(&path).expect("create"));
        let names: Vec<_> =
            std::fs::read_dir(dir.path()).expect("dir").map(|e| e.expect("entry").file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("sessions.redb")]);
        // It is a database already: redb's plain open, which never
        // initialises, accepts it.
        drop(Database::open(&path).expect("an initialised database"));
    }

    #[test]
    fn a_leftover_of_a_crashed_creation_does_not_stop_the_next_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sessions.redb");
        // What a creation killed half-way leaves: a temporary file of the
        // right size without redb's magic number.
        let leftover = dir.path().join(format!(".sessions.redb.new-{}", std::process::id()));
        std::fs::write(&leftover, vec![0u8; 4096]).expect("write");
        drop(open(&path).expect("create over the leftover"));
        assert!(!leftover.exists(), "the leftover was started over and removed");
        drop(Database::open(&path).expect("an initialised database"));
    }

    #[test]
    fn a_database_created_meanwhile_by_someone_else_is_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sessions.redb");
        {
            let db = Database::create(&path).expect("theirs");
            let txn = db.begin_write().expect("write");
            let table: redb::TableDefinition<&str, u64> = redb::TableDefinition::new("theirs");
            txn.open_table(table).expect("table").insert("kept", &1).expect("insert");
            txn.commit().expect("commit");
        }
        // As if theirs had appeared between our check and our link.
        create(&path).expect("create");
        let db = Database::open(&path).expect("open");
        let txn = redb::ReadableDatabase::begin_read(&db).expect("read");
        let table: redb::TableDefinition<&str, u64> = redb::TableDefinition::new("theirs");
        assert_eq!(txn.open_table(table).expect("table").get("kept").expect("get").map(|v| v.value()), Some(1));
    }
}
