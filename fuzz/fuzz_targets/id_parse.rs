//! `SessionId::parse` on arbitrary text: never panics, and whatever it
//! accepts is canonical (it prints back exactly as given).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sessionkit::SessionId;

fuzz_target!(|text: &str| {
    if let Some(id) = SessionId::parse(text) {
        assert_eq!(id.as_str(), text, "parse accepted a non-canonical spelling");
        assert_eq!(SessionId::from_bytes(*id.as_bytes()), id);
    }
});
