//! `#[derive(SessionData)]` over HTTP: a real axum server on `127.0.0.1:0`
//! and a real client with a cookie jar, so every typed read and write goes
//! through the cookie, the layer and the store between requests.

use axum::Router;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::routing::{get, post, put};
use serde::{Deserialize, Serialize};
use sessionkit::extract::SessionDataRejection;
use sessionkit::{Session, SessionConfig, SessionData, SessionError, SessionLayer};
use sessionkit_integration_tests::server::TestServer;
use sessionkit_stores::MemoryStore;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Item {
    sku: String,
    quantity: u32,
}

#[derive(SessionData, Default, Debug)]
#[session(prefix = "cart.")]
struct Cart {
    items: Vec<Item>,
    #[session(default)]
    visits: u32,
    coupon: Option<String>,
}

#[derive(SessionData, Debug)]
#[session(prefix = "prefs.", rename_all = "camelCase")]
struct Prefs {
    #[session(default = "light")]
    colour_theme: String,
    // Same field name as `Cart::visits`, different key.
    #[session(default)]
    visits: u32,
}

fn light() -> String {
    "light".to_owned()
}

/// Adds an item: `Option<Cart>` is `None` until the first one.
async fn add(session: Session, cart: Option<Cart>, Path(sku): Path<String>) -> Result<String, SessionError> {
    let mut cart = cart.unwrap_or_default();
    match cart.items.iter_mut().find(|item| item.sku == sku) {
        Some(item) => item.quantity += 1,
        None => cart.items.push(Item { sku, quantity: 1 }),
    }
    cart.save(&session)?;
    Ok(cart.items.len().to_string())
}

/// Shows the cart through the extractor, counting views one key at a time.
async fn show(session: Session, cart: Cart) -> Result<String, SessionError> {
    Cart::set_visits(&session, cart.visits + 1)?;
    let items: Vec<String> = cart.items.iter().map(|item| format!("{}x{}", item.quantity, item.sku)).collect();
    Ok(format!("{} visits={} coupon={}", items.join(","), cart.visits + 1, cart.coupon.as_deref().unwrap_or("-")))
}

/// The same read without the extractor: `?` on a `SessionError` answers as
/// the extractor would.
async fn total(session: Session) -> Result<String, SessionError> {
    let cart = Cart::load(&session)?;
    Ok(cart.items.iter().map(|item| item.quantity).sum::<u32>().to_string())
}

async fn coupon(session: Session, Path(code): Path<String>) -> Result<(), SessionError> {
    Cart::set_coupon(&session, Some(code))
}

async fn empty(session: Session) {
    Cart::clear(&session);
}

/// Answers with the rejection's status itself, to show it can be handled.
async fn peek(cart: Result<Cart, SessionDataRejection>) -> String {
    match cart {
        Ok(cart) => format!("{} items", cart.items.len()),
        Err(rejection) => format!("no cart ({})", rejection.status().as_u16()),
    }
}

async fn set_theme(session: Session, Path(theme): Path<String>) -> Result<(), SessionError> {
    let mut prefs = Prefs::load(&session)?;
    prefs.colour_theme = theme;
    prefs.visits += 1;
    prefs.save(&session)
}

async fn show_prefs(prefs: Prefs) -> String {
    format!("{} visits={}", prefs.colour_theme, prefs.visits)
}

/// Puts data of the wrong shape under a cart key, as an older release of
/// the application might have.
async fn corrupt(session: Session) -> Result<(), SessionError> {
    session.set("cart.items", "not a list")
}

async fn raw(session: Session) -> String {
    let mut keys: Vec<String> = session.data().into_iter().map(|(key, value)| format!("{key}={value}")).collect();
    keys.sort();
    keys.join(" ")
}

fn app() -> Router {
    Router::new()
        .route("/cart", get(show).delete(empty))
        .route("/cart/peek", get(peek))
        .route("/cart/total", get(total))
        .route("/cart/items/{sku}", post(add))
        .route("/cart/coupon/{code}", put(coupon))
        .route("/prefs", get(show_prefs))
        .route("/prefs/theme/{theme}", put(set_theme))
        .route("/corrupt", post(corrupt))
        .route("/raw", get(raw))
        // Plain http in tests: the jar would not send a `Secure` cookie.
        .layer(SessionLayer::new(SessionConfig::builder(MemoryStore::new()).secure(false)))
}

/// A browser: one cookie jar.
struct Browser {
    client: reqwest::Client,
    base: String,
}

impl Browser {
    fn new(base: &str) -> Self {
        let client = reqwest::Client::builder().cookie_store(true).build().expect("client");
        Self { client, base: base.to_owned() }
    }

    async fn send(&self, method: reqwest::Method, path: &str) -> (StatusCode, String) {
        let response = self.client.request(method, format!("{}{path}", self.base)).send().await.expect("request");
        let status = StatusCode::from_u16(response.status().as_u16()).expect("status");
        (status, response.text().await.expect("body"))
    }

    async fn get(&self, path: &str) -> (StatusCode, String) {
        self.send(reqwest::Method::GET, path).await
    }
    async fn post(&self, path: &str) -> (StatusCode, String) {
        self.send(reqwest::Method::POST, path).await
    }
    async fn put(&self, path: &str) -> (StatusCode, String) {
        self.send(reqwest::Method::PUT, path).await
    }
    async fn delete(&self, path: &str) -> (StatusCode, String) {
        self.send(reqwest::Method::DELETE, path).await
    }
}

#[tokio::test]
async fn two_handlers_share_a_typed_struct_across_requests() {
    let server = TestServer::start(app()).await;
    let base = server.url("");
    let browser = Browser::new(&base);

    assert_eq!(browser.get("/cart").await.0, StatusCode::BAD_REQUEST, "no cart yet: a required key is missing");
    assert_eq!(browser.get("/cart/total").await.0, StatusCode::BAD_REQUEST, "the same through `?`");

    assert_eq!(browser.post("/cart/items/tea").await, (StatusCode::OK, "1".into()));
    assert_eq!(browser.post("/cart/items/cake").await, (StatusCode::OK, "2".into()));
    assert_eq!(browser.post("/cart/items/tea").await, (StatusCode::OK, "2".into()));
    assert_eq!(browser.put("/cart/coupon/SPRING").await.0, StatusCode::OK);

    assert_eq!(browser.get("/cart").await, (StatusCode::OK, "2xtea,1xcake visits=1 coupon=SPRING".into()));
    assert_eq!(browser.get("/cart").await, (StatusCode::OK, "2xtea,1xcake visits=2 coupon=SPRING".into()));
    assert_eq!(browser.get("/cart/total").await, (StatusCode::OK, "3".into()));

    // Another browser has its own session.
    let other = Browser::new(&base);
    assert_eq!(other.get("/cart/peek").await, (StatusCode::OK, "no cart (400)".into()));
    assert_eq!(browser.get("/cart/peek").await, (StatusCode::OK, "2 items".into()));
}

#[tokio::test]
async fn structs_with_different_prefixes_coexist_in_one_session() {
    let server = TestServer::start(app()).await;
    let base = server.url("");
    let browser = Browser::new(&base);

    browser.post("/cart/items/tea").await;
    browser.get("/cart").await;
    assert_eq!(browser.put("/prefs/theme/dark").await.0, StatusCode::OK);
    assert_eq!(browser.get("/prefs").await, (StatusCode::OK, "dark visits=1".into()));
    assert_eq!(
        browser.get("/raw").await.1,
        r#"cart.items=[{"quantity":1,"sku":"tea"}] cart.visits=1 prefs.colourTheme="dark" prefs.visits=1"#
    );

    // Clearing the cart leaves the preferences alone, and the reverse.
    assert_eq!(browser.delete("/cart").await.0, StatusCode::OK);
    assert_eq!(browser.get("/raw").await.1, r#"prefs.colourTheme="dark" prefs.visits=1"#);
    assert_eq!(browser.get("/prefs").await, (StatusCode::OK, "dark visits=1".into()));
    assert_eq!(browser.get("/cart").await.0, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_stored_value_of_the_wrong_shape_is_a_server_error() {
    let server = TestServer::start(app()).await;
    let base = server.url("");
    let browser = Browser::new(&base);

    browser.post("/cart/items/tea").await;
    assert_eq!(browser.post("/corrupt").await.0, StatusCode::OK);
    assert_eq!(browser.get("/cart").await, (StatusCode::INTERNAL_SERVER_ERROR, String::new()));
    assert_eq!(browser.get("/cart/total").await.0, StatusCode::INTERNAL_SERVER_ERROR);
    // `Option<Cart>` is `None` only for a missing key, never for bad data.
    assert_eq!(browser.post("/cart/items/cake").await.0, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(browser.get("/cart/peek").await, (StatusCode::OK, "no cart (500)".into()));
}
