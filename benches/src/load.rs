//! A loopback HTTP load generator: keep-alive HTTP/1.1 connections that
//! each carry one client's session, driving a real server on `127.0.0.1`.
//!
//! Each connection behaves like a browser: it sends back the cookie the
//! server set, and (for the session routes) checks that every response is
//! `200` with the counter one higher than the last, so a benchmark that
//! lost writes or sessions shows errors instead of a good number.
//!
//! [`drive_one_session`] instead puts every connection on one session, as
//! one user's many tabs (or a script) would: the hardest case for a store,
//! every request an update of the same record.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::Router;
use axum::serve::ListenerExt;
use http::header::{COOKIE, HOST, SET_COOKIE};
use http::{HeaderValue, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};

/// What a response must look like to count as a success.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// A `200`.
    Ok,
    /// A `200` whose body is the connection's previous counter plus one,
    /// starting at 1: the session was loaded and its write kept.
    Counter,
    /// A `200` whose body is a counter of at least 2 and no `Set-Cookie`
    /// but one repeating the shared cookie (tower-sessions sends it again
    /// with every write): the session every connection shares was found
    /// and kept (a lost one would be replaced, with a new cookie, and count
    /// from 1). Concurrent requests read and overwrite one counter, so its
    /// value says nothing more.
    SharedCounter,
    /// A `200` whose body is `1`, with a `Set-Cookie` on the connection's
    /// first response only: the session the first request created is read
    /// back, unchanged, by every later one (a lost session would be
    /// created again, with a new cookie).
    ReadOnly,
}

/// What one load run did.
#[derive(Debug, Clone, Copy, Default)]
pub struct LoadReport {
    /// Responses received.
    pub requests: u64,
    /// Responses that failed their [`Check`].
    pub errors: u64,
    /// From the first request to the last response.
    pub elapsed: Duration,
}

impl LoadReport {
    /// Requests per second.
    pub fn rate(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64().max(f64::EPSILON)
    }
}

/// Serves `router` on a fresh port of `127.0.0.1`, with `TCP_NODELAY` as a
/// production server would set, on the current runtime. Returns the address.
pub async fn serve(router: Router) -> io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let listener = listener.tap_io(|stream| {
        // Without it, small responses wait for delayed ACKs.
        let _ = stream.set_nodelay(true);
    });
    tokio::spawn(async move {
        if let Err(err) = axum::serve(listener, router).await {
            eprintln!("sessionkit-benches: server stopped: {err}");
        }
    });
    Ok(addr)
}

/// Opens `connections` keep-alive connections to `addr` and sends `GET /`
/// on each, one request at a time, until `duration` has passed. Runs on the
/// current runtime.
pub async fn drive(addr: SocketAddr, connections: usize, duration: Duration, check: Check) -> io::Result<LoadReport> {
    drive_with(addr, connections, duration, check, None).await
}

/// Like [`drive`], but every connection sends the same session cookie: one
/// request (not counted) creates the session, then `connections` keep-alive
/// connections send requests on it, checked with [`Check::SharedCounter`].
pub async fn drive_one_session(addr: SocketAddr, connections: usize, duration: Duration) -> io::Result<LoadReport> {
    let cookie = first_cookie(addr).await?;
    drive_with(addr, connections, duration, Check::SharedCounter, Some(cookie)).await
}

async fn drive_with(
    addr: SocketAddr,
    connections: usize,
    duration: Duration,
    check: Check,
    cookie: Option<HeaderValue>,
) -> io::Result<LoadReport> {
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..connections {
        tasks.spawn(client(addr, deadline, check, cookie.clone()));
    }
    let mut total = LoadReport::default();
    while let Some(done) = tasks.join_next().await {
        let report = done.map_err(io::Error::other)??;
        total.requests += report.requests;
        total.errors += report.errors;
    }
    total.elapsed = start.elapsed();
    Ok(total)
}

/// The session cookie the server sets on a first request to `addr`.
async fn first_cookie(addr: SocketAddr) -> io::Result<HeaderValue> {
    let mut sender = connect(addr).await?;
    let request = Request::get("/").header(HOST, "localhost").body(Empty::<Bytes>::new()).map_err(io::Error::other)?;
    let response = sender.send_request(request).await.map_err(io::Error::other)?;
    let cookie = response.headers().get(SET_COOKIE).and_then(cookie_pair);
    let status = response.status();
    response.into_body().collect().await.map_err(io::Error::other)?;
    match cookie {
        Some(cookie) if status == StatusCode::OK => Ok(cookie),
        _ => Err(io::Error::other(format!("the first request got {status} and no session cookie"))),
    }
}

/// A keep-alive HTTP/1.1 connection to `addr`, driven on the current
/// runtime until the sender is dropped.
async fn connect(addr: SocketAddr) -> io::Result<hyper::client::conn::http1::SendRequest<Empty<Bytes>>> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(io::Error::other)?;
    // Ends with an error once the sender is dropped: nothing to report.
    tokio::spawn(connection);
    Ok(sender)
}

/// One browser on one connection, starting with `cookie` if given.
async fn client(
    addr: SocketAddr,
    deadline: Instant,
    check: Check,
    mut cookie: Option<HeaderValue>,
) -> io::Result<LoadReport> {
    let mut sender = connect(addr).await?;
    let mut report = LoadReport::default();
    let mut counter = 0u64;
    while Instant::now() < deadline {
        let mut request = Request::get("/").header(HOST, "localhost");
        if let Some(cookie) = &cookie {
            request = request.header(COOKIE, cookie.clone());
        }
        let request = request.body(Empty::<Bytes>::new()).map_err(io::Error::other)?;
        let response = sender.send_request(request).await.map_err(io::Error::other)?;
        let new_cookie = response.headers().get(SET_COOKIE).and_then(cookie_pair);
        // The cookie the connection sent, repeated: not a new session.
        let renewed = new_cookie.is_some() && new_cookie != cookie;
        let first = cookie.is_none();
        if new_cookie.is_some() {
            cookie = new_cookie.clone();
        }
        let status = response.status();
        let body = response.into_body().collect().await.map_err(io::Error::other)?.to_bytes();
        report.requests += 1;
        let ok = status == StatusCode::OK
            && match check {
                Check::Ok => true,
                Check::Counter => {
                    counter += 1;
                    body.as_ref() == counter.to_string().as_bytes()
                }
                Check::SharedCounter => {
                    let seen = std::str::from_utf8(&body).ok().and_then(|text| text.parse::<u64>().ok());
                    seen.is_some_and(|seen| seen >= 2) && !renewed
                }
                Check::ReadOnly => body.as_ref() == b"1" && (first == new_cookie.is_some()),
            };
        if !ok {
            report.errors += 1;
        }
    }
    drop(sender);
    Ok(report)
}

/// `name=value` from a `Set-Cookie` value: what a browser sends back.
fn cookie_pair(set_cookie: &HeaderValue) -> Option<HeaderValue> {
    let text = set_cookie.to_str().ok()?;
    HeaderValue::from_str(text.split(';').next()?.trim()).ok()
}

#[cfg(test)]
mod tests {
    use axum::routing::get;

    use super::*;

    #[tokio::test]
    async fn a_counter_route_is_checked_and_a_broken_one_is_caught() {
        let router = Router::new().route("/", get(|| async { "1" }));
        let addr = serve(router).await.expect("serve");
        let report = drive(addr, 2, Duration::from_millis(100), Check::Ok).await.expect("drive");
        assert!(report.requests > 2 && report.errors == 0, "{report:?}");
        // The same route never counts up: every response after the first is wrong.
        let report = drive(addr, 2, Duration::from_millis(100), Check::Counter).await.expect("drive");
        assert_eq!(report.errors, report.requests - 2, "{report:?}");
    }

    #[tokio::test]
    async fn one_session_is_shared_and_a_lost_session_is_caught() {
        async fn counter(session: sessionkit::Session) -> Result<String, sessionkit::SessionError> {
            let visits = session.get::<u64>("counter")?.unwrap_or(0) + 1;
            session.set("counter", visits)?;
            Ok(visits.to_string())
        }
        let store = std::sync::Arc::new(sessionkit_stores::MemoryStore::new());
        let layer = sessionkit::SessionLayer::new(sessionkit::SessionConfig::shared_builder(store.clone()));
        let addr = serve(Router::new().route("/", get(counter)).layer(layer)).await.expect("serve");
        let report = drive_one_session(addr, 4, Duration::from_millis(100)).await.expect("drive");
        assert!(report.requests > 4 && report.errors == 0, "{report:?}");
        assert_eq!(store.len(), 1, "every connection must have used the one session");

        // A server that hands out a new session on every request.
        let forgetful = Router::new().route("/", get(|| async { ([(SET_COOKIE, "id=fresh")], "1") }));
        let addr = serve(forgetful).await.expect("serve");
        let report = drive_one_session(addr, 2, Duration::from_millis(100)).await.expect("drive");
        assert!(report.requests > 0 && report.errors == report.requests, "{report:?}");
    }

    #[tokio::test]
    async fn a_read_only_route_is_checked_and_a_lost_session_is_caught() {
        async fn reader(session: sessionkit::Session) -> Result<String, sessionkit::SessionError> {
            if let Some(visits) = session.get::<u64>("counter")? {
                return Ok(visits.to_string());
            }
            session.set("counter", 1)?;
            Ok("1".to_owned())
        }
        let store = std::sync::Arc::new(sessionkit_stores::MemoryStore::new());
        let layer = sessionkit::SessionLayer::new(sessionkit::SessionConfig::shared_builder(store.clone()));
        let addr = serve(Router::new().route("/", get(reader)).layer(layer)).await.expect("serve");
        let report = drive(addr, 3, Duration::from_millis(100), Check::ReadOnly).await.expect("drive");
        assert!(report.requests > 3 && report.errors == 0, "{report:?}");
        assert_eq!(store.len(), 3, "one session per connection, created once");

        // A server that forgets every session: only each first response passes.
        let forgetful = Router::new().route("/", get(|| async { ([(SET_COOKIE, "id=fresh")], "1") }));
        let addr = serve(forgetful).await.expect("serve");
        let report = drive(addr, 2, Duration::from_millis(100), Check::ReadOnly).await.expect("drive");
        assert_eq!(report.errors, report.requests - 2, "{report:?}");
    }

    #[test]
    fn the_cookie_pair_drops_attributes() {
        let set = HeaderValue::from_static("id=abc; Path=/; HttpOnly");
        assert_eq!(cookie_pair(&set), Some(HeaderValue::from_static("id=abc")));
    }
}
