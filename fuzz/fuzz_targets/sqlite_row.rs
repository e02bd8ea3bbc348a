//! `SqliteStore`'s decoding of arbitrary rows (any SQLite types, any bytes):
//! corrupt rows must read as absent, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (u8, &[u8], u8, &[u8])| {
    let (data_type, data, expires_type, expires) = input;
    sessionkit_stores::fuzz_hooks::sqlite_row(data_type, data, expires_type, expires);
});
