//! Server-side HTTP sessions for tower and axum.
//!
//! A [`SessionLayer`] gives every request a session: a cookie carries only a
//! random [`SessionId`], the data lives in a [`SessionStore`] (memory, files,
//! SQLite, redb, Redis, or your own), and a handler reads and writes it
//! through a synchronous [`Session`] handle, or through typed structs with
//! `#[derive(SessionData)]`.
//!
#![cfg_attr(feature = "axum", doc = "```rust")]
#![cfg_attr(not(feature = "axum"), doc = "```rust,ignore")]
//! use axum::{Router, body::Body, http::{Request, header}, routing::get};
//! use sessionkit::{Session, SessionConfig, SessionError, SessionLayer};
//! use sessionkit_stores::MemoryStore;
//! use tower::ServiceExt as _;
//!
//! async fn counter(session: Session) -> Result<String, SessionError> {
//!     let visits = session.get::<u64>("visits")?.unwrap_or(0) + 1;
//!     session.set("visits", visits)?;
//!     Ok(format!("visit number {visits}"))
//! }
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let app = Router::new()
//!         .route("/", get(counter))
//!         .layer(SessionLayer::new(SessionConfig::builder(MemoryStore::new())));
//!
//!     // Serve it with `axum::serve(listener, app)`; here, two requests by hand.
//!     let first = app.clone().oneshot(Request::new(Body::empty())).await?;
//!     let set_cookie = first.headers()[header::SET_COOKIE].to_str()?;
//!     let cookie = set_cookie.split(';').next().unwrap_or_default().to_owned();
//!
//!     let second = Request::builder().header(header::COOKIE, cookie).body(Body::empty())?;
//!     let second = app.oneshot(second).await?;
//!     let body = axum::body::to_bytes(second.into_body(), 1024).await?;
//!     assert_eq!(body, "visit number 2");
//!     Ok(())
//! }
//! ```
//!
//! # What happens per request
//!
//! The cookie is read without touching the store. The store is read when the
//! handler first asks for the session, and written after the handler
//! according to what it did (see [`layer`] for the full table): a session
//! nobody wrote to is never stored and sets no cookie, a changed session is
//! sent to the store as a key-level [`Changes`] patch so concurrent requests
//! do not erase each other's writes, and a destroyed session stays destroyed.
//!
//! # Typed sessions
//!
//! `#[derive(SessionData)]` turns a struct into a typed view of some session
//! keys: `Cart::load(&session)?`, `cart.save(&session)?` (which writes only
//! what changed), `Cart::set_visits(&session, 3)?`, `Cart::clear(&session)`,
//! and, with `axum`, `async fn handler(cart: Cart)`. The [`typed`] module is
//! the guide, with a complete handler example.
//!
//! # Features
//!
//! - `derive` (default): `#[derive(SessionData)]`.
//! - `axum`: [`Session`], [`LazySession`] and every [`SessionData`] type are
//!   axum extractors.
//! - `testing`: the store conformance kit, [`testing`] and [`store_conformance_tests!`].

#![forbid(unsafe_code)]
#![warn(missing_docs)]
// Feature-gated items carry a badge on docs.rs naming their feature.
#![cfg_attr(docsrs, feature(doc_cfg))]

mod changes;
mod config;
mod cookie_header;
mod error;
pub mod exclusive;
pub mod expiry;
#[cfg(feature = "axum")]
pub mod extract;
mod id;
pub mod layer;
pub mod lease;
pub mod limits;
mod listing;
pub mod persist;
mod record;
pub mod reserved;
mod scan;
mod session;
mod signature;
pub mod store;
mod store_key;
mod token;
pub mod transport;
pub mod typed;

#[cfg(feature = "testing")]
pub mod testing;

#[cfg(test)]
mod test_support;

pub use changes::{Change, Changes, Op, PatchError};
pub use config::{ConfigError, SessionConfig, SessionConfigBuilder};
/// The `cookie` crate this one builds cookies with: its
/// [`Key`](cookie::Key) signs them, its [`SameSite`](cookie::SameSite) is
/// [`SessionConfigBuilder::same_site`]'s argument.
pub use cookie;
pub use error::{BoxError, SessionError, StoreError};
pub use id::SessionId;
pub use layer::SessionLayer;
pub use listing::SessionInfo;
pub use record::{SessionMap, SessionRecord};
pub use scan::{ScanCursor, ScanPage};
pub use session::{LazySession, Session};
/// The derive for the [`SessionData`](trait@SessionData) trait; the
/// [`typed`] module is the guide.
#[cfg(feature = "derive")]
pub use sessionkit_derive::SessionData;
pub use store::{SessionStore, UpdateOutcome};
pub use store_key::StoreKey;
pub use typed::SessionData;

#[doc(hidden)]
pub use typed::__private;

/// Re-exported so store implementations name the same `async_trait` as the trait.
pub use async_trait::async_trait;
