//! The store's link to Redis, and how it survives failures.
//!
//! The `redis` crate's [`ConnectionManager`] reconnects when a connection
//! breaks (a reset, a refused connect). Three gaps remain for a session
//! store, and this module closes them:
//!
//! - **Unbounded waits.** While it reconnects, requests wait on it. Every
//!   operation here is cut at the store's timeout and reported as
//!   [`StoreError::Timeout`].
//! - **A stale failure after a long outage.** Once its reconnection attempts
//!   run out, the manager hands the last error to the next request and only
//!   then starts again. A refused connection means the request never left
//!   this process, so it is sent again (within the same timeout), and the
//!   first request after Redis is back succeeds.
//! - **A connection that goes silent.** When the peer vanishes without a
//!   reset (a failed-over host, a NAT or firewall dropping the flow), the
//!   socket stays open and requests time out forever: timeouts do not make
//!   the manager reconnect. When an operation times out and nothing at all
//!   has answered for a whole timeout, the connection is abandoned for a
//!   fresh one. A slow but live Redis keeps answering someone, so it is
//!   never abandoned that way.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{PoisonError, RwLock};
use std::time::{Duration, Instant};

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::{Client, RedisResult};
use sessionkit::StoreError;

/// Shortest and longest pause between reconnection attempts. The cap keeps
/// recovery quick: the store serves again within about a second of Redis
/// coming back, however long it was gone.
const RECONNECT_MIN_DELAY: Duration = Duration::from_millis(50);
const RECONNECT_MAX_DELAY: Duration = Duration::from_millis(500);
/// Pause before sending again a request whose connection was refused.
const REFUSED_RETRY_DELAY: Duration = Duration::from_millis(100);

/// A connection to Redis that bounds, retries and replaces as described in
/// the [module docs](self).
pub(super) struct Connection {
    current: RwLock<ConnectionManager>,
    /// How to open a fresh connection; `None` when the application handed
    /// over its own manager, whose life is then its own business.
    rebuild: Option<(Client, ConnectionManagerConfig)>,
    timeout: Duration,
    /// Origin of the two clocks below, in milliseconds.
    epoch: Instant,
    /// When Redis last answered anything, on any task.
    last_answer_ms: AtomicU64,
    /// When the connection was last abandoned for a fresh one.
    last_rebuild_ms: AtomicU64,
}

impl Connection {
    /// A connection through `client`, opened lazily on first use.
    pub(super) fn from_client(client: Client, timeout: Duration) -> Result<Self, StoreError> {
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_min_delay(RECONNECT_MIN_DELAY)
            .set_max_delay(RECONNECT_MAX_DELAY);
        let manager = open(&client, &config)?;
        Ok(Self::new(manager, Some((client, config)), timeout))
    }

    /// A connection through the application's own manager.
    pub(super) fn from_manager(manager: ConnectionManager, timeout: Duration) -> Self {
        Self::new(manager, None, timeout)
    }

    fn new(manager: ConnectionManager, rebuild: Option<(Client, ConnectionManagerConfig)>, timeout: Duration) -> Self {
        Self {
            current: RwLock::new(manager),
            rebuild,
            timeout,
            epoch: Instant::now(),
            last_answer_ms: AtomicU64::new(0),
            last_rebuild_ms: AtomicU64::new(0),
        }
    }

    /// How long one operation may take.
    pub(super) fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Runs `op` on the current connection within the timeout; see the
    /// [module docs](self).
    pub(super) async fn run<T, F, Fut>(&self, context: &'static str, op: F) -> Result<T, StoreError>
    where
        F: Fn(ConnectionManager) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let attempts = async {
            loop {
                let result = op(self.manager()).await;
                match &result {
                    Err(err) if err.is_connection_refusal() => tokio::time::sleep(REFUSED_RETRY_DELAY).await,
                    // A server error is an answer too: the connection works.
                    Err(err) if err.is_io_error() => return result,
                    _ => {
                        self.last_answer_ms.store(self.now_ms(), Ordering::Relaxed);
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
                Err(StoreError::Timeout(self.timeout))
            }
        }
    }

    fn manager(&self) -> ConnectionManager {
        // Nothing panics while the lock is held, so a poisoned lock still
        // holds a usable manager.
        self.current.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// After a timeout: if Redis has answered nobody for a whole timeout,
    /// swap in a fresh connection (at most once per timeout, whichever task
    /// gets here first).
    fn abandon_if_silent(&self) {
        let Some((client, config)) = &self.rebuild else { return };
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
        match open(client, config) {
            Ok(fresh) => {
                tracing::warn!(timeout = ?self.timeout, "Redis answered nothing for a whole timeout; opening a fresh connection");
                *self.current.write().unwrap_or_else(PoisonError::into_inner) = fresh;
            }
            Err(err) => tracing::error!(error = &err as &dyn std::error::Error, "cannot open a fresh Redis connection"),
        }
    }
}

/// A manager that connects on first use, so that the first connection goes
/// through the same bounded, retrying path as every request.
fn open(client: &Client, config: &ConnectionManagerConfig) -> Result<ConnectionManager, StoreError> {
    ConnectionManager::new_lazy_with_config(client.clone(), config.clone())
        .map_err(|err| StoreError::config_caused_by("invalid Redis connection settings", err))
}
