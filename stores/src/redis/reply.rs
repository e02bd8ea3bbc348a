//! Reading the replies: `get`'s record (a transaction of two plain
//! commands), and the tagged arrays (`{ 'ok', ... }`, `'missing'`) of the
//! writing scripts, over RESP2 and RESP3 alike.

use ::redis::Value;
use sessionkit::{SessionMap, SessionRecord, StoreError, expiry};

/// The hash field that marks a session hash and holds its layout version.
/// `0xFF` cannot start (or appear in) UTF-8 text, so no session key equals
/// it, nor any other internal field (all start with `0xFF`).
pub(super) const MARKER_FIELD: &[u8] = b"\xffsessionkit";
const _: () = assert!(MARKER_FIELD[0] == 0xFF, "internal fields must not be valid UTF-8");
/// The layout this code writes and reads.
pub(super) const LAYOUT_VERSION: &[u8] = b"2";
/// The marker of a rename's old key, and of a rename target's tombstone:
/// neither is a session.
const NOT_SESSIONS: [&[u8]; 2] = [b"moved", b"gone"];

/// Why a stored hash, or a script's reply, could not be read.
#[derive(Debug, thiserror::Error)]
pub(super) enum Corrupt {
    #[error("the reply has an unexpected shape")]
    Shape,
    #[error("the hash has no sessionkit marker field")]
    NoMarker,
    #[error("the hash was written in an unknown layout version")]
    UnknownLayout,
    #[error("a field name is not UTF-8")]
    FieldName,
    #[error("a field value is not JSON")]
    FieldValue(#[source] serde_json::Error),
}

impl Corrupt {
    pub(super) fn into_store_error(self, context: &'static str) -> StoreError {
        StoreError::backend(context, self)
    }
}

/// Reads `get`'s transaction reply, `[PEXPIRETIME, HGETALL]`, by the
/// caller's clock `now_ms`: `None` for nothing live under the key (absent,
/// expired by that clock, or a value of another type, which `HGETALL`
/// refuses). The fields are a flat array over RESP2 and a map over RESP3.
pub(super) fn decode(reply: Value, now_ms: i64) -> Result<Option<SessionRecord>, Corrupt> {
    let Value::Array(items) = reply else {
        return Err(Corrupt::Shape);
    };
    let [expiry, fields] = <[Value; 2]>::try_from(items).map_err(|_| Corrupt::Shape)?;
    let expires_at_ms = match expiry {
        Value::Int(-2) => return Ok(None),
        Value::Int(at) if at >= 0 && at <= now_ms => return Ok(None),
        Value::Int(at) => at,
        _ => return Err(Corrupt::Shape),
    };
    let pairs: Vec<(Value, Value)> = match fields {
        Value::Array(flat) => {
            let mut flat = flat.into_iter();
            std::iter::from_fn(|| Some((flat.next()?, flat.next()?))).collect()
        }
        Value::Map(pairs) => pairs,
        // WRONGTYPE: not a hash, so not a session.
        Value::ServerError(_) => return Ok(None),
        _ => return Err(Corrupt::Shape),
    };
    let mut data = SessionMap::new();
    let mut layout = None;
    for (name, value) in pairs {
        let (Value::BulkString(name), Value::BulkString(value)) = (name, value) else {
            return Err(Corrupt::Shape);
        };
        if name.first() == Some(&0xFF) {
            if name == MARKER_FIELD {
                layout = Some(value);
            }
            continue;
        }
        let name = String::from_utf8(name).map_err(|_| Corrupt::FieldName)?;
        let value = serde_json::from_slice(&value).map_err(Corrupt::FieldValue)?;
        data.insert(name, value);
    }
    match layout {
        None if data.is_empty() => Ok(None),
        None => Err(Corrupt::NoMarker),
        Some(version) if NOT_SESSIONS.contains(&version.as_slice()) => Ok(None),
        Some(version) if version != LAYOUT_VERSION => Err(Corrupt::UnknownLayout),
        // PEXPIRETIME answers -1 for a key without expiry.
        Some(_) => {
            Ok(Some(SessionRecord::new(data, (expires_at_ms >= 0).then(|| expiry::from_unix_ms(expires_at_ms)))))
        }
    }
}

/// A writing script's reply: its tag and what follows it.
pub(super) struct Tagged {
    pub(super) tag: Vec<u8>,
    pub(super) rest: Vec<Value>,
}

impl Tagged {
    pub(super) fn parse(reply: Value) -> Result<Self, Corrupt> {
        match reply {
            Value::Array(items) => {
                let mut items = items.into_iter();
                let tag = items.next().as_ref().and_then(bytes).ok_or(Corrupt::Shape)?.to_vec();
                Ok(Self { tag, rest: items.collect() })
            }
            other => Ok(Self { tag: bytes(&other).ok_or(Corrupt::Shape)?.to_vec(), rest: Vec::new() }),
        }
    }

    /// The `i`th value after the tag, as bytes.
    pub(super) fn bytes(&self, i: usize) -> Result<&[u8], Corrupt> {
        self.rest.get(i).and_then(bytes).ok_or(Corrupt::Shape)
    }

    /// The `i`th value after the tag, as bytes; `None` when empty.
    pub(super) fn optional(&self, i: usize) -> Result<Option<&[u8]>, Corrupt> {
        self.bytes(i).map(|bytes| (!bytes.is_empty()).then_some(bytes))
    }

    /// The `i`th value after the tag, as text.
    pub(super) fn text(&self, i: usize) -> Result<&str, Corrupt> {
        std::str::from_utf8(self.bytes(i)?).map_err(|_| Corrupt::Shape)
    }

    /// The values from the `i`th on, as bytes.
    pub(super) fn tail(self, i: usize) -> Result<Vec<Vec<u8>>, Corrupt> {
        self.rest
            .into_iter()
            .skip(i)
            .map(|value| match value {
                Value::BulkString(bytes) => Ok(bytes),
                _ => Err(Corrupt::Shape),
            })
            .collect()
    }
}

/// A string-ish reply's bytes.
pub(super) fn bytes(value: &Value) -> Option<&[u8]> {
    match value {
        Value::BulkString(bytes) => Some(bytes),
        Value::SimpleString(text) => Some(text.as_bytes()),
        Value::Okay => Some(b"OK"),
        _ => None,
    }
}

/// The user named by a user field's JSON text (`"ada"`).
pub(super) fn user(json: &[u8]) -> Result<String, Corrupt> {
    serde_json::from_slice(json).map_err(Corrupt::FieldValue)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn bulk(bytes: &[u8]) -> Value {
        Value::BulkString(bytes.to_vec())
    }

    fn reply(expires_at_ms: i64, fields: &[(&[u8], &[u8])]) -> Value {
        let fields = fields.iter().flat_map(|(name, value)| [bulk(name), bulk(value)]).collect();
        Value::Array(vec![Value::Int(expires_at_ms), Value::Array(fields)])
    }

    const NOW: i64 = 1_700_000_000_000;

    #[test]
    fn a_well_formed_reply_decodes_without_its_internal_fields() {
        let fields: &[(&[u8], &[u8])] =
            &[(MARKER_FIELD, b"2"), (b"\xffsize", b"20 2"), (b"user", b"\"ana\""), (b"n", b"[1,2]")];
        let resp3 = Value::Array(vec![
            Value::Int(NOW + 123),
            Value::Map(fields.iter().map(|(name, value)| (bulk(name), bulk(value))).collect()),
        ]);
        for reply in [reply(NOW + 123, fields), resp3] {
            let record = decode(reply, NOW).expect("decodes").expect("present");
            assert_eq!(serde_json::Value::Object(record.data), json!({ "user": "ana", "n": [1, 2] }));
            assert_eq!(record.expires_at, Some(expiry::from_unix_ms(NOW + 123)));
        }
    }

    #[test]
    fn no_expiry_absent_expired_markers_and_tombstones_decode() {
        let record = decode(reply(-1, &[(MARKER_FIELD, b"2")]), NOW).expect("decodes").expect("present");
        assert_eq!(record, SessionRecord::new(SessionMap::new(), None));
        assert_eq!(decode(reply(-2, &[]), NOW).expect("decodes"), None, "absent");
        assert_eq!(decode(reply(NOW, &[(MARKER_FIELD, b"2")]), NOW).expect("decodes"), None, "expired by our clock");
        assert_eq!(decode(reply(-1, &[(MARKER_FIELD, b"moved"), (b"\xffto", b"x")]), NOW).expect("decodes"), None);
        assert_eq!(decode(reply(-1, &[(MARKER_FIELD, b"gone")]), NOW).expect("decodes"), None);
        assert_eq!(decode(reply(-1, &[]), NOW).expect("an empty hash is no session"), None);
        let wrong_type = ::redis::parse_redis_value(b"-WRONGTYPE Operation against a key holding the wrong kind\r\n")
            .expect("a RESP error");
        assert!(matches!(wrong_type, Value::ServerError(_)), "{wrong_type:?}");
        let reply = Value::Array(vec![Value::Int(-1), wrong_type]);
        assert_eq!(decode(reply, NOW).expect("a string under the key is no session"), None);
    }

    #[test]
    fn foreign_or_damaged_hashes_are_corrupt() {
        assert!(matches!(decode(reply(-1, &[(b"user", b"1")]), NOW), Err(Corrupt::NoMarker)));
        assert!(matches!(decode(reply(-1, &[(MARKER_FIELD, b"1")]), NOW), Err(Corrupt::UnknownLayout)));
        assert!(matches!(decode(reply(-1, &[(MARKER_FIELD, b"2"), (b"\xfe", b"1")]), NOW), Err(Corrupt::FieldName)));
        assert!(matches!(decode(reply(-1, &[(MARKER_FIELD, b"2"), (b"a", b"{")]), NOW), Err(Corrupt::FieldValue(_))));
        assert!(matches!(decode(Value::Int(3), NOW), Err(Corrupt::Shape)));
        assert!(matches!(decode(Value::Array(vec![Value::Int(1)]), NOW), Err(Corrupt::Shape)));
    }

    #[test]
    fn tagged_replies_parse_over_both_protocols() {
        let tagged = Tagged::parse(bulk(b"missing")).expect("parses");
        assert_eq!(tagged.tag, b"missing");
        let tagged =
            Tagged::parse(Value::Array(vec![bulk(b"ok"), bulk(b""), Value::SimpleString("x".into())])).expect("parses");
        assert_eq!(tagged.tag, b"ok");
        assert_eq!(tagged.optional(0).expect("present"), None);
        assert_eq!(tagged.text(1).expect("present"), "x");
        assert!(tagged.bytes(2).is_err());
        assert!(Tagged::parse(Value::Int(1)).is_err());
    }
}
