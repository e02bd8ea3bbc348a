//! The limits every stored session obeys: its serialized size and how deep
//! it nests.
//!
//! The layer checks them on what a request leaves in its session, and
//! stores check the size again on the patched result (see
//! [`Changes::limit_size`](crate::Changes::limit_size)), so that concurrent
//! requests cannot together grow a session past what each alone could.

use std::io;

use crate::{PatchError, SessionMap};

/// The deepest nesting of arrays and objects a session may hold, the map
/// itself counting as one. Stores decode with serde_json, whose parser
/// refuses documents nested past 128 levels: a session deeper than that could
/// be written but never read back, which would lose it silently.
pub const MAX_DEPTH: usize = 100;

/// Checks depth, then size: the session's data as the layer will store it.
pub(crate) fn check(data: &SessionMap, max_size: usize) -> Result<(), PatchError> {
    // Depth first: serializing is recursive, and must not meet a value deep
    // enough to exhaust the stack.
    if nests_deeper_than(data, MAX_DEPTH) {
        return Err(PatchError::TooDeep);
    }
    check_size(data, max_size)
}

/// Fails when `data` serializes to more than `limit` bytes of JSON.
pub(crate) fn check_size(data: &SessionMap, limit: usize) -> Result<(), PatchError> {
    let size = serialized_len(data);
    if size > limit { Err(PatchError::TooLarge { size, limit }) } else { Ok(()) }
}

/// Whether any value in `data` nests past `limit` levels (the map is level
/// one). Iterative, so that hostile depth cannot overflow the stack here.
pub(crate) fn nests_deeper_than(data: &SessionMap, limit: usize) -> bool {
    // Most sessions are flat: no need for the work list then.
    if limit >= 1 && !data.values().any(|value| value.is_array() || value.is_object()) {
        return false;
    }
    let mut pending: Vec<(&serde_json::Value, usize)> = data.values().map(|value| (value, 2)).collect();
    while let Some((value, depth)) = pending.pop() {
        let children: Box<dyn Iterator<Item = &serde_json::Value>> = match value {
            serde_json::Value::Array(items) => Box::new(items.iter()),
            serde_json::Value::Object(map) => Box::new(map.values()),
            _ => continue,
        };
        if depth > limit {
            return true;
        }
        pending.extend(children.map(|child| (child, depth + 1)));
    }
    false
}

/// The length of `data` (a session's map, or any part of one) as JSON,
/// without building the string.
pub fn serialized_len<T: serde::Serialize + ?Sized>(data: &T) -> usize {
    struct Counter(usize);
    impl io::Write for Counter {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter(0);
    match serde_json::to_writer(&mut counter, data) {
        Ok(()) => counter.0,
        // Maps of strings to values, and JSON values, always serialize; if
        // that ever changes, refusing to store is the safe answer.
        Err(_) => usize::MAX,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn nested(levels: usize) -> Value {
        (1..levels).fold(json!([]), |inner, _| Value::Array(vec![inner]))
    }

    #[test]
    fn depth_counts_the_map_as_one_level() {
        let mut data = SessionMap::new();
        data.insert("flat".into(), json!(1));
        assert!(!nests_deeper_than(&data, 1));
        data.insert("deep".into(), nested(MAX_DEPTH - 1));
        assert!(!nests_deeper_than(&data, MAX_DEPTH));
        data.insert("deeper".into(), nested(MAX_DEPTH));
        assert!(nests_deeper_than(&data, MAX_DEPTH));
        assert_eq!(check(&data, usize::MAX), Err(PatchError::TooDeep));
    }

    #[test]
    fn the_depth_check_survives_hostile_nesting() {
        let mut data = SessionMap::new();
        data.insert("hostile".into(), nested(100_000));
        assert!(nests_deeper_than(&data, MAX_DEPTH));
        // Dropping a deeply nested value recurses; keep the test about the check.
        std::mem::forget(data);
    }

    #[test]
    fn serialized_len_matches_serde_json() {
        let mut data = SessionMap::new();
        data.insert("k".into(), json!({ "unicode": "ключ 😀", "n": [1, 2.5, null] }));
        let len = serde_json::to_vec(&data).map(|v| v.len()).unwrap_or_default();
        assert_eq!(serialized_len(&data), len);
        assert_eq!(check(&data, len), Ok(()));
        assert_eq!(check(&data, len - 1), Err(PatchError::TooLarge { size: len, limit: len - 1 }));
    }
}
