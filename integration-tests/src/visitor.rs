//! `Visitor`: one browser's cookie for the suite's app, kept by hand so a
//! test can read it, copy it (a second tab) and see exactly what each
//! response did to it.

use reqwest::{Client, Method, Response, StatusCode};

use crate::http_suite::set_cookie;

/// A client with its own session cookie.
#[derive(Clone)]
pub struct Visitor {
    http: Client,
    base: String,
    /// The `id=...` pair to send, if the visitor holds a cookie.
    pub cookie: Option<String>,
}

/// A response, read whole.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub body: String,
    /// Whether the response set (or removed) the session cookie.
    pub set_cookie: bool,
}

impl Answer {
    /// The body as JSON.
    ///
    /// # Panics
    ///
    /// If the body is not JSON: a failed test.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|err| panic!("not JSON ({err}): {}", self.body))
    }
}

impl Visitor {
    /// A visitor of the server at `base` (`http://127.0.0.1:port`), holding
    /// no cookie yet.
    pub fn new(base: &str) -> Self {
        Self { http: Client::new(), base: base.trim_end_matches('/').to_owned(), cookie: None }
    }

    /// The same visitor, on another server (another app server behind a
    /// load balancer).
    pub fn on(&self, base: &str) -> Self {
        Self { http: self.http.clone(), base: base.trim_end_matches('/').to_owned(), cookie: self.cookie.clone() }
    }

    /// The same visitor with a client of its own: its own connections, as
    /// another tab of a browser may open.
    pub fn new_connection(&self) -> Self {
        Self { http: Client::new(), base: self.base.clone(), cookie: self.cookie.clone() }
    }

    /// Sends `method path` with the visitor's cookie and keeps whatever
    /// cookie the response sets (a removal drops it).
    pub async fn send(&mut self, method: Method, path: &str) -> Answer {
        let response = self.request(method, path).send().await.expect("request");
        self.absorb(response).await
    }

    /// `GET path`.
    pub async fn get(&mut self, path: &str) -> Answer {
        self.send(Method::GET, path).await
    }

    /// `POST path`.
    pub async fn post(&mut self, path: &str) -> Answer {
        self.send(Method::POST, path).await
    }

    /// A request builder with the visitor's cookie, for unusual requests.
    pub fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(cookie) = &self.cookie {
            request = request.header(reqwest::header::COOKIE, cookie);
        }
        request
    }

    /// Reads `response` and keeps the session cookie it sets.
    pub async fn absorb(&mut self, response: Response) -> Answer {
        let cookie = set_cookie(&response, "id");
        if let Some(cookie) = &cookie {
            let removed = cookie.value().is_empty() || cookie.max_age().is_some_and(|age| age.is_zero());
            self.cookie = (!removed).then(|| format!("id={}", cookie.value()));
        }
        let status = response.status();
        let body = response.text().await.expect("response body");
        Answer { status, body, set_cookie: cookie.is_some() }
    }

    /// The user this visitor's session belongs to now, as the app sees it
    /// (empty: none, or a fresh session). Does not keep a fresh session's
    /// cookie, so asking changes nothing.
    pub async fn user(&self) -> String {
        let response = self.request(Method::GET, "/whoami").send().await.expect("request");
        assert_eq!(response.status(), StatusCode::OK);
        response.text().await.expect("body")
    }
}
