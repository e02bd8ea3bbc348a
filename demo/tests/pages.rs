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
    for path in ["/", "/cart", "/session", "/sessions", "/login"] {
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

/// A client with a cookie jar that sends `agent` as its `User-Agent`.
fn device(agent: &str) -> reqwest::Client {
    reqwest::Client::builder().cookie_store(true).user_agent(agent).build().expect("client")
}

/// The sessions "Your sessions" lists: (whether current, handle), in order.
fn session_rows(html: &str) -> Vec<(bool, String)> {
    html.split(r#"<tr class="session"#)
        .skip(1)
        .map(|row| {
            let handle = row.split(r#"data-handle=""#).nth(1).and_then(|rest| rest.split('"').next());
            (row.starts_with(" current"), handle.expect("every row has a handle").to_owned())
        })
        .collect()
}

async fn log_in(client: &reqwest::Client, server: &Server, user: &str) {
    let response = post_form(client, server, "/login", &[("user", user)]).await;
    assert_eq!(response.status(), StatusCode::OK, "logged in and redirected home");
    assert!(response.text().await.expect("text").contains(r#"id="nav-sessions""#), "the header links to the sessions");
}

#[tokio::test]
async fn the_sessions_page_asks_for_a_login() {
    let server = start_insecure().await;
    let client = browser();
    let body = page(&client, &server, "/sessions").await;
    assert!(body.contains(r#"id="not-signed-in""#) && body.contains(r#"<a href="/login">"#), "{body}");
    for path in ["/sessions/revoke-others", "/sessions/revoke"] {
        let response =
            raw().post(format!("{}{path}", server.url())).form(&[("handle", "x")]).send().await.expect("request");
        assert_eq!(
            (response.status(), &response.headers()[LOCATION]),
            (StatusCode::SEE_OTHER, &"/login".parse().expect("header"))
        );
    }
    server.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn the_sessions_page_lists_the_users_sessions_and_signs_one_out() {
    let server = start_insecure().await;
    let (phone, laptop) = (device("Phone <b>1</b>"), device("Laptop/2.0"));
    log_in(&phone, &server, "ada").await;
    log_in(&laptop, &server, "ada").await;
    log_in(&device("Other/1.0"), &server, "eve").await;

    let body = page(&phone, &server, "/sessions").await;
    let rows = session_rows(&body);
    assert_eq!(rows.len(), 2, "ada's two sessions, not eve's: {body}");
    assert!(rows[0].0 && !rows[1].0, "the current session first, and only it marked: {rows:?}");
    assert!(body.contains(r#"<strong class="this-session">This session</strong>"#), "{body}");
    assert!(body.contains("Phone &lt;b&gt;1&lt;/b&gt;") && body.contains("Laptop/2.0"), "user agents, escaped: {body}");
    assert!(!body.contains("<b>1</b>"), "{body}");
    assert!(!body.contains("Other/1.0"), "another user's session is not shown");
    assert_eq!(body.matches("Sign out this session").count(), 1, "a button for the other session only");
    assert!(body.contains(r#"id="revoke-others""#) && body.contains("(2 sessions)"), "{body}");
    let laptop_handle = rows[1].1.clone();
    assert!(body.contains(&format!(r#"name="handle" value="{laptop_handle}""#)), "{body}");
    assert_eq!(session_rows(&page(&laptop, &server, "/sessions").await)[0], (true, laptop_handle.clone()));

    // Sign the laptop out from the phone: the phone's page lists only itself.
    let after = post_form(&phone, &server, "/sessions/revoke", &[("handle", &laptop_handle)]).await;
    assert_eq!(after.status(), StatusCode::OK);
    assert_eq!(after.url().path(), "/sessions", "back to the list");
    let after = after.text().await.expect("text");
    assert_eq!(session_rows(&after).len(), 1, "{after}");
    assert!(after.contains(r#"id="no-others""#), "{after}");
    // The laptop's next page load finds it signed out.
    let home = page(&laptop, &server, "/").await;
    assert!(home.contains("Hello, stranger!") && !home.contains(r#"id="nav-user""#), "{home}");
    assert!(page(&laptop, &server, "/sessions").await.contains(r#"id="not-signed-in""#));
    // The same form again (already signed out) just shows the list.
    let again = post_form(&phone, &server, "/sessions/revoke", &[("handle", &laptop_handle)]).await;
    assert_eq!((again.status(), again.url().path()), (StatusCode::OK, "/sessions"));
    assert!(page(&phone, &server, "/").await.contains("Hello, ada!"), "the phone is still signed in");
    server.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn sign_out_all_other_sessions_leaves_only_this_one() {
    let server = start_insecure().await;
    let clients = [device("One"), device("Two"), device("Three")];
    for client in &clients {
        log_in(client, &server, "ada").await;
    }
    let done = post_form(&clients[0], &server, "/sessions/revoke-others", &[]).await;
    assert_eq!(done.status(), StatusCode::OK);
    assert_eq!((done.url().path(), done.url().query()), ("/sessions", Some("revoked=2")));
    let body = done.text().await.expect("text");
    assert!(body.contains(r#"<p class="notice" id="flash">Signed out 2 other sessions.</p>"#), "{body}");
    assert_eq!(session_rows(&body).len(), 1, "{body}");
    for other in &clients[1..] {
        assert!(page(other, &server, "/").await.contains("Hello, stranger!"), "signed out on the next page load");
    }
    assert!(page(&clients[0], &server, "/").await.contains("Hello, ada!"));
    server.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn signing_out_this_session_from_the_list_is_a_logout() {
    let server = start_insecure().await;
    let client = raw();
    let login = post_form(&client, &server, "/login", &[("user", "ada")]).await;
    let cookie = set_cookie(&login).expect("login sets the cookie");
    let list = with_cookie(client.get(format!("{}/sessions", server.url())), Some(&cookie)).send().await;
    let rows = session_rows(&list.expect("sessions").text().await.expect("text"));
    assert_eq!(rows.len(), 1);
    let own = with_cookie(client.post(format!("{}/sessions/revoke", server.url())), Some(&cookie))
        .form(&[("handle", rows[0].1.as_str())])
        .send()
        .await
        .expect("request");
    assert_eq!((own.status(), &own.headers()[LOCATION]), (StatusCode::SEE_OTHER, &"/".parse().expect("header")));
    assert!(set_cookie_header(&own).is_some_and(|header| header.contains("Max-Age=0")), "the cookie is removed");
    let home = with_cookie(client.get(format!("{}/", server.url())), Some(&cookie)).send().await.expect("home");
    assert!(home.text().await.expect("text").contains("Hello, stranger!"));
    server.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn another_site_cannot_sign_sessions_out() {
    let server = start_insecure().await;
    let (phone, laptop) = (device("Phone"), device("Laptop"));
    log_in(&phone, &server, "ada").await;
    log_in(&laptop, &server, "ada").await;
    let handle = session_rows(&page(&phone, &server, "/sessions").await)[1].1.clone();
    for (path, form) in [("/sessions/revoke", vec![("handle", handle.as_str())]), ("/sessions/revoke-others", vec![])] {
        let forged = phone
            .post(format!("{}{path}", server.url()))
            .header("sec-fetch-site", "cross-site")
            .form(&form)
            .send()
            .await
            .expect("request");
        assert_eq!(forged.status(), StatusCode::FORBIDDEN, "{path}");
    }
    assert_eq!(session_rows(&page(&phone, &server, "/sessions").await).len(), 2, "nothing was signed out");
    assert!(page(&laptop, &server, "/").await.contains("Hello, ada!"));
    server.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn items_move_to_the_saved_list_and_back() {
    let server = start_insecure().await;
    let client = browser();
    for item in ["tea", "cake", "tea"] {
        assert_eq!(post_form(&client, &server, "/cart/add", &[("item", item)]).await.status(), StatusCode::OK);
    }
    let saved = post_form(&client, &server, "/cart/save", &[("item", "tea")]).await;
    assert_eq!((saved.status(), saved.url().path()), (StatusCode::OK, "/cart"));
    let body = saved.text().await.expect("text");
    assert!(body.contains("(2 items)") && body.contains(r#"id="saved-count">(1)"#), "{body}");
    assert!(body.contains(r#"action="/cart/unsave""#), "{body}");
    let raw_data = page(&client, &server, "/session").await;
    assert!(
        raw_data.contains("&quot;cart.items&quot;: [\n    &quot;cake&quot;,\n    &quot;tea&quot;\n  ]"),
        "{raw_data}"
    );
    assert!(raw_data.contains("&quot;saved.items&quot;: [\n    &quot;tea&quot;\n  ]"), "{raw_data}");

    let back = post_form(&client, &server, "/cart/unsave", &[("item", "tea")]).await;
    let body = back.text().await.expect("text");
    assert!(body.contains("(3 items)") && !body.contains(r#"id="saved""#), "{body}");
    // A form sent twice: the item is no longer saved, the cart is shown.
    let twice = post_form(&client, &server, "/cart/unsave", &[("item", "tea")]).await;
    assert_eq!((twice.status(), twice.url().path()), (StatusCode::OK, "/cart"));
    assert!(twice.text().await.expect("text").contains("(3 items)"));
    server.shutdown().await.expect("shutdown");
}
