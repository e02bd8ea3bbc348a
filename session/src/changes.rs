//! `Changes`: what one request did to a session's data, key by key.
//!
//! Stores apply a `Changes` to the data they hold instead of overwriting the
//! whole record. That is what lets two concurrent requests on one session (a
//! cart add and a theme change) both keep their writes: each only sends the
//! keys it touched.

use std::collections::BTreeMap;
use std::collections::btree_map;

use serde_json::Value;

use crate::SessionMap;

/// A key-level patch: whether it begins by clearing every key, then the last
/// write to each key it touched.
///
/// ```
/// use serde_json::json;
/// use sessionkit::{Changes, SessionMap};
///
/// let mut data: SessionMap = json!({ "theme": "dark", "cart": [1] }).as_object().unwrap().clone();
/// let mut changes = Changes::new();
/// changes.set("cart", json!([1, 2]));
/// changes.remove("theme");
/// changes.apply(&mut data);
/// assert_eq!(serde_json::Value::Object(data), json!({ "cart": [1, 2] }));
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Changes {
    cleared: bool,
    // `None` removes the key. A map, so that only the last write to a key counts.
    entries: BTreeMap<String, Option<Value>>,
}

/// One key's change, as listed by [`Changes::iter`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Change<'a> {
    /// The key now holds this value.
    Set(&'a str, &'a Value),
    /// The key is gone.
    Remove(&'a str),
}

impl Change<'_> {
    /// The key this change is about.
    pub fn key(&self) -> &str {
        match self {
            Change::Set(key, _) | Change::Remove(key) => key,
        }
    }
}

impl Changes {
    /// An empty patch, which changes nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records that `key` now holds `value`.
    pub fn set(&mut self, key: impl Into<String>, value: Value) {
        self.entries.insert(key.into(), Some(value));
    }

    /// Records that `key` is removed.
    pub fn remove(&mut self, key: impl Into<String>) {
        self.entries.insert(key.into(), None);
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

    /// Whether the patch starts by removing every key.
    pub fn is_cleared(&self) -> bool {
        self.cleared
    }

    /// Whether applying the patch leaves any map as it was.
    pub fn is_empty(&self) -> bool {
        !self.cleared && self.entries.is_empty()
    }

    /// Number of keys the patch sets or removes (a clear is not counted).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// The per-key changes, in key order. A clear comes before all of them;
    /// see [`Changes::is_cleared`].
    pub fn iter(&self) -> impl ExactSizeIterator<Item = Change<'_>> + '_ {
        self.into_iter()
    }

    /// What the patch records for `key`: `Some(Some(v))` set, `Some(None)`
    /// removed, `None` untouched.
    pub fn get(&self, key: &str) -> Option<Option<&Value>> {
        self.entries.get(key).map(Option::as_ref)
    }

    /// Applies the patch to `data` in place.
    pub fn apply(&self, data: &mut SessionMap) {
        if self.cleared {
            data.clear();
        }
        for (key, value) in &self.entries {
            match value {
                Some(value) => {
                    data.insert(key.clone(), value.clone());
                }
                None => {
                    data.remove(key);
                }
            }
        }
    }

    /// Applies the patch to an owned map and returns it.
    pub fn applied_to(&self, mut data: SessionMap) -> SessionMap {
        self.apply(&mut data);
        data
    }
}

impl<'a> IntoIterator for &'a Changes {
    type Item = Change<'a>;
    type IntoIter =
        std::iter::Map<btree_map::Iter<'a, String, Option<Value>>, fn((&'a String, &'a Option<Value>)) -> Change<'a>>;

    fn into_iter(self) -> Self::IntoIter {
        self.entries.iter().map(as_change)
    }
}

fn as_change<'a>((key, value): (&'a String, &'a Option<Value>)) -> Change<'a> {
    match value {
        Some(value) => Change::Set(key, value),
        None => Change::Remove(key),
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

    #[test]
    fn empty_changes_leave_data_alone() {
        let data = map(json!({ "a": 1 }));
        let changes = Changes::new();
        assert!(changes.is_empty());
        assert_eq!(changes.applied_to(data.clone()), data);
    }

    #[test]
    fn set_inserts_and_overwrites() {
        let mut changes = Changes::new();
        changes.set("a", json!(2));
        changes.set("b", json!({ "nested": [true, null] }));
        let out = changes.applied_to(map(json!({ "a": 1, "c": "kept" })));
        assert_eq!(Value::Object(out), json!({ "a": 2, "b": { "nested": [true, null] }, "c": "kept" }));
    }

    #[test]
    fn remove_deletes_and_ignores_missing_keys() {
        let mut changes = Changes::new();
        changes.remove("a");
        changes.remove("never-there");
        let out = changes.applied_to(map(json!({ "a": 1, "b": 2 })));
        assert_eq!(Value::Object(out), json!({ "b": 2 }));
    }

    #[test]
    fn the_last_write_to_a_key_wins() {
        let mut changes = Changes::new();
        changes.set("a", json!(1));
        changes.remove("a");
        changes.set("b", json!(1));
        changes.set("b", json!(2));
        assert_eq!(changes.len(), 2);
        let out = changes.applied_to(map(json!({ "a": 0 })));
        assert_eq!(Value::Object(out), json!({ "b": 2 }));
    }

    #[test]
    fn clear_voids_earlier_changes_and_keeps_later_ones() {
        let mut changes = Changes::new();
        changes.set("before", json!(1));
        changes.clear();
        changes.set("after", json!(2));
        assert!(changes.is_cleared());
        assert!(!changes.is_empty());
        let out = changes.applied_to(map(json!({ "old": 0 })));
        assert_eq!(Value::Object(out), json!({ "after": 2 }));
    }

    #[test]
    fn a_clear_alone_is_a_change() {
        let mut changes = Changes::new();
        changes.clear();
        assert!(!changes.is_empty());
        assert_eq!(changes.len(), 0);
        assert!(changes.applied_to(map(json!({ "a": 1 }))).is_empty());
    }

    #[test]
    fn forget_drops_one_key() {
        let mut changes = Changes::new();
        changes.set("a", json!(1));
        changes.set("b", json!(2));
        changes.forget("a");
        assert_eq!(changes.get("a"), None);
        assert_eq!(changes.get("b"), Some(Some(&json!(2))));
        let listed: Vec<_> = changes.iter().map(|c| c.key().to_string()).collect();
        assert_eq!(listed, ["b"]);
    }

    #[test]
    fn iteration_lists_sets_and_removes_in_key_order() {
        let mut changes = Changes::new();
        changes.set("b", json!("x"));
        changes.remove("a");
        let listed: Vec<_> = (&changes).into_iter().collect();
        assert_eq!(listed, [Change::Remove("a"), Change::Set("b", &json!("x"))]);
    }

    #[test]
    fn applying_twice_is_the_same_as_once() {
        let mut changes = Changes::new();
        changes.clear();
        changes.set("a", json!([1]));
        changes.remove("b");
        let once = changes.applied_to(map(json!({ "b": 1, "c": 2 })));
        let twice = changes.applied_to(once.clone());
        assert_eq!(once, twice);
    }
}
