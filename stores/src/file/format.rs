//! The session file format: one JSON object per file,
//! `{"expiresAt": <Unix ms or null>, "data": {…}}`.
//!
//! Readers accept any JSON object with those two fields, in any order and
//! with any whitespace (a file written by hand or by another tool reads
//! fine). The writer always puts `expiresAt` first, in compact form, so the
//! sweeper can learn a file's expiry from its first few bytes without
//! reading the data ([`peek_expiry`]); for a file laid out otherwise it
//! falls back to a streaming parse that skips the data without building it
//! ([`scan_expiry`]).

use std::fmt;
use std::io::{self, Read};

use serde::de::{self, Deserializer as _, IgnoredAny, MapAccess, Visitor};
use serde_json::Value;
use sessionkit::{SessionMap, StoreError};

/// What the writer puts before the expiry.
const HEAD: &[u8] = b"{\"expiresAt\":";
/// What the writer puts between the expiry and the data.
const DATA: &[u8] = b",\"data\":";
/// Enough bytes for [`HEAD`], the longest `i64` and [`DATA`].
pub(super) const PEEK_LEN: usize = 48;

/// A decoded session file.
#[derive(Debug, Clone)]
pub(super) struct StoredRecord {
    pub(super) data: SessionMap,
    /// Expiry in Unix milliseconds; `None` never expires.
    pub(super) expires_at: Option<i64>,
}

/// Serializes a record in the writer's layout (expiry first).
pub(super) fn encode(data: &SessionMap, expires_at_ms: Option<i64>) -> Result<Vec<u8>, StoreError> {
    let mut out = Vec::with_capacity(PEEK_LEN + 256);
    out.extend_from_slice(HEAD);
    match expires_at_ms {
        Some(ms) => out.extend_from_slice(ms.to_string().as_bytes()),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(DATA);
    serde_json::to_writer(&mut out, data).map_err(StoreError::Encode)?;
    out.push(b'}');
    Ok(out)
}

/// Parses a whole session file: a JSON object whose `data` is an object
/// and whose `expiresAt` is a whole number, `null` or absent. Anything else
/// (an array, a string for the expiry, a missing `data`) is damage.
pub(super) fn decode(bytes: &[u8]) -> Result<StoredRecord, serde_json::Error> {
    let mut fields: serde_json::Map<String, Value> = serde_json::from_slice(bytes)?;
    let data = match fields.remove("data") {
        Some(Value::Object(data)) => data,
        Some(_) => return Err(de::Error::custom("`data` is not an object")),
        None => return Err(de::Error::missing_field("data")),
    };
    let expires_at = match fields.remove("expiresAt") {
        None | Some(Value::Null) => None,
        Some(Value::Number(ms)) => {
            Some(ms.as_i64().ok_or_else(|| de::Error::custom("`expiresAt` is not a whole number of milliseconds"))?)
        }
        Some(_) => return Err(de::Error::custom("`expiresAt` is not a number")),
    };
    Ok(StoredRecord { data, expires_at })
}

/// The expiry from the first bytes of a file in the writer's layout:
/// `Some(expiry)` when `prefix` starts with it, `None` when the file is laid
/// out some other way (or is too short to tell) and needs [`scan_expiry`].
///
/// Only the header is looked at: a file cut short after it still yields its
/// expiry, which is all the sweeper needs to decide whether to remove it.
pub(super) fn peek_expiry(prefix: &[u8]) -> Option<Option<i64>> {
    let rest = prefix.strip_prefix(HEAD)?;
    let end = rest.iter().position(|&byte| byte == b',')?;
    if !rest[end..].starts_with(DATA) {
        return None;
    }
    match &rest[..end] {
        b"null" => Some(None),
        digits => {
            let (negative, magnitude) = match digits.strip_prefix(b"-") {
                Some(magnitude) => (true, magnitude),
                None => (false, digits),
            };
            // Only what the writer produces: no sign on positives, no
            // leading zeros, no exponent. Anything else goes to the full
            // parser, which knows JSON better than this shortcut.
            let canonical = !magnitude.is_empty()
                && magnitude.iter().all(u8::is_ascii_digit)
                && (magnitude == b"0" || magnitude[0] != b'0')
                && !(negative && magnitude == b"0");
            if !canonical {
                return None;
            }
            std::str::from_utf8(digits).ok()?.parse::<i64>().ok().map(Some)
        }
    }
}

/// The expiry of a session file of any layout, streaming through it
/// without keeping its data in memory. Checks the same shape as [`decode`].
pub(super) fn scan_expiry(reader: impl Read) -> Result<Option<i64>, serde_json::Error> {
    let mut deserializer = serde_json::Deserializer::from_reader(io::BufReader::new(reader));
    let expires_at = (&mut deserializer).deserialize_map(ExpiryVisitor)?;
    deserializer.end()?;
    Ok(expires_at)
}

/// Reads a session object's expiry and skips its data.
struct ExpiryVisitor;

impl<'de> Visitor<'de> for ExpiryVisitor {
    type Value = Option<i64>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a session object with `data` and `expiresAt`")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut fields: A) -> Result<Self::Value, A::Error> {
        let (mut expires_at, mut has_data) = (None, false);
        while let Some(key) = fields.next_key::<String>()? {
            match key.as_str() {
                "expiresAt" => expires_at = fields.next_value::<Option<i64>>()?,
                "data" => {
                    fields.next_value::<SkippedObject>()?;
                    has_data = true;
                }
                _ => {
                    fields.next_value::<IgnoredAny>()?;
                }
            }
        }
        if !has_data {
            return Err(de::Error::missing_field("data"));
        }
        Ok(expires_at)
    }
}

/// A JSON object, checked and thrown away.
struct SkippedObject;

impl<'de> de::Deserialize<'de> for SkippedObject {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(SkippedObject)
    }
}

impl<'de> Visitor<'de> for SkippedObject {
    type Value = SkippedObject;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut entries: A) -> Result<Self::Value, A::Error> {
        while entries.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(SkippedObject)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn map(value: serde_json::Value) -> SessionMap {
        value.as_object().cloned().expect("object")
    }

    #[test]
    fn encoded_records_decode_unchanged() {
        let data = map(json!({ "a": [1, "two", { "three": null }], "ü": "ß" }));
        for expires_at in [Some(1_700_000_000_123), Some(0), Some(-5), Some(i64::MAX), Some(i64::MIN), None] {
            let bytes = encode(&data, expires_at).expect("encode");
            let record = decode(&bytes).expect("decode");
            assert_eq!(record.data, data);
            assert_eq!(record.expires_at, expires_at);
            assert_eq!(peek_expiry(&bytes[..PEEK_LEN.min(bytes.len())]), Some(expires_at), "{expires_at:?}");
            assert_eq!(scan_expiry(&bytes[..]).expect("scan"), expires_at);
        }
    }

    #[test]
    fn other_layouts_read_fine_but_skip_the_shortcut() {
        let cases = [
            (r#"{ "data": { "a": 1 }, "expiresAt": 42 }"#, Some(42)),
            (r#"{"expiresAt": 42, "data": {}}"#, Some(42)),
            (r#"{"expiresAt":042,"data":{}}"#, None),
            (r#"{"expiresAt":+42,"data":{}}"#, None),
            (r#"{"expiresAt":4.2e1,"data":{}}"#, None),
            (r#"{"data":{}}"#, None),
        ];
        for (text, _) in &cases {
            assert_eq!(peek_expiry(text.as_bytes()), None, "{text}");
        }
        assert_eq!(decode(cases[0].0.as_bytes()).expect("decode").expires_at, Some(42));
        assert_eq!(scan_expiry(cases[0].0.as_bytes()).expect("scan"), Some(42));
        assert_eq!(scan_expiry(cases[1].0.as_bytes()).expect("scan"), Some(42));
        assert_eq!(decode(cases[5].0.as_bytes()).expect("a missing expiry means none").expires_at, None);
        // Leading zeros are not JSON.
        assert!(scan_expiry(cases[2].0.as_bytes()).is_err());
    }

    #[test]
    fn corrupt_files_are_errors_not_panics() {
        let cases: [&[u8]; 12] = [
            b"",
            br#"[{},1]"#,
            br#"{"expiresAt":1.5,"data":{}}"#,
            br#"{"data":{}} trailing"#,
            b"{",
            b"not json",
            b"[1,2]",
            br#"{"expiresAt":1,"data":[1]}"#,
            br#"{"expiresAt":"soon","data":{}}"#,
            br#"{"expiresAt":1}"#,
            br#"{"expiresAt":1,"data":{"a":1}"#,
            b"\xff\xfe\x00garbage",
        ];
        for bytes in cases {
            assert!(decode(bytes).is_err(), "{:?}", String::from_utf8_lossy(bytes));
            assert!(scan_expiry(bytes).is_err(), "{:?}", String::from_utf8_lossy(bytes));
        }
    }

    #[test]
    fn the_shortcut_needs_only_the_header() {
        let bytes = encode(&map(json!({ "big": "x".repeat(10_000) })), Some(7)).expect("encode");
        assert_eq!(peek_expiry(&bytes[..PEEK_LEN]), Some(Some(7)));
        // Cut inside the header: too short to tell.
        assert_eq!(peek_expiry(&bytes[..HEAD.len() + 1]), None);
        assert_eq!(peek_expiry(b"{\"expiresAt\":99999999999999999999,\"data\":{}}"), None, "out of range");
    }
}
