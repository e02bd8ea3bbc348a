//! The signed-in user's sessions ("Your sessions"): listing them, signing
//! one out, signing out all the others. The page (`/sessions`) and the API
//! (`/api/sessions`) both go through here.
//!
//! Sessions are named by their *handle*, the store key
//! ([`sessionkit::StoreKey`]): with ids hashed at rest (the demo's
//! default) a handle names a session without being able to log in as it,
//! so the page and the API may show it. Only sessions of the user signed in
//! on the request can be listed or revoked: another user's handle is
//! answered as if it did not exist.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use sessionkit::{Session, SessionError, SessionInfo, StoreKey};

use crate::state::USER_AGENT_KEY;

/// One of the user's sessions, as the page and the API show it.
#[derive(Debug, Clone, Serialize)]
pub struct Listed {
    /// The session's handle (its store key), to revoke it by.
    pub handle: String,
    /// Whether it is the session of the request that listed it.
    pub current: bool,
    /// When it was created (at login), Unix ms; `null` if not recorded.
    pub created_at: Option<u64>,
    /// When it was last written or refreshed, Unix ms; `null` if not recorded.
    pub last_active: Option<u64>,
    /// When it expires, Unix ms; `null` for a session without expiry.
    pub expires_at: Option<u64>,
    /// The browser's `User-Agent` at login, for the page (the API leaves it out).
    #[serde(skip)]
    pub user_agent: Option<String>,
}

impl Listed {
    fn new(info: SessionInfo) -> Self {
        let user_agent = info.data.get(USER_AGENT_KEY).and_then(serde_json::Value::as_str).map(str::to_owned);
        Self {
            handle: info.handle.to_string(),
            current: info.current,
            created_at: info.created_at.and_then(unix_ms),
            last_active: info.last_active.and_then(unix_ms),
            expires_at: info.expires_at.and_then(unix_ms),
            user_agent,
        }
    }
}

/// A user agent in a few words, "Firefox on Windows", for people telling
/// their sessions apart; `None` when it names nothing this knows.
pub fn describe_user_agent(agent: &str) -> Option<String> {
    // Order matters: Edge and Opera also say "Chrome", Chrome also says
    // "Safari", every browser says "Mozilla".
    const BROWSERS: &[(&str, &str)] = &[
        ("Edg/", "Edge"),
        ("OPR/", "Opera"),
        ("Firefox/", "Firefox"),
        ("HeadlessChrome/", "Headless Chrome"),
        ("Chromium/", "Chromium"),
        ("Chrome/", "Chrome"),
        ("Safari/", "Safari"),
        ("curl/", "curl"),
        ("reqwest", "reqwest"),
    ];
    const SYSTEMS: &[(&str, &str)] = &[
        ("Android", "Android"),
        ("iPhone", "iPhone"),
        ("iPad", "iPad"),
        ("Windows", "Windows"),
        ("Mac OS X", "macOS"),
        ("CrOS", "ChromeOS"),
        ("Linux", "Linux"),
    ];
    let find =
        |table: &[(&str, &'static str)]| table.iter().find(|(token, _)| agent.contains(token)).map(|(_, name)| *name);
    match (find(BROWSERS), find(SYSTEMS)) {
        (Some(browser), Some(system)) => Some(format!("{browser} on {system}")),
        (Some(browser), None) => Some(browser.to_owned()),
        (None, Some(system)) => Some(format!("a browser on {system}")),
        (None, None) => None,
    }
}

/// Milliseconds since the Unix epoch; `None` before it.
pub fn unix_ms(at: SystemTime) -> Option<u64> {
    let since = at.duration_since(UNIX_EPOCH).ok()?;
    Some(u64::try_from(since.as_millis()).unwrap_or(u64::MAX))
}

/// The signed-in user's live sessions, the current one first, then the
/// most recently active; `None` when nobody is signed in.
///
/// # Errors
///
/// The store's, when its user index cannot be read.
pub async fn list(session: &Session) -> Result<Option<Vec<Listed>>, SessionError> {
    if session.user().is_none() {
        return Ok(None);
    }
    let mut listed: Vec<Listed> = session.sessions().await?.into_iter().map(Listed::new).collect();
    listed.sort_by(|a, b| b.current.cmp(&a.current).then(b.last_active.cmp(&a.last_active)));
    Ok(Some(listed))
}

/// What signing out a session by its handle did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revoked {
    /// Another of the user's sessions is signed out.
    Other,
    /// It was the request's own session: signed out like a logout (the
    /// record deleted, the cookie removed).
    Current,
    /// Nobody is signed in, or no session of this user has that handle
    /// (someone else's, already signed out, or not a handle at all).
    NotFound,
}

/// Signs out the user's session named by `handle` (its text form).
///
/// # Errors
///
/// The store's, when its user index cannot be read or written.
pub async fn revoke(session: &Session, handle: &str) -> Result<Revoked, SessionError> {
    let Some(handle) = StoreKey::parse(handle) else { return Ok(Revoked::NotFound) };
    if session.user().is_none() {
        return Ok(Revoked::NotFound);
    }
    if session.handle() == handle {
        session.logout();
        return Ok(Revoked::Current);
    }
    Ok(if session.revoke(&handle).await? { Revoked::Other } else { Revoked::NotFound })
}

/// Signs out every other session of the signed-in user; how many, or
/// `None` when nobody is signed in.
///
/// # Errors
///
/// The store's, when its user index cannot be read or written.
pub async fn revoke_others(session: &Session) -> Result<Option<u64>, SessionError> {
    if session.user().is_none() {
        return Ok(None);
    }
    session.revoke_others().await.map(Some)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn user_agents_read_as_a_browser_and_a_system() {
        let firefox = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Firefox/128.0";
        assert_eq!(describe_user_agent(firefox).as_deref(), Some("Firefox on Windows"));
        let edge = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) \
                    Chrome/126.0.0.0 Safari/537.36 Edg/126.0.0.0";
        assert_eq!(describe_user_agent(edge).as_deref(), Some("Edge on macOS"));
        let phone =
            "Mozilla/5.0 (Linux; Android 14) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Mobile Safari/537.36";
        assert_eq!(describe_user_agent(phone).as_deref(), Some("Chrome on Android"));
        assert_eq!(describe_user_agent("curl/8.5.0").as_deref(), Some("curl"));
        assert_eq!(describe_user_agent("Laptop/2.0"), None);
    }

    #[test]
    fn instants_are_unix_milliseconds() {
        assert_eq!(unix_ms(UNIX_EPOCH + Duration::from_millis(1_700_000_000_123)), Some(1_700_000_000_123));
        assert_eq!(unix_ms(UNIX_EPOCH - Duration::from_secs(1)), None);
    }
}
