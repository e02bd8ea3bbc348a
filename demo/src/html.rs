//! HTML escaping and the page layout shared by every page.
//!
//! Pages are `format!` templates. Every piece of text that did not come
//! from this source file (a user name, a cart item, a session value) goes
//! through [`escape`] or [`Escaped`], so hostile input shows as text and
//! never as markup.

use std::fmt;

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};

/// The stylesheet, served at `/style.css` (a separate file, so the
/// Content-Security-Policy can forbid inline styles and scripts alike).
pub const STYLESHEET: &str = r#":root {
  --bg: #f7f7f5; --fg: #1d1d1f; --muted: #6b6b70; --card: #ffffff; --line: #e2e2e0;
  --accent: #2457c5; --accent-fg: #ffffff; --danger: #b3261e; --code: #f0f0ec;
}
body.dark {
  --bg: #16171a; --fg: #ececec; --muted: #a0a0a8; --card: #1f2024; --line: #33353b;
  --accent: #7aa2ff; --accent-fg: #0b0c0e; --danger: #ff8a80; --code: #26282d;
}
* { box-sizing: border-box; }
body {
  margin: 0; background: var(--bg); color: var(--fg);
  font: 16px/1.55 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
}
header { background: var(--card); border-bottom: 1px solid var(--line); }
header nav, main, footer { max-width: 50rem; margin: 0 auto; padding: 0 1.25rem; }
header nav { display: flex; align-items: center; gap: 1.1rem; min-height: 3.5rem; white-space: nowrap; }
header nav .brand { font-weight: 700; margin-right: auto; }
header nav .who { color: var(--muted); overflow: hidden; text-overflow: ellipsis; max-width: 16rem; }
a { color: var(--accent); text-decoration: none; }
a:hover { text-decoration: underline; }
main { padding-top: 1.5rem; padding-bottom: 2rem; }
h1 { font-size: 1.7rem; margin: 0 0 1rem; }
h2 { font-size: 1.15rem; margin: 1.5rem 0 .5rem; }
.card { background: var(--card); border: 1px solid var(--line); border-radius: .6rem; padding: 1rem 1.25rem; margin: 1rem 0; }
.big { font-size: 2.6rem; font-weight: 700; line-height: 1.1; }
.muted { color: var(--muted); }
.error { color: var(--danger); font-weight: 600; }
.notice { color: var(--accent); font-weight: 600; }
.this-session { color: var(--accent); white-space: nowrap; }
.actions { display: flex; gap: .4rem; }
#sessions th { width: auto; }
#sessions .agent { display: block; color: var(--muted); font-size: .8rem; max-width: 20rem; overflow-wrap: anywhere; }
form.inline { display: inline; margin: 0; }
form.row { display: flex; gap: .5rem; margin: .5rem 0; }
input[type=text] {
  flex: 1; padding: .5rem .7rem; font: inherit; color: var(--fg); background: var(--bg);
  border: 1px solid var(--line); border-radius: .4rem;
}
button {
  padding: .45rem .9rem; font: inherit; cursor: pointer; border-radius: .4rem;
  border: 1px solid var(--accent); background: var(--accent); color: var(--accent-fg);
}
button.quiet { background: transparent; color: var(--accent); }
button.danger { border-color: var(--danger); background: transparent; color: var(--danger); }
ul.cart { list-style: none; padding: 0; margin: 0; }
ul.cart li { display: flex; justify-content: space-between; align-items: center; padding: .4rem 0; border-bottom: 1px solid var(--line); }
ul.cart li:last-child { border-bottom: none; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: .4rem .5rem; border-bottom: 1px solid var(--line); vertical-align: top; }
th { width: 7rem; font-weight: 600; }
code, pre { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace; font-size: .92em; }
code { background: var(--code); padding: .05rem .3rem; border-radius: .25rem; white-space: nowrap; }
pre code { white-space: pre; }
pre { background: var(--code); padding: .8rem 1rem; border-radius: .4rem; overflow-x: auto; margin: 0; }
footer { color: var(--muted); font-size: .9rem; padding-bottom: 2rem; }
"#;

/// The icon, served at `/favicon.svg`: a cookie, of course.
pub const FAVICON: &str = r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32">
<circle cx="16" cy="16" r="14" fill="#c88a4a"/>
<circle cx="11" cy="11" r="2.4" fill="#4a2c14"/><circle cx="20" cy="9" r="1.8" fill="#4a2c14"/>
<circle cx="21" cy="19" r="2.6" fill="#4a2c14"/><circle cx="12" cy="21" r="2" fill="#4a2c14"/>
</svg>
"##;

/// Escapes text for an HTML element or a double- or single-quoted attribute.
pub fn escape(text: &str) -> String {
    Escaped(text).to_string()
}

/// Text that escapes itself when formatted: `format!("<b>{}</b>", Escaped(name))`.
#[derive(Debug, Clone, Copy)]
pub struct Escaped<'a>(pub &'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        while let Some(at) = rest.find(['&', '<', '>', '"', '\'']) {
            f.write_str(&rest[..at])?;
            f.write_str(match rest.as_bytes()[at] {
                b'&' => "&amp;",
                b'<' => "&lt;",
                b'>' => "&gt;",
                b'"' => "&quot;",
                _ => "&#39;",
            })?;
            rest = &rest[at + 1..];
        }
        f.write_str(rest)
    }
}

/// What the header and the page's colours depend on.
#[derive(Debug, Clone, Default)]
pub struct Chrome {
    /// The logged-in user, shown in the header with a logout button.
    pub user: Option<String>,
    /// The `theme` preference is `"dark"`.
    pub dark: bool,
    /// The page's path, where the theme button comes back to.
    pub path: String,
}

/// A whole page: the header (with the user, if any), `body` (already HTML,
/// its user-supplied parts escaped) and the footer.
pub fn page(status: StatusCode, chrome: &Chrome, title: &str, body: &str) -> Response {
    let who = match &chrome.user {
        Some(user) => format!(
            r#"<a href="/sessions" id="nav-sessions">Sessions</a>
      <span class="who">Logged in as <strong id="nav-user">{}</strong></span>
      <form class="inline" method="post" action="/logout"><button class="quiet" id="logout">Log out</button></form>"#,
            Escaped(user)
        ),
        None => r#"<a href="/login" id="nav-login">Log in</a>"#.to_owned(),
    };
    let (body_class, other_theme, other_label) =
        if chrome.dark { ("dark", "light", "Light theme") } else { ("light", "dark", "Dark theme") };
    let html = format!(
        r#"<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>{title} · sessionkit demo</title>
  <link rel="stylesheet" href="/style.css">
  <link rel="icon" href="/favicon.svg" type="image/svg+xml">
</head>
<body class="{body_class}">
  <header>
    <nav>
      <a class="brand" href="/">sessionkit demo</a>
      <a href="/">Home</a>
      <a href="/cart">Cart</a>
      <a href="/session">Session</a>
      {who}
    </nav>
  </header>
  <main>
{body}
  </main>
  <footer>
    <form class="inline" method="post" action="/prefs/theme">
      <input type="hidden" name="value" value="{other_theme}">
      <input type="hidden" name="back" value="{path}">
      <button class="quiet" id="theme">{other_label}</button>
    </form>
    · Server-side sessions by <a href="https://docs.rs/sessionkit">sessionkit</a>.
    The JSON API is under <code>/api</code>.
  </footer>
</body>
</html>
"#,
        title = Escaped(title),
        path = Escaped(&chrome.path),
    );
    (status, Html(html)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_every_markup_character() {
        assert_eq!(
            escape(r#"<a href="x" title='y'>&amp;</a>"#),
            "&lt;a href=&quot;x&quot; title=&#39;y&#39;&gt;&amp;amp;&lt;/a&gt;"
        );
        assert_eq!(escape("plain, ünïcödé 🙂"), "plain, ünïcödé 🙂");
        assert_eq!(escape(""), "");
        assert_eq!(escape("<<>>"), "&lt;&lt;&gt;&gt;");
    }

    #[test]
    fn the_header_escapes_the_user_name() {
        let chrome = Chrome { user: Some("<img src=x onerror=alert(1)>".to_owned()), ..Chrome::default() };
        let response = page(StatusCode::OK, &chrome, "<t>", "");
        let body = futures_body(response);
        assert!(body.contains("&lt;img src=x onerror=alert(1)&gt;"), "{body}");
        assert!(!body.contains("<img"), "{body}");
        assert!(body.contains("<title>&lt;t&gt; · sessionkit demo</title>"), "{body}");
    }

    fn futures_body(response: Response) -> String {
        let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
        let bytes = runtime.block_on(axum::body::to_bytes(response.into_body(), usize::MAX)).expect("body");
        String::from_utf8(bytes.to_vec()).expect("utf-8")
    }
}
