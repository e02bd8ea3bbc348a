//! What a store keeps for one session: the data map and its expiry.

use std::time::SystemTime;

use crate::{expiry, reserved};

/// The session's data: a JSON object of string keys to any JSON values.
pub type SessionMap = serde_json::Map<String, serde_json::Value>;

/// One stored session.
///
/// Its `data` holds the handler's keys and sessionkit's own bookkeeping
/// (see [`crate::reserved`]), which the accessors below read.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SessionRecord {
    /// The key/value data.
    pub data: SessionMap,
    /// When the record stops existing; `None` keeps it until it is deleted.
    pub expires_at: Option<SystemTime>,
}

impl SessionRecord {
    /// A record holding `data` until `expires_at`.
    pub fn new(data: SessionMap, expires_at: Option<SystemTime>) -> Self {
        Self { data, expires_at }
    }

    /// Whether the record is expired at `now` (expiry is inclusive).
    pub fn is_expired_at(&self, now: SystemTime) -> bool {
        expiry::is_expired(self.expires_at, now)
    }

    /// The expiry as Unix milliseconds, the form stores persist.
    pub fn expires_at_unix_ms(&self) -> Option<i64> {
        self.expires_at.map(expiry::to_unix_ms)
    }

    /// The user the session belongs to ([`Session::login`](crate::Session::login)).
    pub fn user(&self) -> Option<&str> {
        reserved::user_of(&self.data)
    }

    /// When the session was created, if recorded.
    pub fn created_at(&self) -> Option<SystemTime> {
        reserved::instant(&self.data, reserved::CREATED_AT)
    }

    /// When the session was last written or refreshed, if recorded.
    pub fn last_active(&self) -> Option<SystemTime> {
        reserved::instant(&self.data, reserved::LAST_ACTIVE)
    }
}
