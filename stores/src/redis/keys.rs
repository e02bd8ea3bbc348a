//! The key layout: which Redis keys belong to a session or to a user, and
//! the Redis Cluster hash slot each one lands in.
//!
//! Everything that belongs to one session shares the session's hash tag,
//! `{<store key>}`, so one script can touch all of it on a Cluster: the
//! session hash `<prefix>{<store key>}` and its lease
//! `<prefix>{<store key>}:lease`. A user's index is one key of its own,
//! `<prefix>user:{<user>}`; it is in another slot than the user's sessions,
//! which is why index updates are ordered, not atomic, with session writes
//! (see `index.rs`). A rename's two keys are in two slots, hence its
//! two-step protocol (see `rename.rs`).

use sessionkit::{StoreError, StoreKey};

/// Redis Cluster's number of hash slots.
#[cfg(test)]
pub(super) const SLOTS: u16 = 16_384;

/// The hash holding a session.
pub(super) fn session(prefix: &str, key: &StoreKey) -> String {
    let mut out = String::with_capacity(prefix.len() + key.as_str().len() + 2);
    out.push_str(prefix);
    out.push('{');
    out.push_str(key.as_str());
    out.push('}');
    out
}

/// The string holding a session's exclusive lease: the session's own tag,
/// so a fenced write checks it in the same script.
pub(super) fn lease(prefix: &str, key: &StoreKey) -> String {
    let mut out = session(prefix, key);
    out.push_str(":lease");
    out
}

/// The sorted set listing a user's sessions. One key per user, so each
/// index script touches one slot whatever the user's name holds (braces
/// included).
pub(super) fn user_index(prefix: &str, user: &str) -> String {
    let mut out = String::with_capacity(prefix.len() + user.len() + 7);
    out.push_str(prefix);
    out.push_str("user:{");
    out.push_str(user);
    out.push('}');
    out
}

/// The store key of a session hash's Redis key, if it is one: exactly
/// `<prefix>{<43 characters>}`, so leases, markers' neighbours and index
/// keys are never mistaken for sessions.
pub(super) fn parse_session(prefix: &str, redis_key: &[u8]) -> Option<StoreKey> {
    let rest = redis_key.strip_prefix(prefix.as_bytes())?;
    let inner = rest.strip_prefix(b"{")?.strip_suffix(b"}")?;
    StoreKey::parse(std::str::from_utf8(inner).ok()?)
}

/// The `SCAN MATCH` pattern of every key that may be a session hash (and
/// also leases, which [`parse_session`] then drops).
pub(super) fn session_pattern(prefix: &str) -> String {
    let mut pattern = String::with_capacity(prefix.len() + 4);
    for c in prefix.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push_str("{*");
    pattern
}

/// Refuses a prefix that would split a session from its lease across
/// slots. Redis hashes only the part between the first `{` and the next
/// `}`, and the whole key when that part is empty: a prefix whose first
/// `{` is directly followed by `}` would have every key hashed whole.
/// (A prefix holding a complete tag of its own, `app{x}:`, is allowed: it
/// puts every key in one slot, which is correct, if not spread out.)
pub(super) fn check_prefix(prefix: &str) -> Result<(), StoreError> {
    if prefix.find('{').is_some_and(|at| prefix[at + 1..].starts_with('}')) {
        return Err(StoreError::config(
            "a RedisStore prefix must not contain an empty hash tag `{}`: Redis Cluster would hash each key whole, \
             and a session and its lease could land in different slots",
        ));
    }
    Ok(())
}

/// The Redis Cluster hash slot of `key`: CRC16 (XMODEM) of its hash tag
/// (the part between the first `{` and the next `}`, if not empty) or of
/// the whole key, modulo 16384. (The store itself never needs it: the
/// tests use it to prove every call stays in one slot.)
#[cfg(test)]
pub(super) fn slot(key: &[u8]) -> u16 {
    let hashed = key
        .iter()
        .position(|&b| b == b'{')
        .and_then(|open| {
            let rest = &key[open + 1..];
            rest.iter().position(|&b| b == b'}').filter(|&close| close > 0).map(|close| &rest[..close])
        })
        .unwrap_or(key);
    crc16(hashed) % SLOTS
}

/// CRC16-CCITT (XMODEM): polynomial 0x1021, initial value 0, as Redis
/// Cluster computes it.
#[cfg(test)]
fn crc16(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in bytes {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 { (crc << 1) ^ 0x1021 } else { crc << 1 };
        }
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc16_and_slots_match_the_cluster_specification() {
        // The check value of CRC16/XMODEM, which the Cluster spec cites.
        assert_eq!(crc16(b"123456789"), 0x31C3);
        // Slots that `redis-cli CLUSTER KEYSLOT` answers.
        assert_eq!(slot(b"foo"), 12182);
        assert_eq!(slot(b"bar"), 5061);
        assert_eq!(slot(b"{user1000}.following"), slot(b"{user1000}.followers"));
        assert_eq!(slot(b"{user1000}.following"), slot(b"user1000"));
        // Only the first `{` counts, and an empty tag hashes the whole key.
        assert_eq!(slot(b"foo{}{bar}"), crc16(b"foo{}{bar}") % SLOTS);
        assert_eq!(slot(b"foo{{bar}}zap"), slot(b"{bar"));
        assert_eq!(slot(b"foo{bar}{zap}"), slot(b"bar"));
        assert_eq!(slot(b"no tag {at all"), crc16(b"no tag {at all") % SLOTS);
    }

    #[test]
    fn session_keys_parse_back_and_nothing_else_does() {
        let key = StoreKey::from_bytes([3; 32]);
        let redis_key = session("app:", &key);
        assert_eq!(redis_key, format!("app:{{{}}}", key.as_str()));
        assert_eq!(parse_session("app:", redis_key.as_bytes()), Some(key.clone()));
        assert_eq!(parse_session("app:", lease("app:", &key).as_bytes()), None);
        assert_eq!(parse_session("other:", redis_key.as_bytes()), None);
        assert_eq!(parse_session("app:", user_index("app:", "ada").as_bytes()), None);
        assert_eq!(parse_session("app:", b"app:{short}"), None);
    }

    #[test]
    fn the_scan_pattern_escapes_glob_characters_of_the_prefix() {
        assert_eq!(session_pattern("session:"), "session:{*");
        assert_eq!(session_pattern("a*b?[c]\\:"), "a\\*b\\?\\[c\\]\\\\:{*");
    }

    #[test]
    fn prefixes_with_an_empty_tag_are_refused() {
        assert!(check_prefix("session:").is_ok());
        assert!(check_prefix("app{tenant}:").is_ok());
        assert!(check_prefix("app{").is_ok());
        assert!(check_prefix("app}{").is_ok());
        assert!(check_prefix("app{}:").is_err());
        assert!(check_prefix("{}").is_err());
    }
}
