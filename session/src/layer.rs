//! `SessionLayer`: loads the session around any `http` service and persists
//! what the handler did to it.
//!
//! Per request: the cookie is read (no store call yet); the handler runs with
//! a [`LazySession`] in its extensions; if it loaded the session, its final
//! state decides the store calls and the `Set-Cookie` (the table is in
//! [`crate::persist`]).
//!
//! Once the handler has returned, persisting runs to completion even if the
//! client goes away or an outer timeout drops the response future: it runs
//! as a task of its own on the tokio runtime, so a logout whose client
//! disconnects still deletes the session.
//!
//! | outcome | response |
//! | --- | --- |
//! | the handler answered 5xx | its response; nothing is persisted |
//! | the store failed, loading or saving | an empty 500, logged with `tracing` (never with the id) |
//! | the session would serialize past [`max_size`](crate::SessionConfig::max_size), also through other requests' concurrent writes | an empty 413; the stored session keeps its previous state |
//! | the store refused an operation (an increment of a value that is no longer an integer), or an exclusive request's lease ran out before its write | an empty 409; nothing of the request's changes is written |
//! | the store is full ([`StoreError::Full`]: a bounded store refused a new session) | an empty 503, no cookie; the sessions it holds keep working |
//! | an exclusive request waited [`exclusive_wait`](crate::SessionConfig::exclusive_wait) for its session in vain | an empty 503 with `Retry-After: 1` |

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::SystemTime;

use http::header::{CACHE_CONTROL, COOKIE, RETRY_AFTER, SET_COOKIE, VARY};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use tower_layer::Layer;
use tower_service::Service;

use crate::config::ConfigError;
use crate::persist::{Issued, Plan};
use crate::session::{HeldLease, LoadFailure, release};
use crate::{LazySession, PatchError, SessionConfig, SessionConfigBuilder, StoreError, cookie_header, expiry};

/// A tower [`Layer`] that gives every request a session.
///
/// ```
/// use sessionkit::{SessionConfig, SessionLayer};
/// use sessionkit_stores::MemoryStore;
///
/// let layer = SessionLayer::new(SessionConfig::builder(MemoryStore::new()));
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
    /// If the configuration is invalid (see [`SessionConfigBuilder::build`]);
    /// use [`SessionLayer::try_new`] to handle that as an error.
    pub fn new(config: impl Into<SessionConfigBuilder>) -> Self {
        match Self::try_new(config) {
            Ok(layer) => layer,
            Err(err) => panic!("{err}"),
        }
    }

    /// A layer with this configuration, or why it cannot work.
    pub fn try_new(config: impl Into<SessionConfigBuilder>) -> Result<Self, ConfigError> {
        Ok(Self { config: Arc::new(config.into().build()?) })
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
        let transport = &self.config.transport;
        let cookies = if transport.uses_cookie() {
            request.headers().get_all(COOKIE).iter().cloned().collect()
        } else {
            Vec::new()
        };
        let id_header = transport.header().and_then(|header| request.headers().get(header.request()).cloned());
        let lazy = LazySession::new(Arc::clone(&self.config), cookies, id_header);
        request.extensions_mut().insert(lazy.clone());
        let handler = self.inner.call(request);
        Box::pin(Finishing { handler, lazy, tail: None })
    }
}

pin_project_lite::pin_project! {
    /// The handler's future, then what the session's final state asks for.
    ///
    /// By hand rather than an `async` block, which would hold the handler's
    /// future twice (as captured and as awaited) and every later step's
    /// state inline: this future is boxed for every request, and a box of
    /// more than about a kilobyte comes from the allocator's slow path.
    /// A response that needs nothing more is answered without a second box.
    struct Finishing<F, B> {
        #[pin]
        handler: F,
        lazy: LazySession,
        // Once the handler has answered: the rest, if there is a rest.
        tail: Option<Rest<B>>,
    }
}

impl<F, B, E> Future for Finishing<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: Default + Send + 'static,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Some(tail) = this.tail {
            return tail.as_mut().poll(cx).map(Ok);
        }
        let response = std::task::ready!(this.handler.poll(cx))?;
        match next(this.lazy, response) {
            Next::Answer(response) => Poll::Ready(Ok(response)),
            Next::Then(rest) => this.tail.insert(rest).as_mut().poll(cx).map(Ok),
        }
    }
}

/// The store calls of a request's persist, as [`Plan::execute`] runs them
/// with the lease released after.
type Persisting = Pin<Box<dyn Future<Output = Result<Option<Issued>, StoreError>> + Send>>;

/// What follows the handler once it has answered.
type Rest<B> = Pin<Box<dyn Future<Output = Response<B>> + Send>>;

/// What the layer does once the handler has answered.
enum Next<B> {
    /// Send this: the handler's response untouched, or an error.
    Answer(Response<B>),
    /// Run this first: the lease's release before a 413, or persisting and
    /// telling the client; each boxed at its own size.
    Then(Rest<B>),
}

/// What the session's final state asks of the layer.
fn next<B: Default + Send + 'static>(lazy: &LazySession, mut response: Response<B>) -> Next<B> {
    match lazy.load_failure() {
        LoadFailure::None => {}
        LoadFailure::Store => {
            tracing::error!("session store failed while loading a session; answering 500");
            return Next::Answer(empty(StatusCode::INTERNAL_SERVER_ERROR));
        }
        LoadFailure::Busy => {
            tracing::warn!("session stayed exclusive to another request; answering 503");
            let mut busy = empty(StatusCode::SERVICE_UNAVAILABLE);
            busy.headers_mut().insert(RETRY_AFTER, HeaderValue::from_static("1"));
            return Next::Answer(busy);
        }
    }
    let Some(state) = lazy.loaded_state() else {
        // The route never asked for its session: nothing to read or write.
        return Next::Answer(response);
    };
    add_vary(response.headers_mut(), lazy.config());
    let config = Arc::clone(lazy.config());
    let now = expiry::now();
    let (plan, lease) = {
        let mut state = state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let plan = if response.status().is_server_error() {
            Ok(Plan::Nothing)
        } else {
            Plan::decide(&mut state, &config, now)
        };
        (plan, state.lease.take())
    };
    let plan = match plan {
        Ok(plan) => plan,
        Err(refused) => {
            tracing::warn!(
                error = &refused as &dyn std::error::Error,
                "session over max_size or too deep, not saved; answering 413"
            );
            return match lease {
                Some(lease) => Next::Then(Box::pin(async move {
                    release(&config, &lease).await;
                    empty(StatusCode::PAYLOAD_TOO_LARGE)
                })),
                None => Next::Answer(empty(StatusCode::PAYLOAD_TOO_LARGE)),
            };
        }
    };
    if matches!(plan, Plan::Nothing) && lease.is_none() {
        return Next::Answer(response);
    }
    let persist = persisting(plan, lease, Arc::clone(&config));
    Next::Then(Box::pin(persisted(persist, config, now, response)))
}

/// A plan's store calls, then the lease's release, boxed where the future
/// is built so that no future awaiting it holds it inline.
fn persisting(plan: Plan, lease: Option<HeldLease>, config: Arc<SessionConfig>) -> Persisting {
    Box::pin(async move {
        let outcome = plan.execute(&config).await;
        if let Some(lease) = lease {
            release(&config, &lease).await;
        }
        outcome
    })
}

/// Runs `persist` to completion, even if this future is dropped, and tells
/// the client what came of it.
async fn persisted<B: Default>(
    mut persist: Persisting,
    config: Arc<SessionConfig>,
    now: SystemTime,
    mut response: Response<B>,
) -> Response<B> {
    // A store that answers at once (the memory store) is done within the
    // first poll, here: no task to spawn, schedule and join. Only a persist
    // that has to wait moves into a task of its own, pinned where it is,
    // so nothing it started is lost in the move.
    // A panic there answers 500, as one inside the task would.
    let first = std::future::poll_fn(|cx| {
        Poll::Ready(std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| persist.as_mut().poll(cx))))
    })
    .await;
    let persist = match first {
        Ok(Poll::Ready(outcome)) => Ok(outcome),
        Ok(Poll::Pending) => Err(persist),
        Err(_) => {
            tracing::error!("persisting a session panicked; answering 500");
            return empty(StatusCode::INTERNAL_SERVER_ERROR);
        }
    };
    let outcome = match (persist, tokio::runtime::Handle::try_current()) {
        (Ok(outcome), _) => outcome,
        (Err(persist), Ok(runtime)) => match runtime.spawn(persist).await {
            Ok(outcome) => outcome,
            Err(panicked) => {
                tracing::error!(
                    error = &panicked as &dyn std::error::Error,
                    "persisting a session panicked; answering 500"
                );
                return empty(StatusCode::INTERNAL_SERVER_ERROR);
            }
        },
        // Outside a tokio runtime nothing can outlive this future; persist
        // in place.
        (Err(persist), Err(_)) => persist.await,
    };
    match outcome {
        Ok(Some(issued)) => {
            tell(response.headers_mut(), &config, &issued, now);
            response
        }
        Ok(None) => response,
        Err(StoreError::Refused(refused)) => {
            let status = match refused {
                // Grown past max_size by this request and others together.
                PatchError::TooLarge { .. } | PatchError::TooDeep => StatusCode::PAYLOAD_TOO_LARGE,
                _ => StatusCode::CONFLICT,
            };
            tracing::warn!(
                error = &refused as &dyn std::error::Error,
                "the store refused the session's changes; answering {status}"
            );
            empty(status)
        }
        Err(full @ StoreError::Full { .. }) => {
            // Overload, not a fault: the visitor may come back later.
            tracing::warn!(error = &full as &dyn std::error::Error, "no room for a new session; answering 503");
            empty(StatusCode::SERVICE_UNAVAILABLE)
        }
        Err(err) => {
            tracing::error!(
                error = &err as &dyn std::error::Error,
                "session store failed while saving a session; answering 500"
            );
            empty(StatusCode::INTERNAL_SERVER_ERROR)
        }
    }
}

/// Tells the client what persisting issued, in the cookie and/or the id
/// header (see [`crate::transport`]).
fn tell(headers: &mut HeaderMap, config: &SessionConfig, issued: &Issued, now: std::time::SystemTime) {
    if config.transport.uses_cookie() {
        let set_cookie = match issued {
            Issued::Id { id, expires_at, .. } => cookie_header::session_cookie(config, id, *expires_at, now),
            Issued::Ended => cookie_header::removal_cookie(config),
        };
        if let Some(set_cookie) = set_cookie {
            headers.append(SET_COOKIE, set_cookie);
            headers.append(CACHE_CONTROL, HeaderValue::from_static("no-cache=\"set-cookie\""));
        }
    }
    let Some(transport) = config.transport.header() else { return };
    let value = match issued {
        Issued::Id { id, changed: true, .. } => {
            cookie_header::credential_value(config, transport.request().as_str(), id)
        }
        // A refresh changes nothing a header client holds.
        Issued::Id { changed: false, .. } => return,
        Issued::Ended => String::new(),
    };
    // Ids and signatures are base64: always a valid header value.
    if let Ok(value) = HeaderValue::from_str(&value) {
        headers.insert(transport.response().clone(), value);
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
}

fn empty<B: Default>(status: StatusCode) -> Response<B> {
    let mut response = Response::new(B::default());
    *response.status_mut() = status;
    response
}

/// Responses that depend on the session cookie (or id header) must not be
/// shared by caches.
fn add_vary(headers: &mut HeaderMap, config: &SessionConfig) {
    if config.transport.uses_cookie() {
        // A static value: no copy of the text on every request.
        add_vary_on(headers, "cookie", || Some(HeaderValue::from_static("cookie")));
    }
    if let Some(transport) = config.transport.header() {
        let name = transport.request().as_str();
        add_vary_on(headers, name, || HeaderValue::from_str(name).ok());
    }
}

fn add_vary_on(headers: &mut HeaderMap, name: &str, value: impl FnOnce() -> Option<HeaderValue>) {
    let already = headers.get_all(VARY).iter().any(|value| {
        value.to_str().is_ok_and(|text| {
            text.split(',').any(|item| matches!(item.trim(), "*") || item.trim().eq_ignore_ascii_case(name))
        })
    });
    if !already && let Some(value) = value() {
        headers.append(VARY, value);
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::time::{Duration, SystemTime};

    use tower::ServiceExt;

    use super::*;
    use crate::test_support::MapStore;
    use crate::{LazySession, SessionMap, SessionRecord, SessionStore, StoreKey};

    /// How the store's `set` behaves before (or instead of) writing.
    #[derive(Clone, Copy)]
    enum Set {
        /// Waits this long, then writes.
        Slow(Duration),
        /// Panics at once, in the first poll.
        PanicAtOnce,
        /// Waits, then panics.
        PanicLater,
    }

    #[derive(Clone)]
    struct Odd {
        inner: MapStore,
        set: Set,
    }

    #[async_trait::async_trait]
    impl SessionStore for Odd {
        async fn get(&self, id: &StoreKey) -> Result<Option<SessionRecord>, StoreError> {
            self.inner.get(id).await
        }
        async fn set(
            &self,
            id: &StoreKey,
            data: &SessionMap,
            expires_at: Option<SystemTime>,
        ) -> Result<(), StoreError> {
            match self.set {
                Set::Slow(pause) => tokio::time::sleep(pause).await,
                Set::PanicAtOnce => panic!("a store bug, on purpose"),
                Set::PanicLater => {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    panic!("a store bug, on purpose")
                }
            }
            self.inner.set(id, data, expires_at).await
        }
        async fn delete(&self, id: &StoreKey) -> Result<(), StoreError> {
            self.inner.delete(id).await
        }
        async fn delete_expired(&self) -> Result<u64, StoreError> {
            self.inner.delete_expired().await
        }
    }

    /// A service that writes to a fresh session, behind the layer.
    fn writing_service(
        store: Odd,
    ) -> impl Service<Request<()>, Response = Response<String>, Error = Infallible, Future: Send> + Clone {
        let inner = tower::service_fn(|request: Request<()>| async move {
            let lazy = request.extensions().get::<LazySession>().cloned().expect("the layer's session");
            let session = lazy.load().await.expect("loads");
            session.set("seen", 1).expect("sets");
            Ok::<_, Infallible>(Response::new(String::from("ok")))
        });
        SessionLayer::new(SessionConfig::builder(store)).layer(inner)
    }

    fn multi_thread() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("test runtime")
    }

    #[test]
    fn a_persist_outlives_an_outer_timeout_that_drops_the_response() {
        let inner = MapStore::default();
        let service = writing_service(Odd { inner: inner.clone(), set: Set::Slow(Duration::from_millis(100)) });
        multi_thread().block_on(async {
            let request = Request::new(());
            let outcome = tokio::time::timeout(Duration::from_millis(20), service.oneshot(request)).await;
            assert!(outcome.is_err(), "the store waits longer than the timeout");
            let calls_when_dropped = inner.calls();
            // The write the dropped future had started still lands.
            tokio::time::sleep(Duration::from_millis(400)).await;
            assert!(inner.calls() > calls_when_dropped, "the session was written after its response was dropped");
        });
    }

    #[test]
    fn a_panic_while_persisting_answers_500_whether_at_once_or_later() {
        for set in [Set::PanicAtOnce, Set::PanicLater] {
            let service = writing_service(Odd { inner: MapStore::default(), set });
            let response = multi_thread().block_on(service.oneshot(Request::new(()))).expect("infallible");
            assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
            assert!(response.headers().get(SET_COOKIE).is_none(), "no cookie for a session never stored");
        }
    }
}
