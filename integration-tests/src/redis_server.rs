//! A throwaway `redis-server` for tests: started on a free loopback port in
//! its own temporary directory, stopped and restarted at will (to test
//! outages), killed when dropped.
//!
//! Tests call [`RedisServer::start_or_skip`] and return early on `None`.
//! Without `redis-server` on `PATH`, that is a loud skip on a developer's
//! machine and a failure under `CI=true`, so CI can never pass by skipping.

use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// How long a server may take to answer its first `PING`.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(15);

/// Whether the data survives a [`RedisServer::stop`] and
/// [`RedisServer::restart`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Persistence {
    /// Memory only (`--save "" --appendonly no`): a restart starts empty.
    None,
    /// An append-only file synced on every write (`--appendonly yes
    /// --appendfsync always`): everything acknowledged survives even a kill.
    EveryWrite,
}

/// A running `redis-server` child process, killed on drop.
#[derive(Debug)]
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    persistence: Persistence,
    dir: TempDir,
}

impl RedisServer {
    /// Starts a memory-only server, or returns `None` after printing why
    /// this test is skipped when `redis-server` is not installed (and `CI`
    /// is not `true`: there, it panics).
    pub fn start_or_skip() -> Option<Self> {
        Self::start_with_or_skip(Persistence::None)
    }

    /// Like [`RedisServer::start_or_skip`], with the given persistence.
    pub fn start_with_or_skip(persistence: Persistence) -> Option<Self> {
        if !redis_server_installed() {
            skip_or_fail();
            return None;
        }
        let dir = match tempfile::tempdir() {
            Ok(dir) => dir,
            Err(err) => panic!("cannot create a directory for redis-server: {err}"),
        };
        let mut server = Self { child: None, port: 0, persistence, dir };
        // Another process can take the port between our probe and Redis's
        // bind; try a few ports before giving up.
        let mut failures = Vec::new();
        for _ in 0..5 {
            server.port = free_port();
            match server.launch() {
                Ok(()) => return Some(server),
                Err(err) => failures.push(err),
            }
        }
        panic!("redis-server did not start:\n{}", failures.join("\n---\n"));
    }

    /// The port it listens on (on 127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its URL, for `RedisStore::open` or `redis::Client::open`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Kills the server (SIGKILL: a crash, not a clean shutdown) and waits
    /// until it is gone. Does nothing if it is already stopped.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // An error here means it already exited; `wait` reaps it either way.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and directory (with
    /// [`Persistence::EveryWrite`], with the same data) and waits until it
    /// answers.
    ///
    /// # Panics
    ///
    /// If it does not come up.
    pub fn restart(&mut self) {
        self.stop();
        if let Err(err) = self.launch() {
            panic!("redis-server did not restart on port {}:\n{err}", self.port);
        }
    }

    fn launch(&mut self) -> Result<(), String> {
        let log_path = self.dir.path().join("redis.log");
        let log = File::create(&log_path).map_err(|err| format!("cannot create {}: {err}", log_path.display()))?;
        let log_err = log.try_clone().map_err(|err| format!("cannot share the log file: {err}"))?;
        let mut command = Command::new("redis-server");
        command
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--daemonize", "no", "--save", ""])
            .arg("--dir")
            .arg(self.dir.path())
            .args(["--loglevel", "warning"])
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err);
        match self.persistence {
            Persistence::None => command.args(["--appendonly", "no"]),
            Persistence::EveryWrite => command.args(["--appendonly", "yes", "--appendfsync", "always"]),
        };
        let child = command.spawn().map_err(|err| format!("cannot run redis-server: {err}"))?;
        self.child = Some(child);
        let started = Instant::now();
        loop {
            if ping(self.port) {
                return Ok(());
            }
            let exited = self.child.as_mut().and_then(|child| child.try_wait().ok().flatten());
            if exited.is_some() || started.elapsed() > STARTUP_TIMEOUT {
                self.stop();
                return Err(format!(
                    "redis-server on port {} {}; its log:\n{}",
                    self.port,
                    if exited.is_some() { "exited" } else { "did not answer PING in time" },
                    read_log(&log_path)
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Whether `redis-server` can be run.
pub fn redis_server_installed() -> bool {
    match Command::new("redis-server").arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status() {
        Ok(status) => status.success(),
        Err(err) if err.kind() == ErrorKind::NotFound => false,
        Err(err) => panic!("cannot run redis-server --version: {err}"),
    }
}

/// The skipping rule: fail under `CI=true`, otherwise say loudly that this
/// test did not run and how to run it.
fn skip_or_fail() {
    let test = std::thread::current().name().unwrap_or("a Redis test").to_owned();
    if std::env::var("CI").is_ok_and(|ci| ci == "true") {
        panic!("{test}: redis-server not found, and CI=true forbids skipping; scripts/install-test-deps installs it");
    }
    // Straight to stderr: the test harness captures `eprintln!` of passing
    // tests, and a skip must not be silent.
    let _ = writeln!(
        std::io::stderr(),
        "*** SKIPPED {test}: redis-server not found; install it with `apt-get install redis-server` or run scripts/test ***"
    );
}

/// A port nobody listened on a moment ago.
fn free_port() -> u16 {
    match TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).and_then(|listener| listener.local_addr()) {
        Ok(addr) => addr.port(),
        Err(err) => panic!("cannot find a free loopback port: {err}"),
    }
}

/// Whether a Redis on `port` answers `PING` with `PONG` (not `LOADING`).
fn ping(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    if stream.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut reply = [0u8; 7];
    stream.read_exact(&mut reply).is_ok() && &reply == b"+PONG\r\n"
}

fn read_log(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|err| format!("(cannot read {}: {err})", path.display()))
}
