//! How `MemoryStore` keeps a session's data: a compact text encoding that
//! decodes several times faster than JSON.
//!
//! A session's data is held as one `Arc<str>` per record rather than as a
//! `serde_json::Map` (a small map costs several times its JSON size in
//! allocations, and a million sessions must fit in a few hundred MiB). Every
//! `get` turns it back into a map, so decoding is the store's hottest path.
//! JSON would have to be scanned for escapes and validated as UTF-8 on every
//! read; this encoding stores strings raw, behind their byte length, so a
//! read slices them out (slicing a `str` checks one byte, not the whole
//! string) and copies them. Being text, the whole encoding is a `str`
//! checked once, when it is made.
//!
//! Grammar (`len` and `count` are decimal numbers):
//!
//! ```text
//! record = count ":" entry*              ; the top-level map
//! entry  = len ":" key-bytes value
//! value  = "n" | "t" | "f"               ; null, true, false
//!        | "u" digits ";"                ; an unsigned integer
//!        | "i" digits ";"                ; a negative integer, by its magnitude
//!        | "d" 16 hex digits             ; a float, by its IEEE 754 bits
//!        | "s" len ":" bytes             ; a string
//!        | "a" count ":" value*          ; an array
//!        | "o" count ":" entry*          ; an object
//! ```
//!
//! Only this module writes the encoding, but decoding still checks every
//! length and tag: a bug must surface as an error, never as a panic.

use std::cell::RefCell;
use std::cmp::Ordering;
use std::fmt;
use std::sync::{Arc, OnceLock};

use serde_json::{Number, Value};
use sessionkit::{Change, Changes, SessionMap, StoreError};

/// The deepest nesting stored, the map itself counting as one level: the
/// limit serde_json's parser has, so what JSON-based stores can read back
/// this one accepts, and decoding (which recurses) has a bounded depth.
const MAX_DEPTH: usize = 128;

/// Encoding buffers above this size are not kept for the next write: one
/// huge session must not pin its size in every thread.
const KEEP_BUFFER: usize = 64 * 1024;

thread_local! {
    /// Reused between writes: the encoding is built here, then copied once
    /// into the record's `Arc<str>`.
    static BUFFER: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Encodes a session's data.
pub(super) fn encode(data: &SessionMap) -> Result<Arc<str>, StoreError> {
    with_buffer(|out| encode_map(out, data, 1))
}

/// Runs `write` on the thread's cleared encoding buffer and returns what it
/// wrote, shared.
fn with_buffer(write: impl FnOnce(&mut String) -> Result<(), StoreError>) -> Result<Arc<str>, StoreError> {
    BUFFER.with(|buffer| {
        // A re-entrant call cannot happen (encoding calls nothing outside
        // this module), but a fresh buffer is the safe answer if it did.
        let mut fresh = String::new();
        let mut borrowed = buffer.try_borrow_mut();
        let out = match borrowed.as_deref_mut() {
            Ok(out) => out,
            Err(_) => &mut fresh,
        };
        out.clear();
        let encoded = write(out).map(|()| Arc::from(out.as_str()));
        if out.capacity() > KEEP_BUFFER {
            *out = String::new();
        }
        encoded
    })
}

fn encode_map(out: &mut String, map: &SessionMap, depth: usize) -> Result<(), StoreError> {
    if depth > MAX_DEPTH {
        return Err(too_deep());
    }
    push_number(out, map.len() as u64, ':');
    for (key, value) in map {
        push_bytes(out, key);
        encode_value(out, value, depth)?;
    }
    Ok(())
}

fn encode_value(out: &mut String, value: &Value, depth: usize) -> Result<(), StoreError> {
    match value {
        Value::Null => out.push('n'),
        Value::Bool(true) => out.push('t'),
        Value::Bool(false) => out.push('f'),
        Value::Number(number) => encode_number(out, number),
        Value::String(text) => {
            out.push('s');
            push_bytes(out, text);
        }
        Value::Array(items) => {
            if depth + 1 > MAX_DEPTH {
                return Err(too_deep());
            }
            out.push('a');
            push_number(out, items.len() as u64, ':');
            for item in items {
                encode_value(out, item, depth + 1)?;
            }
        }
        Value::Object(map) => {
            out.push('o');
            encode_map(out, map, depth + 1)?;
        }
    }
    Ok(())
}

fn encode_number(out: &mut String, number: &Number) {
    if let Some(unsigned) = number.as_u64() {
        out.push('u');
        push_number(out, unsigned, ';');
    } else if let Some(signed) = number.as_i64() {
        // Non-negative values are all `u64`s, so this one is negative.
        out.push('i');
        push_number(out, signed.unsigned_abs(), ';');
    } else {
        // Without serde_json's `arbitrary_precision`, what is neither is an
        // `f64`; its bits round-trip exactly.
        let bits = number.as_f64().unwrap_or(f64::NAN).to_bits();
        out.push('d');
        for shift in (0..16).rev() {
            let nibble = ((bits >> (shift * 4)) & 0xf) as u8;
            out.push(char::from(if nibble < 10 { b'0' + nibble } else { b'a' + nibble - 10 }));
        }
    }
}

/// `len ":" bytes`.
fn push_bytes(out: &mut String, text: &str) {
    push_number(out, text.len() as u64, ':');
    out.push_str(text);
}

/// Decimal digits, then `end`.
fn push_number(out: &mut String, number: u64, end: char) {
    if number < 10 {
        out.push(char::from(b'0' + number as u8));
    } else {
        let mut digits = [0u8; 20];
        let mut start = digits.len();
        let mut rest = number;
        while rest > 0 {
            start -= 1;
            digits[start] = b'0' + (rest % 10) as u8;
            rest /= 10;
        }
        // ASCII digits are always UTF-8.
        out.push_str(std::str::from_utf8(&digits[start..]).unwrap_or_default());
    }
    out.push(end);
}

fn too_deep() -> StoreError {
    StoreError::Encode(<serde_json::Error as serde::ser::Error>::custom(format!(
        "session data nests deeper than {MAX_DEPTH} levels"
    )))
}

/// A stored record that does not decode: a bug in this store, reported with
/// where decoding stopped.
#[derive(Debug)]
pub(super) struct Corrupt {
    at: usize,
}

impl fmt::Display for Corrupt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed record encoding at byte {}", self.at)
    }
}

impl std::error::Error for Corrupt {}

/// Decodes what [`encode`] made.
pub(super) fn decode(text: &str) -> Result<SessionMap, Corrupt> {
    let mut reader = Reader { text, at: 0 };
    let map = reader.map(1)?;
    if reader.at == text.len() { Ok(map) } else { Err(reader.corrupt()) }
}

/// What [`Changes::applied_to`] on the decoded record would give, encoded:
/// `encode(&changes.applied_to(decode(old)?))`, without decoding the values
/// the patch leaves alone. Untouched entries are copied as they are stored,
/// merged by key with the patch's (both are in key order), so an update
/// costs a copy of the record plus the encoding of what changed.
pub(super) fn patch(old: &str, changes: &Changes) -> Result<Arc<str>, StoreError> {
    let corrupt = |err: Corrupt| StoreError::backend("memory store: reading a stored record", err);
    let needs_values =
        changes.size_limit().is_some() || changes.iter().any(|change| matches!(change, Change::Modify(..)));
    if !maps_are_sorted() || needs_values {
        // serde_json's `preserve_order` is on somewhere in this build: a map
        // keeps insertion order, which only a real decode reproduces. And
        // operations and the size limit need the stored values themselves.
        let data = changes.applied_to(decode(old).map_err(corrupt)?).map_err(StoreError::Refused)?;
        return encode(&data);
    }
    let mut reader = Reader { text: old, at: 0 };
    let stored = reader.count().map_err(corrupt)?;
    let mut stored = if changes.is_cleared() { 0 } else { stored };
    with_buffer(|out| {
        let mut count: u64 = 0;
        let mut patch = changes.iter().peekable();
        let mut previous: Option<&str> = None;
        loop {
            let current = if stored > 0 {
                let (key, value) = reader.raw_entry().map_err(corrupt)?;
                // Keys stored out of order would break the merge.
                if previous.is_some_and(|previous| previous >= key) {
                    return Err(corrupt(reader.corrupt()));
                }
                previous = Some(key);
                stored -= 1;
                Some((key, value))
            } else {
                None
            };
            // Patch entries that sort before the stored one (or all that are
            // left, past the last one).
            while let Some(change) = patch.next_if(|change| current.is_none_or(|(key, _)| change.key() < key)) {
                if let Change::Set(key, value) = change {
                    push_bytes(out, key);
                    encode_value(out, value, 1)?;
                    count += 1;
                }
            }
            let Some((key, value)) = current else {
                break;
            };
            match patch.next_if(|change| change.key().cmp(key) == Ordering::Equal) {
                Some(Change::Set(key, value)) => {
                    push_bytes(out, key);
                    encode_value(out, value, 1)?;
                    count += 1;
                }
                Some(Change::Remove(_)) => {}
                // Ruled out above: operations take the decoding path.
                Some(Change::Modify(..)) => return Err(corrupt(reader.corrupt())),
                None => {
                    push_bytes(out, key);
                    out.push_str(value);
                    count += 1;
                }
            }
        }
        if !changes.is_cleared() && reader.at != old.len() {
            return Err(corrupt(reader.corrupt()));
        }
        let mut head = String::new();
        push_number(&mut head, count, ':');
        out.insert_str(0, &head);
        Ok(())
    })
}

/// Whether `SessionMap` iterates in key order (a `BTreeMap`), as it does
/// unless some crate turned on serde_json's `preserve_order`.
fn maps_are_sorted() -> bool {
    static SORTED: OnceLock<bool> = OnceLock::new();
    *SORTED.get_or_init(|| {
        let mut map = SessionMap::new();
        map.insert("b".to_owned(), Value::Null);
        map.insert("a".to_owned(), Value::Null);
        map.keys().next().is_some_and(|first| first == "a")
    })
}

struct Reader<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Reader<'a> {
    fn corrupt(&self) -> Corrupt {
        Corrupt { at: self.at }
    }

    fn byte(&mut self) -> Result<u8, Corrupt> {
        let byte = *self.text.as_bytes().get(self.at).ok_or_else(|| self.corrupt())?;
        self.at += 1;
        Ok(byte)
    }

    /// Decimal digits up to `end`.
    fn number(&mut self, end: u8) -> Result<u64, Corrupt> {
        let mut value: u64 = 0;
        let mut digits = 0;
        loop {
            match self.byte()? {
                digit @ b'0'..=b'9' => {
                    value = value
                        .checked_mul(10)
                        .and_then(|value| value.checked_add(u64::from(digit - b'0')))
                        .ok_or_else(|| self.corrupt())?;
                    digits += 1;
                }
                byte if byte == end && digits > 0 => return Ok(value),
                _ => return Err(self.corrupt()),
            }
        }
    }

    /// A count of items that each take at least one byte: larger than what
    /// is left means corruption (and must not reach an allocation).
    fn count(&mut self) -> Result<usize, Corrupt> {
        let count = self.number(b':')?;
        let left = (self.text.len() - self.at) as u64;
        if count > left { Err(self.corrupt()) } else { Ok(count as usize) }
    }

    /// `len ":" bytes`, as a slice of the record.
    fn bytes(&mut self) -> Result<&'a str, Corrupt> {
        let len = usize::try_from(self.number(b':')?).map_err(|_| self.corrupt())?;
        let end = self.at.checked_add(len).ok_or_else(|| self.corrupt())?;
        let slice = self.text.get(self.at..end).ok_or_else(|| self.corrupt())?;
        self.at = end;
        Ok(slice)
    }

    /// One `entry` of a map: its key and its value's encoding, unread.
    fn raw_entry(&mut self) -> Result<(&'a str, &'a str), Corrupt> {
        let key = self.bytes()?;
        let start = self.at;
        self.skip_value(2)?;
        Ok((key, self.text.get(start..self.at).ok_or_else(|| self.corrupt())?))
    }

    /// Moves past one value, checking its shape but building nothing.
    fn skip_value(&mut self, depth: usize) -> Result<(), Corrupt> {
        if depth > MAX_DEPTH {
            return Err(self.corrupt());
        }
        match self.byte()? {
            b'n' | b't' | b'f' => {}
            b'u' | b'i' => {
                self.number(b';')?;
            }
            b'd' => {
                self.text.get(self.at..self.at + 16).ok_or_else(|| self.corrupt())?;
                self.at += 16;
            }
            b's' => {
                self.bytes()?;
            }
            b'a' => {
                for _ in 0..self.count()? {
                    self.skip_value(depth + 1)?;
                }
            }
            b'o' => {
                for _ in 0..self.count()? {
                    self.bytes()?;
                    self.skip_value(depth + 1)?;
                }
            }
            _ => return Err(self.corrupt()),
        }
        Ok(())
    }

    fn map(&mut self, depth: usize) -> Result<SessionMap, Corrupt> {
        if depth > MAX_DEPTH {
            return Err(self.corrupt());
        }
        let count = self.count()?;
        let mut map = SessionMap::new();
        for _ in 0..count {
            let key = self.bytes()?.to_owned();
            let value = self.value(depth)?;
            map.insert(key, value);
        }
        Ok(map)
    }

    fn value(&mut self, depth: usize) -> Result<Value, Corrupt> {
        Ok(match self.byte()? {
            b'n' => Value::Null,
            b't' => Value::Bool(true),
            b'f' => Value::Bool(false),
            b'u' => Value::Number(self.number(b';')?.into()),
            b'i' => {
                let magnitude = self.number(b';')?;
                let signed = i64::try_from(-i128::from(magnitude)).map_err(|_| self.corrupt())?;
                Value::Number(signed.into())
            }
            b'd' => {
                let hex = self.text.get(self.at..self.at + 16).ok_or_else(|| self.corrupt())?;
                let bits = u64::from_str_radix(hex, 16).map_err(|_| self.corrupt())?;
                self.at += 16;
                Value::Number(Number::from_f64(f64::from_bits(bits)).ok_or_else(|| self.corrupt())?)
            }
            b's' => Value::String(self.bytes()?.to_owned()),
            b'a' => {
                if depth + 1 > MAX_DEPTH {
                    return Err(self.corrupt());
                }
                let count = self.count()?;
                let mut items = Vec::with_capacity(count);
                for _ in 0..count {
                    items.push(self.value(depth + 1)?);
                }
                Value::Array(items)
            }
            b'o' => Value::Object(self.map(depth + 1)?),
            _ => return Err(self.corrupt()),
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn map(value: Value) -> SessionMap {
        value.as_object().cloned().expect("object")
    }

    #[test]
    fn every_kind_of_value_round_trips() {
        let data = map(json!({
            "null": null, "yes": true, "no": false,
            "zero": 0, "big": u64::MAX, "negative": -7, "min": i64::MIN,
            "float": 1.5, "whole float": 2.0, "tiny": 5e-324, "huge": -1.7976931348623157e308,
            "text": "plain", "empty": "", "unicode": "ключ 😀 \u{0} \"quoted\" \\ :;",
            "list": [1, "two", [3.0, null], {}], "nested": { "a": { "b": [[[{}]]] } },
            "": "an empty key", "ключ 😀": { "12:": "keys that look like lengths" },
        }));
        let encoded = encode(&data).expect("encode");
        let decoded = decode(&encoded).expect("decode");
        assert_eq!(decoded, data);
        // Same values, same kinds: 2.0 stays a float, 0 an integer.
        assert_eq!(serde_json::to_string(&decoded).expect("json"), serde_json::to_string(&data).expect("json"));
        assert_eq!(decode(&encode(&SessionMap::new()).expect("encode")).expect("decode"), SessionMap::new());
    }

    #[test]
    fn the_encoding_is_about_as_compact_as_json() {
        let data = map(json!({ "user": "ada", "visits": 42, "theme": "dark", "cart": [1, 2, 3] }));
        let json = serde_json::to_string(&data).expect("json").len();
        let encoded = encode(&data).expect("encode").len();
        assert!(encoded <= json + json / 10, "{encoded} bytes, against {json} bytes of JSON");
    }

    fn nested(levels: usize) -> Value {
        (1..levels).fold(json!([]), |inner, _| Value::Array(vec![inner]))
    }

    #[test]
    fn depth_is_limited_like_serde_json_reads() {
        let mut data = SessionMap::new();
        data.insert("deep".into(), nested(MAX_DEPTH - 1));
        assert_eq!(decode(&encode(&data).expect("encode at the limit")).expect("decode"), data);
        data.insert("deeper".into(), nested(MAX_DEPTH));
        assert!(matches!(encode(&data), Err(StoreError::Encode(_))));
        let mut objects = SessionMap::new();
        objects.insert("o".into(), (1..MAX_DEPTH).fold(json!({}), |inner, _| json!({ "o": inner })));
        assert!(matches!(encode(&objects), Err(StoreError::Encode(_))));
    }

    /// `patch` must give exactly what decoding, applying and encoding gives.
    #[test]
    fn patching_equals_decoding_applying_and_encoding() {
        let keys = ["", "a", "b", "bb", "c", "ключ", "z", "😀", "visits"];
        let values = [json!(null), json!(1), json!(-2), json!(2.5), json!("text"), json!([1, { "x": [] }]), json!({})];
        let mut seed: u64 = 1;
        let mut next = |bound: usize| {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((seed >> 33) as usize) % bound
        };
        for _ in 0..2_000 {
            let mut data = SessionMap::new();
            for _ in 0..next(6) {
                data.insert(keys[next(keys.len())].to_owned(), values[next(values.len())].clone());
            }
            let mut changes = Changes::new();
            if next(8) == 0 {
                changes.clear();
            }
            for _ in 0..next(4) {
                let key = keys[next(keys.len())];
                if next(3) == 0 {
                    changes.remove(key);
                } else {
                    changes.set(key, values[next(values.len())].clone());
                }
            }
            let old = encode(&data).expect("encode");
            let expected = encode(&changes.applied_to(data.clone()).expect("applies")).expect("encode");
            assert_eq!(patch(&old, &changes).expect("patch"), expected, "{data:?} with {changes:?}");
        }
    }

    #[test]
    fn patching_checks_depth_and_refuses_corrupt_records() {
        let old = encode(&map(json!({ "a": 1 }))).expect("encode");
        let mut deep = Changes::new();
        deep.set("deep", nested(MAX_DEPTH));
        assert!(matches!(patch(&old, &deep), Err(StoreError::Encode(_))));
        let mut fine = Changes::new();
        fine.set("b", json!(2));
        for bad in ["", "2:1:an", "2:1:bn1:an", "1:1:an trailing", "1:1:a"] {
            assert!(patch(bad, &fine).is_err(), "{bad:?} patched");
        }
    }

    #[test]
    fn malformed_encodings_are_errors_never_panics() {
        let good = encode(&map(json!({ "k": [1, -2, 2.5, "v", { "x": null }] }))).expect("encode");
        // Every truncation, and every single-byte change, of a valid record.
        for end in 0..good.len() {
            assert!(decode(&good[..end]).is_err(), "truncated at {end}");
        }
        for at in 0..good.len() {
            for replacement in ["", "9", ":", ";", "z", "é", "99999999999999999999999"] {
                let mut bad = good.to_string();
                bad.replace_range(at..at + 1, replacement);
                let _ = decode(&bad);
            }
        }
        for bad in ["", "1:", "1:1:ks", "1:1:kx", "2:1:kn", "1:5:kn", "0:n", "1:1:ki9223372036854775809;", "1:1:kdzz"] {
            assert!(decode(bad).is_err(), "{bad:?} decoded");
        }
        // A record claiming more items than it has bytes allocates nothing.
        assert!(decode("1:1:ka18446744073709551615:").is_err());
        let deep = format!("1:1:k{}0:", "a1:".repeat(MAX_DEPTH + 5));
        assert!(decode(&deep).is_err());
    }
}
