//! Stored rows to and from records: the key, the data's encoding, and what
//! happens when stored data does not decode.
//!
//! Only this store writes the table, but anyone with access to the database
//! can write it too (a migration, a hand edit, another program). Data that
//! does not decode reads as absent and is logged, without its key: the
//! request then gets a fresh session instead of a 500, and the row stays for
//! someone to look at until it expires or is deleted. The column types are
//! checked when the store is built, so only the data's content can be wrong.

use sessionkit::{SessionMap, SessionRecord, StoreError, StoreKey, expiry, reserved};

/// The `id` column's value for a session: the key's 43-character text.
/// Every statement gets its key from here, so a change of key type (a
/// hashed store key) is a change of this function alone.
pub(super) fn key(id: &StoreKey) -> &str {
    id.as_str()
}

/// The `data` column's value: the map as JSON, in UTF-8 bytes.
pub(super) fn encode(data: &SessionMap) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(data).map_err(StoreError::Encode)
}

/// The `user_id` column's value for `data`: its user, if any
/// ([`reserved::user_of`]). Every write fills the column from the data it
/// writes, in the same statement, so the index never disagrees with the
/// data. A user name holding U+0000, which PostgreSQL text cannot hold, is
/// refused rather than left out of the index (which would hide the session
/// from its user's listing and from revocation).
pub(super) fn user_column(data: &SessionMap) -> Result<Option<&str>, StoreError> {
    match reserved::user_of(data) {
        Some(user) if user.contains('\0') => Err(StoreError::Encode(serde_json::Error::io(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "the session's user name holds U+0000, which a PostgreSQL text column cannot store",
        )))),
        user => Ok(user),
    }
}

/// The `data` column back as a map, or `None` (logged) when it is not a
/// JSON object.
pub(super) fn decode_data(bytes: &[u8], table: &str) -> Option<SessionMap> {
    match serde_json::from_slice(bytes) {
        Ok(data) => Some(data),
        Err(err) => {
            tracing::warn!(
                table,
                error = &err as &dyn std::error::Error,
                "PostgreSQL session store: a stored session is not a JSON object; reading it as absent"
            );
            None
        }
    }
}

/// A row's `data` and `expires_at` as a record, or `None` (logged) when the
/// data does not decode.
pub(super) fn decode(bytes: &[u8], expires_at: Option<i64>, table: &str) -> Option<SessionRecord> {
    decode_data(bytes, table).map(|data| SessionRecord::new(data, expires_at.map(expiry::from_unix_ms)))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn encoded_data_decodes_to_the_same_record() {
        let data = match json!({ "a": [1, "x", null], "nul\u{0}": "\u{0}" }) {
            serde_json::Value::Object(map) => map,
            _ => unreachable!("an object literal"),
        };
        let bytes = encode(&data).expect("encodes");
        let record = decode(&bytes, Some(1_700_000_000_123), "t").expect("decodes");
        assert_eq!(record.data, data);
        assert_eq!(record.expires_at_unix_ms(), Some(1_700_000_000_123));
        assert_eq!(decode(b"{}", None, "t").expect("decodes").expires_at, None);
    }

    #[test]
    fn the_user_column_follows_the_reserved_key_and_refuses_nul() {
        let with = |user: serde_json::Value| match json!({ "a": 1, (reserved::USER): user }) {
            serde_json::Value::Object(map) => map,
            _ => unreachable!("an object literal"),
        };
        assert_eq!(user_column(&with(json!("ada"))).expect("fine"), Some("ada"));
        assert_eq!(user_column(&with(json!(42))).expect("fine"), None);
        assert_eq!(user_column(&SessionMap::new()).expect("fine"), None);
        assert!(matches!(user_column(&with(json!("a\u{0}b"))), Err(StoreError::Encode(_))));
    }

    #[test]
    fn data_that_is_not_a_json_object_reads_as_absent() {
        for bytes in [&b"{not json"[..], b"[1, 2]", b"\"text\"", b"", &[0xff, 0xfe]] {
            assert_eq!(decode(bytes, None, "t"), None, "{bytes:?}");
        }
    }
}
