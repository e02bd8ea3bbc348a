//! `Changes::apply` against a model: any sequence of sets, removes, clears,
//! increments, pushes and removals of an element, applied as one patch,
//! gives the map that applying them one by one gives. Integer keys (`k*`)
//! and array keys (`a*`) are kept apart so that no operation meets a value
//! of the wrong type; increments are small so that none overflows.
#![no_main]

use std::collections::BTreeMap;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use sessionkit::{Changes, SessionMap};

#[derive(Arbitrary, Debug)]
enum Op {
    Set(u8, i32),
    Remove(u8),
    Clear,
    Increment(u8, i16),
    Push(u8, u8, Option<u8>),
    RemoveFirst(u8, u8),
}

#[derive(Arbitrary, Debug)]
struct Input {
    initial: BTreeMap<u8, i32>,
    lists: BTreeMap<u8, Vec<u8>>,
    ops: Vec<Op>,
}

fuzz_target!(|input: Input| {
    let int = |k: u8| format!("k{}", k % 16);
    let list = |k: u8| format!("a{}", k % 16);
    let item = |v: u8| Value::from(v % 4);
    let mut start = SessionMap::new();
    for (k, v) in &input.initial {
        start.insert(int(*k), Value::from(*v));
    }
    for (k, items) in &input.lists {
        start.insert(list(*k), Value::Array(items.iter().map(|v| item(*v)).collect()));
    }
    let mut model = start.clone();
    let mut changes = Changes::new();
    for op in &input.ops {
        match *op {
            Op::Set(k, v) => {
                model.insert(int(k), Value::from(v));
                changes.set(int(k), Value::from(v));
            }
            Op::Remove(k) => {
                model.remove(&int(k));
                changes.remove(int(k));
            }
            Op::Clear => {
                model.clear();
                changes.clear();
            }
            Op::Increment(k, by) => {
                let now = model.get(&int(k)).and_then(Value::as_i64).unwrap_or(0);
                model.insert(int(k), Value::from(now + i64::from(by)));
                changes.increment(int(k), i64::from(by)).expect("integer keys hold integers");
            }
            Op::Push(k, v, keep) => {
                let keep = keep.map(|n| usize::from(n % 8));
                let mut items = model.get(&list(k)).and_then(Value::as_array).cloned().unwrap_or_default();
                items.push(item(v));
                if let Some(keep) = keep {
                    let excess = items.len().saturating_sub(keep);
                    items.drain(..excess);
                }
                model.insert(list(k), Value::Array(items));
                changes.push(list(k), item(v), keep).expect("array keys hold arrays");
            }
            Op::RemoveFirst(k, v) => {
                if let Some(Value::Array(items)) = model.get_mut(&list(k))
                    && let Some(at) = items.iter().position(|candidate| *candidate == item(v))
                {
                    items.remove(at);
                }
                changes.remove_first(list(k), item(v)).expect("array keys hold arrays");
            }
        }
    }
    assert_eq!(changes.applied_to(start).expect("applies"), model);
});
