//! Shared pieces of sessionkit's benchmarks.
//!
//! The benchmarks themselves are in `benches/` (run them with
//! `cargo bench -p sessionkit-benches`); the report that turns their output
//! into `BENCHMARKS.md` is `src/bin/report.rs`. This library holds what
//! several of them need: payloads and populations ([`fixtures`]), the list of
//! stores under test ([`registry`]), run settings ([`settings`]), a loopback
//! HTTP load generator ([`load`]), facts about the machine ([`machine`]) the
//! result files the non-criterion benchmarks write ([`results`]) and a
//! Redis server's work per request ([`redis_stats`]).

#![forbid(unsafe_code)]

pub mod fixtures;
pub mod load;
pub mod machine;
pub mod redis_stats;
pub mod registry;
pub mod results;
pub mod settings;

pub use fixtures::payload;
