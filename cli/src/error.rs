//! `CliError`: why a command failed, with its cause.

use sessionkit::StoreError;
use sessionkit_stores::OpenError;

/// A command failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CliError {
    /// A store could not be opened.
    #[error(transparent)]
    Open(#[from] OpenError),
    /// A store failed while the command used it.
    #[error("{context}")]
    Store {
        /// What the command was doing.
        context: String,
        /// The store's error.
        #[source]
        source: StoreError,
    },
    /// The input makes no sense (a handle that is not one).
    #[error("{0}")]
    Invalid(String),
    /// The two stores of a migration derive their keys from ids in
    /// different ways: copied sessions would be unreachable.
    #[error("{0}")]
    Keying(String),
    /// Writing the report, or the resume file, failed.
    #[error("{context}")]
    Io {
        /// What was being written.
        context: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

impl CliError {
    pub(crate) fn store(context: impl Into<String>) -> impl FnOnce(StoreError) -> Self {
        let context = context.into();
        move |source| Self::Store { context, source }
    }

    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let context = context.into();
        move |source| Self::Io { context, source }
    }
}
