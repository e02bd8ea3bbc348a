//! `StoreKey`: what a store indexes a session by.
//!
//! Stores never see a session id. The layer derives each session's key from
//! its id: by default the SHA-256 of the id (ids hashed at rest, see
//! [`SessionConfig::hash_ids_at_rest`](crate::SessionConfig::hash_ids_at_rest)),
//! otherwise the id's own bytes. A key is its own type so that the compiler
//! keeps the credential (the cookie's id) apart from what the store holds.
//!
//! Listings ([`SessionStore::sessions_of`](crate::SessionStore::sessions_of),
//! [`scan`](crate::SessionStore::scan)) hand out store keys, and apps show
//! them as *handles* (a "sign out this device" button): with ids hashed at
//! rest, a handle names a session without being able to log in as it.

use std::fmt;

use sha2::Digest as _;

use crate::SessionId;
use crate::id::DEBUG_PREFIX;
use crate::token::{BYTES, Token};

/// The key a store holds a session under; also the session's handle in
/// listings.
///
/// ```
/// use sessionkit::{SessionId, StoreKey};
///
/// let id = SessionId::generate();
/// let key = StoreKey::hashed(&id);
/// assert_ne!(key.as_str(), id.as_str());
/// assert_eq!(StoreKey::parse(key.as_str()), Some(key.clone()));
/// // The same text form as an id, so file names and Redis keys stay safe.
/// assert_eq!(key.as_str().len(), 43);
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StoreKey(Token);

impl StoreKey {
    /// The SHA-256 of `id`: a store keyed this way holds nothing that works
    /// as a cookie.
    pub fn hashed(id: &SessionId) -> Self {
        Self::from_bytes(sha2::Sha256::digest(id.as_bytes()).into())
    }

    /// The id's own bytes, for deployments that turned hashing at rest off.
    /// Such a key *is* a credential: whoever reads it can log in as it.
    pub fn unhashed(id: &SessionId) -> Self {
        Self::from_bytes(*id.as_bytes())
    }

    /// Parses the 43-character text form (a handle sent back by a client, a
    /// file name), with the same strict rules as [`SessionId::parse`].
    pub fn parse(text: &str) -> Option<Self> {
        Token::parse(text).map(Self)
    }

    /// The key from its raw 32 bytes (the inverse of [`StoreKey::as_bytes`]).
    pub fn from_bytes(bytes: [u8; BYTES]) -> Self {
        Self(Token::from_bytes(bytes))
    }

    /// The canonical text form: 43 characters of `A-Z a-z 0-9 - _`.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// The raw 32 bytes, for stores that key by bytes.
    pub fn as_bytes(&self) -> &[u8; BYTES] {
        self.0.as_bytes()
    }
}

impl fmt::Display for StoreKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Short, like an id's: with hashing at rest turned off a key is the id.
impl fmt::Debug for StoreKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StoreKey({}…)", &self.as_str()[..DEBUG_PREFIX])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashed_keys_are_stable_and_not_the_id() {
        let id = SessionId::generate();
        assert_eq!(StoreKey::hashed(&id), StoreKey::hashed(&id));
        assert_ne!(StoreKey::hashed(&id).as_bytes(), id.as_bytes());
        assert_eq!(StoreKey::unhashed(&id).as_bytes(), id.as_bytes());
        let other = SessionId::generate();
        assert_ne!(StoreKey::hashed(&id), StoreKey::hashed(&other));
    }

    #[test]
    fn keys_round_trip_through_text_and_bytes() {
        let key = StoreKey::hashed(&SessionId::generate());
        assert_eq!(StoreKey::parse(key.as_str()), Some(key.clone()));
        assert_eq!(StoreKey::from_bytes(*key.as_bytes()), key);
        assert_eq!(key.to_string(), key.as_str());
        assert_eq!(StoreKey::parse("not a key"), None);
    }

    #[test]
    fn debug_shows_only_a_prefix() {
        let key = StoreKey::hashed(&SessionId::generate());
        let debug = format!("{key:?}");
        assert!(debug.contains(&key.as_str()[..DEBUG_PREFIX]));
        assert!(!debug.contains(&key.as_str()[..DEBUG_PREFIX + 1]));
    }
}
