//! Reading the session id from `Cookie` headers (or the id header, see
//! [`crate::transport`]) and writing `Set-Cookie`.
//!
//! Building cookies uses the `cookie` crate; signatures are
//! [`crate::signature`]'s. Whatever the client sends, the only thing that
//! leaves this module is a [`SessionId`] that parsed strictly (and
//! verified, when a key is set).

use std::time::{Duration, SystemTime};

use cookie::Cookie;
use http::HeaderValue;

use crate::{SessionConfig, SessionId, signature};

/// What the request's cookies said about the session.
#[derive(Debug, Default)]
pub(crate) struct RequestCookie {
    /// The first cookie of our name whose value verified and parsed.
    pub(crate) id: Option<SessionId>,
    /// Whether any cookie of our name was sent, valid or not.
    pub(crate) present: bool,
}

/// Finds the session id in every `Cookie` header, first valid one winning.
///
/// Splits the headers as `Cookie::split_parse` does (pairs separated by
/// `;`, name and value trimmed, segments without `=` or with an empty name
/// skipped), without building a `Cookie` for every pair: this runs on every
/// request that loads its session.
pub(crate) fn read(headers: &[HeaderValue], config: &SessionConfig) -> RequestCookie {
    let mut found = RequestCookie::default();
    for header in headers {
        // Browsers send only ASCII here, but one bad byte elsewhere in the
        // header must not hide our cookie. (The strict check first: it is
        // faster on the valid text nearly every request carries.)
        let text = match std::str::from_utf8(header.as_bytes()) {
            Ok(text) => std::borrow::Cow::Borrowed(text),
            Err(_) => String::from_utf8_lossy(header.as_bytes()),
        };
        for pair in text.split(';') {
            let Some((name, value)) = pair.split_once('=') else {
                continue;
            };
            if name.trim() != config.cookie_name {
                continue;
            }
            found.present = true;
            if let Some(id) = verified_id(value.trim(), &config.cookie_name, config) {
                found.id = Some(id);
                return found;
            }
        }
    }
    found
}

/// The session id in the id header's value, when ids travel in a header.
pub(crate) fn read_header(header: Option<&HeaderValue>, config: &SessionConfig) -> RequestCookie {
    let (Some(header), Some(transport)) = (header, config.transport.header()) else {
        return RequestCookie::default();
    };
    let Some(value) = header.to_str().ok().and_then(|value| transport.credential(value)) else {
        return RequestCookie { id: None, present: true };
    };
    RequestCookie { id: verified_id(value, transport.request().as_str(), config), present: true }
}

/// The id in `value`, sent under the credential `name`: verified first
/// when signing is on.
fn verified_id(value: &str, name: &str, config: &SessionConfig) -> Option<SessionId> {
    if config.signing_keys.is_empty() {
        return SessionId::parse(value);
    }
    SessionId::parse(signature::verify(&config.signing_keys, name, value)?)
}

/// What a client holds for `id` under the credential `name`: the id, or
/// the id signed with the first signing key.
pub(crate) fn credential_value(config: &SessionConfig, name: &str, id: &SessionId) -> String {
    match config.signing_keys.first() {
        Some(key) => signature::sign(key, name, id.as_str()),
        None => id.as_str().to_owned(),
    }
}

/// The `Set-Cookie` value that gives the client `id` until `expires_at`.
pub(crate) fn session_cookie(
    config: &SessionConfig,
    id: &SessionId,
    expires_at: Option<SystemTime>,
    now: SystemTime,
) -> Option<HeaderValue> {
    let mut cookie = base_cookie(config, credential_value(config, &config.cookie_name, id));
    if let (false, Some(at)) = (config.browser_session_cookie, expires_at) {
        cookie.set_max_age(max_age(at, now));
    }
    header_value(&cookie)
}

/// The `Set-Cookie` value that makes the browser drop the session cookie.
/// It repeats Path, Domain, Secure, HttpOnly and SameSite: a browser only
/// replaces a cookie whose name, path and domain match, and some refuse a
/// replacement that weakens its flags.
pub(crate) fn removal_cookie(config: &SessionConfig) -> Option<HeaderValue> {
    let mut cookie = base_cookie(config, String::new());
    cookie.make_removal();
    header_value(&cookie)
}

fn base_cookie(config: &SessionConfig, value: String) -> Cookie<'static> {
    let mut cookie = Cookie::new(config.cookie_name.clone(), value);
    cookie.set_path(config.path.clone());
    if let Some(domain) = &config.domain {
        cookie.set_domain(domain.clone());
    }
    cookie.set_secure(config.secure);
    cookie.set_http_only(config.http_only);
    cookie.set_same_site(config.same_site);
    if config.partitioned {
        cookie.set_partitioned(true);
    }
    cookie
}

/// Whole seconds until `expires_at`, rounded up so that the cookie never dies
/// before the record does.
fn max_age(expires_at: SystemTime, now: SystemTime) -> cookie::time::Duration {
    let left = expires_at.duration_since(now).unwrap_or(Duration::ZERO);
    let secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
    cookie::time::Duration::seconds(i64::try_from(secs).unwrap_or(i64::MAX))
}

fn header_value(cookie: &Cookie<'_>) -> Option<HeaderValue> {
    // Config validation keeps names and attributes header-safe; should that
    // ever fail, no cookie is better than a broken header.
    HeaderValue::try_from(cookie.to_string()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::NullStore;

    fn headers(values: &[&[u8]]) -> Vec<HeaderValue> {
        values.iter().map(|value| HeaderValue::from_bytes(value).expect("test header")).collect()
    }

    #[test]
    fn finds_the_first_valid_cookie_across_headers() {
        let config = SessionConfig::builder(NullStore).build().expect("valid config");
        let id = SessionId::generate();
        let first = format!("other=1; id=garbage; id={id}");
        let second = format!("id={}", SessionId::generate());
        let found = read(&headers(&[first.as_bytes(), second.as_bytes()]), &config);
        assert_eq!(found.id, Some(id));
        assert!(found.present);
    }

    #[test]
    fn invalid_cookies_are_present_but_yield_no_id() {
        let config = SessionConfig::builder(NullStore).build().expect("valid config");
        let found = read(&headers(&[b"id=../../etc/passwd", b"id=\xff\xfe"]), &config);
        assert_eq!(found.id, None);
        assert!(found.present);
        let found = read(&headers(&[b"other=1"]), &config);
        assert!(!found.present);
    }

    #[test]
    fn pairs_split_as_the_cookie_crate_splits_them() {
        let config = SessionConfig::builder(NullStore).build().expect("valid config");
        let id = SessionId::generate();
        for header in [
            format!("id={id}"),
            format!("  id = {id}  "),
            format!(";; novalue; =x; other=1;id={id}"),
            format!("a=1 ;  ; id={id}; id=later"),
            format!("\u{a0}id={id}"),
        ] {
            let found = read(&headers(&[header.as_bytes()]), &config);
            let expected = Cookie::split_parse(header.as_str())
                .flatten()
                .filter(|cookie| cookie.name() == "id")
                .find_map(|cookie| SessionId::parse(cookie.value()));
            assert_eq!(found.id, expected, "{header:?}");
            assert_eq!(found.present, expected.is_some(), "{header:?}");
        }
        for header in ["id", "idx=1", "xid=1", "id"] {
            assert!(!read(&headers(&[header.as_bytes()]), &config).present, "{header:?}");
        }
    }

    #[test]
    fn a_bad_byte_elsewhere_does_not_hide_the_cookie() {
        let config = SessionConfig::builder(NullStore).build().expect("valid config");
        let id = SessionId::generate();
        let raw = [b"junk=\xff; id=".as_slice(), id.as_str().as_bytes()].concat();
        assert_eq!(read(&headers(&[&raw]), &config).id, Some(id));
    }

    #[test]
    fn signed_cookies_round_trip_and_forgeries_are_ignored() {
        let config =
            SessionConfig::builder(NullStore).signing_key(cookie::Key::generate()).build().expect("valid config");
        let id = SessionId::generate();
        let now = SystemTime::now();
        let set = session_cookie(&config, &id, None, now).expect("cookie");
        let pair = set.to_str().expect("ascii").split(';').next().expect("pair").to_owned();
        assert_eq!(read(&headers(&[pair.as_bytes()]), &config).id, Some(id.clone()));
        // The bare id is not accepted once signing is on.
        let bare = format!("id={id}");
        assert_eq!(read(&headers(&[bare.as_bytes()]), &config).id, None);
        // Nor a value signed with another key.
        let other =
            SessionConfig::builder(NullStore).signing_key(cookie::Key::generate()).build().expect("valid config");
        let forged = session_cookie(&other, &id, None, now).expect("cookie");
        let forged = forged.to_str().expect("ascii").split(';').next().expect("pair").to_owned();
        assert_eq!(read(&headers(&[forged.as_bytes()]), &config).id, None);
    }

    #[test]
    fn set_cookie_carries_every_attribute() {
        let config = SessionConfig::builder(NullStore)
            .domain(Some("example.com".to_string()))
            .path("/app")
            .same_site(cookie::SameSite::Strict)
            .build()
            .expect("valid config");
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let id = SessionId::generate();
        let value = session_cookie(&config, &id, Some(now + Duration::from_millis(90_500)), now).expect("cookie");
        let text = value.to_str().expect("ascii");
        for part in [
            &format!("id={id}"),
            "Max-Age=91",
            "Path=/app",
            "Domain=example.com",
            "Secure",
            "HttpOnly",
            "SameSite=Strict",
        ] {
            assert!(text.contains(part), "{text} lacks {part}");
        }
        let removal = removal_cookie(&config).expect("cookie");
        let text = removal.to_str().expect("ascii");
        for part in ["id=", "Max-Age=0", "Path=/app", "Domain=example.com", "Secure", "HttpOnly", "SameSite=Strict"] {
            assert!(text.contains(part), "{text} lacks {part}");
        }
    }

    #[test]
    fn browser_session_cookies_have_no_max_age() {
        let config = SessionConfig::builder(NullStore).browser_session_cookie(true).build().expect("valid config");
        let now = SystemTime::now();
        let value = session_cookie(&config, &SessionId::generate(), Some(now + Duration::from_secs(60)), now);
        assert!(!value.expect("cookie").to_str().expect("ascii").contains("Max-Age"));
    }
}
