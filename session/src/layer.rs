//! `SessionLayer`: loads the session around any `http` service and persists
//! what the handler did to it.
//!
//! Per request: the cookie is read (no store call yet); the handler runs with
//! a [`LazySession`] in its extensions; if it loaded the session, the final
//! state decides the store calls and the `Set-Cookie`:
//!
//! | final state | store calls | `Set-Cookie` |
//! | --- | --- | --- |
//! | new, never written | none | none |
//! | new, written | `set` | the new id |
//! | existing, changed | `update` (`Missing`: the session was destroyed meanwhile, nothing is written) | only if rolling |
//! | existing, unchanged, rolling | `touch` | refreshed `Max-Age` |
//! | existing, unchanged, not rolling | none | none |
//! | regenerated | `set` under the new id, **then** `delete` the old one | the new id |
//! | destroyed | `delete` | a removal cookie with the same Path, Domain, Secure, HttpOnly, SameSite |
//!
//! A 5xx from the handler persists nothing. A store error (loading or saving)
//! turns the response into an empty 500, logged with `tracing` but never with
//! the id. A session that serializes past
//! [`max_size`](crate::SessionConfig::max_size) is not written and the
//! response becomes an empty 413: the stored session keeps its previous state.

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::SystemTime;

use http::header::{CACHE_CONTROL, COOKIE, SET_COOKIE, VARY};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use tower_layer::Layer;
use tower_service::Service;

use crate::config::ConfigError;
use crate::session::{CREATED_AT_KEY, State, Status};
use crate::{Changes, LazySession, SessionConfig, SessionId, SessionMap, StoreError, UpdateOutcome, cookie, expiry};

/// A tower [`Layer`] that gives every request a session.
///
/// ```
/// use sessionkit::{SessionConfig, SessionLayer};
/// use sessionkit_stores::MemoryStore;
///
/// let layer = SessionLayer::new(SessionConfig::new(MemoryStore::new()));
/// # let _ = layer;
/// ```
#[derive(Clone, Debug)]
pub struct SessionLayer {
    config: Arc<SessionConfig>,
}

impl SessionLayer {
    /// A layer with this configuration.
    ///
    /// # Panics
    ///
    /// If the configuration is invalid (see [`SessionConfig::validate`]);
    /// use [`SessionLayer::try_new`] to handle that as an error.
    pub fn new(config: SessionConfig) -> Self {
        match Self::try_new(config) {
            Ok(layer) => layer,
            Err(err) => panic!("{err}"),
        }
    }

    /// A layer with this configuration, or why it cannot work.
    pub fn try_new(config: SessionConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Self { config: Arc::new(config) })
    }

    /// The configuration in use.
    pub fn config(&self) -> &SessionConfig {
        &self.config
    }
}

impl<S> Layer<S> for SessionLayer {
    type Service = SessionService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SessionService { inner, config: Arc::clone(&self.config) }
    }
}

/// The service [`SessionLayer`] wraps around an inner service.
#[derive(Clone)]
pub struct SessionService<S> {
    inner: S,
    config: Arc<SessionConfig>,
}

impl<S: fmt::Debug> fmt::Debug for SessionService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionService").field("inner", &self.inner).finish_non_exhaustive()
    }
}

/// The future a [`SessionService`] returns.
pub type ResponseFuture<B, E> = Pin<Box<dyn Future<Output = Result<Response<B>, E>> + Send>>;

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for SessionService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Future: Send + 'static,
    S::Error: 'static,
    ResBody: Default + Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<ResBody, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        // Only the raw headers here (cheap clones of shared bytes): parsing
        // and verifying waits until the handler asks for its session.
        let cookies = request.headers().get_all(COOKIE).iter().cloned().collect();
        let lazy = LazySession::new(Arc::clone(&self.config), cookies);
        request.extensions_mut().insert(lazy.clone());
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await?;
            Ok(finish(&lazy, response).await)
        })
    }
}

/// Persists the session after the handler and decorates its response.
async fn finish<B: Default>(lazy: &LazySession, mut response: Response<B>) -> Response<B> {
    if lazy.load_failed() {
        tracing::error!("session store failed while loading a session; answering 500");
        return empty(StatusCode::INTERNAL_SERVER_ERROR);
    }
    let Some(state) = lazy.loaded_state() else {
        // The route never asked for its session: nothing to read or write.
        return response;
    };
    add_vary_cookie(response.headers_mut());
    if response.status().is_server_error() {
        return response;
    }
    let config = lazy.config();
    let now = expiry::now();
    let plan = {
        let mut state = state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        Plan::decide(&mut state, config, now)
    };
    let plan = match plan {
        Ok(plan) => plan,
        Err(refused) => {
            tracing::warn!(%refused, "session not saved; answering 413");
            return empty(StatusCode::PAYLOAD_TOO_LARGE);
        }
    };
    match plan.execute(config, now).await {
        Ok(Some(set_cookie)) => {
            let headers = response.headers_mut();
            headers.append(SET_COOKIE, set_cookie);
            headers.append(CACHE_CONTROL, HeaderValue::from_static("no-cache=\"set-cookie\""));
            response
        }
        Ok(None) => response,
        Err(err) => {
            tracing::error!(
                error = &err as &dyn std::error::Error,
                "session store failed while saving a session; answering 500"
            );
            empty(StatusCode::INTERNAL_SERVER_ERROR)
        }
    }
}

fn empty<B: Default>(status: StatusCode) -> Response<B> {
    let mut response = Response::new(B::default());
    *response.status_mut() = status;
    response
}

/// Responses that depend on the session cookie must not be shared by caches.
fn add_vary_cookie(headers: &mut HeaderMap) {
    let already = headers.get_all(VARY).iter().any(|value| {
        value.to_str().is_ok_and(|text| {
            text.split(',').any(|item| matches!(item.trim(), "*") || item.trim().eq_ignore_ascii_case("cookie"))
        })
    });
    if !already {
        headers.append(VARY, HeaderValue::from_static("cookie"));
    }
}

/// The store calls one request needs, decided from the session's final state.
/// Each id travels with its store key (see [`SessionConfig::store_key`]).
#[derive(Debug)]
enum Plan {
    Nothing,
    /// `set` the whole record under `id`, then delete `retire`.
    Create {
        id: SessionId,
        key: SessionId,
        data: SessionMap,
        expires_at: Option<SystemTime>,
        retire: Option<SessionId>,
    },
    Update {
        /// The id for the refreshed cookie: only with rolling expiry.
        cookie: Option<SessionId>,
        key: SessionId,
        changes: Changes,
        expires_at: Option<SystemTime>,
    },
    Touch {
        id: SessionId,
        key: SessionId,
        expires_at: Option<SystemTime>,
    },
    /// Delete the record under the key `retire` (if it was ever stored) and
    /// remove the cookie, if the client holds one.
    Remove {
        retire: Option<SessionId>,
        removal_cookie: bool,
    },
}

/// Why a session was not saved.
#[derive(Debug)]
enum Refused {
    TooLarge { size: usize, limit: usize },
    TooDeep,
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refused::TooLarge { size, limit } => write!(f, "session serializes to {size} bytes, over max_size {limit}"),
            Refused::TooDeep => write!(f, "session data nests deeper than {MAX_DEPTH} levels"),
        }
    }
}

/// The deepest nesting of arrays and objects a session may hold, the map
/// itself counting as one. Stores decode with serde_json, whose parser
/// refuses documents nested past 128 levels: a session deeper than that could
/// be written but never read back, which would lose it silently.
pub const MAX_DEPTH: usize = 100;

impl Plan {
    fn decide(state: &mut State, config: &SessionConfig, now: SystemTime) -> Result<Self, Refused> {
        let stamp = |created: SystemTime| serde_json::Value::from(expiry::to_unix_ms(created));
        let retire_key = |state: &mut State| {
            let retire = state.retire.take()?;
            Some(state.store_key(&retire, config))
        };
        let plan = match state.status.clone() {
            Status::Destroyed => {
                let retire = retire_key(state);
                Plan::Remove { removal_cookie: retire.is_some() || state.cookie_present, retire }
            }
            Status::New { .. } if state.data.is_empty() => match retire_key(state) {
                Some(retire) => Plan::Remove { retire: Some(retire), removal_cookie: true },
                None => Plan::Nothing,
            },
            Status::New { created } | Status::Renewed { created } => {
                let mut data = state.data.clone();
                if config.absolute_lifetime.is_some() {
                    data.insert(CREATED_AT_KEY.to_owned(), stamp(created));
                }
                check_limits(&data, config)?;
                Plan::Create {
                    id: state.id.clone(),
                    key: state.store_key(&state.id, config),
                    data,
                    expires_at: config.expiry(created, now),
                    retire: retire_key(state),
                }
            }
            Status::Loaded { expires_at, created } => {
                let mut changes = std::mem::take(&mut state.changes);
                // A clear would also wipe the creation stamp the cap depends on.
                if config.absolute_lifetime.is_some() && (state.stamp_missing || changes.is_cleared()) {
                    changes.set(CREATED_AT_KEY, stamp(created));
                }
                let expires_at = if config.rolling { config.expiry(created, now) } else { expires_at };
                if !changes.is_empty() {
                    check_limits(&state.data, config)?;
                    let cookie = config.rolling.then(|| state.id.clone());
                    Plan::Update { cookie, key: state.store_key(&state.id, config), changes, expires_at }
                } else if config.rolling {
                    Plan::Touch { id: state.id.clone(), key: state.store_key(&state.id, config), expires_at }
                } else {
                    Plan::Nothing
                }
            }
        };
        Ok(plan)
    }

    /// Runs the store calls; returns the `Set-Cookie` to send, if any.
    async fn execute(self, config: &SessionConfig, now: SystemTime) -> Result<Option<HeaderValue>, StoreError> {
        // Through the trait object itself: calling through the `Arc` would
        // box a second future around the store's.
        let store = config.store.as_ref();
        let set_cookie = |id: &SessionId, expires_at| cookie::session_cookie(config, id, expires_at, now);
        Ok(match self {
            Plan::Nothing => None,
            Plan::Create { id, key, data, expires_at, retire } => {
                // The new record first: if deleting the old one fails, the
                // client still has a working session.
                store.set(&key, &data, expires_at).await?;
                if let Some(old) = retire {
                    store.delete(&old).await?;
                }
                set_cookie(&id, expires_at)
            }
            Plan::Update { cookie, key, changes, expires_at } => {
                match (store.update(&key, &changes, expires_at).await?, cookie) {
                    (UpdateOutcome::Applied, Some(id)) => set_cookie(&id, expires_at),
                    // Missing: destroyed (or regenerated) by a concurrent request.
                    // No cookie either: a removal could race with the cookie
                    // that request sent.
                    (UpdateOutcome::Applied | UpdateOutcome::Missing, _) => None,
                }
            }
            Plan::Touch { id, key, expires_at } => {
                if store.touch(&key, expires_at).await? {
                    set_cookie(&id, expires_at)
                } else {
                    None
                }
            }
            Plan::Remove { retire, removal_cookie } => {
                if let Some(old) = retire {
                    store.delete(&old).await?;
                }
                if removal_cookie { cookie::removal_cookie(config) } else { None }
            }
        })
    }
}

fn check_limits(data: &SessionMap, config: &SessionConfig) -> Result<(), Refused> {
    // Depth first: serializing is recursive, and must not meet a value deep
    // enough to exhaust the stack.
    if nests_deeper_than(data, MAX_DEPTH) {
        return Err(Refused::TooDeep);
    }
    let size = serialized_len(data);
    if size > config.max_size { Err(Refused::TooLarge { size, limit: config.max_size }) } else { Ok(()) }
}

/// Whether any value in `data` nests past `limit` levels (the map is level
/// one). Iterative, so that hostile depth cannot overflow the stack here.
fn nests_deeper_than(data: &SessionMap, limit: usize) -> bool {
    // Most sessions are flat: no need for the work list then.
    if limit >= 1 && !data.values().any(|value| value.is_array() || value.is_object()) {
        return false;
    }
    let mut pending: Vec<(&serde_json::Value, usize)> = data.values().map(|value| (value, 2)).collect();
    while let Some((value, depth)) = pending.pop() {
        let children: Box<dyn Iterator<Item = &serde_json::Value>> = match value {
            serde_json::Value::Array(items) => Box::new(items.iter()),
            serde_json::Value::Object(map) => Box::new(map.values()),
            _ => continue,
        };
        if depth > limit {
            return true;
        }
        pending.extend(children.map(|child| (child, depth + 1)));
    }
    false
}

/// The length of `data` as JSON, without building the string.
fn serialized_len(data: &SessionMap) -> usize {
    struct Counter(usize);
    impl io::Write for Counter {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter(0);
    match serde_json::to_writer(&mut counter, data) {
        Ok(()) => counter.0,
        // A map of strings to values always serializes; if that ever
        // changes, refusing to store is the safe answer.
        Err(_) => usize::MAX,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn nested(levels: usize) -> Value {
        (1..levels).fold(json!([]), |inner, _| Value::Array(vec![inner]))
    }

    #[test]
    fn depth_counts_the_map_as_one_level() {
        let mut data = SessionMap::new();
        data.insert("flat".into(), json!(1));
        assert!(!nests_deeper_than(&data, 1));
        data.insert("deep".into(), nested(MAX_DEPTH - 1));
        assert!(!nests_deeper_than(&data, MAX_DEPTH));
        data.insert("deeper".into(), nested(MAX_DEPTH));
        assert!(nests_deeper_than(&data, MAX_DEPTH));
    }

    #[test]
    fn the_depth_check_survives_hostile_nesting() {
        let mut data = SessionMap::new();
        data.insert("hostile".into(), nested(100_000));
        assert!(nests_deeper_than(&data, MAX_DEPTH));
        // Dropping a deeply nested value recurses; keep the test about the check.
        std::mem::forget(data);
    }

    #[test]
    fn serialized_len_matches_serde_json() {
        let mut data = SessionMap::new();
        data.insert("k".into(), json!({ "unicode": "ключ 😀", "n": [1, 2.5, null] }));
        assert_eq!(serialized_len(&data), serde_json::to_vec(&data).map(|v| v.len()).unwrap_or_default());
    }
}
