//! `FileStore`: one JSON file per session in a directory.
//!
//! The public contract (file layout, durability, locking, damaged files)
//! is documented on [`FileStore`]; the pieces live in submodules: the file
//! format (`format`), the stripe locks (`locks`), the queue that groups
//! writes into batches (`batcher`), a batch's writes of one session applied
//! in memory (`coalesce`), the durable commit of a batch (`commit`), the
//! shared directory fsync (`dir_sync`), the user index (`users`), leases
//! (`leases`), `rename` and `scan`. Why writes are batched this way is in
//! `docs/file-store-group-commit.md`; why the index, leases and rename are
//! shaped as they are, in `docs/file-store-users-and-leases.md`.

mod batcher;
mod coalesce;
mod commit;
mod dir_sync;
mod format;
mod leases;
mod locks;
mod rename;
mod scan;
mod users;

use std::ffi::OsStr;
use std::fs::{self, DirEntry, File, OpenOptions};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use sessionkit::lease::{Lease, LeaseToken};
use sessionkit::{
    Changes, ScanCursor, ScanPage, SessionMap, SessionRecord, SessionStore, StoreError, StoreKey, UpdateOutcome, expiry,
};

use self::batcher::Batcher;
use self::coalesce::{Op, Out};
use self::commit::FileCommit;
use self::commit::owner;
use self::dir_sync::DirSync;
use self::format::StoredRecord;
use self::leases::{LEASES_DIR, Leases};
use self::locks::{LOCK_DIR, Locks, STRIPES, StripeGuard, stripe_of};
use self::users::{USERS_DIR, Users, is_user_dir_name, user_dir_name};
use crate::inline_reads::{self, InlineReads};

/// What the store's files are named by and its locks are picked by: the
/// one type to change when the store is keyed by something other than the
/// session id. Its text form must stay 43 characters of `A-Z a-z 0-9 - _`.
type Key = StoreKey;

/// The prefix of temporary files. A leading dot keeps them out of casual
/// listings and can never start a session file name.
const TEMP_PREFIX: &str = ".tmp-";
/// The suffix of session files.
const SESSION_SUFFIX: &str = ".json";
/// A temporary file at least this old, whose session nobody is writing, is
/// left over from a crash and is removed by the sweeper. A write holds its
/// temporary file for milliseconds; the age is a second line of defence
/// behind the stripe lock check.
const STALE_TEMP_AGE: Duration = Duration::from_secs(5 * 60);
/// A damaged session file (one that reads as no session) unchanged for this
/// long is removed by the sweeper.
const DAMAGED_FILE_AGE: Duration = Duration::from_secs(60 * 60);

/// A session store keeping one JSON file per session in a directory.
///
/// Every write is durable (file and directory synced) before it returns,
/// `update` and `rename` are atomic across threads and processes,
/// concurrent writes share their syncs (group commit), and file I/O runs
/// on tokio's blocking threads, except a `get` on a local disk or tmpfs
/// while files come from the page cache: that is one open, read and close
/// on the caller's task, and the reads go back to the blocking threads for
/// a second whenever one was served by the disk. It offers the whole store contract: a
/// user index (`sessions_of`, `revoke`, `revoke_all`), exclusive leases
/// with fencing, and `scan`, all shared by every process on the directory.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use sessionkit::{SessionId, StoreKey, SessionMap, SessionStore};
/// use sessionkit_stores::FileStore;
///
/// # let dir = tempfile::tempdir()?;
/// # let path = dir.path().join("sessions");
/// let store = FileStore::open(&path).await?; // creates the directory if needed
/// let id = StoreKey::hashed(&SessionId::generate());
/// let mut data = SessionMap::new();
/// data.insert("user".into(), "ada".into());
/// store.set(&id, &data, None).await?;
///
/// // Another store on the same directory (another process, or after a
/// // restart) sees the session.
/// let reopened = FileStore::open(&path).await?;
/// assert_eq!(reopened.get(&id).await?.map(|record| record.data), Some(data));
/// # Ok(()) }
/// ```
///
/// # Layout
///
/// ```text
/// sessions/
/// ├── <id>.json              one session: {"expiresAt": <Unix ms or null>, "data": {…}}
/// ├── .tmp-<id>-<pid>-<n>    a write in progress (or left behind by a crash)
/// ├── .locks/00 … ff         the stripe lock files (see below)
/// ├── .users/<sha256>/<id>   the user index: an empty file per session of a user
/// └── .leases/<id>           a session's lease: "<token> <expiry in Unix ms>"
/// ```
///
/// A file name is built only from a [`StoreKey`], which is 43 characters of
/// `A-Z a-z 0-9 - _` by construction, or from the hex SHA-256 of a user's
/// name: no client or app text, no `/`, no `..` ever reaches a path.
///
/// Opening a store creates the directory (with its parents) and its
/// subdirectories, and syncs the parent of each directory it creates, so
/// that a power cut after `open` returns cannot lose the store.
///
/// # Durability and crash safety
///
/// A write goes to a fresh temporary file in the same directory, is synced
/// (`fdatasync`), renamed over `<id>.json` (atomic), and the directory is
/// synced before the write is acknowledged. A crash at any moment therefore
/// leaves either the old file or the new one, never a mix, and an
/// acknowledged write is on disk. A crash can leave a temporary file behind;
/// readers never look at temporary files, and [`delete_expired`] removes them
/// once they are stale (older than five minutes, and no writer holds their
/// session's lock). Deletes sync the directory too.
///
/// # Users
///
/// A session whose data names a user ([`sessionkit::reserved::USER`]) is
/// listed in `.users/`, under the SHA-256 of the user's name. The entry is
/// created and synced under the session's stripe lock before the session
/// file naming the user is written, and removed after the session is gone
/// or has changed hands: the index on disk may hold entries left over (by
/// a crash between the steps, or by a `set` or `delete` that did not read
/// the session's previous owner), never miss a session. Every listing
/// checks each entry against its session file, so a left-over entry never
/// shows (nor expired, deleted or revoked sessions), and removes it under
/// the stripe lock; [`delete_expired`] removes the rest, and the user
/// directories left empty. `revoke` checks the session's owner under its
/// lock, inside a batch, like any write.
///
/// # Rename
///
/// `rename` holds the stripe locks of both keys (in ascending order), so
/// no write of either, in any process, comes between its steps: it writes
/// the new key (file synced, renamed into place, directory synced), then
/// removes the old key and syncs the directory again before it answers. A
/// crash between the two syncs leaves both keys: the old one, whole and
/// live, which the client still holds (it was never answered), and the new
/// one, which no client can reach (its id never left the crashed process)
/// and which shows in its user's listing until it is revoked or expires.
/// A crash never leaves neither.
///
/// # Leases
///
/// [`try_lease`] writes the lease (a random token and its expiry) to the
/// session's file in `.leases/`, under the stripe lock; the batch that
/// applies a fenced patch reads it under the same lock, right before the
/// write, so a lease holds across processes. A crashed holder's lease
/// blocks its session until it runs out (wall-clock time, which processes
/// on one machine share). Lease files are not synced: a power cut ends
/// every holder, and a lost or torn lease file reads as no lease.
///
/// # Scan
///
/// [`scan`] pages through the live sessions in the order of their keys
/// (the cursor is the last key a page looked at); each page lists the
/// directory's names once.
///
/// # Group commit
///
/// Writes (`set`, `update`, `touch`, `delete`) queue up by stripe (the 256
/// stripes of the locks below) and are made in batches: each batch takes
/// every write of its stripe that queued while the stripe's previous batch
/// was being written and synced. Within a batch, the writes of one session
/// are applied one after another, in the order they were queued, to the
/// record in memory, so 32 concurrent updates of one session become one file
/// write. The batch writes and syncs one temporary file per session it
/// changed, renames them, and only answers its writes once a directory sync
/// that started after its renames has completed. Batches of different
/// stripes run at the same time and share directory syncs: one sync covers
/// every rename made before it started. If a step fails, every write of the
/// batch fails (a write that failed may still have reached the disk, as
/// with any store; none reached it partly). A lone writer pays what it paid
/// without batching: one file sync and one directory sync. A caller that
/// stops waiting before its batch begins has its write dropped unmade; once
/// its batch has begun, the write is made.
///
/// # Concurrency, within and across processes
///
/// Reads take no lock: files are only ever replaced whole, so a reader sees
/// the old record or the new one. Every write (`set`, `update`, `touch`,
/// `delete`, `rename`, `revoke`, leases, and the sweeper's removals) holds
/// the lock of the session's
/// *stripe*, one of 256, chosen by a hash of the id: an in-process mutex,
/// then an advisory exclusive lock on the stripe's file in `.locks/`
/// ([`std::fs::File::lock`], `flock(2)` on Unix), from before it reads the
/// session until its file is renamed into place. So `update` is an atomic
/// read-modify-write even when several processes share the directory, and
/// an `update` or `touch` racing a `delete` never brings the session back.
/// The operating system drops a crashed process's locks. Advisory locks bind
/// only processes that take them, and are unreliable on network file
/// systems: keep the directory on a local file system and let only this
/// store write to it.
///
/// # Damaged files
///
/// A session file that is not valid JSON of the expected shape (truncated by
/// hand, overwritten, corrupted on disk) reads as absent, with a warning
/// naming the session by the prefix [`StoreKey`]'s `Debug` shows, never by
/// its whole id. `update` and `touch` treat it as missing; `set` replaces
/// it. The sweeper warns about it and, once nothing has changed it for an
/// hour (time for an operator to look at it), removes it: this store only
/// ever replaces a file whole, so a damaged file stays damaged.
///
/// [`delete_expired`]: SessionStore::delete_expired
/// [`try_lease`]: SessionStore::try_lease
/// [`scan`]: SessionStore::scan
#[derive(Clone)]
pub struct FileStore {
    inner: Arc<Inner>,
    /// One write queue per stripe (see [`locks`]), indexed by stripe.
    writes: Arc<[Batcher<FileCommit>]>,
}

struct Inner {
    dir: PathBuf,
    locks: Locks,
    users: Users,
    leases: Leases,
    dir_sync: DirSync,
    /// Makes temporary file names unique within this process; the process
    /// id makes them unique across processes.
    temp_seq: AtomicU64,
    /// Whether a `get` reads on the caller's task: `None` on a filesystem
    /// whose slow reads `getrusage` does not see (see `inline_reads`).
    inline_reads: Option<InlineReads>,
    /// Failures the tests inject, and what they count.
    #[cfg(test)]
    faults: Faults,
}

/// Switches that make the next syncs fail, and a count of the session
/// files written, for the tests of batching.
#[cfg(test)]
#[derive(Default)]
struct Faults {
    fail_file_sync: std::sync::atomic::AtomicBool,
    fail_dir_sync: std::sync::atomic::AtomicBool,
    /// Makes the sync of new user index entries fail.
    fail_index_sync: std::sync::atomic::AtomicBool,
    files_written: std::sync::atomic::AtomicUsize,
    batches: std::sync::atomic::AtomicUsize,
    /// Makes `rename` stop, as a crashed process would, once the new key
    /// is durable and before the old one is removed.
    crash_rename_midway: std::sync::atomic::AtomicBool,
}

impl FileStore {
    /// [`FileStore::open`]'s work, which blocks on the file system.
    fn open_blocking(dir: impl AsRef<Path>) -> Result<Self, StoreError> {
        let dir = dir.as_ref();
        let dir = std::path::absolute(dir).map_err(|err| {
            StoreError::config_caused_by(format!("session directory {} cannot be resolved", dir.display()), err)
        })?;
        create_dir(&dir, "session directory")?;
        create_dir(&dir.join(LOCK_DIR), "session lock directory")?;
        create_dir(&dir.join(USERS_DIR), "user index directory")?;
        create_dir(&dir.join(LEASES_DIR), "lease directory")?;
        let dir_sync = DirSync::open(&dir).map_err(|err| {
            StoreError::config_caused_by(format!("session directory {} cannot be opened", dir.display()), err)
        })?;
        let inline_reads = inline_reads::counts_its_reads(&dir).then(InlineReads::new);
        let inner = Inner {
            locks: Locks::new(&dir),
            users: Users::new(&dir),
            leases: Leases::new(&dir),
            dir,
            dir_sync,
            inline_reads,
            temp_seq: AtomicU64::new(0),
            #[cfg(test)]
            faults: Faults::default(),
        };
        inner.probe_writable()?;
        let inner = Arc::new(inner);
        let writes = (0..STRIPES).map(|_| Batcher::new(FileCommit(Arc::clone(&inner)))).collect();
        Ok(Self { inner, writes })
    }

    /// A store on the directory `dir`, created (with its parents, each
    /// made durable) if it does not exist. The file system work runs on a
    /// blocking thread.
    ///
    /// # Errors
    ///
    /// [`StoreError::Config`] when `dir` exists but is not a directory, or
    /// cannot be created, opened or written to.
    pub async fn open(dir: impl AsRef<Path>) -> Result<Self, StoreError> {
        let dir = dir.as_ref().to_path_buf();
        tokio::task::spawn_blocking(move || Self::open_blocking(dir))
            .await
            .map_err(|err| StoreError::backend("file store: opening the session directory", err))?
    }

    /// The session directory, as an absolute path.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Runs `work` on a blocking thread.
    async fn blocking<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Inner) -> Result<T, StoreError> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || work(&inner))
            .await
            .map_err(|err| StoreError::backend("file store: a blocking file operation failed", err))?
    }

    /// Queues `op` on the session `key` and waits until its batch is
    /// durable.
    async fn write(&self, key: &Key, op: Op) -> Result<Out, StoreError> {
        self.writes[stripe_of(key)].submit((key.clone(), op)).await
    }
}

/// The file's contents, read without updating its access time where the
/// platform allows (`O_NOATIME`, for files this process owns): a session
/// file is read right after every write, and with `relatime` that first
/// read would dirty its inode, a journal transaction that can wait behind
/// the file system's commit, on the caller's task when reads are inline.
fn read_without_atime(path: &Path) -> io::Result<Vec<u8>> {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::fs::OpenOptionsExt;
        match OpenOptions::new().read(true).custom_flags(nix::libc::O_NOATIME).open(path) {
            Ok(mut file) => {
                let mut bytes = Vec::new();
                file.read_to_end(&mut bytes)?;
                return Ok(bytes);
            }
            // Not the file's owner: read it the ordinary way.
            Err(err) if err.raw_os_error() == Some(nix::libc::EPERM) => {}
            Err(err) => return Err(err),
        }
    }
    fs::read(path)
}

/// The error for an answer of the wrong kind; [`coalesce`](self::coalesce)
/// answers each kind of write with its own kind, so this is a bug.
fn wrong_answer(out: Out) -> StoreError {
    StoreError::backend(
        "file store: writing",
        io::Error::other(format!("a write got the wrong kind of answer: {out:?}")),
    )
}

impl std::fmt::Debug for FileStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileStore").field("dir", &self.inner.dir).finish_non_exhaustive()
    }
}

fn lock_error(err: io::Error) -> StoreError {
    StoreError::backend("file store: locking a session for writing", err)
}

/// Creates `dir` if missing, with its missing parents (owner-only on Unix:
/// sessions are credentials' worth of data), durably: the parent of each
/// directory it creates is synced, so that a power cut after this returns
/// cannot lose the directory, and every acknowledged write in it with it.
/// Checks that `dir` is a directory.
fn create_dir(dir: &Path, what: &str) -> Result<(), StoreError> {
    match fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => return Ok(()),
        Ok(_) => return Err(StoreError::config(format!("{what} {} exists and is not a directory", dir.display()))),
        Err(err) if err.kind() == io::ErrorKind::NotFound => {}
        Err(err) => {
            return Err(StoreError::config_caused_by(format!("{what} {} cannot be accessed", dir.display()), err));
        }
    }
    // The missing directories, outermost first.
    let mut missing: Vec<&Path> = vec![dir];
    while let Some(parent) = missing[missing.len() - 1].parent().filter(|parent| !parent.as_os_str().is_empty()) {
        if fs::metadata(parent).is_ok() {
            break;
        }
        missing.push(parent);
    }
    missing.reverse();
    let mut builder = fs::DirBuilder::new();
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    for created in &missing {
        match builder.create(created) {
            Err(err) if err.kind() != io::ErrorKind::AlreadyExists => {
                return Err(StoreError::config_caused_by(format!("{what} {} cannot be created", dir.display()), err));
            }
            _ => {}
        }
    }
    for created in &missing {
        if let Some(parent) = created.parent() {
            File::open(parent).and_then(|parent| parent.sync_all()).map_err(|err| {
                StoreError::config_caused_by(format!("{what} {} cannot be made durable", dir.display()), err)
            })?;
        }
    }
    Ok(())
}

fn now_ms() -> i64 {
    expiry::to_unix_ms(SystemTime::now())
}

fn is_live(expires_at_ms: Option<i64>, now_ms: i64) -> bool {
    expires_at_ms.is_none_or(|at| at > now_ms)
}

/// The session a file name belongs to, when it is a session file.
fn session_file_id(name: &str) -> Option<StoreKey> {
    StoreKey::parse(name.strip_suffix(SESSION_SUFFIX)?)
}

/// The session a temporary file name was written for, if it names one.
fn temp_file_id(name: &str) -> Option<StoreKey> {
    let rest = name.strip_prefix(TEMP_PREFIX)?;
    StoreKey::parse(rest.get(..43)?)
}

impl Inner {
    fn path(&self, key: &Key) -> PathBuf {
        self.dir.join(format!("{}{SESSION_SUFFIX}", key.as_str()))
    }

    fn sync_dir(&self) -> Result<(), StoreError> {
        self.dir_sync.sync().map_err(|err| StoreError::backend("file store: syncing the session directory", err))
    }

    /// Fails with a configuration error unless files can be created in the
    /// directory.
    fn probe_writable(&self) -> Result<(), StoreError> {
        let probe = self.temp_path("probe");
        let created = OpenOptions::new().write(true).create_new(true).open(&probe);
        match created {
            Ok(file) => {
                drop(file);
                fs::remove_file(&probe).map_err(|err| {
                    StoreError::config_caused_by(
                        format!("session directory {} is not writable", self.dir.display()),
                        err,
                    )
                })
            }
            Err(err) => Err(StoreError::config_caused_by(
                format!("session directory {} is not writable", self.dir.display()),
                err,
            )),
        }
    }

    fn temp_path(&self, label: &str) -> PathBuf {
        let seq = self.temp_seq.fetch_add(1, Ordering::Relaxed);
        self.dir.join(format!("{TEMP_PREFIX}{label}-{}-{seq}", std::process::id()))
    }

    /// The live record of `id`: `None` when absent, expired or damaged
    /// (damage is logged).
    fn read_live(&self, id: &Key, now_ms: i64) -> Result<Option<StoredRecord>, StoreError> {
        Ok(self.read_any(id)?.filter(|record| is_live(record.expires_at, now_ms)))
    }

    /// The record of `id`, expired or not: `None` when absent or damaged
    /// (damage is logged).
    fn read_any(&self, id: &Key) -> Result<Option<StoredRecord>, StoreError> {
        let bytes = match read_without_atime(&self.path(id)) {
            Ok(bytes) => bytes,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(StoreError::backend("file store: reading a session file", err)),
        };
        match format::decode(&bytes) {
            Ok(record) => Ok(Some(record)),
            Err(err) => {
                tracing::warn!(
                    id = ?id,
                    error = &err as &dyn std::error::Error,
                    "a damaged session file reads as no session"
                );
                Ok(None)
            }
        }
    }

    fn create_temp(&self, id: &Key) -> io::Result<(PathBuf, File)> {
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        // A name can only be taken by a file left over from a crashed
        // process that had the same process id; try the next number.
        let mut attempts = 0;
        loop {
            let temp = self.temp_path(id.as_str());
            match options.open(&temp) {
                Ok(file) => return Ok((temp, file)),
                Err(err) if err.kind() == io::ErrorKind::AlreadyExists && attempts < 16 => attempts += 1,
                Err(err) => return Err(err),
            }
        }
    }

    /// The stripe locks of `keys`' stripes, each once, in ascending order
    /// (see `locks`), waiting on this blocking thread.
    fn lock_stripes<'k>(&self, keys: impl IntoIterator<Item = &'k Key>) -> Result<Vec<StripeGuard>, StoreError> {
        let stripes: std::collections::BTreeSet<usize> = keys.into_iter().map(stripe_of).collect();
        stripes
            .into_iter()
            .map(|stripe| self.locks.lock_file(stripe, self.locks.blocking_lock_local(stripe)).map_err(lock_error))
            .collect()
    }

    /// Whether `user` (by its directory name) owns the live session `key`.
    fn owns(&self, dir_name: &str, key: &Key, now: i64) -> Result<bool, StoreError> {
        Ok(self
            .read_live(key, now)?
            .and_then(|record| owner(&record))
            .is_some_and(|user| user_dir_name(&user) == dir_name))
    }

    /// Drops `key` from the index directory `dir_name` unless, checked
    /// again under the stripe lock, the entry is current.
    fn repair_entry(&self, dir_name: &str, key: &Key) -> Result<(), StoreError> {
        let _guard = self.lock_stripes([key])?;
        if !self.owns(dir_name, key, now_ms())? {
            self.users
                .remove_hashed(dir_name, key)
                .map_err(|err| StoreError::backend("file store: dropping a user index entry", err))?;
        }
        Ok(())
    }

    /// `user`'s live sessions, dropping the index entries that turn out to
    /// be left over.
    fn sessions_of(&self, user: &str) -> Result<Vec<(StoreKey, SessionRecord)>, StoreError> {
        let keys = self
            .users
            .keys_of(user)
            .map_err(|err| StoreError::backend("file store: listing a user's sessions", err))?;
        let (now, dir_name) = (now_ms(), user_dir_name(user));
        let mut listed = Vec::with_capacity(keys.len());
        for key in keys {
            match self.read_live(&key, now)? {
                Some(record) if owner(&record).as_deref() == Some(user) => {
                    let expires_at = record.expires_at.map(expiry::from_unix_ms);
                    listed.push((key, SessionRecord::new(record.data, expires_at)));
                }
                _ => {
                    if let Err(err) = self.repair_entry(&dir_name, &key) {
                        tracing::warn!(error = &err as &dyn std::error::Error, "could not drop a user index entry");
                    }
                }
            }
        }
        Ok(listed)
    }

    /// Drops left-over index entries and the user directories left empty.
    fn sweep_index(&self, now: i64) -> Result<(), StoreError> {
        let listing = |err| StoreError::backend("file store: listing the user index", err);
        for entry in fs::read_dir(self.users.root()).map_err(listing)? {
            let entry = entry.map_err(listing)?;
            let name = entry.file_name();
            let Some(dir_name) = name.to_str().filter(|name| is_user_dir_name(name)) else { continue };
            for key in users::keys_in(&entry.path()).map_err(listing)? {
                if !self.owns(dir_name, &key, now)? {
                    self.repair_entry(dir_name, &key)?;
                }
            }
            // Fails, harmlessly, when an entry was added meanwhile: `rmdir`
            // removes empty directories only, and adders retry if theirs
            // vanishes.
            let _ = fs::remove_dir(entry.path());
        }
        Ok(())
    }

    /// Removes the lease files that ran out.
    fn sweep_leases(&self, now: i64) -> Result<(), StoreError> {
        let failed = |err| StoreError::backend("file store: sweeping leases", err);
        for key in self.leases.keys().map_err(failed)? {
            if self.leases.read(&key).map_err(failed)?.is_some_and(|held| held.expires_at_ms > now) {
                continue;
            }
            let _guard = self.lock_stripes([&key])?;
            self.leases.remove_if_ran_out(&key, now).map_err(failed)?;
        }
        Ok(())
    }

    fn try_lease(&self, key: &Key, ttl: Duration) -> Result<Option<Lease>, StoreError> {
        let _guard = self.lock_stripes([key])?;
        self.leases.try_take(key, ttl, now_ms()).map_err(|err| StoreError::backend("file store: taking a lease", err))
    }

    fn release_lease(&self, key: &Key, token: LeaseToken) -> Result<(), StoreError> {
        let _guard = self.lock_stripes([key])?;
        self.leases.release(key, token).map_err(|err| StoreError::backend("file store: releasing a lease", err))
    }

    fn remove(&self, id: &StoreKey) -> Result<bool, StoreError> {
        match fs::remove_file(self.path(id)) {
            Ok(()) => Ok(true),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(err) => Err(StoreError::backend("file store: removing a session file", err)),
        }
    }

    /// Removes expired session files and stale temporary files, walking the
    /// directory one entry at a time. Returns how many sessions it removed.
    fn sweep(&self) -> Result<u64, StoreError> {
        let now = now_ms();
        let entries = fs::read_dir(&self.dir)
            .map_err(|err| StoreError::backend("file store: listing the session directory", err))?;
        let (mut removed, mut changed) = (0, false);
        for entry in entries {
            let entry = entry.map_err(|err| StoreError::backend("file store: listing the session directory", err))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if let Some(id) = session_file_id(name) {
                match self.sweep_session(&id, now) {
                    Ok(true) => (removed, changed) = (removed + 1, true),
                    Ok(false) => {}
                    Err(err) => tracing::warn!(
                        id = ?id,
                        error = &err as &dyn std::error::Error,
                        "could not sweep a session file; trying again at the next sweep"
                    ),
                }
            } else if name.starts_with(TEMP_PREFIX) {
                match self.sweep_temp(name, &entry) {
                    Ok(swept) => changed |= swept,
                    Err(err) => tracing::warn!(
                        error = &err as &dyn std::error::Error,
                        "could not remove a leftover temporary session file; trying again at the next sweep"
                    ),
                }
            }
        }
        if changed {
            self.sync_dir()?;
        }
        // After the sessions: the entries of the sessions just swept go too.
        if let Err(err) = self.sweep_index(now) {
            tracing::warn!(
                error = &err as &dyn std::error::Error,
                "could not sweep the user index; trying again at the next sweep"
            );
        }
        if let Err(err) = self.sweep_leases(now) {
            tracing::warn!(
                error = &err as &dyn std::error::Error,
                "could not sweep leases; trying again at the next sweep"
            );
        }
        Ok(removed)
    }

    /// Removes the file of `id` if it is expired, or damaged and left alone
    /// for [`DAMAGED_FILE_AGE`], checking again under the stripe lock so
    /// that a session refreshed (or rewritten whole) meanwhile is kept.
    fn sweep_session(&self, id: &StoreKey, now: i64) -> Result<bool, StoreError> {
        if self.sweep_verdict(id, now)? == SweepVerdict::Keep {
            return Ok(false);
        }
        let stripe = stripe_of(id);
        let _guard = self.locks.lock_file(stripe, self.locks.blocking_lock_local(stripe)).map_err(lock_error)?;
        match self.sweep_verdict(id, now)? {
            SweepVerdict::Keep => Ok(false),
            SweepVerdict::Expired => self.remove(id),
            SweepVerdict::Damaged => {
                let removed = self.remove(id)?;
                if removed {
                    tracing::warn!(id = ?id, "removed a damaged session file that nothing had rewritten");
                }
                Ok(removed)
            }
        }
    }

    /// What the sweeper does with the file of `id`, reading as little of it
    /// as needed. A damaged file's expiry is unknown, but it reads as no
    /// session to everyone, and this store never leaves a file half-written
    /// (it replaces files whole by a rename): the damage is lasting. It is
    /// kept for [`DAMAGED_FILE_AGE`] after its last change, time for an
    /// operator to look at it, then removed.
    fn sweep_verdict(&self, id: &StoreKey, now: i64) -> Result<SweepVerdict, StoreError> {
        let file = match File::open(self.path(id)) {
            Ok(file) => file,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(SweepVerdict::Keep),
            Err(err) => return Err(StoreError::backend("file store: opening a session file", err)),
        };
        let modified = file.metadata().and_then(|meta| meta.modified());
        match read_expiry(file) {
            Ok(expires_at) if is_live(expires_at, now) => Ok(SweepVerdict::Keep),
            Ok(_) => Ok(SweepVerdict::Expired),
            Err(ExpiryError::Io(err)) => Err(StoreError::backend("file store: reading a session file", err)),
            Err(ExpiryError::Damaged(err)) => {
                // A clock set backwards makes the file look new: keep it for now.
                let old = modified.ok().and_then(|at| at.elapsed().ok()).is_some_and(|age| age >= DAMAGED_FILE_AGE);
                if old {
                    return Ok(SweepVerdict::Damaged);
                }
                tracing::warn!(
                    id = ?id,
                    error = &err as &dyn std::error::Error,
                    "a damaged session file reads as no session; the sweeper removes it once it is {} minutes old",
                    DAMAGED_FILE_AGE.as_secs() / 60
                );
                Ok(SweepVerdict::Keep)
            }
        }
    }

    /// Removes a stale temporary file left behind by a crashed writer.
    /// Returns whether it removed one.
    ///
    /// A file is stale when it is older than [`STALE_TEMP_AGE`] and, when
    /// its name carries a session id, nobody (in this process or another)
    /// holds that session's stripe lock: a writer holds the lock for as long
    /// as its temporary file exists, so a temporary file whose stripe is
    /// free belongs to no live writer.
    fn sweep_temp(&self, name: &str, entry: &DirEntry) -> io::Result<bool> {
        let modified = match entry.metadata().and_then(|meta| meta.modified()) {
            Ok(modified) => modified,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(err) => return Err(err),
        };
        // A clock set backwards makes the file look new: keep it for now.
        if modified.elapsed().map_or(true, |age| age < STALE_TEMP_AGE) {
            return Ok(false);
        }
        let _guard: Option<StripeGuard> = match temp_file_id(name) {
            Some(id) => {
                let stripe = stripe_of(&id);
                let Some(local) = self.locks.try_lock_local(stripe) else { return Ok(false) };
                match self.locks.try_lock_file(stripe, local)? {
                    Some(guard) => Some(guard),
                    None => return Ok(false),
                }
            }
            None => None,
        };
        match fs::remove_file(self.dir.join(OsStr::new(name))) {
            Ok(()) => Ok(true),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(err) => Err(err),
        }
    }
}

/// What the sweeper does with one session file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SweepVerdict {
    Keep,
    Expired,
    Damaged,
}

enum ExpiryError {
    Io(io::Error),
    Damaged(serde_json::Error),
}

/// The expiry stored in `file`: from its first bytes when it is laid out as
/// this store writes it, else by streaming through it.
fn read_expiry(mut file: File) -> Result<Option<i64>, ExpiryError> {
    let mut prefix = Vec::with_capacity(format::PEEK_LEN);
    (&mut file).take(format::PEEK_LEN as u64).read_to_end(&mut prefix).map_err(ExpiryError::Io)?;
    if let Some(expires_at) = format::peek_expiry(&prefix) {
        return Ok(expires_at);
    }
    format::scan_expiry(prefix.as_slice().chain(file)).map_err(|err| match err.io_error_kind() {
        Some(kind) => ExpiryError::Io(io::Error::new(kind, err)),
        None => ExpiryError::Damaged(err),
    })
}

#[sessionkit::async_trait]
impl SessionStore for FileStore {
    async fn get(&self, id: &StoreKey) -> Result<Option<SessionRecord>, StoreError> {
        // A read takes no lock and writes nothing: on the caller's task
        // while files come from the page cache (see `inline_reads`).
        let found = match &self.inner.inline_reads {
            Some(reads) if reads.allowed() => reads.run(|| self.inner.read_live(id, now_ms()))?,
            _ => {
                let id = id.clone();
                self.blocking(move |inner| inner.read_live(&id, now_ms())).await?
            }
        };
        Ok(found.map(|record| SessionRecord::new(record.data, record.expires_at.map(expiry::from_unix_ms))))
    }

    async fn set(&self, id: &StoreKey, data: &SessionMap, expires_at: Option<SystemTime>) -> Result<(), StoreError> {
        let op = Op::Set { data: data.clone(), expires_at: expires_at.map(expiry::to_unix_ms) };
        match self.write(id, op).await? {
            Out::Done => Ok(()),
            other => Err(wrong_answer(other)),
        }
    }

    async fn delete(&self, id: &StoreKey) -> Result<(), StoreError> {
        match self.write(id, Op::Delete).await? {
            Out::Done => Ok(()),
            other => Err(wrong_answer(other)),
        }
    }

    async fn touch(&self, id: &StoreKey, expires_at: Option<SystemTime>) -> Result<bool, StoreError> {
        match self.write(id, Op::Touch { expires_at: expires_at.map(expiry::to_unix_ms) }).await? {
            Out::Touched(found) => Ok(found),
            other => Err(wrong_answer(other)),
        }
    }

    /// Applies `changes` to the stored data under the session's lock, as
    /// part of a batch (see [`FileStore`]): no other writer, in this
    /// process or another, can slip in between the read and the write.
    async fn update(
        &self,
        id: &StoreKey,
        changes: &Changes,
        expires_at: Option<SystemTime>,
    ) -> Result<UpdateOutcome, StoreError> {
        let op = Op::Update { changes: changes.clone(), expires_at: expires_at.map(expiry::to_unix_ms) };
        match self.write(id, op).await? {
            Out::Updated(outcome) => Ok(outcome),
            other => Err(wrong_answer(other)),
        }
    }

    /// Removes expired session files and returns how many. Also removes
    /// temporary files left behind by crashed writers once they are stale
    /// (older than five minutes, and no writer holds their session's lock),
    /// the user index entries of sessions that are gone (and user
    /// directories left empty), and the lease files that ran out; those are
    /// not counted.
    ///
    /// The directory is read one entry at a time and only the first few
    /// bytes of each session file are read, so a sweep's memory does not
    /// grow with the number of sessions.
    async fn delete_expired(&self) -> Result<u64, StoreError> {
        self.blocking(Inner::sweep).await
    }

    /// Moves the session under the locks of both keys, durably; see
    /// [`FileStore`] for what a crash midway leaves.
    async fn rename(
        &self,
        from: &StoreKey,
        to: &StoreKey,
        changes: &Changes,
        expires_at: Option<SystemTime>,
    ) -> Result<UpdateOutcome, StoreError> {
        if from == to {
            return self.update(from, changes, expires_at).await;
        }
        let (from, to, changes) = (from.clone(), to.clone(), changes.clone());
        let expires_at = expires_at.map(expiry::to_unix_ms);
        self.blocking(move |inner| inner.rename(&from, &to, &changes, expires_at)).await
    }

    async fn sessions_of(&self, user: &str) -> Result<Vec<(StoreKey, SessionRecord)>, StoreError> {
        let user = user.to_owned();
        self.blocking(move |inner| inner.sessions_of(&user)).await
    }

    async fn revoke(&self, user: &str, key: &StoreKey) -> Result<bool, StoreError> {
        match self.write(key, Op::Revoke { user: user.to_owned() }).await? {
            Out::Revoked(revoked) => Ok(revoked),
            other => Err(wrong_answer(other)),
        }
    }

    /// Revokes each session the user's index lists, concurrently (each
    /// through its stripe's batch, checked against its file there).
    async fn revoke_all(&self, user: &str, except: Option<&StoreKey>) -> Result<u64, StoreError> {
        let owned = user.to_owned();
        let keys = self
            .blocking(move |inner| {
                inner
                    .users
                    .keys_of(&owned)
                    .map_err(|err| StoreError::backend("file store: listing a user's sessions", err))
            })
            .await?;
        let mut revocations = tokio::task::JoinSet::new();
        for key in keys.into_iter().filter(|key| Some(key) != except) {
            let (store, user) = (self.clone(), user.to_owned());
            revocations.spawn(async move { store.revoke(&user, &key).await });
        }
        let mut revoked = 0;
        while let Some(done) = revocations.join_next().await {
            let done = done.map_err(|err| StoreError::backend("file store: revoking a user's session", err))?;
            revoked += u64::from(done?);
        }
        Ok(revoked)
    }

    async fn scan(&self, cursor: &ScanCursor, limit: usize) -> Result<ScanPage, StoreError> {
        let cursor = cursor.clone();
        self.blocking(move |inner| inner.scan(&cursor, limit)).await
    }

    async fn try_lease(&self, key: &StoreKey, ttl: Duration) -> Result<Option<Lease>, StoreError> {
        let key = key.clone();
        self.blocking(move |inner| inner.try_lease(&key, ttl)).await
    }

    async fn release_lease(&self, key: &StoreKey, token: LeaseToken) -> Result<(), StoreError> {
        let key = key.clone();
        self.blocking(move |inner| inner.release_lease(&key, token)).await
    }
}

/// Every way this store reads a session file's bytes, for the fuzz targets
/// in `fuzz/` (built with `--cfg fuzzing` only).
#[cfg(fuzzing)]
pub(crate) fn fuzz_read(bytes: &[u8]) {
    let _ = format::decode(bytes);
    let _ = format::peek_expiry(&bytes[..bytes.len().min(format::PEEK_LEN)]);
    let _ = format::scan_expiry(bytes);
}

#[cfg(test)]
mod contract_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_well_formed_names_are_taken_for_sessions() {
        let id = sessionkit::testing::checks::key();
        assert_eq!(session_file_id(&format!("{id}.json")), Some(id.clone()));
        assert_eq!(temp_file_id(&format!(".tmp-{id}-12-0")), Some(id.clone()));
        for name in [
            format!("{id}"),
            format!("{id}.json.bak"),
            format!(".tmp-{id}-1-1"),
            format!("x{id}.json"),
            "..json".to_string(),
            ".locks".to_string(),
        ] {
            assert_eq!(session_file_id(&name), None, "{name}");
        }
        assert_eq!(temp_file_id(".tmp-probe-1-0"), None);
        assert_eq!(temp_file_id(".tmp-"), None);
    }

    /// A temporary file, however old, is kept while its session's stripe is
    /// locked (a writer in another process may be at work on it).
    #[tokio::test]
    async fn the_sweeper_keeps_temporary_files_of_sessions_being_written() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = FileStore::open(dir.path()).await.expect("open");
        let id = sessionkit::testing::checks::key();
        let temp = dir.path().join(format!(".tmp-{id}-99-0"));
        fs::write(&temp, b"{").expect("write");
        let old = SystemTime::now() - STALE_TEMP_AGE - Duration::from_secs(1);
        File::options().write(true).open(&temp).expect("open").set_modified(old).expect("backdate");

        // Another process's writer: its own lock table, the same lock files.
        let theirs = Locks::new(dir.path());
        let stripe = stripe_of(&id);
        let held = theirs.lock_file(stripe, theirs.lock_local(stripe).await).expect("lock");
        store.delete_expired().await.expect("sweep");
        assert!(temp.exists(), "a temporary file whose session is locked must be kept");

        drop(held);
        // In this process: the in-process lock alone must keep it too.
        let local = store.inner.locks.lock_local(stripe).await;
        store.delete_expired().await.expect("sweep");
        assert!(temp.exists(), "a temporary file whose session is locked in-process must be kept");

        drop(local);
        store.delete_expired().await.expect("sweep");
        assert!(!temp.exists(), "a stale temporary file nobody holds must be removed");
    }

    /// A damaged session file reads as no session; the sweeper keeps it for
    /// an hour after its last change (time to look at it), then removes it,
    /// and leaves a healthy session alone.
    #[tokio::test]
    async fn the_sweeper_removes_damaged_files_once_they_are_old() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = FileStore::open(dir.path()).await.expect("open");
        let (healthy, fresh, old) = (
            sessionkit::testing::checks::key(),
            sessionkit::testing::checks::key(),
            sessionkit::testing::checks::key(),
        );
        store.set(&healthy, &SessionMap::new(), None).await.expect("set");
        for key in [&fresh, &old] {
            fs::write(dir.path().join(format!("{key}.json")), b"{\"expires_at\": 1, \"da").expect("damage");
        }
        let long_ago = SystemTime::now() - DAMAGED_FILE_AGE - Duration::from_secs(1);
        File::options()
            .write(true)
            .open(dir.path().join(format!("{old}.json")))
            .expect("open")
            .set_modified(long_ago)
            .expect("backdate");
        assert_eq!(store.get(&old).await.expect("get"), None, "a damaged file reads as no session");

        assert_eq!(store.delete_expired().await.expect("sweep"), 1);
        assert!(!dir.path().join(format!("{old}.json")).exists(), "an old damaged file must be removed");
        assert!(dir.path().join(format!("{fresh}.json")).exists(), "a recently damaged file is kept for a while");
        assert!(store.get(&healthy).await.expect("get").is_some(), "a healthy session must be kept");
    }

    #[test]
    fn opening_a_regular_file_is_a_config_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("plain");
        fs::write(&file, b"x").expect("write");
        for path in [file.clone(), file.join("below")] {
            match FileStore::open_blocking(&path) {
                Err(StoreError::Config { message, .. }) => {
                    assert!(message.contains("session directory"), "{message}")
                }
                other => panic!("expected a config error for {}, got {other:?}", path.display()),
            }
        }
    }
}
