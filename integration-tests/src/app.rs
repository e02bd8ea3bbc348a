//! The application the HTTP suite drives: one route per session behaviour,
//! plus gates that let a test hold a request between loading its session and
//! writing it, to stage races deterministically.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use serde_json::Value;
use sessionkit::{Session, SessionError, SessionLayer};
use tokio::sync::{Barrier, Semaphore};

/// Rendezvous points for staged races.
pub struct Gates {
    /// Released once per `/held/...` request that has loaded its session.
    pub loaded: Semaphore,
    /// A `/held/...` request writes only after taking a permit from here.
    pub proceed: Semaphore,
    /// `/together/...` requests write only when two of them have loaded.
    pub together: Barrier,
}

impl Default for Gates {
    fn default() -> Self {
        Self { loaded: Semaphore::new(0), proceed: Semaphore::new(0), together: Barrier::new(2) }
    }
}

/// The suite's routes, behind `layer`.
///
/// | route | what it does with the session |
/// | --- | --- |
/// | `GET /untouched` | nothing |
/// | `GET /get/{key}` | reads `key` (JSON, `null` when absent) |
/// | `GET /id` | the session's id |
/// | `POST /set/{key}/{value}` | sets `key` to the string `value` |
/// | `POST /incr/{key}` | increments the number under `key`, returns it |
/// | `POST /delete/{key}` | removes `key` |
/// | `POST /regenerate` | regenerates the id, returns the new one |
/// | `POST /destroy` | destroys the session |
/// | `POST /big/{bytes}` | sets `big` to a string of `bytes` bytes |
/// | `PUT /json/{key}` | sets `key` to the JSON request body |
/// | `POST /fail/{key}/{value}` | sets `key`, then answers 500 |
/// | `POST /headers` | sets `key=v` and answers with its own headers and `Set-Cookie` |
/// | `POST /held/{key}/{value}` | loads, signals `loaded`, waits for `proceed`, then sets |
/// | `POST /together/{key}/{value}` | loads, waits for a second such request, then sets |
pub fn router(layer: SessionLayer, gates: Arc<Gates>) -> Router {
    Router::new()
        .route("/untouched", get(|| async { "untouched" }))
        .route("/get/{key}", get(read))
        .route("/id", get(|session: Session| async move { session.id().to_string() }))
        .route("/set/{key}/{value}", post(write))
        .route("/incr/{key}", post(increment))
        .route("/delete/{key}", post(remove))
        .route("/regenerate", post(|session: Session| async move { session.regenerate().to_string() }))
        .route("/destroy", post(|session: Session| async move { session.destroy() }))
        .route("/big/{bytes}", post(big))
        .route("/json/{key}", axum::routing::put(put_json))
        .route("/fail/{key}/{value}", post(fail))
        .route("/headers", post(own_headers))
        .route("/held/{key}/{value}", post(held))
        .route("/together/{key}/{value}", post(together))
        .layer(layer)
        .with_state(gates)
}

async fn read(session: Session, Path(key): Path<String>) -> String {
    session.get_value(&key).unwrap_or(Value::Null).to_string()
}

async fn write(session: Session, Path((key, value)): Path<(String, String)>) -> Result<&'static str, SessionError> {
    session.set(key, value)?;
    Ok("set")
}

async fn increment(session: Session, Path(key): Path<String>) -> Result<String, SessionError> {
    let next = session.get::<u64>(&key)?.unwrap_or(0) + 1;
    session.set(key, next)?;
    Ok(next.to_string())
}

async fn remove(session: Session, Path(key): Path<String>) -> &'static str {
    session.delete(&key);
    "deleted"
}

async fn big(session: Session, Path(bytes): Path<usize>) -> Result<&'static str, SessionError> {
    session.set("big", "x".repeat(bytes))?;
    Ok("stored")
}

async fn put_json(
    session: Session,
    Path(key): Path<String>,
    axum::Json(value): axum::Json<Value>,
) -> Result<&'static str, SessionError> {
    session.set_value(key, value)?;
    Ok("stored")
}

async fn fail(session: Session, Path((key, value)): Path<(String, String)>) -> Result<StatusCode, SessionError> {
    session.set(key, value)?;
    Ok(StatusCode::INTERNAL_SERVER_ERROR)
}

async fn own_headers(session: Session) -> Result<impl IntoResponse, SessionError> {
    session.set("key", "v")?;
    let mut headers = HeaderMap::new();
    headers.insert("x-handler", HeaderValue::from_static("kept"));
    headers.append(header::SET_COOKIE, HeaderValue::from_static("theme=dark; Path=/"));
    headers.append(header::VARY, HeaderValue::from_static("accept-language"));
    Ok((headers, "own headers"))
}

async fn held(
    State(gates): State<Arc<Gates>>,
    session: Session,
    Path((key, value)): Path<(String, String)>,
) -> Result<&'static str, SessionError> {
    gates.loaded.add_permits(1);
    match gates.proceed.acquire().await {
        Ok(permit) => permit.forget(),
        Err(_) => return Ok("gate closed"),
    }
    session.set(key, value)?;
    Ok("set")
}

async fn together(
    State(gates): State<Arc<Gates>>,
    session: Session,
    Path((key, value)): Path<(String, String)>,
) -> Result<&'static str, SessionError> {
    gates.together.wait().await;
    session.set(key, value)?;
    Ok("set")
}
