//! Compile-time behaviour of `#[derive(SessionData)]`: what must compile
//! (`ui/pass`) and the exact errors, with their spans, for what must not
//! (`ui/fail`, snapshots in `.stderr` files).
//!
//! The snapshots hold rustc's wording, which changes between releases, so
//! they are tied to the compiler they were written with,
//! [`SNAPSHOT_RUSTC`]: another compiler fails this test with a message
//! saying so, rather than with a diff of wording. (Pinned here rather than
//! by a `rust-toolchain.toml`, which would make rustup try to download that
//! toolchain on a machine that has another one and no network.) After an
//! intended change, or on a new compiler, regenerate them with
//! `TRYBUILD=overwrite cargo test --workspace --all-features --test ui`
//! (the workspace's features: rustc's notes name types by the shortest path
//! the dependency graph allows), review every diff, and update the constant.

use std::process::Command;

/// The `rustc` release (major.minor) the `.stderr` snapshots were written
/// with.
const SNAPSHOT_RUSTC: &str = "1.95";

#[test]
fn ui() {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned());
    let version = Command::new(&rustc).arg("--version").output().expect("running rustc --version");
    let version = String::from_utf8_lossy(&version.stdout);
    assert!(
        version.starts_with(&format!("rustc {SNAPSHOT_RUSTC}.")),
        "the UI snapshots were written with rustc {SNAPSHOT_RUSTC}, this is {}: regenerate and review them \
         (see this file's docs), then update SNAPSHOT_RUSTC",
        version.trim()
    );
    let cases = trybuild::TestCases::new();
    cases.pass("tests/ui/pass/*.rs");
    cases.compile_fail("tests/ui/fail/*.rs");
}
