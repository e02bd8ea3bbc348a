//! Session stores for [sessionkit](https://docs.rs/sessionkit), each behind a
//! cargo feature:
//!
//! | store | feature | for |
//! | --- | --- | --- |
//! | [`MemoryStore`] | `memory` (default) | one process, tests, development |
//!
//! Every store here passes sessionkit's conformance kit, including atomic
//! key-level `update`.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[cfg(feature = "memory")]
mod memory;

#[cfg(feature = "memory")]
pub use memory::MemoryStore;
