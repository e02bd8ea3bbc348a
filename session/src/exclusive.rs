//! `ExclusiveLayer`: a route whose requests of one session run one at a
//! time, from loading the session to persisting it.
//!
//! Put it on the routes that read a value and write one computed from it
//! (inside the [`SessionLayer`](crate::SessionLayer), e.g. with axum's
//! `route_layer`); every other route keeps running concurrently and never
//! waits. See [`crate::lease`] for the lease, its expiry and its fencing,
//! and [`SessionConfig::exclusive_lease`](crate::SessionConfig::exclusive_lease)
//! and [`exclusive_wait`](crate::SessionConfig::exclusive_wait) for the
//! bounds. The store must support leases
//! ([`SessionStore::try_lease`](crate::SessionStore::try_lease)); every
//! store in `sessionkit-stores` does.
//!
#![cfg_attr(feature = "axum", doc = "```rust")]
#![cfg_attr(not(feature = "axum"), doc = "```rust,ignore")]
//! use axum::{Router, routing::post};
//! use sessionkit::{Session, SessionConfig, SessionError, SessionLayer};
//! use sessionkit::exclusive::ExclusiveLayer;
//! use sessionkit_stores::MemoryStore;
//!
//! /// Moves the first cart item to the wish list: nothing may change the
//! /// two lists between reading and writing them.
//! async fn save_for_later(session: Session) -> Result<(), SessionError> {
//!     let mut cart: Vec<String> = session.get("cart")?.unwrap_or_default();
//!     let mut wishes: Vec<String> = session.get("wishes")?.unwrap_or_default();
//!     if !cart.is_empty() {
//!         wishes.push(cart.remove(0));
//!     }
//!     session.set("cart", cart)?;
//!     session.set("wishes", wishes)
//! }
//!
//! let app: Router = Router::new()
//!     .route("/cart/save-for-later", post(save_for_later))
//!     .route_layer(ExclusiveLayer::new())
//!     .layer(SessionLayer::new(SessionConfig::builder(MemoryStore::new())));
//! # let _ = app;
//! ```

use std::task::{Context, Poll};

use http::Request;
use tower_layer::Layer;
use tower_service::Service;

use crate::LazySession;

/// Makes every session load of the routes it wraps exclusive; see the
/// [module docs](self).
#[derive(Debug, Clone, Copy, Default)]
pub struct ExclusiveLayer;

impl ExclusiveLayer {
    /// The layer.
    pub fn new() -> Self {
        Self
    }
}

impl<S> Layer<S> for ExclusiveLayer {
    type Service = ExclusiveService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ExclusiveService { inner }
    }
}

/// The service [`ExclusiveLayer`] wraps around a route.
#[derive(Debug, Clone)]
pub struct ExclusiveService<S> {
    inner: S,
}

impl<S, B> Service<Request<B>> for ExclusiveService<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        // Without a SessionLayer outside there is nothing to make exclusive;
        // the session extractor reports the missing layer.
        if let Some(lazy) = request.extensions().get::<LazySession>() {
            lazy.make_exclusive();
        }
        self.inner.call(request)
    }
}
