//! What wraps every request: a log line, the cross-site check and the
//! security headers.

use std::time::Instant;

use axum::extract::Request;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse as _, Response};

/// One log line per request (method, path, status, time), so a newcomer
/// sees the POST-then-redirect of each form. Never the cookie: it is a
/// credential.
pub(crate) async fn log_request(request: Request, next: Next) -> Response {
    let (method, path) = (request.method().clone(), request.uri().path().to_owned());
    let started = Instant::now();
    let response = next.run(request).await;
    tracing::info!(
        "{method} {path} -> {} in {:.1} ms",
        response.status().as_u16(),
        started.elapsed().as_secs_f64() * 1000.0
    );
    response
}

/// Refuses a request that would change state (anything but GET, HEAD or
/// OPTIONS) when the browser says it comes from another site or origin
/// (`Sec-Fetch-Site`), before the session is touched. `SameSite=Lax`
/// already keeps the cookie off another site's POST; this also stops a
/// forged login form and requests from other `localhost` ports (the same
/// *site*). Clients that send no such header (curl, scripts) are let through.
pub(crate) async fn refuse_cross_site(request: Request, next: Next) -> Response {
    let changes_state = !matches!(*request.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    let foreign = request
        .headers()
        .get("sec-fetch-site")
        .is_some_and(|site| site.as_bytes() == b"cross-site" || site.as_bytes() == b"same-site");
    if changes_state && foreign {
        tracing::warn!("refused a {} {} from another site", request.method(), request.uri().path());
        return (StatusCode::FORBIDDEN, "cross-site requests may not change a session\n").into_response();
    }
    next.run(request).await
}

/// Responses are about one person's session: no cache may keep them, and
/// the pages load nothing but their own stylesheet and icon.
pub(crate) async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    // The static files chose a `max-age`; everything else gets `no-store`,
    // which subsumes the layer's `no-cache="set-cookie"`.
    let cacheable = headers
        .get(header::CACHE_CONTROL)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.contains("max-age"));
    if !cacheable {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; \
             frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    response
}
