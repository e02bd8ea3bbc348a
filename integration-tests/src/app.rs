//! The application the HTTP suite drives: one route per session behaviour,
//! plus gates that let a test hold a request between loading its session and
//! writing it, to stage races deterministically.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use serde_json::{Value, json};
use sessionkit::exclusive::ExclusiveLayer;
use sessionkit::{Session, SessionError, SessionInfo, SessionLayer, StoreKey, expiry};
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
/// | `POST /login/{user}` | signs `user` in (a new id, bound to the user) |
/// | `GET /whoami` | the session's user, empty when none |
/// | `GET /sessions` | the user's sessions as JSON (401 without a user) |
/// | `DELETE /sessions/{handle}` | signs that session out if it is the user's (404 otherwise), then lists |
/// | `POST /sessions/revoke-others` | signs out the user's other sessions: `{"revoked": n}` |
/// | `POST /admin/revoke-all/{user}` | the store's `revoke_all(user)`, as an admin tool would: `{"revoked": n}` |
/// | `POST /held-regenerate` | loads, signals `loaded`, waits for `proceed`, then regenerates |
/// | `POST /held-destroy` | loads, signals `loaded`, waits for `proceed`, then destroys |
/// | `POST /increment/{key}` | atomically increments `key`, returns this request's view |
/// | `POST /push/{key}/{value}` | atomically pushes the string `value` onto `key` |
/// | `POST /exclusive/bump/{key}` | exclusive: reads the object under `key`, adds one to its `n` and pushes `n` onto its `seen`, writes it back |
/// | `POST /exclusive/slow/{millis}` | exclusive: waits `millis`, then sets `slow` |
pub fn router(layer: SessionLayer, gates: Arc<Gates>) -> Router {
    let exclusive = Router::new()
        .route("/exclusive/bump/{key}", post(bump))
        .route("/exclusive/slow/{millis}", post(slow))
        .route_layer(ExclusiveLayer::new());
    Router::new()
        .merge(exclusive)
        .route("/login/{user}", post(login))
        .route("/whoami", get(|session: Session| async move { session.user().unwrap_or_default() }))
        .route("/sessions", get(list_sessions))
        .route("/sessions/{handle}", axum::routing::delete(revoke_one))
        .route("/sessions/revoke-others", post(revoke_others))
        .route("/admin/revoke-all/{user}", post(revoke_all))
        .route("/held-regenerate", post(held_regenerate))
        .route("/held-destroy", post(held_destroy))
        .route("/increment/{key}", post(atomic_increment))
        .route("/push/{key}/{value}", post(atomic_push))
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

async fn login(session: Session, Path(user): Path<String>) -> String {
    session.login(user).to_string()
}

/// One listing entry as JSON, instants as Unix ms.
fn entry(info: &SessionInfo) -> Value {
    let ms = |at: Option<std::time::SystemTime>| at.map(expiry::to_unix_ms);
    json!({
        "handle": info.handle.to_string(),
        "current": info.current,
        "created_at": ms(info.created_at),
        "last_active": ms(info.last_active),
        "expires_at": ms(info.expires_at),
    })
}

async fn listing(session: &Session) -> Result<axum::Json<Value>, StatusCode> {
    let sessions = session.sessions().await.map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
    Ok(axum::Json(json!({ "sessions": sessions.iter().map(entry).collect::<Vec<_>>() })))
}

async fn list_sessions(session: Session) -> Result<axum::Json<Value>, StatusCode> {
    if session.user().is_none() {
        return Err(StatusCode::UNAUTHORIZED);
    }
    listing(&session).await
}

async fn revoke_one(session: Session, Path(handle): Path<String>) -> Result<axum::Json<Value>, StatusCode> {
    let handle = StoreKey::parse(&handle).ok_or(StatusCode::NOT_FOUND)?;
    match session.revoke(&handle).await {
        Ok(true) => listing(&session).await,
        Ok(false) => Err(StatusCode::NOT_FOUND),
        Err(_) => Err(StatusCode::INTERNAL_SERVER_ERROR),
    }
}

async fn revoke_others(session: Session) -> Result<axum::Json<Value>, StatusCode> {
    let revoked = session.revoke_others().await.map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
    Ok(axum::Json(json!({ "revoked": revoked })))
}

async fn revoke_all(session: Session, Path(user): Path<String>) -> Result<axum::Json<Value>, StatusCode> {
    let store = session.config().store();
    let revoked = store.revoke_all(&user, None).await.map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
    Ok(axum::Json(json!({ "revoked": revoked })))
}

/// Waits at the gates: signals `loaded`, then takes a `proceed` permit.
async fn hold(gates: &Gates) -> bool {
    gates.loaded.add_permits(1);
    match gates.proceed.acquire().await {
        Ok(permit) => {
            permit.forget();
            true
        }
        Err(_) => false,
    }
}

async fn held_regenerate(State(gates): State<Arc<Gates>>, session: Session) -> String {
    if !hold(&gates).await {
        return "gate closed".into();
    }
    session.regenerate().to_string()
}

async fn held_destroy(State(gates): State<Arc<Gates>>, session: Session) -> &'static str {
    if !hold(&gates).await {
        return "gate closed";
    }
    session.destroy();
    "destroyed"
}

async fn atomic_increment(session: Session, Path(key): Path<String>) -> Result<String, SessionError> {
    Ok(session.increment(key, 1)?.to_string())
}

async fn atomic_push(
    session: Session,
    Path((key, value)): Path<(String, String)>,
) -> Result<&'static str, SessionError> {
    session.push(key, value, None)?;
    Ok("pushed")
}

/// A read-modify-write no atomic operation covers: both fields must move
/// together.
async fn bump(session: Session, Path(key): Path<String>) -> Result<String, SessionError> {
    let mut object = session.get::<Value>(&key)?.unwrap_or_else(|| json!({ "n": 0, "seen": [] }));
    let n = object["n"].as_u64().unwrap_or(0) + 1;
    // Give a concurrent request every chance to interleave.
    tokio::task::yield_now().await;
    tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    object["n"] = json!(n);
    if let Some(seen) = object["seen"].as_array_mut() {
        seen.push(json!(n));
    }
    session.set_value(key, object)?;
    Ok(n.to_string())
}

async fn slow(session: Session, Path(millis): Path<u64>) -> Result<&'static str, SessionError> {
    tokio::time::sleep(std::time::Duration::from_millis(millis)).await;
    session.set("slow", true)?;
    Ok("slow")
}
