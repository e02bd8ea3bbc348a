//! 32 bytes with their canonical text: URL-safe base64 without padding.
//!
//! Session ids and store keys share this shape and nothing else: an id is a
//! credential, a store key names a record. Each wraps a `Token` in its own
//! type so the compiler keeps them apart; this module only encodes, decodes
//! and compares.

use std::cmp::Ordering;
use std::hash::{Hash, Hasher};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Number of bytes (256 bits).
pub(crate) const BYTES: usize = 32;
/// Length of the encoded form: `ceil(32 * 8 / 6)`.
pub(crate) const CHARS: usize = 43;

#[derive(Clone)]
pub(crate) struct Token {
    bytes: [u8; BYTES],
    /// The canonical text, inline: a token is made on every request (an id
    /// and its store key), and a heap allocation for each would cost more
    /// than the encoding. Always ASCII.
    text: [u8; CHARS],
}

// Identity is the bytes alone: the text is a function of them.
impl PartialEq for Token {
    fn eq(&self, other: &Self) -> bool {
        self.bytes == other.bytes
    }
}

impl Eq for Token {}

impl Hash for Token {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.bytes.hash(state);
    }
}

impl PartialOrd for Token {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Token {
    fn cmp(&self, other: &Self) -> Ordering {
        self.bytes.cmp(&other.bytes)
    }
}

impl Token {
    pub(crate) fn from_bytes(bytes: [u8; BYTES]) -> Self {
        let mut text = [0u8; CHARS];
        // 32 bytes always encode to exactly 43 characters, so this cannot fail.
        let _ = URL_SAFE_NO_PAD.encode_slice(bytes, &mut text);
        Self { bytes, text }
    }

    /// Exactly 43 characters of `A-Z a-z 0-9 - _`, whose last character has
    /// its two unused low bits zero (so every token has one spelling).
    pub(crate) fn parse(text: &str) -> Option<Self> {
        // Decoded by hand: this runs on every request that carries a cookie,
        // and checking the alphabet while decoding is one pass instead of two.
        let text: &[u8; CHARS] = text.as_bytes().try_into().ok()?;
        let mut bytes = [0u8; BYTES];
        for (chars, out) in text[..40].chunks_exact(4).zip(bytes[..30].chunks_exact_mut(3)) {
            let group = sextet(chars[0])? << 18 | sextet(chars[1])? << 12 | sextet(chars[2])? << 6 | sextet(chars[3])?;
            out.copy_from_slice(&group.to_be_bytes()[1..]);
        }
        // The last three characters carry 18 bits for the last 16 bits; the
        // two unused low bits must be zero.
        let tail = sextet(text[40])? << 12 | sextet(text[41])? << 6 | sextet(text[42])?;
        if tail & 0b11 != 0 {
            return None;
        }
        bytes[30..].copy_from_slice(&((tail >> 2) as u16).to_be_bytes());
        // The text was just proven canonical: keep it rather than encode the
        // bytes again.
        Some(Self { bytes, text: *text })
    }

    pub(crate) fn as_str(&self) -> &str {
        // Invariant: `text` holds base64 characters only, so this never
        // fails; the empty string is an unreachable fallback.
        std::str::from_utf8(&self.text).unwrap_or_default()
    }

    pub(crate) fn as_bytes(&self) -> &[u8; BYTES] {
        &self.bytes
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
mod tests {
    use super::*;

    #[test]
    fn parse_agrees_with_the_base64_crate() {
        for seed in 0..=255u8 {
            let bytes: [u8; BYTES] = std::array::from_fn(|i| seed.wrapping_mul(31).wrapping_add(i as u8 * 7));
            let text = URL_SAFE_NO_PAD.encode(bytes);
            assert_eq!(Token::parse(&text).map(|t| *t.as_bytes()), Some(bytes));
            assert_eq!(Token::from_bytes(bytes).as_str(), text);
            // Every last character: accepted exactly when base64 accepts it.
            for last in (0..=255u8).filter(|b| b.is_ascii()) {
                let mut candidate = text.clone().into_bytes();
                candidate[CHARS - 1] = last;
                let candidate = String::from_utf8(candidate).expect("ascii");
                let mut decoded = [0u8; BYTES];
                let base64 = match URL_SAFE_NO_PAD.decode_slice(&candidate, &mut decoded) {
                    Ok(BYTES) => Some(decoded),
                    _ => None,
                };
                assert_eq!(Token::parse(&candidate).map(|t| *t.as_bytes()), base64, "{candidate}");
            }
        }
    }

    #[test]
    fn parse_rejects_non_canonical_trailing_bits() {
        let token = Token::from_bytes([0; BYTES]);
        assert!(token.as_str().ends_with('A'));
        // 'B' sets one of the two unused low bits of the last character.
        let mut text = token.as_str().to_string();
        text.pop();
        text.push('B');
        assert!(Token::parse(&text).is_none());
    }
}
