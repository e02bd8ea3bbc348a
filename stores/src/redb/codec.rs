//! The bytes a [`RedbStore`](super::RedbStore) keeps per session: a small
//! header carrying the expiry, then the data map as compact JSON.
//!
//! ```text
//! 0x00 | JSON                       no expiry
//! 0x01 | expiry: i64, big-endian    | JSON       expires at that many Unix milliseconds
//! ```
//!
//! The expiry sits in front of the JSON so that a read can decide whether the
//! record is live, and a sweep whether it is expired, without parsing the
//! data; and so that `touch` can move the expiry by copying the JSON bytes
//! as they are. The leading tag leaves room for other layouts later: a tag
//! this version does not know reads as corrupt, never as a guess.

use sessionkit::{SessionMap, StoreError};

const NO_EXPIRY: u8 = 0x00;
const WITH_EXPIRY: u8 = 0x01;
const EXPIRY_LEN: usize = 8;

/// A stored value whose header could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CorruptRecord {
    /// The value is empty, or shorter than its header says.
    #[error("the stored session value is truncated ({0} bytes)")]
    Truncated(usize),
    /// The first byte is not a layout this version writes.
    #[error("the stored session value has an unknown layout tag {0:#04x}")]
    UnknownTag(u8),
    /// The JSON after the header is not a JSON object.
    #[error("the stored session data is not a JSON object")]
    Json(#[source] serde_json::Error),
}

/// A stored value split into its expiry and its JSON bytes, without parsing
/// the JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stored<'a> {
    /// Unix milliseconds, `None` for a record that never expires.
    pub(crate) expires_at_ms: Option<i64>,
    /// The data map as JSON.
    pub(crate) json: &'a [u8],
}

impl<'a> Stored<'a> {
    /// Reads the header of `bytes`.
    pub(crate) fn parse(bytes: &'a [u8]) -> Result<Self, CorruptRecord> {
        match bytes.split_first() {
            None => Err(CorruptRecord::Truncated(0)),
            Some((&NO_EXPIRY, json)) => Ok(Self { expires_at_ms: None, json }),
            Some((&WITH_EXPIRY, rest)) => match rest.split_first_chunk::<EXPIRY_LEN>() {
                Some((expiry, json)) => Ok(Self { expires_at_ms: Some(i64::from_be_bytes(*expiry)), json }),
                None => Err(CorruptRecord::Truncated(bytes.len())),
            },
            Some((&tag, _)) => Err(CorruptRecord::UnknownTag(tag)),
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
}

/// The stored bytes of a record whose data is already JSON.
pub(crate) fn encode_json(json: &[u8], expires_at_ms: Option<i64>) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(1 + EXPIRY_LEN + json.len());
    match expires_at_ms {
        None => bytes.push(NO_EXPIRY),
        Some(at) => {
            bytes.push(WITH_EXPIRY);
            bytes.extend_from_slice(&at.to_be_bytes());
        }
    }
    bytes.extend_from_slice(json);
    bytes
}

/// The stored bytes of a record.
pub(crate) fn encode(data: &SessionMap, expires_at_ms: Option<i64>) -> Result<Vec<u8>, StoreError> {
    // Serialising a map of JSON values cannot fail today; the error is kept
    // rather than assumed away.
    let json = serde_json::to_vec(data).map_err(StoreError::Encode)?;
    Ok(encode_json(&json, expires_at_ms))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn map(value: serde_json::Value) -> SessionMap {
        value.as_object().cloned().expect("object")
    }

    #[test]
    fn records_round_trip_with_and_without_expiry() {
        let data = map(json!({ "a": [1, "two"], "ключ": null }));
        for expiry in [None, Some(0), Some(1_700_000_000_123), Some(-5), Some(i64::MIN), Some(i64::MAX)] {
            let bytes = encode(&data, expiry).expect("encode");
            let stored = Stored::parse(&bytes).expect("parse");
            assert_eq!(stored.expires_at_ms, expiry);
            assert_eq!(stored.data().expect("data"), data);
        }
    }

    #[test]
    fn liveness_follows_the_expiry_inclusively() {
        let at = |ms| Stored { expires_at_ms: ms, json: b"{}" };
        assert!(at(None).is_live(i64::MAX));
        assert!(at(Some(11)).is_live(10));
        assert!(!at(Some(10)).is_live(10));
    }

    #[test]
    fn damaged_values_are_reported_not_guessed() {
        assert!(matches!(Stored::parse(b""), Err(CorruptRecord::Truncated(0))));
        assert!(matches!(Stored::parse(&[WITH_EXPIRY, 1, 2, 3]), Err(CorruptRecord::Truncated(4))));
        assert!(matches!(Stored::parse(b"{\"a\":1}"), Err(CorruptRecord::UnknownTag(b'{'))));
        let not_json = Stored::parse(&[NO_EXPIRY, 0xff, 0xfe]).expect("the header is fine");
        assert!(matches!(not_json.data(), Err(CorruptRecord::Json(_))));
        let not_an_object = Stored::parse(b"\x00[1,2]").expect("the header is fine");
        assert!(matches!(not_an_object.data(), Err(CorruptRecord::Json(_))));
    }
}
