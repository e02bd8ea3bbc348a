//! One shard of the store: its records, the expiry index over them and the
//! leases on its keys, behind one lock (held by [`super::MemoryStore`]).
//!
//! The table's slot is an [`Entry`]: the key's bytes, the record's pointer,
//! the expiry and the data's length as JSON (64 bytes), so that a lookup
//! compares keys without following the pointer, and `touch` moves an
//! expiry without touching the record. The expiry index is ordered by expiry time, so a sweep pops
//! exactly the expired entries instead of scanning everything.

use std::collections::BTreeSet;
use std::hash::BuildHasher;

use foldhash::fast::RandomState;
use hashbrown::HashTable;
use hashbrown::hash_table::Entry as TableEntry;

use super::leases::Leases;
use super::record::Record;

/// The expiry of a record that never expires. An expiry at the very end of
/// `i64` milliseconds (292 million years from now) is kept one millisecond
/// earlier so that it stays one: a slot is smaller without an `Option`.
const NEVER: i64 = i64::MAX;

/// Raw key bytes: the 32 bytes of a [`StoreKey`].
pub(super) type Key = [u8; 32];

/// What the table holds for one session.
pub(super) struct Entry {
    pub(super) key: Key,
    pub(super) record: Record,
    /// Unix ms, or [`NEVER`].
    expires_at_ms: i64,
    /// The data's length as JSON, or [`UNMEASURED`]: known for records a
    /// patch made (it measures as it writes), not for those of a `set`,
    /// which would pay for measuring on every write (see [`super::patch`]).
    json_len: u32,
}

/// [`Entry::json_len`] when the length is not known (or past 4 GiB, which
/// is then measured again when needed).
const UNMEASURED: u32 = u32::MAX;

impl Entry {
    /// The data's length as JSON, if known.
    pub(super) fn json_len(&self) -> Option<usize> {
        (self.json_len != UNMEASURED).then_some(self.json_len as usize)
    }

    /// When the record expires, Unix ms; `None`: never.
    pub(super) fn expires_at_ms(&self) -> Option<i64> {
        (self.expires_at_ms != NEVER).then_some(self.expires_at_ms)
    }

    /// Whether the record is live at `now_ms` (it expires *at* its expiry).
    pub(super) fn is_live(&self, now_ms: i64) -> bool {
        self.expires_at_ms > now_ms
    }

    /// Whether the record is live now, reading the clock only for records
    /// that can expire.
    pub(super) fn is_live_now(&self) -> bool {
        self.expires_at_ms == NEVER || self.is_live(super::now_ms())
    }
}

fn slot_expiry(expires_at_ms: Option<i64>) -> i64 {
    expires_at_ms.map_or(NEVER, |at| at.min(NEVER - 1))
}

/// A key in the expiry index: the key's bytes as two integers, cheaper to
/// compare than byte arrays.
type IndexKey = (u128, u128);

fn index_key(key: &Key) -> IndexKey {
    let (high, low) = key.split_at(16);
    // Both halves are exactly 16 bytes, so the conversions cannot fail.
    let half = |bytes: &[u8]| u128::from_le_bytes(bytes.try_into().unwrap_or([0; 16]));
    (half(high), half(low))
}

fn key_of(index: IndexKey) -> Key {
    let mut key = [0u8; 32];
    key[..16].copy_from_slice(&index.0.to_le_bytes());
    key[16..].copy_from_slice(&index.1.to_le_bytes());
    key
}

/// The hash every table and shard choice uses.
pub(super) fn hash_key(hasher: &RandomState, key: &Key) -> u64 {
    hasher.hash_one(key)
}

#[derive(Default)]
pub(super) struct Shard {
    records: HashTable<Entry>,
    /// `(expires_at_ms, key)` for every record with an expiry.
    by_expiry: BTreeSet<(i64, IndexKey)>,
    /// Leases on this shard's keys, with or without a record.
    pub(super) leases: Leases,
}

impl Shard {
    /// How many records the shard holds, expired ones included.
    pub(super) fn len(&self) -> usize {
        self.records.len()
    }

    /// The record under `key`, live or not.
    pub(super) fn find(&self, hash: u64, key: &Key) -> Option<&Entry> {
        self.records.find(hash, |entry| entry.key == *key)
    }

    /// The live record under `key`.
    pub(super) fn live(&self, hash: u64, key: &Key, now_ms: i64) -> Option<&Entry> {
        self.find(hash, key).filter(|entry| entry.is_live(now_ms))
    }

    /// Every record, live or not, in no particular order.
    pub(super) fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.records.iter()
    }

    /// Inserts or replaces the record under `key`, whose data is
    /// `json_len` long as JSON if known, keeping the expiry index in step.
    /// Returns the record replaced, to be dropped (and unindexed) by the
    /// caller.
    pub(super) fn put(
        &mut self,
        hasher: &RandomState,
        hash: u64,
        key: &Key,
        (record, json_len): (Record, Option<usize>),
        expires_at_ms: Option<i64>,
    ) -> Option<Record> {
        let expires_at_ms = slot_expiry(expires_at_ms);
        let json_len = json_len.and_then(|len| u32::try_from(len).ok()).unwrap_or(UNMEASURED);
        let rehash = |entry: &Entry| hash_key(hasher, &entry.key);
        match self.records.entry(hash, |entry| entry.key == *key, rehash) {
            TableEntry::Occupied(mut slot) => {
                let entry = slot.get_mut();
                Self::move_in_index(&mut self.by_expiry, key, entry.expires_at_ms, expires_at_ms);
                entry.expires_at_ms = expires_at_ms;
                entry.json_len = json_len;
                Some(std::mem::replace(&mut entry.record, record))
            }
            TableEntry::Vacant(slot) => {
                slot.insert(Entry { key: *key, record, expires_at_ms, json_len });
                Self::move_in_index(&mut self.by_expiry, key, NEVER, expires_at_ms);
                None
            }
        }
    }

    /// Moves the expiry of the record under `key`; returns whether there
    /// is one.
    pub(super) fn set_expiry(&mut self, hash: u64, key: &Key, expires_at_ms: Option<i64>) -> bool {
        let expires_at_ms = slot_expiry(expires_at_ms);
        let Some(entry) = self.records.find_mut(hash, |entry| entry.key == *key) else {
            return false;
        };
        Self::move_in_index(&mut self.by_expiry, key, entry.expires_at_ms, expires_at_ms);
        entry.expires_at_ms = expires_at_ms;
        true
    }

    fn move_in_index(by_expiry: &mut BTreeSet<(i64, IndexKey)>, key: &Key, old: i64, new: i64) {
        if old == new {
            return;
        }
        if old != NEVER {
            by_expiry.remove(&(old, index_key(key)));
        }
        if new != NEVER {
            by_expiry.insert((new, index_key(key)));
        }
    }

    /// Removes the record under `key`, live or not.
    pub(super) fn take(&mut self, hash: u64, key: &Key) -> Option<Entry> {
        let (entry, _) = self.records.find_entry(hash, |entry| entry.key == *key).ok()?.remove();
        if entry.expires_at_ms != NEVER {
            self.by_expiry.remove(&(entry.expires_at_ms, index_key(key)));
        }
        Some(entry)
    }

    /// Removes every record expired at `now_ms`.
    pub(super) fn take_expired(&mut self, hasher: &RandomState, now_ms: i64) -> Vec<Entry> {
        let mut expired = Vec::new();
        while let Some(&(at, index)) = self.by_expiry.first() {
            if at > now_ms {
                break;
            }
            self.by_expiry.pop_first();
            let key = key_of(index);
            if let Ok(found) = self.records.find_entry(hash_key(hasher, &key), |entry| entry.key == key) {
                expired.push(found.remove().0);
            }
        }
        expired
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> (Record, Option<usize>) {
        Record::build(None, |out| {
            out.push_str("0:");
            Ok(Some(2))
        })
        .expect("build")
    }

    fn key() -> Key {
        *sessionkit::testing::checks::key().as_bytes()
    }

    #[test]
    fn the_expiry_index_follows_every_write() {
        let hasher = RandomState::default();
        let mut shard = Shard::default();
        let key = key();
        let hash = hash_key(&hasher, &key);
        assert!(shard.put(&hasher, hash, &key, record(), Some(10)).is_none());
        assert!(shard.set_expiry(hash, &key, Some(20)));
        assert_eq!(std::mem::size_of::<Entry>(), 64, "a slot is one cache line's worth");
        assert_eq!(shard.by_expiry.iter().copied().collect::<Vec<_>>(), [(20, index_key(&key))]);
        assert!(shard.put(&hasher, hash, &key, record(), None).is_some());
        assert!(shard.by_expiry.is_empty(), "a record without expiry is not indexed");
        shard.put(&hasher, hash, &key, record(), Some(30));
        assert!(shard.take(hash, &key).is_some());
        assert!(shard.by_expiry.is_empty() && shard.records.is_empty());
        assert!(!shard.set_expiry(hash, &key, Some(40)), "no record, nothing to move");
    }

    #[test]
    fn sweeping_takes_exactly_the_expired() {
        let hasher = RandomState::default();
        let mut shard = Shard::default();
        let keys: Vec<Key> = (0..10).map(|_| key()).collect();
        for (i, key) in keys.iter().enumerate() {
            let at = if i % 2 == 0 { Some(100 + i as i64) } else { None };
            shard.put(&hasher, hash_key(&hasher, key), key, record(), at);
        }
        let mut swept: Vec<Key> = shard.take_expired(&hasher, 104).into_iter().map(|entry| entry.key).collect();
        swept.sort();
        let mut expected = vec![keys[0], keys[2], keys[4]];
        expected.sort();
        assert_eq!(swept, expected, "expired at or before 104: those expiring at 100, 102 and 104");
        assert_eq!(shard.len(), 7);
        assert!(shard.take_expired(&hasher, 104).is_empty());
    }

    #[test]
    fn the_slot_keeps_the_json_length_when_it_fits() {
        let hasher = RandomState::default();
        let mut shard = Shard::default();
        let key = key();
        let hash = hash_key(&hasher, &key);
        for (kept, expected) in
            [(Some(2), Some(2)), (None, None), (Some(u32::MAX as usize), None), (Some(1 << 40), None)]
        {
            shard.put(&hasher, hash, &key, (record().0, kept), None);
            assert_eq!(shard.find(hash, &key).and_then(Entry::json_len), expected, "{kept:?}");
        }
    }

    #[test]
    fn the_furthest_expiry_stays_an_expiry() {
        let hasher = RandomState::default();
        let mut shard = Shard::default();
        let key = key();
        let hash = hash_key(&hasher, &key);
        shard.put(&hasher, hash, &key, record(), Some(i64::MAX));
        assert_eq!(shard.find(hash, &key).and_then(Entry::expires_at_ms), Some(i64::MAX - 1));
    }
}
