//! One stored session: its key, its user, its encoded data and the data's
//! length as JSON, in one shared allocation.
//!
//! ```text
//! record   = key user data json-len
//! key      = 43 characters            ; the store key's text
//! user     = "-" | len ":" bytes      ; reserved::user_of(data), for the user index
//! data     = the encoding of the data (see codec)
//! json-len = 16 hex digits            ; the data's length as JSON, for size limits
//! ```
//!
//! One allocation, key first, because a `get` of a session no recent
//! request touched is dominated by cache misses: the table's slot holds
//! only this pointer and the expiry, and the key that confirms the match
//! sits on the same cache line as the start of the data that is read next.
//! The record is immutable; a write makes a new one (the expiry, which
//! `touch` moves, lives in the slot instead).
//!
//! Only [`Record::build`] makes records, so the layout is an invariant;
//! the accessors still read with checked slicing, and a broken layout
//! would surface as data that does not decode, never as a panic.

use std::cell::RefCell;
use std::sync::Arc;

use sessionkit::{StoreError, StoreKey};

/// Length of a store key's text.
pub(super) const KEY_LEN: usize = 43;

/// Length of the trailing JSON length: 16 hex digits.
const JSON_LEN_DIGITS: usize = 16;

/// Encoding buffers above this size are not kept for the next write: one
/// huge session must not pin its size in every thread.
const KEEP_BUFFER: usize = 64 * 1024;

thread_local! {
    /// Reused between writes: a record is built here, then copied once into
    /// its `Arc<str>`.
    static BUFFER: RefCell<String> = const { RefCell::new(String::new()) };
}

/// A stored session; cheap to clone (a shared pointer).
#[derive(Clone)]
pub(super) struct Record(Arc<str>);

impl Record {
    /// Builds the record of `key`, bound to `user`, whose data `write_data`
    /// appends to the buffer it is given, returning the data's length as
    /// JSON.
    pub(super) fn build(
        key: &StoreKey,
        user: Option<&str>,
        write_data: impl FnOnce(&mut String) -> Result<usize, StoreError>,
    ) -> Result<Self, StoreError> {
        BUFFER.with(|buffer| {
            // A re-entrant call cannot happen (building calls nothing that
            // builds), but a fresh buffer is the safe answer if it did.
            let mut fresh = String::new();
            let mut borrowed = buffer.try_borrow_mut();
            let out = match borrowed.as_deref_mut() {
                Ok(out) => out,
                Err(_) => &mut fresh,
            };
            out.clear();
            out.push_str(key.as_str());
            match user {
                None => out.push('-'),
                Some(user) => super::codec::push_bytes(out, user),
            }
            let built = write_data(out).map(|json_len| {
                push_hex(out, json_len as u64);
                Self(Arc::from(out.as_str()))
            });
            if out.capacity() > KEEP_BUFFER {
                *out = String::new();
            }
            built
        })
    }

    /// The store key's text.
    pub(super) fn key(&self) -> &str {
        self.0.get(..KEY_LEN).unwrap_or_default()
    }

    /// The key, parsed back (for listings).
    pub(super) fn store_key(&self) -> Option<StoreKey> {
        StoreKey::parse(self.key())
    }

    /// The user the session belongs to, and where the data starts.
    fn user_and_data_start(&self) -> (Option<&str>, usize) {
        let text = &*self.0;
        let bytes = text.as_bytes();
        if bytes.get(KEY_LEN) == Some(&b'-') {
            return (None, KEY_LEN + 1);
        }
        let mut len = 0usize;
        let mut at = KEY_LEN;
        while let Some(&digit @ b'0'..=b'9') = bytes.get(at) {
            len = len.saturating_mul(10).saturating_add(usize::from(digit - b'0'));
            at += 1;
        }
        let start = at + 1;
        let end = start.saturating_add(len);
        (text.get(start..end), end)
    }

    /// The user the session belongs to ([`sessionkit::reserved::user_of`] of
    /// its data).
    pub(super) fn user(&self) -> Option<&str> {
        self.user_and_data_start().0
    }

    /// The encoded data.
    pub(super) fn data(&self) -> &str {
        let start = self.user_and_data_start().1;
        let end = self.0.len().saturating_sub(JSON_LEN_DIGITS);
        self.0.get(start..end).unwrap_or_default()
    }

    /// The data's length as JSON.
    pub(super) fn json_len(&self) -> usize {
        let digits = self.0.get(self.0.len().saturating_sub(JSON_LEN_DIGITS)..).unwrap_or_default();
        // Unreadable (a broken layout): the largest length makes any size
        // limit refuse, the safe answer.
        usize::from_str_radix(digits, 16).unwrap_or(usize::MAX / 2)
    }

    /// The allocation's size, for decisions about copying.
    pub(super) fn len(&self) -> usize {
        self.0.len()
    }
}

/// 16 hex digits.
fn push_hex(out: &mut String, value: u64) {
    for shift in (0..JSON_LEN_DIGITS).rev() {
        let nibble = ((value >> (shift * 4)) & 0xf) as u8;
        out.push(char::from(if nibble < 10 { b'0' + nibble } else { b'a' + nibble - 10 }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> StoreKey {
        sessionkit::testing::checks::key()
    }

    #[test]
    fn every_part_reads_back() {
        let id = key();
        assert_eq!(id.as_str().len(), KEY_LEN);
        for user in [None, Some(""), Some("ada"), Some("12:3"), Some("ключ 😀")] {
            let record = Record::build(&id, user, |out| {
                out.push_str("1:1:an");
                Ok(0x1234_5678_9abc)
            })
            .expect("build");
            assert_eq!(record.key(), id.as_str());
            assert_eq!(record.store_key(), Some(id.clone()));
            assert_eq!(record.user(), user);
            assert_eq!(record.data(), "1:1:an");
            assert_eq!(record.json_len(), 0x1234_5678_9abc);
        }
    }

    #[test]
    fn a_failed_build_builds_nothing_and_the_buffer_recovers() {
        let id = key();
        let failed = Record::build(&id, None, |out| {
            out.push_str("garbage");
            Err(StoreError::unsupported("testing"))
        });
        assert!(failed.is_err());
        let record = Record::build(&id, None, |out| {
            out.push_str("0:");
            Ok(2)
        })
        .expect("build");
        assert_eq!(record.data(), "0:");
    }
}
