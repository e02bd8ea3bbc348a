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
//! | [`cli`] | the flags |
//! | [`state`] | what a session holds: `#[derive(SessionData)]` structs and the rules for changing them |
//! | [`pages`] | the HTML pages |
//! | [`api`] | the JSON API |
//! | [`html`] | escaping and the page layout |

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod api;
pub mod cli;
pub mod html;
pub mod pages;
pub mod state;

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse as _, Response};
use sessionkit::{ConfigError, SessionConfig, SessionLayer, SessionStore, StoreError};
use sessionkit_stores::{FileStore, MemoryStore, RedbStore, RedisStore, SqliteStore, Sweeper};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use cli::{Args, StoreKind};

/// How often expired sessions are swept from the store. Stores never hand
/// out an expired session, so this only reclaims space.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(60);

/// How long a shutdown waits for requests in flight before dropping them.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// The largest request body the demo reads: its bodies are a few bytes.
pub const BODY_LIMIT: usize = 64 * 1024;

/// Why the demo could not start (or stop cleanly). Each variant says what
/// it was doing and keeps the underlying error as its `source()`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The address could not be bound (in use, not local, no permission).
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// The directory for the store's data could not be created.
    #[error("cannot create the directory {} for the session data", path.display())]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// The store would not open.
    #[error("cannot open the {kind} session store at {}", path.display())]
    OpenStore {
        /// The store's name.
        kind: &'static str,
        /// Its file or directory.
        path: PathBuf,
        /// The store's error.
        #[source]
        source: StoreError,
    },
    /// Redis could not be reached or used.
    #[error("cannot use Redis at {url}")]
    Redis {
        /// The URL, its password hidden.
        url: String,
        /// The store's error.
        #[source]
        source: StoreError,
    },
    /// The session configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The server or its signal handling failed.
    #[error("the server failed")]
    Serve(#[source] io::Error),
}

impl StartError {
    /// What to try next, when there is something obvious to say.
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            Self::Bind { source, .. } if source.kind() == io::ErrorKind::AddrInUse => {
                Some("another program (another demo?) is listening there: stop it, or pick another port with --addr")
            }
            Self::Bind { .. } => Some("pick another address with --addr, e.g. --addr 127.0.0.1:3001"),
            Self::Redis { source: StoreError::Config { .. }, .. } => {
                Some("a Redis URL looks like redis://127.0.0.1:6379/ (or redis://:password@host:port/db)")
            }
            Self::Redis { .. } => Some(
                "is a Redis server running there? Start one with `redis-server`, or use the embedded default (no --store)",
            ),
            Self::DataDir { .. } | Self::OpenStore { .. } => {
                Some("choose another place with --data, or another store with --store (memory needs no files)")
            }
            Self::Config(_) | Self::Serve(_) => None,
        }
    }
}

/// A store, opened, with a label for people: `redb at /path/sessions.redb`.
#[derive(Clone)]
pub struct OpenedStore {
    /// The store.
    pub store: Arc<dyn SessionStore>,
    /// What it is and where, for the startup line and the session page.
    pub label: String,
}

impl std::fmt::Debug for OpenedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenedStore").field("label", &self.label).finish_non_exhaustive()
    }
}

/// Opens the store the flags ask for, creating the data file's parent
/// directory if needed.
///
/// # Errors
///
/// A [`StartError`] saying which store and which path or URL failed, and why.
pub async fn build_store(args: &Args) -> Result<OpenedStore, StartError> {
    // Absolute, so the startup line says exactly where the data is. (Only
    // memory and redis have no path, and they do not read it.)
    let path = args.data_path().unwrap_or_default();
    let path = std::path::absolute(&path).unwrap_or(path);
    let open_failed = |source| StartError::OpenStore { kind: args.store.name(), path: path.clone(), source };
    let (store, label): (Arc<dyn SessionStore>, String) = match args.store {
        StoreKind::Memory => (Arc::new(MemoryStore::new()), "memory (sessions end when the demo stops)".into()),
        StoreKind::Redis => {
            let url = args.redis_url();
            let store = RedisStore::open(url)
                .await
                .map_err(|source| StartError::Redis { url: redact_password(url), source })?;
            (Arc::new(store), format!("redis at {}", redact_password(url)))
        }
        StoreKind::File => {
            // The store creates its directory, parents included.
            let store = FileStore::open(&path).await.map_err(open_failed)?;
            (Arc::new(store), format!("file at {}", path.display()))
        }
        StoreKind::Sqlite => {
            create_parent(&path).await?;
            let store = SqliteStore::open(&path).await.map_err(open_failed)?;
            (Arc::new(store), format!("sqlite at {}", path.display()))
        }
        StoreKind::Redb => {
            create_parent(&path).await?;
            let file = path.clone();
            let store = tokio::task::spawn_blocking(move || RedbStore::open(file))
                .await
                .map_err(|err| StoreError::backend("opening the redb file", err))
                .and_then(|opened| opened)
                .map_err(open_failed)?;
            (Arc::new(store), format!("redb at {}", path.display()))
        }
    };
    Ok(OpenedStore { store, label })
}

async fn create_parent(file: &Path) -> Result<(), StartError> {
    let Some(dir) = file.parent().filter(|dir| !dir.as_os_str().is_empty()) else {
        return Ok(());
    };
    let failed = |source| StartError::DataDir { path: dir.to_owned(), source };
    // `create_dir_all` on a regular file says only "File exists".
    if tokio::fs::metadata(dir).await.is_ok_and(|meta| !meta.is_dir()) {
        return Err(failed(io::Error::new(io::ErrorKind::NotADirectory, "it exists and is not a directory")));
    }
    tokio::fs::create_dir_all(dir).await.map_err(failed)
}

/// `redis://user:secret@host/` as `redis://user:***@host/`, for messages.
pub fn redact_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((userinfo, host)) = rest.rsplit_once('@') else {
        return url.to_owned();
    };
    match userinfo.split_once(':') {
        Some((user, _password)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_owned(),
    }
}

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
}

/// The session configuration for these flags: sessionkit's defaults
/// (cookie `id`, `HttpOnly`, `Secure`, `SameSite=Lax`, ids hashed at rest)
/// with the flags' ttl, rolling and, if asked, no `Secure`.
pub fn session_config(store: Arc<dyn SessionStore>, args: &Args) -> SessionConfig {
    SessionConfig::with_shared_store(store).ttl(args.ttl()).rolling(args.rolling).secure(!args.insecure_cookies)
}

/// The whole application: pages, the API under `/api`, the session layer
/// on `store` configured from `args`, and security headers.
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
    });
    Ok(Router::new()
        .merge(pages::routes())
        .nest("/api", api::routes())
        .fallback(pages::not_found)
        .with_state(info)
        .layer(layer)
        .layer(axum::middleware::from_fn(refuse_cross_site))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(axum::middleware::map_response(security_headers))
        .layer(axum::middleware::from_fn(log_request)))
}

/// One log line per request (method, path, status, time), so a newcomer
/// sees the POST-then-redirect of each form. Never the cookie: it is a
/// credential.
async fn log_request(request: Request, next: Next) -> Response {
    let (method, path) = (request.method().clone(), request.uri().path().to_owned());
    let started = Instant::now();
    let response = next.run(request).await;
    tracing::info!(
        "{method} {path} -> {} in {:.1} ms",
        response.status().as_u16(),
        started.elapsed().as_secs_f64() * 1000.0
    );
    response
}

/// Refuses a request that would change state (anything but GET, HEAD or
/// OPTIONS) when the browser says it comes from another site or origin
/// (`Sec-Fetch-Site`), before the session is touched. `SameSite=Lax`
/// already keeps the cookie off another site's POST; this also stops a
/// forged login form and requests from other `localhost` ports (the same
/// *site*). Clients that send no such header (curl, scripts) are let through.
async fn refuse_cross_site(request: Request, next: Next) -> Response {
    let changes_state = !matches!(*request.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    let foreign = request
        .headers()
        .get("sec-fetch-site")
        .is_some_and(|site| site.as_bytes() == b"cross-site" || site.as_bytes() == b"same-site");
    if changes_state && foreign {
        tracing::warn!("refused a {} {} from another site", request.method(), request.uri().path());
        return (StatusCode::FORBIDDEN, "cross-site requests may not change a session\n").into_response();
    }
    next.run(request).await
}

/// Responses are about one person's session: no cache may keep them, and
/// the pages load nothing but their own stylesheet and icon.
async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    // The static files chose a `max-age`; everything else gets `no-store`,
    // which subsumes the layer's `no-cache="set-cookie"`.
    let cacheable = headers
        .get(header::CACHE_CONTROL)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.contains("max-age"));
    if !cacheable {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; \
             frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    response
}

/// The demo, serving in the background.
#[derive(Debug)]
pub struct Server {
    addr: SocketAddr,
    store_label: String,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<io::Result<()>>,
    sweeper: Sweeper,
}

impl Server {
    /// Binds `args.addr`, opens the store and starts serving, with a
    /// [`Sweeper`] removing expired sessions every [`SWEEP_INTERVAL`].
    ///
    /// # Errors
    ///
    /// A [`StartError`]: the address, the data directory, the store or the
    /// configuration.
    pub async fn start(args: &Args) -> Result<Self, StartError> {
        // Bind first: a port in use should not leave a new data file behind.
        let listener =
            TcpListener::bind(args.addr).await.map_err(|source| StartError::Bind { addr: args.addr, source })?;
        let addr = listener.local_addr().map_err(|source| StartError::Bind { addr: args.addr, source })?;
        let store = build_store(args).await?;
        let router = app(&store, args)?;
        let sweeper = Sweeper::spawn(Arc::clone(&store.store), SWEEP_INTERVAL);
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async {
                    // A dropped sender stops the server too.
                    let _ = stopped.await;
                })
                .await
        });
        Ok(Self { addr, store_label: store.label, stop: Some(stop), task, sweeper })
    }

    /// The address it listens on (with the real port when asked for port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<addr>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// What store it uses, and where.
    pub fn store_label(&self) -> &str {
        &self.store_label
    }

    /// Stops accepting connections, lets requests in flight finish (for up
    /// to [`SHUTDOWN_GRACE`]), stops the sweeper and closes the store.
    ///
    /// # Errors
    ///
    /// [`StartError::Serve`] when the server had failed.
    pub async fn shutdown(mut self) -> Result<(), StartError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let served = match tokio::time::timeout(SHUTDOWN_GRACE, &mut self.task).await {
            Ok(Ok(served)) => served.map_err(StartError::Serve),
            Ok(Err(join)) => Err(StartError::Serve(io::Error::other(join))),
            Err(_elapsed) => {
                tracing::warn!("requests still running after {SHUTDOWN_GRACE:?}; dropping them");
                self.task.abort();
                let _ = (&mut self.task).await;
                Ok(())
            }
        };
        self.sweeper.stop().await;
        served
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_hidden_in_redis_urls() {
        assert_eq!(redact_password("redis://127.0.0.1:6379/"), "redis://127.0.0.1:6379/");
        assert_eq!(redact_password("redis://:s3cret@host:1/0"), "redis://:***@host:1/0");
        assert_eq!(redact_password("rediss://ada:p@ss@host/"), "rediss://ada:***@host/");
        assert_eq!(redact_password("redis://ada@host/"), "redis://ada@host/");
        assert_eq!(redact_password("unix:///tmp/redis.sock"), "unix:///tmp/redis.sock");
    }
}
