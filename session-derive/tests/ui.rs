//! Compile-time behaviour of `#[derive(SessionData)]`: what must compile
//! (`ui/pass`) and the exact errors, with their spans, for what must not
//! (`ui/fail`, snapshots in `.stderr` files).
//!
//! The snapshots hold rustc's wording, so they are tied to the toolchain in
//! `rust-toolchain.toml`. After an intended change, regenerate them with
//! `TRYBUILD=overwrite cargo test -p sessionkit-derive --test ui` and review
//! every diff.

#[test]
fn ui() {
    let cases = trybuild::TestCases::new();
    cases.pass("tests/ui/pass/*.rs");
    cases.compile_fail("tests/ui/fail/*.rs");
}
