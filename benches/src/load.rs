//! A loopback HTTP load generator: keep-alive HTTP/1.1 connections that
//! each carry one client's session, driving a real server on `127.0.0.1`.
//!
//! Each connection behaves like a browser: it sends back the cookie the
//! server set, and (for the session routes) checks that every response is
//! `200` with the counter one higher than the last, so a benchmark that
//! lost writes or sessions shows errors instead of a good number.

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
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..connections {
        tasks.spawn(client(addr, deadline, check));
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

/// One browser on one connection.
async fn client(addr: SocketAddr, deadline: Instant, check: Check) -> io::Result<LoadReport> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(io::Error::other)?;
    let connection = tokio::spawn(connection);
    let mut report = LoadReport::default();
    let mut cookie: Option<HeaderValue> = None;
    let mut counter = 0u64;
    while Instant::now() < deadline {
        let mut request = Request::get("/").header(HOST, "localhost");
        if let Some(cookie) = &cookie {
            request = request.header(COOKIE, cookie.clone());
        }
        let request = request.body(Empty::<Bytes>::new()).map_err(io::Error::other)?;
        let response = sender.send_request(request).await.map_err(io::Error::other)?;
        if let Some(set) = response.headers().get(SET_COOKIE) {
            cookie = cookie_pair(set);
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
            };
        if !ok {
            report.errors += 1;
        }
    }
    drop(sender);
    connection.abort();
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

    #[test]
    fn the_cookie_pair_drops_attributes() {
        let set = HeaderValue::from_static("id=abc; Path=/; HttpOnly");
        assert_eq!(cookie_pair(&set), Some(HeaderValue::from_static("id=abc")));
    }
}
