//! The two error types: [`StoreError`] for storage engines, [`SessionError`]
//! for what a handler does with its session.
//!
//! Both keep their cause as a `source()`, so a log or a report shows the whole
//! chain (a SQLite "database is locked", a Redis timeout) and not a flattened
//! string.

use std::error::Error as StdError;
use std::time::Duration;

use crate::PatchError;

/// A boxed error from a storage engine.
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// A session store failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The engine (disk, database, network) failed.
    #[error("session store backend failed: {context}")]
    Backend {
        /// What the store was doing.
        context: &'static str,
        /// The engine's error.
        #[source]
        source: BoxError,
    },
    /// A record could not be encoded for storage.
    #[error("session record could not be encoded")]
    Encode(#[source] serde_json::Error),
    /// The engine did not answer in time.
    #[error("session store did not answer within {0:?}")]
    Timeout(Duration),
    /// The store refused a patch whole, writing nothing of it: an operation
    /// met a value of the wrong type, the result would pass the size limit,
    /// or the exclusive lease fencing it was lost.
    #[error("session store refused the patch")]
    Refused(#[source] PatchError),
    /// The store holds as many sessions as it may and refused to add
    /// another, writing nothing: a write that would create a session (a
    /// `set` of a key it does not hold). Writes to the sessions it holds
    /// are not refused for this. [`SessionLayer`](crate::SessionLayer)
    /// answers an empty 503 and sets no cookie.
    #[error("session store is full: it holds its maximum of {capacity} sessions")]
    Full {
        /// The most sessions the store holds.
        capacity: usize,
    },
    /// The store does not offer this operation (a user index, leases,
    /// scans are optional for third-party stores).
    #[error("this session store does not support {operation}")]
    Unsupported {
        /// The operation asked for, e.g. `"listing a user's sessions"`.
        operation: &'static str,
    },
    /// The store was configured with something it cannot use (a hostile
    /// table name, a file that is not a database, ...).
    #[error("invalid session store configuration: {message}")]
    Config {
        /// What is wrong, in words.
        message: String,
        /// The underlying error, when there is one.
        #[source]
        source: Option<BoxError>,
    },
}

impl StoreError {
    /// Wraps an engine error, saying what the store was doing.
    pub fn backend(context: &'static str, source: impl Into<BoxError>) -> Self {
        Self::Backend { context, source: source.into() }
    }

    /// The error for an operation this store does not offer.
    pub fn unsupported(operation: &'static str) -> Self {
        Self::Unsupported { operation }
    }

    /// A configuration error without an underlying cause.
    pub fn config(message: impl Into<String>) -> Self {
        Self::Config { message: message.into(), source: None }
    }

    /// A configuration error caused by `source`.
    pub fn config_caused_by(message: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Self::Config { message: message.into(), source: Some(source.into()) }
    }
}

/// Something a handler asked of its session failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The store failed while loading the session.
    #[error("the session could not be loaded")]
    Load(#[source] StoreError),
    /// A value could not be turned into JSON.
    #[error("the value for session key `{key}` could not be serialized")]
    Serialize {
        /// The key being written.
        key: String,
        /// serde's error.
        #[source]
        source: serde_json::Error,
    },
    /// A stored value does not have the shape the caller asked for.
    #[error("session key `{key}` does not hold a valid `{expected}`")]
    Deserialize {
        /// The key being read.
        key: String,
        /// The Rust type the caller asked for.
        expected: &'static str,
        /// serde's error.
        #[source]
        source: serde_json::Error,
    },
    /// A required key is absent.
    #[error("session key `{key}` is missing (expected a `{expected}`)")]
    Missing {
        /// The key being read.
        key: String,
        /// The Rust type the caller asked for.
        expected: &'static str,
    },
    /// The key is reserved for sessionkit's own bookkeeping.
    #[error("session key `{0}` is reserved for sessionkit")]
    ReservedKey(String),
    /// An operation on a key cannot apply to the value it holds (an
    /// increment of a string, a push onto an object).
    #[error("session operation failed")]
    Patch(#[source] PatchError),
    /// The session is exclusive to another request, which did not let go
    /// within [`SessionConfig::exclusive_wait`](crate::SessionConfig::exclusive_wait).
    #[error("the session stayed busy with another request for {waited:?}")]
    Busy {
        /// How long this request waited.
        waited: Duration,
    },
    /// The store failed on a listing or a revocation.
    #[error("the session store failed")]
    Store(#[source] StoreError),
}
