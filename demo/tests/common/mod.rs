//! What the HTTP tests share: the demo started in-process on
//! `127.0.0.1:0`, and clients for it.

#![allow(dead_code)] // Each test file uses its own part of this module.

use reqwest::header::{COOKIE, SET_COOKIE};
use reqwest::{Client, Response, redirect};
use sessionkit_demo::{Args, Server};

/// Starts the demo with `flags` (after `--addr 127.0.0.1:0`).
pub async fn start(flags: &[&str]) -> Server {
    let args = Args::try_parse_checked(["sessionkit-demo", "--addr", "127.0.0.1:0"].iter().chain(flags))
        .unwrap_or_else(|err| panic!("flags {flags:?}: {err}"));
    Server::start(&args).await.unwrap_or_else(|err| panic!("start with {flags:?}: {err}"))
}

/// The demo on the memory store with cookies a plain-http client sends
/// back: reqwest's jar, like the HTTP spec, keeps `Secure` cookies for
/// https only.
pub async fn start_insecure() -> Server {
    start(&["--store", "memory", "--insecure-cookies"]).await
}

/// A client with a cookie jar, like a browser (redirects followed).
pub fn browser() -> Client {
    Client::builder().cookie_store(true).build().expect("client")
}

/// A client without a jar that does not follow redirects, to look at
/// exactly what the server answers.
pub fn raw() -> Client {
    Client::builder().redirect(redirect::Policy::none()).build().expect("client")
}

/// The `name=value` of the session cookie a response sets, if any.
pub fn set_cookie(response: &Response) -> Option<String> {
    response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .find(|value| value.starts_with("id="))
        .map(|value| value.split(';').next().unwrap_or_default().to_owned())
}

/// The whole `Set-Cookie` header of the session cookie, attributes included.
pub fn set_cookie_header(response: &Response) -> Option<String> {
    response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .find(|value| value.starts_with("id="))
        .map(str::to_owned)
}

/// A request builder with `cookie` (a `name=value`), when there is one.
pub fn with_cookie(request: reqwest::RequestBuilder, cookie: Option<&str>) -> reqwest::RequestBuilder {
    match cookie {
        Some(cookie) => request.header(COOKIE, cookie),
        None => request,
    }
}
