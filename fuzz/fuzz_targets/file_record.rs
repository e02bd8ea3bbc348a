//! The store's decoding of arbitrary stored bytes: corrupt data must read
//! as absent, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    sessionkit_stores::fuzz_hooks::file_record(bytes);
});
