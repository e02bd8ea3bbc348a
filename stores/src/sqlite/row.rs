//! Turning a stored row back into a [`SessionRecord`], and what happens when
//! that fails.
//!
//! Only this store writes the table, but anything with the database file can
//! write it too (a migration, a hand edit, a bug in another program). A row
//! that does not decode reads as absent and is logged, without its id: the
//! request then gets a fresh session instead of a 500, and the row stays in
//! place for someone to look at until it expires or is deleted.

use std::fmt;

use rusqlite::types::{Value, ValueRef};
use sessionkit::{SessionMap, SessionRecord, expiry};

/// A row's `data` and `expires_at` columns, owned, as read on the writer
/// thread and decoded by the caller.
#[derive(Debug)]
pub(in crate::sqlite) struct RawRow {
    pub(in crate::sqlite) data: Value,
    pub(in crate::sqlite) expires_at: Value,
}

impl RawRow {
    /// Reads columns 0 (`data`) and 1 (`expires_at`) of `row`.
    pub(in crate::sqlite) fn from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self { data: row.get(0)?, expires_at: row.get(1)? })
    }

    /// The record, or `None` (logged) when the row is corrupt.
    pub(in crate::sqlite) fn decode(&self, table: &str) -> Option<SessionRecord> {
        decode_or_log(ValueRef::from(&self.data), ValueRef::from(&self.expires_at), table)
    }
}

/// Why a stored row could not be decoded.
#[derive(Debug)]
pub(in crate::sqlite) enum Corrupt {
    /// `data` is neither text nor a blob.
    DataType(&'static str),
    /// `data` is not a JSON object.
    Json(serde_json::Error),
    /// `expires_at` is neither `NULL` nor an integer.
    ExpiryType(&'static str),
}

impl fmt::Display for Corrupt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::DataType(found) => write!(f, "the data column holds {found}, not JSON text"),
            Self::Json(err) => write!(f, "the data column is not a JSON object: {err}"),
            Self::ExpiryType(found) => write!(f, "the expires_at column holds {found}, not an integer"),
        }
    }
}

fn type_name(value: ValueRef<'_>) -> &'static str {
    match value {
        ValueRef::Null => "NULL",
        ValueRef::Integer(_) => "an integer",
        ValueRef::Real(_) => "a real number",
        ValueRef::Text(_) => "text",
        ValueRef::Blob(_) => "a blob",
    }
}

/// Decodes the two columns, or says why they are corrupt.
pub(in crate::sqlite) fn decode(data: ValueRef<'_>, expires_at: ValueRef<'_>) -> Result<SessionRecord, Corrupt> {
    let expires_at = match expires_at {
        ValueRef::Null => None,
        ValueRef::Integer(ms) => Some(expiry::from_unix_ms(ms)),
        other => return Err(Corrupt::ExpiryType(type_name(other))),
    };
    // serde_json checks UTF-8 itself, so text and blobs decode alike.
    let bytes = match data {
        ValueRef::Text(bytes) | ValueRef::Blob(bytes) => bytes,
        other => return Err(Corrupt::DataType(type_name(other))),
    };
    let data: SessionMap = serde_json::from_slice(bytes).map_err(Corrupt::Json)?;
    Ok(SessionRecord::new(data, expires_at))
}

/// [`decode`], logging a corrupt row (never its id) and reading it as absent.
pub(in crate::sqlite) fn decode_or_log(
    data: ValueRef<'_>,
    expires_at: ValueRef<'_>,
    table: &str,
) -> Option<SessionRecord> {
    match decode(data, expires_at) {
        Ok(record) => Some(record),
        Err(corrupt) => {
            tracing::warn!(table, reason = %corrupt, "SQLite session store: a stored session is corrupt; reading it as absent");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_json_object_with_an_expiry_decodes() {
        let record =
            decode(ValueRef::Text(br#"{"a":[1,"x"]}"#), ValueRef::Integer(1_700_000_000_123)).expect("decodes");
        assert_eq!(record.data.get("a"), Some(&serde_json::json!([1, "x"])));
        assert_eq!(record.expires_at_unix_ms(), Some(1_700_000_000_123));
        let forever = decode(ValueRef::Blob(b"{}"), ValueRef::Null).expect("decodes");
        assert_eq!(forever.expires_at, None);
    }

    #[test]
    fn corrupt_columns_say_what_is_wrong() {
        let cases: [(ValueRef<'_>, ValueRef<'_>, &str); 6] = [
            (ValueRef::Text(b"{not json"), ValueRef::Null, "not a JSON object"),
            (ValueRef::Text(b"[1, 2]"), ValueRef::Null, "not a JSON object"),
            (ValueRef::Blob(&[0xff, 0xfe, 0x00]), ValueRef::Null, "not a JSON object"),
            (ValueRef::Integer(7), ValueRef::Null, "holds an integer"),
            (ValueRef::Null, ValueRef::Null, "holds NULL"),
            (ValueRef::Text(b"{}"), ValueRef::Text(b"tomorrow"), "expires_at column holds text"),
        ];
        for (data, expires_at, why) in cases {
            let corrupt = decode(data, expires_at).expect_err("corrupt");
            assert!(corrupt.to_string().contains(why), "{corrupt}");
        }
        assert!(decode_or_log(ValueRef::Real(1.5), ValueRef::Null, "t").is_none());
    }
}
