//! Session stores for [sessionkit](https://docs.rs/sessionkit), each behind a
//! cargo feature:
//!
//! | store | feature | for |
//! | --- | --- | --- |
//! | [`MemoryStore`] | `memory` (default) | one process, tests, development |
//! | [`FileStore`] | `file` | one machine, no database: one JSON file per session, durable, shareable between processes |
//!
//! Every store here passes sessionkit's conformance kit, including atomic
//! key-level `update`. [`Sweeper`] removes expired sessions from any store in
//! the background.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

// The shared writer thread of the durable stores; compiled for its own tests
// until one of them uses it.
#[cfg(feature = "file")]
mod file;
#[cfg(test)]
mod group_commit;
#[cfg(feature = "memory")]
mod memory;
mod sweeper;

#[cfg(feature = "file")]
pub use file::FileStore;
#[cfg(feature = "memory")]
pub use memory::MemoryStore;
pub use sweeper::Sweeper;
