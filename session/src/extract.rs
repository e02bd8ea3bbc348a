//! axum extractors for [`Session`] and [`LazySession`] (feature `axum`).
//!
//! Extracting a `Session` loads it from the store. Without a
//! [`SessionLayer`](crate::SessionLayer) in front of the route, or when the
//! store fails, the extractor answers with an empty 500 and logs why: both are
//! server faults the client cannot fix.

use axum_core::extract::FromRequestParts;
use axum_core::response::{IntoResponse, Response};
use http::StatusCode;
use http::request::Parts;

use crate::{LazySession, Session, SessionError};

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
        tracing::error!(error = &self as &dyn std::error::Error, "session extractor failed; answering 500");
        StatusCode::INTERNAL_SERVER_ERROR.into_response()
    }
}

/// Lets handlers use `?` on session operations. Every [`SessionError`] is a
/// server-side fault (a store outage, data of the wrong shape, a value that
/// cannot be serialized), so each answers an empty 500 and is logged.
impl IntoResponse for SessionError {
    fn into_response(self) -> Response {
        tracing::error!(error = &self as &dyn std::error::Error, "session operation failed; answering 500");
        StatusCode::INTERNAL_SERVER_ERROR.into_response()
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
