//! `Sweeper`: removes expired sessions from any store in the background.
//!
//! Stores never return an expired record, so sweeping is about reclaiming
//! space, not correctness. A failed sweep is logged and the next one runs on
//! schedule: a store outage must not end the sweeping for good. A zero
//! interval is refused when the sweeper is made ([`SweeperError`]): tokio's
//! interval would panic on it inside the task, ending the sweeping silently.

use std::sync::Arc;
use std::time::Duration;

use sessionkit::SessionStore;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A background task calling [`SessionStore::delete_expired`] at an interval.
/// It stops when [`Sweeper::stop`] is called or when it is dropped.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), sessionkit_stores::SweeperError> {
/// use std::{sync::Arc, time::Duration};
/// use sessionkit_stores::{MemoryStore, Sweeper};
///
/// let store = Arc::new(MemoryStore::new());
/// let sweeper = Sweeper::spawn(store.clone(), Duration::from_secs(60))?;
/// // ... serve requests with `store` ...
/// sweeper.stop().await;
/// # Ok::<(), sessionkit_stores::SweeperError>(())
/// # }
/// ```
#[derive(Debug)]
pub struct Sweeper {
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Sweeper {
    /// Starts sweeping `store` every `interval` (the first sweep runs after
    /// one interval) on the current tokio runtime.
    ///
    /// # Errors
    ///
    /// [`SweeperError::ZeroInterval`] for an `interval` of zero, which
    /// would sweep without pause; nothing is started.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime, like `tokio::spawn`.
    pub fn spawn<S: SessionStore + ?Sized>(store: Arc<S>, interval: Duration) -> Result<Self, SweeperError> {
        if interval.is_zero() {
            return Err(SweeperError::ZeroInterval);
        }
        let (stop, mut stopped) = oneshot::channel();
        let task = tokio::spawn(async move {
            let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
            // After a slow sweep, sweep once, not once per missed tick.
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = &mut stopped => break,
                    _ = ticks.tick() => match store.delete_expired().await {
                        Ok(removed) => tracing::debug!(removed, "swept expired sessions"),
                        Err(err) => tracing::warn!(
                            error = &err as &dyn std::error::Error,
                            "sweeping expired sessions failed; retrying at the next interval"
                        ),
                    },
                }
            }
        });
        Ok(Self { stop: Some(stop), task: Some(task) })
    }

    /// Stops sweeping, waiting for a sweep in progress to finish.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take()
            && let Err(err) = task.await
        {
            tracing::error!(error = &err as &dyn std::error::Error, "the session sweeper task failed");
        }
    }
}

/// Why a [`Sweeper`] was not started.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SweeperError {
    /// An interval of zero: the sweeper would never pause between sweeps.
    #[error("invalid sweeper configuration: the interval must be positive")]
    ZeroInterval,
}

impl Drop for Sweeper {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

#[cfg(all(test, feature = "memory"))]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::SystemTime;

    use sessionkit::{SessionMap, SessionRecord, StoreError, StoreKey, expiry};

    use super::*;
    use crate::MemoryStore;

    #[tokio::test]
    async fn sweeps_expired_sessions_until_stopped() {
        let store = Arc::new(MemoryStore::new());
        let past = expiry::now() - Duration::from_secs(1);
        for _ in 0..10 {
            store.set(&sessionkit::testing::checks::key(), &SessionMap::new(), Some(past)).await.expect("set");
        }
        store.set(&sessionkit::testing::checks::key(), &SessionMap::new(), None).await.expect("set");
        let sweeper = Sweeper::spawn(store.clone(), Duration::from_millis(20)).expect("a valid interval");
        for _ in 0..500 {
            if store.len() == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(store.len(), 1, "the sweeper removed the expired sessions and only those");
        sweeper.stop().await;
    }

    #[tokio::test]
    async fn a_zero_interval_is_refused_and_nothing_sweeps() {
        let store = Arc::new(Broken::default());
        let refused = Sweeper::spawn(store.clone(), Duration::ZERO);
        let err = refused.expect_err("refused");
        assert_eq!(err, SweeperError::ZeroInterval);
        assert!(err.to_string().contains("interval must be positive"), "{err}");
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(store.0.load(Ordering::SeqCst), 0, "no sweeper was started");
        let tiny = Sweeper::spawn(store.clone(), Duration::from_nanos(1)).expect("any positive interval works");
        for _ in 0..500 {
            if store.0.load(Ordering::SeqCst) > 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(store.0.load(Ordering::SeqCst) > 0, "a 1 ns interval sweeps");
        tiny.stop().await;
    }

    /// Fails every call, counting them.
    #[derive(Default)]
    struct Broken(AtomicUsize);

    #[sessionkit::async_trait]
    impl SessionStore for Broken {
        async fn get(&self, _: &StoreKey) -> Result<Option<SessionRecord>, StoreError> {
            Ok(None)
        }
        async fn set(&self, _: &StoreKey, _: &SessionMap, _: Option<SystemTime>) -> Result<(), StoreError> {
            Ok(())
        }
        async fn delete(&self, _: &StoreKey) -> Result<(), StoreError> {
            Ok(())
        }
        async fn delete_expired(&self) -> Result<u64, StoreError> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Err(StoreError::backend("sweep", std::io::Error::other("store is down")))
        }
    }

    #[tokio::test]
    async fn keeps_going_after_errors_and_stops_when_dropped() {
        let store = Arc::new(Broken::default());
        let sweeper = Sweeper::spawn(store.clone(), Duration::from_millis(10)).expect("a valid interval");
        for _ in 0..500 {
            if store.0.load(Ordering::SeqCst) >= 3 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(store.0.load(Ordering::SeqCst) >= 3, "a failed sweep must not stop the sweeper");
        drop(sweeper);
        tokio::task::yield_now().await;
        let after_drop = store.0.load(Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(store.0.load(Ordering::SeqCst), after_drop, "a dropped sweeper must stop sweeping");
    }
}
