//! How `MemoryStore` keeps a session's data: a compact text encoding that
//! decodes several times faster than JSON.
//!
//! A session's data is held as text inside one `Arc<str>` per record (see
//! [`super::record`]) rather than as a `serde_json::Map` (a small map costs
//! several times its JSON size in allocations, and a million sessions must
//! fit in a few hundred MiB). Every `get` turns it back into a map, so
//! decoding is the store's hottest path. JSON would have to be scanned for
//! escapes and validated as UTF-8 on every read; this encoding stores
//! strings raw, behind their byte length, so a read slices them out (slicing
//! a `str` checks one byte, not the whole string) and copies them. Being
//! text, the whole encoding is a `str` checked once, when it is made.
//!
//! Grammar (`len` and `count` are decimal numbers):
//!
//! ```text
//! data   = count ":" entry*              ; the top-level map
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
//! Maps are written in their iteration order, which is key order (unless
//! serde_json's `preserve_order` is on, see [`maps_are_sorted`]); numbers
//! have exactly one spelling. So two equal values have one encoding, except
//! floats (`0.0 == -0.0`), which [`Reader::equals`] compares by value.
//!
//! The encoder can also measure the data's length as JSON while it writes
//! (see [`super::json_len`]), for the size limit of patches; a [`Meter`]
//! type parameter turns that off at compile time where nobody needs it
//! (a `set`), so that it costs nothing there.
//!
//! Only this module writes the encoding, but decoding still checks every
//! length and tag: a bug must surface as an error, never as a panic.

use std::fmt;
use std::sync::OnceLock;

use serde_json::{Number, Value};
use sessionkit::{SessionMap, StoreError, reserved};

use super::json_len;

/// The deepest nesting stored, the map itself counting as one level: the
/// limit serde_json's parser has, so what JSON-based stores can read back
/// this one accepts, and decoding (which recurses) has a bounded depth.
pub(super) const MAX_DEPTH: usize = 128;

/// Whether an encoder measures, as JSON, what it writes.
pub(super) trait Meter {
    /// Measuring: the lengths returned are the JSON lengths; otherwise 0.
    const ON: bool;
}

/// Measures.
pub(super) struct Measured;

impl Meter for Measured {
    const ON: bool = true;
}

/// Does not measure: every length returned is 0.
pub(super) struct Unmeasured;

impl Meter for Unmeasured {
    const ON: bool = false;
}

/// Appends the encoding of `data` to `out`; returns the user `data` binds
/// its session to ([`reserved::user_of`]), noticed on the way.
pub(super) fn encode<'a>(out: &mut String, data: &'a SessionMap) -> Result<Option<&'a str>, StoreError> {
    push_number(out, data.len() as u64, ':');
    let mut user = None;
    for (key, value) in data {
        // Comparing lengths first rules out almost every key in one step.
        if key.len() == reserved::USER.len() && key == reserved::USER {
            user = value.as_str();
        }
        push_bytes(out, key);
        encode_value::<Unmeasured>(out, value, 1)?;
    }
    Ok(user)
}

/// Appends the encoding of `data` to `out`; returns the length of `data` as
/// JSON.
pub(super) fn encode_measured(out: &mut String, data: &SessionMap) -> Result<usize, StoreError> {
    encode_map::<Measured>(out, data, 1)
}

fn encode_map<M: Meter>(out: &mut String, map: &SessionMap, depth: usize) -> Result<usize, StoreError> {
    if depth > MAX_DEPTH {
        return Err(too_deep());
    }
    push_number(out, map.len() as u64, ':');
    let mut len = if M::ON { json_len::container(map.len()) } else { 0 };
    for (key, value) in map {
        push_bytes(out, key);
        let value = encode_value::<M>(out, value, depth)?;
        if M::ON {
            len += json_len::member(key, value);
        }
    }
    Ok(len)
}

/// Appends the encoding of `value`, found at `depth` (a top-level value is
/// at depth 1, an element of a top-level array at 2); returns its length as
/// JSON if `M` measures.
pub(super) fn encode_value<M: Meter>(out: &mut String, value: &Value, depth: usize) -> Result<usize, StoreError> {
    let measured = |len: usize| if M::ON { len } else { 0 };
    Ok(match value {
        Value::Null => {
            out.push('n');
            measured(json_len::NULL)
        }
        Value::Bool(true) => {
            out.push('t');
            measured(json_len::TRUE)
        }
        Value::Bool(false) => {
            out.push('f');
            measured(json_len::FALSE)
        }
        Value::Number(number) => encode_number::<M>(out, number),
        Value::String(text) => {
            out.push('s');
            push_bytes(out, text);
            if M::ON { json_len::string(text) } else { 0 }
        }
        Value::Array(items) => {
            if depth + 1 > MAX_DEPTH {
                return Err(too_deep());
            }
            out.push('a');
            push_number(out, items.len() as u64, ':');
            let mut len = measured(json_len::container(items.len()));
            for item in items {
                len += encode_value::<M>(out, item, depth + 1)?;
            }
            len
        }
        Value::Object(map) => {
            out.push('o');
            encode_map::<M>(out, map, depth + 1)?
        }
    })
}

fn encode_number<M: Meter>(out: &mut String, number: &Number) -> usize {
    if let Some(unsigned) = number.as_u64() {
        encode_integer(out, i128::from(unsigned))
    } else if let Some(signed) = number.as_i64() {
        encode_integer(out, i128::from(signed))
    } else {
        // Without serde_json's `arbitrary_precision`, what is neither is an
        // `f64`; its bits round-trip exactly.
        let float = number.as_f64().unwrap_or(f64::NAN);
        let bits = float.to_bits();
        out.push('d');
        for shift in (0..16).rev() {
            let nibble = ((bits >> (shift * 4)) & 0xf) as u8;
            out.push(char::from(if nibble < 10 { b'0' + nibble } else { b'a' + nibble - 10 }));
        }
        if M::ON { json_len::float(float) } else { 0 }
    }
}

/// Appends an integer in `u64` or `i64` range (callers check): `u` for the
/// non-negative ones, as serde_json keeps them, `i` and the magnitude for
/// the negative ones. Returns its length as JSON.
pub(super) fn encode_integer(out: &mut String, value: i128) -> usize {
    if value >= 0 {
        out.push('u');
        push_number(out, value as u64, ';')
    } else {
        out.push('i');
        // A magnitude past `u64` cannot come from an `i64`; saturate rather
        // than wrap if a caller ever broke that.
        push_number(out, u64::try_from(value.unsigned_abs()).unwrap_or(u64::MAX), ';') + 1
    }
}

/// `len ":" bytes`.
pub(super) fn push_bytes(out: &mut String, text: &str) {
    push_number(out, text.len() as u64, ':');
    out.push_str(text);
}

/// Decimal digits, then `end`; returns how many digits.
pub(super) fn push_number(out: &mut String, number: u64, end: char) -> usize {
    let digits = if number < 10 {
        out.push(char::from(b'0' + number as u8));
        1
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
        digits.len() - start
    };
    out.push(end);
    digits
}

/// `number` in decimal then `end`, written into `buffer`: for the places
/// that must not allocate a `String` for a few digits.
pub(super) fn number_text(number: u64, end: u8, buffer: &mut [u8; 21]) -> &str {
    let mut start = buffer.len() - 1;
    buffer[start] = end;
    let mut rest = number;
    loop {
        start -= 1;
        buffer[start] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    // Digits and an ASCII `end`: always UTF-8.
    std::str::from_utf8(&buffer[start..]).unwrap_or_default()
}

pub(super) fn too_deep() -> StoreError {
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

/// The length as JSON of the data `text` encodes, read without decoding
/// it.
pub(super) fn json_len_of(text: &str) -> Result<usize, Corrupt> {
    let mut reader = Reader::new(text);
    let count = reader.count()?;
    let mut len = json_len::container(count);
    for _ in 0..count {
        let key = reader.bytes()?;
        len += json_len::member(key, reader.json_len(1)?);
    }
    if reader.is_done() { Ok(len) } else { Err(reader.corrupt()) }
}

/// Decodes what [`encode`] made.
pub(super) fn decode(text: &str) -> Result<SessionMap, Corrupt> {
    let mut reader = Reader::new(text);
    let map = reader.map(1)?;
    if reader.at == text.len() { Ok(map) } else { Err(reader.corrupt()) }
}

/// Whether `SessionMap` iterates in key order (a `BTreeMap`), as it does
/// unless some crate turned on serde_json's `preserve_order`.
pub(super) fn maps_are_sorted() -> bool {
    static SORTED: OnceLock<bool> = OnceLock::new();
    *SORTED.get_or_init(|| {
        let mut map = SessionMap::new();
        map.insert("b".to_owned(), Value::Null);
        map.insert("a".to_owned(), Value::Null);
        map.keys().next().is_some_and(|first| first == "a")
    })
}

/// Reads an encoding front to back.
pub(super) struct Reader<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Reader<'a> {
    pub(super) fn new(text: &'a str) -> Self {
        Self { text, at: 0 }
    }

    /// Where the reader stands, in bytes from the start.
    pub(super) fn at(&self) -> usize {
        self.at
    }

    /// Whether everything has been read.
    pub(super) fn is_done(&self) -> bool {
        self.at == self.text.len()
    }

    /// The text from `start` to where the reader stands.
    pub(super) fn since(&self, start: usize) -> Result<&'a str, Corrupt> {
        self.text.get(start..self.at).ok_or_else(|| self.corrupt())
    }

    /// What is left to read.
    pub(super) fn rest(&self) -> &'a str {
        self.text.get(self.at..).unwrap_or_default()
    }

    pub(super) fn corrupt(&self) -> Corrupt {
        Corrupt { at: self.at }
    }

    pub(super) fn byte(&mut self) -> Result<u8, Corrupt> {
        let byte = *self.text.as_bytes().get(self.at).ok_or_else(|| self.corrupt())?;
        self.at += 1;
        Ok(byte)
    }

    /// Decimal digits up to `end`.
    pub(super) fn number(&mut self, end: u8) -> Result<u64, Corrupt> {
        // Most lengths and counts have one digit: read those in one step.
        let bytes = self.text.as_bytes();
        if let Some(&[digit @ b'0'..=b'9', next]) = bytes.get(self.at..self.at + 2)
            && next == end
        {
            self.at += 2;
            return Ok(u64::from(digit - b'0'));
        }
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
    pub(super) fn count(&mut self) -> Result<usize, Corrupt> {
        let count = self.number(b':')?;
        let left = (self.text.len() - self.at) as u64;
        if count > left { Err(self.corrupt()) } else { Ok(count as usize) }
    }

    /// `len ":" bytes`, as a slice of the text.
    pub(super) fn bytes(&mut self) -> Result<&'a str, Corrupt> {
        let len = usize::try_from(self.number(b':')?).map_err(|_| self.corrupt())?;
        let end = self.at.checked_add(len).ok_or_else(|| self.corrupt())?;
        let slice = self.text.get(self.at..end).ok_or_else(|| self.corrupt())?;
        self.at = end;
        Ok(slice)
    }

    /// A float's 16 hex digits.
    fn float(&mut self) -> Result<f64, Corrupt> {
        let hex = self.text.get(self.at..self.at + 16).ok_or_else(|| self.corrupt())?;
        let bits = u64::from_str_radix(hex, 16).map_err(|_| self.corrupt())?;
        self.at += 16;
        Ok(f64::from_bits(bits))
    }

    /// One `entry` of the top-level map: its key and its value's encoding,
    /// unread.
    pub(super) fn raw_entry(&mut self) -> Result<(&'a str, &'a str), Corrupt> {
        let key = self.bytes()?;
        let start = self.at;
        self.skip_value(1)?;
        Ok((key, self.since(start)?))
    }

    /// Moves past one value found at `depth` (counted as [`encode_value`]
    /// counts it), checking its shape but building nothing.
    pub(super) fn skip_value(&mut self, depth: usize) -> Result<(), Corrupt> {
        match self.byte()? {
            b'n' | b't' | b'f' => {}
            b'u' | b'i' => {
                self.number(b';')?;
            }
            b'd' => {
                self.float()?;
            }
            b's' => {
                self.bytes()?;
            }
            b'a' => {
                self.descend(depth)?;
                for _ in 0..self.count()? {
                    self.skip_value(depth + 1)?;
                }
            }
            b'o' => {
                self.descend(depth)?;
                for _ in 0..self.count()? {
                    self.bytes()?;
                    self.skip_value(depth + 1)?;
                }
            }
            _ => return Err(self.corrupt()),
        }
        Ok(())
    }

    /// The check before reading the elements of a container at `depth`:
    /// the limit [`encode_value`] and [`decode`] have.
    fn descend(&self, depth: usize) -> Result<(), Corrupt> {
        if depth + 1 > MAX_DEPTH { Err(self.corrupt()) } else { Ok(()) }
    }

    /// Moves past one value found at `depth`, returning its length as JSON.
    pub(super) fn json_len(&mut self, depth: usize) -> Result<usize, Corrupt> {
        Ok(match self.byte()? {
            b'n' => json_len::NULL,
            b't' => json_len::TRUE,
            b'f' => json_len::FALSE,
            tag @ (b'u' | b'i') => {
                let start = self.at;
                self.number(b';')?;
                // The digits as stored, and the sign.
                self.at - start - 1 + usize::from(tag == b'i')
            }
            b'd' => json_len::float(self.float()?),
            b's' => json_len::string(self.bytes()?),
            b'a' => {
                self.descend(depth)?;
                let count = self.count()?;
                let mut len = json_len::container(count);
                for _ in 0..count {
                    len += self.json_len(depth + 1)?;
                }
                len
            }
            b'o' => {
                self.descend(depth)?;
                let count = self.count()?;
                let mut len = json_len::container(count);
                for _ in 0..count {
                    let key = self.bytes()?;
                    len += json_len::member(key, self.json_len(depth + 1)?);
                }
                len
            }
            _ => return Err(self.corrupt()),
        })
    }

    /// Moves past one value found at `depth`, returning whether it equals
    /// `value` as serde_json compares values (floats by `==`, maps by key
    /// and value).
    pub(super) fn equals(&mut self, value: &Value, depth: usize) -> Result<bool, Corrupt> {
        let start = self.at;
        let equal = self.compare(value, depth)?;
        // `compare` stops at the first difference: start over and skip the
        // whole value, so that the reader stands after it either way.
        self.at = start;
        self.skip_value(depth)?;
        Ok(equal)
    }

    fn compare(&mut self, value: &Value, depth: usize) -> Result<bool, Corrupt> {
        Ok(match (self.byte()?, value) {
            (b'n', Value::Null) => true,
            (b't', Value::Bool(true)) | (b'f', Value::Bool(false)) => true,
            (b'u', Value::Number(number)) => {
                let stored = self.number(b';')?;
                number.as_u64() == Some(stored)
            }
            (b'i', Value::Number(number)) => match number.as_i64() {
                Some(n) if n < 0 => self.number(b';')? == n.unsigned_abs(),
                _ => false,
            },
            (b'd', Value::Number(number)) => number.is_f64() && number.as_f64() == Some(self.float()?),
            (b's', Value::String(text)) => self.bytes()? == text,
            (b'a', Value::Array(items)) => {
                self.descend(depth)?;
                if self.count()? != items.len() {
                    return Ok(false);
                }
                for item in items {
                    if !self.compare(item, depth + 1)? {
                        return Ok(false);
                    }
                }
                true
            }
            (b'o', Value::Object(map)) => {
                self.descend(depth)?;
                // Both in key order: the encoding is written in the map's
                // order, and this runs only when maps are sorted.
                if self.count()? != map.len() {
                    return Ok(false);
                }
                for (key, item) in map {
                    if self.bytes()? != key || !self.compare(item, depth + 1)? {
                        return Ok(false);
                    }
                }
                true
            }
            (b'n' | b't' | b'f' | b'u' | b'i' | b'd' | b's' | b'a' | b'o', _) => false,
            _ => return Err(self.corrupt()),
        })
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
            b'd' => Value::Number(Number::from_f64(self.float()?).ok_or_else(|| self.corrupt())?),
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

    /// The encoding of `data` and its length as JSON.
    fn encoded(data: &SessionMap) -> (String, usize) {
        let mut out = String::new();
        let len = encode_measured(&mut out, data).expect("encode");
        let mut unmeasured = String::new();
        let user = encode(&mut unmeasured, data).expect("encode");
        assert_eq!(unmeasured, out, "measuring changes nothing in the encoding");
        assert_eq!(user, reserved::user_of(data));
        (out, len)
    }

    fn rich() -> SessionMap {
        map(json!({
            "null": null, "yes": true, "no": false,
            "zero": 0, "big": u64::MAX, "negative": -7, "min": i64::MIN,
            "float": 1.5, "whole float": 2.0, "tiny": 5e-324, "huge": -1.7976931348623157e308, "minus zero": -0.0,
            "text": "plain", "empty": "", "unicode": "ключ 😀 \u{0} \"quoted\" \\ :; \n\t\u{1f}",
            "list": [1, "two", [3.0, null], {}], "nested": { "a": { "b": [[[{}]]] } },
            "": "an empty key", "ключ 😀": { "12:": "keys that look like lengths", "\"": "\\" },
        }))
    }

    #[test]
    fn every_kind_of_value_round_trips() {
        let data = rich();
        let (encoded, _) = encoded(&data);
        let decoded = decode(&encoded).expect("decode");
        assert_eq!(decoded, data);
        // Same values, same kinds: 2.0 stays a float, 0 an integer.
        assert_eq!(serde_json::to_string(&decoded).expect("json"), serde_json::to_string(&data).expect("json"));
        assert_eq!(decode(&self::encoded(&SessionMap::new()).0).expect("decode"), SessionMap::new());
    }

    #[test]
    fn encoding_measures_the_json_length_and_reading_measures_it_again() {
        for data in [rich(), SessionMap::new(), map(json!({ "a": [] })), map(json!({ "a": [1], "b": {} }))] {
            let (text, len) = encoded(&data);
            assert_eq!(len, sessionkit::limits::serialized_len(&data), "{data:?}");
            assert_eq!(json_len_of(&text).expect("measure"), len, "{data:?}");
        }
    }

    #[test]
    fn equality_in_place_is_serde_jsons() {
        let values = [
            json!(null),
            json!(true),
            json!(false),
            json!(0),
            json!(1),
            json!(-1),
            json!(1.0),
            json!(0.0),
            json!(-0.0),
            json!(u64::MAX),
            json!(i64::MIN),
            json!(""),
            json!("a"),
            json!([]),
            json!([1]),
            json!([1, 2]),
            json!({}),
            json!({ "a": 1 }),
            json!({ "a": 1, "b": [null] }),
            json!({ "b": [null], "a": 1.0 }),
        ];
        for stored in &values {
            let mut text = String::new();
            encode_value::<Unmeasured>(&mut text, stored, 1).expect("encode");
            for value in &values {
                let mut reader = Reader::new(&text);
                assert_eq!(reader.equals(value, 1).expect("compare"), stored == value, "{stored} against {value}");
                assert!(reader.is_done(), "the reader moves past the whole value");
            }
        }
    }

    #[test]
    fn the_encoding_is_about_as_compact_as_json() {
        let data = map(json!({ "user": "ada", "visits": 42, "theme": "dark", "cart": [1, 2, 3] }));
        let json = serde_json::to_string(&data).expect("json").len();
        let encoded = encoded(&data).0.len();
        assert!(encoded <= json + json / 10, "{encoded} bytes, against {json} bytes of JSON");
    }

    fn nested(levels: usize) -> Value {
        (1..levels).fold(json!([1]), |inner, _| Value::Array(vec![inner]))
    }

    #[test]
    fn depth_is_limited_like_serde_json_reads_and_reading_agrees() {
        let mut data = SessionMap::new();
        data.insert("deep".into(), nested(MAX_DEPTH - 1));
        let (text, len) = encoded(&data);
        assert_eq!(decode(&text).expect("decode at the limit"), data);
        // Every reader accepts what the encoder wrote at the limit.
        let mut reader = Reader::new(&text);
        reader.count().expect("count");
        let (_, value) = reader.raw_entry().expect("skip at the limit");
        assert_eq!(json_len::member("deep", Reader::new(value).json_len(1).expect("measure at the limit")), len - 2);
        assert!(Reader::new(value).equals(&nested(MAX_DEPTH - 1), 1).expect("compare at the limit"));
        data.insert("deeper".into(), nested(MAX_DEPTH));
        assert!(matches!(encode(&mut String::new(), &data), Err(StoreError::Encode(_))));
        let mut objects = SessionMap::new();
        objects.insert("o".into(), (1..MAX_DEPTH).fold(json!({}), |inner, _| json!({ "o": inner })));
        assert!(matches!(encode(&mut String::new(), &objects), Err(StoreError::Encode(_))));
    }

    #[test]
    fn malformed_encodings_are_errors_never_panics() {
        let good = encoded(&map(json!({ "k": [1, -2, 2.5, "v", { "x": null }] }))).0;
        // Every truncation, and every single-byte change, of a valid record.
        for end in 0..good.len() {
            assert!(decode(&good[..end]).is_err(), "truncated at {end}");
        }
        for at in 0..good.len() {
            for replacement in ["", "9", ":", ";", "z", "é", "99999999999999999999999"] {
                let mut bad = good.to_string();
                bad.replace_range(at..at + 1, replacement);
                let _ = decode(&bad);
                let _ = json_len_of(&bad);
                let _ = Reader::new(&bad).equals(&json!([1]), 1);
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

    #[test]
    fn numbers_in_text_match_push_number() {
        for number in [0, 9, 10, 12345, u64::MAX] {
            let mut pushed = String::new();
            push_number(&mut pushed, number, ':');
            assert_eq!(number_text(number, b':', &mut [0; 21]), pushed);
        }
    }
}
