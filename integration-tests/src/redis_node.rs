//! One `redis-server` process of a test deployment (a Cluster node, a
//! primary, a replica, a sentinel, a TLS-only server): started in its own
//! directory on a loopback port, killed (SIGKILL, a crash) and restarted on
//! the same port and directory at will, killed when dropped, also when a
//! test panics.
//!
//! Also the rules shared by the deployments in `redis_cluster`,
//! `redis_sentinel` and `redis_tls`: which programs they need (missing ones
//! are a loud skip, or a failure under `CI=true`), free loopback ports, and a
//! small synchronous client to ask a node how it is.

use std::ffi::OsString;
use std::fs::File;
use std::io::{ErrorKind, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a node may take to accept connections.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(15);

/// How a started node shows it is ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ready {
    /// It answers `PING` over plain TCP.
    Ping,
    /// It accepts TCP connections (a TLS-only server, which the harness does
    /// not speak TLS to).
    Listening,
}

/// A `redis-server` child process, killed on drop.
#[derive(Debug)]
pub struct RedisNode {
    name: String,
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
    args: Vec<OsString>,
    ready: Ready,
}

impl RedisNode {
    /// Starts `redis-server args...` in `dir` (created if missing), which
    /// must make it listen on `port`, and waits until it is ready.
    ///
    /// # Panics
    ///
    /// If it does not come up; the message holds its log.
    pub fn start(name: impl Into<String>, dir: PathBuf, port: u16, args: Vec<OsString>, ready: Ready) -> Self {
        if let Err(err) = std::fs::create_dir_all(&dir) {
            panic!("cannot create {}: {err}", dir.display());
        }
        let mut node = Self { name: name.into(), child: None, port, dir, args, ready };
        if let Err(err) = node.launch() {
            panic!("{err}");
        }
        node
    }

    /// The port it listens on, on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its working directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether it is running (not killed).
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Kills it (SIGKILL: a crash, not a shutdown) and waits until it is gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // An error means it already exited; `wait` reaps it either way.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again with the same arguments, port and directory (whatever
    /// it wrote there, such as a Cluster's `nodes.conf`, is still there).
    ///
    /// # Panics
    ///
    /// If it does not come up.
    pub fn restart(&mut self) {
        self.kill();
        if let Err(err) = self.launch() {
            panic!("{err}");
        }
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        let path = self.dir.join("redis.log");
        std::fs::read_to_string(&path).unwrap_or_else(|err| format!("(cannot read {}: {err})", path.display()))
    }

    fn launch(&mut self) -> Result<(), String> {
        let log_path = self.dir.join("redis.log");
        let log = File::options()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|err| format!("cannot open {}: {err}", log_path.display()))?;
        let log_err = log.try_clone().map_err(|err| format!("cannot share the log file: {err}"))?;
        let child = Command::new("redis-server")
            .args(&self.args)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .map_err(|err| format!("cannot run redis-server for {}: {err}", self.name))?;
        self.child = Some(child);
        let started = Instant::now();
        loop {
            let ready = match self.ready {
                Ready::Ping => ping(self.port),
                Ready::Listening => listening(self.port),
            };
            if ready {
                return Ok(());
            }
            let exited = self.child.as_mut().and_then(|child| child.try_wait().ok().flatten());
            if exited.is_some() || started.elapsed() > STARTUP_TIMEOUT {
                self.kill();
                return Err(format!(
                    "redis-server {} on port {} {}; its log:\n{}",
                    self.name,
                    self.port,
                    if exited.is_some() { "exited" } else { "did not come up in time" },
                    self.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for RedisNode {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Arguments every test node shares: loopback only, in the foreground, no
/// persistence (a restarted node starts empty, as after losing its disk),
/// quiet logs.
pub fn base_args(port: u16) -> Vec<OsString> {
    ["--port", &port.to_string(), "--bind", "127.0.0.1", "--daemonize", "no", "--save", "", "--appendonly", "no"]
        .into_iter()
        .chain(["--loglevel", "notice"])
        .map(OsString::from)
        .collect()
}

/// Whether every one of `programs` is installed. If not: under `CI=true`
/// a panic (CI must never pass by skipping), otherwise a loud skip message
/// and `false`.
pub fn programs_or_skip(programs: &[&str]) -> bool {
    let missing: Vec<&str> = programs.iter().copied().filter(|program| !installed(program)).collect();
    if missing.is_empty() {
        return true;
    }
    let test = std::thread::current().name().unwrap_or("a Redis test").to_owned();
    let missing = missing.join(", ");
    if std::env::var("CI").is_ok_and(|ci| ci == "true") {
        panic!("{test}: {missing} not found, and CI=true forbids skipping; scripts/install-test-deps installs it");
    }
    // Straight to stderr: the harness captures `eprintln!` of passing tests.
    let _ = writeln!(
        std::io::stderr(),
        "*** SKIPPED {test}: {missing} not found; install redis-server and redis-tools or run scripts/test ***"
    );
    false
}

fn installed(program: &str) -> bool {
    match Command::new(program).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status() {
        Ok(status) => status.success(),
        Err(err) if err.kind() == ErrorKind::NotFound => false,
        Err(err) => panic!("cannot run {program} --version: {err}"),
    }
}

/// `count` distinct ports that nobody listened on a moment ago.
pub fn free_ports(count: usize) -> Vec<u16> {
    // Hold every listener until all are chosen, so that no port repeats.
    let listeners: Vec<TcpListener> = (0..count)
        .map(|_| match TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))) {
            Ok(listener) => listener,
            Err(err) => panic!("cannot find a free loopback port: {err}"),
        })
        .collect();
    listeners
        .iter()
        .map(|listener| match listener.local_addr() {
            Ok(addr) => addr.port(),
            Err(err) => panic!("cannot read a listener's port: {err}"),
        })
        .collect()
}

fn listening(port: u16) -> bool {
    TcpStream::connect_timeout(&SocketAddr::from((Ipv4Addr::LOCALHOST, port)), Duration::from_millis(200)).is_ok()
}

fn ping(port: u16) -> bool {
    query::<String>(port, &redis::cmd("PING")).is_ok_and(|pong| pong == "PONG")
}

/// Sends one command to the node on `port` (plain TCP, short timeouts).
pub fn query<T: redis::FromRedisValue>(port: u16, cmd: &redis::Cmd) -> redis::RedisResult<T> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/"))?;
    let mut connection = client.get_connection_with_timeout(Duration::from_millis(500))?;
    connection.set_read_timeout(Some(Duration::from_secs(2)))?;
    connection.set_write_timeout(Some(Duration::from_secs(2)))?;
    cmd.query(&mut connection)
}

/// One `field:value` line of an `INFO`-style reply.
pub fn info_field(info: &str, field: &str) -> Option<String> {
    info.lines().find_map(|line| line.strip_prefix(field)?.strip_prefix(':').map(|value| value.trim().to_owned()))
}

/// Polls `probe` every 50 ms until it returns `Some`, for at most `limit`.
///
/// # Panics
///
/// When `limit` passes, with `what` and the last `Err` the probe gave.
pub fn wait_for<T>(what: &str, limit: Duration, mut probe: impl FnMut() -> Result<T, String>) -> T {
    let started = Instant::now();
    loop {
        match probe() {
            Ok(value) => return value,
            Err(last) if started.elapsed() > limit => panic!("{what}: not within {limit:?}; last: {last}"),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// The live sessions a `RedisStore` with `prefix` (no glob characters)
/// keeps on the node at `port` (on a Cluster: the keys that node holds),
/// sorted: hashes named exactly `<prefix>{<store key>}` whose marker field
/// says layout `2`. A rename's short-lived `moved` marker under the old key
/// and the tombstone of a rename stopped by a logout (markers `moved` and
/// `gone`), leases (`...}:lease`) and user indexes (`<prefix>user:{...}`)
/// are not sessions, and neither is an expired hash (`KEYS` skips those).
pub fn live_sessions(port: u16, prefix: &str) -> Vec<String> {
    const MARKER: &[u8] = b"\xffsessionkit";
    let connect = || -> redis::RedisResult<redis::Connection> {
        let client = redis::Client::open(format!("redis://127.0.0.1:{port}/"))?;
        let connection = client.get_connection_with_timeout(Duration::from_millis(500))?;
        connection.set_read_timeout(Some(Duration::from_secs(5)))?;
        Ok(connection)
    };
    let mut connection = connect().unwrap_or_else(|err| panic!("cannot connect to node {port}: {err}"));
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}{{*"))
        .query(&mut connection)
        .unwrap_or_else(|err| panic!("KEYS on node {port}: {err}"));
    let shaped: Vec<String> = keys
        .into_iter()
        .filter(|key| {
            let inner = key.strip_prefix(prefix).and_then(|rest| rest.strip_prefix('{')?.strip_suffix('}'));
            inner.is_some_and(|inner| sessionkit::StoreKey::parse(inner).is_some())
        })
        .collect();
    if shaped.is_empty() {
        return shaped;
    }
    let mut pipeline = redis::pipe();
    for key in &shaped {
        pipeline.hget(key, MARKER);
    }
    let markers: Vec<Option<Vec<u8>>> =
        pipeline.query(&mut connection).unwrap_or_else(|err| panic!("HGET on node {port}: {err}"));
    let mut live: Vec<String> = shaped
        .into_iter()
        .zip(markers)
        .filter(|(_, marker)| marker.as_deref() == Some(b"2".as_slice()))
        .map(|(key, _)| key)
        .collect();
    live.sort();
    live
}
