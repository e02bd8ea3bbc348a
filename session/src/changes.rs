//! `Changes`: what one request did to a session's data, key by key.
//!
//! Stores apply a `Changes` to the data they hold instead of overwriting the
//! whole record. That is what lets two concurrent requests on one session (a
//! cart add and a theme change) both keep their writes: each only sends the
//! keys it touched.
//!
//! Two requests that change the *same* key would still lose one write with
//! plain sets, so a patch also carries operations the store performs inside
//! its atomic step, against the value it holds at that moment:
//!
//! | operation | does | a missing key |
//! | --- | --- | --- |
//! | [`increment`](Changes::increment) | adds to an integer | counts from 0 |
//! | [`push`](Changes::push) | appends to an array, optionally keeping only the last N elements | starts an empty array |
//! | [`remove_first`](Changes::remove_first) | removes the first element equal to a value from an array | stays missing |
//!
//! Concurrent increments of one key all count; concurrent pushes all land
//! (in the order the store applied them), and `keep_last` holds whatever
//! the interleaving; a `remove_first` removes one element, so two requests
//! removing one item each remove two. A `set` replaces the value wholesale,
//! so it still races with any other write to that key.
//!
//! Within one request, what a key gets is the sequence of what was done to
//! it, folded where the result is already known:
//!
//! | the request did | the store applies |
//! | --- | --- |
//! | operations only | the operations, in order, to the stored value |
//! | `set` (or `remove`), then operations | the set, of the value the operations gave (the stored value no longer matters) |
//! | operations, then `set` (or `remove`) | the set (the operations are void) |
//! | `clear`, then anything | a clear, then what followed, on the empty map |
//!
//! Operations fail with a [`PatchError`] when the value is of the wrong
//! type (an increment of a string), and a store that finds such a value
//! refuses the whole patch: nothing of it is written.

use std::collections::BTreeMap;
use std::collections::btree_map;

use serde_json::Value;

use crate::lease::LeaseToken;
use crate::{SessionMap, limits};

/// A key-level patch: whether it begins by clearing every key, then what
/// happens to each key it touched.
///
/// ```
/// use serde_json::json;
/// use sessionkit::{Changes, SessionMap};
///
/// let mut data: SessionMap = json!({ "theme": "dark", "cart": [1], "visits": 4 }).as_object().unwrap().clone();
/// let mut changes = Changes::new();
/// changes.push("cart", json!(2), None)?;
/// changes.increment("visits", 1)?;
/// changes.remove("theme");
/// changes.apply(&mut data)?;
/// assert_eq!(serde_json::Value::Object(data), json!({ "cart": [1, 2], "visits": 5 }));
/// # Ok::<(), sessionkit::PatchError>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Changes {
    cleared: bool,
    // A map, so that each key appears once, in key order.
    entries: BTreeMap<String, Entry>,
    size_limit: Option<usize>,
    lease: Option<LeaseToken>,
}

/// What a patch does to one key.
#[derive(Debug, Clone, PartialEq)]
enum Entry {
    Set(Value),
    Remove,
    /// Operations on whatever value the store holds.
    Modify(Vec<Op>),
}

/// An operation a store performs on the value it holds, inside its atomic
/// step; see [`Changes`](crate::Changes).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Op {
    /// Add this to an integer (a missing key counts from 0).
    Increment(i64),
    /// Append `value` to an array (a missing key starts an empty one), then
    /// keep only the last `keep_last` elements, if set.
    Push {
        /// The element appended.
        value: Value,
        /// How many elements to keep, counting from the end.
        keep_last: Option<usize>,
    },
    /// Remove the first element equal to this one from an array, if any.
    RemoveFirst(Value),
}

/// One key's change, as listed by [`Changes::iter`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Change<'a> {
    /// The key now holds this value.
    Set(&'a str, &'a Value),
    /// The key is gone.
    Remove(&'a str),
    /// These operations apply, in order, to the value the store holds.
    Modify(&'a str, &'a [Op]),
}

impl<'a> Change<'a> {
    /// The key this change is about.
    pub fn key(&self) -> &'a str {
        match self {
            Change::Set(key, _) | Change::Remove(key) | Change::Modify(key, _) => key,
        }
    }
}

/// Why a patch, or one operation of it, cannot be applied. A store that
/// meets one of these writes nothing of the patch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PatchError {
    /// An increment met a value that is not an integer.
    #[error("session key `{key}` holds {found}, not an integer")]
    NotAnInteger {
        /// The key incremented.
        key: String,
        /// What the key holds (`"a string"`, `"a float"`, ...).
        found: &'static str,
    },
    /// An increment would leave the 64-bit integer range.
    #[error("incrementing session key `{key}` leaves the 64-bit integer range")]
    Overflow {
        /// The key incremented.
        key: String,
    },
    /// A push or a removal met a value that is not an array.
    #[error("session key `{key}` holds {found}, not an array")]
    NotAnArray {
        /// The key pushed to.
        key: String,
        /// What the key holds.
        found: &'static str,
    },
    /// The patched session would be larger than the size limit.
    #[error("the session would serialize to {size} bytes, over the limit of {limit}")]
    TooLarge {
        /// Its serialized size, in bytes (or at least this many).
        size: usize,
        /// The limit ([`SessionConfig::max_size`](crate::SessionConfig::max_size)).
        limit: usize,
    },
    /// The patched session would nest deeper than [`limits::MAX_DEPTH`].
    #[error("the session would nest deeper than {} levels", limits::MAX_DEPTH)]
    TooDeep,
    /// The patch was fenced by an exclusive lease that is no longer held:
    /// it ran out (and maybe another request holds the session now).
    #[error("the exclusive lease on this session was lost before the write")]
    LeaseLost,
}

impl Changes {
    /// An empty patch, which changes nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records that `key` now holds `value`.
    pub fn set(&mut self, key: impl Into<String>, value: Value) {
        self.entries.insert(key.into(), Entry::Set(value));
    }

    /// Records that `key` is removed.
    pub fn remove(&mut self, key: impl Into<String>) {
        self.entries.insert(key.into(), Entry::Remove);
    }

    /// Records an increment of the integer under `key` by `by` (negative to
    /// decrement). Fails when the result is already known (the request set
    /// the key) and is not an integer, or overflows.
    pub fn increment(&mut self, key: impl Into<String>, by: i64) -> Result<(), PatchError> {
        self.operate(key.into(), Op::Increment(by))
    }

    /// Records a push of `value` onto the array under `key`, keeping only
    /// the last `keep_last` elements if given. Fails when the result is
    /// already known and is not an array.
    pub fn push(&mut self, key: impl Into<String>, value: Value, keep_last: Option<usize>) -> Result<(), PatchError> {
        self.operate(key.into(), Op::Push { value, keep_last })
    }

    /// Records the removal of the first element equal to `value` from the
    /// array under `key`. Fails when the result is already known and is not
    /// an array.
    pub fn remove_first(&mut self, key: impl Into<String>, value: Value) -> Result<(), PatchError> {
        self.operate(key.into(), Op::RemoveFirst(value))
    }

    fn operate(&mut self, key: String, op: Op) -> Result<(), PatchError> {
        match self.entries.entry(key) {
            btree_map::Entry::Vacant(slot) => {
                slot.insert(Entry::Modify(vec![op]));
            }
            btree_map::Entry::Occupied(mut slot) => {
                let key = slot.key().clone();
                match slot.get_mut() {
                    // The value is known: fold the operation into it.
                    // (A copy, so that a failing operation leaves the entry as it was.)
                    Entry::Set(value) => *slot.get_mut() = settled(apply_op(&key, Some(value.clone()), &op)?),
                    Entry::Remove => *slot.get_mut() = settled(apply_op(&key, None, &op)?),
                    Entry::Modify(ops) => match (ops.last_mut(), &op) {
                        // Two increments are one: less for the store to do.
                        (Some(Op::Increment(sum)), Op::Increment(by)) => {
                            *sum = sum.checked_add(*by).ok_or(PatchError::Overflow { key })?;
                        }
                        _ => ops.push(op),
                    },
                }
            }
        }
        Ok(())
    }

    /// Records that every key is removed; changes recorded before are void,
    /// changes recorded after apply on top of the empty map.
    pub fn clear(&mut self) {
        self.cleared = true;
        self.entries.clear();
    }

    /// Drops whatever was recorded for `key`, as if it had never been touched.
    pub fn forget(&mut self, key: &str) {
        self.entries.remove(key);
    }

    /// Limits the patched session's serialized size: a store refuses the
    /// patch with [`PatchError::TooLarge`] when the result would be larger.
    /// The layer sets it to [`SessionConfig::max_size`](crate::SessionConfig::max_size),
    /// so that many concurrent pushes cannot grow a session past it.
    pub fn limit_size(&mut self, bytes: usize) {
        self.size_limit = Some(bytes);
    }

    /// The size limit, if any.
    pub fn size_limit(&self) -> Option<usize> {
        self.size_limit
    }

    /// Fences the patch by an exclusive lease: a store applies it only while
    /// `token`'s lease on the session is live, and refuses it with
    /// [`PatchError::LeaseLost`] otherwise.
    pub fn fence(&mut self, token: LeaseToken) {
        self.lease = Some(token);
    }

    /// The lease that fences this patch, if any.
    pub fn lease(&self) -> Option<LeaseToken> {
        self.lease
    }

    /// Whether the patch starts by removing every key.
    pub fn is_cleared(&self) -> bool {
        self.cleared
    }

    /// Whether applying the patch leaves any map as it was.
    pub fn is_empty(&self) -> bool {
        !self.cleared && self.entries.is_empty()
    }

    /// Number of keys the patch touches (a clear is not counted).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// The per-key changes, in key order. A clear comes before all of them;
    /// see [`Changes::is_cleared`].
    pub fn iter(&self) -> impl ExactSizeIterator<Item = Change<'_>> + '_ {
        self.into_iter()
    }

    /// What the patch records for `key`, `None` when untouched.
    pub fn get(&self, key: &str) -> Option<Change<'_>> {
        self.entries.get_key_value(key).map(as_change)
    }

    /// Applies the patch to `data` in place, then checks the size limit.
    ///
    /// On an error `data` may be partly patched: discard it, as a store
    /// refusing the patch does.
    pub fn apply(&self, data: &mut SessionMap) -> Result<(), PatchError> {
        if self.cleared {
            data.clear();
        }
        for (key, entry) in &self.entries {
            match entry {
                Entry::Set(value) => {
                    data.insert(key.clone(), value.clone());
                }
                Entry::Remove => {
                    data.remove(key);
                }
                Entry::Modify(ops) => {
                    let mut value = data.remove(key);
                    for op in ops {
                        value = apply_op(key, value, op)?;
                    }
                    if let Some(value) = value {
                        data.insert(key.clone(), value);
                    }
                }
            }
        }
        match self.size_limit {
            Some(limit) => limits::check_size(data, limit),
            None => Ok(()),
        }
    }

    /// Applies the patch to an owned map and returns it.
    pub fn applied_to(&self, mut data: SessionMap) -> Result<SessionMap, PatchError> {
        self.apply(&mut data)?;
        Ok(data)
    }
}

/// The entry for a value known in full.
fn settled(value: Option<Value>) -> Entry {
    match value {
        Some(value) => Entry::Set(value),
        None => Entry::Remove,
    }
}

/// What `op` makes of `current` (`None`: the key is absent).
pub(crate) fn apply_op(key: &str, current: Option<Value>, op: &Op) -> Result<Option<Value>, PatchError> {
    match op {
        Op::Increment(by) => {
            let sum = match &current {
                None => i128::from(*by),
                Some(Value::Number(n)) if n.is_i64() || n.is_u64() => {
                    let n = n.as_i64().map(i128::from).or_else(|| n.as_u64().map(i128::from)).unwrap_or_default();
                    n + i128::from(*by)
                }
                Some(other) => return Err(PatchError::NotAnInteger { key: key.to_owned(), found: kind(other) }),
            };
            let overflow = || PatchError::Overflow { key: key.to_owned() };
            let number = match i64::try_from(sum) {
                Ok(small) => serde_json::Number::from(small),
                Err(_) => serde_json::Number::from(u64::try_from(sum).map_err(|_| overflow())?),
            };
            Ok(Some(Value::Number(number)))
        }
        Op::Push { value, keep_last } => {
            let mut items = array(key, current)?.unwrap_or_default();
            items.push(value.clone());
            if let Some(keep) = *keep_last
                && items.len() > keep
            {
                items.drain(..items.len() - keep);
            }
            Ok(Some(Value::Array(items)))
        }
        Op::RemoveFirst(value) => {
            let Some(mut items) = array(key, current)? else {
                return Ok(None);
            };
            if let Some(at) = items.iter().position(|item| item == value) {
                items.remove(at);
            }
            Ok(Some(Value::Array(items)))
        }
    }
}

fn array(key: &str, current: Option<Value>) -> Result<Option<Vec<Value>>, PatchError> {
    match current {
        None => Ok(None),
        Some(Value::Array(items)) => Ok(Some(items)),
        Some(other) => Err(PatchError::NotAnArray { key: key.to_owned(), found: kind(&other) }),
    }
}

/// What a JSON value is, in words, for error messages.
fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_f64() => "a float",
        Value::Number(_) => "an integer",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

impl<'a> IntoIterator for &'a Changes {
    type Item = Change<'a>;
    type IntoIter = Iter<'a>;

    fn into_iter(self) -> Self::IntoIter {
        Iter(self.entries.iter())
    }
}

/// The per-key changes of a [`Changes`], in key order.
#[derive(Debug, Clone)]
pub struct Iter<'a>(btree_map::Iter<'a, String, Entry>);

impl<'a> Iterator for Iter<'a> {
    type Item = Change<'a>;

    fn next(&mut self) -> Option<Self::Item> {
        self.0.next().map(as_change)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.0.size_hint()
    }
}

impl ExactSizeIterator for Iter<'_> {}

fn as_change<'a>((key, entry): (&'a String, &'a Entry)) -> Change<'a> {
    match entry {
        Entry::Set(value) => Change::Set(key, value),
        Entry::Remove => Change::Remove(key),
        Entry::Modify(ops) => Change::Modify(key, ops),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn map(value: Value) -> SessionMap {
        match value {
            Value::Object(map) => map,
            other => panic!("not an object: {other}"),
        }
    }

    fn applied(changes: &Changes, data: Value) -> Value {
        Value::Object(changes.applied_to(map(data)).expect("applies"))
    }

    #[test]
    fn empty_changes_leave_data_alone() {
        let changes = Changes::new();
        assert!(changes.is_empty());
        assert_eq!(applied(&changes, json!({ "a": 1 })), json!({ "a": 1 }));
    }

    #[test]
    fn set_inserts_and_overwrites() {
        let mut changes = Changes::new();
        changes.set("a", json!(2));
        changes.set("b", json!({ "nested": [true, null] }));
        assert_eq!(
            applied(&changes, json!({ "a": 1, "c": "kept" })),
            json!({ "a": 2, "b": { "nested": [true, null] }, "c": "kept" })
        );
    }

    #[test]
    fn remove_deletes_and_ignores_missing_keys() {
        let mut changes = Changes::new();
        changes.remove("a");
        changes.remove("never-there");
        assert_eq!(applied(&changes, json!({ "a": 1, "b": 2 })), json!({ "b": 2 }));
    }

    #[test]
    fn the_last_write_to_a_key_wins() {
        let mut changes = Changes::new();
        changes.set("a", json!(1));
        changes.remove("a");
        changes.set("b", json!(1));
        changes.set("b", json!(2));
        assert_eq!(changes.len(), 2);
        assert_eq!(applied(&changes, json!({ "a": 0 })), json!({ "b": 2 }));
    }

    #[test]
    fn clear_voids_earlier_changes_and_keeps_later_ones() {
        let mut changes = Changes::new();
        changes.set("before", json!(1));
        changes.clear();
        changes.set("after", json!(2));
        changes.increment("n", 3).expect("increment");
        assert!(changes.is_cleared());
        assert!(!changes.is_empty());
        assert_eq!(applied(&changes, json!({ "old": 0, "n": 10 })), json!({ "after": 2, "n": 3 }));
    }

    #[test]
    fn a_clear_alone_is_a_change() {
        let mut changes = Changes::new();
        changes.clear();
        assert!(!changes.is_empty());
        assert_eq!(changes.len(), 0);
        assert_eq!(applied(&changes, json!({ "a": 1 })), json!({}));
    }

    #[test]
    fn forget_drops_one_key() {
        let mut changes = Changes::new();
        changes.set("a", json!(1));
        changes.set("b", json!(2));
        changes.forget("a");
        assert_eq!(changes.get("a"), None);
        assert_eq!(changes.get("b"), Some(Change::Set("b", &json!(2))));
        let listed: Vec<_> = changes.iter().map(|c| c.key().to_string()).collect();
        assert_eq!(listed, ["b"]);
    }

    #[test]
    fn iteration_lists_every_kind_in_key_order() {
        let mut changes = Changes::new();
        changes.set("b", json!("x"));
        changes.remove("a");
        changes.increment("c", 2).expect("increment");
        let listed: Vec<_> = (&changes).into_iter().collect();
        assert_eq!(
            listed,
            [Change::Remove("a"), Change::Set("b", &json!("x")), Change::Modify("c", &[Op::Increment(2)])]
        );
    }

    #[test]
    fn applying_sets_twice_is_the_same_as_once() {
        let mut changes = Changes::new();
        changes.clear();
        changes.set("a", json!([1]));
        changes.remove("b");
        let once = changes.applied_to(map(json!({ "b": 1, "c": 2 }))).expect("applies");
        let twice = changes.applied_to(once.clone()).expect("applies");
        assert_eq!(once, twice);
    }

    #[test]
    fn increments_count_from_zero_and_add_up() {
        let mut changes = Changes::new();
        changes.increment("visits", 1).expect("increment");
        changes.increment("visits", 2).expect("increment");
        changes.increment("fresh", -4).expect("increment");
        assert_eq!(changes.get("visits"), Some(Change::Modify("visits", &[Op::Increment(3)])));
        assert_eq!(applied(&changes, json!({ "visits": 10 })), json!({ "visits": 13, "fresh": -4 }));
        assert_eq!(applied(&changes, json!({ "visits": u64::MAX - 3 })), json!({ "visits": u64::MAX, "fresh": -4 }));
    }

    #[test]
    fn increments_refuse_what_is_not_an_integer_and_overflows() {
        let mut changes = Changes::new();
        changes.increment("n", 1).expect("increment");
        for (stored, found) in [(json!("7"), "a string"), (json!(1.5), "a float"), (json!([1]), "an array")] {
            let err = changes.applied_to(map(json!({ "n": stored }))).expect_err("not an integer");
            assert_eq!(err, PatchError::NotAnInteger { key: "n".into(), found });
        }
        let err = changes.applied_to(map(json!({ "n": u64::MAX }))).expect_err("overflow");
        assert_eq!(err, PatchError::Overflow { key: "n".into() });
        let mut negative = Changes::new();
        negative.increment("n", -1).expect("increment");
        let err = negative.applied_to(map(json!({ "n": i64::MIN }))).expect_err("overflow");
        assert_eq!(err, PatchError::Overflow { key: "n".into() });
        let mut merged = Changes::new();
        merged.increment("n", i64::MAX).expect("increment");
        assert_eq!(merged.increment("n", 1), Err(PatchError::Overflow { key: "n".into() }));
    }

    #[test]
    fn pushes_append_and_keep_the_last_elements() {
        let mut changes = Changes::new();
        changes.push("cart", json!("a"), None).expect("push");
        changes.push("cart", json!("b"), None).expect("push");
        changes.push("recent", json!(4), Some(3)).expect("push");
        assert_eq!(
            applied(&changes, json!({ "cart": ["x"], "recent": [1, 2, 3] })),
            json!({ "cart": ["x", "a", "b"], "recent": [2, 3, 4] })
        );
        assert_eq!(applied(&changes, json!({})), json!({ "cart": ["a", "b"], "recent": [4] }));
        let err = changes.applied_to(map(json!({ "cart": { "not": "an array" } }))).expect_err("not an array");
        assert_eq!(err, PatchError::NotAnArray { key: "cart".into(), found: "an object" });
    }

    #[test]
    fn remove_first_removes_one_equal_element() {
        let mut changes = Changes::new();
        changes.remove_first("cart", json!("a")).expect("remove");
        assert_eq!(applied(&changes, json!({ "cart": ["b", "a", "a"] })), json!({ "cart": ["b", "a"] }));
        assert_eq!(applied(&changes, json!({ "cart": ["b"] })), json!({ "cart": ["b"] }));
        assert_eq!(applied(&changes, json!({})), json!({}), "a missing key stays missing");
    }

    #[test]
    fn operations_after_a_set_fold_into_it_and_a_set_after_operations_wins() {
        let mut changes = Changes::new();
        changes.set("n", json!(5));
        changes.increment("n", 2).expect("increment");
        changes.remove("cart");
        changes.push("cart", json!(1), None).expect("push");
        changes.increment("later", 1).expect("increment");
        changes.set("later", json!("set"));
        assert_eq!(changes.get("n"), Some(Change::Set("n", &json!(7))));
        assert_eq!(changes.get("cart"), Some(Change::Set("cart", &json!([1]))));
        assert_eq!(
            applied(&changes, json!({ "n": 100, "cart": [9], "later": 1 })),
            json!({ "n": 7, "cart": [1], "later": "set" })
        );
        let mut wrong = Changes::new();
        wrong.set("n", json!("text"));
        assert_eq!(wrong.increment("n", 1), Err(PatchError::NotAnInteger { key: "n".into(), found: "a string" }));
        assert_eq!(wrong.get("n"), Some(Change::Set("n", &json!("text"))), "a failed operation changes nothing");
    }

    #[test]
    fn the_size_limit_applies_to_the_result() {
        let mut changes = Changes::new();
        changes.push("items", json!("0123456789"), None).expect("push");
        changes.limit_size(30);
        assert!(changes.applied_to(map(json!({}))).is_ok());
        let err = changes.applied_to(map(json!({ "items": ["0123456789"] }))).expect_err("too large");
        assert!(matches!(err, PatchError::TooLarge { limit: 30, size } if size > 30), "{err:?}");
    }
}
