//! `Server`: the demo bound to its address and serving in the background,
//! until a graceful shutdown.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use sessionkit_stores::Sweeper;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::{Args, StartError, app, build_store};

/// How often expired sessions are swept from the store. Stores never hand
/// out an expired session, so this only reclaims space.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(60);

/// How long a shutdown waits for requests in flight before dropping them.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

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
        let sweeper = Sweeper::spawn(Arc::clone(&store.store), SWEEP_INTERVAL)?;
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
