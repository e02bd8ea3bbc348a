//! The HTML pages: home with a visit counter, login, the cart (with a
//! saved-for-later list), logout, "Your sessions" (the signed-in user's
//! sessions, each of which can be signed out from here) and a page that
//! shows the session itself.
//!
//! Every page is rendered on the server and works without JavaScript:
//! forms POST and the server answers with a redirect (303) to the page to
//! show next, so reloading never resubmits a form. Forms need no CSRF
//! token: the session cookie is `SameSite=Lax`, so a browser does not send
//! it with another site's POST, and the app refuses state-changing
//! requests that the browser marks as cross-site (see [`crate::app`]).
//! The "sign out" buttons of "Your sessions" are such forms too.
//!
//! | page | does |
//! | --- | --- |
//! | `GET /` | counts the visit (an atomic increment) and shows the count |
//! | `GET /login`, `POST /login` | the login form; logging in binds the session to the user |
//! | `POST /logout` | destroys the session |
//! | `GET /cart` | the cart and the saved-for-later list |
//! | `POST /cart/add`, `POST /cart/remove` | an atomic push, an atomic remove-first |
//! | `POST /cart/save`, `POST /cart/unsave` | move an item to the saved list and back, under an exclusive session |
//! | `GET /sessions` | "Your sessions": every session of the signed-in user, this one marked |
//! | `POST /sessions/revoke` | signs out the session whose `handle` the form sends (this one: a logout) |
//! | `POST /sessions/revoke-others` | signs out all the user's other sessions |
//! | `GET /session` | this session as the server sees it |
//! | `POST /prefs/theme` | the dark or light theme |

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::rejection::FormRejection;
use axum::extract::{Form, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use sessionkit::{ExclusiveLayer, Session, SessionError};

use crate::AppInfo;
use crate::api::user_agent;
use crate::html::{Chrome, Escaped, FAVICON, STYLESHEET, escape, page};
use crate::sessions::{self, Listed, Revoked};
use crate::state::{self, ActionError, Cart, Device, Saved, Visits};

/// The pages' routes.
pub fn routes() -> Router<Arc<AppInfo>> {
    Router::new()
        .route("/", get(home))
        .route("/login", get(login_form).post(login))
        .route("/logout", post(logout))
        .route("/cart", get(cart))
        .route("/cart/add", post(cart_add))
        .route("/cart/remove", post(cart_remove))
        .route("/sessions", get(sessions_page))
        .route("/sessions/revoke", post(sessions_revoke))
        .route("/sessions/revoke-others", post(sessions_revoke_others))
        .route("/prefs/theme", post(theme))
        .route("/session", get(session_page))
        .route("/style.css", get(stylesheet))
        .route("/favicon.svg", get(favicon))
        .merge(exclusive_routes())
}

/// The pages that read a list and write it whole: one request of a
/// session at a time (see [`crate::state`]).
fn exclusive_routes() -> Router<Arc<AppInfo>> {
    Router::new()
        .route("/cart/save", post(cart_save))
        .route("/cart/unsave", post(cart_unsave))
        .route_layer(ExclusiveLayer::new())
}

/// A page failed: the session could not be read or written. The layer
/// has already logged a store failure; this logs the rest.
#[derive(Debug)]
pub struct PageError(SessionError);

impl From<SessionError> for PageError {
    fn from(err: SessionError) -> Self {
        Self(err)
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        tracing::error!(error = &self.0 as &dyn std::error::Error, "a page failed; answering 500");
        error_page(StatusCode::INTERNAL_SERVER_ERROR, "Something went wrong on our side. Please try again.")
    }
}

type PageResult = Result<Response, PageError>;

/// The header's user and the colours, from the session.
fn chrome(session: &Session, path: &str) -> Result<Chrome, SessionError> {
    let dark = session.get_value(&format!("{}theme", state::PREF_PREFIX)).is_some_and(|theme| theme == "dark");
    Ok(Chrome { user: session.user(), dark, path: path.to_owned() })
}

/// A page with just a message, for errors.
fn error_page(status: StatusCode, message: &str) -> Response {
    let body = format!(
        r#"    <h1>{}</h1>
    <p class="error">{}</p>
    <p><a href="/">Back to the home page</a></p>"#,
        status.canonical_reason().unwrap_or("Error"),
        Escaped(message)
    );
    page(status, &Chrome::default(), "Error", &body)
}

/// Answers a form that could not be parsed (wrong content type, a missing
/// field) with a 400 page rather than axum's plain-text rejection.
fn bad_form(rejection: &FormRejection) -> Response {
    error_page(StatusCode::BAD_REQUEST, &format!("The form could not be read: {}", rejection.body_text()))
}

/// `GET /`: counts the visit and shows the count.
async fn home(session: Session) -> PageResult {
    let visits = Visits::bump(&session)?;
    let chrome = chrome(&session, "/")?;
    let greeting = match &chrome.user {
        Some(user) => format!("Hello, {}!", Escaped(user)),
        None => "Hello, stranger!".to_owned(),
    };
    let times = if visits == 1 { "visit" } else { "visits" };
    let body = format!(
        r#"    <h1 id="greeting">{greeting}</h1>
    <div class="card">
      <div class="big" id="visits">{visits}</div>
      <div class="muted">{times} to this page in this session. Reload to count up.</div>
    </div>
    <p>The count lives on the server, in the session store. Your browser holds only a
    random session id, in an <code>HttpOnly</code> cookie that page scripts cannot read.</p>
    <h2>Things to try</h2>
    <ul>
      <li><a href="/login">Log in</a> with any name. The session gets a new id (so an id
      planted before login is worthless after it); the count and the cart come along.</li>
      <li>Put things in the <a href="/cart">cart</a>, stop the server and start it again:
      with a store on disk (the default, redb) they are still there.</li>
      <li>See the <a href="/session">session itself</a>: its id, expiry and raw data.</li>
      <li>Log in with the same name in another browser, then open
      <a href="/sessions">Your sessions</a>: both are listed, and either can sign the other out.</li>
      <li>Log out: the session is deleted from the store and the cookie from the browser.</li>
    </ul>"#
    );
    Ok(page(StatusCode::OK, &chrome, "Home", &body))
}

/// The login page, with an error above the form when there is one.
fn login_page(session: &Session, status: StatusCode, error: Option<&str>, value: &str) -> PageResult {
    let chrome = chrome(session, "/login")?;
    let note = match &chrome.user {
        Some(user) => format!(
            r#"<p>You are logged in as <strong>{}</strong>. Logging in again switches user.</p>"#,
            Escaped(user)
        ),
        None => "<p>Any name will do: this is a demo, there are no passwords.</p>".to_owned(),
    };
    let error = error.map(|message| format!(r#"<p class="error" id="error">{}</p>"#, Escaped(message)));
    let body = format!(
        r#"    <h1>Log in</h1>
    {note}
    <div class="card">
      {error}
      <form class="row" method="post" action="/login">
        <input type="text" name="user" id="user" value="{value}" placeholder="Your name"
          maxlength="{max}" required autofocus aria-label="User name">
        <button id="login">Log in</button>
      </form>
    </div>"#,
        error = error.unwrap_or_default(),
        value = escape(value),
        max = state::MAX_USER_CHARS,
    );
    Ok(page(status, &chrome, "Log in", &body))
}

/// `GET /login`.
async fn login_form(session: Session) -> PageResult {
    login_page(&session, StatusCode::OK, None, "")
}

/// The login form's fields.
#[derive(Debug, Deserialize)]
struct LoginForm {
    user: String,
}

/// `POST /login`: regenerates the session id and binds it to the user.
async fn login(session: Session, headers: HeaderMap, form: Result<Form<LoginForm>, FormRejection>) -> PageResult {
    let Form(form) = match form {
        Ok(form) => form,
        Err(rejection) => return Ok(bad_form(&rejection)),
    };
    match state::log_in(&session, &form.user, user_agent(&headers)) {
        Ok(_) => Ok(Redirect::to("/").into_response()),
        Err(ActionError::Session(err)) => Err(err.into()),
        Err(err) => login_page(&session, StatusCode::BAD_REQUEST, Some(&err.to_string()), &form.user),
    }
}

/// `POST /logout`: destroys the session, in the store and in the browser.
async fn logout(session: Session) -> Response {
    session.destroy();
    Redirect::to("/").into_response()
}

/// The cart page (with the saved-for-later list), with an error above the
/// form when there is one.
fn cart_page(session: &Session, status: StatusCode, error: Option<&str>) -> PageResult {
    let chrome = chrome(session, "/cart")?;
    let items = Cart::items(session)?;
    let saved = Saved::items(session)?;
    let list = if items.is_empty() {
        r#"<p class="muted" id="cart-empty">The cart is empty.</p>"#.to_owned()
    } else {
        let lines: Vec<String> = items
            .iter()
            .map(|item| {
                format!(
                    r#"        <li><span class="item">{item}</span>
          <span class="actions">
            <form class="inline" method="post" action="/cart/save">
              <input type="hidden" name="item" value="{item}"><button class="quiet save">Save for later</button>
            </form>
            <form class="inline" method="post" action="/cart/remove">
              <input type="hidden" name="item" value="{item}"><button class="danger remove">Remove</button>
            </form>
          </span></li>"#,
                    item = Escaped(item)
                )
            })
            .collect();
        format!("<ul class=\"cart\" id=\"cart\">\n{}\n      </ul>", lines.join("\n"))
    };
    let saved_list = if saved.is_empty() {
        String::new()
    } else {
        let lines: Vec<String> = saved
            .iter()
            .map(|item| {
                format!(
                    r#"        <li><span class="item">{item}</span>
          <form class="inline" method="post" action="/cart/unsave">
            <input type="hidden" name="item" value="{item}"><button class="quiet unsave">Move to cart</button>
          </form></li>"#,
                    item = Escaped(item)
                )
            })
            .collect();
        format!(
            "<h2>Saved for later <span class=\"muted\" id=\"saved-count\">({})</span></h2>\n    <div class=\"card\">\n      \
             <ul class=\"cart\" id=\"saved\">\n{}\n      </ul>\n    </div>",
            saved.len(),
            lines.join("\n")
        )
    };
    let count = match items.len() {
        1 => "1 item".to_owned(),
        n => format!("{n} items"),
    };
    let error = error.map(|message| format!(r#"<p class="error" id="error">{}</p>"#, Escaped(message)));
    let body = format!(
        r#"    <h1>Your cart <span class="muted">({count})</span></h1>
    <div class="card">
      {list}
    </div>
    <div class="card">
      {error}
      <form class="row" method="post" action="/cart/add">
        <input type="text" name="item" id="item" placeholder="Something to buy, e.g. green tea"
          maxlength="{max}" required autofocus aria-label="Item">
        <button id="add">Add to cart</button>
      </form>
    </div>
    {saved_list}
    <p class="muted">No login needed: the cart belongs to the session, and stays with it when you log in.
    Adding and removing are atomic operations, so two tabs adding at once both count; moving an item to
    and from the saved list runs one request of the session at a time.</p>"#,
        error = error.unwrap_or_default(),
        max = state::MAX_ITEM_CHARS,
    );
    Ok(page(status, &chrome, "Cart", &body))
}

/// `GET /cart`.
async fn cart(session: Session) -> PageResult {
    cart_page(&session, StatusCode::OK, None)
}

/// The cart forms' field.
#[derive(Debug, Deserialize)]
struct ItemForm {
    item: String,
}

/// `POST /cart/add`.
async fn cart_add(
    State(info): State<Arc<AppInfo>>,
    session: Session,
    form: Result<Form<ItemForm>, FormRejection>,
) -> PageResult {
    let Form(form) = match form {
        Ok(form) => form,
        Err(rejection) => return Ok(bad_form(&rejection)),
    };
    match state::add_to_cart(&session, &form.item, info.cart_limit) {
        Ok(_) => Ok(Redirect::to("/cart").into_response()),
        Err(ActionError::Session(err)) => Err(err.into()),
        Err(err) => cart_page(&session, StatusCode::BAD_REQUEST, Some(&err.to_string())),
    }
}

/// `POST /cart/remove`: removing what is no longer there (a form sent
/// twice) just shows the cart.
async fn cart_remove(session: Session, form: Result<Form<ItemForm>, FormRejection>) -> PageResult {
    let Form(form) = match form {
        Ok(form) => form,
        Err(rejection) => return Ok(bad_form(&rejection)),
    };
    match state::remove_from_cart(&session, &form.item) {
        Ok(_) | Err(ActionError::NotFound(_)) => Ok(Redirect::to("/cart").into_response()),
        Err(ActionError::Session(err)) => Err(err.into()),
        Err(err) => cart_page(&session, StatusCode::BAD_REQUEST, Some(&err.to_string())),
    }
}

/// `POST /cart/save` (exclusive): moves the item to the saved list. An
/// item no longer in the cart (a form sent twice) just shows the cart.
async fn cart_save(
    State(info): State<Arc<AppInfo>>,
    session: Session,
    form: Result<Form<ItemForm>, FormRejection>,
) -> PageResult {
    let Form(form) = match form {
        Ok(form) => form,
        Err(rejection) => return Ok(bad_form(&rejection)),
    };
    cart_outcome(&session, state::save_for_later(&session, &form.item, info.cart_limit))
}

/// `POST /cart/unsave` (exclusive): moves the item back to the cart.
async fn cart_unsave(
    State(info): State<Arc<AppInfo>>,
    session: Session,
    form: Result<Form<ItemForm>, FormRejection>,
) -> PageResult {
    let Form(form) = match form {
        Ok(form) => form,
        Err(rejection) => return Ok(bad_form(&rejection)),
    };
    cart_outcome(&session, state::move_to_cart(&session, &form.item, info.cart_limit))
}

/// Back to the cart, or the cart with the reason it did not change.
fn cart_outcome(session: &Session, outcome: Result<(), ActionError>) -> PageResult {
    match outcome {
        Ok(()) | Err(ActionError::NotFound(_)) => Ok(Redirect::to("/cart").into_response()),
        Err(ActionError::Session(err)) => Err(err.into()),
        Err(err) => cart_page(session, StatusCode::BAD_REQUEST, Some(&err.to_string())),
    }
}

/// `GET /sessions`: "Your sessions".
async fn sessions_page(session: Session, RawQuery(query): RawQuery) -> PageResult {
    let chrome = chrome(&session, "/sessions")?;
    let Some(listed) = sessions::list(&session).await? else {
        let body = r#"    <h1>Your sessions</h1>
    <div class="card">
      <p id="not-signed-in">Log in to see every browser and device signed in to your account, and to sign
      any of them out.</p>
      <p><a href="/login">Log in</a></p>
    </div>"#;
        return Ok(page(StatusCode::OK, &chrome, "Your sessions", body));
    };
    // `?revoked=N`, from the revoke-others redirect: only a number is shown.
    let revoked = query.as_deref().and_then(|q| q.strip_prefix("revoked=")).and_then(|n| n.parse::<u64>().ok());
    let flash = match revoked {
        Some(1) => r#"<p class="notice" id="flash">Signed out 1 other session.</p>"#.to_owned(),
        Some(n) => format!(r#"<p class="notice" id="flash">Signed out {n} other sessions.</p>"#),
        None => String::new(),
    };
    let now = SystemTime::now();
    let rows: Vec<String> = listed.iter().map(|listed| session_row(listed, now)).collect();
    let others = listed.iter().filter(|listed| !listed.current).count();
    let revoke_others = if others == 0 {
        r#"<p class="muted" id="no-others">No other session is signed in as you.</p>"#.to_owned()
    } else {
        r#"<form method="post" action="/sessions/revoke-others">
        <button class="danger" id="revoke-others">Sign out all other sessions</button>
      </form>"#
            .to_owned()
    };
    let sessions = if listed.len() == 1 { "1 session".to_owned() } else { format!("{} sessions", listed.len()) };
    let body = format!(
        r#"    <h1>Your sessions <span class="muted" id="session-count">({sessions})</span></h1>
    {flash}
    <p>Every browser or device signed in as <strong>{user}</strong>. Sign out one you do not
    recognise, or all but this one (after changing a password, say): its next request finds
    itself signed out.</p>
    <div class="card">
      <table id="sessions">
        <tr><th>Session</th><th>Signed in</th><th>Last active</th><th>Expires</th><th></th></tr>
{rows}
      </table>
    </div>
    <div class="card">
      {revoke_others}
    </div>
    <p class="muted">Sessions are listed from the store's index of each user's sessions, and named by
    their <em>handle</em>, the key the store holds them under: the SHA-256 of the id, which names a
    session without being able to open it.</p>"#,
        user = Escaped(chrome.user.as_deref().unwrap_or_default()),
        rows = rows.join("\n"),
    );
    Ok(page(StatusCode::OK, &chrome, "Your sessions", &body))
}

/// One row of "Your sessions".
fn session_row(listed: &Listed, now: SystemTime) -> String {
    let prefix: String = listed.handle.chars().take(8).collect();
    let agent = listed.user_agent.as_deref().unwrap_or_default();
    let described = sessions::describe_user_agent(agent).unwrap_or_else(|| "A browser".to_owned());
    let (class, action) = if listed.current {
        ("session current", r#"<strong class="this-session">This session</strong>"#.to_owned())
    } else {
        (
            "session",
            format!(
                r#"<form class="inline" method="post" action="/sessions/revoke">
            <input type="hidden" name="handle" value="{handle}"><button class="danger revoke">Sign out this session</button>
          </form>"#,
                handle = Escaped(&listed.handle)
            ),
        )
    };
    format!(
        r#"        <tr class="{class}" data-handle="{handle}">
          <td><strong class="device">{described}</strong> <code class="handle">{prefix}</code>…
            <span class="agent">{agent}</span></td>
          <td>{created}</td><td>{active}</td><td>{expires}</td>
          <td>{action}</td></tr>"#,
        handle = Escaped(&listed.handle),
        described = Escaped(&described),
        agent = Escaped(agent),
        prefix = Escaped(&prefix),
        created = when(listed.created_at, now),
        active = when(listed.last_active, now),
        expires = listed.expires_at.map_or_else(|| "never".to_owned(), |ms| when(Some(ms), now)),
    )
}

/// An instant (Unix ms) as "5 min ago" or "in 23 h", with the date as a
/// tooltip.
fn when(ms: Option<u64>, now: SystemTime) -> String {
    let Some(ms) = ms else { return r#"<span class="muted">unknown</span>"#.to_owned() };
    let at = UNIX_EPOCH + Duration::from_millis(ms);
    let relative = match now.duration_since(at) {
        Ok(ago) => format!("{} ago", human(ago)),
        Err(ahead) => format!("in {}", human(ahead.duration())),
    };
    format!(r#"<time title="{}">{relative}</time>"#, httpdate::fmt_http_date(at))
}

/// A "sign out this session" form's field.
#[derive(Debug, Deserialize)]
struct HandleForm {
    handle: String,
}

/// `POST /sessions/revoke`: signs out one of the user's sessions; the
/// request's own is a logout. A handle that is not the user's (a form sent
/// twice) just shows the list again.
async fn sessions_revoke(session: Session, form: Result<Form<HandleForm>, FormRejection>) -> PageResult {
    let Form(form) = match form {
        Ok(form) => form,
        Err(rejection) => return Ok(bad_form(&rejection)),
    };
    if session.user().is_none() {
        return Ok(Redirect::to("/login").into_response());
    }
    Ok(match sessions::revoke(&session, &form.handle).await? {
        Revoked::Current => Redirect::to("/"),
        Revoked::Other | Revoked::NotFound => Redirect::to("/sessions"),
    }
    .into_response())
}

/// `POST /sessions/revoke-others`: signs out all the user's other sessions
/// and says how many.
async fn sessions_revoke_others(session: Session) -> PageResult {
    Ok(match sessions::revoke_others(&session).await? {
        Some(revoked) => Redirect::to(&format!("/sessions?revoked={revoked}")),
        None => Redirect::to("/login"),
    }
    .into_response())
}

/// The theme form's fields: the theme, and the page to go back to.
#[derive(Debug, Deserialize)]
struct ThemeForm {
    value: String,
    #[serde(default)]
    back: String,
}

/// `POST /prefs/theme`: the `theme` preference, which the pages honour.
async fn theme(session: Session, form: Result<Form<ThemeForm>, FormRejection>) -> PageResult {
    let Form(form) = match form {
        Ok(form) => form,
        Err(rejection) => return Ok(bad_form(&rejection)),
    };
    let theme = match form.value.as_str() {
        "dark" | "light" => form.value,
        _ => return Ok(error_page(StatusCode::BAD_REQUEST, "The theme is `dark` or `light`.")),
    };
    match state::set_pref(&session, "theme", theme.into()) {
        Ok(()) => {}
        Err(ActionError::Session(err)) => return Err(err.into()),
        Err(err) => return Ok(error_page(StatusCode::BAD_REQUEST, &err.to_string())),
    }
    // Back to a page of ours only: never an open redirect.
    let back = match form.back.as_str() {
        back @ ("/" | "/login" | "/cart" | "/sessions" | "/session") => back,
        _ => "/",
    };
    Ok(Redirect::to(back).into_response())
}

/// `GET /session`: the session as the server sees it.
async fn session_page(State(info): State<Arc<AppInfo>>, session: Session) -> PageResult {
    let chrome = chrome(&session, "/session")?;
    let id = session.id();
    // Eight characters identify the session on screen; the whole id is a
    // credential and is never shown.
    let prefix: String = id.as_str().chars().take(8).collect();
    let stored = if session.is_new() {
        r#"<span id="session-state">new</span>: not stored yet, because nothing has been written to it.
        It is stored (and the cookie set) when a page first writes to it."#
    } else {
        r#"<span id="session-state">stored</span>, found by the id in your cookie."#
    };
    let ttl = Duration::from_secs(info.ttl_seconds);
    let expires = match session.expires_at() {
        Some(at) => {
            let left = at.duration_since(SystemTime::now()).unwrap_or_default();
            format!(r#"<span id="expires">{}</span> (in {})"#, httpdate::fmt_http_date(at), human(left))
        }
        None => format!("{} after it is first stored", human(ttl)),
    };
    let expiry_rule = if info.rolling {
        format!("Rolling: every response moves the expiry to now + {}.", human(ttl))
    } else {
        format!(
            "Fixed when the session is created, {} later; run with <code>--rolling</code> to extend it on every response.",
            human(ttl)
        )
    };
    let mut attributes = vec![format!("{}=…", Escaped(session.config().get_cookie_name())), "HttpOnly".to_owned()];
    if info.secure_cookies {
        attributes.push("Secure".to_owned());
    }
    attributes.extend(["SameSite=Lax".to_owned(), "Path=/".to_owned(), format!("Max-Age={}", info.ttl_seconds)]);
    let cookie: Vec<String> = attributes.iter().map(|attribute| format!("<code>{attribute}</code>")).collect();
    let raw = serde_json::to_string_pretty(&session.data()).unwrap_or_else(|err| format!("(cannot show: {err})"));
    let user = match &chrome.user {
        Some(user) => format!(
            r#"<strong id="session-user">{}</strong>, bound by <code>Session::login</code>;
          <a href="/sessions">your sessions</a>"#,
            Escaped(user)
        ),
        None => r#"<span id="session-user" class="muted">nobody: not logged in</span>"#.to_owned(),
    };
    let device = match Device::user_agent(&session)? {
        Some(agent) => format!(r#"<tr><th>Browser</th><td id="session-agent">{}</td></tr>"#, Escaped(&agent)),
        None => String::new(),
    };
    let body = format!(
        r#"    <h1>This session</h1>
    <div class="card">
      <table>
        <tr><th>Id</th><td><code id="session-id">{prefix}</code>…
          <span class="muted">the first 8 characters only: the whole id is as good as a password.</span></td></tr>
        <tr><th>State</th><td>{stored}</td></tr>
        <tr><th>User</th><td>{user}</td></tr>
        {device}
        <tr><th>Expires</th><td>{expires}<br><span class="muted">{expiry_rule}</span></td></tr>
        <tr><th>Cookie</th><td id="cookie">{cookie}</td></tr>
        <tr><th>Store</th><td id="store">{store}, keyed by the SHA-256 of the id: a copy of the store holds no usable id.</td></tr>
      </table>
    </div>
    <h2>Raw data</h2>
    <p class="muted">What the store holds for this session, but for sessionkit's own bookkeeping
    (the user, when it was created and last active), which handlers never see. <code>visits.*</code>,
    <code>cart.*</code>, <code>saved.*</code> and <code>device.*</code> are written by typed
    <code>#[derive(SessionData)]</code> structs; <code>pref.*</code> by
    <code>PUT /api/prefs/&lt;name&gt;</code> and the theme button.</p>
    <pre id="raw">{raw}</pre>"#,
        cookie = cookie.join(" "),
        store = Escaped(&info.store),
        raw = Escaped(&raw),
    );
    Ok(page(StatusCode::OK, &chrome, "Session", &body))
}

/// A duration in words, to the minute: "45 s", "10 min", "23 h 59 min",
/// "24 h", "3 d 2 h".
fn human(duration: Duration) -> String {
    let secs = duration.as_secs();
    let (hours, mins) = (secs / 3600, secs / 60 % 60);
    match secs {
        0..60 => format!("{secs} s"),
        60..3600 => format!("{mins} min"),
        // Up to two days, hours read better than "1 d 5 h".
        3600..172_800 if mins == 0 => format!("{hours} h"),
        3600..172_800 => format!("{hours} h {mins} min"),
        _ if hours % 24 == 0 => format!("{} d", hours / 24),
        _ => format!("{} d {} h", hours / 24, hours % 24),
    }
}

/// `GET /style.css`, cacheable for an hour.
async fn stylesheet() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8"), (header::CACHE_CONTROL, "max-age=3600")], STYLESHEET)
        .into_response()
}

/// `GET /favicon.svg`, cacheable for an hour.
async fn favicon() -> Response {
    ([(header::CONTENT_TYPE, "image/svg+xml"), (header::CACHE_CONTROL, "max-age=3600")], FAVICON).into_response()
}

/// Any other path: a 404 page.
pub async fn not_found() -> Response {
    error_page(StatusCode::NOT_FOUND, "There is no page here.")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_words() {
        assert_eq!(human(Duration::from_secs(45)), "45 s");
        assert_eq!(human(Duration::from_secs(600)), "10 min");
        assert_eq!(human(Duration::from_secs(3600)), "1 h");
        assert_eq!(human(Duration::from_secs(86_399)), "23 h 59 min");
        assert_eq!(human(Duration::from_secs(86_400)), "24 h");
        assert_eq!(human(Duration::from_secs(90_000)), "25 h");
        assert_eq!(human(Duration::from_secs(172_800)), "2 d");
        assert_eq!(human(Duration::from_secs(183_600)), "2 d 3 h");
    }
}
