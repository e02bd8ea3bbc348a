//! The JSON API under `/api`: the pages' features for scripts and tests.
//!
//! | route | body | does |
//! | --- | --- | --- |
//! | `GET /api/counter` | | counts a visit (an atomic increment); `{"visits": n}` |
//! | `GET /api/me` | | the session: `{"user", "visits", "cart", "saved", "prefs"}` |
//! | `POST /api/login` | `{"user": "ada"}` | new session id, bound to the user ([`Session::login`]) |
//! | `POST /api/cart` | `{"item": "tea"}` | adds an item (an atomic push; 400 when the cart is full) |
//! | `DELETE /api/cart/{item}` | | removes one such item (an atomic remove-first; 404 if none) |
//! | `POST /api/save-for-later` | `{"item": "tea"}` | moves one such item from the cart to `saved` (exclusive; 404 if none) |
//! | `POST /api/move-to-cart` | `{"item": "tea"}` | moves one such item from `saved` back to the cart (exclusive; 404 if none) |
//! | `PUT /api/prefs/{name}` | `{"value": <any JSON>}` | sets the preference, key `pref.<name>` |
//! | `DELETE /api/prefs/{name}` | | removes it (404 if unset) |
//! | `POST /api/logout` | | destroys the session |
//! | `GET /api/sessions` | | the signed-in user's sessions (see below) |
//! | `DELETE /api/sessions/{handle}` | | signs out that session if it is the user's (404 otherwise); answers the listing after |
//! | `POST /api/sessions/revoke-others` | | signs out the user's other sessions; `{"revoked": n}` |
//!
//! Every route up to the logout answers with what `GET /api/me` would show
//! afterwards. Every failure is JSON, `{"error": "..."}`: 400 for a body
//! that is not JSON, lacks a field or holds a wrong type, and for refused
//! input; 404 for something to remove that is not there; 500 only for a
//! server fault, never for anything a client sends.
//!
//! # Your sessions
//!
//! `GET /api/sessions` lists the sessions of the user signed in on this
//! session, the current one first:
//!
//! ```json
//! {"sessions": [{"handle": "…", "current": true, "created_at": 1700000000000,
//!                "last_active": 1700000000000, "expires_at": 1700086400000}]}
//! ```
//!
//! Instants are Unix milliseconds; `expires_at` is `null` for a session
//! without expiry (and `created_at`, `last_active` for one stored before
//! they were recorded). A handle is the session's store key, never its id:
//! it names the session but does not open it. Not signed in, the three
//! session routes answer 401 `{"error": ...}`. `DELETE /api/sessions/{handle}`
//! with another user's handle (or anything that is not a handle of this
//! user's) is a 404 that changes nothing; with the request's own handle it
//! is a logout, and answers `{"sessions": []}`. A revoked session's client
//! finds itself signed out, with a new empty session, on its next request.
//!
//! # Concurrency
//!
//! Concurrent requests of one session lose nothing: see
//! [`crate::state`]. The two move routes run under an exclusive session
//! ([`sessionkit::exclusive::ExclusiveLayer`]): a request for one of them waits while
//! another holds the same session, and after the configured wait (5 s)
//! gets an empty 503 with `Retry-After: 1`.

use std::sync::Arc;

use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{FromRequest, Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use sessionkit::exclusive::ExclusiveLayer;
use sessionkit::{Session, SessionError};

use crate::AppInfo;
use crate::sessions::{self, Listed, Revoked};
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
        .route("/sessions", get(sessions_list))
        .route("/sessions/revoke-others", post(sessions_revoke_others))
        .route("/sessions/{handle}", delete(sessions_revoke))
        .merge(exclusive_routes())
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such API route; see GET /api/me") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "this API route does not take that method")
        })
}

/// The routes that read a value and write one computed from it: one
/// request of a session at a time.
fn exclusive_routes() -> Router<Arc<AppInfo>> {
    Router::new()
        .route("/save-for-later", post(save_for_later))
        .route("/move-to-cart", post(move_to_cart))
        .route_layer(ExclusiveLayer::new())
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

/// The request's `User-Agent`, if it is text.
pub(crate) fn user_agent(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::USER_AGENT).and_then(|value| value.to_str().ok())
}

/// `POST /api/login`.
async fn login(session: Session, headers: HeaderMap, ApiJson(body): ApiJson<Login>) -> ApiResult {
    state::log_in(&session, &body.user, user_agent(&headers))?;
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
async fn cart_add(State(info): State<Arc<AppInfo>>, session: Session, ApiJson(body): ApiJson<AddItem>) -> ApiResult {
    state::add_to_cart(&session, &body.item, info.cart_limit)?;
    snapshot(&session)
}

/// `DELETE /api/cart/{item}`.
async fn cart_remove(session: Session, item: Result<Path<String>, PathRejection>) -> ApiResult {
    let Path(item) = item.map_err(|rejection| path_rejection(&rejection))?;
    state::remove_from_cart(&session, &item)?;
    snapshot(&session)
}

/// `POST /api/save-for-later`, exclusive.
async fn save_for_later(
    State(info): State<Arc<AppInfo>>,
    session: Session,
    ApiJson(body): ApiJson<AddItem>,
) -> ApiResult {
    state::save_for_later(&session, &body.item, info.cart_limit)?;
    snapshot(&session)
}

/// `POST /api/move-to-cart`, exclusive.
async fn move_to_cart(
    State(info): State<Arc<AppInfo>>,
    session: Session,
    ApiJson(body): ApiJson<AddItem>,
) -> ApiResult {
    state::move_to_cart(&session, &body.item, info.cart_limit)?;
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

fn not_signed_in() -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "not logged in: POST /api/login first")
}

/// `{"sessions": [...]}`.
fn listing(sessions: Vec<Listed>) -> Json<Value> {
    Json(json!({ "sessions": sessions }))
}

/// `GET /api/sessions`.
async fn sessions_list(session: Session) -> Result<Json<Value>, ApiError> {
    let listed = sessions::list(&session).await?.ok_or_else(not_signed_in)?;
    Ok(listing(listed))
}

/// `DELETE /api/sessions/{handle}`.
async fn sessions_revoke(
    session: Session,
    handle: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    if session.user().is_none() {
        return Err(not_signed_in());
    }
    let not_found = || ApiError::new(StatusCode::NOT_FOUND, "you have no session with that handle");
    // A segment that is not even UTF-8 names no session either.
    let Ok(Path(handle)) = handle else { return Err(not_found()) };
    match sessions::revoke(&session, &handle).await? {
        Revoked::Other => Ok(listing(sessions::list(&session).await?.unwrap_or_default())),
        Revoked::Current => Ok(listing(Vec::new())),
        Revoked::NotFound => Err(not_found()),
    }
}

/// `POST /api/sessions/revoke-others`.
async fn sessions_revoke_others(session: Session) -> Result<Json<Value>, ApiError> {
    let revoked = sessions::revoke_others(&session).await?.ok_or_else(not_signed_in)?;
    Ok(Json(json!({ "revoked": revoked })))
}
