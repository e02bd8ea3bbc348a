//! The two-layer model behind the mount: every inode holds what the
//! application sees now (the volatile layer) beside what a power cut would
//! leave (the durable layer), and [`Model::cut`] builds the model a remount
//! starts from, out of the durable layer alone.
//!
//! The rules are the crate's documented model (see the crate docs):
//! `fsync`/`fdatasync` of a file copies its data, size and attributes into
//! the durable layer; `fsync` of a directory copies its entries. Nothing
//! else ever becomes durable. The cut itself is in `cut`, torn mode's log of
//! unsynced changes in `torn`. This module knows nothing of FUSE: errors
//! are plain `errno` values.

use std::collections::{BTreeMap, HashMap};
use std::ffi::{OsStr, OsString};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

mod cut;
mod torn;

pub(crate) use self::cut::CutSummary;
use self::torn::{Change, apply_write, log_change};

/// An inode number.
pub(crate) type Ino = u64;

/// The root directory's inode number (FUSE's).
pub(crate) const ROOT: Ino = 1;

/// A failed operation's `errno`.
pub(crate) type Errno = i32;

/// The result of a model operation.
pub(crate) type Result<T> = std::result::Result<T, Errno>;

/// The largest file: everything lives in memory, and a write far past the
/// end must fail (`EFBIG`) rather than abort the serving process.
const MAX_FILE_SIZE: usize = 1 << 30;

/// A torn write keeps a prefix of whole sectors of this size.
pub(crate) const SECTOR: usize = 512;

/// What an inode is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    File,
    Dir,
}

/// An inode's attributes other than its size and links.
#[derive(Clone, Debug)]
pub(crate) struct Meta {
    pub(crate) perm: u16,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    pub(crate) atime: SystemTime,
    pub(crate) mtime: SystemTime,
    pub(crate) ctime: SystemTime,
}

impl Meta {
    fn new(perm: u16, uid: u32, gid: u32) -> Self {
        let now = SystemTime::now();
        Self { perm, uid, gid, atime: now, mtime: now, ctime: now }
    }
}

/// What `stat` shows of an inode.
#[derive(Clone, Debug)]
pub(crate) struct Attr {
    pub(crate) ino: Ino,
    pub(crate) kind: Kind,
    pub(crate) size: u64,
    pub(crate) nlink: u32,
    pub(crate) meta: Meta,
}

/// The attribute changes of one `setattr`.
#[derive(Debug, Default)]
pub(crate) struct SetAttr {
    pub(crate) perm: Option<u16>,
    pub(crate) uid: Option<u32>,
    pub(crate) gid: Option<u32>,
    pub(crate) size: Option<u64>,
    pub(crate) atime: Option<SystemTime>,
    pub(crate) mtime: Option<SystemTime>,
}

/// Which syncs the filesystem pretends to do without doing them: a
/// broken disk or a misconfigured mount, for tests that must catch it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Faults {
    pub(crate) ignore_file_sync: bool,
    pub(crate) ignore_dir_sync: bool,
}

/// Counters shared by every generation of one mount.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) file_syncs: AtomicU64,
    pub(crate) dir_syncs: AtomicU64,
    pub(crate) ignored_file_syncs: AtomicU64,
    pub(crate) ignored_dir_syncs: AtomicU64,
}

#[derive(Debug)]
enum Content {
    File {
        data: Vec<u8>,
        durable: Vec<u8>,
        /// The changes since the last sync, oldest first (torn mode only).
        unsynced: Vec<Change>,
        unsynced_bytes: usize,
        /// More changes were made than the log keeps.
        overflowed: bool,
    },
    Dir {
        parent: Ino,
        entries: BTreeMap<OsString, Ino>,
        durable: BTreeMap<OsString, Ino>,
    },
}

#[derive(Debug)]
struct Node {
    content: Content,
    meta: Meta,
    durable_meta: Meta,
    /// Entries naming it in the volatile layer.
    links: u32,
    /// Open file handles.
    open: u32,
    /// The kernel's lookup count: it may still ask about the inode.
    lookups: u64,
    /// Entries naming it in some directory's durable layer.
    durable_refs: u32,
}

impl Node {
    fn kind(&self) -> Kind {
        match self.content {
            Content::File { .. } => Kind::File,
            Content::Dir { .. } => Kind::Dir,
        }
    }

    fn unreferenced(&self) -> bool {
        self.links == 0 && self.open == 0 && self.lookups == 0 && self.durable_refs == 0
    }
}

/// The whole filesystem: both layers of every inode.
#[derive(Debug)]
pub(crate) struct Model {
    nodes: HashMap<Ino, Node>,
    next_ino: Ino,
    /// Keep the unsynced changes, so a cut can tear them.
    torn: bool,
    faults: Faults,
    counters: Arc<Counters>,
    /// Power is off: every operation fails with `EIO`.
    dead: bool,
}

impl Model {
    /// An empty filesystem whose root is owned by `uid`/`gid`.
    pub(crate) fn new(uid: u32, gid: u32, torn: bool, faults: Faults, counters: Arc<Counters>) -> Self {
        let meta = Meta::new(0o755, uid, gid);
        let root = Node {
            content: Content::Dir { parent: ROOT, entries: BTreeMap::new(), durable: BTreeMap::new() },
            durable_meta: meta.clone(),
            meta,
            links: 1,
            open: 0,
            lookups: 0,
            durable_refs: 1,
        };
        Self { nodes: HashMap::from([(ROOT, root)]), next_ino: ROOT + 1, torn, faults, counters, dead: false }
    }

    /// Changes the faults from now on.
    pub(crate) fn set_faults(&mut self, faults: Faults) {
        self.faults = faults;
    }

    fn alive(&self) -> Result<()> {
        if self.dead { Err(libc::EIO) } else { Ok(()) }
    }

    fn node(&self, ino: Ino) -> Result<&Node> {
        self.alive()?;
        self.nodes.get(&ino).ok_or(libc::ENOENT)
    }

    fn node_mut(&mut self, ino: Ino) -> Result<&mut Node> {
        self.alive()?;
        self.nodes.get_mut(&ino).ok_or(libc::ENOENT)
    }

    fn entries(&self, dir: Ino) -> Result<&BTreeMap<OsString, Ino>> {
        match &self.node(dir)?.content {
            Content::Dir { entries, .. } => Ok(entries),
            Content::File { .. } => Err(libc::ENOTDIR),
        }
    }

    fn entries_mut(&mut self, dir: Ino) -> Result<&mut BTreeMap<OsString, Ino>> {
        match &mut self.node_mut(dir)?.content {
            Content::Dir { entries, .. } => Ok(entries),
            Content::File { .. } => Err(libc::ENOTDIR),
        }
    }

    fn attr_of(&self, ino: Ino, node: &Node) -> Attr {
        let (size, nlink) = match &node.content {
            Content::File { data, .. } => (data.len() as u64, node.links),
            Content::Dir { entries, .. } => {
                let subdirs = entries.values().filter(|child| self.kind_of(**child) == Some(Kind::Dir)).count();
                (4096, 2 + subdirs as u32)
            }
        };
        Attr { ino, kind: node.kind(), size, nlink, meta: node.meta.clone() }
    }

    fn kind_of(&self, ino: Ino) -> Option<Kind> {
        self.nodes.get(&ino).map(Node::kind)
    }

    /// The attributes of `ino`.
    pub(crate) fn getattr(&self, ino: Ino) -> Result<Attr> {
        let node = self.node(ino)?;
        Ok(self.attr_of(ino, node))
    }

    /// Looks `name` up in `parent`; the kernel now holds one more lookup.
    pub(crate) fn lookup(&mut self, parent: Ino, name: &OsStr) -> Result<Attr> {
        let ino = *self.entries(parent)?.get(name).ok_or(libc::ENOENT)?;
        self.node_mut(ino)?.lookups += 1;
        self.getattr(ino)
    }

    /// The kernel dropped `count` lookups of `ino`.
    pub(crate) fn forget(&mut self, ino: Ino, count: u64) {
        if let Some(node) = self.nodes.get_mut(&ino) {
            node.lookups = node.lookups.saturating_sub(count);
            self.free_if_unreferenced(ino);
        }
    }

    fn check_new_entry(&self, parent: Ino, name: &OsStr) -> Result<()> {
        if name.len() > 255 {
            return Err(libc::ENAMETOOLONG);
        }
        if self.entries(parent)?.contains_key(name) {
            return Err(libc::EEXIST);
        }
        Ok(())
    }

    fn insert_node(&mut self, parent: Ino, name: &OsStr, content: Content, meta: Meta) -> Result<Attr> {
        let ino = self.next_ino;
        self.next_ino += 1;
        let node = Node {
            content,
            durable_meta: meta.clone(),
            meta,
            links: 1,
            open: 0,
            // The reply to the creating request counts as a lookup.
            lookups: 1,
            durable_refs: 0,
        };
        self.nodes.insert(ino, node);
        self.entries_mut(parent)?.insert(name.to_owned(), ino);
        self.touch_dir(parent);
        self.getattr(ino)
    }

    fn touch_dir(&mut self, dir: Ino) {
        if let Some(node) = self.nodes.get_mut(&dir) {
            let now = SystemTime::now();
            node.meta.mtime = now;
            node.meta.ctime = now;
        }
    }

    /// Creates the directory `parent/name`.
    pub(crate) fn mkdir(&mut self, parent: Ino, name: &OsStr, perm: u16, uid: u32, gid: u32) -> Result<Attr> {
        self.check_new_entry(parent, name)?;
        let content = Content::Dir { parent, entries: BTreeMap::new(), durable: BTreeMap::new() };
        self.insert_node(parent, name, content, Meta::new(perm, uid, gid))
    }

    /// Creates the empty file `parent/name` and opens it.
    pub(crate) fn create(&mut self, parent: Ino, name: &OsStr, perm: u16, uid: u32, gid: u32) -> Result<Attr> {
        self.check_new_entry(parent, name)?;
        let content = Content::File {
            data: Vec::new(),
            durable: Vec::new(),
            unsynced: Vec::new(),
            unsynced_bytes: 0,
            overflowed: false,
        };
        let attr = self.insert_node(parent, name, content, Meta::new(perm, uid, gid))?;
        self.node_mut(attr.ino)?.open += 1;
        Ok(attr)
    }

    /// Opens `ino` (a file or a directory).
    pub(crate) fn open(&mut self, ino: Ino) -> Result<()> {
        self.node_mut(ino)?.open += 1;
        Ok(())
    }

    /// Closes one handle of `ino`.
    pub(crate) fn release(&mut self, ino: Ino) {
        if let Some(node) = self.nodes.get_mut(&ino) {
            node.open = node.open.saturating_sub(1);
            self.free_if_unreferenced(ino);
        }
    }

    /// Reads up to `size` bytes at `offset`.
    pub(crate) fn read(&self, ino: Ino, offset: u64, size: u32) -> Result<&[u8]> {
        match &self.node(ino)?.content {
            Content::File { data, .. } => {
                let start = usize::try_from(offset).unwrap_or(usize::MAX).min(data.len());
                let end = start.saturating_add(size as usize).min(data.len());
                Ok(&data[start..end])
            }
            Content::Dir { .. } => Err(libc::EISDIR),
        }
    }

    /// Writes `bytes` at `offset`, extending the file with zeros if needed.
    pub(crate) fn write(&mut self, ino: Ino, offset: u64, bytes: &[u8]) -> Result<u32> {
        let written = u32::try_from(bytes.len()).map_err(|_| libc::EINVAL)?;
        let torn = self.torn;
        let node = self.node_mut(ino)?;
        let Content::File { data, unsynced, unsynced_bytes, overflowed, .. } = &mut node.content else {
            return Err(libc::EISDIR);
        };
        let start = usize::try_from(offset).map_err(|_| libc::EFBIG)?;
        if start.checked_add(bytes.len()).is_none_or(|end| end > MAX_FILE_SIZE) {
            return Err(libc::EFBIG);
        }
        apply_write(data, start, bytes);
        if torn {
            log_change(unsynced, unsynced_bytes, overflowed, || Change::Write { offset, bytes: bytes.to_vec() });
        }
        let now = SystemTime::now();
        node.meta.mtime = now;
        node.meta.ctime = now;
        Ok(written)
    }

    /// Changes attributes; a size change truncates or extends the file.
    pub(crate) fn setattr(&mut self, ino: Ino, change: &SetAttr) -> Result<Attr> {
        let torn = self.torn;
        let node = self.node_mut(ino)?;
        if let Some(size) = change.size {
            let Content::File { data, unsynced, unsynced_bytes, overflowed, .. } = &mut node.content else {
                return Err(libc::EISDIR);
            };
            let len = usize::try_from(size).ok().filter(|&len| len <= MAX_FILE_SIZE).ok_or(libc::EFBIG)?;
            data.resize(len, 0);
            if torn {
                log_change(unsynced, unsynced_bytes, overflowed, || Change::Resize(size));
            }
            node.meta.mtime = SystemTime::now();
        }
        if let Some(perm) = change.perm {
            node.meta.perm = perm & 0o7777;
        }
        if let Some(uid) = change.uid {
            node.meta.uid = uid;
        }
        if let Some(gid) = change.gid {
            node.meta.gid = gid;
        }
        if let Some(atime) = change.atime {
            node.meta.atime = atime;
        }
        if let Some(mtime) = change.mtime {
            node.meta.mtime = mtime;
        }
        node.meta.ctime = SystemTime::now();
        self.getattr(ino)
    }

    /// Removes the entry `parent/name`, which names a file.
    pub(crate) fn unlink(&mut self, parent: Ino, name: &OsStr) -> Result<()> {
        let ino = *self.entries(parent)?.get(name).ok_or(libc::ENOENT)?;
        if self.node(ino)?.kind() == Kind::Dir {
            return Err(libc::EISDIR);
        }
        self.remove_entry(parent, name, ino)
    }

    /// Removes the empty directory `parent/name`.
    pub(crate) fn rmdir(&mut self, parent: Ino, name: &OsStr) -> Result<()> {
        let ino = *self.entries(parent)?.get(name).ok_or(libc::ENOENT)?;
        match &self.node(ino)?.content {
            Content::File { .. } => return Err(libc::ENOTDIR),
            Content::Dir { entries, .. } if !entries.is_empty() => return Err(libc::ENOTEMPTY),
            Content::Dir { .. } => {}
        }
        self.remove_entry(parent, name, ino)
    }

    fn remove_entry(&mut self, parent: Ino, name: &OsStr, ino: Ino) -> Result<()> {
        self.entries_mut(parent)?.remove(name);
        self.touch_dir(parent);
        let node = self.node_mut(ino)?;
        node.links = node.links.saturating_sub(1);
        node.meta.ctime = SystemTime::now();
        self.free_if_unreferenced(ino);
        Ok(())
    }

    /// Renames `parent/name` to `new_parent/new_name`, replacing what that
    /// named unless `no_replace`.
    pub(crate) fn rename(
        &mut self,
        parent: Ino,
        name: &OsStr,
        new_parent: Ino,
        new_name: &OsStr,
        no_replace: bool,
    ) -> Result<()> {
        let ino = *self.entries(parent)?.get(name).ok_or(libc::ENOENT)?;
        if new_name.len() > 255 {
            return Err(libc::ENAMETOOLONG);
        }
        let kind = self.node(ino)?.kind();
        if kind == Kind::Dir && self.is_ancestor(ino, new_parent) {
            return Err(libc::EINVAL);
        }
        if let Some(&target) = self.entries(new_parent)?.get(new_name) {
            if no_replace {
                return Err(libc::EEXIST);
            }
            if target == ino {
                return Ok(());
            }
            match (kind, &self.node(target)?.content) {
                (Kind::File, Content::Dir { .. }) => return Err(libc::EISDIR),
                (Kind::Dir, Content::File { .. }) => return Err(libc::ENOTDIR),
                (Kind::Dir, Content::Dir { entries, .. }) if !entries.is_empty() => return Err(libc::ENOTEMPTY),
                _ => {}
            }
            self.remove_entry(new_parent, new_name, target)?;
        }
        self.entries_mut(parent)?.remove(name);
        self.entries_mut(new_parent)?.insert(new_name.to_owned(), ino);
        self.touch_dir(parent);
        self.touch_dir(new_parent);
        let node = self.node_mut(ino)?;
        node.meta.ctime = SystemTime::now();
        if let Content::Dir { parent: up, .. } = &mut node.content {
            *up = new_parent;
        }
        Ok(())
    }

    /// Whether `dir` is `ino` or lies below it.
    fn is_ancestor(&self, ino: Ino, mut dir: Ino) -> bool {
        loop {
            if dir == ino {
                return true;
            }
            match self.nodes.get(&dir).map(|node| &node.content) {
                Some(Content::Dir { parent, .. }) if *parent != dir => dir = *parent,
                _ => return false,
            }
        }
    }

    /// Adds the entry `new_parent/new_name` for the file `ino`.
    pub(crate) fn link(&mut self, ino: Ino, new_parent: Ino, new_name: &OsStr) -> Result<Attr> {
        if self.node(ino)?.kind() == Kind::Dir {
            return Err(libc::EPERM);
        }
        self.check_new_entry(new_parent, new_name)?;
        self.entries_mut(new_parent)?.insert(new_name.to_owned(), ino);
        self.touch_dir(new_parent);
        let node = self.node_mut(ino)?;
        node.links += 1;
        node.lookups += 1;
        node.meta.ctime = SystemTime::now();
        self.getattr(ino)
    }

    /// `fsync`/`fdatasync` of `ino`: a file's data, size and attributes
    /// become durable; a directory's entries do.
    pub(crate) fn sync(&mut self, ino: Ino) -> Result<()> {
        if self.node(ino)?.kind() == Kind::Dir {
            return self.sync_dir(ino);
        }
        if self.faults.ignore_file_sync {
            self.counters.ignored_file_syncs.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        self.counters.file_syncs.fetch_add(1, Ordering::Relaxed);
        let node = self.node_mut(ino)?;
        if let Content::File { data, durable, unsynced, unsynced_bytes, overflowed } = &mut node.content {
            durable.clone_from(data);
            unsynced.clear();
            *unsynced_bytes = 0;
            *overflowed = false;
        }
        node.durable_meta = node.meta.clone();
        Ok(())
    }

    /// `fsync` of the directory `ino`: its entries, as they are now, become
    /// durable (and so do its own attributes).
    pub(crate) fn sync_dir(&mut self, ino: Ino) -> Result<()> {
        if self.faults.ignore_dir_sync {
            self.counters.ignored_dir_syncs.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        self.counters.dir_syncs.fetch_add(1, Ordering::Relaxed);
        let node = self.node_mut(ino)?;
        let Content::Dir { entries, durable, .. } = &mut node.content else {
            return Err(libc::ENOTDIR);
        };
        let old = std::mem::replace(durable, entries.clone());
        let added: Vec<Ino> = durable.values().copied().collect();
        node.durable_meta = node.meta.clone();
        for child in added {
            if let Some(child) = self.nodes.get_mut(&child) {
                child.durable_refs += 1;
            }
        }
        for child in old.into_values() {
            if let Some(node) = self.nodes.get_mut(&child) {
                node.durable_refs = node.durable_refs.saturating_sub(1);
                self.free_if_unreferenced(child);
            }
        }
        Ok(())
    }

    /// The entries of directory `ino`, with `.` and `..` first.
    pub(crate) fn readdir(&self, ino: Ino) -> Result<Vec<(Ino, Kind, OsString)>> {
        let Content::Dir { parent, entries, .. } = &self.node(ino)?.content else {
            return Err(libc::ENOTDIR);
        };
        let mut list = vec![(ino, Kind::Dir, OsString::from(".")), (*parent, Kind::Dir, OsString::from(".."))];
        for (name, child) in entries {
            if let Some(kind) = self.kind_of(*child) {
                list.push((*child, kind, name.clone()));
            }
        }
        Ok(list)
    }

    /// How many inodes and data bytes the model holds (both layers).
    pub(crate) fn usage(&self) -> (u64, u64) {
        let bytes = self
            .nodes
            .values()
            .map(|node| match &node.content {
                Content::File { data, durable, unsynced_bytes, .. } => data.len() + durable.len() + unsynced_bytes,
                Content::Dir { .. } => 0,
            })
            .sum::<usize>();
        (self.nodes.len() as u64, bytes as u64)
    }

    /// Forgets an inode nothing refers to any more, and what only it kept.
    fn free_if_unreferenced(&mut self, ino: Ino) {
        let mut queue = vec![ino];
        while let Some(ino) = queue.pop() {
            if ino == ROOT || !self.nodes.get(&ino).is_some_and(Node::unreferenced) {
                continue;
            }
            if let Some(Node { content: Content::Dir { durable, .. }, .. }) = self.nodes.remove(&ino) {
                for child in durable.into_values() {
                    if let Some(node) = self.nodes.get_mut(&child) {
                        node.durable_refs = node.durable_refs.saturating_sub(1);
                        queue.push(child);
                    }
                }
            }
        }
    }

    /// The power fails for good: from now on this model answers only `EIO`.
    pub(crate) fn power_off(&mut self) {
        self.dead = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn model(torn: bool) -> Model {
        Model::new(0, 0, torn, Faults::default(), Arc::default())
    }

    pub(super) fn name(text: &str) -> &OsStr {
        OsStr::new(text)
    }

    pub(super) fn file_with(model: &mut Model, parent: Ino, file: &str, bytes: &[u8]) -> Ino {
        let ino = model.create(parent, name(file), 0o644, 0, 0).expect("create").ino;
        model.write(ino, 0, bytes).expect("write");
        ino
    }

    pub(super) fn read_all(model: &mut Model, parent: Ino, file: &str) -> Option<Vec<u8>> {
        let ino = model.lookup(parent, name(file)).ok()?.ino;
        Some(model.read(ino, 0, u32::MAX).expect("read").to_vec())
    }

    #[test]
    fn inodes_are_freed_once_no_layer_or_handle_holds_them() {
        let mut m = model(false);
        let sessions = m.mkdir(ROOT, name("d"), 0o700, 0, 0).expect("mkdir").ino;
        m.sync_dir(ROOT).expect("sync root");
        for round in 0..100u32 {
            let temp = file_with(&mut m, sessions, "tmp", &round.to_le_bytes());
            m.sync(temp).expect("sync");
            m.release(temp);
            m.forget(temp, 1);
            m.rename(sessions, name("tmp"), sessions, name("file"), false).expect("rename");
            m.sync_dir(sessions).expect("sync dir");
        }
        // Root, the directory and the one file that is named.
        assert_eq!(m.usage().0, 3);
    }

    #[test]
    fn writes_far_past_the_end_fail_instead_of_exhausting_memory() {
        let mut m = model(false);
        let ino = file_with(&mut m, ROOT, "f", b"x");
        assert_eq!(m.write(ino, 1 << 40, b"y"), Err(libc::EFBIG));
        let huge = SetAttr { size: Some(1 << 40), ..SetAttr::default() };
        assert_eq!(m.setattr(ino, &huge).map(|_| ()), Err(libc::EFBIG));
        assert_eq!(m.getattr(ino).map(|attr| attr.size), Ok(1));
    }
}
