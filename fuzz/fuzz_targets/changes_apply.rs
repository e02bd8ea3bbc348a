//! `Changes::apply` against a model: any sequence of sets, removes and
//! clears, applied as one patch, gives the map that applying them one by one
//! gives.
#![no_main]

use std::collections::BTreeMap;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use sessionkit::{Changes, SessionMap};

#[derive(Arbitrary, Debug)]
enum Op {
    Set(u8, i64),
    Remove(u8),
    Clear,
}

#[derive(Arbitrary, Debug)]
struct Input {
    initial: BTreeMap<u8, i64>,
    ops: Vec<Op>,
}

fuzz_target!(|input: Input| {
    let key = |k: u8| format!("k{}", k % 16);
    let mut start = SessionMap::new();
    for (k, v) in &input.initial {
        start.insert(key(*k), Value::from(*v));
    }
    let mut model = start.clone();
    let mut changes = Changes::new();
    for op in &input.ops {
        match *op {
            Op::Set(k, v) => {
                model.insert(key(k), Value::from(v));
                changes.set(key(k), Value::from(v));
            }
            Op::Remove(k) => {
                model.remove(&key(k));
                changes.remove(key(k));
            }
            Op::Clear => {
                model.clear();
                changes.clear();
            }
        }
    }
    assert_eq!(changes.applied_to(start), model);
});
