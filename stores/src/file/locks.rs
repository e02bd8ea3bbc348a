//! Striped write locks, held in this process and across processes.
//!
//! Every write to a session file (`set`, `update`, `touch`, `delete`, and
//! the sweeper's removal of an expired file) happens under the lock of the
//! session's *stripe*: one of [`STRIPES`] fixed lock files in the store's
//! `.locks/` directory, chosen by a hash of the id. Reads take no lock: a
//! session file is only ever replaced whole by a rename, so a reader sees
//! either the old file or the new one.
//!
//! A stripe is locked in two steps:
//!
//! 1. an in-process mutex, which keeps a batch of writes and the sweeper of
//!    this process apart (writers of this process already queue for their
//!    batch in `batcher`, without occupying a thread);
//! 2. an advisory exclusive lock on the stripe's lock file
//!    ([`std::fs::File::lock`]: `flock(2)` on Unix, `LockFileEx` on
//!    Windows), taken on a blocking thread, so that writers in other
//!    processes sharing the directory wait too.
//!
//! A batch of writes (`commit`) takes the locks of the stripes it touches
//! in ascending stripe order (today one: writes queue by stripe), and
//! everyone else holds one stripe at a time, so no two lockers, in any
//! process, can wait for each other in a cycle.
//!
//! Why lock files rather than the session files: a session file is
//! replaced by a rename, and a lock on the old file would not bind whoever
//! opens the new one. Why a fixed set rather than one per session: no lock
//! file is ever created or deleted per session, so there is nothing to clean
//! up and no race between removing a lock file and locking it.
//!
//! The operating system releases a lock file's lock when its holder exits,
//! however it exits, so a crashed writer never leaves a stripe locked.
//! Advisory locks bind only writers that take them: every process sharing
//! the directory must use this store (of a version with the same stripe
//! scheme). Advisory locks are not reliable on network file systems; the
//! directory should be on a local file system.

use std::fs::{File, OpenOptions, TryLockError};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sessionkit::StoreKey;
use tokio::sync::{Mutex, OwnedMutexGuard};

/// The number of stripes. Part of the on-disk scheme: every process using a
/// directory must agree on it. 256 keeps collisions between unrelated
/// sessions rare (two writers of 64 concurrent ones share a stripe about
/// one time in eight) with a small, fixed number of lock files.
pub(super) const STRIPES: usize = 256;

/// The name of the lock directory inside the session directory.
pub(super) const LOCK_DIR: &str = ".locks";

/// The stripe locks of one session directory.
pub(super) struct Locks {
    dir: PathBuf,
    stripes: Box<[Arc<Mutex<()>>]>,
}

/// Which stripe `id` belongs to: FNV-1a over its bytes. A fixed function,
/// not a per-process keyed hash, because every process must pick the same
/// stripe for the same id.
pub(super) fn stripe_of(id: &StoreKey) -> usize {
    let mut hash: u32 = 0x811c_9dc5;
    for &byte in id.as_bytes() {
        hash = (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193);
    }
    hash as usize % STRIPES
}

/// An exclusive lock on one stripe, in this process and across processes.
/// Dropping it unlocks both.
pub(super) struct StripeGuard {
    // Field order is drop order: the file is closed before the in-process
    // lock lets the next writer of this process in.
    file: File,
    _local: OwnedMutexGuard<()>,
}

impl Drop for StripeGuard {
    fn drop(&mut self) {
        // Closing the file would release the lock too, but Windows may
        // release a closed handle's locks late; unlocking first is prompt
        // everywhere. On failure, closing the file still releases it.
        let _ = self.file.unlock();
    }
}

/// The in-process half of a stripe lock, to be completed on a blocking
/// thread with [`Locks::lock_file`].
pub(super) type LocalGuard = OwnedMutexGuard<()>;

impl Locks {
    /// The locks of the session directory `dir`, whose `.locks/`
    /// subdirectory must exist.
    pub(super) fn new(dir: &Path) -> Self {
        let stripes = (0..STRIPES).map(|_| Arc::new(Mutex::new(()))).collect();
        Self { dir: dir.join(LOCK_DIR), stripes }
    }

    /// Waits for the in-process lock of `stripe`, in async code (the
    /// tests, standing in for a writer).
    #[cfg(test)]
    pub(super) async fn lock_local(&self, stripe: usize) -> LocalGuard {
        Arc::clone(&self.stripes[stripe]).lock_owned().await
    }

    /// The in-process lock of `stripe`, waiting on this (blocking) thread.
    /// Must not be called from async code.
    pub(super) fn blocking_lock_local(&self, stripe: usize) -> LocalGuard {
        Arc::clone(&self.stripes[stripe]).blocking_lock_owned()
    }

    /// The in-process lock of `stripe` if it is free right now.
    pub(super) fn try_lock_local(&self, stripe: usize) -> Option<LocalGuard> {
        Arc::clone(&self.stripes[stripe]).try_lock_owned().ok()
    }

    /// Completes a stripe lock: waits, on this blocking thread, for the
    /// stripe's lock file.
    pub(super) fn lock_file(&self, stripe: usize, local: LocalGuard) -> io::Result<StripeGuard> {
        let file = self.open(stripe)?;
        file.lock()?;
        Ok(StripeGuard { file, _local: local })
    }

    /// Completes a stripe lock if no other process holds the lock file.
    pub(super) fn try_lock_file(&self, stripe: usize, local: LocalGuard) -> io::Result<Option<StripeGuard>> {
        let file = self.open(stripe)?;
        match file.try_lock() {
            Ok(()) => Ok(Some(StripeGuard { file, _local: local })),
            Err(TryLockError::WouldBlock) => Ok(None),
            Err(TryLockError::Error(err)) => Err(err),
        }
    }

    /// Opens (creating on first use) a stripe's lock file. Opened per lock
    /// rather than kept open: each open file is its own lock holder, so two
    /// stores on one directory in one process exclude each other too, and a
    /// store holds no file descriptors between operations.
    fn open(&self, stripe: usize) -> io::Result<File> {
        let mut options = OpenOptions::new();
        options.read(true).write(true).create(true).truncate(false);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        options.open(self.dir.join(format!("{stripe:02x}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stripes_spread_ids_evenly() {
        let mut counts = [0usize; STRIPES];
        for _ in 0..STRIPES * 100 {
            counts[stripe_of(&sessionkit::testing::checks::key())] += 1;
        }
        let (min, max) = (counts.iter().min().copied(), counts.iter().max().copied());
        assert!(min > Some(40) && max < Some(180), "uneven stripes: min {min:?}, max {max:?}");
    }

    #[test]
    fn the_stripe_of_an_id_never_changes() {
        // Part of the on-disk scheme: other processes, and other versions,
        // must compute the same stripe.
        assert_eq!(stripe_of(&StoreKey::from_bytes([0; 32])), 0x45);
        assert_eq!(stripe_of(&StoreKey::from_bytes([0xff; 32])), 0x25);
    }

    #[tokio::test]
    async fn a_held_stripe_excludes_other_stores_on_the_same_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join(LOCK_DIR)).expect("lock dir");
        // Two `Locks` on one directory stand for two processes: they share
        // nothing but the lock files.
        let (ours, theirs) = (Locks::new(dir.path()), Locks::new(dir.path()));
        let held = ours.lock_file(3, ours.lock_local(3).await).expect("lock");
        let local = theirs.try_lock_local(3).expect("their in-process lock is free");
        assert!(theirs.try_lock_file(3, local).expect("try_lock").is_none(), "the file lock must exclude them");
        assert!(ours.try_lock_local(3).is_none(), "the in-process lock must exclude us");
        let other = theirs.try_lock_local(4).expect("free");
        assert!(theirs.try_lock_file(4, other).expect("try_lock").is_some(), "another stripe is free");
        drop(held);
        let local = theirs.try_lock_local(3).expect("free");
        assert!(theirs.try_lock_file(3, local).expect("try_lock").is_some(), "dropping the guard must unlock");
    }
}
