//! The operations of a patch ([`Op::Increment`], [`Op::Push`],
//! [`Op::RemoveFirst`]) performed on a value in its encoded form.
//!
//! Each gives what [`Changes::apply`](sessionkit::Changes::apply) gives on
//! the decoded value, errors included, without decoding it: an increment
//! rewrites a few digits, a push copies the stored elements as they are
//! (skipping over those `keep_last` drops) and encodes the new one, a
//! removal compares elements in place and copies the others. Each can also
//! report how the value's length as JSON changed, for the size limit.

use serde_json::Value;
use sessionkit::{Op, PatchError};

use super::codec::{self, Corrupt, Measured, Reader, Unmeasured};
use super::json_len;

/// Why an operation (or a patch) stopped.
pub(super) enum Abort {
    /// A [`PatchError`]: the patch is refused.
    Refused(PatchError),
    /// The stored record does not decode.
    Corrupt(Corrupt),
    /// A value nests too deep to store, or an operation is not one this
    /// module knows: the patch must take the decoding path, which reports
    /// exactly what applying it reports.
    Decode,
}

impl From<Corrupt> for Abort {
    fn from(err: Corrupt) -> Self {
        Abort::Corrupt(err)
    }
}

/// Applies `op` to the value under `key` (`current`, its encoding as a
/// [`Reader`] checked it, or one of these operations made it; `None` for an
/// absent key) and appends the encoding of the result to `out`. With
/// `measure`, returns the result's length as JSON minus the current one's
/// (an absent value counting as 0); otherwise 0.
///
/// The caller handles the one operation that leaves an absent key absent:
/// a removal from a missing array ([`leaves_absent`]).
pub(super) fn apply(
    key: &str,
    current: Option<&str>,
    op: &Op,
    out: &mut String,
    measure: bool,
) -> Result<isize, Abort> {
    match op {
        // Measuring an integer is counting its digits: always done.
        Op::Increment(by) => increment(key, current, *by, out),
        Op::Push { value, keep_last } => push(key, current, value, *keep_last, out, measure),
        Op::RemoveFirst(value) => match current {
            Some(current) => remove_first(key, current, value, out, measure),
            None => Err(Abort::Decode),
        },
        _ => Err(Abort::Decode),
    }
}

/// Whether `op` on an absent key leaves it absent (writing nothing).
pub(super) fn leaves_absent(op: &Op) -> bool {
    matches!(op, Op::RemoveFirst(_))
}

fn increment(key: &str, current: Option<&str>, by: i64, out: &mut String) -> Result<isize, Abort> {
    let (stored, stored_len) = match current {
        None => (0, 0),
        Some(raw) => {
            let mut reader = Reader::new(raw);
            let tag = reader.byte()?;
            let magnitude = match tag {
                b'u' | b'i' => reader.number(b';')?,
                other => {
                    let found = kind(other).ok_or_else(|| reader.corrupt())?;
                    return Err(Abort::Refused(PatchError::NotAnInteger { key: key.to_owned(), found }));
                }
            };
            let value = if tag == b'u' { i128::from(magnitude) } else { -i128::from(magnitude) };
            if value < i128::from(i64::MIN) || !reader.is_done() {
                return Err(reader.corrupt().into());
            }
            // Digits as stored (the value is `tag digits ";"`), and the sign.
            (value, raw.len() - 2 + usize::from(tag == b'i'))
        }
    };
    let sum = stored + i128::from(by);
    // The range `Changes::apply` keeps: an `i64`, or failing that a `u64`.
    if sum < i128::from(i64::MIN) || sum > i128::from(u64::MAX) {
        return Err(Abort::Refused(PatchError::Overflow { key: key.to_owned() }));
    }
    let len = codec::encode_integer(out, sum);
    Ok(len as isize - stored_len as isize)
}

fn push(
    key: &str,
    current: Option<&str>,
    value: &Value,
    keep_last: Option<usize>,
    out: &mut String,
    measure: bool,
) -> Result<isize, Abort> {
    let (mut stored, count) = match current {
        None => (None, 0),
        Some(raw) => {
            let (reader, count) = array(key, raw)?;
            (Some(reader), count)
        }
    };
    let total = count + 1;
    let keep = keep_last.map_or(total, |keep| keep.min(total));
    // Dropped from the front: stored elements first, then (with
    // `keep_last` 0) the pushed one.
    let dropped = total - keep;
    out.push('a');
    codec::push_number(out, keep as u64, ':');
    let mut delta = json_len::container(keep) as isize;
    if let Some(reader) = stored.as_mut() {
        delta -= json_len::container(count) as isize;
        for _ in 0..dropped.min(count) {
            if measure {
                delta -= reader.json_len(2)? as isize;
            } else {
                reader.skip_value(2)?;
            }
        }
        // The kept elements, as stored.
        out.push_str(reader.rest());
    }
    if dropped <= count {
        let encoded = if measure {
            codec::encode_value::<Measured>(out, value, 2)
        } else {
            codec::encode_value::<Unmeasured>(out, value, 2)
        };
        delta += encoded.map_err(|_| Abort::Decode)? as isize;
    }
    Ok(if measure { delta } else { 0 })
}

fn remove_first(key: &str, raw: &str, value: &Value, out: &mut String, measure: bool) -> Result<isize, Abort> {
    let (mut reader, count) = array(key, raw)?;
    let elements = reader.at();
    for _ in 0..count {
        let start = reader.at();
        if reader.equals(value, 2)? {
            let end = reader.at();
            let removed = if measure { Reader::new(reader.since(start)?).json_len(2)? } else { 0 };
            out.push('a');
            codec::push_number(out, (count - 1) as u64, ':');
            out.push_str(raw.get(elements..start).ok_or_else(|| reader.corrupt())?);
            out.push_str(raw.get(end..).ok_or_else(|| reader.corrupt())?);
            let containers = json_len::container(count - 1) as isize - json_len::container(count) as isize;
            return Ok(if measure { containers - removed as isize } else { 0 });
        }
    }
    out.push_str(raw);
    Ok(0)
}

/// The reader past an array's head, and its element count; a refusal
/// naming what the value is when it is not an array.
fn array<'a>(key: &str, raw: &'a str) -> Result<(Reader<'a>, usize), Abort> {
    let mut reader = Reader::new(raw);
    match reader.byte()? {
        b'a' => {
            let count = reader.count()?;
            Ok((reader, count))
        }
        other => {
            let found = kind(other).ok_or_else(|| reader.corrupt())?;
            Err(Abort::Refused(PatchError::NotAnArray { key: key.to_owned(), found }))
        }
    }
}

/// What a value is, by its tag, in the words `Changes::apply` uses.
fn kind(tag: u8) -> Option<&'static str> {
    Some(match tag {
        b'n' => "null",
        b't' | b'f' => "a boolean",
        b'u' | b'i' => "an integer",
        b'd' => "a float",
        b's' => "a string",
        b'a' => "an array",
        b'o' => "an object",
        _ => return None,
    })
}
