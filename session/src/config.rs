//! `SessionConfig`: the store, the lifetime rules and the cookie, in one builder.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use cookie::{Key, SameSite};

use crate::transport::IdTransport;
use crate::{SessionId, SessionStore, StoreKey, reserved};

/// How sessions live and how their cookie looks: built by a
/// [`SessionConfigBuilder`] ([`SessionConfig::builder`]) with chained
/// setters, each with a safe default, and read back through getters of the
/// same names:
///
/// | setting | default |
/// | --- | --- |
/// | [`cookie_name`](SessionConfigBuilder::cookie_name) | `id` |
/// | [`ttl`](SessionConfigBuilder::ttl) | 24 hours (server-side expiry and cookie `Max-Age`) |
/// | [`browser_session_cookie`](SessionConfigBuilder::browser_session_cookie) | off |
/// | [`rolling`](SessionConfigBuilder::rolling) | off: the expiry is fixed when the session is created |
/// | [`absolute_lifetime`](SessionConfigBuilder::absolute_lifetime) | none |
/// | [`path`](SessionConfigBuilder::path) | `/` |
/// | [`domain`](SessionConfigBuilder::domain) | none (host-only cookie) |
/// | [`secure`](SessionConfigBuilder::secure) | on |
/// | [`http_only`](SessionConfigBuilder::http_only) | on |
/// | [`same_site`](SessionConfigBuilder::same_site) | `Lax` |
/// | [`signing_keys`](SessionConfigBuilder::signing_keys) | none |
/// | [`partitioned`](SessionConfigBuilder::partitioned) | off |
/// | [`transport`](SessionConfigBuilder::transport) | the cookie |
/// | [`max_size`](SessionConfigBuilder::max_size) | 1 MiB |
/// | [`hash_ids_at_rest`](SessionConfigBuilder::hash_ids_at_rest) | on |
/// | [`exclusive_lease`](SessionConfigBuilder::exclusive_lease) | 10 s |
/// | [`exclusive_wait`](SessionConfigBuilder::exclusive_wait) | 5 s |
///
/// ```
/// use std::time::Duration;
/// use sessionkit::SessionConfig;
/// use sessionkit::cookie::SameSite;
/// use sessionkit_stores::MemoryStore;
///
/// let config = SessionConfig::builder(MemoryStore::new())
///     .cookie_name("sid")
///     .ttl(Duration::from_secs(30 * 60))
///     .rolling(true)
///     .absolute_lifetime(Duration::from_secs(12 * 60 * 60))
///     .same_site(SameSite::Strict)
///     .build()?;
/// assert_eq!(config.cookie_name(), "sid");
/// assert_eq!(config.ttl(), Some(Duration::from_secs(30 * 60)));
/// # Ok::<(), sessionkit::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct SessionConfig {
    pub(crate) store: Arc<dyn SessionStore>,
    pub(crate) cookie_name: String,
    pub(crate) ttl: Option<Duration>,
    pub(crate) browser_session_cookie: bool,
    pub(crate) rolling: bool,
    pub(crate) absolute_lifetime: Option<Duration>,
    pub(crate) path: String,
    pub(crate) domain: Option<String>,
    pub(crate) secure: bool,
    pub(crate) http_only: bool,
    pub(crate) same_site: SameSite,
    /// Signs with the first, verifies with any.
    pub(crate) signing_keys: Vec<Key>,
    pub(crate) partitioned: bool,
    pub(crate) transport: IdTransport,
    pub(crate) max_size: usize,
    pub(crate) hash_ids_at_rest: bool,
    pub(crate) exclusive_lease: Duration,
    pub(crate) exclusive_wait: Duration,
}

/// The resolution of expiries and leases in the stores ([`crate::expiry`]
/// keeps Unix milliseconds): the shortest `ttl`, `absolute_lifetime` and
/// `exclusive_lease` that are not zero there.
const STORE_RESOLUTION: Duration = Duration::from_millis(1);

/// Why a [`SessionConfigBuilder`] cannot build: one variant per setting a
/// browser or the store would reject later. Returned by
/// [`SessionConfigBuilder::build`] and
/// [`SessionLayer::try_new`](crate::SessionLayer::try_new).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The cookie name is empty or not an RFC 6265 token.
    #[error("invalid session configuration: cookie name {0:?} is not an RFC 6265 token")]
    CookieName(String),
    /// The cookie path does not start with `/`, or holds `;` or control bytes.
    #[error("invalid session configuration: cookie path {0:?} must start with `/` and hold no `;` or control bytes")]
    Path(String),
    /// The cookie domain is empty, or holds `;` or control bytes.
    #[error("invalid session configuration: cookie domain {0:?} is empty or holds `;` or control bytes")]
    Domain(String),
    /// `SameSite=None` without `Secure`, which browsers reject.
    #[error("invalid session configuration: SameSite=None cookies must be Secure: browsers reject them otherwise")]
    SameSiteNoneNeedsSecure,
    /// `Partitioned` without `Secure`, which browsers reject.
    #[error("invalid session configuration: Partitioned cookies must be Secure: browsers reject them otherwise")]
    PartitionedNeedsSecure,
    /// A `__Host-` cookie name without `Secure`, with a path other than
    /// `/`, or with a `Domain`: browsers drop such a cookie.
    #[error(
        "invalid session configuration: cookie name {0:?} has the __Host- prefix, which browsers accept only with \
         Secure, Path=/ and no Domain"
    )]
    HostPrefix(String),
    /// A `__Secure-` cookie name without `Secure`: browsers drop such a cookie.
    #[error(
        "invalid session configuration: cookie name {0:?} has the __Secure- prefix, which browsers accept only with \
         Secure"
    )]
    SecurePrefix(String),
    /// A `ttl` of zero, or under a millisecond: stores keep expiries in
    /// whole milliseconds, so it would be zero there, a session expired as
    /// it is written (`None` is the way to store sessions without expiry).
    #[error(
        "invalid session configuration: ttl must be at least 1 ms, the stores' resolution (use `None` for sessions \
         without expiry)"
    )]
    ZeroTtl,
    /// An `absolute_lifetime` of zero, or under a millisecond (zero in the
    /// stores' whole milliseconds).
    #[error("invalid session configuration: absolute_lifetime must be at least 1 ms, the stores' resolution")]
    ZeroAbsoluteLifetime,
    /// A `max_size` of zero.
    #[error("invalid session configuration: max_size must be positive")]
    ZeroMaxSize,
    /// An `exclusive_lease` of zero, or under a millisecond: stores keep
    /// leases in whole milliseconds, so some would grant one that has
    /// already run out.
    #[error("invalid session configuration: exclusive_lease must be at least 1 ms, the stores' resolution")]
    ZeroExclusiveLease,
}

impl SessionConfig {
    /// The default session lifetime: 24 hours.
    pub const DEFAULT_TTL: Duration = Duration::from_secs(24 * 60 * 60);
    /// The default cookie name.
    pub const DEFAULT_COOKIE_NAME: &'static str = "id";
    /// The default limit on a session's serialized size: 1 MiB.
    pub const DEFAULT_MAX_SIZE: usize = 1024 * 1024;
    /// How long an exclusive request may hold its session by default: 10 s.
    pub const DEFAULT_EXCLUSIVE_LEASE: Duration = Duration::from_secs(10);
    /// How long an exclusive request waits for its session by default: 5 s.
    pub const DEFAULT_EXCLUSIVE_WAIT: Duration = Duration::from_secs(5);

    /// The defaults above, on `store`.
    pub fn builder(store: impl SessionStore) -> SessionConfigBuilder {
        Self::shared_builder(Arc::new(store))
    }

    /// The defaults above, on a store shared with other code (a sweeper, a
    /// second layer, an admin endpoint).
    pub fn shared_builder(store: Arc<dyn SessionStore>) -> SessionConfigBuilder {
        SessionConfigBuilder(Self {
            store,
            cookie_name: Self::DEFAULT_COOKIE_NAME.to_owned(),
            ttl: Some(Self::DEFAULT_TTL),
            browser_session_cookie: false,
            rolling: false,
            absolute_lifetime: None,
            path: "/".to_owned(),
            domain: None,
            secure: true,
            http_only: true,
            same_site: SameSite::Lax,
            signing_keys: Vec::new(),
            partitioned: false,
            transport: IdTransport::Cookie,
            max_size: Self::DEFAULT_MAX_SIZE,
            hash_ids_at_rest: true,
            exclusive_lease: Self::DEFAULT_EXCLUSIVE_LEASE,
            exclusive_wait: Self::DEFAULT_EXCLUSIVE_WAIT,
        })
    }

    /// The store sessions live in.
    pub fn store(&self) -> &Arc<dyn SessionStore> {
        &self.store
    }

    /// The cookie's name ([`SessionConfigBuilder::cookie_name`]).
    pub fn cookie_name(&self) -> &str {
        &self.cookie_name
    }

    /// How long a session lives ([`SessionConfigBuilder::ttl`]).
    pub fn ttl(&self) -> Option<Duration> {
        self.ttl
    }

    /// Whether the cookie has no `Max-Age` ([`SessionConfigBuilder::browser_session_cookie`]).
    pub fn browser_session_cookie(&self) -> bool {
        self.browser_session_cookie
    }

    /// Whether expiry rolls ([`SessionConfigBuilder::rolling`]).
    pub fn rolling(&self) -> bool {
        self.rolling
    }

    /// The hard limit on a session's life ([`SessionConfigBuilder::absolute_lifetime`]).
    pub fn absolute_lifetime(&self) -> Option<Duration> {
        self.absolute_lifetime
    }

    /// The cookie's `Path` ([`SessionConfigBuilder::path`]).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The cookie's `Domain` ([`SessionConfigBuilder::domain`]).
    pub fn domain(&self) -> Option<&str> {
        self.domain.as_deref()
    }

    /// The cookie's `Secure` flag ([`SessionConfigBuilder::secure`]).
    pub fn secure(&self) -> bool {
        self.secure
    }

    /// The cookie's `HttpOnly` flag ([`SessionConfigBuilder::http_only`]).
    pub fn http_only(&self) -> bool {
        self.http_only
    }

    /// The cookie's `SameSite` attribute ([`SessionConfigBuilder::same_site`]).
    pub fn same_site(&self) -> SameSite {
        self.same_site
    }

    /// Whether the cookie is `Partitioned` ([`SessionConfigBuilder::partitioned`]).
    pub fn partitioned(&self) -> bool {
        self.partitioned
    }

    /// Where the id travels ([`SessionConfigBuilder::transport`]).
    pub fn transport(&self) -> &IdTransport {
        &self.transport
    }

    /// The largest session the layer writes ([`SessionConfigBuilder::max_size`]).
    pub fn max_size(&self) -> usize {
        self.max_size
    }

    /// Whether the store is keyed by a hash of the id ([`SessionConfigBuilder::hash_ids_at_rest`]).
    pub fn hash_ids_at_rest(&self) -> bool {
        self.hash_ids_at_rest
    }

    /// How long an exclusive request may hold its session ([`SessionConfigBuilder::exclusive_lease`]).
    pub fn exclusive_lease(&self) -> Duration {
        self.exclusive_lease
    }

    /// How long an exclusive request waits for its session ([`SessionConfigBuilder::exclusive_wait`]).
    pub fn exclusive_wait(&self) -> Duration {
        self.exclusive_wait
    }

    /// The key a session is stored under.
    pub fn store_key(&self, id: &SessionId) -> StoreKey {
        if self.hash_ids_at_rest { StoreKey::hashed(id) } else { StoreKey::unhashed(id) }
    }

    /// How store keys derive from ids, as recorded under
    /// [`reserved::KEYED_BY`].
    pub(crate) fn keyed_by(&self) -> &'static str {
        if self.hash_ids_at_rest { reserved::KEYED_BY_SHA256 } else { reserved::KEYED_BY_ID }
    }

    /// When a session created at `created` and last active `now` expires:
    /// `now + ttl`, never past `created + absolute_lifetime`.
    pub(crate) fn expiry(&self, created: SystemTime, now: SystemTime) -> Option<SystemTime> {
        let rolling_end = self.ttl.and_then(|ttl| now.checked_add(ttl));
        let hard_end = self.absolute_lifetime.and_then(|cap| created.checked_add(cap));
        match (rolling_end, hard_end) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// When a session created at `created` expires if it is written `now`:
    /// rolling, `now + ttl`; fixed, `created + ttl`; never past
    /// `created + absolute_lifetime`.
    pub(crate) fn session_expiry(&self, created: SystemTime, now: SystemTime) -> Option<SystemTime> {
        self.expiry(created, if self.rolling { now } else { created })
    }

    /// Checks everything a browser or the store would reject later.
    fn validate(&self) -> Result<(), ConfigError> {
        if self.cookie_name.is_empty() || !self.cookie_name.bytes().all(is_token_byte) {
            return Err(ConfigError::CookieName(self.cookie_name.clone()));
        }
        if !self.path.starts_with('/') || !self.path.bytes().all(is_attribute_byte) {
            return Err(ConfigError::Path(self.path.clone()));
        }
        if let Some(domain) = &self.domain
            && (domain.is_empty() || !domain.bytes().all(is_attribute_byte))
        {
            return Err(ConfigError::Domain(domain.clone()));
        }
        if self.same_site == SameSite::None && !self.secure {
            return Err(ConfigError::SameSiteNoneNeedsSecure);
        }
        if self.partitioned && !self.secure {
            return Err(ConfigError::PartitionedNeedsSecure);
        }
        // Browsers match the prefixes without regard to case.
        let lower = self.cookie_name.to_ascii_lowercase();
        if lower.starts_with("__host-") {
            if !self.secure || self.path != "/" || self.domain.is_some() {
                return Err(ConfigError::HostPrefix(self.cookie_name.clone()));
            }
        } else if lower.starts_with("__secure-") && !self.secure {
            return Err(ConfigError::SecurePrefix(self.cookie_name.clone()));
        }
        // Anything shorter is zero in a store's whole milliseconds.
        let too_short = |duration: Duration| duration < STORE_RESOLUTION;
        if self.ttl.is_some_and(too_short) {
            return Err(ConfigError::ZeroTtl);
        }
        if self.absolute_lifetime.is_some_and(too_short) {
            return Err(ConfigError::ZeroAbsoluteLifetime);
        }
        if self.max_size == 0 {
            return Err(ConfigError::ZeroMaxSize);
        }
        if too_short(self.exclusive_lease) {
            return Err(ConfigError::ZeroExclusiveLease);
        }
        Ok(())
    }
}

/// Builds a [`SessionConfig`]: chained setters, each with the default listed
/// there, and [`build`](Self::build), which refuses a configuration a browser
/// or the store would reject later. Made by [`SessionConfig::builder`].
#[derive(Clone, Debug)]
#[must_use = "a builder does nothing until it is built or given to a layer"]
pub struct SessionConfigBuilder(SessionConfig);

impl SessionConfigBuilder {
    /// The cookie's name (an RFC 6265 token).
    pub fn cookie_name(mut self, name: impl Into<String>) -> Self {
        self.0.cookie_name = name.into();
        self
    }

    /// How long a session lives after it was created (or, with
    /// [`rolling`](Self::rolling), after its last response): the server-side
    /// expiry and the cookie's `Max-Age`. `None` stores sessions without
    /// expiry, with a cookie that lasts for the browser session. At least
    /// 1 ms (the stores' resolution), or [`build`](Self::build) refuses it.
    pub fn ttl(mut self, ttl: impl Into<Option<Duration>>) -> Self {
        self.0.ttl = ttl.into();
        self
    }

    /// Send the cookie without `Max-Age`, so the browser forgets it when it
    /// closes, while the server still enforces [`ttl`](Self::ttl).
    pub fn browser_session_cookie(mut self, on: bool) -> Self {
        self.0.browser_session_cookie = on;
        self
    }

    /// Move the expiry to now + ttl on every response (and refresh the
    /// cookie), instead of fixing it when the session is created.
    pub fn rolling(mut self, on: bool) -> Self {
        self.0.rolling = on;
        self
    }

    /// A hard limit on a session's life, counted from its creation, that
    /// rolling cannot extend. Stored in the session under a reserved key.
    /// At least 1 ms, or [`build`](Self::build) refuses it.
    pub fn absolute_lifetime(mut self, limit: impl Into<Option<Duration>>) -> Self {
        self.0.absolute_lifetime = limit.into();
        self
    }

    /// The cookie's `Path`.
    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.0.path = path.into();
        self
    }

    /// The cookie's `Domain`; `None` makes a host-only cookie.
    pub fn domain(mut self, domain: impl Into<Option<String>>) -> Self {
        self.0.domain = domain.into();
        self
    }

    /// The cookie's `Secure` flag. Turn it off only for plain-HTTP development.
    pub fn secure(mut self, on: bool) -> Self {
        self.0.secure = on;
        self
    }

    /// The cookie's `HttpOnly` flag, which keeps it from page scripts.
    pub fn http_only(mut self, on: bool) -> Self {
        self.0.http_only = on;
        self
    }

    /// The cookie's `SameSite` attribute. `SameSite::None` requires `secure`.
    pub fn same_site(mut self, same_site: SameSite) -> Self {
        self.0.same_site = same_site;
        self
    }

    /// Sign the cookie with this key (HMAC-SHA256 over the cookie's name
    /// and the id); a cookie whose signature does not verify is ignored.
    /// `None` turns signing off. The same as [`signing_keys`](Self::signing_keys)
    /// with one key.
    pub fn signing_key(mut self, key: impl Into<Option<Key>>) -> Self {
        self.0.signing_keys = key.into().into_iter().collect();
        self
    }

    /// Sign with the first of these keys and accept a signature by any of
    /// them, so that a key is rotated without logging anybody out: put the
    /// new key first, keep the old one until the sessions it signed have
    /// expired (the ttl, or the absolute lifetime), then drop it. A value
    /// signed for another cookie name does not verify. No keys turns
    /// signing off. Signing protects the cookie's integrity; the id is
    /// already unguessable, so signing is defence in depth, not secrecy.
    pub fn signing_keys(mut self, keys: impl IntoIterator<Item = Key>) -> Self {
        self.0.signing_keys = keys.into_iter().collect();
        self
    }

    /// Send the cookie with the `Partitioned` attribute (CHIPS), for an app
    /// embedded in other sites' iframes: the browser keeps a separate
    /// cookie per top-level site. Needs [`secure`](Self::secure).
    pub fn partitioned(mut self, on: bool) -> Self {
        self.0.partitioned = on;
        self
    }

    /// Where the id travels: the cookie (the default), a request header
    /// for API and mobile clients, or either. See [`crate::transport`].
    pub fn transport(mut self, transport: IdTransport) -> Self {
        self.0.transport = transport;
        self
    }

    /// The largest serialized session (JSON bytes) the layer will write. A
    /// response whose session grew past it gets `413` and nothing is written.
    pub fn max_size(mut self, bytes: usize) -> Self {
        self.0.max_size = bytes;
        self
    }

    /// Key the store by the SHA-256 of the session id instead of the id
    /// itself, so that a leaked store (a backup, a `KEYS *`) holds nothing
    /// that works as a cookie. On by default.
    ///
    /// Turning it on for an existing deployment logs everyone out once: the
    /// old records are keyed by the raw ids and are no longer found (they
    /// expire on their own). Turning it off does the same in reverse.
    pub fn hash_ids_at_rest(mut self, on: bool) -> Self {
        self.0.hash_ids_at_rest = on;
        self
    }

    /// How long a request that asked for its session exclusively (see
    /// [`ExclusiveLayer`](crate::exclusive::ExclusiveLayer)) may hold it. The lease
    /// ends when the request's response is persisted; a request still
    /// running when it runs out loses it, and its write is refused (the
    /// response becomes an empty 409), so that it cannot overwrite what the
    /// next holder did. A crashed holder blocks the session this long at most.
    /// At least 1 ms, or [`build`](Self::build) refuses it.
    pub fn exclusive_lease(mut self, lease: Duration) -> Self {
        self.0.exclusive_lease = lease;
        self
    }

    /// How long a request that asked for its session exclusively waits for
    /// another request to let go of it, before it is answered with an empty
    /// 503 and `Retry-After: 1`.
    pub fn exclusive_wait(mut self, wait: Duration) -> Self {
        self.0.exclusive_wait = wait;
        self
    }

    /// The configuration, or why it cannot work. [`SessionLayer::new`](crate::SessionLayer::new)
    /// calls it for you.
    pub fn build(self) -> Result<SessionConfig, ConfigError> {
        self.0.validate()?;
        Ok(self.0)
    }
}

/// RFC 6265 `token` (RFC 2616 section 2.2): visible ASCII minus separators.
fn is_token_byte(byte: u8) -> bool {
    byte.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&byte)
}

/// RFC 6265 `av-octet`: any CHAR except CTLs or `;`.
fn is_attribute_byte(byte: u8) -> bool {
    (0x20..0x7f).contains(&byte) && byte != b';'
}

/// A built configuration, to be checked again (cheaply) where a builder is
/// taken, as by [`SessionLayer::new`](crate::SessionLayer::new).
impl From<SessionConfig> for SessionConfigBuilder {
    fn from(config: SessionConfig) -> Self {
        Self(config)
    }
}

impl fmt::Debug for SessionConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionConfig")
            .field("cookie_name", &self.cookie_name)
            .field("ttl", &self.ttl)
            .field("browser_session_cookie", &self.browser_session_cookie)
            .field("rolling", &self.rolling)
            .field("absolute_lifetime", &self.absolute_lifetime)
            .field("path", &self.path)
            .field("domain", &self.domain)
            .field("secure", &self.secure)
            .field("http_only", &self.http_only)
            .field("same_site", &self.same_site)
            // Never print the key.
            .field("signing_keys", &self.signing_keys.len())
            .field("partitioned", &self.partitioned)
            .field("transport", &self.transport)
            .field("max_size", &self.max_size)
            .field("hash_ids_at_rest", &self.hash_ids_at_rest)
            .field("exclusive_lease", &self.exclusive_lease)
            .field("exclusive_wait", &self.exclusive_wait)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::NullStore;

    #[test]
    fn defaults_match_the_design() {
        let config = SessionConfig::builder(NullStore).0;
        assert_eq!(config.cookie_name, "id");
        assert_eq!(config.ttl, Some(Duration::from_secs(86_400)));
        assert!(!config.browser_session_cookie);
        assert!(!config.rolling);
        assert_eq!(config.absolute_lifetime, None);
        assert_eq!(config.path, "/");
        assert_eq!(config.domain, None);
        assert!(config.secure);
        assert!(config.http_only);
        assert_eq!(config.same_site, SameSite::Lax);
        assert!(config.signing_keys.is_empty());
        assert!(!config.partitioned);
        assert_eq!(config.transport, IdTransport::Cookie);
        assert_eq!(config.max_size, 1024 * 1024);
        assert!(config.hash_ids_at_rest);
        assert_eq!(config.validate(), Ok(()));
    }

    #[test]
    fn invalid_settings_are_reported() {
        let bad = [
            SessionConfig::builder(NullStore).cookie_name(""),
            SessionConfig::builder(NullStore).cookie_name("a b"),
            SessionConfig::builder(NullStore).cookie_name("a;b"),
            SessionConfig::builder(NullStore).path("no-slash"),
            SessionConfig::builder(NullStore).path("/a;b"),
            SessionConfig::builder(NullStore).domain(Some("a\nb".to_string())),
            SessionConfig::builder(NullStore).same_site(SameSite::None).secure(false),
            SessionConfig::builder(NullStore).ttl(Duration::ZERO),
            SessionConfig::builder(NullStore).absolute_lifetime(Duration::ZERO),
            SessionConfig::builder(NullStore).max_size(0),
        ];
        let expected = [
            ConfigError::CookieName(String::new()),
            ConfigError::CookieName("a b".into()),
            ConfigError::CookieName("a;b".into()),
            ConfigError::Path("no-slash".into()),
            ConfigError::Path("/a;b".into()),
            ConfigError::Domain("a\nb".into()),
            ConfigError::SameSiteNoneNeedsSecure,
            ConfigError::ZeroTtl,
            ConfigError::ZeroAbsoluteLifetime,
            ConfigError::ZeroMaxSize,
        ];
        for (config, expected) in bad.into_iter().zip(expected) {
            assert_eq!(config.build().map(drop), Err(expected));
        }
        assert!(SessionConfig::builder(NullStore).ttl(None).build().map(drop).is_ok());
    }

    /// Stores keep expiries and leases in whole milliseconds: a shorter
    /// duration would be zero there (a session expired as it is created, a
    /// cookie with `Max-Age=0`, a lease already run out), so it is refused
    /// like zero, and a millisecond is accepted.
    #[test]
    fn durations_under_a_millisecond_are_refused_like_zero() {
        let under = Duration::from_micros(999);
        let bad = [
            (SessionConfig::builder(NullStore).ttl(under), ConfigError::ZeroTtl),
            (SessionConfig::builder(NullStore).ttl(Duration::from_nanos(1)), ConfigError::ZeroTtl),
            (SessionConfig::builder(NullStore).absolute_lifetime(under), ConfigError::ZeroAbsoluteLifetime),
            (SessionConfig::builder(NullStore).exclusive_lease(under), ConfigError::ZeroExclusiveLease),
            (SessionConfig::builder(NullStore).exclusive_lease(Duration::ZERO), ConfigError::ZeroExclusiveLease),
        ];
        for (config, expected) in bad {
            let err = config.build().map(drop).expect_err("refused");
            assert!(err.to_string().contains("at least 1 ms"), "{err}");
            assert_eq!(err, expected);
        }
        let ms = Duration::from_millis(1);
        let shortest = SessionConfig::builder(NullStore).ttl(ms).absolute_lifetime(ms).exclusive_lease(ms);
        assert_eq!(shortest.build().map(drop), Ok(()), "one millisecond is representable");
    }

    #[test]
    fn cookie_prefixes_and_partitioned_are_refused_where_browsers_would_drop_the_cookie() {
        let host = || SessionConfig::builder(NullStore).cookie_name("__Host-id");
        assert_eq!(host().build().map(drop), Ok(()), "the recommended name works with the defaults");
        for bad in [
            host().secure(false),
            host().path("/app"),
            host().domain(Some("example.com".to_owned())),
            SessionConfig::builder(NullStore).cookie_name("__host-id").secure(false),
            SessionConfig::builder(NullStore).cookie_name("__Secure-id").secure(false),
            SessionConfig::builder(NullStore).partitioned(true).secure(false),
        ] {
            let err = bad.build().map(drop).expect_err("refused");
            assert!(err.to_string().contains("Secure") || err.to_string().contains("Path"), "{err}");
        }
        let secure =
            SessionConfig::builder(NullStore).cookie_name("__Secure-id").domain(Some("example.com".to_owned()));
        assert_eq!(secure.path("/app").build().map(drop), Ok(()), "__Secure- needs only Secure");
        assert_eq!(SessionConfig::builder(NullStore).partitioned(true).build().map(drop), Ok(()));
    }

    #[test]
    fn expiry_rolls_but_never_passes_the_absolute_cap() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let hour = Duration::from_secs(3600);
        let config = SessionConfig::builder(NullStore).ttl(hour).absolute_lifetime(hour * 2);
        assert_eq!(config.0.expiry(t0, t0), Some(t0 + hour));
        assert_eq!(config.0.expiry(t0, t0 + hour / 2), Some(t0 + hour + hour / 2));
        assert_eq!(config.0.expiry(t0, t0 + hour * 3 / 2), Some(t0 + hour * 2));
        let no_ttl = SessionConfig::builder(NullStore).ttl(None);
        assert_eq!(no_ttl.0.expiry(t0, t0), None);
        assert_eq!(no_ttl.absolute_lifetime(hour).0.expiry(t0, t0 + hour / 2), Some(t0 + hour));
    }

    #[test]
    fn debug_hides_the_signing_key() {
        let config = SessionConfig::builder(NullStore).signing_key(Key::generate());
        let shown = format!("{config:?}");
        assert!(shown.contains("signing_keys: 1"), "{shown}");
    }

    #[test]
    fn store_keys_are_hashed_by_default() {
        let id = SessionId::generate();
        assert_eq!(SessionConfig::builder(NullStore).0.store_key(&id), StoreKey::hashed(&id));
        assert_eq!(SessionConfig::builder(NullStore).hash_ids_at_rest(false).0.store_key(&id), StoreKey::unhashed(&id));
    }
}
