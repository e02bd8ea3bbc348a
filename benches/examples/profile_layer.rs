//! Sends requests straight into a router (no network), for a profiler:
//! the per-request cost of the session layers themselves.
//!
//! `cargo build --release -p sessionkit-benches --example profile_layer`, then
//! `valgrind --tool=callgrind --collect-atstart=no --toggle-collect='profile_layer::measure*' \
//!   target/release/examples/profile_layer sessionkit 20000`.

use std::future::poll_fn;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use http::Request;
use http::header::{COOKIE, SET_COOKIE};
use sessionkit::{Session, SessionConfig, SessionError, SessionLayer};
use sessionkit_stores::MemoryStore;
use tower_service::Service;

async fn counter(session: Session) -> Result<String, SessionError> {
    let visits = session.get::<u64>("counter")?.unwrap_or(0) + 1;
    session.set("counter", visits)?;
    Ok(visits.to_string())
}

/// Reads the counter; writes it only when the session has none yet.
async fn reader(session: Session) -> Result<String, SessionError> {
    if let Some(visits) = session.get::<u64>("counter")? {
        return Ok(visits.to_string());
    }
    session.set("counter", 1)?;
    Ok("1".to_owned())
}

async fn tower_counter(session: tower_sessions::Session) -> String {
    let visits = session.get::<u64>("counter").await.ok().flatten().unwrap_or(0) + 1;
    let _ = session.insert("counter", visits).await;
    visits.to_string()
}

async fn request(router: &mut Router, cookie: &Option<String>) -> Option<String> {
    let mut request = Request::get("/");
    if let Some(cookie) = cookie {
        request = request.header(COOKIE, cookie);
    }
    let request = request.body(Body::empty()).expect("request");
    poll_fn(|cx| <Router as Service<Request<Body>>>::poll_ready(router, cx)).await.expect("ready");
    let response = router.call(request).await.expect("response");
    assert!(response.status().is_success());
    let set = response.headers().get(SET_COOKIE)?.to_str().ok()?;
    Some(set.split(';').next()?.to_owned())
}

#[inline(never)]
fn measure(runtime: &tokio::runtime::Runtime, router: &mut Router, cookie: &mut Option<String>, count: usize) {
    runtime.block_on(async {
        for _ in 0..count {
            if let Some(set) = request(router, cookie).await {
                *cookie = Some(set);
            }
        }
    });
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let variant = args.get(1).map_or("sessionkit", String::as_str);
    let count: usize = args.get(2).and_then(|n| n.parse().ok()).unwrap_or(10_000);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let mut router = match variant {
        "bare" => Router::new().route("/", get(|| async { "hello" })),
        "sessionkit" => {
            Router::new().route("/", get(counter)).layer(SessionLayer::new(SessionConfig::builder(MemoryStore::new())))
        }
        "sessionkit-read" => {
            Router::new().route("/", get(reader)).layer(SessionLayer::new(SessionConfig::builder(MemoryStore::new())))
        }
        "sessionkit-read-unhashed" => Router::new()
            .route("/", get(reader))
            .layer(SessionLayer::new(SessionConfig::builder(MemoryStore::new()).hash_ids_at_rest(false))),
        // Valgrind hides SHA-NI, so SHA-256 runs in software there: this
        // variant shows the layer's cost without it.
        "sessionkit-unhashed" => Router::new()
            .route("/", get(counter))
            .layer(SessionLayer::new(SessionConfig::builder(MemoryStore::new()).hash_ids_at_rest(false))),
        "tower-sessions" => Router::new()
            .route("/", get(tower_counter))
            .layer(tower_sessions::SessionManagerLayer::new(tower_sessions::MemoryStore::default())),
        other => panic!("unknown variant {other}"),
    };
    let mut cookie = None;
    // The first request creates the session; measure the steady state.
    measure(&runtime, &mut router, &mut cookie, 1);
    let start = std::time::Instant::now();
    measure(&runtime, &mut router, &mut cookie, count);
    eprintln!("{variant}: {:.0} ns per request", start.elapsed().as_nanos() as f64 / count as f64);
}
