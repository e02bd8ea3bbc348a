//! The per-request session handle.
//!
//! The layer puts a [`LazySession`] in the request's extensions. Nothing is
//! read from the store until something asks for the session: the axum
//! extractor, or [`LazySession::load`] in a bare tower service. That returns a
//! [`Session`], whose methods are synchronous, as in the seed's API. A route
//! that never asks costs no store call.
//!
//! Every clone of a `Session` (or `LazySession`) of one request shares one
//! state, which the layer reads after the handler to decide what to persist.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::SystemTime;

use http::HeaderValue;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::OnceCell;

use crate::{Changes, SessionConfig, SessionError, SessionId, SessionMap, cookie, expiry};

/// Where the layer keeps a session's creation time (Unix ms) when an
/// absolute lifetime is configured. Hidden from [`Session::data`] and
/// refused by [`Session::set`].
pub const CREATED_AT_KEY: &str = "__sessionkit.created_at";

/// A session that has not been read from the store yet. Found in the
/// request's extensions when the [`SessionLayer`](crate::SessionLayer) runs.
///
/// ```no_run
/// # async fn handler(request: http::Request<()>) -> Result<(), sessionkit::SessionError> {
/// use sessionkit::LazySession;
///
/// let lazy = request.extensions().get::<LazySession>().expect("SessionLayer is installed");
/// let session = lazy.load().await?;
/// session.set("visits", session.get::<u64>("visits")?.unwrap_or(0) + 1)?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct LazySession {
    shared: Arc<Shared>,
}

/// A loaded session: the seed's API, synchronous.
///
/// Cheap to clone; all clones share one state.
#[derive(Clone)]
pub struct Session {
    shared: Arc<Shared>,
    state: Arc<Mutex<State>>,
}

pub(crate) struct Shared {
    pub(crate) config: Arc<SessionConfig>,
    /// The request's `Cookie` headers, parsed (and verified) only when the
    /// session is loaded: a route that never asks for its session pays
    /// nothing for it, signature checks included.
    pub(crate) cookies: Vec<HeaderValue>,
    pub(crate) state: OnceCell<Arc<Mutex<State>>>,
    pub(crate) load_failed: AtomicBool,
}

/// Where the session stands with respect to the store.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Status {
    /// Not in the store (yet).
    New { created: SystemTime },
    /// Loaded from the store under the current id.
    Loaded { expires_at: Option<SystemTime>, created: SystemTime },
    /// Loaded, then given a new id: the whole data goes under the new id and
    /// the old record is retired.
    Renewed { created: SystemTime },
    /// Destroyed in this request.
    Destroyed,
}

pub(crate) struct State {
    pub(crate) id: SessionId,
    pub(crate) status: Status,
    /// A stored id to delete when persisting (after destroy or regenerate).
    pub(crate) retire: Option<SessionId>,
    /// The loaded session's id (its bytes) and the store key it was read
    /// under, so that persisting it does not hash the id again.
    pub(crate) loaded_key: Option<([u8; 32], SessionId)>,
    pub(crate) data: SessionMap,
    pub(crate) changes: Changes,
    /// A loaded session that lacked its creation stamp while an absolute
    /// lifetime is configured: the stamp must be written.
    pub(crate) stamp_missing: bool,
    /// Whether the request sent a cookie of our name at all, valid or not
    /// (a destroyed session then gets a removal cookie).
    pub(crate) cookie_present: bool,
}

impl LazySession {
    pub(crate) fn new(config: Arc<SessionConfig>, cookies: Vec<HeaderValue>) -> Self {
        Self {
            shared: Arc::new(Shared { config, cookies, state: OnceCell::new(), load_failed: AtomicBool::new(false) }),
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
                        shared.load_failed.store(true, Ordering::Release);
                        Err(err)
                    }
                }
            })
            .await?;
        Ok(Session { shared: Arc::clone(shared), state: Arc::clone(state) })
    }

    async fn fetch(&self) -> Result<State, SessionError> {
        let config = &self.shared.config;
        let now = expiry::now();
        let from_cookie = cookie::read(&self.shared.cookies, config);
        let cookie_present = from_cookie.present;
        let Some(id) = from_cookie.id else {
            return Ok(State::new(now, cookie_present));
        };
        let key = config.store_key(&id);
        // Through the trait object itself: calling through the `Arc` would
        // box a second future around the store's.
        let Some(mut record) = config.store.as_ref().get(&key).await.map_err(SessionError::Load)? else {
            return Ok(State::new(now, cookie_present));
        };
        // The store contract forbids expired records, but a clock step
        // between its check and ours must not revive one.
        if record.is_expired_at(now) {
            return Ok(State::new(now, cookie_present));
        }
        let stamp = record.data.remove(CREATED_AT_KEY).and_then(|v| v.as_i64());
        let stamp_missing = config.absolute_lifetime.is_some() && stamp.is_none();
        let created = stamp.map_or(now, expiry::from_unix_ms);
        Ok(State {
            loaded_key: Some((*id.as_bytes(), key)),
            id,
            status: Status::Loaded { expires_at: record.expires_at, created },
            retire: None,
            data: record.data,
            changes: Changes::new(),
            stamp_missing,
            cookie_present,
        })
    }

    /// Whether the session was loaded (successfully) during this request.
    pub(crate) fn loaded_state(&self) -> Option<&Arc<Mutex<State>>> {
        self.shared.state.get()
    }

    pub(crate) fn load_failed(&self) -> bool {
        self.shared.load_failed.load(Ordering::Acquire)
    }

    pub(crate) fn config(&self) -> &Arc<SessionConfig> {
        &self.shared.config
    }
}

impl State {
    fn new(now: SystemTime, cookie_present: bool) -> Self {
        Self {
            id: SessionId::generate(),
            status: Status::New { created: now },
            retire: None,
            loaded_key: None,
            data: SessionMap::new(),
            changes: Changes::new(),
            stamp_missing: false,
            cookie_present,
        }
    }

    /// The store key of `id`: the one the session was loaded under when it
    /// is that session's id, else computed.
    pub(crate) fn store_key(&self, id: &SessionId, config: &SessionConfig) -> SessionId {
        match &self.loaded_key {
            Some((loaded, key)) if loaded == id.as_bytes() => key.clone(),
            _ => config.store_key(id),
        }
    }

    /// A write after `destroy()` starts a brand-new session (a "you have been
    /// logged out" flash message, say) under a fresh id.
    fn revive_if_destroyed(&mut self) {
        if self.status == Status::Destroyed {
            self.id = SessionId::generate();
            self.status = Status::New { created: expiry::now() };
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

    /// A copy of all the session's data.
    pub fn data(&self) -> SessionMap {
        self.lock().data.clone()
    }

    /// Whether the session was not found in the store (a first visit, an
    /// expired or unknown cookie, or a write after `destroy`).
    pub fn is_new(&self) -> bool {
        matches!(self.lock().status, Status::New { .. })
    }

    /// Whether [`destroy`](Self::destroy) was called (and nothing written since).
    pub fn is_destroyed(&self) -> bool {
        self.lock().status == Status::Destroyed
    }

    /// When the stored session expires, as loaded; `None` for a new session
    /// or one stored without expiry.
    pub fn expires_at(&self) -> Option<SystemTime> {
        match self.lock().status {
            Status::Loaded { expires_at, .. } => expires_at,
            _ => None,
        }
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
        let key = key.into();
        if key == CREATED_AT_KEY {
            return Err(SessionError::ReservedKey(key));
        }
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

    /// Removes every key. The session itself lives on (see
    /// [`destroy`](Self::destroy) to end it).
    pub fn clear(&self) {
        let mut state = self.lock();
        if state.data.is_empty() && state.changes.is_empty() {
            return;
        }
        state.data.clear();
        state.changes.clear();
    }

    /// Gives the session a new id, keeping its data, and retires the old id
    /// (its record is deleted after the new one is written). Call it when
    /// privileges change, at login above all, to defeat session fixation.
    pub fn regenerate(&self) -> SessionId {
        let mut state = self.lock();
        let new_id = SessionId::generate();
        let old_id = std::mem::replace(&mut state.id, new_id.clone());
        state.status = match state.status {
            Status::Loaded { created, .. } => {
                state.retire = Some(old_id);
                Status::Renewed { created }
            }
            Status::Renewed { created } => Status::Renewed { created },
            Status::New { created } => Status::New { created },
            Status::Destroyed => Status::New { created: expiry::now() },
        };
        new_id
    }

    /// Ends the session: its record is deleted and the client is sent a
    /// cookie that removes the old one.
    pub fn destroy(&self) {
        let mut state = self.lock();
        if let Status::Loaded { .. } = state.status {
            let id = state.id.clone();
            state.retire = Some(id);
        }
        state.status = Status::Destroyed;
        state.data.clear();
        state.changes = Changes::new();
    }

    /// The layer configuration this session was loaded under.
    pub fn config(&self) -> &SessionConfig {
        &self.shared.config
    }
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
    use serde_json::json;

    use super::*;
    use crate::test_support::{MapStore, run};

    fn lazy(store: &MapStore, cookie: Option<&SessionId>) -> LazySession {
        let config = SessionConfig::with_shared_store(Arc::new(store.clone())).hash_ids_at_rest(false);
        let cookies =
            cookie.map(|id| HeaderValue::from_str(&format!("id={id}")).expect("header")).into_iter().collect();
        LazySession::new(Arc::new(config), cookies)
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
            store.insert(&id, json!({ "a": 1 }), None);
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
            store.insert(&id, json!({ "theme": "dark", "n": [1, 2] }), None);
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
    fn regenerate_keeps_data_and_retires_the_old_id() {
        run(async {
            let store = MapStore::default();
            let id = SessionId::generate();
            store.insert(&id, json!({ "user": "ada" }), None);
            let session = lazy(&store, Some(&id)).load().await.expect("load");
            let new_id = session.regenerate();
            assert_ne!(new_id, id);
            assert_eq!(session.id(), new_id);
            assert_eq!(session.get::<String>("user").expect("get").as_deref(), Some("ada"));
            let state = session.lock();
            assert_eq!(state.retire.as_ref(), Some(&id));
            assert!(matches!(state.status, Status::Renewed { .. }));
        });
    }

    #[test]
    fn destroy_clears_and_a_later_write_starts_a_new_session() {
        run(async {
            let store = MapStore::default();
            let id = SessionId::generate();
            store.insert(&id, json!({ "user": "ada" }), None);
            let session = lazy(&store, Some(&id)).load().await.expect("load");
            session.destroy();
            assert!(session.is_destroyed());
            assert!(session.data().is_empty());
            session.set("flash", "bye").expect("set");
            assert!(!session.is_destroyed());
            assert!(session.is_new());
            assert_ne!(session.id(), id);
            assert_eq!(session.lock().retire.as_ref(), Some(&id));
        });
    }

    #[test]
    fn the_reserved_key_is_refused_and_hidden() {
        run(async {
            let store = MapStore::default();
            let id = SessionId::generate();
            store.insert(&id, json!({ CREATED_AT_KEY: 5, "a": 1 }), None);
            let session = lazy(&store, Some(&id)).load().await.expect("load");
            assert!(!session.data().contains_key(CREATED_AT_KEY));
            assert!(matches!(session.set(CREATED_AT_KEY, 1), Err(SessionError::ReservedKey(_))));
        });
    }

    #[test]
    fn a_load_failure_is_remembered_for_the_layer() {
        run(async {
            let store = MapStore::failing();
            let lazy = lazy(&store, Some(&SessionId::generate()));
            assert!(matches!(lazy.load().await, Err(SessionError::Load(_))));
            assert!(lazy.load_failed());
            assert!(lazy.loaded_state().is_none());
        });
    }
}
