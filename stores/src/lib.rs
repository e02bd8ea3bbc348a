//! Session stores for [sessionkit](https://docs.rs/sessionkit), each behind a
//! cargo feature:
//!
//! | store | feature | for |
//! | --- | --- | --- |
//! | [`MemoryStore`] | `memory` (default) | one process, tests, development |
//! | [`RedisStore`] | `redis` | many app servers sharing one session space in Redis or Valkey |
//!
//! Every store here passes sessionkit's conformance kit, including atomic
//! key-level `update`. [`Sweeper`] removes expired sessions from any store in
//! the background.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

// The shared writer thread of the durable stores; compiled for its own tests
// until one of them uses it.
#[cfg(test)]
mod group_commit;
#[cfg(feature = "memory")]
mod memory;
#[cfg(feature = "redis")]
mod redis;
mod sweeper;

#[cfg(feature = "memory")]
pub use memory::MemoryStore;
#[cfg(feature = "redis")]
pub use redis::{RedisStore, RedisStoreBuilder};
pub use sweeper::Sweeper;
