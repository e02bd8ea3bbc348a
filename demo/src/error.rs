//! `StartError`: why the demo could not start, with a hint for the person
//! who ran it.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;

use sessionkit::{ConfigError, StoreError};
use sessionkit_stores::{OpenError, SweeperError};

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
    /// PostgreSQL could not be reached or used.
    #[error("cannot use PostgreSQL at {url}")]
    Postgres {
        /// The URL, its password hidden.
        url: String,
        /// The store's error.
        #[source]
        source: StoreError,
    },
    /// The store URL could not be used (a store this build lacks).
    #[error(transparent)]
    StoreUrl(OpenError),
    /// The session configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The sweeper of expired sessions would not start.
    #[error(transparent)]
    Sweeper(#[from] SweeperError),
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
            Self::Postgres { .. } => Some(
                "is PostgreSQL running there, and may that user connect to that database? A URL looks like \
                 postgres://user:password@127.0.0.1:5432/database",
            ),
            Self::DataDir { .. } | Self::OpenStore { .. } => {
                Some("choose another place with --data, or another store with --store (memory needs no files)")
            }
            Self::StoreUrl(_) | Self::Config(_) | Self::Sweeper(_) | Self::Serve(_) => None,
        }
    }
}
