//! Session identifiers: 256 random bits from the operating system, written as
//! URL-safe base64 without padding.
//!
//! An id is a bearer credential. Whoever holds it holds the session, so this
//! module is strict in both directions: [`SessionId::generate`] draws from the
//! OS CSPRNG only, and [`SessionId::parse`] accepts exactly the canonical
//! 43-character form and nothing else, so no client-chosen text ever reaches a
//! store. `Debug` and `Display` are deliberately different: `Debug` (what ends
//! up in logs) shows a short prefix only.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::Digest as _;

/// Number of random bytes in an id (256 bits).
const ID_BYTES: usize = 32;
/// Length of the encoded form: `ceil(32 * 8 / 6)`.
const ID_CHARS: usize = 43;
/// How many characters of the id `Debug` shows: 48 bits, enough to correlate
/// log lines, far too few to guess the rest.
const DEBUG_PREFIX: usize = 8;

/// A session identifier.
///
/// Create one with [`SessionId::generate`], or accept one from a client with
/// [`SessionId::parse`]. The canonical text form ([`SessionId::as_str`],
/// `Display`) is what goes into the cookie and what stores use as their key.
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
#[derive(Clone)]
pub struct SessionId {
    bytes: [u8; ID_BYTES],
    /// The canonical text, inline: an id is made on every request (and its
    /// SHA-256 store key too), and a heap allocation for each would cost
    /// more than the encoding. Always ASCII.
    text: [u8; ID_CHARS],
}

// Identity is the bytes alone: the text is a function of them.
impl PartialEq for SessionId {
    fn eq(&self, other: &Self) -> bool {
        self.bytes == other.bytes
    }
}

impl Eq for SessionId {}

impl Hash for SessionId {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.bytes.hash(state);
    }
}

impl PartialOrd for SessionId {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for SessionId {
    fn cmp(&self, other: &Self) -> Ordering {
        self.bytes.cmp(&other.bytes)
    }
}

impl SessionId {
    /// Draws a fresh id from the operating system's CSPRNG.
    ///
    /// # Panics
    ///
    /// If the operating system cannot provide random bytes. There is no safe
    /// fallback for a credential generator, and on every supported platform
    /// this only happens when the system itself is broken.
    pub fn generate() -> Self {
        let mut bytes = [0u8; ID_BYTES];
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
        // Decoded by hand: this runs on every request that carries a cookie,
        // and checking the alphabet while decoding is one pass instead of two.
        let text: &[u8; ID_CHARS] = text.as_bytes().try_into().ok()?;
        let mut bytes = [0u8; ID_BYTES];
        for (chars, out) in text[..40].chunks_exact(4).zip(bytes[..30].chunks_exact_mut(3)) {
            let group = sextet(chars[0])? << 18 | sextet(chars[1])? << 12 | sextet(chars[2])? << 6 | sextet(chars[3])?;
            out.copy_from_slice(&group.to_be_bytes()[1..]);
        }
        // The last three characters carry 18 bits for the last 16 bits of
        // the id; the two unused low bits must be zero, so that every id
        // has exactly one spelling.
        let tail = sextet(text[40])? << 12 | sextet(text[41])? << 6 | sextet(text[42])?;
        if tail & 0b11 != 0 {
            return None;
        }
        bytes[30..].copy_from_slice(&((tail >> 2) as u16).to_be_bytes());
        // The text was just proven canonical: keep it rather than encode the
        // bytes again.
        Some(Self { bytes, text: *text })
    }

    /// The canonical text form, as sent in the cookie.
    pub fn as_str(&self) -> &str {
        // Invariant: `text` holds base64 characters only, so this never
        // fails; the empty string is an unreachable fallback.
        std::str::from_utf8(&self.text).unwrap_or_default()
    }

    /// The raw 32 bytes, for stores that key by bytes.
    pub fn as_bytes(&self) -> &[u8; ID_BYTES] {
        &self.bytes
    }

    /// Rebuilds an id from its raw bytes (the inverse of [`SessionId::as_bytes`]).
    pub fn from_bytes(bytes: [u8; ID_BYTES]) -> Self {
        let mut text = [0u8; ID_CHARS];
        // 32 bytes always encode to exactly 43 characters, so this cannot fail.
        let _ = URL_SAFE_NO_PAD.encode_slice(bytes, &mut text);
        Self { bytes, text }
    }

    /// The SHA-256 of this id, as an id of the same form.
    ///
    /// The layer keys the store by this value when ids at rest are hashed
    /// (see [`SessionConfig::hash_ids_at_rest`](crate::SessionConfig::hash_ids_at_rest)):
    /// a leaked store then holds no value that works as a cookie.
    pub fn hashed(&self) -> Self {
        Self::from_bytes(sha2::Sha256::digest(self.bytes).into())
    }
}

/// The value of one character of the URL-safe base64 alphabet.
fn sextet(byte: u8) -> Option<u32> {
    let value = match byte {
        b'A'..=b'Z' => byte - b'A',
        b'a'..=b'z' => byte - b'a' + 26,
        b'0'..=b'9' => byte - b'0' + 52,
        b'-' => 62,
        b'_' => 63,
        _ => return None,
    };
    Some(u32::from(value))
}

#[cfg(test)]
fn is_url_safe_base64(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_'
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
mod tests {
    use super::*;

    #[test]
    fn generated_ids_are_canonical_and_distinct() {
        let a = SessionId::generate();
        let b = SessionId::generate();
        assert_ne!(a, b);
        assert_eq!(a.as_str().len(), ID_CHARS);
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
            if len == ID_CHARS {
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
    fn parse_agrees_with_the_base64_crate() {
        for seed in 0..=255u8 {
            let bytes: [u8; ID_BYTES] = std::array::from_fn(|i| seed.wrapping_mul(31).wrapping_add(i as u8 * 7));
            let text = URL_SAFE_NO_PAD.encode(bytes);
            assert_eq!(SessionId::parse(&text).map(|id| *id.as_bytes()), Some(bytes));
            // Every last character: accepted exactly when base64 accepts it.
            for last in (0..=255u8).filter(|b| b.is_ascii()) {
                let mut candidate = text.clone().into_bytes();
                candidate[ID_CHARS - 1] = last;
                let candidate = String::from_utf8(candidate).expect("ascii");
                let mut decoded = [0u8; ID_BYTES];
                let base64 = match URL_SAFE_NO_PAD.decode_slice(&candidate, &mut decoded) {
                    Ok(ID_BYTES) => Some(decoded),
                    _ => None,
                };
                assert_eq!(SessionId::parse(&candidate).map(|id| *id.as_bytes()), base64, "{candidate}");
            }
        }
    }

    #[test]
    fn parse_rejects_non_canonical_trailing_bits() {
        let id = SessionId::from_bytes([0; ID_BYTES]);
        assert!(id.as_str().ends_with('A'));
        // 'B' sets one of the two unused low bits of the last character.
        let mut text = id.as_str().to_string();
        text.pop();
        text.push('B');
        assert_eq!(SessionId::parse(&text), None);
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
        assert_eq!(parsed.cmp(&rebuilt), Ordering::Equal);
        let set: std::collections::HashSet<_> = [parsed.clone(), rebuilt.clone()].into_iter().collect();
        assert_eq!(set.len(), 1);
        assert_eq!(rebuilt.as_str(), parsed.as_str());
        assert_eq!(rebuilt.clone().as_str(), parsed.as_str());
    }

    #[test]
    fn hashed_is_stable_and_not_the_id() {
        let id = SessionId::generate();
        assert_eq!(id.hashed(), id.hashed());
        assert_ne!(id.hashed(), id);
        assert_ne!(id.hashed().hashed(), id.hashed());
        assert!(SessionId::parse(id.hashed().as_str()).is_some());
    }
}
