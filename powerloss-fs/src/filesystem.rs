//! The FUSE side: answers the kernel's requests from one generation of the
//! [`Model`] (the state between two power cuts).
//!
//! Locks are not implemented here on purpose: without the `POSIX_LOCKS` and
//! `FLOCK_LOCKS` capabilities the kernel keeps `fcntl` and `flock` locks
//! itself, per mount, exactly as on a local filesystem, which is what
//! SQLite, redb and the FileStore need between the processes of one
//! machine. Files are opened with the page cache kept (`FOPEN_KEEP_CACHE`):
//! every change goes through this one kernel mount, so the cache cannot go
//! stale, and shared `mmap` (SQLite's `-shm` index) works.

use std::ffi::OsStr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, LockOwner, OpenFlags,
    RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs,
    ReplyWrite, Request, TimeOrNow, WriteFlags,
};

use crate::model::{Attr, Kind, Model, SetAttr};

/// How long the kernel may cache entries and attributes. Nothing changes
/// the model behind the kernel's back, so this is about request count only.
const TTL: Duration = Duration::from_secs(1);

/// One generation of the model, shared with the [`Mounted`](crate::Mounted)
/// that cuts it.
pub(crate) type Shared = Arc<Mutex<Model>>;

/// Locks the model. A panic while holding the lock leaves the model as
/// consistent as the operation that panicked left it; the power-cut test
/// would then report the damage, so recover the guard rather than wedge
/// every later request.
pub(crate) fn lock(model: &Shared) -> MutexGuard<'_, Model> {
    model.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The `fuser::Filesystem` of one generation.
pub(crate) struct PowerLossFuse {
    pub(crate) model: Shared,
}

fn errno(code: i32) -> Errno {
    Errno::from_i32(code)
}

fn file_attr(attr: &Attr) -> FileAttr {
    let kind = match attr.kind {
        Kind::File => FileType::RegularFile,
        Kind::Dir => FileType::Directory,
    };
    FileAttr {
        ino: INodeNo(attr.ino),
        size: attr.size,
        blocks: attr.size.div_ceil(512),
        atime: attr.meta.atime,
        mtime: attr.meta.mtime,
        ctime: attr.meta.ctime,
        crtime: attr.meta.ctime,
        kind,
        perm: attr.meta.perm,
        nlink: attr.nlink,
        uid: attr.meta.uid,
        gid: attr.meta.gid,
        rdev: 0,
        blksize: 4096,
        flags: 0,
    }
}

fn time(value: TimeOrNow) -> SystemTime {
    match value {
        TimeOrNow::SpecificTime(at) => at,
        TimeOrNow::Now => SystemTime::now(),
    }
}

fn perm_of(mode: u32, umask: u32) -> u16 {
    (mode & !umask & 0o7777) as u16
}

impl PowerLossFuse {
    fn model(&self) -> MutexGuard<'_, Model> {
        lock(&self.model)
    }
}

impl Filesystem for PowerLossFuse {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        match self.model().lookup(parent.0, name) {
            Ok(attr) => reply.entry(&TTL, &file_attr(&attr), Generation(0)),
            Err(code) => reply.error(errno(code)),
        }
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.model().forget(ino.0, nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.model().getattr(ino.0) {
            Ok(attr) => reply.attr(&TTL, &file_attr(&attr)),
            Err(code) => reply.error(errno(code)),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let change = SetAttr {
            perm: mode.map(|mode| (mode & 0o7777) as u16),
            uid,
            gid,
            size,
            atime: atime.map(time),
            mtime: mtime.map(time),
        };
        match self.model().setattr(ino.0, &change) {
            Ok(attr) => reply.attr(&TTL, &file_attr(&attr)),
            Err(code) => reply.error(errno(code)),
        }
    }

    fn mkdir(&self, req: &Request, parent: INodeNo, name: &OsStr, mode: u32, umask: u32, reply: ReplyEntry) {
        match self.model().mkdir(parent.0, name, perm_of(mode, umask), req.uid(), req.gid()) {
            Ok(attr) => reply.entry(&TTL, &file_attr(&attr), Generation(0)),
            Err(code) => reply.error(errno(code)),
        }
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match self.model().unlink(parent.0, name) {
            Ok(()) => reply.ok(),
            Err(code) => reply.error(errno(code)),
        }
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match self.model().rmdir(parent.0, name) {
            Ok(()) => reply.ok(),
            Err(code) => reply.error(errno(code)),
        }
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        if !(flags - RenameFlags::RENAME_NOREPLACE).is_empty() {
            // RENAME_EXCHANGE and RENAME_WHITEOUT are not modelled.
            reply.error(Errno::EINVAL);
            return;
        }
        let no_replace = flags.contains(RenameFlags::RENAME_NOREPLACE);
        match self.model().rename(parent.0, name, newparent.0, newname, no_replace) {
            Ok(()) => reply.ok(),
            Err(code) => reply.error(errno(code)),
        }
    }

    fn link(&self, _req: &Request, ino: INodeNo, newparent: INodeNo, newname: &OsStr, reply: ReplyEntry) {
        match self.model().link(ino.0, newparent.0, newname) {
            Ok(attr) => reply.entry(&TTL, &file_attr(&attr), Generation(0)),
            Err(code) => reply.error(errno(code)),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.model().open(ino.0) {
            Ok(()) => reply.opened(FileHandle(0), FopenFlags::FOPEN_KEEP_CACHE),
            Err(code) => reply.error(errno(code)),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match self.model().read(ino.0, offset, size) {
            Ok(bytes) => reply.data(bytes),
            Err(code) => reply.error(errno(code)),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        match self.model().write(ino.0, offset, data) {
            Ok(written) => reply.written(written),
            Err(code) => reply.error(errno(code)),
        }
    }

    fn flush(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, _lock_owner: LockOwner, reply: ReplyEmpty) {
        // `close` makes nothing durable.
        match self.model().getattr(ino.0) {
            Ok(_) => reply.ok(),
            Err(code) => reply.error(errno(code)),
        }
    }

    fn release(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.model().release(ino.0);
        reply.ok();
    }

    fn fsync(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        match self.model().sync(ino.0) {
            Ok(()) => reply.ok(),
            Err(code) => reply.error(errno(code)),
        }
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.model().open(ino.0) {
            Ok(()) => reply.opened(FileHandle(0), FopenFlags::empty()),
            Err(code) => reply.error(errno(code)),
        }
    }

    fn readdir(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        let entries = match self.model().readdir(ino.0) {
            Ok(entries) => entries,
            Err(code) => return reply.error(errno(code)),
        };
        let skip = usize::try_from(offset).unwrap_or(usize::MAX);
        for (index, (child, kind, name)) in entries.into_iter().enumerate().skip(skip) {
            let kind = match kind {
                Kind::File => FileType::RegularFile,
                Kind::Dir => FileType::Directory,
            };
            // The offset of an entry is where the next read starts.
            if reply.add(INodeNo(child), index as u64 + 1, kind, name) {
                break;
            }
        }
        reply.ok();
    }

    fn releasedir(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, _flags: OpenFlags, reply: ReplyEmpty) {
        self.model().release(ino.0);
        reply.ok();
    }

    fn fsyncdir(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        match self.model().sync_dir(ino.0) {
            Ok(()) => reply.ok(),
            Err(code) => reply.error(errno(code)),
        }
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        // Plenty of room: the model lives in memory, and stores that check
        // free space must not refuse to write.
        let (files, bytes) = self.model().usage();
        let blocks: u64 = 1 << 24;
        let used = bytes.div_ceil(4096).min(blocks);
        reply.statfs(blocks, blocks - used, blocks - used, files, 1 << 24, 4096, 255, 4096);
    }

    fn access(&self, _req: &Request, ino: INodeNo, _mask: fuser::AccessFlags, reply: ReplyEmpty) {
        match self.model().getattr(ino.0) {
            Ok(_) => reply.ok(),
            Err(code) => reply.error(errno(code)),
        }
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        match self.model().create(parent.0, name, perm_of(mode, umask), req.uid(), req.gid()) {
            Ok(attr) => {
                reply.created(&TTL, &file_attr(&attr), Generation(0), FileHandle(0), FopenFlags::FOPEN_KEEP_CACHE);
            }
            Err(code) => reply.error(errno(code)),
        }
    }

    fn fallocate(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        if mode != 0 {
            // Punching holes and the like are not modelled.
            reply.error(Errno::from_i32(libc::EOPNOTSUPP));
            return;
        }
        let mut model = self.model();
        let result = model.getattr(ino.0).and_then(|attr| {
            let end = offset.checked_add(length).ok_or(libc::EFBIG)?;
            if end > attr.size {
                model.setattr(ino.0, &SetAttr { size: Some(end), ..SetAttr::default() })?;
            }
            Ok(())
        });
        match result {
            Ok(()) => reply.ok(),
            Err(code) => reply.error(errno(code)),
        }
    }
}
