//! The JSON API over a real server on `127.0.0.1:0` and a real client:
//! every route, every kind of bad input (a 400 with a message, never a
//! 500), the cookie the defaults set, and sessions surviving a restart on
//! every store that keeps data on disk.

mod common;

use std::time::Duration;

use common::{browser, raw, set_cookie, set_cookie_header, start, start_insecure, with_cookie};
use reqwest::StatusCode;
use reqwest::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE};
use serde_json::{Value, json};
use sessionkit_demo::{Args, Server, StartError};
use sessionkit_integration_tests::postgres_server::PostgresServer;
use sessionkit_integration_tests::redis_server::RedisServer;

/// Sends `body` as JSON and returns the status and the JSON answer.
async fn send(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut request = client.request(method, url);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("request");
    let status = response.status();
    assert_eq!(response.headers()[CONTENT_TYPE], "application/json", "every API answer is JSON ({status})");
    (status, response.json().await.expect("a JSON body"))
}

#[tokio::test]
async fn the_counter_counts_per_session() {
    let server = start_insecure().await;
    let (ada, bob) = (browser(), browser());
    let url = format!("{}/api/counter", server.url());
    for n in 1..=3 {
        assert_eq!(send(&ada, reqwest::Method::GET, url.clone(), None).await, (StatusCode::OK, json!({ "visits": n })));
    }
    assert_eq!(send(&bob, reqwest::Method::GET, url, None).await.1, json!({ "visits": 1 }));
    let (_, me) = send(&ada, reqwest::Method::GET, format!("{}/api/me", server.url()), None).await;
    assert_eq!(me, json!({ "user": null, "visits": 3, "cart": [], "saved": [], "prefs": {} }));
    server.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn a_fresh_session_is_empty_and_not_stored() {
    let server = start_insecure().await;
    let response = raw().get(format!("{}/api/me", server.url())).send().await.expect("request");
    assert_eq!(set_cookie(&response), None, "reading an empty session stores nothing and sets no cookie");
    assert_eq!(
        response.json::<Value>().await.expect("json"),
        json!({ "user": null, "visits": 0, "cart": [], "saved": [], "prefs": {} })
    );
    server.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn login_gives_a_new_id_and_retires_the_old_one() {
    let server = start_insecure().await;
    let client = raw();
    let base = server.url();
    let first = client.get(format!("{base}/api/counter")).send().await.expect("counter");
    let before = set_cookie(&first).expect("the first write sets the cookie");

    let login = with_cookie(client.post(format!("{base}/api/login")), Some(&before))
        .json(&json!({ "user": "  ada  " }))
        .send()
        .await
        .expect("login");
    assert_eq!(login.status(), StatusCode::OK);
    let after = set_cookie(&login).expect("login sets a new cookie");
    assert_ne!(after, before, "login must regenerate the session id");
    assert_eq!(login.json::<Value>().await.expect("json")["user"], "ada", "the name is trimmed");

    let me = |cookie: String| {
        let request = with_cookie(client.get(format!("{base}/api/me")), Some(&cookie));
        async move { request.send().await.expect("me").json::<Value>().await.expect("json") }
    };
    assert_eq!(
        me(after).await,
        json!({ "user": "ada", "visits": 1, "cart": [], "saved": [], "prefs": {} }),
        "data came along"
    );
    assert_eq!(me(before).await["user"], Value::Null, "the old id no longer opens the session");
    server.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn the_cart_adds_and_removes_items() {
    let server = start_insecure().await;
    let client = browser();
    let base = server.url();
    let add =
        |item: &str| send(&client, reqwest::Method::POST, format!("{base}/api/cart"), Some(json!({ "item": item })));
    add("tea").await;
    add("a cake/with slash").await;
    let (status, me) = add("tea").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["cart"], json!(["tea", "a cake/with slash", "tea"]));

    let remove = |encoded: &str| send(&client, reqwest::Method::DELETE, format!("{base}/api/cart/{encoded}"), None);
    let (status, me) = remove("tea").await;
    assert_eq!((status, &me["cart"]), (StatusCode::OK, &json!(["a cake/with slash", "tea"])), "one removed");
    let (status, me) = remove("a%20cake%2Fwith%20slash").await;
    assert_eq!((status, &me["cart"]), (StatusCode::OK, &json!(["tea"])), "percent-decoded");
    let (status, error) = remove("scones").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(error["error"], "\"scones\" is not in the cart");
    let (status, error) = remove("%FF").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "not UTF-8: {error}");
    assert!(error["error"].as_str().is_some_and(|message| !message.is_empty()));
    server.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn preferences_each_have_their_own_key() {
    let server = start_insecure().await;
    let client = browser();
    let base = server.url();
    let put = |name: &str, value: Value| {
        send(&client, reqwest::Method::PUT, format!("{base}/api/prefs/{name}"), Some(json!({ "value": value })))
    };
    put("theme", json!("dark")).await;
    put("font-size", json!(14)).await;
    put("layout", json!({ "columns": [1, 2], "dense": true })).await;
    let (status, me) = put("nothing", Value::Null).await;
    assert_eq!(status, StatusCode::OK);
    let prefs =
        json!({ "theme": "dark", "font-size": 14, "layout": { "columns": [1, 2], "dense": true }, "nothing": null });
    assert_eq!(me["prefs"], prefs);
    put("theme", json!("light")).await;

    let (status, me) = send(&client, reqwest::Method::DELETE, format!("{base}/api/prefs/nothing"), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        me["prefs"],
        json!({ "theme": "light", "font-size": 14, "layout": { "columns": [1, 2], "dense": true } })
    );
    let (status, _) = send(&client, reqwest::Method::DELETE, format!("{base}/api/prefs/nothing"), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Stored under `pref.<name>`, as the session page shows.
    let page = client.get(format!("{base}/session")).send().await.expect("page").text().await.expect("text");
    assert!(page.contains("&quot;pref.theme&quot;: &quot;light&quot;"), "{page}");
    assert!(page.contains("&quot;pref.font-size&quot;: 14"), "{page}");

    for (name, value) in [("a.b", json!(1)), ("x%20y", json!(1)), ("theme", json!("x".repeat(5000)))] {
        let (status, error) = put(name, value).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{name}: {error}");
        assert!(error["error"].as_str().is_some_and(|message| !message.is_empty()), "{error}");
    }
    server.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn logout_destroys_the_session() {
    let server = start_insecure().await;
    let client = raw();
    let base = server.url();
    let login = client.post(format!("{base}/api/login")).json(&json!({ "user": "ada" })).send().await.expect("login");
    let cookie = set_cookie(&login).expect("cookie");
    with_cookie(client.post(format!("{base}/api/cart")), Some(&cookie))
        .json(&json!({ "item": "tea" }))
        .send()
        .await
        .expect("cart");

    let logout = with_cookie(client.post(format!("{base}/api/logout")), Some(&cookie)).send().await.expect("logout");
    assert_eq!(logout.status(), StatusCode::OK);
    let removal = set_cookie_header(&logout).expect("a removal cookie");
    assert!(removal.starts_with("id=;") && removal.contains("Max-Age=0"), "{removal}");
    assert_eq!(
        logout.json::<Value>().await.expect("json"),
        json!({ "user": null, "visits": 0, "cart": [], "saved": [], "prefs": {} })
    );

    let me = with_cookie(client.get(format!("{base}/api/me")), Some(&cookie)).send().await.expect("me");
    assert_eq!(
        me.json::<Value>().await.expect("json"),
        json!({ "user": null, "visits": 0, "cart": [], "saved": [], "prefs": {} })
    );
    server.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn bad_input_is_a_400_with_a_message() {
    let server = start_insecure().await;
    let client = browser();
    let base = server.url();
    let long = "x".repeat(101);
    let cases: Vec<(&str, &str, Option<&str>, String)> = vec![
        ("POST", "/api/login", None, r#"{"user":"ada"}"#.into()),
        ("POST", "/api/login", Some("text/plain"), r#"{"user":"ada"}"#.into()),
        ("POST", "/api/login", Some("application/json"), String::new()),
        ("POST", "/api/login", Some("application/json"), r#"{"user":"#.into()),
        ("POST", "/api/login", Some("application/json"), "not json".into()),
        ("POST", "/api/login", Some("application/json"), "{}".into()),
        ("POST", "/api/login", Some("application/json"), r#"{"name":"ada"}"#.into()),
        ("POST", "/api/login", Some("application/json"), r#"{"user":42}"#.into()),
        ("POST", "/api/login", Some("application/json"), r#"{"user":null}"#.into()),
        ("POST", "/api/login", Some("application/json"), r#""ada""#.into()),
        ("POST", "/api/login", Some("application/json"), r#"{"user":"   "}"#.into()),
        ("POST", "/api/login", Some("application/json"), format!(r#"{{"user":"{}"}}"#, "a".repeat(65))),
        ("POST", "/api/login", Some("application/json"), r#"{"user":"a\u0000b"}"#.into()),
        ("POST", "/api/cart", Some("application/json"), "{}".into()),
        ("POST", "/api/cart", Some("application/json"), r#"{"item":""}"#.into()),
        ("POST", "/api/cart", Some("application/json"), r#"{"item":["tea"]}"#.into()),
        ("POST", "/api/cart", Some("application/json"), format!(r#"{{"item":"{long}"}}"#)),
        ("PUT", "/api/prefs/theme", Some("application/json"), "{}".into()),
        ("PUT", "/api/prefs/theme", Some("application/json"), r#""dark""#.into()),
        ("PUT", "/api/prefs/theme", Some("application/json"), r#"{"value":"#.into()),
        ("PUT", "/api/prefs/theme", None, r#"{"value":1}"#.into()),
    ];
    for (method, path, content_type, body) in cases {
        let mut request = client.request(method.parse().expect("method"), format!("{base}{path}")).body(body.clone());
        if let Some(content_type) = content_type {
            request = request.header(CONTENT_TYPE, content_type);
        }
        let response = request.send().await.expect("request");
        let status = response.status();
        let answer: Value = response.json().await.expect("a JSON error");
        assert_eq!(status, StatusCode::BAD_REQUEST, "{method} {path} {content_type:?} {body:?}: {answer}");
        let message = answer["error"].as_str().unwrap_or_default();
        assert!(message.len() > 10, "{method} {path} {body:?}: a useful message, got {answer}");
    }

    // A missing field is named.
    let (_, answer) = send(&client, reqwest::Method::POST, format!("{base}/api/login"), Some(json!({}))).await;
    assert!(answer["error"].as_str().is_some_and(|m| m.contains("missing field `user`")), "{answer}");

    // A body far past anything the demo needs is refused before parsing.
    let huge = json!({ "item": "x".repeat(100_000) });
    let response = client.post(format!("{base}/api/cart")).json(&huge).send().await.expect("request");
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert!(response.json::<Value>().await.expect("json")["error"].is_string());

    // None of it changed the session.
    let (_, me) = send(&client, reqwest::Method::GET, format!("{base}/api/me"), None).await;
    assert_eq!(me, json!({ "user": null, "visits": 0, "cart": [], "saved": [], "prefs": {} }));
    server.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn the_cart_and_preferences_are_bounded() {
    let server = start_insecure().await;
    let client = browser();
    let base = server.url();
    for n in 0..50 {
        let (status, _) = send(
            &client,
            reqwest::Method::POST,
            format!("{base}/api/cart"),
            Some(json!({ "item": format!("item {n}") })),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
    }
    let (status, answer) =
        send(&client, reqwest::Method::POST, format!("{base}/api/cart"), Some(json!({ "item": "one more" }))).await;
    assert_eq!((status, answer["error"].as_str()), (StatusCode::BAD_REQUEST, Some("the cart is full (50 items)")));
    for n in 0..20 {
        let url = format!("{base}/api/prefs/p{n}");
        assert_eq!(send(&client, reqwest::Method::PUT, url, Some(json!({ "value": n }))).await.0, StatusCode::OK);
    }
    let url = format!("{base}/api/prefs/p20");
    assert_eq!(send(&client, reqwest::Method::PUT, url, Some(json!({ "value": 1 }))).await.0, StatusCode::BAD_REQUEST);
    let url = format!("{base}/api/prefs/p0");
    assert_eq!(
        send(&client, reqwest::Method::PUT, url, Some(json!({ "value": 1 }))).await.0,
        StatusCode::OK,
        "replacing is fine"
    );
    server.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_json() {
    let server = start_insecure().await;
    let client = raw();
    let base = server.url();
    let (status, answer) = send(&client, reqwest::Method::GET, format!("{base}/api/nothing"), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(answer["error"].is_string());
    let (status, answer) = send(&client, reqwest::Method::DELETE, format!("{base}/api/me"), None).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert!(answer["error"].is_string());
    server.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn the_default_cookie_is_secure_http_only_and_lax() {
    let server = start(&["--store", "memory"]).await;
    let response = raw().get(format!("{}/api/counter", server.url())).send().await.expect("counter");
    let cookie = set_cookie_header(&response).expect("cookie");
    let attributes: Vec<&str> = cookie.split("; ").skip(1).collect();
    for expected in ["HttpOnly", "Secure", "SameSite=Lax", "Path=/", "Max-Age=86400"] {
        assert!(attributes.contains(&expected), "{expected} in {cookie}");
    }
    assert_eq!(response.headers()[CACHE_CONTROL], "no-store");
    assert!(response.headers()[CONTENT_SECURITY_POLICY].to_str().expect("ascii").contains("default-src 'none'"));
    server.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn ttl_and_rolling_reach_the_cookie() {
    let server = start(&["--store", "memory", "--insecure-cookies", "--ttl", "60", "--rolling"]).await;
    let client = raw();
    let first = client.get(format!("{}/api/counter", server.url())).send().await.expect("counter");
    let header = set_cookie_header(&first).expect("cookie");
    assert!(header.contains("Max-Age=60") && !header.contains("Secure"), "{header}");
    let cookie = set_cookie(&first).expect("cookie");
    // Rolling: even a read refreshes the cookie's lifetime.
    let again = with_cookie(client.get(format!("{}/api/me", server.url())), Some(&cookie)).send().await.expect("me");
    assert!(set_cookie_header(&again).is_some_and(|header| header.contains("Max-Age=60")));
    server.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn sessions_survive_a_restart_on_every_store_with_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (store, data) in [("redb", "s.redb"), ("sqlite", "nested/dirs/s.sqlite3"), ("file", "sessions")] {
        let data = dir.path().join(store).join(data).display().to_string();
        let flags = ["--store", store, "--data", &data, "--insecure-cookies"];
        let server = start(&flags).await;
        assert_eq!(server.store_label(), format!("{store} at {data}"));
        let client = raw();
        let login = client.post(format!("{}/api/login", server.url())).json(&json!({ "user": "ada" })).send().await;
        let cookie = set_cookie(&login.expect("login")).expect("cookie");
        let add = with_cookie(client.post(format!("{}/api/cart", server.url())), Some(&cookie));
        assert!(add.json(&json!({ "item": "tea" })).send().await.expect("cart").status().is_success());
        server.shutdown().await.expect("shutdown");

        let server = start(&flags).await;
        let me = with_cookie(client.get(format!("{}/api/me", server.url())), Some(&cookie)).send().await.expect("me");
        let me: Value = me.json().await.expect("json");
        assert_eq!(me, json!({ "user": "ada", "visits": 0, "cart": ["tea"], "saved": [], "prefs": {} }), "{store}");
        server.shutdown().await.expect("shutdown");
    }
}

#[tokio::test]
async fn a_redb_file_in_use_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("s.redb").display().to_string();
    let running = start(&["--data", &data]).await;
    let args = Args::try_parse_checked(["sessionkit-demo", "--addr", "127.0.0.1:0", "--data", &data]).expect("args");
    let err = Server::start(&args).await.expect_err("the file is open");
    assert!(matches!(err, StartError::OpenStore { kind: "redb", .. }), "{err:?}");
    assert!(err.to_string().contains(&data), "{err}");
    assert!(err.hint().is_some());
    running.shutdown().await.expect("shutdown");
    tokio::time::timeout(Duration::from_secs(10), async {
        Server::start(&args).await.expect("free once the first demo stopped").shutdown().await.expect("shutdown");
    })
    .await
    .expect("in time");
}

#[tokio::test]
async fn the_redis_store_serves_the_demo() {
    let Some(redis) = RedisServer::start_or_skip() else { return };
    let url = redis.url();
    let server = start(&["--store", "redis", "--redis-url", &url, "--insecure-cookies"]).await;
    assert_eq!(server.store_label(), format!("redis at {url}"));
    let client = browser();
    let base = server.url();
    send(&client, reqwest::Method::GET, format!("{base}/api/counter"), None).await;
    send(&client, reqwest::Method::POST, format!("{base}/api/login"), Some(json!({ "user": "ada" }))).await;
    send(&client, reqwest::Method::POST, format!("{base}/api/cart"), Some(json!({ "item": "tea" }))).await;
    let (_, me) = send(&client, reqwest::Method::GET, format!("{base}/api/me"), None).await;
    assert_eq!(me, json!({ "user": "ada", "visits": 1, "cart": ["tea"], "saved": [], "prefs": {} }));
    server.shutdown().await.expect("shutdown");
}

/// Every feature of the demo on a server's store, given by its URL: two
/// logins of one user listed, a revocation that signs the other client
/// out, and an exclusive move.
async fn serves_every_feature(url: &str, label: &str) {
    let server = start(&["--store", url, "--insecure-cookies"]).await;
    assert_eq!(server.store_label(), label);
    let (phone, laptop) = (browser(), browser());
    let base = server.url();
    for client in [&phone, &laptop] {
        let (status, _) =
            send(client, reqwest::Method::POST, format!("{base}/api/login"), Some(json!({ "user": "ada" }))).await;
        assert_eq!(status, StatusCode::OK);
    }
    let (_, listed) = send(&laptop, reqwest::Method::GET, format!("{base}/api/sessions"), None).await;
    let sessions = listed["sessions"].as_array().expect("a listing");
    assert_eq!(sessions.len(), 2, "{listed}");
    let phone_handle = sessions.iter().find(|s| s["current"] == false).expect("the other")["handle"].clone();
    let url = format!("{base}/api/sessions/{}", phone_handle.as_str().expect("text"));
    let (status, after) = send(&laptop, reqwest::Method::DELETE, url, None).await;
    assert_eq!((status, after["sessions"].as_array().map(Vec::len)), (StatusCode::OK, Some(1)), "{after}");
    let (_, me) = send(&phone, reqwest::Method::GET, format!("{base}/api/me"), None).await;
    assert_eq!(me, json!({ "user": null, "visits": 0, "cart": [], "saved": [], "prefs": {} }), "signed out");

    send(&laptop, reqwest::Method::POST, format!("{base}/api/cart"), Some(json!({ "item": "tea" }))).await;
    let (status, me) =
        send(&laptop, reqwest::Method::POST, format!("{base}/api/save-for-later"), Some(json!({ "item": "tea" })))
            .await;
    assert_eq!((status, &me["cart"], &me["saved"]), (StatusCode::OK, &json!([]), &json!(["tea"])), "{me}");
    server.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn a_redis_url_serves_every_feature() {
    let Some(redis) = RedisServer::start_or_skip() else { return };
    let url = redis.url();
    serves_every_feature(&url, &format!("redis at {url}")).await;
}

#[tokio::test]
async fn a_postgres_url_serves_every_feature() {
    let Some(postgres) = PostgresServer::start_or_skip() else { return };
    let url = postgres.url();
    serves_every_feature(&url, &format!("postgres at {url}")).await;
}
