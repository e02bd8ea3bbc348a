//! The user index of the file store: which sessions each user has, kept
//! in the directory beside the sessions so that every process sharing it
//! sees the same index.
//!
//! ```text
//! .users/<sha256(user), 64 hex digits>/<store key>    one empty file per session
//! ```
//!
//! A user's name is an app's string (any length, any characters), so it is
//! never a file name: its SHA-256 is. An entry is an empty file named by
//! the session's store key (43 characters of `A-Z a-z 0-9 - _`).
//!
//! The index may hold more than the truth, never less: an entry is created
//! (and its directory synced) under the session's stripe lock *before* the
//! session file that it lists is written, and removed only after the
//! session is gone or belongs to someone else, again under the stripe lock.
//! Every read checks each entry against its session file, so an entry
//! left over (a session deleted by a `set` or `delete` that did not read
//! the old owner, a crash between the steps) never shows; listings and the
//! sweeper remove such entries, rechecking under the stripe lock. Why this
//! shape is in `docs/file-store-users-and-leases.md`.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

use sessionkit::StoreKey;
use sha2::{Digest, Sha256};

/// The name of the index directory inside the session directory.
pub(super) const USERS_DIR: &str = ".users";

/// The directory name of `user`'s entries: the hex SHA-256 of the name.
pub(super) fn user_dir_name(user: &str) -> String {
    let digest = Sha256::digest(user.as_bytes());
    let mut name = String::with_capacity(64);
    for byte in digest {
        name.push(char::from(HEX[usize::from(byte >> 4)]));
        name.push(char::from(HEX[usize::from(byte & 0xf)]));
    }
    name
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Whether `name` is a directory name [`user_dir_name`] makes.
pub(super) fn is_user_dir_name(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(|byte| HEX.contains(&byte))
}

/// The index of one session directory.
pub(super) struct Users {
    root: PathBuf,
}

impl Users {
    /// The index inside the session directory `dir`, whose `.users/`
    /// subdirectory must exist.
    pub(super) fn new(dir: &Path) -> Self {
        Self { root: dir.join(USERS_DIR) }
    }

    /// The index directory.
    pub(super) fn root(&self) -> &Path {
        &self.root
    }

    fn user_dir(&self, user: &str) -> PathBuf {
        self.root.join(user_dir_name(user))
    }

    fn entry(&self, user: &str, key: &StoreKey) -> PathBuf {
        self.user_dir(user).join(key.as_str())
    }

    /// Makes sure `user` lists `key`, durably. Must be called under the
    /// stripe lock of `key`, before the session file naming `user` is
    /// written. Returns whether it created the entry, which then needs
    /// [`Users::sync`] before that write.
    pub(super) fn add(&self, user: &str, key: &StoreKey) -> io::Result<bool> {
        let entry = self.entry(user, key);
        if fs::symlink_metadata(&entry).is_ok() {
            return Ok(false);
        }
        let dir = self.user_dir(user);
        // The sweeper removes empty user directories (with `rmdir`, which
        // fails on a directory that has an entry): one may vanish between
        // creating it and creating the entry in it; try again.
        for _ in 0..8 {
            match fs::DirBuilder::new().create(&dir) {
                Ok(()) => {}
                Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {}
                Err(err) => return Err(err),
            }
            let mut options = OpenOptions::new();
            options.write(true).create(true).truncate(false);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            match options.open(&entry) {
                Ok(file) => {
                    drop(file);
                    return Ok(true);
                }
                Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
                Err(err) => return Err(err),
            }
        }
        Err(io::Error::other("a user's index directory kept vanishing while an entry was added to it"))
    }

    /// Syncs what [`Users::add`] created for `users`: each user's directory
    /// (the entry's name) and the index directory (the user directory's
    /// name, which another process may have created without syncing yet).
    pub(super) fn sync(&self, users: impl IntoIterator<Item = String>) -> io::Result<()> {
        let mut any = false;
        for user in users {
            File::open(self.user_dir(&user))?.sync_all()?;
            any = true;
        }
        if any {
            File::open(&self.root)?.sync_all()?;
        }
        Ok(())
    }

    /// Removes `user`'s entry for `key`, if any. Must be called under the
    /// stripe lock of `key`, once the session is gone or is no longer
    /// `user`'s. Not synced: an entry that comes back after a crash is
    /// left over, and reads skip it.
    pub(super) fn remove(&self, user: &str, key: &StoreKey) -> io::Result<()> {
        self.remove_hashed(&user_dir_name(user), key)
    }

    /// [`Users::remove`] by the user's directory name.
    pub(super) fn remove_hashed(&self, dir_name: &str, key: &StoreKey) -> io::Result<()> {
        match fs::remove_file(self.root.join(dir_name).join(key.as_str())) {
            Err(err) if err.kind() != io::ErrorKind::NotFound => Err(err),
            _ => Ok(()),
        }
    }

    /// The keys `user`'s directory lists (left-over entries included).
    pub(super) fn keys_of(&self, user: &str) -> io::Result<Vec<StoreKey>> {
        keys_in(&self.user_dir(user))
    }
}

/// The store keys a user directory lists; a missing directory lists none.
/// Names that are not store keys are skipped.
pub(super) fn keys_in(dir: &Path) -> io::Result<Vec<StoreKey>> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => return Err(err),
    };
    let mut keys = Vec::new();
    for entry in entries {
        let entry = entry?;
        if let Some(key) = entry.file_name().to_str().and_then(StoreKey::parse) {
            keys.push(key);
        }
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_user_name_becomes_a_fixed_safe_directory_name() {
        for user in ["ada", "", "../../etc/passwd", "a/b\\c\0d", &"x".repeat(10_000), "Zoë 🦀"] {
            let name = user_dir_name(user);
            assert!(is_user_dir_name(&name), "{name}");
            assert_eq!(name, user_dir_name(user), "the same user always hashes alike");
        }
        assert_ne!(user_dir_name("ada"), user_dir_name("Ada"));
        // Part of the on-disk scheme: other processes must agree.
        assert_eq!(user_dir_name("ada"), "fdee430d40bd57deeac186cd9790033d0f06f909a8806e7ce6e717ab7c7d5029");
    }
}
