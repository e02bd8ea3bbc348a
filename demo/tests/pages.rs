//! The HTML pages over a real server and client, without a browser: forms
//! that POST and redirect, hostile input shown as text, the session page
//! showing only an id prefix, and error pages instead of bare rejections.
//! (The browser test drives the same pages in Chromium.)

mod common;

use common::{browser, raw, set_cookie, set_cookie_header, start_insecure, with_cookie};
use reqwest::StatusCode;
use reqwest::header::{CACHE_CONTROL, CONTENT_TYPE, LOCATION};
use sessionkit_demo::Server;

async fn page(client: &reqwest::Client, server: &Server, path: &str) -> String {
    let response = client.get(format!("{}{path}", server.url())).send().await.expect("request");
    assert_eq!(response.status(), StatusCode::OK, "{path}");
    assert_eq!(response.headers()[CONTENT_TYPE], "text/html; charset=utf-8", "{path}");
    response.text().await.expect("text")
}

async fn post_form(client: &reqwest::Client, server: &Server, path: &str, form: &[(&str, &str)]) -> reqwest::Response {
    client.post(format!("{}{path}", server.url())).form(form).send().await.expect("request")
}

#[tokio::test]
async fn home_counts_visits() {
    let server = start_insecure().await;
    let client = browser();
    assert!(page(&client, &server, "/").await.contains(r#"<div class="big" id="visits">1</div>"#));
    let home = page(&client, &server, "/").await;
    assert!(home.contains(r#"<div class="big" id="visits">2</div>"#), "{home}");
    assert!(home.contains("Hello, stranger!"));
    server.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn forms_post_then_redirect() {
    let server = start_insecure().await;
    let client = raw();
    let login = post_form(&client, &server, "/login", &[("user", "ada")]).await;
    assert_eq!(login.status(), StatusCode::SEE_OTHER);
    assert_eq!(login.headers()[LOCATION], "/");
    let cookie = set_cookie(&login).expect("login sets the cookie");

    let add = with_cookie(client.post(format!("{}/cart/add", server.url())), Some(&cookie))
        .form(&[("item", "tea")])
        .send()
        .await
        .expect("add");
    assert_eq!((add.status(), &add.headers()[LOCATION]), (StatusCode::SEE_OTHER, &"/cart".parse().expect("header")));
    let remove = with_cookie(client.post(format!("{}/cart/remove", server.url())), Some(&cookie))
        .form(&[("item", "tea")])
        .send()
        .await
        .expect("remove");
    assert_eq!(remove.status(), StatusCode::SEE_OTHER);

    let logout =
        with_cookie(client.post(format!("{}/logout", server.url())), Some(&cookie)).send().await.expect("logout");
    assert_eq!((logout.status(), &logout.headers()[LOCATION]), (StatusCode::SEE_OTHER, &"/".parse().expect("header")));
    assert!(set_cookie_header(&logout).is_some_and(|header| header.contains("Max-Age=0")), "the cookie is removed");
    server.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn hostile_names_and_items_are_shown_as_text() {
    let server = start_insecure().await;
    let client = browser();
    let user = "<script>alert('user')</script>";
    let item = r#""><img src=x onerror=alert(1)>"#;
    assert_eq!(post_form(&client, &server, "/login", &[("user", user)]).await.status(), StatusCode::OK);
    assert_eq!(post_form(&client, &server, "/cart/add", &[("item", item)]).await.status(), StatusCode::OK);
    for path in ["/", "/cart", "/session", "/login"] {
        let body = page(&client, &server, path).await;
        assert!(!body.contains("<script>") && !body.contains("<img"), "{path}: {body}");
        assert!(body.contains("&lt;script&gt;alert(&#39;user&#39;)&lt;/script&gt;"), "{path}: {body}");
    }
    let cart = page(&client, &server, "/cart").await;
    assert!(cart.contains(r#"value="&quot;&gt;&lt;img src=x onerror=alert(1)&gt;""#), "{cart}");
    server.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn bad_forms_are_a_400_page_with_the_reason() {
    let server = start_insecure().await;
    let client = browser();
    let empty = post_form(&client, &server, "/login", &[("user", "   ")]).await;
    assert_eq!(empty.status(), StatusCode::BAD_REQUEST);
    let body = empty.text().await.expect("text");
    assert!(body.contains(r#"<p class="error" id="error">the user name must not be empty</p>"#), "{body}");

    let missing = post_form(&client, &server, "/login", &[("name", "ada")]).await;
    assert_eq!(missing.status(), StatusCode::BAD_REQUEST);
    assert!(missing.text().await.expect("text").contains("missing field `user`"));

    let long = "x".repeat(101);
    let too_long = post_form(&client, &server, "/cart/add", &[("item", &long)]).await;
    assert_eq!(too_long.status(), StatusCode::BAD_REQUEST);
    assert!(too_long.text().await.expect("text").contains("the item must be at most 100 characters"));

    let theme = post_form(&client, &server, "/prefs/theme", &[("value", "purple")]).await;
    assert_eq!(theme.status(), StatusCode::BAD_REQUEST);

    let not_a_form = client.post(format!("{}/cart/add", server.url())).body("item=tea").send().await.expect("request");
    assert_eq!(not_a_form.status(), StatusCode::BAD_REQUEST, "no form content type");
    assert!(not_a_form.text().await.expect("text").contains("The form could not be read"));
    server.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn the_session_page_shows_an_id_prefix_never_the_id() {
    let server = start_insecure().await;
    let client = raw();
    let first = client.get(format!("{}/", server.url())).send().await.expect("home");
    let cookie = set_cookie(&first).expect("cookie");
    let id = cookie.strip_prefix("id=").expect("id=");
    let body = with_cookie(client.get(format!("{}/session", server.url())), Some(&cookie))
        .send()
        .await
        .expect("session")
        .text()
        .await
        .expect("text");
    assert!(body.contains(&format!(r#"<code id="session-id">{}</code>"#, &id[..8])), "{body}");
    assert!(!body.contains(id), "the whole id must not appear");
    assert!(body.contains(r#"<span id="session-state">stored</span>"#));
    // A day from the first visit, less the moment since.
    assert!(body.contains(r#"<span id="expires">"#), "{body}");
    assert!(body.contains("(in 23 h 59 min)") || body.contains("(in 24 h)"), "{body}");
    assert!(body.contains("&quot;visits.count&quot;: 1"), "{body}");

    let fresh = page(&browser(), &server, "/session").await;
    assert!(fresh.contains(r#"<span id="session-state">new</span>"#), "{fresh}");
    server.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn the_theme_preference_changes_the_pages() {
    let server = start_insecure().await;
    let client = raw();
    let first = client.get(format!("{}/", server.url())).send().await.expect("home");
    let cookie = set_cookie(&first).expect("cookie");
    let set = |value: &'static str, back: &'static str| {
        let request = with_cookie(client.post(format!("{}/prefs/theme", server.url())), Some(&cookie));
        async move { request.form(&[("value", value), ("back", back)]).send().await.expect("theme") }
    };
    let dark = set("dark", "/cart").await;
    assert_eq!((dark.status(), &dark.headers()[LOCATION]), (StatusCode::SEE_OTHER, &"/cart".parse().expect("header")));
    let cart = with_cookie(client.get(format!("{}/cart", server.url())), Some(&cookie)).send().await.expect("cart");
    assert!(cart.text().await.expect("text").contains(r#"<body class="dark">"#));
    let elsewhere = set("light", "https://elsewhere.example/").await;
    assert_eq!(elsewhere.headers()[LOCATION], "/", "never an open redirect");
    server.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn unknown_pages_are_a_404_page_and_static_files_are_served() {
    let server = start_insecure().await;
    let client = raw();
    let missing = client.get(format!("{}/nothing/here", server.url())).send().await.expect("request");
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    assert!(missing.text().await.expect("text").contains("There is no page here."));
    let css = client.get(format!("{}/style.css", server.url())).send().await.expect("request");
    assert_eq!(css.status(), StatusCode::OK);
    assert_eq!(css.headers()[CONTENT_TYPE], "text/css; charset=utf-8");
    assert_eq!(css.headers()[CACHE_CONTROL], "max-age=3600", "static files may be cached");
    let icon = client.get(format!("{}/favicon.svg", server.url())).send().await.expect("request");
    assert_eq!(
        (icon.status(), &icon.headers()[CONTENT_TYPE]),
        (StatusCode::OK, &"image/svg+xml".parse().expect("header"))
    );
    let home = client.get(format!("{}/", server.url())).send().await.expect("request");
    assert_eq!(home.headers()[CACHE_CONTROL], "no-store", "pages are one person's session");
    let get_logout = client.get(format!("{}/logout", server.url())).send().await.expect("request");
    assert_eq!(get_logout.status(), StatusCode::METHOD_NOT_ALLOWED, "logging out takes a POST");
    server.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn another_site_cannot_post_to_the_demo() {
    let server = start_insecure().await;
    let client = raw();
    for site in ["cross-site", "same-site"] {
        let forged = client
            .post(format!("{}/login", server.url()))
            .header("sec-fetch-site", site)
            .form(&[("user", "mallory")])
            .send()
            .await
            .expect("request");
        assert_eq!(forged.status(), StatusCode::FORBIDDEN, "{site}");
        assert_eq!(set_cookie(&forged), None, "{site}: no session was made");
    }
    let ours = client
        .post(format!("{}/login", server.url()))
        .header("sec-fetch-site", "same-origin")
        .form(&[("user", "ada")])
        .send()
        .await
        .expect("request");
    assert_eq!(ours.status(), StatusCode::SEE_OTHER);
    let link = client.get(format!("{}/", server.url())).header("sec-fetch-site", "cross-site").send().await;
    assert_eq!(link.expect("request").status(), StatusCode::OK, "following a link from elsewhere is fine");
    server.shutdown().await.expect("shutdown");
}
