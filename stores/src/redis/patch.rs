//! How a [`Changes`] travels to the patching scripts, and how their
//! refusals come back as [`PatchError`]s.
//!
//! Values go as compact JSON text (serde_json's), which the scripts store
//! verbatim or splice into the stored text; they never decode them. So
//! `remove_first` compares JSON *text*: an element is equal to the value
//! when its text, with whitespace between tokens dropped, is the value's
//! compact serialization. For everything sessionkit writes that is the
//! same as `serde_json::Value` equality, because serde_json writes one
//! canonical text per value (object keys sorted, numbers in their shortest
//! form, strings escaped minimally). It differs only for text written by
//! hand (`1.0` is not `1`, key order matters), or when an application
//! turns on serde_json's `preserve_order` feature, which keeps object keys
//! in insertion order: then `{"a":1,"b":2}` and `{"b":2,"a":1}` are
//! different elements to `remove_first`.

use sessionkit::{Change, Changes, Op, PatchError, SessionMap, StoreError, reserved};

use super::reply::{Corrupt, Tagged};

/// A value as the scripts store it.
pub(super) fn json(value: &serde_json::Value) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(StoreError::Encode)
}

/// The changes as script arguments (see `read_changes` in `shared.lua`).
pub(super) fn encode(changes: &Changes) -> Result<Vec<Vec<u8>>, StoreError> {
    let mut args = Vec::with_capacity(changes.len() * 3);
    for change in changes {
        match change {
            Change::Set(name, value) => {
                args.extend([b"S".to_vec(), name.as_bytes().to_vec(), json(value)?]);
            }
            Change::Remove(name) => args.extend([b"R".to_vec(), name.as_bytes().to_vec()]),
            Change::Modify(name, ops) => {
                args.extend([b"M".to_vec(), name.as_bytes().to_vec(), ops.len().to_string().into_bytes()]);
                for op in ops {
                    match op {
                        Op::Increment(by) => args.extend([b"I".to_vec(), by.to_string().into_bytes()]),
                        Op::Push { value, keep_last } => args.extend([
                            b"P".to_vec(),
                            json(value)?,
                            keep_last.map(|keep| keep.to_string().into_bytes()).unwrap_or_default(),
                        ]),
                        Op::RemoveFirst(value) => args.extend([b"F".to_vec(), json(value)?]),
                        _ => return Err(StoreError::unsupported("an operation this RedisStore does not know")),
                    }
                }
            }
        }
    }
    Ok(args)
}

/// The user the patch binds the session to, when it sets one outright.
pub(super) fn user_set(changes: &Changes) -> Option<&str> {
    match changes.get(reserved::USER) {
        Some(Change::Set(_, serde_json::Value::String(user))) => Some(user),
        _ => None,
    }
}

/// One field's share of the session's serialized size: its name as a JSON
/// string, a colon, the value's text and a comma (`shared.lua` counts the
/// same way).
pub(super) fn part(name: &str, value_len: usize) -> usize {
    // A &str always serializes; its length is all that is needed.
    serde_json::to_string(name).map_or(usize::MAX / 4, |quoted| quoted.len()) + value_len + 2
}

/// The SIZE field of a whole record, and its fields as script arguments.
pub(super) fn record(data: &SessionMap) -> Result<(String, Vec<Vec<u8>>), StoreError> {
    let mut fields = Vec::with_capacity(data.len() * 2);
    let mut sum = 0usize;
    for (name, value) in data {
        let value = json(value)?;
        sum += part(name, value.len());
        fields.push(name.as_bytes().to_vec());
        fields.push(value);
    }
    Ok((format!("{sum} {}", data.len()), fields))
}

/// The refusal in a script's `{ 'refused', kind, key, a, b }` reply.
pub(super) fn refused(reply: &Tagged) -> Result<PatchError, Corrupt> {
    Ok(refusal(reply.bytes(0)?, reply.bytes(1)?, reply.bytes(2)?, reply.bytes(3)?))
}

/// The refusal a script reported: `kind`, the key concerned, two details.
fn refusal(kind: &[u8], key: &[u8], a: &[u8], b: &[u8]) -> PatchError {
    let key = String::from_utf8_lossy(key).into_owned();
    let number = |bytes: &[u8]| std::str::from_utf8(bytes).ok().and_then(|text| text.parse().ok()).unwrap_or(0);
    match kind {
        b"lease_lost" => PatchError::LeaseLost,
        b"not_an_integer" => PatchError::NotAnInteger { key, found: found(a) },
        b"not_an_array" => PatchError::NotAnArray { key, found: found(a) },
        b"overflow" => PatchError::Overflow { key },
        _ => PatchError::TooLarge { size: number(a), limit: number(b) },
    }
}

/// The words `Changes::apply` uses for what a key holds.
fn found(kind: &[u8]) -> &'static str {
    match kind {
        b"null" => "null",
        b"a boolean" => "a boolean",
        b"a string" => "a string",
        b"an array" => "an array",
        b"an object" => "an object",
        b"an integer" => "an integer",
        _ => "a float",
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_size_field_counts_serialized_json_exactly() {
        let data = match json!({ "a": 1, "quote\"d": "x", "tab\t": [1, 2], "ctl\u{1}": null, "ü": {} }) {
            serde_json::Value::Object(map) => map,
            _ => unreachable!(),
        };
        let (size, _) = record(&data).expect("encodes");
        let (sum, count) = size.split_once(' ').expect("two numbers");
        let (sum, count): (usize, usize) = (sum.parse().expect("sum"), count.parse().expect("count"));
        assert_eq!(count, 5);
        assert_eq!(sum + 1, sessionkit::limits::serialized_len(&data));
        assert_eq!(record(&SessionMap::new()).expect("encodes").0, "0 0");
    }

    #[test]
    fn changes_encode_in_key_order_with_their_operations() {
        let mut changes = Changes::new();
        changes.set("b", json!({ "x": [1] }));
        changes.remove("a");
        changes.increment("n", -3).expect("increment");
        changes.push("n2", json!("v"), Some(2)).expect("push");
        changes.push("n2", json!(1.5), None).expect("push");
        changes.remove_first("n3", json!({ "b": 1, "a": 2 })).expect("remove_first");
        let args: Vec<String> =
            encode(&changes).expect("encodes").into_iter().map(|a| String::from_utf8(a).expect("utf8")).collect();
        assert_eq!(
            args,
            [
                "R",
                "a",
                "S",
                "b",
                r#"{"x":[1]}"#,
                "M",
                "n",
                "1",
                "I",
                "-3",
                "M",
                "n2",
                "2",
                "P",
                "\"v\"",
                "2",
                "P",
                "1.5",
                "",
                "M",
                "n3",
                "1",
                "F",
                r#"{"a":2,"b":1}"#,
            ]
        );
    }

    #[test]
    fn refusals_map_to_patch_errors() {
        assert_eq!(refusal(b"lease_lost", b"", b"", b""), PatchError::LeaseLost);
        assert_eq!(
            refusal(b"not_an_integer", b"n", b"a string", b""),
            PatchError::NotAnInteger { key: "n".into(), found: "a string" }
        );
        assert_eq!(refusal(b"overflow", b"n", b"", b""), PatchError::Overflow { key: "n".into() });
        assert_eq!(refusal(b"too_large", b"", b"5000", b"4096"), PatchError::TooLarge { size: 5000, limit: 4096 });
    }
}
