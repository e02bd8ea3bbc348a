//! Signed ids: an HMAC-SHA256 over the credential's name and the id.
//!
//! With a signing key configured, the value a client holds is
//! `<mac><id>`: 43 characters of URL-safe base64 of the MAC, then the id's
//! 43. The MAC covers a domain tag, the cookie (or header) name and the
//! id, so a value signed for another cookie, or by another application
//! sharing the key, does not verify here. Values are signed with the first
//! key of the list and verified with any, so a key can be rotated without
//! logging anybody out: put the new key first, keep the old one until the
//! sessions it signed have expired, then drop it.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cookie::Key;
use hmac::{Hmac, KeyInit as _, Mac as _};
use sha2::Sha256;

use crate::token::CHARS;

/// Length of the encoded MAC: 32 bytes in URL-safe base64, no padding.
const MAC_CHARS: usize = 43;
/// Sets this use of a key apart from any other (the cookie crate's own
/// signed jar, another application).
const DOMAIN: &[u8] = b"sessionkit signed id v1\0";

fn mac(key: &Key, name: &str, id: &str) -> Hmac<Sha256> {
    // Invariant: HMAC takes keys of any length, so this never fails.
    #[allow(clippy::expect_used)]
    let mut mac = Hmac::<Sha256>::new_from_slice(key.signing()).expect("HMAC accepts a key of any length");
    mac.update(DOMAIN);
    mac.update(name.as_bytes());
    mac.update(b"\0");
    mac.update(id.as_bytes());
    mac
}

/// `id` signed for the credential `name` with `key`.
pub(crate) fn sign(key: &Key, name: &str, id: &str) -> String {
    let tag = mac(key, name, id).finalize().into_bytes();
    let mut value = URL_SAFE_NO_PAD.encode(tag);
    value.push_str(id);
    value
}

/// The id inside `value` if one of `keys` signed it for `name`.
pub(crate) fn verify<'a>(keys: &[Key], name: &str, value: &'a str) -> Option<&'a str> {
    if value.len() != MAC_CHARS + CHARS || !value.is_char_boundary(MAC_CHARS) {
        return None;
    }
    let (tag, id) = value.split_at(MAC_CHARS);
    let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
    // `verify_slice` compares in constant time.
    keys.iter().any(|key| mac(key, name, id).verify_slice(&tag).is_ok()).then_some(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SessionId;

    #[test]
    fn a_signed_id_verifies_with_its_key_its_name_only() {
        let (key, other) = (Key::generate(), Key::generate());
        let id = SessionId::generate();
        let signed = sign(&key, "id", id.as_str());
        assert_eq!(verify(std::slice::from_ref(&key), "id", &signed), Some(id.as_str()));
        assert_eq!(verify(std::slice::from_ref(&other), "id", &signed), None, "another key");
        assert_eq!(verify(std::slice::from_ref(&key), "other", &signed), None, "another cookie name");
        assert_eq!(verify(&[other.clone(), key.clone()], "id", &signed), Some(id.as_str()), "any key of the list");
        assert_eq!(verify(std::slice::from_ref(&key), "id", id.as_str()), None, "an unsigned id");
        let tampered = format!("{}{}", &signed[..MAC_CHARS], SessionId::generate());
        assert_eq!(verify(std::slice::from_ref(&key), "id", &tampered), None, "another id under the same MAC");
        assert_eq!(verify(&[], "id", &signed), None);
        assert_eq!(verify(std::slice::from_ref(&key), "id", "é"), None);
    }

    #[test]
    fn the_cookie_crates_own_signature_does_not_verify() {
        let key = Key::generate();
        let id = SessionId::generate();
        let mut jar = cookie::CookieJar::new();
        jar.signed_mut(&key).add(cookie::Cookie::new("id", id.to_string()));
        let theirs = jar.get("id").map(|c| c.value().to_owned()).unwrap_or_default();
        assert_eq!(verify(std::slice::from_ref(&key), "id", &theirs), None);
    }
}
