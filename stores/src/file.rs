//! `FileStore`: one JSON file per session in a directory.
//!
//! The public contract (file layout, durability, locking, damaged files)
//! is documented on [`FileStore`]; the pieces live in submodules: the file
//! format (`format`), the stripe locks (`locks`), the queue that groups
//! writes into batches (`batcher`), a batch's writes of one session applied
//! in memory (`coalesce`), the durable commit of a batch (`commit`) and the
//! shared directory fsync (`dir_sync`). Why writes are batched this way is
//! in `docs/file-store-group-commit.md`.

mod batcher;
mod coalesce;
mod commit;
mod dir_sync;
mod format;
mod locks;

use std::ffi::OsStr;
use std::fs::{self, DirEntry, File, OpenOptions};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use sessionkit::{Changes, SessionMap, SessionRecord, SessionStore, StoreError, StoreKey, UpdateOutcome, expiry};

use self::batcher::Batcher;
use self::coalesce::{Op, Out};
use self::commit::FileCommit;
use self::dir_sync::DirSync;
use self::format::StoredRecord;
use self::locks::{LOCK_DIR, Locks, STRIPES, StripeGuard, stripe_of};

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

/// A session store keeping one JSON file per session in a directory.
///
/// Every write is durable (file and directory synced) before it returns,
/// `update` is atomic across threads and processes, concurrent writes share
/// their syncs (group commit), and all file I/O runs on tokio's blocking
/// threads.
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
/// └── .locks/00 … ff         the stripe lock files (see below)
/// ```
///
/// A file name is built only from a [`StoreKey`], which is 43 characters of
/// `A-Z a-z 0-9 - _` by construction: no client text, no `/`, no `..` ever
/// reaches a path.
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
/// `delete`, and the sweeper's removals) holds the lock of the session's
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
/// it. The sweeper leaves it in place (it cannot tell when it expires) and
/// warns about it.
///
/// [`delete_expired`]: SessionStore::delete_expired
#[derive(Clone)]
pub struct FileStore {
    inner: Arc<Inner>,
    /// One write queue per stripe (see [`locks`]), indexed by stripe.
    writes: Arc<[Batcher<FileCommit>]>,
}

struct Inner {
    dir: PathBuf,
    locks: Locks,
    dir_sync: DirSync,
    /// Makes temporary file names unique within this process; the process
    /// id makes them unique across processes.
    temp_seq: AtomicU64,
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
    files_written: std::sync::atomic::AtomicUsize,
    batches: std::sync::atomic::AtomicUsize,
}

impl FileStore {
    /// A store on the directory `dir`, created (with its parents) if it does
    /// not exist. Blocks on the file system briefly; in async code, prefer
    /// [`FileStore::open`].
    ///
    /// # Errors
    ///
    /// [`StoreError::Config`] when `dir` exists but is not a directory, or
    /// cannot be created, opened or written to.
    pub fn new(dir: impl AsRef<Path>) -> Result<Self, StoreError> {
        let dir = dir.as_ref();
        let dir = std::path::absolute(dir).map_err(|err| {
            StoreError::config_caused_by(format!("session directory {} cannot be resolved", dir.display()), err)
        })?;
        create_dir(&dir, "session directory")?;
        create_dir(&dir.join(LOCK_DIR), "session lock directory")?;
        let dir_sync = DirSync::open(&dir).map_err(|err| {
            StoreError::config_caused_by(format!("session directory {} cannot be opened", dir.display()), err)
        })?;
        let inner = Inner {
            locks: Locks::new(&dir),
            dir,
            dir_sync,
            temp_seq: AtomicU64::new(0),
            #[cfg(test)]
            faults: Faults::default(),
        };
        inner.probe_writable()?;
        let inner = Arc::new(inner);
        let writes = (0..STRIPES).map(|_| Batcher::new(FileCommit(Arc::clone(&inner)))).collect();
        Ok(Self { inner, writes })
    }

    /// [`FileStore::new`], run on a blocking thread.
    ///
    /// # Errors
    ///
    /// As [`FileStore::new`].
    pub async fn open(dir: impl AsRef<Path>) -> Result<Self, StoreError> {
        let dir = dir.as_ref().to_path_buf();
        tokio::task::spawn_blocking(move || Self::new(dir))
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

/// Creates `dir` if missing (owner-only on Unix: sessions are credentials'
/// worth of data) and checks that it is a directory.
fn create_dir(dir: &Path, what: &str) -> Result<(), StoreError> {
    match fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => return Ok(()),
        Ok(_) => return Err(StoreError::config(format!("{what} {} exists and is not a directory", dir.display()))),
        Err(err) if err.kind() == io::ErrorKind::NotFound => {}
        Err(err) => {
            return Err(StoreError::config_caused_by(format!("{what} {} cannot be accessed", dir.display()), err));
        }
    }
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(dir)
        .map_err(|err| StoreError::config_caused_by(format!("{what} {} cannot be created", dir.display()), err))
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
        let bytes = match fs::read(self.path(id)) {
            Ok(bytes) => bytes,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(StoreError::backend("file store: reading a session file", err)),
        };
        match format::decode(&bytes) {
            Ok(record) => Ok(is_live(record.expires_at, now_ms).then_some(record)),
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
        Ok(removed)
    }

    /// Removes the file of `id` if it is expired, checking again under the
    /// stripe lock so that a session refreshed meanwhile is kept.
    fn sweep_session(&self, id: &StoreKey, now: i64) -> Result<bool, StoreError> {
        if !self.is_expired_file(id, now)? {
            return Ok(false);
        }
        let stripe = stripe_of(id);
        let _guard = self.locks.lock_file(stripe, self.locks.blocking_lock_local(stripe)).map_err(lock_error)?;
        if !self.is_expired_file(id, now)? {
            return Ok(false);
        }
        self.remove(id)
    }

    /// Whether the file of `id` exists and is expired at `now`, reading as
    /// little of it as needed. Damaged files are logged and reported as not
    /// expired: their expiry is unknown.
    fn is_expired_file(&self, id: &StoreKey, now: i64) -> Result<bool, StoreError> {
        let file = match File::open(self.path(id)) {
            Ok(file) => file,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(err) => return Err(StoreError::backend("file store: opening a session file", err)),
        };
        match read_expiry(file) {
            Ok(expires_at) => Ok(!is_live(expires_at, now)),
            Err(ExpiryError::Io(err)) => Err(StoreError::backend("file store: reading a session file", err)),
            Err(ExpiryError::Damaged(err)) => {
                tracing::warn!(
                    id = ?id,
                    error = &err as &dyn std::error::Error,
                    "a damaged session file cannot be swept; remove it by hand"
                );
                Ok(false)
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
        let id = id.clone();
        let found = self.blocking(move |inner| inner.read_live(&id, now_ms())).await?;
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
    /// (older than five minutes, and no writer holds their session's lock);
    /// those are not counted.
    ///
    /// The directory is read one entry at a time and only the first few
    /// bytes of each session file are read, so a sweep's memory does not
    /// grow with the number of sessions.
    async fn delete_expired(&self) -> Result<u64, StoreError> {
        self.blocking(Inner::sweep).await
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

    #[test]
    fn opening_a_regular_file_is_a_config_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("plain");
        fs::write(&file, b"x").expect("write");
        for path in [file.clone(), file.join("below")] {
            match FileStore::new(&path) {
                Err(StoreError::Config { message, .. }) => {
                    assert!(message.contains("session directory"), "{message}")
                }
                other => panic!("expected a config error for {}, got {other:?}", path.display()),
            }
        }
    }
}
