//! The `sessionkit-demo` binary as a newcomer runs it: its help, its
//! answers to bad flags, an unusable data path, an unreachable Redis and a
//! port in use (a message and a non-zero exit, never a panic), and a real
//! start that prints its URL, serves, stops on SIGINT and finds its
//! sessions again after a restart.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::process::{Child, ChildStdout, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_sessionkit-demo");

/// How long any one run may take before the test calls it hung.
const RUN_TIMEOUT: Duration = Duration::from_secs(30);

/// The demo with `args`, in `dir`, with backtraces on: a panic would show.
fn command(dir: &std::path::Path, args: &[&str]) -> Command {
    let mut command = Command::new(BIN);
    command.args(args).current_dir(dir).env("RUST_BACKTRACE", "1").env_remove("RUST_LOG").stdin(Stdio::null());
    command
}

/// Runs the demo to completion (it must exit by itself within
/// [`RUN_TIMEOUT`]).
fn run(dir: &std::path::Path, args: &[&str]) -> Output {
    let mut child = command(dir, args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn the demo");
    let deadline = Instant::now() + RUN_TIMEOUT;
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let output = child.wait_with_output().expect("output");
            panic!("{args:?} did not exit within {RUN_TIMEOUT:?}: {}", String::from_utf8_lossy(&output.stderr));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

/// Checks a run failed with `code`, a message containing each of
/// `expected`, and no panic.
fn assert_fails(output: &Output, code: i32, expected: &[&str]) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(code), "{stderr}");
    for text in expected {
        assert!(stderr.contains(text), "expected {text:?} in:\n{stderr}");
    }
    assert!(!stderr.contains("panicked") && !stderr.contains("backtrace"), "{stderr}");
    assert!(output.stdout.is_empty(), "nothing on stdout: {}", String::from_utf8_lossy(&output.stdout));
    stderr
}

#[test]
fn help_lists_every_flag() {
    let dir = tempfile::tempdir().expect("tempdir");
    let output = run(dir.path(), &["--help"]);
    assert_eq!(output.status.code(), Some(0));
    let help = String::from_utf8_lossy(&output.stdout);
    for flag in ["--addr", "--store", "--data", "--redis-url", "--ttl", "--rolling", "--insecure-cookies"] {
        assert!(help.contains(flag), "{flag} in:\n{help}");
    }
    assert!(help.contains("[default: 127.0.0.1:3000]") && help.contains("[default: redb]"), "{help}");
    assert!(help.contains("memory") && help.contains("sqlite") && help.contains("redis"), "{help}");
}

#[test]
fn bad_flags_are_usage_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases: [(&[&str], &[&str]); 9] = [
        (&["--bogus"], &["unexpected argument '--bogus'", "Usage:"]),
        (&["--store", "postgres"], &["invalid value 'postgres'", "memory, file, sqlite, redb, redis", "postgres://"]),
        (&["--ttl", "0"], &["--ttl", "at least 1"]),
        (&["--addr", "localhost"], &["invalid value 'localhost' for '--addr"]),
        (&["--store", "memory", "--data", "x"], &["--data is for the file, sqlite and redb stores"]),
        (&["--redis-url", "redis://127.0.0.1/"], &["--redis-url needs --store redis"]),
        (&["--store", "mongodb://ada:hunter2@db/"], &["unknown session store URL", "ada:***@db", "postgres://"]),
        (&["--store", "redb:s.redb", "--data", "t.redb"], &["--data is for the short forms", "already says where"]),
        (&["--cart-limit", "0"], &["--cart-limit", "from 1 to 1000"]),
    ];
    for (args, expected) in cases {
        let stderr = assert_fails(&run(dir.path(), args), 2, expected);
        assert!(!stderr.contains("hunter2"), "a password is never printed: {stderr}");
    }
    assert!(std::fs::read_dir(dir.path()).expect("dir").next().is_none(), "a bad command line creates nothing");
}

#[test]
fn an_unusable_data_path_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("a-file");
    std::fs::write(&file, "not a directory").expect("write");
    let under_file = file.join("sessions.redb");
    let under_file = under_file.to_str().expect("utf-8");
    let stderr = assert_fails(
        &run(dir.path(), &["--addr", "127.0.0.1:0", "--data", under_file]),
        1,
        &["error: cannot create the directory", "a-file", "is not a directory", "hint: "],
    );
    assert!(stderr.lines().count() <= 4, "short: {stderr}");

    for store in ["sqlite", "file"] {
        assert_fails(
            &run(dir.path(), &["--addr", "127.0.0.1:0", "--store", store, "--data", under_file]),
            1,
            &["error: cannot", "a-file"],
        );
    }
    // Even root cannot create files in /proc.
    assert_fails(
        &run(dir.path(), &["--addr", "127.0.0.1:0", "--data", "/proc/sessionkit-demo/sessions.redb"]),
        1,
        &["error: cannot", "/proc/sessionkit-demo"],
    );
}

#[test]
fn an_unreachable_redis_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let output = run(dir.path(), &["--addr", "127.0.0.1:0", "--store", "redis", "--redis-url", "redis://127.0.0.1:1/"]);
    assert_fails(&output, 1, &["error: cannot use Redis at redis://127.0.0.1:1/", "hint: is a Redis server running"]);
    let output = run(dir.path(), &["--addr", "127.0.0.1:0", "--store", "redis", "--redis-url", "http://127.0.0.1/"]);
    assert_fails(&output, 1, &["error: cannot use Redis at http://127.0.0.1/", "invalid Redis URL"]);
    let output =
        run(dir.path(), &["--addr", "127.0.0.1:0", "--store", "redis", "--redis-url", "redis://:hunter2@127.0.0.1:1/"]);
    let stderr = assert_fails(&output, 1, &["redis://:***@127.0.0.1:1/"]);
    assert!(!stderr.contains("hunter2"), "the password is not printed: {stderr}");
}

#[test]
fn store_urls_that_cannot_be_opened_are_clear_errors_without_passwords() {
    let dir = tempfile::tempdir().expect("tempdir");
    let output = run(dir.path(), &["--addr", "127.0.0.1:0", "--store", "redis://:hunter2@127.0.0.1:1/"]);
    let stderr = assert_fails(&output, 1, &["error: cannot use Redis at redis://:***@127.0.0.1:1/", "hint: "]);
    assert!(!stderr.contains("hunter2"), "{stderr}");
    let output = run(dir.path(), &["--addr", "127.0.0.1:0", "--store", "postgres://ada:hunter2@127.0.0.1:1/app"]);
    let stderr = assert_fails(
        &output,
        1,
        &["error: cannot use PostgreSQL at postgres://ada:***@127.0.0.1:1/app", "hint: is PostgreSQL running"],
    );
    assert!(!stderr.contains("hunter2"), "{stderr}");
    let file = dir.path().join("a-file");
    std::fs::write(&file, "not a directory").expect("write");
    let under_file = format!("sqlite:{}", file.join("s.db").display());
    assert_fails(
        &run(dir.path(), &["--addr", "127.0.0.1:0", "--store", &under_file]),
        1,
        &["error: cannot create the directory", "a-file", "is not a directory"],
    );
}

#[test]
fn a_port_in_use_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let taken = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let output = run(dir.path(), &["--addr", &addr, "--store", "memory"]);
    assert_fails(&output, 1, &[&format!("error: cannot listen on {addr}"), "hint: "]);
}

/// A running demo, killed if the test fails before stopping it.
struct Running {
    child: Child,
    stdout: BufReader<ChildStdout>,
    url: String,
}

impl Running {
    /// Starts the demo on its default store and reads the URL from its
    /// first line.
    fn start(dir: &std::path::Path, args: &[&str]) -> Self {
        Self::start_on(dir, args, "redb at ")
    }

    /// Starts the demo and reads the URL from its first line, which must
    /// name the store as `store` (a prefix of the label) says.
    fn start_on(dir: &std::path::Path, args: &[&str], store: &str) -> Self {
        let mut child = command(dir, args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        stdout.read_line(&mut line).expect("the first line");
        let url = line
            .strip_prefix("sessionkit demo listening on ")
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_owned();
        assert!(line.contains(&format!("(store: {store}")), "{line}");
        Self { child, stdout, url }
    }

    /// Sends SIGINT, as Ctrl-C does, and waits for a clean exit.
    fn interrupt(mut self) -> String {
        let status = Command::new("kill").args(["-INT", &self.child.id().to_string()]).status().expect("kill");
        assert!(status.success());
        let deadline = Instant::now() + RUN_TIMEOUT;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                break status;
            }
            assert!(Instant::now() < deadline, "the demo did not stop on SIGINT");
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut rest = String::new();
        self.stdout.read_to_string(&mut rest).expect("stdout");
        assert!(status.success(), "a clean exit on Ctrl-C: {status}");
        rest
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 request over a plain socket (the binary is tested from
/// the outside, as curl would): the status line, the `id` cookie set if
/// any, and the body.
fn http(url: &str, method: &str, path: &str, cookie: Option<&str>, body: &str) -> (String, Option<String>, String) {
    let host = url.strip_prefix("http://").expect("http URL");
    let mut stream = TcpStream::connect(host).expect("connect");
    stream.set_read_timeout(Some(RUN_TIMEOUT)).expect("timeout");
    let cookie = cookie.map(|cookie| format!("Cookie: {cookie}\r\n")).unwrap_or_default();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\n{cookie}Content-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    let (head, body) = response.split_once("\r\n\r\n").expect("a head and a body");
    let status = head.lines().next().unwrap_or_default().to_owned();
    let set_cookie = head
        .lines()
        .filter_map(|line| line.strip_prefix("set-cookie: "))
        .find(|value| value.starts_with("id="))
        .map(|value| value.split(';').next().unwrap_or_default().to_owned());
    (status, set_cookie, body.to_owned())
}

#[test]
fn it_starts_prints_its_url_serves_and_keeps_sessions_across_restarts() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The defaults but the port: the data goes to ./sessionkit-demo-data.
    let demo = Running::start(dir.path(), &["--addr", "127.0.0.1:0"]);
    assert!(demo.url.starts_with("http://127.0.0.1:") && !demo.url.ends_with(":0"), "{}", demo.url);
    assert!(dir.path().join("sessionkit-demo-data/sessions.redb").is_file());

    let (status, cookie, body) = http(&demo.url, "GET", "/api/counter", None, "");
    assert_eq!((status.as_str(), body.as_str()), ("HTTP/1.1 200 OK", r#"{"visits":1}"#));
    let cookie = cookie.expect("the first visit sets the cookie");
    let (_, cookie, _) = http(&demo.url, "POST", "/api/login", Some(&cookie), r#"{"user":"ada"}"#);
    let cookie = cookie.expect("login sets a new cookie");
    let (status, _, page) = http(&demo.url, "GET", "/", Some(&cookie), "");
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(page.contains("Hello, ada!"), "{page}");
    let rest = demo.interrupt();
    assert!(rest.contains("shutting down"), "{rest}");

    let demo = Running::start(dir.path(), &["--addr", "127.0.0.1:0"]);
    let (_, _, me) = http(&demo.url, "GET", "/api/me", Some(&cookie), "");
    assert_eq!(me, r#"{"user":"ada","visits":2,"cart":[],"saved":[],"prefs":{}}"#, "the session survived the restart");
    demo.interrupt();
}

#[test]
fn store_urls_work_like_the_short_forms() {
    let dir = tempfile::tempdir().expect("tempdir");
    let at = |path: &str| dir.path().join(path).display().to_string();
    // Relative paths are the working directory's, shown absolute.
    for (url, label) in [
        ("sqlite:nested/s.sqlite3".to_owned(), format!("sqlite at {})", at("nested/s.sqlite3"))),
        ("redb:r/s.redb".to_owned(), format!("redb at {})", at("r/s.redb"))),
        (format!("file:{}", at("files")), format!("file at {})", at("files"))),
    ] {
        let demo = Running::start_on(dir.path(), &["--addr", "127.0.0.1:0", "--store", &url], &label);
        let (_, cookie, _) = http(&demo.url, "POST", "/api/login", None, r#"{"user":"ada"}"#);
        let cookie = cookie.expect("login sets the cookie");
        let (status, _, _) = http(&demo.url, "POST", "/api/cart", Some(&cookie), r#"{"item":"tea"}"#);
        assert_eq!(status, "HTTP/1.1 200 OK", "{url}");
        demo.interrupt();

        let demo = Running::start_on(dir.path(), &["--addr", "127.0.0.1:0", "--store", &url], &label);
        let (_, _, me) = http(&demo.url, "GET", "/api/me", Some(&cookie), "");
        assert_eq!(me, r#"{"user":"ada","visits":0,"cart":["tea"],"saved":[],"prefs":{}}"#, "{url} kept the session");
        demo.interrupt();
    }
    let demo = Running::start_on(dir.path(), &["--addr", "127.0.0.1:0", "--store", "memory:"], "memory (");
    let (status, _, body) = http(&demo.url, "GET", "/api/counter", None, "");
    assert_eq!((status.as_str(), body.as_str()), ("HTTP/1.1 200 OK", r#"{"visits":1}"#));
    demo.interrupt();
}
