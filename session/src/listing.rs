//! What a listing of a user's sessions shows: [`SessionInfo`].

use std::time::SystemTime;

use crate::{SessionMap, SessionRecord, StoreKey, reserved};

/// One of a user's sessions, as [`Session::sessions`](crate::Session::sessions)
/// lists it: a "your devices" page shows these, and signs one out by its
/// [`handle`](Self::handle).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct SessionInfo {
    /// Names the session for [`Session::revoke`](crate::Session::revoke):
    /// its store key, never its id. With ids hashed at rest (the default)
    /// a handle cannot be used to log in; with hashing turned off it is the
    /// id itself, so do not show it to anyone but the session's owner.
    pub handle: StoreKey,
    /// Whether this is the session of the request that listed it.
    pub current: bool,
    /// When the session was created, if recorded.
    pub created_at: Option<SystemTime>,
    /// When it was last written or refreshed, if recorded.
    pub last_active: Option<SystemTime>,
    /// When it expires; `None` for a session without expiry.
    pub expires_at: Option<SystemTime>,
    /// The handler's data (what an app stored to show here, such as a user
    /// agent), without sessionkit's own keys.
    pub data: SessionMap,
}

impl SessionInfo {
    /// The listing entry for `record`, stored under `key`.
    pub fn new(key: StoreKey, record: SessionRecord, current: bool) -> Self {
        let created_at = record.created_at();
        let last_active = record.last_active();
        let mut data = record.data;
        data.retain(|name, _| !reserved::is_reserved(name));
        Self { handle: key, current, created_at, last_active, expires_at: record.expires_at, data }
    }
}
