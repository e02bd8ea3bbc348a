//! Where the session id travels between client and server: a cookie (the
//! default), or a request header, for API and mobile clients that keep no
//! cookies.
//!
//! | transport | the client sends | a response that issues an id carries |
//! | --- | --- | --- |
//! | [`IdTransport::Cookie`] | the session cookie | `Set-Cookie` |
//! | [`IdTransport::Header`] | the header (`Authorization: Bearer <id>`, or `X-Session-Id: <id>`) | the response header with the new id (empty when the session ended) |
//! | [`IdTransport::CookieOrHeader`] | either; the cookie wins when both carry a valid id | both |
//!
//! A header carries exactly what a cookie would: the id, parsed as
//! strictly, and signed the same way when a signing key is set (for the
//! header's name instead of the cookie's). A response header is sent only
//! when the id changes: a new session stored, a login or a regenerate, or
//! the session's end; a rolling refresh changes nothing a header client
//! holds. Responses that issue an id in a header carry
//! `Cache-Control: no-store`, and responses that read a header-borne
//! session `Vary` on that header.

use http::HeaderName;
use http::header::AUTHORIZATION;

/// Where the session id travels; see the [module docs](self).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum IdTransport {
    /// In the session cookie only (the default).
    #[default]
    Cookie,
    /// In a header only: no cookie is read or set.
    Header(IdHeader),
    /// In the cookie or the header, for an app that serves browsers and
    /// API clients on the same routes.
    CookieOrHeader(IdHeader),
}

impl IdTransport {
    /// Whether ids are read from and sent in the cookie.
    pub fn uses_cookie(&self) -> bool {
        matches!(self, IdTransport::Cookie | IdTransport::CookieOrHeader(_))
    }

    /// The header, when ids travel in one.
    pub fn header(&self) -> Option<&IdHeader> {
        match self {
            IdTransport::Cookie => None,
            IdTransport::Header(header) | IdTransport::CookieOrHeader(header) => Some(header),
        }
    }
}

/// A header that carries the session id.
///
/// ```
/// use sessionkit::SessionConfig;
/// use sessionkit::transport::{IdHeader, IdTransport};
/// use sessionkit_stores::MemoryStore;
///
/// // Requests send `Authorization: Bearer <id>`; responses that issue an
/// // id send it back in `X-Session-Id`.
/// let config = SessionConfig::builder(MemoryStore::new()).transport(IdTransport::Header(IdHeader::bearer()));
/// # let _ = config;
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdHeader {
    request: HeaderName,
    bearer: bool,
    response: HeaderName,
}

/// The response header a bearer transport issues ids in.
const SESSION_ID: HeaderName = HeaderName::from_static("x-session-id");

impl IdHeader {
    /// `Authorization: Bearer <id>` in requests; the new id in
    /// `X-Session-Id` in responses.
    pub fn bearer() -> Self {
        Self { request: AUTHORIZATION, bearer: true, response: SESSION_ID }
    }

    /// `<name>: <id>` in requests, and the new id under the same name in
    /// responses (`X-Session-Id`, say).
    pub fn named(name: HeaderName) -> Self {
        Self { response: name.clone(), request: name, bearer: false }
    }

    /// Issues ids in `name` instead.
    pub fn response_header(mut self, name: HeaderName) -> Self {
        self.response = name;
        self
    }

    /// The request header the id is read from.
    pub fn request(&self) -> &HeaderName {
        &self.request
    }

    /// The response header new ids are sent in.
    pub fn response(&self) -> &HeaderName {
        &self.response
    }

    /// The credential in a request header's value: after `Bearer ` (any
    /// case) for a bearer header, the whole value otherwise; trimmed.
    pub(crate) fn credential<'a>(&self, value: &'a str) -> Option<&'a str> {
        let value = value.trim();
        if !self.bearer {
            return Some(value);
        }
        let (scheme, rest) = value.split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_headers_yield_the_token_only() {
        let bearer = IdHeader::bearer();
        assert_eq!(bearer.credential("Bearer abc"), Some("abc"));
        assert_eq!(bearer.credential("bearer   abc "), Some("abc"));
        assert_eq!(bearer.credential("Basic abc"), None);
        assert_eq!(bearer.credential("abc"), None);
        let named = IdHeader::named(HeaderName::from_static("x-session-id"));
        assert_eq!(named.credential(" abc "), Some("abc"));
        assert_eq!(named.response(), named.request());
        assert_eq!(bearer.response().as_str(), "x-session-id");
    }
}
