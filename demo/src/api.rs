//! The JSON API under `/api`: the pages' features for scripts and tests.
//!
//! | route | body | does |
//! | --- | --- | --- |
//! | `GET /api/counter` | | counts a visit; `{"visits": n}` |
//! | `GET /api/me` | | the session: `{"user", "visits", "cart", "prefs"}` |
//! | `POST /api/login` | `{"user": "ada"}` | new session id, then stores the user |
//! | `POST /api/cart` | `{"item": "tea"}` | adds an item |
//! | `DELETE /api/cart/{item}` | | removes one such item (404 if none) |
//! | `PUT /api/prefs/{name}` | `{"value": <any JSON>}` | sets the preference, key `pref.<name>` |
//! | `DELETE /api/prefs/{name}` | | removes it (404 if unset) |
//! | `POST /api/logout` | | destroys the session |
//!
//! Every route but the counter answers with what `GET /api/me` would
//! show afterwards. Every failure is JSON, `{"error": "..."}`: 400 for a
//! body that is not JSON, lacks a field or holds a wrong type, and for
//! refused input; 404 for something to remove that is not there; 500 only
//! for a server fault, never for anything a client sends.

use std::sync::Arc;

use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{FromRequest, Path, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use sessionkit::{Session, SessionError};

use crate::AppInfo;
use crate::state::{self, ActionError, Snapshot, Visits};

/// The API's routes, to be nested under `/api`.
pub fn routes() -> Router<Arc<AppInfo>> {
    Router::new()
        .route("/counter", get(counter))
        .route("/me", get(me))
        .route("/login", post(login))
        .route("/logout", post(logout))
        .route("/cart", post(cart_add))
        .route("/cart/{item}", delete(cart_remove))
        .route("/prefs/{name}", put(pref_set).delete(pref_remove))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such API route; see GET /api/me") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "this API route does not take that method")
        })
}

/// A failed API call: a status and `{"error": message}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self { status, message: message.into() }
    }
}

impl From<ActionError> for ApiError {
    fn from(err: ActionError) -> Self {
        match err {
            ActionError::Invalid(message) => Self::new(StatusCode::BAD_REQUEST, message),
            ActionError::NotFound(message) => Self::new(StatusCode::NOT_FOUND, message),
            ActionError::Session(err) => err.into(),
        }
    }
}

impl From<SessionError> for ApiError {
    fn from(err: SessionError) -> Self {
        // Only the server writes session data, so any session error here is
        // the server's fault; the details go to the log, not the client.
        tracing::error!(error = &err as &dyn std::error::Error, "an API call failed; answering 500");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({ "error": self.message }))).into_response()
    }
}

/// A JSON body whose every rejection (no JSON content type, bad syntax, a
/// missing field, a wrong type) is a 400 with axum's explanation, instead of
/// axum's mix of plain-text 400, 415 and 422. A body past the size limit
/// keeps its 413.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(request, state).await {
            Ok(Json(value)) => Ok(Self(value)),
            Err(rejection) => Err(json_rejection(&rejection)),
        }
    }
}

fn json_rejection(rejection: &JsonRejection) -> ApiError {
    let status = match rejection.status() {
        StatusCode::PAYLOAD_TOO_LARGE => StatusCode::PAYLOAD_TOO_LARGE,
        _ => StatusCode::BAD_REQUEST,
    };
    ApiError::new(status, rejection.body_text())
}

/// A path segment that is not valid percent-encoded UTF-8 is a 400 too.
fn path_rejection(rejection: &PathRejection) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, rejection.body_text())
}

type ApiResult = Result<Json<Snapshot>, ApiError>;

fn snapshot(session: &Session) -> ApiResult {
    Ok(Json(Snapshot::load(session)?))
}

/// `GET /api/counter`.
async fn counter(session: Session) -> Result<Json<Value>, ApiError> {
    let visits = Visits::bump(&session)?;
    Ok(Json(json!({ "visits": visits })))
}

/// `GET /api/me`.
async fn me(session: Session) -> ApiResult {
    snapshot(&session)
}

#[derive(Debug, Deserialize)]
struct Login {
    user: String,
}

/// `POST /api/login`.
async fn login(session: Session, ApiJson(body): ApiJson<Login>) -> ApiResult {
    state::log_in(&session, &body.user)?;
    snapshot(&session)
}

/// `POST /api/logout`.
async fn logout(session: Session) -> ApiResult {
    session.destroy();
    snapshot(&session)
}

#[derive(Debug, Deserialize)]
struct AddItem {
    item: String,
}

/// `POST /api/cart`.
async fn cart_add(session: Session, ApiJson(body): ApiJson<AddItem>) -> ApiResult {
    state::add_to_cart(&session, &body.item)?;
    snapshot(&session)
}

/// `DELETE /api/cart/{item}`.
async fn cart_remove(session: Session, item: Result<Path<String>, PathRejection>) -> ApiResult {
    let Path(item) = item.map_err(|rejection| path_rejection(&rejection))?;
    state::remove_from_cart(&session, &item)?;
    snapshot(&session)
}

/// `{"value": ...}`: any JSON value, `null` included, but present.
#[derive(Debug, Deserialize)]
struct PrefValue {
    value: Value,
}

/// `PUT /api/prefs/{name}`.
async fn pref_set(
    session: Session,
    name: Result<Path<String>, PathRejection>,
    ApiJson(body): ApiJson<PrefValue>,
) -> ApiResult {
    let Path(name) = name.map_err(|rejection| path_rejection(&rejection))?;
    state::set_pref(&session, &name, body.value)?;
    snapshot(&session)
}

/// `DELETE /api/prefs/{name}`.
async fn pref_remove(session: Session, name: Result<Path<String>, PathRejection>) -> ApiResult {
    let Path(name) = name.map_err(|rejection| path_rejection(&rejection))?;
    state::remove_pref(&session, &name)?;
    snapshot(&session)
}
