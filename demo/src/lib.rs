//! sessionkit's demo application: a small shop with typed server-side
//! sessions, as HTML pages and as a JSON API.
//!
//! `main.rs` parses the flags ([`Args`]) and runs a [`Server`]; tests start
//! the same server in-process, or build the [`app`] themselves.
//!
//! ```no_run
//! # async fn run() -> Result<(), sessionkit_demo::StartError> {
//! use sessionkit_demo::{Args, Server};
//!
//! let args = Args::try_parse_checked(["sessionkit-demo", "--addr", "127.0.0.1:0", "--store", "memory"])
//!     .expect("valid flags");
//! let server = Server::start(&args).await?;
//! println!("serving {} with the {} store", server.url(), server.store_label());
//! server.shutdown().await
//! # }
//! ```
//!
//! | module | what |
//! | --- | --- |
//! | [`cli`] | the flags, `--store` as a short name or a store URL |
//! | [`state`] | what a session holds: `#[derive(SessionData)]` structs and the rules for changing them |
//! | [`sessions`] | the signed-in user's sessions: listing, signing out one or all others |
//! | [`pages`] | the HTML pages |
//! | [`api`] | the JSON API |
//! | [`html`] | escaping and the page layout |
//!
//! Startup is [`build_store`] (the store the flags ask for), [`app`] (the
//! router) and [`Server`] (bound and serving); failures are a [`StartError`].

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod api;
pub mod cli;
mod error;
pub mod html;
mod middleware;
pub mod pages;
mod server;
pub mod sessions;
pub mod state;

/// The README's code blocks, compiled as doctests (those marked `no_run` are
/// compiled, not run), so the README cannot drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
mod store;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use sessionkit::{ConfigError, SessionConfig, SessionLayer, SessionStore};

pub use cli::{Args, StoreChoice, StoreKind};
pub use error::StartError;
pub use server::{SHUTDOWN_GRACE, SWEEP_INTERVAL, Server};
pub use store::{OpenedStore, build_store};

/// The largest request body the demo reads: its bodies are a few bytes.
pub const BODY_LIMIT: usize = 64 * 1024;

/// What the pages say about the configuration.
#[derive(Debug, Clone)]
pub struct AppInfo {
    /// The store's label.
    pub store: String,
    /// The session lifetime, in seconds.
    pub ttl_seconds: u64,
    /// Whether expiry is rolling.
    pub rolling: bool,
    /// Whether the cookie is `Secure`.
    pub secure_cookies: bool,
    /// The most items the cart, and the saved-for-later list, hold.
    pub cart_limit: usize,
}

/// The session configuration for these flags: sessionkit's defaults
/// (cookie `id`, `HttpOnly`, `Secure`, `SameSite=Lax`, ids hashed at rest)
/// with the flags' ttl, rolling and, if asked, no `Secure`.
pub fn session_config(store: Arc<dyn SessionStore>, args: &Args) -> SessionConfig {
    SessionConfig::with_shared_store(store).ttl(args.ttl()).rolling(args.rolling).secure(!args.insecure_cookies)
}

/// The whole application: pages, the API under `/api`, the session layer
/// on `store` configured from `args`, and around them a request log, the
/// cross-site check and the security headers.
///
/// # Errors
///
/// The [`ConfigError`] of a session configuration that cannot work.
pub fn app(store: &OpenedStore, args: &Args) -> Result<Router, ConfigError> {
    let layer = SessionLayer::try_new(session_config(Arc::clone(&store.store), args))?;
    let info = Arc::new(AppInfo {
        store: store.label.clone(),
        ttl_seconds: args.ttl.get(),
        rolling: args.rolling,
        secure_cookies: !args.insecure_cookies,
        cart_limit: args.cart_limit,
    });
    Ok(Router::new()
        .merge(pages::routes())
        .nest("/api", api::routes())
        .fallback(pages::not_found)
        .with_state(info)
        .layer(layer)
        .layer(axum::middleware::from_fn(middleware::refuse_cross_site))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(axum::middleware::map_response(middleware::security_headers))
        .layer(axum::middleware::from_fn(middleware::log_request)))
}
