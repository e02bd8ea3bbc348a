//! A FUSE filesystem for tests that simulates power loss: it keeps every
//! change in a volatile layer until the application makes it durable, and
//! a [`Mounted::cut`] throws away whatever was not.
//!
//! A crash test that kills the process with SIGKILL leaves the operating
//! system's page cache intact, so a store that forgot an `fsync`, or synced
//! a file but not the directory entry naming it, passes it. On this
//! filesystem it does not.
//!
//! ```no_run
//! use std::io::Write;
//!
//! use sessionkit_powerloss_fs::PowerLossFs;
//!
//! # fn main() -> std::io::Result<()> {
//! let mut fs = PowerLossFs::new().torn(true).mount()?;
//! let path = fs.path().join("data");
//! let mut file = std::fs::File::create(&path)?;
//! file.write_all(b"hello")?;
//! file.sync_all()?; // the data is durable, the name "data" is not yet
//! drop(file);
//! fs.cut()?;
//! assert!(!path.exists(), "the directory was never synced");
//! # Ok(()) }
//! ```
//!
//! # The model
//!
//! Every inode has two layers: the **volatile** layer is what reads see;
//! the **durable** layer is what survives a cut. Changes go to the volatile
//! layer only, and move to the durable layer only as follows:
//!
//! - `fsync` or `fdatasync` of a **file** makes its data, its size and its
//!   attributes (mode, owner, times) durable, as they are at that moment.
//!   The two calls are the same here.
//! - `fsync` of a **directory** makes its entries durable, as they are at
//!   that moment: every create, mkdir, link, unlink, rmdir and rename in it
//!   since its previous sync, at once.
//! - Nothing else makes anything durable: not `close`, not time, not
//!   syncing another file, not syncing a parent or a child directory.
//!
//! So, after a cut:
//!
//! - data written but not synced is gone (in strict mode, all of it; in
//!   torn mode, see below); so is a truncation or extension not synced;
//! - a file created and synced, whose directory was never synced, is gone;
//!   a file whose entry was synced but whose data never was is empty;
//! - a rename not followed by a sync of the directory it left and the one
//!   it entered is undone, wholly or in part: each directory shows the
//!   entries of its own last sync, so the old name comes back with the
//!   inode's durable content, and the new name shows what *its* directory
//!   last synced (the file it replaced, or nothing);
//! - a directory created without a sync of its parent is gone, with
//!   everything in it;
//! - an unlink not followed by a sync of the directory is undone.
//!
//! **Torn mode** ([`PowerLossFs::torn`]): a cut also keeps, for each file,
//! a random prefix of the writes and truncations made since its last sync,
//! in the order they were made; the last write of that prefix may itself
//! be cut after a random number of whole 512-byte sectors. That is what a
//! journaling filesystem in ordered mode can leave after a crash (ext4
//! writes data before the metadata that exposes it, but any prefix of the
//! dirty pages may have reached the disk), and what formats without
//! checksums fail on. A prefix of none of them is the strict outcome, so
//! torn mode tests both.
//!
//! ## What is not modelled
//!
//! - ext4's `auto_da_alloc` heuristic (a rename or truncate over an
//!   existing file forces the new file's data out first) is **not**
//!   granted: a store must `fsync` a file before renaming it into place.
//! - ext4 (and XFS, btrfs) also make a newly created file's directory
//!   entry durable when the file itself is `fsync`ed, because one journal
//!   commit carries both; that is not POSIX, and **not** granted either.
//! - Unsynced directory changes are always all lost, in both modes; a real
//!   journal may keep some of them (a prefix of the metadata operations).
//!   Keeping them only helps a store that synced what it needed.
//! - Within one write, torn mode keeps a prefix of sectors; a real disk may
//!   persist the sectors of one write in any order.
//! - Writes reordered *across* files, reads of stale data before a cut,
//!   I/O errors and a full disk: not modelled.
//! - Symbolic links, special files, extended attributes and
//!   `RENAME_EXCHANGE` are not supported (the calls fail).
//! - A directory renamed between directories synced at different times
//!   could be named twice, or in a cycle, by the durable layers; the cut
//!   keeps the first name found, breadth first from the root.
//!
//! # Locks and `mmap`
//!
//! `fcntl` (POSIX and OFD) locks and `flock` work between the processes of
//! this machine: the filesystem does not claim the FUSE lock capabilities,
//! so the kernel keeps the locks itself as it does for a local filesystem.
//! Shared writable `mmap` works through the page cache (files are opened
//! with the cache kept; every change passes through this one mount, so it
//! cannot go stale); SQLite's WAL mode needs it for its `-shm` index, and
//! the index needs no durability (SQLite rebuilds it after a crash).
//!
//! **Never map a file of the mount in the process that serves it.** An
//! `munmap` of a dirty shared mapping waits, holding the process's memory
//! map lock, for the page writeback that the serving threads must answer,
//! and they need that lock to fault in or allocate memory: the process
//! hangs in uninterruptible sleep. SQLite maps its `-shm` file, so open
//! such stores only in child processes (the power-cut tests open every
//! store in children), and let the serving process touch the mount with
//! plain reads, writes and syncs only.
//!
//! # Cuts and mounts
//!
//! [`PowerLossFs::mount`] mounts on a fresh temporary directory, served by
//! threads of the calling process (`mount(2)` as root, Debian's
//! `fusermount3` otherwise; no libfuse). [`Mounted::cut`] marks the old
//! state dead (requests still arriving fail with `EIO`), unmounts it,
//! and mounts the durable state on the same path, so a store can be
//! reopened there. Kill writers before cutting, and wait for them. A file
//! still open at a cut (or at the drop) is waited for up to a second, then
//! the old mount is detached: that file keeps failing with `EIO`, and
//! where the fusectl filesystem is mounted its connection is aborted.
//! Dropping a [`Mounted`] unmounts it and removes the directory, also
//! during a panic; mounts left by a test process that was killed outright
//! are unmounted by the next [`PowerLossFs::mount`].
//!
//! Faults for proving that a test has teeth:
//! [`PowerLossFs::ignore_dir_fsync`] and [`PowerLossFs::ignore_file_fsync`]
//! make those syncs succeed without making anything durable.

#![forbid(unsafe_code)]

mod filesystem;
mod model;
mod mount;
mod rng;

pub use mount::{Cut, FuseUnavailable, Mounted, PowerLossFs, SyncCounts, fuse_available};
