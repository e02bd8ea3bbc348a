//! The per-request session handle.
//!
//! The layer puts a [`LazySession`] in the request's extensions. Nothing is
//! read from the store until something asks for the session: the axum
//! extractor, or [`LazySession::load`] in a bare tower service. That returns a
//! [`Session`], whose methods are synchronous. A route
//! that never asks costs no store call.
//!
//! Every clone of a `Session` (or `LazySession`) of one request shares one
//! state, which the layer reads after the handler to decide what to persist
//! (see [`crate::persist`]).

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use http::HeaderValue;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::OnceCell;

use crate::changes::apply_op;
use crate::lease::LeaseToken;
use crate::listing::SessionInfo;
use crate::{
    Changes, Op, SessionConfig, SessionError, SessionId, SessionMap, SessionRecord, StoreError, StoreKey,
    cookie_header, expiry, reserved,
};

/// A session that has not been read from the store yet. Found in the
/// request's extensions when the [`SessionLayer`](crate::SessionLayer) runs.
///
/// ```no_run
/// # async fn handler(request: http::Request<()>) -> Result<(), sessionkit::SessionError> {
/// use sessionkit::LazySession;
///
/// let lazy = request.extensions().get::<LazySession>().expect("SessionLayer is installed");
/// let session = lazy.load().await?;
/// session.increment("visits", 1)?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct LazySession {
    shared: Arc<Shared>,
}

/// A loaded session, read and written synchronously.
///
/// Cheap to clone; all clones share one state.
#[derive(Clone)]
pub struct Session {
    shared: Arc<Shared>,
    state: Arc<Mutex<State>>,
}

pub(crate) struct Shared {
    pub(crate) config: Arc<SessionConfig>,
    /// The request's `Cookie` headers (and id header, with a header
    /// transport), parsed (and verified) only when the session is loaded:
    /// a route that never asks for its session pays nothing for it,
    /// signature checks included.
    pub(crate) cookies: Vec<HeaderValue>,
    pub(crate) id_header: Option<HeaderValue>,
    pub(crate) state: OnceCell<Arc<Mutex<State>>>,
    pub(crate) load_failure: AtomicU8,
    /// Load the session under an exclusive lease (see [`crate::lease`]).
    exclusive: AtomicBool,
}

/// How loading failed, for the layer's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LoadFailure {
    None = 0,
    /// The store failed: an empty 500.
    Store = 1,
    /// The session stayed exclusive to another request: an empty 503.
    Busy = 2,
}

/// Where the session stands with respect to the store.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Status {
    /// Not in the store (yet).
    New,
    /// Loaded from the store under the current id.
    Loaded { expires_at: Option<SystemTime> },
    /// Loaded under the key `from`, then given a new id: the record moves to
    /// the new id's key (see [`crate::SessionStore::rename`]).
    Renewed { from: StoreKey, expires_at: Option<SystemTime> },
    /// Destroyed in this request.
    Destroyed,
}

/// Who a session belonged to, for a logout that must also reach the
/// sessions it was regenerated into meanwhile.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Owner {
    pub(crate) user: String,
    pub(crate) lineage: String,
}

/// A stored record to delete when persisting (after destroy, or past a cap).
#[derive(Debug, Clone)]
pub(crate) struct Retire {
    pub(crate) key: StoreKey,
    /// Set when this is a logout of a user's session.
    pub(crate) owner: Option<Owner>,
}

/// sessionkit's own bookkeeping for the session (see [`crate::reserved`]),
/// kept out of the handler's data.
#[derive(Debug, Clone)]
pub(crate) struct Meta {
    pub(crate) created: SystemTime,
    pub(crate) last_active: Option<SystemTime>,
    pub(crate) user: Option<String>,
    pub(crate) lineage: Option<String>,
    /// The store lacks the creation stamp (a session stored by an older
    /// version): write it with the next write.
    pub(crate) created_missing: bool,
    /// Likewise for how the key was derived.
    pub(crate) keyed_by_missing: bool,
}

impl Meta {
    fn fresh(now: SystemTime) -> Self {
        Self {
            created: now,
            last_active: None,
            user: None,
            lineage: None,
            created_missing: false,
            keyed_by_missing: false,
        }
    }

    fn owner(&self) -> Option<Owner> {
        Some(Owner { user: self.user.clone()?, lineage: self.lineage.clone()? })
    }
}

/// An exclusive lease this request holds on its session.
#[derive(Debug, Clone)]
pub(crate) struct HeldLease {
    pub(crate) key: StoreKey,
    pub(crate) token: LeaseToken,
}

pub(crate) struct State {
    pub(crate) id: SessionId,
    pub(crate) status: Status,
    pub(crate) retire: Option<Retire>,
    /// The loaded session's id (its bytes) and the store key it was read
    /// under, so that persisting it does not hash the id again.
    pub(crate) loaded_key: Option<([u8; 32], StoreKey)>,
    /// The handler's keys only: the reserved ones live in `meta`.
    pub(crate) data: SessionMap,
    pub(crate) meta: Meta,
    /// What the handler changed, in the handler's keys only.
    pub(crate) changes: Changes,
    /// The loaded expiry was lowered to what the configuration allows: it
    /// must be written even if nothing else changes.
    pub(crate) expiry_capped: bool,
    pub(crate) lease: Option<HeldLease>,
    /// Whether the request sent a cookie of our name at all, valid or not
    /// (a destroyed session then gets a removal cookie).
    pub(crate) cookie_present: bool,
}

/// Whether `SessionMap`s keep their keys sorted (serde_json without
/// `preserve_order`, the default), so that removing a key leaves the
/// others in order; asked of the map itself, since another crate of the
/// application may turn that feature on.
static MAPS_ARE_SORTED: std::sync::LazyLock<bool> = std::sync::LazyLock::new(|| {
    let mut map = SessionMap::new();
    map.insert("b".to_owned(), Value::Null);
    map.insert("a".to_owned(), Value::Null);
    map.keys().next().is_some_and(|first| first == "a")
});

/// Pause between attempts to take a busy session's lease: short at first,
/// so a session freed quickly is taken quickly, then longer.
const LEASE_RETRY_MIN: Duration = Duration::from_millis(1);
const LEASE_RETRY_MAX: Duration = Duration::from_millis(25);

impl LazySession {
    pub(crate) fn new(config: Arc<SessionConfig>, cookies: Vec<HeaderValue>, id_header: Option<HeaderValue>) -> Self {
        Self {
            shared: Arc::new(Shared {
                config,
                cookies,
                id_header,
                state: OnceCell::new(),
                load_failure: AtomicU8::new(LoadFailure::None as u8),
                exclusive: AtomicBool::new(false),
            }),
        }
    }

    /// Reads the session from the store (once per request; later calls
    /// return the same session). A missing, expired or unknown session gives
    /// a new, empty one with a fresh id: a client's id is never adopted.
    ///
    /// On a store error the layer answers the request with an empty 500,
    /// whatever the handler returns.
    pub async fn load(&self) -> Result<Session, SessionError> {
        let shared = &self.shared;
        let state = shared
            .state
            .get_or_try_init(|| async {
                match self.fetch().await {
                    Ok(state) => Ok(Arc::new(Mutex::new(state))),
                    Err(err) => {
                        let failure = if matches!(err, SessionError::Busy { .. }) {
                            LoadFailure::Busy
                        } else {
                            LoadFailure::Store
                        };
                        shared.load_failure.store(failure as u8, Ordering::Release);
                        Err(err)
                    }
                }
            })
            .await?;
        Ok(Session { shared: Arc::clone(shared), state: Arc::clone(state) })
    }

    /// Loads the session exclusively: until this request's response is
    /// persisted, other requests that ask for the session exclusively wait
    /// (see [`ExclusiveLayer`](crate::exclusive::ExclusiveLayer), which makes every
    /// load of a route exclusive, and [`crate::lease`]). Once the session is
    /// loaded, this is [`load`](Self::load).
    ///
    /// Fails with [`SessionError::Busy`] when another request held the
    /// session for the whole
    /// [`exclusive_wait`](SessionConfig::exclusive_wait); the layer then
    /// answers an empty 503 with `Retry-After: 1`.
    pub async fn load_exclusive(&self) -> Result<Session, SessionError> {
        self.make_exclusive();
        self.load().await
    }

    /// Makes a later [`load`](Self::load) exclusive.
    pub(crate) fn make_exclusive(&self) {
        self.shared.exclusive.store(true, Ordering::Release);
    }

    async fn fetch(&self) -> Result<State, SessionError> {
        let config = &self.shared.config;
        let from_cookie = cookie_header::read(&self.shared.cookies, config);
        // The cookie wins; the header is read only when the cookie had no id.
        let from_header = match from_cookie.id {
            Some(_) => cookie_header::RequestCookie::default(),
            None => cookie_header::read_header(self.shared.id_header.as_ref(), config),
        };
        let cookie_present = from_cookie.present || from_header.present;
        let Some(id) = from_cookie.id.or(from_header.id) else {
            return Ok(State::new(expiry::now(), cookie_present));
        };
        let key = config.store_key(&id);
        let lease =
            if self.shared.exclusive.load(Ordering::Acquire) { Some(acquire(config, &key).await?) } else { None };
        // Through the trait object itself: calling through the `Arc` would
        // box a second future around the store's.
        let loaded = config.store.as_ref().get(&key).await;
        let now = expiry::now();
        let record = match loaded {
            Ok(Some(record)) if !record.is_expired_at(now) => record,
            // The store contract forbids expired records, but a clock step
            // between its check and ours must not revive one.
            Ok(_) => {
                if let Some(lease) = lease {
                    release(config, &lease).await;
                }
                return Ok(State::new(now, cookie_present));
            }
            Err(err) => {
                if let Some(lease) = lease {
                    release(config, &lease).await;
                }
                return Err(SessionError::Load(err));
            }
        };
        let mut state = State::loaded(id, key, record, now, config, cookie_present);
        state.lease = lease;
        Ok(state)
    }

    /// Whether the session was loaded (successfully) during this request.
    pub(crate) fn loaded_state(&self) -> Option<&Arc<Mutex<State>>> {
        self.shared.state.get()
    }

    pub(crate) fn load_failure(&self) -> LoadFailure {
        match self.shared.load_failure.load(Ordering::Acquire) {
            1 => LoadFailure::Store,
            2 => LoadFailure::Busy,
            _ => LoadFailure::None,
        }
    }

    pub(crate) fn config(&self) -> &Arc<SessionConfig> {
        &self.shared.config
    }
}

/// Waits, within the configured bound, for the exclusive lease on `key`.
async fn acquire(config: &SessionConfig, key: &StoreKey) -> Result<HeldLease, SessionError> {
    let started = Instant::now();
    let mut pause = LEASE_RETRY_MIN;
    loop {
        match config.store.as_ref().try_lease(key, config.exclusive_lease).await {
            Ok(Some(lease)) => return Ok(HeldLease { key: key.clone(), token: lease.token }),
            Ok(None) => {}
            Err(err) => return Err(SessionError::Load(err)),
        }
        let waited = started.elapsed();
        if waited >= config.exclusive_wait {
            return Err(SessionError::Busy { waited });
        }
        tokio::time::sleep(pause.min(config.exclusive_wait - waited)).await;
        pause = (pause * 2).min(LEASE_RETRY_MAX);
    }
}

/// Lets go of a lease; a failure only delays the next holder until the
/// lease runs out, so it is logged, not reported.
pub(crate) async fn release(config: &SessionConfig, lease: &HeldLease) {
    if let Err(err) = config.store.as_ref().release_lease(&lease.key, lease.token).await {
        tracing::warn!(error = &err as &dyn std::error::Error, "could not release an exclusive session lease");
    }
}

impl Drop for Shared {
    /// A request dropped before its session was persisted (the client went
    /// away mid-handler) still lets go of its lease, so that the next
    /// request need not wait for it to run out.
    fn drop(&mut self) {
        let Some(state) = self.state.get() else { return };
        let Some(lease) = state.lock().unwrap_or_else(PoisonError::into_inner).lease.take() else {
            return;
        };
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let config = Arc::clone(&self.config);
            runtime.spawn(async move { release(&config, &lease).await });
        }
    }
}

impl State {
    fn new(now: SystemTime, cookie_present: bool) -> Self {
        Self {
            id: SessionId::generate(),
            status: Status::New,
            retire: None,
            loaded_key: None,
            data: SessionMap::new(),
            meta: Meta::fresh(now),
            changes: Changes::new(),
            expiry_capped: false,
            lease: None,
            cookie_present,
        }
    }

    /// A session read from the store, with the configuration's caps
    /// applied: past `created + absolute_lifetime`, or past what the ttl
    /// allows, it is expired (and deleted when persisting); an expiry later
    /// than the configuration allows is lowered.
    fn loaded(
        id: SessionId,
        key: StoreKey,
        mut record: SessionRecord,
        now: SystemTime,
        config: &SessionConfig,
        cookie_present: bool,
    ) -> Self {
        // The reserved keys are taken out one by one, their strings moved
        // rather than copied; removing in a pass over the whole map is left
        // for a reserved key this version does not know (a later one wrote
        // it), and for maps that keep insertion order (serde_json's
        // `preserve_order`), whose `remove` would reorder the other keys.
        let data = &mut record.data;
        let meta = if *MAPS_ARE_SORTED {
            let instant = |value: Option<Value>| value.as_ref().and_then(Value::as_i64).map(expiry::from_unix_ms);
            let text = |value: Option<Value>| match value {
                Some(Value::String(text)) => Some(text),
                _ => None,
            };
            let created = instant(data.remove(reserved::CREATED_AT));
            Meta {
                created: created.unwrap_or(now),
                last_active: instant(data.remove(reserved::LAST_ACTIVE)),
                user: text(data.remove(reserved::USER)),
                lineage: text(data.remove(reserved::LINEAGE)),
                created_missing: created.is_none(),
                keyed_by_missing: data.remove(reserved::KEYED_BY).is_none(),
            }
        } else {
            let created = reserved::instant(data, reserved::CREATED_AT);
            Meta {
                created: created.unwrap_or(now),
                last_active: reserved::instant(data, reserved::LAST_ACTIVE),
                user: reserved::user_of(data).map(str::to_owned),
                lineage: data.get(reserved::LINEAGE).and_then(Value::as_str).map(str::to_owned),
                created_missing: created.is_none(),
                keyed_by_missing: !data.contains_key(reserved::KEYED_BY),
            }
        };
        if data.keys().any(|name| reserved::is_reserved(name)) {
            data.retain(|name, _| !reserved::is_reserved(name));
        }
        // What this configuration allows, counted from the creation (or,
        // rolling, from now): a lowered ttl or a new absolute lifetime
        // reaches sessions that already exist.
        let limit = config.session_expiry(meta.created, now);
        if expiry::is_expired(limit, now) {
            let mut state = Self::new(now, cookie_present);
            state.retire = Some(Retire { key, owner: None });
            return state;
        }
        let (expires_at, expiry_capped) = match (record.expires_at, limit) {
            (Some(at), Some(limit)) if at > limit => (Some(limit), true),
            (None, Some(limit)) => (Some(limit), true),
            (at, _) => (at, false),
        };
        Self {
            loaded_key: Some((*id.as_bytes(), key)),
            id,
            status: Status::Loaded { expires_at },
            retire: None,
            data: record.data,
            meta,
            changes: Changes::new(),
            expiry_capped,
            lease: None,
            cookie_present,
        }
    }

    /// The store key of `id`: the one the session was loaded under when it
    /// is that session's id, else computed.
    pub(crate) fn store_key(&self, id: &SessionId, config: &SessionConfig) -> StoreKey {
        match &self.loaded_key {
            Some((loaded, key)) if loaded == id.as_bytes() => key.clone(),
            _ => config.store_key(id),
        }
    }

    /// The key the session is stored under right now, if it is stored.
    fn stored_key(&self) -> Option<&StoreKey> {
        match &self.status {
            Status::Loaded { .. } => self.loaded_key.as_ref().map(|(_, key)| key),
            Status::Renewed { from, .. } => Some(from),
            Status::New | Status::Destroyed => None,
        }
    }

    /// A write after `destroy()` starts a brand-new session (a "you have been
    /// logged out" flash message, say) under a fresh id.
    fn revive_if_destroyed(&mut self) {
        if self.status == Status::Destroyed {
            self.id = SessionId::generate();
            self.status = Status::New;
            self.meta = Meta::fresh(expiry::now());
        }
    }
}

impl Session {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere while holding the lock leaves consistent state:
        // every mutation below completes before it can panic.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The session's id, as the client will see it in the cookie.
    pub fn id(&self) -> SessionId {
        self.lock().id.clone()
    }

    /// The session's handle: its key in the store, under its current id.
    /// Listings name sessions by handle ([`Session::sessions`]), never by id.
    pub fn handle(&self) -> StoreKey {
        let state = self.lock();
        state.store_key(&state.id, &self.shared.config)
    }

    /// A copy of all the session's data (without sessionkit's own keys).
    pub fn data(&self) -> SessionMap {
        self.lock().data.clone()
    }

    /// Whether the session was not found in the store (a first visit, an
    /// expired or unknown cookie, or a write after `destroy`).
    pub fn is_new(&self) -> bool {
        matches!(self.lock().status, Status::New)
    }

    /// Whether [`destroy`](Self::destroy) was called (and nothing written since).
    pub fn is_destroyed(&self) -> bool {
        self.lock().status == Status::Destroyed
    }

    /// When the stored session expires, as loaded (and capped by the
    /// configuration); `None` for a new session or one stored without expiry.
    pub fn expires_at(&self) -> Option<SystemTime> {
        match self.lock().status {
            Status::Loaded { expires_at } | Status::Renewed { expires_at, .. } => expires_at,
            Status::New | Status::Destroyed => None,
        }
    }

    /// When the session was created.
    pub fn created_at(&self) -> SystemTime {
        self.lock().meta.created
    }

    /// The user this session belongs to, set by [`login`](Self::login).
    pub fn user(&self) -> Option<String> {
        self.lock().meta.user.clone()
    }

    /// The value under `key`, deserialized as `T`; `Ok(None)` when absent.
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, SessionError> {
        let state = self.lock();
        let Some(value) = state.data.get(key) else {
            return Ok(None);
        };
        T::deserialize(value).map(Some).map_err(|source| SessionError::Deserialize {
            key: key.to_owned(),
            expected: std::any::type_name::<T>(),
            source,
        })
    }

    /// The raw JSON value under `key`.
    pub fn get_value(&self, key: &str) -> Option<Value> {
        self.lock().data.get(key).cloned()
    }

    /// Stores `value` under `key`. Setting the value a key already holds is
    /// not a change and causes no store write.
    pub fn set<T: Serialize>(&self, key: impl Into<String>, value: T) -> Result<(), SessionError> {
        let key = key.into();
        match serde_json::to_value(&value) {
            Ok(value) => self.set_value(key, value),
            Err(source) => Err(SessionError::Serialize { key, source }),
        }
    }

    /// Stores a raw JSON value under `key`.
    pub fn set_value(&self, key: impl Into<String>, value: Value) -> Result<(), SessionError> {
        let key = unreserved(key.into())?;
        let mut state = self.lock();
        if state.data.get(&key) == Some(&value) {
            return Ok(());
        }
        state.revive_if_destroyed();
        state.changes.set(key.clone(), value.clone());
        state.data.insert(key, value);
        Ok(())
    }

    /// Removes `key`, returning what it held.
    pub fn delete(&self, key: &str) -> Option<Value> {
        let mut state = self.lock();
        let old = state.data.remove(key)?;
        state.changes.remove(key);
        Some(old)
    }

    /// Adds `by` to the integer under `key` (a missing key counts from 0)
    /// and returns the new value as this request sees it. The store adds
    /// `by` to whatever it holds when it saves the session, so concurrent
    /// increments of one key all count (see [`Changes`]).
    ///
    /// Fails with [`SessionError::Patch`] when the key holds something other
    /// than an integer, or the sum leaves the `i64` range.
    pub fn increment(&self, key: impl Into<String>, by: i64) -> Result<i64, SessionError> {
        let key = unreserved(key.into())?;
        let value = self.operate(key.clone(), Op::Increment(by))?;
        value.and_then(|value| value.as_i64()).ok_or(SessionError::Patch(crate::PatchError::Overflow { key }))
    }

    /// Appends `value` to the array under `key` (a missing key starts an
    /// empty one), keeping only the last `keep_last` elements if given. The
    /// store appends to whatever it holds when it saves the session, so
    /// concurrent pushes all land.
    ///
    /// Fails with [`SessionError::Patch`] when the key holds something other
    /// than an array.
    pub fn push<T: Serialize>(
        &self,
        key: impl Into<String>,
        value: T,
        keep_last: Option<usize>,
    ) -> Result<(), SessionError> {
        let key = unreserved(key.into())?;
        let value =
            serde_json::to_value(&value).map_err(|source| SessionError::Serialize { key: key.clone(), source })?;
        self.operate(key, Op::Push { value, keep_last }).map(drop)
    }

    /// Removes the first element equal to `value` from the array under
    /// `key`; returns whether this request saw one. The store removes the
    /// first equal element of whatever it holds when it saves the session.
    ///
    /// Fails with [`SessionError::Patch`] when the key holds something other
    /// than an array.
    pub fn remove_first<T: Serialize>(&self, key: impl Into<String>, value: T) -> Result<bool, SessionError> {
        let key = unreserved(key.into())?;
        let value =
            serde_json::to_value(&value).map_err(|source| SessionError::Serialize { key: key.clone(), source })?;
        let seen = {
            let state = self.lock();
            match state.data.get(&key) {
                Some(Value::Array(items)) => items.contains(&value),
                None => false,
                Some(_) => true,
            }
        };
        // Nothing to remove here: asking the store to remove an element this
        // request never saw would remove one another request just added.
        if !seen {
            return Ok(false);
        }
        self.operate(key, Op::RemoveFirst(value)).map(|_| true)
    }

    /// Applies `op` to this request's view and records it for the store.
    fn operate(&self, key: String, op: Op) -> Result<Option<Value>, SessionError> {
        let mut state = self.lock();
        let current = state.data.get(&key).cloned();
        let value = apply_op(&key, current, &op).map_err(SessionError::Patch)?;
        // `increment` answers an `i64`: a sum only a `u64` holds is refused
        // here, before anything is recorded.
        if matches!(op, Op::Increment(_)) && !value.as_ref().is_some_and(Value::is_i64) {
            return Err(SessionError::Patch(crate::PatchError::Overflow { key }));
        }
        state.revive_if_destroyed();
        let recorded = match op {
            Op::Increment(by) => state.changes.increment(key.clone(), by),
            Op::Push { value, keep_last } => state.changes.push(key.clone(), value, keep_last),
            Op::RemoveFirst(value) => state.changes.remove_first(key.clone(), value),
        };
        recorded.map_err(SessionError::Patch)?;
        match &value {
            Some(value) => state.data.insert(key, value.clone()),
            None => state.data.remove(&key),
        };
        Ok(value)
    }

    /// Removes every key. The session itself lives on, and so does its user
    /// (see [`destroy`](Self::destroy) to end it).
    pub fn clear(&self) {
        let mut state = self.lock();
        if state.data.is_empty() && state.changes.is_empty() {
            return;
        }
        state.data.clear();
        state.changes.clear();
    }

    /// Gives the session a new id, keeping its data, and retires the old id:
    /// when the response is persisted, the record moves to the new id in one
    /// atomic step (and if the session was destroyed meanwhile, by a logout
    /// in another tab, it stays destroyed). Call it when privileges change;
    /// [`login`](Self::login) calls it.
    pub fn regenerate(&self) -> SessionId {
        let mut state = self.lock();
        let new_id = SessionId::generate();
        let old_id = std::mem::replace(&mut state.id, new_id.clone());
        state.status = match std::mem::replace(&mut state.status, Status::New) {
            Status::Loaded { expires_at } => {
                let from = state.store_key(&old_id, &self.shared.config);
                Status::Renewed { from, expires_at }
            }
            renewed @ Status::Renewed { .. } => renewed,
            Status::New => Status::New,
            Status::Destroyed => {
                state.meta = Meta::fresh(expiry::now());
                Status::New
            }
        };
        new_id
    }

    /// Signs `user` in on this session: a new id (against session fixation,
    /// as [`regenerate`](Self::regenerate)) and the session bound to `user`,
    /// a name of the application's choosing (a user id, a tenant-qualified
    /// id). The store's user index then lists the session under `user`
    /// ([`sessions`](Self::sessions)), and revoking the user's sessions
    /// reaches it. The binding is kept in the session under
    /// [`reserved::USER`], which handlers and typed structs never see.
    ///
    /// A login starts the session's lifetime again: a fixed expiry, and an
    /// absolute lifetime, count from the login, not from the anonymous visit
    /// before it.
    ///
    /// Returns the new id.
    pub fn login(&self, user: impl Into<String>) -> SessionId {
        let user = user.into();
        let id = self.regenerate();
        let mut state = self.lock();
        state.meta.created = expiry::now();
        // The same user signing in again (a step-up) keeps the lineage; a
        // different one starts a new one.
        if state.meta.user.as_deref() != Some(user.as_str()) || state.meta.lineage.is_none() {
            state.meta.lineage = Some(lineage());
        }
        state.meta.user = Some(user);
        id
    }

    /// Signs out: [`destroy`](Self::destroy). If another request of the
    /// session regenerated it meanwhile, the session it became is ended too.
    pub fn logout(&self) {
        self.destroy();
    }

    /// Ends the session: its record is deleted and the client is sent a
    /// cookie that removes the old one.
    pub fn destroy(&self) {
        let mut state = self.lock();
        if let Some(key) = state.stored_key().cloned() {
            let owner = state.meta.owner();
            state.retire = Some(Retire { key, owner });
        }
        state.status = Status::Destroyed;
        state.data.clear();
        state.changes = Changes::new();
        state.meta = Meta::fresh(state.meta.created);
    }

    /// Every live session of this session's user (none when it has no
    /// user), this one marked [`current`](SessionInfo::current). Reads the
    /// store's user index: a store without one fails with
    /// [`StoreError::Unsupported`] (in [`SessionError::Store`]).
    pub async fn sessions(&self) -> Result<Vec<SessionInfo>, SessionError> {
        let (user, current) = {
            let state = self.lock();
            (state.meta.user.clone(), state.stored_key().cloned())
        };
        let Some(user) = user else { return Ok(Vec::new()) };
        let listed = self.store().sessions_of(&user).await.map_err(SessionError::Store)?;
        Ok(listed
            .into_iter()
            .map(|(key, record)| {
                let is_current = current.as_ref() == Some(&key);
                SessionInfo::new(key, record, is_current)
            })
            .collect())
    }

    /// Signs out the session named by `handle` if it is one of this user's
    /// (a "sign out that device" button); returns whether it was. Someone
    /// else's handle changes nothing. If that session was regenerated at
    /// the same moment, the session it became is signed out too.
    pub async fn revoke(&self, handle: &StoreKey) -> Result<bool, SessionError> {
        let Some(user) = self.user() else { return Ok(false) };
        let store = self.store();
        let listed = store.sessions_of(&user).await.map_err(SessionError::Store)?;
        let Some(lineage) = listed.iter().find(|(key, _)| key == handle).map(|(_, record)| lineage_of(record)) else {
            return Ok(false);
        };
        let revoked = store.revoke(&user, handle).await.map_err(SessionError::Store)?;
        if let Some(lineage) = lineage {
            let owner = Owner { user, lineage };
            revoke_lineage(store, &owner, Some(handle)).await.map_err(SessionError::Store)?;
        }
        Ok(revoked)
    }

    /// Signs out every other session of this session's user (after a
    /// password change, say); returns how many.
    pub async fn revoke_others(&self) -> Result<u64, SessionError> {
        let (user, current) = {
            let state = self.lock();
            (state.meta.user.clone(), state.stored_key().cloned())
        };
        let Some(user) = user else { return Ok(0) };
        self.store().revoke_all(&user, current.as_ref()).await.map_err(SessionError::Store)
    }

    fn store(&self) -> &dyn crate::SessionStore {
        self.shared.config.store.as_ref()
    }

    /// The layer configuration this session was loaded under.
    pub fn config(&self) -> &SessionConfig {
        &self.shared.config
    }
}

/// Refuses sessionkit's own keys.
fn unreserved(key: String) -> Result<String, SessionError> {
    if reserved::is_reserved(&key) { Err(SessionError::ReservedKey(key)) } else { Ok(key) }
}

/// A fresh lineage tag: 128 random bits.
fn lineage() -> String {
    format!("{}", LeaseToken::generate())
}

fn lineage_of(record: &SessionRecord) -> Option<String> {
    record.data.get(reserved::LINEAGE).and_then(Value::as_str).map(str::to_owned)
}

/// Ends every session of `owner.user` that shares `owner.lineage` (but
/// `skip`): the sessions a just-ended one was regenerated into by requests
/// that raced with its end. A store without a user index has nothing to
/// reach them by, so `Unsupported` is not an error here.
pub(crate) async fn revoke_lineage(
    store: &dyn crate::SessionStore,
    owner: &Owner,
    skip: Option<&StoreKey>,
) -> Result<(), StoreError> {
    let listed = match store.sessions_of(&owner.user).await {
        Ok(listed) => listed,
        Err(StoreError::Unsupported { .. }) => return Ok(()),
        Err(err) => return Err(err),
    };
    for (key, record) in listed {
        if Some(&key) != skip && lineage_of(&record).as_deref() == Some(owner.lineage.as_str()) {
            store.revoke(&owner.user, &key).await?;
        }
    }
    Ok(())
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.lock();
        f.debug_struct("Session")
            .field("id", &state.id)
            .field("status", &state.status)
            .field("keys", &state.data.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for LazySession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LazySession").field("loaded", &self.shared.state.initialized()).finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;

    use super::*;
    use crate::SessionConfigBuilder;
    use crate::test_support::{MapStore, run};

    fn config(store: &MapStore) -> SessionConfigBuilder {
        SessionConfig::shared_builder(Arc::new(store.clone())).hash_ids_at_rest(false)
    }

    fn lazy_with(config: impl Into<SessionConfigBuilder>, cookie: Option<&SessionId>) -> LazySession {
        let cookies =
            cookie.map(|id| HeaderValue::from_str(&format!("id={id}")).expect("header")).into_iter().collect();
        LazySession::new(Arc::new(config.into().build().expect("valid config")), cookies, None)
    }

    fn lazy(store: &MapStore, cookie: Option<&SessionId>) -> LazySession {
        lazy_with(config(store), cookie)
    }

    fn key(id: &SessionId) -> StoreKey {
        StoreKey::unhashed(id)
    }

    #[test]
    fn a_missing_cookie_gives_a_new_empty_session() {
        run(async {
            let store = MapStore::default();
            let session = lazy(&store, None).load().await.expect("load");
            assert!(session.is_new());
            assert!(!session.is_destroyed());
            assert!(session.data().is_empty());
            assert_eq!(store.calls(), 0, "no cookie, no store call");
        });
    }

    #[test]
    fn an_unknown_id_is_never_adopted() {
        run(async {
            let store = MapStore::default();
            let client_id = SessionId::generate();
            let session = lazy(&store, Some(&client_id)).load().await.expect("load");
            assert!(session.is_new());
            assert_ne!(session.id(), client_id);
        });
    }

    #[test]
    fn loading_twice_reads_the_store_once_and_shares_state() {
        run(async {
            let store = MapStore::default();
            let id = SessionId::generate();
            store.insert(&key(&id), json!({ "a": 1 }), None);
            let lazy = lazy(&store, Some(&id));
            let first = lazy.load().await.expect("load");
            let second = lazy.load().await.expect("load");
            assert_eq!(store.calls(), 1);
            first.set("b", 2).expect("set");
            assert_eq!(second.get::<i32>("b").expect("get"), Some(2));
            assert_eq!(second.id(), id);
            assert!(!second.is_new());
        });
    }

    #[test]
    fn typed_get_reports_the_key_and_type_on_a_wrong_shape() {
        run(async {
            let session = lazy(&MapStore::default(), None).load().await.expect("load");
            session.set("n", "not a number").expect("set");
            let err = session.get::<u32>("n").expect_err("wrong shape");
            let text = err.to_string();
            assert!(text.contains("`n`") && text.contains("u32"), "{text}");
            assert_eq!(session.get::<u32>("absent").expect("get"), None);
        });
    }

    #[test]
    fn setting_an_identical_value_is_not_a_change() {
        run(async {
            let store = MapStore::default();
            let id = SessionId::generate();
            store.insert(&key(&id), json!({ "theme": "dark", "n": [1, 2] }), None);
            let session = lazy(&store, Some(&id)).load().await.expect("load");
            session.set("theme", "dark").expect("set");
            session.set("n", vec![1, 2]).expect("set");
            assert!(session.lock().changes.is_empty());
            session.set("theme", "light").expect("set");
            assert_eq!(session.lock().changes.len(), 1);
        });
    }

    #[test]
    fn delete_and_clear_record_changes_only_when_something_goes() {
        run(async {
            let session = lazy(&MapStore::default(), None).load().await.expect("load");
            assert_eq!(session.delete("absent"), None);
            session.clear();
            assert!(session.lock().changes.is_empty());
            session.set("a", 1).expect("set");
            assert_eq!(session.delete("a"), Some(json!(1)));
            session.set("b", 1).expect("set");
            session.clear();
            assert!(session.data().is_empty());
            assert!(session.lock().changes.is_cleared());
        });
    }

    #[test]
    fn operations_are_read_your_writes_and_recorded_for_the_store() {
        run(async {
            let store = MapStore::default();
            let id = SessionId::generate();
            store.insert(&key(&id), json!({ "visits": 4, "cart": ["a"], "name": "ada" }), None);
            let session = lazy(&store, Some(&id)).load().await.expect("load");
            assert_eq!(session.increment("visits", 1).expect("increment"), 5);
            assert_eq!(session.increment("visits", 2).expect("increment"), 7);
            assert_eq!(session.increment("fresh", -1).expect("increment"), -1);
            session.push("cart", "b", None).expect("push");
            session.push("recent", 1, Some(1)).expect("push");
            session.push("recent", 2, Some(1)).expect("push");
            assert!(session.remove_first("cart", "a").expect("remove"));
            assert!(!session.remove_first("cart", "never there").expect("remove"));
            assert_eq!(session.get::<Vec<String>>("cart").expect("get"), Some(vec!["b".to_owned()]));
            assert_eq!(session.get::<Vec<i32>>("recent").expect("get"), Some(vec![2]));
            let err = session.increment("name", 1).expect_err("not an integer");
            assert!(matches!(err, SessionError::Patch(crate::PatchError::NotAnInteger { .. })), "{err:?}");
            assert_eq!(session.get::<String>("name").expect("get").as_deref(), Some("ada"), "nothing changed");
            let changes = session.lock().changes.clone();
            let stored = changes
                .applied_to(crate::test_support::object(json!({ "visits": 10, "cart": ["a", "z"], "name": "ada" })))
                .expect("applies");
            assert_eq!(
                Value::Object(stored),
                json!({ "visits": 13, "fresh": -1, "cart": ["z", "b"], "recent": [2], "name": "ada" }),
                "the store applies the operations to what it holds"
            );
        });
    }

    #[test]
    fn reserved_keys_are_refused_for_every_write() {
        run(async {
            let session = lazy(&MapStore::default(), None).load().await.expect("load");
            for key in [reserved::USER, reserved::CREATED_AT, "__sessionkit.anything"] {
                assert!(matches!(session.set(key, 1), Err(SessionError::ReservedKey(_))));
                assert!(matches!(session.increment(key, 1), Err(SessionError::ReservedKey(_))));
                assert!(matches!(session.push(key, 1, None), Err(SessionError::ReservedKey(_))));
            }
            assert!(session.lock().changes.is_empty());
        });
    }

    #[test]
    fn regenerate_keeps_data_and_renames_from_the_loaded_key() {
        run(async {
            let store = MapStore::default();
            let id = SessionId::generate();
            store.insert(&key(&id), json!({ "user": "ada" }), None);
            let session = lazy(&store, Some(&id)).load().await.expect("load");
            let new_id = session.regenerate();
            assert_ne!(new_id, id);
            assert_eq!(session.id(), new_id);
            assert_eq!(session.handle(), key(&new_id));
            assert_eq!(session.get::<String>("user").expect("get").as_deref(), Some("ada"));
            let again = session.regenerate();
            let state = session.lock();
            assert!(matches!(&state.status, Status::Renewed { from, .. } if *from == key(&id)), "{:?}", state.status);
            assert_eq!(state.id, again);
        });
    }

    #[test]
    fn login_binds_the_user_and_keeps_the_lineage_for_the_same_user() {
        run(async {
            let session = lazy(&MapStore::default(), None).load().await.expect("load");
            assert_eq!(session.user(), None);
            let first = session.login("ada");
            assert_eq!(session.user().as_deref(), Some("ada"));
            assert_eq!(session.id(), first);
            let lineage = session.lock().meta.lineage.clone();
            assert!(lineage.is_some());
            session.login("ada");
            assert_eq!(session.lock().meta.lineage, lineage, "a step-up keeps the lineage");
            session.login("bob");
            assert_ne!(session.lock().meta.lineage, lineage, "another user starts a new one");
            assert!(session.data().is_empty(), "the binding is not handler data");
        });
    }

    #[test]
    fn destroy_clears_retires_with_its_owner_and_a_later_write_starts_a_new_session() {
        run(async {
            let store = MapStore::default();
            let id = SessionId::generate();
            store.insert(
                &key(&id),
                json!({
                    "a": 1,
                    reserved::USER: "ada",
                    reserved::LINEAGE: "l1",
                    reserved::CREATED_AT: expiry::to_unix_ms(expiry::now()),
                }),
                None,
            );
            let session = lazy(&store, Some(&id)).load().await.expect("load");
            assert_eq!(session.user().as_deref(), Some("ada"));
            assert!(!session.data().contains_key(reserved::USER), "reserved keys are hidden");
            session.destroy();
            assert!(session.is_destroyed());
            assert!(session.data().is_empty());
            assert_eq!(session.user(), None);
            session.set("flash", "bye").expect("set");
            assert!(!session.is_destroyed());
            assert!(session.is_new());
            assert_ne!(session.id(), id);
            let state = session.lock();
            let retire = state.retire.as_ref().expect("retired");
            assert_eq!(retire.key, key(&id));
            assert_eq!(retire.owner, Some(Owner { user: "ada".into(), lineage: "l1".into() }));
        });
    }

    #[test]
    fn caps_reach_sessions_that_already_exist() {
        run(async {
            let store = MapStore::default();
            let hour = Duration::from_secs(3600);
            let now = expiry::now();
            let (fresh, old, forever) = (SessionId::generate(), SessionId::generate(), SessionId::generate());
            let created = |at: SystemTime| json!({ reserved::CREATED_AT: expiry::to_unix_ms(at) });
            // Stored under a 24 h ttl; the configuration now says 1 h.
            store.insert(&key(&fresh), created(now - hour / 2), Some(now + hour * 23));
            store.insert(&key(&old), created(now - hour * 2), Some(now + hour * 22));
            store.insert(&key(&forever), json!({}), None);
            let config = || config(&store).ttl(hour);

            let session = lazy_with(config(), Some(&fresh)).load().await.expect("load");
            assert_eq!(session.expires_at(), Some(now + hour / 2), "capped at created + the new ttl");
            assert!(session.lock().expiry_capped);

            let session = lazy_with(config(), Some(&old)).load().await.expect("load");
            assert!(session.is_new(), "past the new ttl: expired");
            assert_eq!(session.lock().retire.as_ref().map(|r| r.key.clone()), Some(key(&old)), "and deleted");

            let session = lazy_with(config(), Some(&forever)).load().await.expect("load");
            let capped = session.expires_at().expect("an expiry now");
            assert!(capped <= expiry::now() + hour && capped > now, "{capped:?}");

            let session = lazy_with(config().absolute_lifetime(hour / 4), Some(&fresh)).load().await.expect("load");
            assert!(session.is_new(), "past a newly added absolute lifetime: expired");
        });
    }

    #[test]
    fn a_load_failure_is_remembered_for_the_layer() {
        run(async {
            let store = MapStore::failing();
            let lazy = lazy(&store, Some(&SessionId::generate()));
            assert!(matches!(lazy.load().await, Err(SessionError::Load(_))));
            assert_eq!(lazy.load_failure(), LoadFailure::Store);
            assert!(lazy.loaded_state().is_none());
        });
    }
}
