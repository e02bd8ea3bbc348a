//! One stored session's data: its user and its encoded data, in one
//! shared allocation.
//!
//! ```text
//! record = user data
//! user   = "-" | len ":" bytes      ; reserved::user_of(data), for the user index
//! data   = the encoding of the data (see codec)
//! ```
//!
//! The user is kept beside the data so that a write finds the user its
//! session had without reading the data. A record is immutable: a write
//! makes a new one (what changes without one, the expiry and the data's
//! length as JSON, lives in the table slot, see [`super::shard`]).
//!
//! Only [`Record::build`] and [`Record::build_finding_user`] make records,
//! so the layout is an invariant; the accessors still read with checked
//! slicing, and a broken layout would surface as data that does not
//! decode, never as a panic.

use std::cell::RefCell;
use std::sync::Arc;

use sessionkit::StoreError;

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
    /// `write_data` appends to the buffer it is given; returns it with what
    /// `write_data` returned.
    pub(super) fn build<T>(
        user: Option<&str>,
        write_data: impl FnOnce(&mut String) -> Result<T, StoreError>,
    ) -> Result<(Self, T), StoreError> {
        with_buffer(|out| {
            match user {
                None => out.push('-'),
                Some(user) => super::codec::push_bytes(out, user),
            }
            write_data(out)
        })
    }

    /// Builds a record whose data `write_data` appends to the buffer it is
    /// given, returning the user the data binds the session to, which it
    /// noticed on the way (a `set` has no user to start from).
    pub(super) fn build_finding_user<'u>(
        write_data: impl FnOnce(&mut String) -> Result<Option<&'u str>, StoreError>,
    ) -> Result<(Self, Option<&'u str>), StoreError> {
        with_buffer(|out| {
            // Most sessions have no user: their field is this placeholder,
            // and only a bound session's record moves its data to make room.
            out.push('-');
            let user = write_data(out)?;
            if let Some(user) = user {
                out.replace_range(..1, user);
                let mut digits = [0u8; 21];
                out.insert_str(0, super::codec::number_text(user.len() as u64, b':', &mut digits));
            }
            Ok(user)
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
        self.0.get(start..).unwrap_or_default()
    }

    /// The allocation's size, for decisions about copying.
    pub(super) fn len(&self) -> usize {
        self.0.len()
    }
}

/// Runs `build` on the thread's cleared buffer, and makes the record of
/// what it wrote.
fn with_buffer<T>(build: impl FnOnce(&mut String) -> Result<T, StoreError>) -> Result<(Record, T), StoreError> {
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
        let built = build(out).map(|extra| (Record(Arc::from(out.as_str())), extra));
        if out.capacity() > KEEP_BUFFER {
            *out = String::new();
        }
        built
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const USERS: [Option<&str>; 6] = [None, Some(""), Some("ada"), Some("12:3"), Some("-"), Some("ключ 😀")];

    #[test]
    fn every_part_reads_back() {
        for user in USERS {
            let (record, extra) = Record::build(user, |out| {
                out.push_str("1:1:an");
                Ok(7)
            })
            .expect("build");
            assert_eq!((record.user(), record.data(), extra), (user, "1:1:an", 7));
        }
    }

    #[test]
    fn a_record_can_learn_its_user_while_its_data_is_written() {
        for user in USERS {
            let (record, found) = Record::build_finding_user(|out| {
                out.push_str("1:1:an");
                Ok(user)
            })
            .expect("build");
            assert_eq!((record.user(), record.data(), found), (user, "1:1:an", user));
        }
    }

    #[test]
    fn a_failed_build_builds_nothing_and_the_buffer_recovers() {
        let failed = Record::build(None, |out| {
            out.push_str("garbage");
            Err::<(), _>(StoreError::unsupported("testing"))
        });
        assert!(failed.is_err());
        let (record, ()) = Record::build(None, |out| {
            out.push_str("0:");
            Ok(())
        })
        .expect("build");
        assert_eq!(record.data(), "0:");
    }
}
