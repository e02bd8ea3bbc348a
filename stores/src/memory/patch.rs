//! Patching a stored record in its encoded form.
//!
//! [`patch`] writes what `encode(changes.applied_to(decode(old)))` would
//! write, and refuses what that refuses, without decoding the values the
//! patch leaves alone. Untouched entries are copied as they are stored,
//! merged by key with the patch's (both are in key order); sets are
//! encoded; operations run on the stored encoding ([`super::ops`]).
//!
//! The size limit is checked on the result's length as JSON: the stored
//! record's length, plus what the patch writes, minus what it replaces.
//! Only the replaced values are measured, never the whole record. A record
//! written by `set` has no length yet (measuring it there would slow every
//! `set` for the sake of later patches); the first patch with a limit
//! measures it once by reading it (no decoding, no allocation), and every
//! patch result has its length from then on.
//!
//! A value too deep to store, or an operation [`super::ops`] does not know,
//! sends the patch down the decoding path instead, which reports exactly
//! what applying the patch reports (an operation's error before an
//! encoding error, as `Changes::apply` fails before encoding starts).

use std::borrow::Cow;

use sessionkit::{Change, Changes, Op, PatchError, StoreError};

use super::codec::{self, Corrupt, Measured, Reader, Unmeasured};
use super::json_len;
use super::ops::{self, Abort};

/// Appends to `out` the encoding of `old` (whose length as JSON is
/// `old_json_len`, if known) with `changes` applied; returns the result's
/// length as JSON, known whenever the old one was or the patch has a size
/// limit. On an error `out` holds garbage past its former length.
pub(super) fn patch(
    out: &mut String,
    old: &str,
    old_json_len: Option<usize>,
    changes: &Changes,
) -> Result<Option<usize>, StoreError> {
    let start = out.len();
    // Merging needs both sides in key order; with serde_json's
    // `preserve_order` maps keep insertion order, which only a real decode
    // reproduces.
    if codec::maps_are_sorted() {
        let old_json_len = match (old_json_len, changes.size_limit()) {
            (None, Some(_)) => Some(codec::json_len_of(old).map_err(corrupt)?),
            (known, _) => known,
        };
        match merge(out, old, old_json_len, changes) {
            Ok(len) => {
                return match (len, changes.size_limit()) {
                    (Some(size), Some(limit)) if size > limit => {
                        Err(StoreError::Refused(PatchError::TooLarge { size, limit }))
                    }
                    _ => Ok(len),
                };
            }
            Err(Abort::Refused(err)) => return Err(StoreError::Refused(err)),
            Err(Abort::Corrupt(err)) => return Err(corrupt(err)),
            Err(Abort::Decode) => out.truncate(start),
        }
    }
    let data = codec::decode(old).map_err(corrupt)?;
    let data = changes.applied_to(data).map_err(StoreError::Refused)?;
    codec::encode_measured(out, &data).map(Some)
}

fn corrupt(err: Corrupt) -> StoreError {
    StoreError::backend("memory store: reading a stored record", err)
}

/// The result's entries so far: how many, and (when measuring) the sum of
/// their lengths as JSON members (`"key":value`).
struct Tally {
    count: usize,
    measure: bool,
    members: isize,
}

impl Tally {
    /// Counts out a stored member that the patch replaces or removes.
    fn replaced(&mut self, key: &str, raw: &str) -> Result<(), Abort> {
        if self.measure {
            self.members -= json_len::member(key, Reader::new(raw).json_len(1)?) as isize;
        }
        Ok(())
    }
}

fn merge(out: &mut String, old: &str, old_json_len: Option<usize>, changes: &Changes) -> Result<Option<usize>, Abort> {
    let start = out.len();
    let mut reader = Reader::new(old);
    let stored = reader.count()?;
    let measure = old_json_len.is_some();
    let (mut left, mut tally) = if changes.is_cleared() {
        (0, Tally { count: 0, measure, members: 0 })
    } else {
        // Every stored member, until the patch replaces or removes one.
        let members = old_json_len.unwrap_or_default().saturating_sub(json_len::container(stored));
        (stored, Tally { count: 0, measure, members: members as isize })
    };
    let mut patch = changes.iter().peekable();
    let mut previous: Option<&str> = None;
    loop {
        let current = if left > 0 {
            let (key, value) = reader.raw_entry()?;
            // Keys stored out of order would break the merge.
            if previous.is_some_and(|previous| previous >= key) {
                return Err(reader.corrupt().into());
            }
            previous = Some(key);
            left -= 1;
            Some((key, value))
        } else {
            None
        };
        // Patch entries that sort before the stored one (or all that are
        // left, past the last one).
        while let Some(change) = patch.next_if(|change| current.is_none_or(|(key, _)| change.key() < key)) {
            apply(out, change, None, &mut tally)?;
        }
        let Some((key, value)) = current else {
            break;
        };
        match patch.next_if(|change| change.key() == key) {
            Some(change) => apply(out, change, Some(value), &mut tally)?,
            None => {
                codec::push_bytes(out, key);
                out.push_str(value);
                tally.count += 1;
            }
        }
    }
    if !changes.is_cleared() && !reader.is_done() {
        return Err(reader.corrupt().into());
    }
    let mut head = [0u8; 21];
    out.insert_str(start, codec::number_text(tally.count as u64, b':', &mut head));
    Ok(measure.then(|| json_len::container(tally.count) + tally.members.max(0) as usize))
}

/// Writes what `change` makes of the stored value (`None`: the key is
/// absent), and counts it.
fn apply(out: &mut String, change: Change<'_>, stored: Option<&str>, tally: &mut Tally) -> Result<(), Abort> {
    match change {
        Change::Set(key, value) => {
            if let Some(raw) = stored {
                tally.replaced(key, raw)?;
            }
            codec::push_bytes(out, key);
            if tally.measure {
                let len = codec::encode_value::<Measured>(out, value, 1).map_err(|_| Abort::Decode)?;
                tally.members += json_len::member(key, len) as isize;
            } else {
                codec::encode_value::<Unmeasured>(out, value, 1).map_err(|_| Abort::Decode)?;
            }
            tally.count += 1;
        }
        Change::Remove(key) => {
            if let Some(raw) = stored {
                tally.replaced(key, raw)?;
            }
        }
        Change::Modify(key, operations) => modify(out, key, stored, operations, tally)?,
    }
    Ok(())
}

/// Runs `operations` in turn on the stored value; the last one writes into
/// `out`, those before it into scratch buffers.
fn modify(
    out: &mut String,
    key: &str,
    stored: Option<&str>,
    operations: &[Op],
    tally: &mut Tally,
) -> Result<(), Abort> {
    let Some((last, before)) = operations.split_last() else {
        // No operation: the value stays as stored.
        if let Some(raw) = stored {
            codec::push_bytes(out, key);
            out.push_str(raw);
            tally.count += 1;
        }
        return Ok(());
    };
    // Only a removal from an absent array leaves the key absent, and once
    // any operation has made a value, every later one runs on it.
    if stored.is_none() && operations.iter().all(ops::leaves_absent) {
        return Ok(());
    }
    let mut current: Option<Cow<'_, str>> = stored.map(Cow::Borrowed);
    // The value's length as JSON minus the stored one's (absent: 0).
    let mut grown: isize = 0;
    for op in before {
        if current.is_none() && ops::leaves_absent(op) {
            continue;
        }
        let mut next = String::new();
        grown += ops::apply(key, current.as_deref(), op, &mut next, tally.measure)?;
        current = Some(Cow::Owned(next));
    }
    codec::push_bytes(out, key);
    grown += ops::apply(key, current.as_deref(), last, out, tally.measure)?;
    tally.count += 1;
    if tally.measure {
        tally.members += match stored {
            Some(_) => grown,
            None => json_len::member(key, 0) as isize + grown,
        };
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::{Value, json};
    use sessionkit::{PatchError, SessionMap};

    use super::*;
    use crate::memory::codec::MAX_DEPTH;

    fn map(value: Value) -> SessionMap {
        value.as_object().cloned().expect("object")
    }

    /// What `patch` must give: `encode(changes.applied_to(decode(old)))`,
    /// with the JSON length, or the same refusal.
    fn expected(data: &SessionMap, changes: &Changes) -> Result<(String, usize), StoreError> {
        let applied = changes.applied_to(data.clone()).map_err(StoreError::Refused)?;
        let mut out = String::new();
        let len = codec::encode_measured(&mut out, &applied)?;
        assert_eq!(len, sessionkit::limits::serialized_len(&applied));
        Ok((out, len))
    }

    /// `patch` on `data`'s encoding, its length known or not; with it
    /// known, or a size limit, the result's length must be known.
    fn patched_with(data: &SessionMap, changes: &Changes, known: bool) -> Result<(String, Option<usize>), StoreError> {
        let mut old = String::new();
        let old_len = codec::encode_measured(&mut old, data).expect("encode");
        // Something before the data, as a record has: the patch appends.
        let mut out = String::from("prefix");
        let len = patch(&mut out, &old, known.then_some(old_len), changes)?;
        assert!(len.is_some() || !(known || changes.size_limit().is_some()), "the length was lost");
        Ok((out["prefix".len()..].to_owned(), len))
    }

    fn patched(data: &SessionMap, changes: &Changes) -> Result<(String, Option<usize>), StoreError> {
        patched_with(data, changes, true)
    }

    fn same(data: &SessionMap, changes: &Changes) {
        for known in [true, false] {
            same_with(data, changes, known);
        }
    }

    fn same_with(data: &SessionMap, changes: &Changes, known: bool) {
        match (patched_with(data, changes, known), expected(data, changes)) {
            (Ok((text, len)), Ok((want_text, want_len))) => {
                assert_eq!(text, want_text, "{data:?} with {changes:?}");
                assert!(
                    len.is_none_or(|len| len == want_len),
                    "{data:?} with {changes:?}: length {len:?}, not {want_len}"
                );
            }
            (Err(StoreError::Refused(got)), Err(StoreError::Refused(want))) => {
                assert_eq!(got, want, "{data:?} with {changes:?}")
            }
            (Err(StoreError::Encode(_)), Err(StoreError::Encode(_))) => {}
            (got, want) => panic!("{data:?} with {changes:?}: got {got:?}, want {want:?}"),
        }
    }

    fn leaf() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(json!(null)),
            any::<bool>().prop_map(Value::from),
            (-3i64..4).prop_map(Value::from),
            prop_oneof![Just(json!(u64::MAX)), Just(json!(i64::MIN)), Just(json!(i64::MAX)), Just(json!(u64::MAX - 1))],
            prop_oneof![Just(json!(1.5)), Just(json!(2.0)), Just(json!(-0.0)), Just(json!(0.0)), Just(json!(1e300))],
            prop_oneof![Just(json!("")), Just(json!("a")), Just(json!("ключ \"😀\"\n")), Just(json!("\u{1}\\"))],
        ]
    }

    fn value() -> impl Strategy<Value = Value> {
        leaf().prop_recursive(3, 16, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
                prop::collection::btree_map(key(), inner, 0..3)
                    .prop_map(|entries| Value::Object(entries.into_iter().collect())),
            ]
        })
    }

    fn key() -> impl Strategy<Value = String> {
        prop::sample::select(vec!["", "a", "b", "bb", "cart", "n", "ключ", "😀", "__sessionkit.user"])
            .prop_map(str::to_owned)
    }

    #[derive(Debug, Clone)]
    enum Action {
        Set(String, Value),
        Remove(String),
        Increment(String, i64),
        Push(String, Value, Option<usize>),
        RemoveFirst(String, Value),
        Clear,
    }

    fn action() -> impl Strategy<Value = Action> {
        let by = prop_oneof![-2i64..3, Just(i64::MAX), Just(i64::MIN)];
        prop_oneof![
            2 => (key(), value()).prop_map(|(k, v)| Action::Set(k, v)),
            1 => key().prop_map(Action::Remove),
            3 => (key(), by).prop_map(|(k, by)| Action::Increment(k, by)),
            3 => (key(), leaf(), prop::option::of(0usize..4)).prop_map(|(k, v, keep)| Action::Push(k, v, keep)),
            2 => (key(), leaf()).prop_map(|(k, v)| Action::RemoveFirst(k, v)),
            1 => Just(Action::Clear),
        ]
    }

    fn changes_of(actions: &[Action], limit: Option<usize>) -> Changes {
        let mut changes = Changes::new();
        for action in actions.iter().cloned() {
            // An operation that fails while recording (the request already
            // set the key to something else) is not recorded: a handler
            // gets the error then, and the store never sees it.
            let recorded = match action {
                Action::Set(key, value) => {
                    changes.set(key, value);
                    Ok(())
                }
                Action::Remove(key) => {
                    changes.remove(key);
                    Ok(())
                }
                Action::Increment(key, by) => changes.increment(key, by),
                Action::Push(key, value, keep) => changes.push(key, value, keep),
                Action::RemoveFirst(key, value) => changes.remove_first(key, value),
                Action::Clear => {
                    changes.clear();
                    Ok(())
                }
            };
            drop(recorded);
        }
        if let Some(limit) = limit {
            changes.limit_size(limit);
        }
        changes
    }

    fn data() -> impl Strategy<Value = SessionMap> {
        let stored = prop_oneof![
            value(),
            prop::collection::vec(leaf(), 0..6).prop_map(Value::Array),
            (-5i64..5).prop_map(Value::from),
        ];
        prop::collection::btree_map(key(), stored, 0..6).prop_map(|entries| entries.into_iter().collect())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4_000))]

        /// `patch` gives exactly what decoding, applying and encoding
        /// gives: the same encoding, the same JSON length, the same refusal.
        #[test]
        fn patching_equals_decoding_applying_and_encoding(
            data in data(),
            actions in prop::collection::vec(action(), 0..6),
            slack in prop::option::of(-40isize..40),
        ) {
            // A limit near the result's size, so that both sides of it are tried.
            let size = sessionkit::limits::serialized_len(&data) as isize;
            let limit = slack.map(|slack| (size + slack).max(0) as usize);
            same(&data, &changes_of(&actions, limit));
        }
    }

    #[test]
    fn operations_in_place_cover_every_case() {
        use Action::{Increment as Inc, Push, RemoveFirst as Rm};
        let data = map(json!({
            "n": 5, "neg": -3, "max": u64::MAX, "min": i64::MIN, "f": 1.5, "s": "x", "b": true, "z": null,
            "cart": [1, "a", [2], { "k": 1 }, 1.0, -0.0], "empty": [], "o": { "a": 1 },
        }));
        let k = str::to_owned;
        let cases = [
            vec![Inc(k("n"), 1)],
            vec![Inc(k("n"), -6)],
            vec![Inc(k("neg"), 3)],
            vec![Inc(k("max"), 1)],
            vec![Inc(k("max"), -1)],
            vec![Inc(k("min"), -1)],
            vec![Inc(k("min"), i64::MAX)],
            vec![Inc(k("fresh"), -2)],
            vec![Inc(k("f"), 1)],
            vec![Inc(k("s"), 1)],
            vec![Inc(k("b"), 1)],
            vec![Inc(k("z"), 1)],
            vec![Inc(k("cart"), 1)],
            vec![Inc(k("o"), 1)],
            vec![Push(k("cart"), json!({ "k": 2 }), None)],
            vec![Push(k("cart"), json!(9), Some(2))],
            vec![Push(k("cart"), json!(9), Some(0))],
            vec![Push(k("cart"), json!(9), Some(100))],
            vec![Push(k("empty"), json!(9), Some(0))],
            vec![Push(k("fresh"), json!("new"), None)],
            vec![Push(k("fresh"), json!("new"), Some(0))],
            vec![Push(k("s"), json!(1), None)],
            vec![Push(k("n"), json!(1), None)],
            vec![Rm(k("cart"), json!(1))],
            vec![Rm(k("cart"), json!(1.0))],
            vec![Rm(k("cart"), json!(0.0))],
            vec![Rm(k("cart"), json!({ "k": 1 }))],
            vec![Rm(k("cart"), json!([2]))],
            vec![Rm(k("cart"), json!("absent"))],
            vec![Rm(k("empty"), json!(1))],
            vec![Rm(k("fresh"), json!(1))],
            vec![Rm(k("o"), json!(1))],
            vec![Push(k("fresh"), json!(1), None), Push(k("fresh"), json!(2), Some(1)), Rm(k("fresh"), json!(2))],
            vec![Rm(k("fresh"), json!(1)), Push(k("fresh"), json!(1), None)],
            vec![Rm(k("fresh"), json!(1)), Rm(k("fresh"), json!(2))],
            vec![Push(k("cart"), json!(1), None), Rm(k("cart"), json!(1)), Push(k("cart"), json!(3), Some(3))],
            // The first failing key, in key order, is the one reported.
            vec![Push(k("n"), json!(1), None), Inc(k("s"), 1)],
        ];
        for actions in &cases {
            for limit in [None, Some(0), Some(150), Some(1_000)] {
                same(&data, &changes_of(actions, limit));
                let cleared: Vec<Action> = std::iter::once(Action::Clear).chain(actions.iter().cloned()).collect();
                same(&data, &changes_of(&cleared, limit));
            }
        }
    }

    fn nested(levels: usize) -> Value {
        (1..levels).fold(json!([]), |inner, _| Value::Array(vec![inner]))
    }

    #[test]
    fn values_too_deep_to_store_take_the_decoding_path() {
        let data = map(json!({ "a": 1, "list": [] }));
        let mut deep = Changes::new();
        deep.set("deep", nested(MAX_DEPTH));
        assert!(matches!(patched(&data, &deep), Err(StoreError::Encode(_))));
        let mut pushed = Changes::new();
        pushed.push("list", nested(MAX_DEPTH - 1), None).expect("push");
        assert!(matches!(patched(&data, &pushed), Err(StoreError::Encode(_))));
        // An operation's refusal comes first, as `Changes::apply` refuses
        // before anything is encoded.
        let mut both = deep.clone();
        both.increment("zz", 1).expect("increment");
        let text = map(json!({ "zz": "text" }));
        same(&text, &both);
        assert!(matches!(patched(&text, &both), Err(StoreError::Refused(PatchError::NotAnInteger { .. }))));
        // Pushed and dropped at once by `keep_last` 0: never stored, never refused.
        let mut dropped = Changes::new();
        dropped.push("list", nested(MAX_DEPTH), Some(0)).expect("push");
        same(&data, &dropped);
        assert!(patched(&data, &dropped).is_ok());
    }

    #[test]
    fn patching_refuses_corrupt_records() {
        let mut fine = Changes::new();
        fine.set("b", json!(2));
        for bad in ["", "2:1:an", "2:1:bn1:an", "1:1:an trailing", "1:1:a"] {
            assert!(patch(&mut String::new(), bad, Some(10), &fine).is_err(), "{bad:?} patched");
            assert!(patch(&mut String::new(), bad, None, &fine).is_err(), "{bad:?} patched");
        }
        let mut increment = Changes::new();
        increment.increment("a", 1).expect("increment");
        for bad in ["1:1:au1", "1:1:ai99999999999999999999;", "1:1:ax"] {
            assert!(patch(&mut String::new(), bad, Some(10), &increment).is_err(), "{bad:?} patched");
        }
    }
}
