//! The bytes a [`RedbStore`](super::RedbStore) keeps per session: a small
//! header carrying the expiry and the user, then the data map as compact
//! JSON.
//!
//! ```text
//! version 2 (written by this version):
//! 0x02 | flags | [expiry: i64 BE] | [user length: u32 BE | user: UTF-8] | JSON
//!        flags: 0x01 the expiry is present, 0x02 the user is present; no other bit is set
//!
//! version 1 (written before the user index; still read, never written):
//! 0x00 | JSON                       no expiry
//! 0x01 | expiry: i64 BE | JSON      expires at that many Unix milliseconds
//! ```
//!
//! The expiry and the user sit in front of the JSON so that a read can
//! decide whether the record is live, a sweep whether it is expired, and the
//! writer which user index entry a record has, without parsing the data; and
//! so that `touch` can move the expiry by copying the JSON bytes as they
//! are. The user is the one the data names under
//! [`reserved::USER`] (as
//! [`reserved::user_of`] reads it), so the
//! header and the data never disagree.
//!
//! A version 1 value does not say whether it has a user: [`Owner::InJson`]
//! tells the writer to read the JSON when it needs to know (once, when it
//! rewrites or removes such a value; every rewrite writes version 2). A tag
//! or flag this version does not know reads as corrupt, never as a guess.

use sessionkit::{SessionMap, StoreError, reserved};

const V1_NO_EXPIRY: u8 = 0x00;
const V1_WITH_EXPIRY: u8 = 0x01;
const V2: u8 = 0x02;
const HAS_EXPIRY: u8 = 0x01;
const HAS_USER: u8 = 0x02;
const EXPIRY_LEN: usize = 8;
const USER_LEN_LEN: usize = 4;

/// A stored value whose header could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CorruptRecord {
    /// The value is empty, or shorter than its header says.
    #[error("the stored session value is truncated ({0} bytes)")]
    Truncated(usize),
    /// The first byte is not a layout this version knows.
    #[error("the stored session value has an unknown layout tag {0:#04x}")]
    UnknownTag(u8),
    /// The header's flags hold a bit this version does not know.
    #[error("the stored session value has unknown header flags {0:#04x}")]
    UnknownFlags(u8),
    /// The user in the header is not UTF-8.
    #[error("the user in the stored session header is not UTF-8")]
    User(#[source] std::str::Utf8Error),
    /// The JSON after the header is not a JSON object.
    #[error("the stored session data is not a JSON object")]
    Json(#[source] serde_json::Error),
}

/// Whom a stored session belongs to, as far as its header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Owner<'a> {
    /// A version 2 header: this user, or nobody.
    Known(Option<&'a str>),
    /// A version 1 value: only its JSON can tell.
    InJson,
}

/// A stored value split into its header fields and its JSON bytes, without
/// parsing the JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stored<'a> {
    /// Unix milliseconds, `None` for a record that never expires.
    pub(crate) expires_at_ms: Option<i64>,
    /// The user, when the header says.
    pub(crate) owner: Owner<'a>,
    /// The data map as JSON.
    pub(crate) json: &'a [u8],
}

impl<'a> Stored<'a> {
    /// Reads the header of `bytes`.
    pub(crate) fn parse(bytes: &'a [u8]) -> Result<Self, CorruptRecord> {
        let truncated = || CorruptRecord::Truncated(bytes.len());
        let (&tag, rest) = bytes.split_first().ok_or(CorruptRecord::Truncated(0))?;
        match tag {
            V1_NO_EXPIRY => Ok(Self { expires_at_ms: None, owner: Owner::InJson, json: rest }),
            V1_WITH_EXPIRY => {
                let (expiry, json) = rest.split_first_chunk::<EXPIRY_LEN>().ok_or_else(truncated)?;
                Ok(Self { expires_at_ms: Some(i64::from_be_bytes(*expiry)), owner: Owner::InJson, json })
            }
            V2 => {
                let (&flags, mut rest) = rest.split_first().ok_or_else(truncated)?;
                if flags & !(HAS_EXPIRY | HAS_USER) != 0 {
                    return Err(CorruptRecord::UnknownFlags(flags));
                }
                let mut expires_at_ms = None;
                if flags & HAS_EXPIRY != 0 {
                    let (expiry, after) = rest.split_first_chunk::<EXPIRY_LEN>().ok_or_else(truncated)?;
                    expires_at_ms = Some(i64::from_be_bytes(*expiry));
                    rest = after;
                }
                let mut user = None;
                if flags & HAS_USER != 0 {
                    let (len, after) = rest.split_first_chunk::<USER_LEN_LEN>().ok_or_else(truncated)?;
                    let len = usize::try_from(u32::from_be_bytes(*len)).map_err(|_| truncated())?;
                    if after.len() < len {
                        return Err(truncated());
                    }
                    let (name, after) = after.split_at(len);
                    user = Some(std::str::from_utf8(name).map_err(CorruptRecord::User)?);
                    rest = after;
                }
                Ok(Self { expires_at_ms, owner: Owner::Known(user), json: rest })
            }
            tag => Err(CorruptRecord::UnknownTag(tag)),
        }
    }

    /// Whether the record is still live at `now_ms` (a record expires at its
    /// expiry instant).
    pub(crate) fn is_live(&self, now_ms: i64) -> bool {
        self.expires_at_ms.is_none_or(|at| at > now_ms)
    }

    /// Parses the JSON into the data map.
    pub(crate) fn data(&self) -> Result<SessionMap, CorruptRecord> {
        serde_json::from_slice(self.json).map_err(CorruptRecord::Json)
    }

    /// The user the session belongs to: from the header, or for a version 1
    /// value from its JSON (which this parses).
    pub(crate) fn user(&self) -> Result<Option<String>, CorruptRecord> {
        match self.owner {
            Owner::Known(user) => Ok(user.map(str::to_owned)),
            Owner::InJson => Ok(reserved::user_of(&self.data()?).map(str::to_owned)),
        }
    }
}

/// The stored bytes of a record whose data is already JSON, and which
/// belongs to `user` (what the JSON says under `reserved::USER`).
pub(crate) fn encode_json(json: &[u8], expires_at_ms: Option<i64>, user: Option<&str>) -> Result<Vec<u8>, StoreError> {
    let user_len = user
        .map(|user| u32::try_from(user.len()))
        .transpose()
        .map_err(|_| StoreError::backend("redb store: encoding a session", UserTooLong))?;
    let mut bytes = Vec::with_capacity(2 + EXPIRY_LEN + USER_LEN_LEN + user.map_or(0, str::len) + json.len());
    let flags = if expires_at_ms.is_some() { HAS_EXPIRY } else { 0 } | if user.is_some() { HAS_USER } else { 0 };
    bytes.extend_from_slice(&[V2, flags]);
    if let Some(at) = expires_at_ms {
        bytes.extend_from_slice(&at.to_be_bytes());
    }
    if let (Some(user), Some(len)) = (user, user_len) {
        bytes.extend_from_slice(&len.to_be_bytes());
        bytes.extend_from_slice(user.as_bytes());
    }
    bytes.extend_from_slice(json);
    Ok(bytes)
}

/// The stored bytes of a record.
pub(crate) fn encode(data: &SessionMap, expires_at_ms: Option<i64>) -> Result<Vec<u8>, StoreError> {
    // Serialising a map of JSON values cannot fail today; the error is kept
    // rather than assumed away.
    let json = serde_json::to_vec(data).map_err(StoreError::Encode)?;
    encode_json(&json, expires_at_ms, reserved::user_of(data))
}

/// A user name longer than 4 GiB cannot be stored in the header.
#[derive(Debug, thiserror::Error)]
#[error("the session's user name is longer than 4 GiB")]
pub(crate) struct UserTooLong;

/// The bytes of a version 1 value, as the previous version wrote them: for
/// the tests that open such databases.
#[cfg(test)]
pub(crate) fn encode_v1(data: &SessionMap, expires_at_ms: Option<i64>) -> Vec<u8> {
    let mut bytes = match expires_at_ms {
        None => vec![V1_NO_EXPIRY],
        Some(at) => [&[V1_WITH_EXPIRY][..], &at.to_be_bytes()].concat(),
    };
    bytes.extend_from_slice(&serde_json::to_vec(data).expect("a map serialises"));
    bytes
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn map(value: serde_json::Value) -> SessionMap {
        value.as_object().cloned().expect("object")
    }

    #[test]
    fn records_round_trip_with_and_without_expiry_and_user() {
        let anonymous = map(json!({ "a": [1, "two"], "ключ": null }));
        let mut owned = anonymous.clone();
        owned.insert(reserved::USER.to_owned(), json!("adä@example.com"));
        let mut nameless = anonymous.clone();
        nameless.insert(reserved::USER.to_owned(), json!(""));
        let cases = [(&anonymous, None), (&owned, Some("adä@example.com")), (&nameless, Some(""))];
        for (data, user) in cases {
            for expiry in [None, Some(0), Some(1_700_000_000_123), Some(-5), Some(i64::MIN), Some(i64::MAX)] {
                let bytes = encode(data, expiry).expect("encode");
                let stored = Stored::parse(&bytes).expect("parse");
                assert_eq!(stored.expires_at_ms, expiry);
                assert_eq!(stored.owner, Owner::Known(user));
                assert_eq!(stored.user().expect("user").as_deref(), user);
                assert_eq!(&stored.data().expect("data"), data);
            }
        }
    }

    #[test]
    fn a_user_that_is_not_a_string_is_nobody_in_the_header_as_in_the_data() {
        let data = map(json!({ (reserved::USER): 42 }));
        let bytes = encode(&data, None).expect("encode");
        assert_eq!(Stored::parse(&bytes).expect("parse").owner, Owner::Known(None));
    }

    #[test]
    fn version_1_values_still_read_and_name_their_user_from_the_json() {
        let data = map(json!({ (reserved::USER): "ada", "cart": [1] }));
        for expiry in [None, Some(1_700_000_000_123)] {
            let bytes = encode_v1(&data, expiry);
            let stored = Stored::parse(&bytes).expect("parse");
            assert_eq!((stored.expires_at_ms, stored.owner), (expiry, Owner::InJson));
            assert_eq!(stored.user().expect("user").as_deref(), Some("ada"));
            assert_eq!(stored.data().expect("data"), data);
        }
        let anonymous = encode_v1(&map(json!({ "a": 1 })), None);
        assert_eq!(Stored::parse(&anonymous).expect("parse").user().expect("user"), None);
    }

    #[test]
    fn liveness_follows_the_expiry_inclusively() {
        let at = |ms| Stored { expires_at_ms: ms, owner: Owner::Known(None), json: b"{}" };
        assert!(at(None).is_live(i64::MAX));
        assert!(at(Some(11)).is_live(10));
        assert!(!at(Some(10)).is_live(10));
    }

    #[test]
    fn damaged_values_are_reported_not_guessed() {
        assert!(matches!(Stored::parse(b""), Err(CorruptRecord::Truncated(0))));
        assert!(matches!(Stored::parse(&[V1_WITH_EXPIRY, 1, 2, 3]), Err(CorruptRecord::Truncated(4))));
        assert!(matches!(Stored::parse(b"{\"a\":1}"), Err(CorruptRecord::UnknownTag(b'{'))));
        assert!(matches!(Stored::parse(&[V2]), Err(CorruptRecord::Truncated(1))));
        assert!(matches!(Stored::parse(&[V2, 0x04, b'{', b'}']), Err(CorruptRecord::UnknownFlags(0x04))));
        assert!(matches!(Stored::parse(&[V2, HAS_EXPIRY, 1, 2]), Err(CorruptRecord::Truncated(4))));
        assert!(matches!(Stored::parse(&[V2, HAS_USER, 0, 0, 0, 9, b'a']), Err(CorruptRecord::Truncated(7))));
        assert!(matches!(Stored::parse(&[V2, HAS_USER, 0, 0, 0, 1, 0xff, b'{', b'}']), Err(CorruptRecord::User(_))));
        let not_json = Stored::parse(&[V1_NO_EXPIRY, 0xff, 0xfe]).expect("the header is fine");
        assert!(matches!(not_json.data(), Err(CorruptRecord::Json(_))));
        assert!(matches!(not_json.user(), Err(CorruptRecord::Json(_))), "a version 1 user needs the JSON");
        let not_an_object = Stored::parse(b"\x00[1,2]").expect("the header is fine");
        assert!(matches!(not_an_object.data(), Err(CorruptRecord::Json(_))));
        let v2_not_json = Stored::parse(&[V2, 0, 0xff]).expect("the header is fine");
        assert_eq!(v2_not_json.user().expect("a version 2 user is in the header"), None);
    }
}
