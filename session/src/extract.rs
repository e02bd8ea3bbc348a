//! axum extractors for [`Session`], [`LazySession`] and every
//! [`SessionData`] type (feature `axum`).
//!
//! Extracting a `Session` loads it from the store. Without a
//! [`SessionLayer`](crate::SessionLayer) in front of the route, or when the
//! store fails, the extractor answers with an empty 500 and logs why: both are
//! server faults the client cannot fix.
//!
//! A `SessionData` type then loads itself from that session; see
//! [`SessionDataRejection`] for how its failures answer.

use axum_core::extract::FromRequestParts;
use axum_core::response::{IntoResponse, Response};
use http::StatusCode;
use http::request::Parts;

use crate::{LazySession, Session, SessionData, SessionError};

/// Why a session extractor failed. Responds with an empty 500.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionRejection {
    /// No `SessionLayer` runs in front of this route.
    #[error("no session in the request extensions: is `SessionLayer` installed on this route?")]
    MissingLayer,
    /// The store failed while loading the session.
    #[error(transparent)]
    Load(SessionError),
}

impl IntoResponse for SessionRejection {
    fn into_response(self) -> Response {
        if let SessionRejection::Load(SessionError::Busy { .. }) = self {
            // The layer answers it (an empty 503 with Retry-After) whatever
            // the handler returns; this is the same answer.
            tracing::warn!(error = &self as &dyn std::error::Error, "session extractor failed; answering 503");
            return (StatusCode::SERVICE_UNAVAILABLE, [(http::header::RETRY_AFTER, "1")]).into_response();
        }
        tracing::error!(error = &self as &dyn std::error::Error, "session extractor failed; answering 500");
        StatusCode::INTERNAL_SERVER_ERROR.into_response()
    }
}

/// Lets handlers use `?` on session operations, answering as the
/// [`SessionData`] extractor would (see [`SessionDataRejection`]): an empty
/// 400 for [`SessionError::Missing`] (a typed `load` found a required key
/// absent: the client's session is not in the state the route needs), an
/// empty 500 for everything else (a store outage, data of the wrong shape, a
/// value that cannot be serialized: server faults). Both are logged.
impl IntoResponse for SessionError {
    fn into_response(self) -> Response {
        SessionDataRejection::from(self).into_response()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for LazySession {
    type Rejection = SessionRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<LazySession>().cloned().ok_or(SessionRejection::MissingLayer)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Session {
    type Rejection = SessionRejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let lazy = LazySession::from_request_parts(parts, state).await?;
        lazy.load().await.map_err(SessionRejection::Load)
    }
}

/// Why a [`SessionData`] extractor failed.
///
/// | variant | status | why |
/// | --- | --- | --- |
/// | [`Session`](Self::Session) | 500 | no `SessionLayer`, or the store failed: server faults |
/// | [`Missing`](Self::Missing) | 400 | a required key is absent: the client's session is not in the state the route needs (a first visit, an expired session, a skipped step), which the client can change and the server cannot |
/// | [`Invalid`](Self::Invalid) | 500 | a stored value has the wrong shape: only the server writes session data, so this is a server bug or a change of schema |
///
/// Each answers with an empty body and is logged with `tracing` (a 400 at
/// `debug`, a 500 at `error`). To answer differently, extract
/// `Option<T>` (`None` where this would be `Missing`) or
/// `Result<T, SessionDataRejection>`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionDataRejection {
    /// The session itself could not be had.
    #[error(transparent)]
    Session(#[from] SessionRejection),
    /// A required key is absent; holds [`SessionError::Missing`].
    #[error(transparent)]
    Missing(SessionError),
    /// A stored value could not be read as the field's type.
    #[error(transparent)]
    Invalid(SessionError),
}

impl SessionDataRejection {
    /// The status this rejection answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Missing(_) => StatusCode::BAD_REQUEST,
            Self::Session(_) | Self::Invalid(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<SessionError> for SessionDataRejection {
    fn from(err: SessionError) -> Self {
        match err {
            SessionError::Missing { .. } => Self::Missing(err),
            other => Self::Invalid(other),
        }
    }
}

impl IntoResponse for SessionDataRejection {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(
                error = &self as &dyn std::error::Error,
                "session data extractor failed; answering {status}"
            );
        } else {
            tracing::debug!(
                error = &self as &dyn std::error::Error,
                "session data extractor failed; answering {status}"
            );
        }
        status.into_response()
    }
}

/// The body of every derived `FromRequestParts` impl.
#[doc(hidden)]
pub async fn extract<T: SessionData, S: Send + Sync>(parts: &mut Parts, state: &S) -> Result<T, SessionDataRejection> {
    let session = Session::from_request_parts(parts, state).await?;
    Ok(T::load(&session)?)
}

/// The body of every derived `OptionalFromRequestParts` impl: a missing
/// required key is `None`, anything else still fails.
#[doc(hidden)]
pub async fn extract_optional<T: SessionData, S: Send + Sync>(
    parts: &mut Parts,
    state: &S,
) -> Result<Option<T>, SessionDataRejection> {
    match extract(parts, state).await {
        Ok(value) => Ok(Some(value)),
        Err(SessionDataRejection::Missing(_)) => Ok(None),
        Err(other) => Err(other),
    }
}
