//! When a durable store's `get` (redb, SQLite) may run on the caller's
//! task instead of hopping to tokio's blocking pool.
//!
//! A `get` is one B-tree lookup. Answered from the engine's page cache (or
//! the kernel's) it takes a few microseconds, several times less than the
//! hop to a blocking thread and back; only a page that must come from disk
//! takes long. So a `get` runs inline, timed. One slower than [`SLOW`] is
//! checked against the process's block reads (`getrusage`): if the disk
//! was read meanwhile, the store's next reads go to the blocking pool for
//! [`COOL_DOWN`], after which inline reads are tried again; if not, the
//! thread was only preempted (other work on the machine) and reads stay
//! inline. The runtime is blocked by at most one disk read per store per
//! cool-down, and a store whose file no longer fits in memory reads almost
//! only on the blocking pool. Where block reads cannot be counted, every
//! slow read counts as one from disk.
//!
//! The file store reads files the kernel serves, so it reads inline only
//! on a filesystem whose slow reads the count sees: a local disk's or
//! memory's ([`counts_its_reads`]). A read from NFS, FUSE or another
//! network or user-space filesystem waits on something `getrusage` does
//! not count, so those always go to the blocking pool. Why this rule and
//! not another: `docs/inline-reads.md`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// An inline read slower than this was served by the disk.
pub(crate) const SLOW: Duration = Duration::from_micros(100);

/// How long reads stay on the blocking pool after a slow inline one.
pub(crate) const COOL_DOWN: Duration = Duration::from_secs(1);

/// The store's choice, shared by its callers.
#[derive(Debug)]
pub(crate) struct InlineReads {
    /// The clock's origin.
    origin: Instant,
    /// Nanoseconds after `origin` until which reads go to the blocking
    /// pool; 0 when inline reads are allowed.
    off_until: AtomicU64,
    /// The process's block reads when last looked at.
    block_reads: AtomicU64,
}

impl InlineReads {
    pub(crate) fn new() -> Self {
        Self {
            origin: Instant::now(),
            off_until: AtomicU64::new(0),
            block_reads: AtomicU64::new(block_reads().unwrap_or(0)),
        }
    }

    fn nanos(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.origin).as_nanos()).unwrap_or(u64::MAX)
    }

    /// Whether the next read may run inline.
    pub(crate) fn allowed(&self) -> bool {
        let off_until = self.off_until.load(Ordering::Relaxed);
        off_until == 0 || self.nanos(Instant::now()) >= off_until
    }

    /// Runs `read` inline and takes note of how long it took.
    pub(crate) fn run<T>(&self, read: impl FnOnce() -> T) -> T {
        let started = Instant::now();
        let out = read();
        let done = Instant::now();
        if done.saturating_duration_since(started) > SLOW && self.disk_was_read() {
            self.off_until.store(self.nanos(done + COOL_DOWN).max(1), Ordering::Relaxed);
        }
        out
    }

    /// Whether the process read from a block device since the last look
    /// (by any thread: a false alarm only costs a cool-down).
    fn disk_was_read(&self) -> bool {
        let Some(now) = block_reads() else { return true };
        self.block_reads.swap(now, Ordering::Relaxed) != now
    }
}

/// Whether `dir` is on a filesystem whose reads from disk show in the
/// process's block reads, and whose reads from cache wait on nothing else:
/// the local disk filesystems, and memory ones (which never read a disk).
/// Anything else, or a directory whose filesystem cannot be told, is not.
#[cfg(all(feature = "file", target_os = "linux"))]
pub(crate) fn counts_its_reads(dir: &std::path::Path) -> bool {
    use nix::sys::statfs::{
        BTRFS_SUPER_MAGIC, EXT4_SUPER_MAGIC, F2FS_SUPER_MAGIC, OVERLAYFS_SUPER_MAGIC, TMPFS_MAGIC, XFS_SUPER_MAGIC,
        statfs,
    };
    // ext2, ext3 and ext4 share one magic number; overlayfs (containers)
    // reads from a local filesystem below it.
    let local =
        [EXT4_SUPER_MAGIC, XFS_SUPER_MAGIC, BTRFS_SUPER_MAGIC, F2FS_SUPER_MAGIC, TMPFS_MAGIC, OVERLAYFS_SUPER_MAGIC];
    statfs(dir).is_ok_and(|fs| local.contains(&fs.filesystem_type()))
}

#[cfg(all(feature = "file", not(target_os = "linux")))]
pub(crate) fn counts_its_reads(_dir: &std::path::Path) -> bool {
    false
}

/// Block input operations of this process so far.
#[cfg(unix)]
fn block_reads() -> Option<u64> {
    let usage = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF).ok()?;
    u64::try_from(usage.block_reads()).ok()
}

#[cfg(not(unix))]
fn block_reads() -> Option<u64> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(all(feature = "file", target_os = "linux"))]
    #[test]
    fn a_local_directory_counts_its_reads_and_proc_does_not() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        // The temporary directory is on a disk or in memory on any machine
        // the tests run on; /proc is neither.
        assert!(counts_its_reads(dir.path()), "{} reads inline", dir.path().display());
        assert!(!counts_its_reads(std::path::Path::new("/proc")));
        assert!(!counts_its_reads(&dir.path().join("absent")), "an unknown filesystem reads on the pool");
    }

    #[test]
    fn a_slow_read_from_disk_sends_the_next_ones_to_the_pool_for_a_while() {
        let reads = InlineReads::new();
        assert!(reads.allowed());
        reads.run(|| ());
        assert!(reads.allowed(), "a fast read keeps reads inline");
        reads.run(|| std::thread::sleep(SLOW * 4));
        #[cfg(unix)]
        assert!(reads.allowed(), "a slow read that read no disk (a preempted thread) keeps reads inline");
        // A disk read seen since the last look, as the counter says.
        reads.block_reads.fetch_add(1, Ordering::Relaxed);
        reads.run(|| std::thread::sleep(SLOW * 4));
        assert!(!reads.allowed(), "a read the disk answered moves the next ones off the runtime");
        // Pretend the cool-down has passed.
        reads.off_until.store(1, Ordering::Relaxed);
        assert!(reads.allowed(), "after the cool-down reads are tried inline again");
    }
}
