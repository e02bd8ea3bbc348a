//! Session stores for [sessionkit](https://docs.rs/sessionkit), each behind a
//! cargo feature:
//!
//! | store | feature | for |
//! | --- | --- | --- |
//! | [`MemoryStore`] | `memory` (default) | one process, tests, development |
//! | [`FileStore`] | `file` | one machine, no database: one JSON file per session, durable, shareable between processes |
//! | [`RedbStore`] | `redb` | one process, sessions that survive restarts, no server to run |
//! | [`RedisStore`] | `redis` | many app servers sharing one session space in Redis or Valkey |
//! | [`PostgresStore`] | `postgres` | many app servers sharing one session space in the PostgreSQL they already run |
//! | [`SqliteStore`] | `sqlite` | one machine, sessions that survive restarts, in a file or in your app's SQLite database |
//!
//! [`open`] gives any of them from a URL (`memory:`, `file:DIR`,
//! `sqlite:PATH`, `redb:PATH`, `redis://…`, `postgres://…`; see [`StoreUrl`]).
//!
//! Every store here passes sessionkit's conformance kit, including atomic
//! key-level `update`. [`Sweeper`] removes expired sessions from any store in
//! the background.

#![forbid(unsafe_code)]
#![warn(missing_docs)]
// Feature-gated items carry a badge on docs.rs naming their feature.
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "file")]
mod file;
#[cfg(fuzzing)]
#[doc(hidden)]
pub mod fuzz_hooks;
// The shared writer thread of the durable stores.
#[cfg(any(test, feature = "redb", feature = "sqlite"))]
mod group_commit;
#[cfg(any(feature = "file", feature = "redb", feature = "sqlite"))]
mod inline_reads;
#[cfg(feature = "memory")]
mod memory;
mod open;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "redb")]
mod redb;
#[cfg(feature = "redis")]
mod redis;
#[cfg(feature = "sqlite")]
mod sqlite;
mod sweeper;

#[cfg(feature = "postgres")]
pub use self::postgres::{PostgresStore, PostgresStoreBuilder};
#[cfg(feature = "redb")]
pub use self::redb::{RedbDurability, RedbStore, RedbStoreBuilder};
#[cfg(feature = "redis")]
pub use self::redis::{RedisStore, RedisStoreBuilder};
#[cfg(feature = "file")]
pub use file::FileStore;
#[cfg(feature = "memory")]
pub use memory::{MemoryStore, MemoryStoreBuilder};
pub use open::{OpenError, StoreUrl, open, redact};
/// The rusqlite this crate was built with, for [`SqliteStore::from_connection`].
#[cfg(feature = "sqlite")]
pub use rusqlite;
#[cfg(feature = "sqlite")]
pub use sqlite::{SqliteStore, SqliteStoreBuilder};
/// The sqlx this crate was built with, for [`PostgresStore::from_pool`].
#[cfg(feature = "postgres")]
pub use sqlx;
pub use sweeper::{Sweeper, SweeperError};
