//! The power cut: the model a remount starts from, built out of the
//! durable layer alone (plus, in torn mode, a random prefix of each file's
//! unsynced writes).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;

use super::torn::tear;
use super::{Content, Ino, Kind, Meta, Model, Node, ROOT};
use crate::rng::Rng;

/// What a power cut discarded.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct CutSummary {
    /// Files whose unsynced changes were dropped, wholly or in part.
    pub(crate) files_rolled_back: usize,
    /// Files that kept some of their unsynced changes (torn mode).
    pub(crate) files_torn: usize,
    /// Directories whose unsynced entry changes were dropped.
    pub(crate) dirs_rolled_back: usize,
}

impl Model {
    /// The power fails: from now on this model answers only `EIO`. Returns
    /// the model a remount starts from, built from the durable layer alone
    /// (in torn mode, each file also keeps a random prefix of its unsynced
    /// changes, drawn from `rng`), and what was discarded.
    pub(crate) fn cut(&mut self, rng: &mut Rng) -> (Model, CutSummary) {
        self.dead = true;
        let mut summary = CutSummary::default();
        let mut nodes: HashMap<Ino, Node> = HashMap::new();
        let mut links: HashMap<Ino, u32> = HashMap::new();
        let mut queue = VecDeque::from([(ROOT, ROOT)]);
        let mut seen_dirs = HashSet::from([ROOT]);
        while let Some((ino, parent)) = queue.pop_front() {
            let Some(old) = self.nodes.get(&ino) else { continue };
            let Content::Dir { entries, durable, .. } = &old.content else { continue };
            if entries != durable {
                summary.dirs_rolled_back += 1;
            }
            let mut kept = BTreeMap::new();
            for (name, &child) in durable {
                match self.nodes.get(&child).map(Node::kind) {
                    // Directory renames synced at different times can name
                    // one directory twice, or in a cycle: the first name
                    // found, breadth first, wins.
                    Some(Kind::Dir) if seen_dirs.insert(child) => {
                        queue.push_back((child, ino));
                        kept.insert(name.clone(), child);
                    }
                    Some(Kind::File) => {
                        *links.entry(child).or_default() += 1;
                        kept.insert(name.clone(), child);
                    }
                    Some(Kind::Dir) | None => {}
                }
            }
            let meta = old.durable_meta.clone();
            let content = Content::Dir { parent, entries: kept.clone(), durable: kept };
            nodes.insert(ino, fresh_node(content, meta, 1));
        }
        let mut files: Vec<(Ino, u32)> = links.into_iter().collect();
        // The same seed tears the same way: visit files in a fixed order.
        files.sort_unstable();
        for (ino, count) in files {
            let Some(old) = self.nodes.get(&ino) else { continue };
            let Content::File { data, durable, unsynced, .. } = &old.content else { continue };
            let mut survived = durable.clone();
            if self.torn && !unsynced.is_empty() && tear(&mut survived, unsynced, rng) {
                summary.files_torn += 1;
            }
            if survived != *data {
                summary.files_rolled_back += 1;
            }
            let content = Content::File {
                data: survived.clone(),
                durable: survived,
                unsynced: Vec::new(),
                unsynced_bytes: 0,
                overflowed: false,
            };
            nodes.insert(ino, fresh_node(content, old.durable_meta.clone(), count));
        }
        let model = Model {
            nodes,
            next_ino: self.next_ino,
            torn: self.torn,
            faults: self.faults,
            counters: Arc::clone(&self.counters),
            dead: false,
        };
        (model, summary)
    }
}

/// A node of a freshly cut model: its layers agree, nobody holds it.
fn fresh_node(content: Content, meta: Meta, links: u32) -> Node {
    Node { content, durable_meta: meta.clone(), meta, links, open: 0, lookups: 0, durable_refs: links }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::super::SECTOR;
    use super::super::tests::{file_with, model, name, read_all};
    use super::*;

    #[test]
    fn a_cut_keeps_synced_entries_and_data_only() {
        let mut m = model(false);
        let kept = file_with(&mut m, ROOT, "kept", b"synced");
        m.sync(kept).expect("sync");
        m.write(kept, 6, b" and more").expect("write");
        file_with(&mut m, ROOT, "entry-only", b"never synced");
        m.sync_dir(ROOT).expect("sync dir");
        let data_only = file_with(&mut m, ROOT, "data-only", b"no entry");
        m.sync(data_only).expect("sync");
        let (mut after, summary) = m.cut(&mut Rng::new(1));
        assert_eq!(read_all(&mut after, ROOT, "kept").as_deref(), Some(&b"synced"[..]));
        assert_eq!(read_all(&mut after, ROOT, "entry-only").as_deref(), Some(&b""[..]));
        assert_eq!(read_all(&mut after, ROOT, "data-only"), None);
        assert_eq!(summary.dirs_rolled_back, 1);
        assert_eq!(m.getattr(ROOT).map(|_| ()), Err(libc::EIO), "the old model is powered off");
    }

    #[test]
    fn a_directory_cycle_from_unsynced_renames_is_broken_on_cut() {
        let mut m = model(false);
        let a = m.mkdir(ROOT, name("a"), 0o755, 0, 0).expect("a").ino;
        let b = m.mkdir(a, name("b"), 0o755, 0, 0).expect("b").ino;
        m.sync_dir(ROOT).expect("sync root");
        m.sync_dir(a).expect("sync a");
        // Move b up, then a into b; sync only b: durably, a holds b and b holds a.
        m.rename(a, name("b"), ROOT, name("b"), false).expect("b up");
        m.rename(ROOT, name("a"), b, name("a"), false).expect("a into b");
        m.sync_dir(b).expect("sync b");
        let (mut after, _) = m.cut(&mut Rng::new(7));
        let a = after.lookup(ROOT, name("a")).expect("a is still at the root").ino;
        let b = after.lookup(a, name("b")).expect("b is still in a").ino;
        assert_eq!(after.lookup(b, name("a")).map(|_| ()), Err(libc::ENOENT), "the cycle is cut");
    }

    #[test]
    fn torn_mode_keeps_a_prefix_of_the_unsynced_writes() {
        let writes: Vec<Vec<u8>> = (0..6u8).map(|n| vec![n + 1; 2048]).collect();
        let stream: Vec<u8> = writes.concat();
        let mut lengths = HashSet::new();
        for seed in 1..=64 {
            let mut m = model(true);
            let ino = m.create(ROOT, name("f"), 0o644, 0, 0).expect("create").ino;
            m.sync_dir(ROOT).expect("sync dir");
            let mut offset = 0;
            for write in &writes {
                m.write(ino, offset, write).expect("write");
                offset += write.len() as u64;
            }
            let (mut after, _) = m.cut(&mut Rng::new(seed));
            let data = read_all(&mut after, ROOT, "f").expect("the entry was synced");
            assert!(data.len().is_multiple_of(SECTOR), "whole sectors only: {}", data.len());
            assert_eq!(data, stream[..data.len()], "a prefix of the writes, in order");
            lengths.insert(data.len());
        }
        assert!(lengths.contains(&0) && lengths.contains(&stream.len()), "both extremes occur: {lengths:?}");
        assert!(lengths.iter().any(|&len| len % 2048 != 0), "writes tear inside: {lengths:?}");
    }
}
