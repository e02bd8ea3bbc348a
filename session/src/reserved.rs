//! The keys sessionkit keeps for itself in a session's data.
//!
//! Bookkeeping travels with the data, under keys starting with
//! `__sessionkit.`, so that every store persists it without knowing about it
//! and a third-party store gets user listings and lifetimes for free. The
//! handle hides these keys from handlers ([`Session::data`](crate::Session::data)
//! never shows them, [`Session::set`](crate::Session::set) refuses them) and
//! typed `SessionData` structs never see them.
//!
//! | key | value | written |
//! | --- | --- | --- |
//! | [`CREATED_AT`] | Unix ms | when the session is first stored |
//! | [`LAST_ACTIVE`] | Unix ms | on every write, and on rolling refreshes (at most once a minute) |
//! | [`USER`] | the string given to [`Session::login`](crate::Session::login) | at login |
//! | [`LINEAGE`] | a random tag shared by a session and the sessions it was regenerated into | at login |
//! | [`KEYED_BY`] | `"sha256"` or `"id"`: how store keys derive from ids | when the session is first stored |
//!
//! Stores read exactly one of them: [`USER`], to keep their user index.

use std::time::SystemTime;

use crate::{SessionMap, expiry};

/// Every reserved key starts with this.
pub const PREFIX: &str = "__sessionkit.";
/// When the session was created, Unix ms.
pub const CREATED_AT: &str = "__sessionkit.created_at";
/// When the session was last written (or refreshed), Unix ms.
pub const LAST_ACTIVE: &str = "__sessionkit.last_active";
/// The user the session belongs to.
pub const USER: &str = "__sessionkit.user";
/// A tag shared by a session and every session it was regenerated into.
pub const LINEAGE: &str = "__sessionkit.lineage";
/// How the session's store key was derived from its id: [`KEYED_BY_SHA256`]
/// or [`KEYED_BY_ID`]. Lets a migration tell two keyings apart.
pub const KEYED_BY: &str = "__sessionkit.keyed_by";
/// [`KEYED_BY`]'s value when store keys are the SHA-256 of the ids.
pub const KEYED_BY_SHA256: &str = "sha256";
/// [`KEYED_BY`]'s value when store keys are the ids themselves.
pub const KEYED_BY_ID: &str = "id";

/// Whether `key` is one of sessionkit's own.
pub fn is_reserved(key: &str) -> bool {
    key.starts_with(PREFIX)
}

/// The user `data` belongs to, if any: what a store's user index follows.
pub fn user_of(data: &SessionMap) -> Option<&str> {
    data.get(USER).and_then(serde_json::Value::as_str)
}

/// An instant stored under `key` as Unix ms.
pub(crate) fn instant(data: &SessionMap, key: &str) -> Option<SystemTime> {
    data.get(key).and_then(serde_json::Value::as_i64).map(expiry::from_unix_ms)
}

/// `instant` as a value to store.
pub(crate) fn stamp(instant: SystemTime) -> serde_json::Value {
    serde_json::Value::from(expiry::to_unix_ms(instant))
}
