//! Exclusive leases of the file store, shared by every process on the
//! directory: one small file per leased session.
//!
//! ```text
//! .leases/<store key>    "<token, 32 hex digits> <expiry, Unix ms>"
//! ```
//!
//! Every read and write of a lease file happens under the session's stripe
//! lock (`locks`), the same lock a batch of writes holds while it checks a
//! patch's fence and writes the session: so between the fence check and
//! the write no other process can take the lease. Expiry is wall-clock
//! time, which the processes on one machine share.
//!
//! Lease files are written in place and never synced, on purpose: a lease
//! guards running requests, and a power cut ends every request of every
//! process on the machine (the directory must be local, see `locks`). A
//! lease file that is lost, or torn by a crash while written, reads as no
//! lease: its holder is gone. One that survives blocks its session until
//! its expiry at most, as a crashed holder does.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use sessionkit::lease::{Lease, LeaseToken};
use sessionkit::{StoreKey, expiry};

/// The name of the lease directory inside the session directory.
pub(super) const LEASES_DIR: &str = ".leases";

/// One lease as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Held {
    pub(super) token: LeaseToken,
    pub(super) expires_at_ms: i64,
}

/// The lease files of one session directory.
pub(super) struct Leases {
    dir: PathBuf,
}

impl Leases {
    /// The leases inside the session directory `dir`, whose `.leases/`
    /// subdirectory must exist.
    pub(super) fn new(dir: &Path) -> Self {
        Self { dir: dir.join(LEASES_DIR) }
    }

    fn path(&self, key: &StoreKey) -> PathBuf {
        self.dir.join(key.as_str())
    }

    /// The lease stored for `key`, live or not; `None` when there is none
    /// or its file is unreadable as a lease (torn by a crash).
    pub(super) fn read(&self, key: &StoreKey) -> io::Result<Option<Held>> {
        match fs::read(self.path(key)) {
            Ok(bytes) => Ok(parse(&bytes)),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// Grants the lease on `key` for `ttl` unless a live one is held at
    /// `now_ms`. Under the stripe lock of `key`.
    pub(super) fn try_take(&self, key: &StoreKey, ttl: Duration, now_ms: i64) -> io::Result<Option<Lease>> {
        if self.read(key)?.is_some_and(|held| held.expires_at_ms > now_ms) {
            return Ok(None);
        }
        let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX).max(1);
        let held = Held { token: LeaseToken::generate(), expires_at_ms: now_ms.saturating_add(ttl_ms) };
        let mut options = OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(self.path(key))?;
        file.write_all(format!("{} {}", held.token, held.expires_at_ms).as_bytes())?;
        Ok(Some(Lease { token: held.token, expires_at: expiry::from_unix_ms(held.expires_at_ms) }))
    }

    /// Whether `token` holds a live lease on `key` at `now_ms`: the fence.
    /// Under the stripe lock of `key`.
    pub(super) fn holds(&self, key: &StoreKey, token: LeaseToken, now_ms: i64) -> io::Result<bool> {
        Ok(self.read(key)?.is_some_and(|held| held.token == token && held.expires_at_ms > now_ms))
    }

    /// Ends the lease on `key` if `token` holds it (live or not). Under the
    /// stripe lock of `key`.
    pub(super) fn release(&self, key: &StoreKey, token: LeaseToken) -> io::Result<()> {
        if self.read(key)?.is_some_and(|held| held.token == token) {
            self.remove(key)?;
        }
        Ok(())
    }

    /// Removes the lease file of `key` if it ran out by `now_ms` (or is
    /// torn). Under the stripe lock of `key`. Returns whether it did.
    pub(super) fn remove_if_ran_out(&self, key: &StoreKey, now_ms: i64) -> io::Result<bool> {
        if self.read(key)?.is_some_and(|held| held.expires_at_ms > now_ms) {
            return Ok(false);
        }
        self.remove(key)
    }

    fn remove(&self, key: &StoreKey) -> io::Result<bool> {
        match fs::remove_file(self.path(key)) {
            Ok(()) => Ok(true),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(err) => Err(err),
        }
    }

    /// Every key with a lease file.
    pub(super) fn keys(&self) -> io::Result<Vec<StoreKey>> {
        super::users::keys_in(&self.dir)
    }
}

fn parse(bytes: &[u8]) -> Option<Held> {
    let text = std::str::from_utf8(bytes).ok()?;
    let (token, expires) = text.split_once(' ')?;
    if token.len() != 32 {
        return None;
    }
    Some(Held { token: token.parse().ok()?, expires_at_ms: expires.parse().ok()? })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leases() -> (tempfile::TempDir, Leases) {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::create_dir(dir.path().join(LEASES_DIR)).expect("mkdir");
        let leases = Leases::new(dir.path());
        (dir, leases)
    }

    #[test]
    fn a_lease_excludes_until_released_or_run_out_and_fences_by_token() {
        let (_dir, leases) = leases();
        let key = sessionkit::testing::checks::key();
        let ttl = Duration::from_millis(100);
        let first = leases.try_take(&key, ttl, 1_000).expect("io").expect("free");
        assert_eq!(first.expires_at, expiry::from_unix_ms(1_100));
        assert_eq!(leases.try_take(&key, ttl, 1_099).expect("io"), None, "held");
        assert!(leases.holds(&key, first.token, 1_099).expect("io"));
        assert!(!leases.holds(&key, first.token, 1_100).expect("io"), "ran out at its expiry");
        assert!(!leases.holds(&key, LeaseToken::generate(), 1_050).expect("io"));
        leases.release(&key, LeaseToken::generate()).expect("io");
        assert_eq!(leases.try_take(&key, ttl, 1_050).expect("io"), None, "another token does not release");
        leases.release(&key, first.token).expect("io");
        assert_eq!(leases.keys().expect("io"), Vec::new(), "a released lease leaves no file");
        let second = leases.try_take(&key, ttl, 1_050).expect("io").expect("released: free");
        assert_ne!(second.token, first.token);
        assert!(!leases.remove_if_ran_out(&key, 1_149).expect("io"), "still live");
        assert!(leases.remove_if_ran_out(&key, 1_150).expect("io"));
    }

    #[test]
    fn a_torn_lease_file_is_no_lease() {
        let (dir, leases) = leases();
        let key = sessionkit::testing::checks::key();
        for torn in [&b""[..], b"0123", b"zz 12", b"0123456789abcdef0123456789abcdef", b"\xff\xfe"] {
            fs::write(dir.path().join(LEASES_DIR).join(key.as_str()), torn).expect("write");
            assert_eq!(leases.read(&key).expect("io"), None, "{torn:?}");
            assert!(leases.try_take(&key, Duration::from_secs(1), 0).expect("io").is_some());
        }
    }
}
