//! The demo in a real browser: headless Chromium driven through WebDriver
//! (chromedriver), against the demo with its default settings: the
//! embedded redb store and a `Secure`, `HttpOnly`, `SameSite=Lax` cookie
//! over plain http on 127.0.0.1, which Chromium accepts because it treats
//! loopback addresses as secure contexts.
//!
//! One browser visits twice, logs in through the form, fills the cart,
//! reloads, and logs out; a second browser (its own profile) must see none
//! of the first one's session. Then both sign in as one user, and the first
//! signs the second out from its "Your sessions" page, first that one
//! session, then all other sessions: each time the second browser's next
//! page load finds it signed out.
//!
//! Needs Debian's `chromium` and `chromium-driver` (`scripts/install-test-deps`
//! installs them). Without them the test says SKIPPED loudly, and fails
//! under `CI=true`. Set `SESSIONKIT_DEMO_SHOTS=<dir>` to save screenshots
//! of the pages there.

use std::error::Error;
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::json;
use sessionkit_demo::{Args, Server};

type TestResult<T = ()> = Result<T, Box<dyn Error + Send + Sync>>;

/// How long to wait for a page to show what it should.
const PAGE_TIMEOUT: Duration = Duration::from_secs(15);

/// The flags the machine notes recommend for headless Chromium as root on
/// a machine without network: no sandbox (root), no GPU, and none of the
/// background traffic that a closed network refuses.
const CHROMIUM_FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1000,860",
];

/// A program on `PATH`.
fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(name)).find(|candidate| candidate.is_file())
}

/// chromedriver on a free port, killed when dropped.
struct ChromeDriver {
    child: Child,
    url: String,
    log: PathBuf,
}

impl ChromeDriver {
    fn start(program: &Path, dir: &Path) -> TestResult<Self> {
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?.local_addr()?.port();
        let log = dir.join("chromedriver.log");
        let child = Command::new(program)
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let driver = Self { child, url: format!("http://127.0.0.1:{port}"), log };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err() {
            if Instant::now() > deadline {
                return Err(format!("chromedriver did not listen on port {port}; log:\n{}", driver.log_text()).into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(driver)
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A new browser, with its own empty profile in `profile`.
    async fn browser(&self, chromium: &Path, profile: &Path) -> TestResult<Client> {
        let mut args: Vec<String> = CHROMIUM_FLAGS.iter().map(|flag| (*flag).to_owned()).collect();
        args.push(format!("--user-data-dir={}", profile.display()));
        let mut capabilities = serde_json::Map::new();
        capabilities.insert("browserName".into(), json!("chrome"));
        capabilities.insert("goog:chromeOptions".into(), json!({ "binary": chromium, "args": args }));
        let client =
            ClientBuilder::new(HttpConnector::new()).capabilities(capabilities).connect(&self.url).await.map_err(
                |err| format!("cannot start Chromium through chromedriver: {err}; log:\n{}", self.log_text()),
            )?;
        Ok(client)
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until the element `css` exists and its text satisfies `check`;
/// returns the text.
async fn wait_text(client: &Client, css: &str, check: impl Fn(&str) -> bool) -> TestResult<String> {
    let deadline = Instant::now() + PAGE_TIMEOUT;
    let mut last = None;
    loop {
        // The page may be mid-navigation: a missing or stale element is a retry.
        if let Ok(element) = client.find(Locator::Css(css)).await
            && let Ok(text) = element.text().await
        {
            if check(&text) {
                return Ok(text);
            }
            last = Some(text);
        }
        if Instant::now() > deadline {
            let url = client.current_url().await.map(|url| url.to_string()).unwrap_or_default();
            return Err(format!("on {url}, `{css}` never matched; last text: {last:?}").into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the element `css` has exactly the text `expected`.
async fn wait_for(client: &Client, css: &str, expected: &str) -> TestResult {
    wait_text(client, css, |text| text == expected).await.map(drop)
}

/// Waits until the browser is on `path`.
async fn wait_path(client: &Client, path: &str) -> TestResult {
    let deadline = Instant::now() + PAGE_TIMEOUT;
    loop {
        let url = client.current_url().await?;
        if url.path() == path {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("expected to be on {path}, still on {url}").into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The texts of the cart's items, in order.
async fn cart_items(client: &Client) -> TestResult<Vec<String>> {
    let mut items = Vec::new();
    for element in client.find_all(Locator::Css("#cart .item")).await? {
        items.push(element.text().await?);
    }
    Ok(items)
}

/// The session id prefix the session page shows.
async fn session_prefix(client: &Client, base: &str) -> TestResult<String> {
    client.goto(&format!("{base}/session")).await?;
    wait_text(client, "#session-id", |text| text.len() == 8).await
}

async fn screenshot(client: &Client, name: &str) -> TestResult {
    if let Some(dir) = std::env::var_os("SESSIONKIT_DEMO_SHOTS") {
        std::fs::create_dir_all(&dir)?;
        std::fs::write(Path::new(&dir).join(name), client.screenshot().await?)?;
    }
    Ok(())
}

async fn add_to_cart(client: &Client, item: &str, count_after: usize) -> TestResult {
    let input = client.wait().at_most(PAGE_TIMEOUT).for_element(Locator::Id("item")).await?;
    input.send_keys(item).await?;
    client.find(Locator::Id("add")).await?.click().await?;
    let expected = if count_after == 1 { "(1 item)".to_owned() } else { format!("({count_after} items)") };
    wait_for(client, "h1 .muted", &expected).await
}

/// The first browser's whole visit; `second` is another browser, checked
/// while the first is logged in with a full cart.
async fn scenario(first: Client, second: Client, base: String) -> TestResult {
    let (first, second, base) = (&first, &second, base.as_str());
    // Two visits: the counter rises, so the cookie came back the second time.
    first.goto(&format!("{base}/")).await?;
    wait_for(first, "#visits", "1").await?;
    first.goto(&format!("{base}/")).await?;
    wait_for(first, "#visits", "2").await?;
    wait_for(first, "#greeting", "Hello, stranger!").await?;

    // The cookie as sessionkit sets it by default, kept by Chromium over
    // plain http on 127.0.0.1, and out of reach of page scripts.
    let cookie = first.get_named_cookie("id").await?;
    assert_eq!(cookie.secure(), Some(true), "the default cookie is Secure: {cookie}");
    assert_eq!(cookie.http_only(), Some(true), "the default cookie is HttpOnly: {cookie}");
    assert_eq!(cookie.same_site().map(|s| s.to_string()).as_deref(), Some("Lax"), "{cookie}");
    assert_eq!(first.execute("return document.cookie", vec![]).await?, json!(""), "HttpOnly hides it from scripts");
    let anonymous_id = session_prefix(first, base).await?;
    wait_for(first, "#session-state", "stored").await?;

    // Log in through the form, with a name that would be markup if the
    // pages did not escape it.
    first.goto(&format!("{base}/login")).await?;
    let user = "Ada <b>Lovelace</b>";
    first.wait().at_most(PAGE_TIMEOUT).for_element(Locator::Id("user")).await?.send_keys(user).await?;
    first.find(Locator::Id("login")).await?.click().await?;
    wait_path(first, "/").await?;
    wait_for(first, "#greeting", &format!("Hello, {user}!")).await?;
    wait_for(first, "#nav-user", user).await?;
    wait_for(first, "#visits", "3").await?;
    screenshot(first, "home.png").await?;
    let logged_in_id = session_prefix(first, base).await?;
    assert_ne!(logged_in_id, anonymous_id, "logging in must give the session a new id");

    // Fill the cart, reload: it is kept.
    first.goto(&format!("{base}/cart")).await?;
    wait_for(first, "#cart-empty", "The cart is empty.").await?;
    add_to_cart(first, "green tea", 1).await?;
    add_to_cart(first, "<i>cake</i>", 2).await?;
    add_to_cart(first, "scones", 3).await?;
    assert_eq!(cart_items(first).await?, ["green tea", "<i>cake</i>", "scones"]);
    first.refresh().await?;
    wait_for(first, "h1 .muted", "(3 items)").await?;
    assert_eq!(cart_items(first).await?, ["green tea", "<i>cake</i>", "scones"]);
    // Remove one, through its own button.
    first
        .find(Locator::XPath("//li[span[@class='item'][text()='scones']]//button[contains(@class, 'remove')]"))
        .await?
        .click()
        .await?;
    wait_for(first, "h1 .muted", "(2 items)").await?;
    first.refresh().await?;
    wait_for(first, "h1 .muted", "(2 items)").await?;
    assert_eq!(cart_items(first).await?, ["green tea", "<i>cake</i>"]);

    // The session page shows the raw data, escaped (so it reads as text).
    session_prefix(first, base).await?;
    wait_for(first, "#session-user", user).await?;
    let raw = wait_text(first, "#raw", |text| text.contains("cart.items")).await?;
    let data: serde_json::Value = serde_json::from_str(&raw)?;
    assert!(!raw.contains(user), "the user binding is sessionkit's, not in the handler's data: {raw}");
    assert!(data["device.user_agent"].as_str().is_some_and(|agent| agent.contains("Chrome")), "{raw}");
    assert_eq!(data["cart.items"], json!(["green tea", "<i>cake</i>"]), "{raw}");
    assert_eq!(data["visits.count"], json!(3), "{raw}");
    screenshot(first, "session.png").await?;

    // Another browser, another profile: none of the first one's session.
    second.goto(&format!("{base}/")).await?;
    wait_for(second, "#visits", "1").await?;
    wait_for(second, "#greeting", "Hello, stranger!").await?;
    assert!(second.find(Locator::Id("nav-user")).await.is_err(), "the second browser is not logged in");
    second.goto(&format!("{base}/cart")).await?;
    wait_for(second, "#cart-empty", "The cart is empty.").await?;
    let second_id = session_prefix(second, base).await?;
    assert_ne!(second_id, logged_in_id);
    assert_ne!(second.get_named_cookie("id").await?.value(), first.get_named_cookie("id").await?.value());

    // Log out: user and cart are gone, and the counter starts again.
    first.goto(&format!("{base}/cart")).await?;
    first.wait().at_most(PAGE_TIMEOUT).for_element(Locator::Id("logout")).await?.click().await?;
    wait_path(first, "/").await?;
    wait_for(first, "#greeting", "Hello, stranger!").await?;
    wait_for(first, "#visits", "1").await?;
    assert!(first.find(Locator::Id("nav-user")).await.is_err(), "logged out");
    first.goto(&format!("{base}/cart")).await?;
    wait_for(first, "#cart-empty", "The cart is empty.").await?;
    let after_logout_id = session_prefix(first, base).await?;
    assert_ne!(after_logout_id, logged_in_id, "the destroyed session is not reused");

    // And the second browser's own session was untouched by all this.
    second.goto(&format!("{base}/")).await?;
    wait_for(second, "#visits", "2").await?;
    Ok(())
}

/// Signs `client` in as `user` through the login form.
async fn log_in(client: &Client, base: &str, user: &str) -> TestResult {
    client.goto(&format!("{base}/login")).await?;
    client.wait().at_most(PAGE_TIMEOUT).for_element(Locator::Id("user")).await?.send_keys(user).await?;
    client.find(Locator::Id("login")).await?.click().await?;
    wait_path(client, "/").await?;
    wait_for(client, "#nav-user", user).await
}

/// Checks that `client`'s next page load finds it signed out.
async fn signed_out_on_next_load(client: &Client, base: &str) -> TestResult {
    client.goto(&format!("{base}/")).await?;
    wait_for(client, "#greeting", "Hello, stranger!").await?;
    assert!(client.find(Locator::Id("nav-user")).await.is_err(), "signed out");
    client.goto(&format!("{base}/sessions")).await?;
    client.wait().at_most(PAGE_TIMEOUT).for_element(Locator::Id("not-signed-in")).await?;
    Ok(())
}

/// The same user in two browsers; the first signs the second out from its
/// "Your sessions" page, one session and then all others.
async fn revocation(first: Client, second: Client, base: String) -> TestResult {
    let (first, second, base) = (&first, &second, base.as_str());
    let user = "Grace Hopper";
    log_in(first, base, user).await?;
    log_in(second, base, user).await?;

    // Both list both, each marking itself.
    for client in [first, second] {
        client.goto(&format!("{base}/sessions")).await?;
        wait_for(client, "#session-count", "(2 sessions)").await?;
        assert_eq!(client.find_all(Locator::Css("tr.session.current")).await?.len(), 1);
    }
    let second_handle =
        second.find(Locator::Css("tr.session.current")).await?.attr("data-handle").await?.ok_or("a handle")?;
    screenshot(first, "sessions.png").await?;

    // "Sign out this session", on the second browser's row.
    let row = first.find(Locator::Css(&format!("tr.session[data-handle='{second_handle}']"))).await?;
    row.find(Locator::Css("button.revoke")).await?.click().await?;
    wait_for(first, "#session-count", "(1 session)").await?;
    first.wait().at_most(PAGE_TIMEOUT).for_element(Locator::Id("no-others")).await?;
    signed_out_on_next_load(second, base).await?;
    first.goto(&format!("{base}/")).await?;
    wait_for(first, "#nav-user", user).await?;

    // Signed in again: "Sign out all other sessions".
    log_in(second, base, user).await?;
    first.goto(&format!("{base}/sessions")).await?;
    wait_for(first, "#session-count", "(2 sessions)").await?;
    first.find(Locator::Id("revoke-others")).await?.click().await?;
    wait_for(first, "#flash", "Signed out 1 other session.").await?;
    wait_for(first, "#session-count", "(1 session)").await?;
    signed_out_on_next_load(second, base).await?;
    first.goto(&format!("{base}/")).await?;
    wait_for(first, "#nav-user", user).await?;
    Ok(())
}

/// Both scenarios, one after the other, in the same two browsers.
async fn scenarios(first: Client, second: Client, base: String) -> TestResult {
    scenario(first.clone(), second.clone(), base.clone()).await?;
    revocation(first, second, base).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_browsers_keep_their_own_sessions_and_sign_each_other_out() -> TestResult {
    let (Some(chromium), Some(chromedriver)) = (find_program("chromium"), find_program("chromedriver")) else {
        let why = "`chromium` and `chromedriver` are not both on PATH (apt-get install chromium chromium-driver, \
                   or run scripts/install-test-deps)";
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("the browser test cannot run under CI: {why}");
        }
        eprintln!("\n*** SKIPPED the demo's browser test: {why}. ***\n");
        return Ok(());
    };
    let dir = tempfile::tempdir()?;

    // The demo as a newcomer runs it: only the address and the data file
    // differ from the defaults.
    let data = dir.path().join("data").join("sessions.redb");
    let data = data.display().to_string();
    let args = Args::try_parse_checked(["sessionkit-demo", "--addr", "127.0.0.1:0", "--data", &data])?;
    assert!(!args.insecure_cookies && !args.rolling);
    let server = Server::start(&args).await?;
    assert!(server.store_label().starts_with("redb at "), "{}", server.store_label());

    let driver = ChromeDriver::start(&chromedriver, dir.path())?;
    let first = driver.browser(&chromium, &dir.path().join("profile-1")).await?;
    let second = match driver.browser(&chromium, &dir.path().join("profile-2")).await {
        Ok(second) => second,
        Err(err) => {
            let _ = first.close().await;
            return Err(err);
        }
    };
    // A task of its own, so that a failed assertion (a panic) comes back
    // here as an error and the browsers are still closed: killing
    // chromedriver alone would leave its Chromium processes running.
    let outcome = tokio::spawn(scenarios(first.clone(), second.clone(), server.url())).await;
    let closed = (first.close().await, second.close().await);
    drop(driver);
    server.shutdown().await?;
    match outcome {
        Ok(result) => result?,
        Err(join) if join.is_panic() => std::panic::resume_unwind(join.into_panic()),
        Err(join) => return Err(join.into()),
    }
    closed.0?;
    closed.1?;
    Ok(())
}
