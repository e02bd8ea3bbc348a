//! One stored session's data: its user, its encoded data and the data's
//! length as JSON, in one shared allocation.
//!
//! ```text
//! record   = user data json-len
//! user     = "-" | len ":" bytes        ; reserved::user_of(data), for the user index
//! data     = the encoding of the data (see codec)
//! json-len = 8 hex digits | "--------"  ; the data's length as JSON, if known
//! ```
//!
//! The user is kept beside the data so that a write finds the user its
//! session had without reading the data. The JSON length is known for
//! records made by a patch, which measures as it goes, and not for those
//! made by `set`, which would pay for measuring on every write (see
//! [`super::patch`]). A record is immutable: a write makes a new one.
//!
//! Only [`Record::build`] makes records, so the layout is an invariant;
//! the accessors still read with checked slicing, and a broken layout
//! would surface as data that does not decode, never as a panic.

use std::cell::RefCell;
use std::sync::Arc;

use sessionkit::StoreError;

/// Length of the trailing JSON length.
const JSON_LEN_DIGITS: usize = 8;

/// The trailing JSON length when it is not known.
const UNKNOWN: &str = "--------";

/// Encoding buffers above this size are not kept for the next write: one
/// huge session must not pin its size in every thread.
const KEEP_BUFFER: usize = 64 * 1024;

thread_local! {
    /// Reused between writes: a record is built here, then copied once into
    /// its `Arc<str>`.
    static BUFFER: RefCell<String> = const { RefCell::new(String::new()) };
}

/// A stored session's data; cheap to clone (a shared pointer).
#[derive(Clone)]
pub(super) struct Record(Arc<str>);

impl Record {
    /// Builds the record of a session bound to `user`, whose data
    /// `write_data` appends to the buffer it is given, returning the data's
    /// length as JSON if it measured it.
    pub(super) fn build(
        user: Option<&str>,
        write_data: impl FnOnce(&mut String) -> Result<Option<usize>, StoreError>,
    ) -> Result<Self, StoreError> {
        with_buffer(|out| {
            match user {
                None => out.push('-'),
                Some(user) => super::codec::push_bytes(out, user),
            }
            let json_len = write_data(out)?;
            push_json_len(out, json_len);
            Ok(Self(Arc::from(out.as_str())))
        })
    }

    /// Builds a record whose data `write_data` appends to the buffer it is
    /// given, returning the user the data binds the session to, which it
    /// noticed on the way (a `set` has no user to start from). The data's
    /// length is left unknown.
    pub(super) fn build_finding_user<'u>(
        write_data: impl FnOnce(&mut String) -> Result<Option<&'u str>, StoreError>,
    ) -> Result<Self, StoreError> {
        with_buffer(|out| {
            // Most sessions have no user: their field is this placeholder,
            // and only a bound session's record moves its data to make room.
            out.push('-');
            if let Some(user) = write_data(out)? {
                out.replace_range(..1, user);
                let mut digits = [0u8; 21];
                out.insert_str(0, super::codec::number_text(user.len() as u64, b':', &mut digits));
            }
            push_json_len(out, None);
            Ok(Self(Arc::from(out.as_str())))
        })
    }

    /// The user the session belongs to, and where the data starts.
    fn user_and_data_start(&self) -> (Option<&str>, usize) {
        let text = &*self.0;
        let bytes = text.as_bytes();
        if bytes.first() == Some(&b'-') {
            return (None, 1);
        }
        let mut len = 0usize;
        let mut at = 0;
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

    /// The data's length as JSON, if known.
    pub(super) fn json_len(&self) -> Option<usize> {
        let digits = self.0.get(self.0.len().saturating_sub(JSON_LEN_DIGITS)..).unwrap_or_default();
        u32::from_str_radix(digits, 16).ok().map(|len| len as usize)
    }

    /// The allocation's size, for decisions about copying.
    pub(super) fn len(&self) -> usize {
        self.0.len()
    }
}

/// Runs `build` on the thread's cleared buffer.
fn with_buffer(build: impl FnOnce(&mut String) -> Result<Record, StoreError>) -> Result<Record, StoreError> {
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
        let built = build(out);
        if out.capacity() > KEEP_BUFFER {
            *out = String::new();
        }
        built
    })
}

/// The trailing JSON length: 8 hex digits, or [`UNKNOWN`] (also for
/// lengths past 4 GiB, which are measured again when needed).
fn push_json_len(out: &mut String, json_len: Option<usize>) {
    match json_len.and_then(|len| u32::try_from(len).ok()) {
        Some(len) => push_hex(out, len),
        None => out.push_str(UNKNOWN),
    }
}

/// 8 hex digits.
fn push_hex(out: &mut String, value: u32) {
    let mut digits = [0u8; JSON_LEN_DIGITS];
    for (at, digit) in digits.iter_mut().enumerate() {
        let nibble = ((value >> ((JSON_LEN_DIGITS - 1 - at) * 4)) & 0xf) as u8;
        *digit = if nibble < 10 { b'0' + nibble } else { b'a' + nibble - 10 };
    }
    // Hex digits are always UTF-8.
    out.push_str(std::str::from_utf8(&digits).unwrap_or(UNKNOWN));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_part_reads_back() {
        for user in [None, Some(""), Some("ada"), Some("12:3"), Some("-"), Some("ключ 😀")] {
            for json_len in [Some(0), Some(0x1234_abcd), None, Some(u32::MAX as usize + 1)] {
                let record = Record::build(user, |out| {
                    out.push_str("1:1:an");
                    Ok(json_len)
                })
                .expect("build");
                assert_eq!(record.user(), user);
                assert_eq!(record.data(), "1:1:an");
                let kept = json_len.filter(|&len| len <= u32::MAX as usize);
                assert_eq!(record.json_len(), kept, "a length past 4 GiB is measured again when needed");
            }
        }
    }

    #[test]
    fn a_record_can_learn_its_user_while_its_data_is_written() {
        for user in [None, Some(""), Some("ada"), Some("12:3"), Some("ключ 😀")] {
            let record = Record::build_finding_user(|out| {
                out.push_str("1:1:an");
                Ok(user)
            })
            .expect("build");
            assert_eq!(record.user(), user);
            assert_eq!(record.data(), "1:1:an");
            assert_eq!(record.json_len(), None);
        }
    }

    #[test]
    fn a_failed_build_builds_nothing_and_the_buffer_recovers() {
        let failed = Record::build(None, |out| {
            out.push_str("garbage");
            Err(StoreError::unsupported("testing"))
        });
        assert!(failed.is_err());
        let record = Record::build(None, |out| {
            out.push_str("0:");
            Ok(Some(2))
        })
        .expect("build");
        assert_eq!(record.data(), "0:");
    }
}
