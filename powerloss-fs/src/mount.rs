//! Mounting, power cuts and unmounting: [`PowerLossFs`] configures a mount,
//! [`Mounted`] is one, served by threads of this process until it is
//! dropped.

use std::fmt;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use fuser::{BackgroundSession, Config, MountOption};
use nix::errno::Errno;
use nix::mount::{MntFlags, umount2};
use tempfile::TempDir;

use crate::filesystem::{PowerLossFuse, Shared, lock};
use crate::model::{Counters, CutSummary, Faults, Model};
use crate::rng::Rng;

/// The source name of every mount (in `/proc/self/mountinfo`), by which
/// leftovers of killed test processes are recognised.
const FS_NAME: &str = "sessionkit-powerloss";

/// The prefix of every mount point's directory name.
const DIR_PREFIX: &str = "sessionkit-powerloss-";

/// Request-serving threads per mount.
const THREADS: usize = 2;

/// How long an unmount waits for files still open on the mount (a store
/// closing on a background thread) before detaching it.
const BUSY_WAIT: Duration = Duration::from_secs(1);

/// How to mount a power-loss filesystem. Start from [`PowerLossFs::new`].
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct PowerLossFs {
    torn: bool,
    seed: Option<u64>,
    faults: Faults,
}

/// What went missing for FUSE to work here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FuseUnavailable {
    missing: Vec<&'static str>,
}

impl fmt::Display for FuseUnavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "FUSE is not usable here: missing {} (scripts/install-test-deps installs fuse3)",
            self.missing.join(", ")
        )
    }
}

impl std::error::Error for FuseUnavailable {}

/// Whether this machine can mount the filesystem: `/dev/fuse` exists and
/// Debian's `fusermount3` is on `PATH` (root mounts with `mount(2)`
/// directly, but the tests require the same setup everywhere).
///
/// # Errors
///
/// [`FuseUnavailable`], naming what is missing.
pub fn fuse_available() -> Result<(), FuseUnavailable> {
    let mut missing = Vec::new();
    if !Path::new("/dev/fuse").exists() {
        missing.push("/dev/fuse");
    }
    if Command::new("fusermount3").arg("--version").output().is_err() {
        missing.push("fusermount3");
    }
    if missing.is_empty() { Ok(()) } else { Err(FuseUnavailable { missing }) }
}

impl PowerLossFs {
    /// Strict mode (every unsynced change is lost at a cut), no faults, a
    /// seed from the clock.
    pub fn new() -> Self {
        Self::default()
    }

    /// Torn mode: at a cut, each file keeps a random prefix of its unsynced
    /// writes, the last of them possibly cut at a sector boundary
    /// [default: off, everything unsynced is lost].
    pub fn torn(mut self, on: bool) -> Self {
        self.torn = on;
        self
    }

    /// The seed of the cuts' random choices [default: from the clock], so a
    /// failing run can be replayed ([`Mounted::seed`] tells the one used).
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Fault: `fsync` of a directory succeeds but makes nothing durable.
    pub fn ignore_dir_fsync(mut self, on: bool) -> Self {
        self.faults.ignore_dir_sync = on;
        self
    }

    /// Fault: `fsync`/`fdatasync` of a file succeeds but makes nothing durable.
    pub fn ignore_file_fsync(mut self, on: bool) -> Self {
        self.faults.ignore_file_sync = on;
        self
    }

    /// Mounts an empty filesystem on a fresh temporary directory.
    ///
    /// # Errors
    ///
    /// When FUSE is missing ([`FuseUnavailable`] as the source) or the
    /// mount is refused.
    pub fn mount(self) -> io::Result<Mounted> {
        fuse_available().map_err(io::Error::other)?;
        sweep_dead_mounts();
        let dir = tempfile::Builder::new().prefix(DIR_PREFIX).tempdir()?;
        let path = dir.path().canonicalize()?;
        let seed = self
            .seed
            .unwrap_or_else(|| SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1));
        let counters = Arc::new(Counters::default());
        let (uid, gid) = (nix::unistd::geteuid().as_raw(), nix::unistd::getegid().as_raw());
        let model = Arc::new(Mutex::new(Model::new(uid, gid, self.torn, self.faults, Arc::clone(&counters))));
        let mut mounted = Mounted {
            session: None,
            model,
            path,
            rng: Rng::new(seed),
            seed,
            counters,
            cuts: 0,
            connection: None,
            dir: Some(dir),
        };
        mounted.serve()?;
        Ok(mounted)
    }

    /// [`mount`](Self::mount), or `None` after saying loudly why this test
    /// is skipped when FUSE is missing or refused here. Under `CI=true` it
    /// panics instead: CI must never pass by skipping.
    ///
    /// # Panics
    ///
    /// Under `CI=true`, when the mount fails.
    pub fn mount_or_skip(self) -> Option<Mounted> {
        match self.mount() {
            Ok(mounted) => Some(mounted),
            Err(err) if std::env::var("CI").is_ok_and(|ci| ci == "true") => {
                panic!("CI=true and the power-loss filesystem cannot be mounted: {err}")
            }
            Err(err) => {
                eprintln!("SKIPPED: the power-loss filesystem cannot be mounted: {err}");
                None
            }
        }
    }
}

/// Syncs the filesystem's counters since it was mounted, across cuts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SyncCounts {
    /// File syncs that made data durable.
    pub file_syncs: u64,
    /// Directory syncs that made entries durable.
    pub dir_syncs: u64,
    /// File syncs ignored by [`PowerLossFs::ignore_file_fsync`].
    pub ignored_file_syncs: u64,
    /// Directory syncs ignored by [`PowerLossFs::ignore_dir_fsync`].
    pub ignored_dir_syncs: u64,
}

/// What one [`Mounted::cut`] threw away.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Cut {
    /// Files that lost unsynced changes, wholly or in part.
    pub files_rolled_back: usize,
    /// Files that kept a torn prefix of their unsynced writes.
    pub files_torn: usize,
    /// Directories that lost unsynced entry changes.
    pub dirs_rolled_back: usize,
    /// Something still had a file open at the cut: the old mount was
    /// detached lazily, and that file now fails with `EIO` (or `ENOTCONN`).
    pub was_busy: bool,
}

/// A mounted power-loss filesystem. Dropping it unmounts it and removes
/// its mount point, also while a test panics.
pub struct Mounted {
    session: Option<BackgroundSession>,
    model: Shared,
    path: PathBuf,
    rng: Rng,
    seed: u64,
    counters: Arc<Counters>,
    cuts: u64,
    /// The kernel's name for the current FUSE connection (fusectl's).
    connection: Option<u64>,
    /// Removed (empty) after the last unmount.
    dir: Option<TempDir>,
}

impl fmt::Debug for Mounted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mounted").field("path", &self.path).field("seed", &self.seed).field("cuts", &self.cuts).finish()
    }
}

impl Mounted {
    /// The mount point. It stays the same across cuts.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The seed of the cuts' random choices.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// How many cuts this mount went through.
    pub fn cuts(&self) -> u64 {
        self.cuts
    }

    /// The syncs seen so far.
    pub fn sync_counts(&self) -> SyncCounts {
        let get = |counter: &std::sync::atomic::AtomicU64| counter.load(Ordering::Relaxed);
        SyncCounts {
            file_syncs: get(&self.counters.file_syncs),
            dir_syncs: get(&self.counters.dir_syncs),
            ignored_file_syncs: get(&self.counters.ignored_file_syncs),
            ignored_dir_syncs: get(&self.counters.ignored_dir_syncs),
        }
    }

    /// Turns the faults on or off from now on (they survive cuts).
    pub fn set_faults(&self, ignore_file_fsync: bool, ignore_dir_fsync: bool) {
        lock(&self.model).set_faults(Faults { ignore_file_sync: ignore_file_fsync, ignore_dir_sync: ignore_dir_fsync });
    }

    /// A power cut: the filesystem stops serving (every request still
    /// arriving fails with `EIO`), everything not made durable is
    /// discarded, and the same path is mounted again showing only the
    /// durable state.
    ///
    /// Kill the processes writing to the mount *before* cutting, and wait
    /// for them: what a process acknowledged before it died must be judged
    /// against the state at the cut.
    ///
    /// # Errors
    ///
    /// When unmounting or mounting again fails; the mount is then gone.
    pub fn cut(&mut self) -> io::Result<Cut> {
        let (next, summary) = lock(&self.model).cut(&mut self.rng);
        self.cuts += 1;
        let was_busy = self.unmount()?;
        self.model = Arc::new(Mutex::new(next));
        self.serve()?;
        Ok(cut_report(&summary, was_busy))
    }

    /// Mounts the current model on the mount point.
    fn serve(&mut self) -> io::Result<()> {
        let mut config = Config::default();
        config.mount_options = vec![
            MountOption::FSName(FS_NAME.to_owned()),
            MountOption::Subtype(FS_NAME.to_owned()),
            MountOption::NoDev,
            MountOption::NoSuid,
            MountOption::NoAtime,
        ];
        config.n_threads = Some(THREADS);
        let fs = PowerLossFuse { model: Arc::clone(&self.model) };
        let session = fuser::spawn_mount(fs, &self.path, &config)
            .map_err(|err| io::Error::new(err.kind(), format!("mounting {}: {err}", self.path.display())))?;
        self.session = Some(session);
        self.connection = std::fs::metadata(&self.path).ok().map(|meta| connection_of(meta.dev()));
        Ok(())
    }

    /// Unmounts, and waits for the serving threads unless something keeps
    /// the old mount busy (then it is detached and serves `EIO` until its
    /// last file is closed). Returns whether it was busy.
    fn unmount(&mut self) -> io::Result<bool> {
        let Some(session) = self.session.take() else { return Ok(false) };
        let busy = unmount_path(&self.path)?;
        if busy {
            // A file still open keeps the detached mount's connection
            // alive. Abort it where the kernel lets us (the fusectl
            // filesystem): a thread of this process blocked on it could
            // otherwise hang this process's exit, once the serving threads
            // are gone. The open file then fails with `ENOTCONN`.
            if let Some(connection) = self.connection.take() {
                let _ = std::fs::write(format!("/sys/fs/fuse/connections/{connection}/abort"), "1");
            }
            // Dropping the session detaches its threads; they end when the
            // kernel lets go of the connection.
            drop(session);
        } else {
            // The kernel ended the connection: the threads have returned or
            // are about to. A thread's error is of no use after a cut.
            let _ = session.join();
        }
        Ok(busy)
    }
}

fn cut_report(summary: &CutSummary, was_busy: bool) -> Cut {
    Cut {
        files_rolled_back: summary.files_rolled_back,
        files_torn: summary.files_torn,
        dirs_rolled_back: summary.dirs_rolled_back,
        was_busy,
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        lock(&self.model).power_off();
        if let Err(err) = self.unmount() {
            eprintln!("power-loss filesystem: cannot unmount {}: {err}", self.path.display());
        }
        if let Some(dir) = self.dir.take()
            && let Err(err) = dir.close()
        {
            eprintln!("power-loss filesystem: cannot remove {}: {err}", self.path.display());
        }
    }
}

/// The fusectl name of the connection of a mount whose `st_dev` is `dev`:
/// FUSE mounts have anonymous devices (major 0), named by their minor.
fn connection_of(dev: u64) -> u64 {
    (dev & 0xff) | ((dev >> 12) & 0xfff00)
}

/// Unmounts `path`, after waiting up to [`BUSY_WAIT`] for files still open
/// on it; lazily if they stay open. Returns whether it was busy.
fn unmount_path(path: &Path) -> io::Result<bool> {
    let deadline = Instant::now() + BUSY_WAIT;
    loop {
        match umount2(path, MntFlags::empty()) {
            Ok(()) => return Ok(false),
            Err(Errno::EBUSY) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            Err(Errno::EBUSY) => {
                return umount2(path, MntFlags::MNT_DETACH).map(|()| true).map_err(io::Error::from);
            }
            // Not root: the setuid helper may unmount what this user mounted.
            Err(Errno::EPERM) => return fusermount_unmount(path),
            Err(err) => {
                let kind = io::Error::from(err).kind();
                return Err(io::Error::new(kind, format!("unmounting {}: {err}", path.display())));
            }
        }
    }
}

fn fusermount_unmount(path: &Path) -> io::Result<bool> {
    let plain = Command::new("fusermount3").arg("-u").arg("-q").arg("--").arg(path).output()?;
    if plain.status.success() {
        return Ok(false);
    }
    let lazy = Command::new("fusermount3").arg("-u").arg("-z").arg("--").arg(path).output()?;
    if lazy.status.success() {
        return Ok(true);
    }
    Err(io::Error::other(format!(
        "fusermount3 -u {} failed: {}",
        path.display(),
        String::from_utf8_lossy(&lazy.stderr).trim()
    )))
}

/// Unmounts and removes the mount points left by test processes that were
/// killed (a `Drop` that never ran): their mount answers `ENOTCONN`. Live
/// mounts of other processes answer, and are left alone.
fn sweep_dead_mounts() {
    let Ok(table) = std::fs::read_to_string("/proc/self/mountinfo") else { return };
    let temp = std::env::temp_dir().canonicalize().unwrap_or_else(|_| std::env::temp_dir());
    for line in table.lines() {
        let Some((mount, fs)) = line.split_once(" - ") else { continue };
        let mut fs = fs.split(' ');
        let (Some(kind), Some(source)) = (fs.next(), fs.next()) else { continue };
        if !kind.starts_with("fuse") || source != FS_NAME {
            continue;
        }
        let Some(point) = mount.split(' ').nth(4) else { continue };
        let point = PathBuf::from(point.replace("\\040", " "));
        let ours = point.parent() == Some(temp.as_path())
            && point.file_name().is_some_and(|name| name.to_string_lossy().starts_with(DIR_PREFIX));
        if !ours {
            continue;
        }
        if let Err(err) = std::fs::metadata(&point)
            && err.raw_os_error() == Some(libc::ENOTCONN)
            && umount2(&point, MntFlags::MNT_DETACH).is_ok()
        {
            eprintln!("power-loss filesystem: removed a dead mount left at {}", point.display());
            let _ = std::fs::remove_dir(&point);
        }
    }
}
