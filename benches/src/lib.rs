//! Shared fixtures for sessionkit's benchmarks: payloads of realistic sizes.

#![forbid(unsafe_code)]

use serde_json::{Value, json};
use sessionkit::SessionMap;

/// A session map whose JSON is about `bytes` long: a few typical keys plus
/// padding.
pub fn payload(bytes: usize) -> SessionMap {
    let base = json!({ "user": "ada", "visits": 42, "theme": "dark" });
    let base_len = base.to_string().len();
    let pad = bytes.saturating_sub(base_len + r#","pad":"""#.len());
    let mut map = match base {
        Value::Object(map) => map,
        _ => SessionMap::new(),
    };
    map.insert("pad".to_owned(), Value::String("x".repeat(pad)));
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_have_the_requested_size() {
        for bytes in [100, 4 * 1024, 64 * 1024] {
            let len = serde_json::to_vec(&payload(bytes)).expect("json").len();
            assert_eq!(len, bytes, "payload({bytes}) is {len} bytes");
        }
    }
}
