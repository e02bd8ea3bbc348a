//! Small helpers every store test file needs.

use std::error::Error;
use std::time::{Duration, SystemTime};

use serde_json::Value;
use sessionkit::{SessionId, SessionMap, StoreKey, expiry};

/// A JSON object literal as session data.
///
/// # Panics
///
/// If `value` is not an object: a bug in the test.
pub fn map(value: Value) -> SessionMap {
    match value {
        Value::Object(map) => map,
        other => panic!("{other} is not an object"),
    }
}

/// A fresh store key, as the layer derives one from a fresh id.
pub fn key() -> StoreKey {
    StoreKey::hashed(&SessionId::generate())
}

/// `secs` seconds from now, to the millisecond stores keep.
pub fn in_secs(secs: u64) -> SystemTime {
    expiry::now() + Duration::from_secs(secs)
}

/// An error and all its causes, as a user reading the log would see them.
pub fn error_chain(err: &dyn Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(" / ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
