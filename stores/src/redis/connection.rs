//! The store's link to Redis, in every shape, and how it survives failures.
//!
//! Three shapes sit behind one [`Connection`]: a standalone server (the
//! `redis` crate's [`ConnectionManager`], which reconnects to the same
//! address by itself), the primary that Sentinel names (a manager to that
//! primary, replaced by a fresh lookup whenever the primary stops answering,
//! refuses, or turns out to be a read-only replica: that is how the store
//! follows a failover), and a Cluster (the crate's
//! [`ClusterConnection`](::redis::cluster_async::ClusterConnection),
//! which follows slot moves and failovers by itself). On top of each, three
//! gaps remain for a session store, and this module closes them:
//!
//! - **Unbounded waits.** While a connection reconnects, requests wait on
//!   it. Every operation here is cut at the store's timeout and reported as
//!   [`StoreError::Timeout`].
//! - **A stale failure after a long outage.** Once its reconnection attempts
//!   run out, the manager hands the last error to the next request and only
//!   then starts again. A refused connection means the request never left
//!   this process, so it is sent again (within the same timeout), and the
//!   first request after Redis is back succeeds. So is a request that the
//!   server turned away without running it (`READONLY` from a demoted
//!   primary, `CLUSTERDOWN`, `TRYAGAIN`, `LOADING`, `MASTERDOWN`): those
//!   are what a failover looks like from the client while it is under way.
//! - **A connection that goes silent.** When the peer vanishes without a
//!   reset (a failed-over host, a NAT or firewall dropping the flow), the
//!   socket stays open and requests time out forever: timeouts do not make
//!   the manager reconnect. When an operation times out and nothing at all
//!   has answered for a whole timeout, the connection is abandoned for a
//!   fresh one. A slow but live Redis keeps answering someone, so it is
//!   never abandoned that way.
//!
//! Writes may also wait for replicas; see [`link`](super::link).

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{PoisonError, RwLock};
use std::time::{Duration, Instant};

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::cluster::ClusterClient;
use ::redis::sentinel::SentinelClient;
use ::redis::{Client, ConnectionAddr, ErrorKind, RedisError, RedisResult};
use sessionkit::StoreError;

use super::link::{Inner, Link, Wait};

/// Shortest and longest pause between reconnection attempts. The cap keeps
/// recovery quick: the store serves again within about a second of Redis
/// coming back, however long it was gone.
pub(super) const RECONNECT_MIN_DELAY: Duration = Duration::from_millis(50);
pub(super) const RECONNECT_MAX_DELAY: Duration = Duration::from_millis(500);
/// Pause before sending again a request that never ran (refused, or turned
/// away by a server in the middle of a failover).
const RETRY_DELAY: Duration = Duration::from_millis(100);

/// Where fresh connections come from.
pub(super) enum Source {
    /// One server, through a manager that reconnects to it by itself.
    Client(Client),
    /// The primary of a Sentinel-managed service, looked up again after a
    /// failure.
    Sentinel(tokio::sync::Mutex<SentinelClient>),
    /// A Cluster, whose connection follows its topology by itself.
    Cluster(ClusterClient),
    /// The application's own connection: never replaced.
    Fixed,
}

/// What a failed attempt calls for.
enum Failure {
    /// Nothing ran: wait a moment and send it again, within the timeout.
    Retry,
    /// Give up with this error (the request may have run).
    Fail,
    /// The server answered (with an error): the connection works.
    Answered,
}

/// The connection in use and its number, so that a task that saw it fail
/// replaces that one and not a fresher one another task just opened.
#[derive(Clone)]
struct Current {
    inner: Inner,
    generation: u64,
}

/// A connection to Redis that bounds, retries and replaces as described in
/// the [module docs](self).
pub(super) struct Connection {
    source: Source,
    /// Settings of every manager this connection opens.
    manager_config: ConnectionManagerConfig,
    current: RwLock<Option<Current>>,
    /// Held while opening a connection, so that one task opens it for all.
    connecting: tokio::sync::Mutex<()>,
    generations: AtomicU64,
    timeout: Duration,
    wait: Option<Wait>,
    /// Origin of the two clocks below, in milliseconds.
    epoch: Instant,
    /// When Redis last answered anything, on any task.
    last_answer_ms: AtomicU64,
    /// When the connection was last abandoned for a fresh one.
    last_rebuild_ms: AtomicU64,
}

impl Connection {
    /// A connection from `source`, opened on first use; `fixed` is the
    /// application's own connection when `source` is [`Source::Fixed`].
    pub(super) fn new(source: Source, fixed: Option<Inner>, timeout: Duration, wait: Option<Wait>) -> Self {
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_min_delay(RECONNECT_MIN_DELAY)
            .set_max_delay(RECONNECT_MAX_DELAY);
        Self {
            source,
            manager_config,
            current: RwLock::new(fixed.map(|inner| Current { inner, generation: 0 })),
            connecting: tokio::sync::Mutex::new(()),
            generations: AtomicU64::new(0),
            timeout,
            wait,
            epoch: Instant::now(),
            last_answer_ms: AtomicU64::new(0),
            last_rebuild_ms: AtomicU64::new(0),
        }
    }

    /// How long one operation may take.
    pub(super) fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The replicas each write waits for, if any.
    pub(super) fn wait(&self) -> Option<Wait> {
        self.wait
    }

    /// Whether this is a connection to a Cluster (from a Cluster client, or
    /// the application's own Cluster connection).
    pub(super) fn is_cluster(&self) -> bool {
        match &self.source {
            Source::Cluster(_) => true,
            Source::Client(_) | Source::Sentinel(_) => false,
            Source::Fixed => self.read_current().is_some_and(|current| matches!(current.inner, Inner::Cluster(_))),
        }
    }

    /// A first, throwaway TLS connection to a standalone server, so that
    /// what no retry can fix (a certificate the CA did not sign, a client
    /// certificate the server wants, a server that does not speak TLS) is
    /// reported with its cause at once. The manager would otherwise retry
    /// it in the background until the timeout, which says only that Redis
    /// did not answer. A refusal or an unreachable host is left to the
    /// ordinary path, which bounds and reports it as a timeout.
    ///
    /// A server without TLS behind a `rediss://` URL accepts the TCP
    /// connection and then waits for a line of text that the TLS handshake
    /// never sends: when TCP connects but the handshake does not finish
    /// within the timeout, that is the error, with the likely cause.
    pub(super) async fn first_contact(&self, context: &'static str) -> Result<(), StoreError> {
        let Source::Client(client) = &self.source else { return Ok(()) };
        let ConnectionAddr::TcpTls { host, port, .. } = client.get_connection_info().addr() else { return Ok(()) };
        let deadline = tokio::time::Instant::now() + self.timeout;
        match tokio::time::timeout_at(deadline, tokio::net::TcpStream::connect((host.as_str(), *port))).await {
            Ok(Ok(_tcp)) => {}
            // Refused, unresolvable or unreachable: the ordinary path says so.
            _ => return Ok(()),
        }
        let config = ::redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout));
        match tokio::time::timeout_at(deadline, client.get_multiplexed_async_connection_with_config(&config)).await {
            Ok(Ok(_connection)) => Ok(()),
            Ok(Err(err)) if err.is_connection_refusal() => Ok(()),
            Ok(Err(err)) if err.is_timeout() => Err(no_handshake(context, self.timeout)),
            Ok(Err(err)) => Err(StoreError::backend(context, err)),
            Err(_elapsed) => Err(no_handshake(context, self.timeout)),
        }
    }

    /// Runs `op`, which only reads, within the timeout; see the [module docs](self).
    pub(super) async fn run<T, F, Fut>(&self, context: &'static str, op: F) -> Result<T, StoreError>
    where
        F: Fn(Link) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        self.attempt(context, None, op).await
    }

    /// Runs `op`, which writes, within the timeout; with
    /// `wait_for_replicas`, it succeeds only once the replicas have the write.
    pub(super) async fn write<T, F, Fut>(&self, context: &'static str, op: F) -> Result<T, StoreError>
    where
        F: Fn(Link) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        self.attempt(context, self.wait, op).await
    }

    async fn attempt<T, F, Fut>(&self, context: &'static str, wait: Option<Wait>, op: F) -> Result<T, StoreError>
    where
        F: Fn(Link) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        // The last reason no connection could be opened, to name it if the
        // timeout runs out while the reason still holds.
        let unopened = std::sync::Mutex::new(None);
        let attempts = async {
            loop {
                let current = match self.current().await {
                    Ok(current) => {
                        *unopened.lock().unwrap_or_else(PoisonError::into_inner) = None;
                        current
                    }
                    Err(err) if opening_may_succeed_later(&err) => {
                        *unopened.lock().unwrap_or_else(PoisonError::into_inner) = Some(err);
                        tokio::time::sleep(RETRY_DELAY).await;
                        continue;
                    }
                    Err(err) => return Err(err),
                };
                let result = op(Link::new(current.inner, wait)).await;
                let Err(err) = &result else {
                    self.answered();
                    return result;
                };
                match self.failure(err) {
                    Failure::Answered => {
                        self.answered();
                        return result;
                    }
                    Failure::Retry => {
                        self.replace_if_primary_moved(current.generation, err);
                        tokio::time::sleep(RETRY_DELAY).await;
                    }
                    Failure::Fail => {
                        self.replace_if_primary_moved(current.generation, err);
                        return result;
                    }
                }
            }
        };
        match tokio::time::timeout(self.timeout, attempts).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(err)) if err.is_timeout() => {
                self.abandon_if_silent();
                Err(StoreError::Timeout(self.timeout))
            }
            Ok(Err(err)) => Err(StoreError::backend(context, err)),
            Err(_elapsed) => {
                self.abandon_if_silent();
                match unopened.into_inner().unwrap_or_else(PoisonError::into_inner) {
                    // The sentinels answered, but named no primary that is up
                    // for the whole timeout: a wrong service name, or a
                    // failover that takes longer than the timeout. Say so.
                    Some(err) if err.kind() == ErrorKind::MasterNameNotFoundBySentinel => {
                        Err(StoreError::backend(context, err))
                    }
                    _ => Err(StoreError::Timeout(self.timeout)),
                }
            }
        }
    }

    fn failure(&self, err: &RedisError) -> Failure {
        if err.is_connection_refusal() || turned_away(err) {
            return Failure::Retry;
        }
        if matches!(err.kind(), ErrorKind::Server(_) | ErrorKind::Extension) {
            return Failure::Answered;
        }
        Failure::Fail
    }

    fn answered(&self) {
        self.last_answer_ms.store(self.now_ms(), Ordering::Relaxed);
    }

    /// The connection in use, opening one if there is none. One task opens
    /// it; the others wait for that one (within their own timeouts).
    async fn current(&self) -> RedisResult<Current> {
        if let Some(current) = self.read_current() {
            return Ok(current);
        }
        let _opening = self.connecting.lock().await;
        if let Some(current) = self.read_current() {
            return Ok(current);
        }
        let inner = self.open().await?;
        let generation = self.generations.fetch_add(1, Ordering::Relaxed) + 1;
        let current = Current { inner, generation };
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Some(current.clone());
        Ok(current)
    }

    fn read_current(&self) -> Option<Current> {
        // Nothing panics while the lock is held, so a poisoned lock still
        // holds a usable connection.
        self.current.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    async fn open(&self) -> RedisResult<Inner> {
        match &self.source {
            Source::Client(client) => Ok(Inner::Single(self.manager(client.clone())?)),
            Source::Sentinel(sentinel) => {
                let client = sentinel.lock().await.async_get_client().await?;
                Ok(Inner::Single(self.manager(client)?))
            }
            Source::Cluster(client) => Ok(Inner::Cluster(client.get_async_connection().await?)),
            // `current` is set from the start and never cleared for these.
            Source::Fixed => {
                Err(RedisError::from((ErrorKind::Client, "the application's connection cannot be reopened")))
            }
        }
    }

    /// A manager that connects on first use, so that the first connection
    /// goes through the same bounded, retrying path as every request.
    fn manager(&self, client: Client) -> RedisResult<ConnectionManager> {
        ConnectionManager::new_lazy_with_config(client, self.manager_config.clone())
    }

    /// Drops connection `generation` so the next request opens another.
    fn forget(&self, generation: u64) {
        if matches!(self.source, Source::Fixed) {
            return;
        }
        let mut current = self.current.write().unwrap_or_else(PoisonError::into_inner);
        if current.as_ref().is_some_and(|current| current.generation == generation) {
            *current = None;
        }
    }

    /// Behind Sentinel, a primary that refuses, breaks or says it is a
    /// replica may have been failed over: ask the sentinels again. The other
    /// shapes reconnect by themselves.
    fn replace_if_primary_moved(&self, generation: u64, err: &RedisError) {
        if matches!(self.source, Source::Sentinel(_))
            && (err.is_io_error() || err.is_connection_refusal() || turned_away(err))
        {
            self.forget(generation);
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// After a timeout: if Redis has answered nobody for a whole timeout,
    /// drop the connection for a fresh one (at most once per timeout,
    /// whichever task gets here first).
    fn abandon_if_silent(&self) {
        if matches!(self.source, Source::Fixed) {
            return;
        }
        let now = self.now_ms();
        let window = u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX);
        if now.saturating_sub(self.last_answer_ms.load(Ordering::Relaxed)) < window {
            return;
        }
        let last_rebuild = self.last_rebuild_ms.load(Ordering::Relaxed);
        if last_rebuild != 0 && now.saturating_sub(last_rebuild) < window {
            return;
        }
        if self.last_rebuild_ms.compare_exchange(last_rebuild, now, Ordering::Relaxed, Ordering::Relaxed).is_err() {
            return;
        }
        if let Some(current) = self.read_current() {
            tracing::warn!(timeout = ?self.timeout, "Redis answered nothing for a whole timeout; opening a fresh connection");
            self.forget(current.generation);
        }
    }
}

fn no_handshake(context: &'static str, timeout: Duration) -> StoreError {
    StoreError::backend(
        context,
        std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!(
                "the server accepted the TCP connection but did not complete a TLS handshake within {timeout:?}; \
                 is it a Redis without TLS behind a rediss:// URL?"
            ),
        ),
    )
}

/// Whether a failure to open a connection may pass by itself: a node that
/// refuses (restarting), or sentinels that name no primary that is up (a
/// failover under way). Anything else (a bad certificate, a wrong password)
/// is reported at once.
fn opening_may_succeed_later(err: &RedisError) -> bool {
    err.is_connection_refusal() || turned_away(err) || err.kind() == ErrorKind::MasterNameNotFoundBySentinel
}

/// Whether the server refused to run the request for a reason that passes
/// with a failover or a restart: nothing was written, so it may be sent again.
fn turned_away(err: &RedisError) -> bool {
    const TRANSIENT: [&str; 5] = ["READONLY", "CLUSTERDOWN", "TRYAGAIN", "LOADING", "MASTERDOWN"];
    if err.code().is_some_and(|code| TRANSIENT.contains(&code)) {
        return true;
    }
    // A transaction whose commands were refused while queued fails as a
    // whole with EXECABORT, carrying the refusals; one moved away (a
    // Cluster failover or resharding) is retried too, see `redirected`.
    queued_refusals(err).iter().any(|code| TRANSIENT.contains(&code.as_str()) || is_redirect(code))
}

fn is_redirect(code: &str) -> bool {
    code == "MOVED" || code == "ASK"
}

/// Whether a transaction failed because its commands were redirected while
/// queued (`MOVED`, `ASK`): its slot has a new owner. redis-rs follows a
/// redirect for a lone command, not inside a transaction, where it sees
/// only EXEC's abort; the caller teaches it the owner with a lone command
/// on the same key before sending the transaction again.
pub(super) fn redirected(err: &RedisError) -> bool {
    queued_refusals(err).iter().any(|code| is_redirect(code))
}

/// The codes of the refusals a transaction's commands met while queued,
/// when it failed as a whole with EXECABORT; none for any other error.
fn queued_refusals(err: &RedisError) -> Vec<String> {
    if err.code() != Some("EXECABORT") {
        return Vec::new();
    }
    match err.clone().into_server_errors() {
        Some(errors) => errors.iter().map(|(_, error)| error.code().to_owned()).collect(),
        None => Vec::new(),
    }
}
