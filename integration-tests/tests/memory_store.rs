//! The conformance kit against `MemoryStore`, and a full `MemoryStore`
//! behind the session layer, as its visitors see it.

use std::sync::Arc;

use axum::extract::Path;
use axum::routing;
use http::header::SET_COOKIE;
use reqwest::{Client, Response, StatusCode};
use sessionkit::{Session, SessionConfig, SessionError, SessionLayer};
use sessionkit_integration_tests::app::{self, Gates};
use sessionkit_integration_tests::server::TestServer;
use sessionkit_stores::MemoryStore;

sessionkit::store_conformance_tests!(async { sessionkit_stores::MemoryStore::new() });

const CAPACITY: usize = 3;

fn browser() -> Client {
    Client::builder().cookie_store(true).build().expect("http client")
}

async fn post(client: &Client, server: &TestServer, path: &str) -> Response {
    client.post(server.url(path)).send().await.expect("request")
}

/// The suite's app on a store holding at most `capacity` sessions, plus
/// `POST /start-over/{value}`: ends the session and starts a new one with
/// `n` set to `value`, in one request.
async fn serve(capacity: usize) -> (Arc<MemoryStore>, TestServer) {
    let store = Arc::new(MemoryStore::builder().capacity(capacity).build());
    let config = SessionConfig::shared_builder(store.clone()).secure(false);
    let layer = SessionLayer::try_new(config).expect("valid configuration");
    let start_over = |session: Session, Path(value): Path<String>| async move {
        session.destroy();
        session.set("n", value)?;
        Ok::<_, SessionError>("started over")
    };
    let start_over = axum::Router::new().route("/start-over/{value}", routing::post(start_over)).layer(layer.clone());
    let app = app::router(layer, Arc::new(Gates::default())).merge(start_over);
    (store, TestServer::start(app).await)
}

async fn read(client: &Client, server: &TestServer, key: &str) -> String {
    let response = client.get(server.url(&format!("/get/{key}"))).send().await.expect("request");
    assert_eq!(response.status(), StatusCode::OK);
    response.text().await.expect("body")
}

/// A store with room for three sessions: three visitors get one, the
/// fourth is answered 503 with no cookie and nothing stored, the three keep
/// working (writes, logins that rename their session), and once one logs
/// out the fourth gets in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_memory_store_turns_new_visitors_away_until_one_leaves() {
    let (store, server) = serve(CAPACITY).await;

    let visitors: Vec<Client> = (0..CAPACITY).map(|_| browser()).collect();
    for (i, visitor) in visitors.iter().enumerate() {
        let response = post(visitor, &server, &format!("/set/n/{i}")).await;
        assert_eq!(response.status(), StatusCode::OK, "visitor {i} gets a session");
        assert!(response.headers().contains_key(SET_COOKIE), "visitor {i} gets a cookie");
    }
    assert_eq!(store.len(), CAPACITY);

    let late = browser();
    let response = post(&late, &server, "/set/n/late").await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE, "no room for a fourth session");
    assert!(!response.headers().contains_key(SET_COOKIE), "and no cookie for a session that does not exist");
    assert_eq!(response.text().await.expect("body"), "", "an empty body");
    assert_eq!(read(&late, &server, "n").await, "null", "nothing was stored for it");
    assert_eq!(store.len(), CAPACITY);

    for (i, visitor) in visitors.iter().enumerate() {
        assert_eq!(post(visitor, &server, &format!("/set/n/again{i}")).await.status(), StatusCode::OK);
        let login = post(visitor, &server, &format!("/login/user{i}")).await;
        assert_eq!(login.status(), StatusCode::OK, "a login renames the session: never refused");
        assert!(login.headers().contains_key(SET_COOKIE), "the new id");
        assert_eq!(read(visitor, &server, "n").await, format!("\"again{i}\""), "visitor {i} keeps their data");
    }

    assert_eq!(post(&visitors[0], &server, "/destroy").await.status(), StatusCode::OK);
    let response = post(&late, &server, "/set/n/late").await;
    assert_eq!(response.status(), StatusCode::OK, "a logout made room");
    assert!(response.headers().contains_key(SET_COOKIE));
    assert_eq!(read(&late, &server, "n").await, "\"late\"");
    assert_eq!(read(&visitors[1], &server, "n").await, "\"again1\"", "the others are untouched");
}

/// A visitor of a full store who ends their session and starts a new one in
/// the same request is not turned away: the session they leave frees the
/// place the new one takes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starting_over_in_a_full_memory_store_reuses_the_place_it_frees() {
    let (store, server) = serve(2).await;
    let visitors = [browser(), browser()];
    for visitor in &visitors {
        assert_eq!(post(visitor, &server, "/set/n/first").await.status(), StatusCode::OK);
    }
    assert_eq!(post(&browser(), &server, "/set/n/late").await.status(), StatusCode::SERVICE_UNAVAILABLE, "full");

    let response = post(&visitors[0], &server, "/start-over/second").await;
    assert_eq!(response.status(), StatusCode::OK, "the old session made room for the new one");
    assert!(response.headers().contains_key(SET_COOKIE), "with a new id");
    assert_eq!(read(&visitors[0], &server, "n").await, "\"second\"");
    assert_eq!(store.len(), 2, "the old session is gone");
    assert_eq!(read(&visitors[1], &server, "n").await, "\"first\"");
}
