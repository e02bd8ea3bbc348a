//! Session identifiers: 256 random bits from the operating system, written as
//! URL-safe base64 without padding.
//!
//! An id is a bearer credential. Whoever holds it holds the session, so this
//! module is strict in both directions: [`SessionId::generate`] draws from the
//! OS CSPRNG only, and [`SessionId::parse`] accepts exactly the canonical
//! 43-character form and nothing else, so no client-chosen text ever reaches a
//! store. `Debug` and `Display` are deliberately different: `Debug` (what ends
//! up in logs) shows a short prefix only.

use std::fmt;

use crate::token::{BYTES, Token};

/// How many characters of the id `Debug` shows: 48 bits, enough to correlate
/// log lines, far too few to guess the rest.
pub(crate) const DEBUG_PREFIX: usize = 8;

/// A session identifier.
///
/// Create one with [`SessionId::generate`], or accept one from a client with
/// [`SessionId::parse`]. The canonical text form ([`SessionId::as_str`],
/// `Display`) is what goes into the cookie. Stores never see it: they are
/// keyed by a [`StoreKey`](crate::StoreKey) derived from it.
///
/// ```
/// use sessionkit::SessionId;
///
/// let id = SessionId::generate();
/// assert_eq!(id.as_str().len(), 43);
/// assert_eq!(SessionId::parse(id.as_str()), Some(id.clone()));
/// assert_eq!(SessionId::parse("../../etc/passwd"), None);
/// // Debug never prints the whole credential.
/// assert!(!format!("{id:?}").contains(id.as_str()));
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(Token);

impl SessionId {
    /// Draws a fresh id from the operating system's CSPRNG.
    ///
    /// # Panics
    ///
    /// If the operating system cannot provide random bytes. There is no safe
    /// fallback for a credential generator, and on every supported platform
    /// this only happens when the system itself is broken.
    pub fn generate() -> Self {
        let mut bytes = [0u8; BYTES];
        if let Err(err) = getrandom::fill(&mut bytes) {
            // Invariant: a session id without OS entropy would be guessable.
            panic!("the operating system's random number generator failed: {err}");
        }
        Self::from_bytes(bytes)
    }

    /// Parses the canonical text form: exactly 43 characters of the URL-safe
    /// base64 alphabet (`A-Z a-z 0-9 - _`), no padding, and a final character
    /// whose unused low bits are zero (so every id has exactly one spelling).
    ///
    /// Anything else (wrong length, another alphabet, whitespace, `%`-escapes,
    /// path separators) returns `None`.
    pub fn parse(text: &str) -> Option<Self> {
        Token::parse(text).map(Self)
    }

    /// The canonical text form, as sent in the cookie.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; BYTES] {
        self.0.as_bytes()
    }

    /// Rebuilds an id from its raw bytes (the inverse of [`SessionId::as_bytes`]).
    pub fn from_bytes(bytes: [u8; BYTES]) -> Self {
        Self(Token::from_bytes(bytes))
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionId({}…)", &self.as_str()[..DEBUG_PREFIX])
    }
}

#[cfg(test)]
fn is_url_safe_base64(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_'
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::CHARS;

    #[test]
    fn generated_ids_are_canonical_and_distinct() {
        let a = SessionId::generate();
        let b = SessionId::generate();
        assert_ne!(a, b);
        assert_eq!(a.as_str().len(), CHARS);
        assert!(a.as_str().bytes().all(is_url_safe_base64));
        assert_eq!(SessionId::parse(a.as_str()).as_ref(), Some(&a));
        assert_eq!(SessionId::from_bytes(*a.as_bytes()), a);
    }

    #[test]
    fn many_ids_never_collide() {
        let ids: std::collections::HashSet<_> = (0..10_000).map(|_| SessionId::generate()).collect();
        assert_eq!(ids.len(), 10_000);
    }

    #[test]
    fn parse_rejects_every_wrong_length() {
        let good = SessionId::generate();
        for len in 0..100 {
            if len == CHARS {
                continue;
            }
            let text: String = good.as_str().chars().cycle().take(len).collect();
            assert_eq!(SessionId::parse(&text), None, "length {len}");
        }
    }

    #[test]
    fn parse_rejects_foreign_alphabets_and_shapes() {
        let good = SessionId::generate().to_string();
        let cases = [
            good.replace(|_c: char| true, "+"),
            format!("{}=", &good[..42]),
            format!("{} ", &good[..42]),
            format!("{}/", &good[..42]),
            format!("{}.", &good[..42]),
            format!("{}\0", &good[..42]),
            format!("{}%", &good[..42]),
            format!("{}é", &good[..41]),
            "../../../../../../../../../../../etc/passwd".to_string(),
            // Standard (non URL-safe) base64 of 32 bytes.
            "+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+".to_string(),
            // A UUID, as other libraries use.
            "67e55044-10b1-426f-9247-bb680e5fe0c8".to_string(),
        ];
        for case in &cases {
            assert_eq!(SessionId::parse(case), None, "{case:?}");
        }
    }

    #[test]
    fn debug_shows_only_a_prefix() {
        let id = SessionId::generate();
        let debug = format!("{id:?}");
        assert!(debug.contains(&id.as_str()[..DEBUG_PREFIX]));
        assert!(!debug.contains(&id.as_str()[..DEBUG_PREFIX + 1]));
        assert_eq!(id.to_string(), id.as_str());
    }

    #[test]
    fn parsed_and_rebuilt_ids_are_the_same_id() {
        let parsed = SessionId::generate();
        let rebuilt = SessionId::from_bytes(*parsed.as_bytes());
        assert_eq!(parsed, rebuilt);
        assert_eq!(parsed.cmp(&rebuilt), std::cmp::Ordering::Equal);
        let set: std::collections::HashSet<_> = [parsed.clone(), rebuilt.clone()].into_iter().collect();
        assert_eq!(set.len(), 1);
        assert_eq!(rebuilt.as_str(), parsed.as_str());
        assert_eq!(rebuilt.clone().as_str(), parsed.as_str());
    }
}
