//! A throwaway PostgreSQL server for tests: `initdb` in a temporary
//! directory, `postgres` on a free loopback port, stopped and restarted at
//! will (to test outages), shut down and removed when dropped, also when a
//! test panics.
//!
//! The binaries come from `PATH` or, where Debian's `postgresql` package
//! puts them, `/usr/lib/postgresql/<version>/bin` (the newest version).
//! PostgreSQL refuses to run as root, and CI runs as root: then the server
//! runs as an unprivileged system user, `sessionkit-pg`, created on first
//! use (or `nobody` where users cannot be added), which owns the temporary
//! directory.
//!
//! Tests call [`PostgresServer::start_or_skip`] (a server of their own) or
//! [`PostgresServer::shared_or_skip`] (one server for the test binary, each
//! test in a schema of its own) and return early on `None`. Without
//! PostgreSQL installed, that is a loud skip on a developer's machine and a
//! failure under `CI=true`, so CI can never pass by skipping.
//!
//! The server keeps `fsync` on, since durability is part of what the tests
//! check; only startup (`initdb --no-sync`) and settings that do not affect
//! what a commit promises are made fast.

use std::fs::File;
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// How long a server may take to accept connections, crash recovery included.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a fast shutdown may take before the server is killed.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);
/// The unprivileged user the server runs as when the tests run as root.
const SERVER_USER: &str = "sessionkit-pg";
/// The superuser `initdb` creates, which every test connects as (trust
/// authentication, on loopback only).
pub const SUPERUSER: &str = "postgres";

/// Settings that keep a test server small and quick without weakening what
/// a commit promises (`fsync`, `synchronous_commit` and `full_page_writes`
/// stay at their durable defaults).
const SETTINGS: &[(&str, &str)] = &[
    ("listen_addresses", "127.0.0.1"),
    ("fsync", "on"),
    ("synchronous_commit", "on"),
    ("max_connections", "300"),
    ("shared_buffers", "64MB"),
    // No WAL archiving or replication: less WAL to write.
    ("wal_level", "minimal"),
    ("max_wal_senders", "0"),
    // Fewer checkpoints during a test run.
    ("max_wal_size", "1GB"),
    ("checkpoint_timeout", "30min"),
    // Parallel workers would need more shared memory than a container's /dev/shm may have.
    ("max_parallel_workers_per_gather", "0"),
    ("jit", "off"),
    ("log_min_messages", "warning"),
    ("log_checkpoints", "off"),
];

/// Who runs the server's programs.
#[derive(Debug, Clone)]
enum Runner {
    /// This process's own user (not root).
    Myself,
    /// An unprivileged user, when this process is root.
    User { name: String, uid: u32, gid: u32 },
}

/// A PostgreSQL server on a loopback port with its cluster in a temporary
/// directory, shut down and removed on drop.
#[derive(Debug)]
pub struct PostgresServer {
    child: Option<Child>,
    port: u16,
    bin: PathBuf,
    runner: Runner,
    // Declared last: dropped after the server has stopped.
    dir: TempDir,
}

impl PostgresServer {
    /// Starts a server of this test's own, or returns `None` after printing
    /// why the test is skipped when PostgreSQL is not installed (and `CI` is
    /// not `true`: there, it panics).
    ///
    /// # Panics
    ///
    /// If PostgreSQL is installed but does not start.
    pub fn start_or_skip() -> Option<Self> {
        let Some(bin) = find_binaries() else {
            skip_or_fail();
            return None;
        };
        Some(Self::start(bin))
    }

    /// The server this test binary shares between its tests: started by the
    /// first test that asks, stopped when the last test holding it is done
    /// (a later test starts another). Give each test a schema or table of
    /// its own ([`unique_name`]). `None` as for [`start_or_skip`](Self::start_or_skip).
    pub fn shared_or_skip() -> Option<Arc<Self>> {
        static SHARED: Mutex<Weak<PostgresServer>> = Mutex::new(Weak::new());
        // Held while starting, so concurrent tests start one server, not several.
        let mut shared = SHARED.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(server) = shared.upgrade() {
            return Some(server);
        }
        let server = Arc::new(Self::start_or_skip()?);
        *shared = Arc::downgrade(&server);
        Some(server)
    }

    fn start(bin: PathBuf) -> Self {
        let runner = runner();
        let dir = match tempfile::Builder::new().prefix("sessionkit-pg-").tempdir() {
            Ok(dir) => dir,
            Err(err) => panic!("cannot create a directory for PostgreSQL: {err}"),
        };
        let mut server = Self { child: None, port: 0, bin, runner, dir };
        if let Err(err) = server.init() {
            panic!("initdb failed:\n{err}");
        }
        // Another process can take the port between our probe and the
        // server's bind; try a few ports before giving up.
        let mut failures = Vec::new();
        for _ in 0..5 {
            server.port = free_port();
            match server.launch() {
                Ok(()) => return server,
                Err(err) => failures.push(err),
            }
        }
        panic!("PostgreSQL did not start:\n{}", failures.join("\n---\n"));
    }

    /// The port it listens on (on 127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of its `postgres` database, as the superuser.
    pub fn url(&self) -> String {
        self.url_of("postgres")
    }

    /// The URL of `database` on this server, as the superuser.
    pub fn url_of(&self, database: &str) -> String {
        format!("postgres://{SUPERUSER}@127.0.0.1:{}/{database}", self.port)
    }

    /// Whether the server process is running.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Shuts the server down (`pg_ctl stop -m fast`: connections are
    /// closed, a checkpoint is written), killing it if that does not work,
    /// and waits until it is gone. Does nothing if it is already stopped.
    pub fn stop(&mut self) {
        self.shut_down("fast");
    }

    /// Stops the server the way a crash would (`pg_ctl stop -m immediate`:
    /// no checkpoint, nothing flushed; the next start replays the WAL).
    pub fn crash(&mut self) {
        self.shut_down("immediate");
    }

    /// Starts the server again on the same port with the same data (after a
    /// [`stop`](Self::stop) or [`crash`](Self::crash), or stopping it first)
    /// and waits until it accepts connections.
    ///
    /// # Panics
    ///
    /// If it does not come up.
    pub fn restart(&mut self) {
        self.stop();
        if let Err(err) = self.launch() {
            panic!("PostgreSQL did not restart on port {}:\n{err}", self.port);
        }
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("postgres.log")
    }

    /// A command for the PostgreSQL program `program`, run as the runner.
    fn command(&self, program: &str) -> Command {
        let mut command = Command::new(self.bin.join(program));
        command.current_dir(self.dir.path()).stdin(Stdio::null());
        if let Runner::User { uid, gid, .. } = self.runner {
            // std drops root's supplementary groups before switching user.
            command.uid(uid).gid(gid);
        }
        command
    }

    fn init(&mut self) -> Result<(), String> {
        if let Runner::User { name, uid, gid } = &self.runner {
            std::os::unix::fs::chown(self.dir.path(), Some(*uid), Some(*gid))
                .map_err(|err| format!("cannot hand {} to user {name}: {err}", self.dir.path().display()))?;
        }
        let output = self
            .command("initdb")
            .arg("-D")
            .arg(self.data_dir())
            .args(["-U", SUPERUSER, "--auth=trust", "--encoding=UTF8", "--locale=C"])
            // The cluster's initial files need not survive a power cut: a
            // test server never outlives one. Commits are synced as usual.
            .arg("--no-sync")
            .output()
            .map_err(|err| format!("cannot run initdb: {err}"))?;
        check(&output, "initdb")
    }

    fn launch(&mut self) -> Result<(), String> {
        let log_path = self.log_path();
        let log = File::create(&log_path).map_err(|err| format!("cannot create {}: {err}", log_path.display()))?;
        let log_err = log.try_clone().map_err(|err| format!("cannot share the log file: {err}"))?;
        let mut command = self.command("postgres");
        command.arg("-D").arg(self.data_dir()).args(["-p", &self.port.to_string()]);
        // The socket in the temporary directory, not in /var/run/postgresql.
        command.arg("-k").arg(self.dir.path());
        for (name, value) in SETTINGS {
            command.arg("-c").arg(format!("{name}={value}"));
        }
        let child = command
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .map_err(|err| format!("cannot run {}: {err}", self.bin.join("postgres").display()))?;
        self.child = Some(child);
        let started = Instant::now();
        loop {
            if self.accepts_connections() {
                return Ok(());
            }
            let exited = self.child.as_mut().and_then(|child| child.try_wait().ok().flatten());
            if exited.is_some() || started.elapsed() > STARTUP_TIMEOUT {
                self.shut_down("immediate");
                return Err(format!(
                    "PostgreSQL on port {} {}; its log:\n{}",
                    self.port,
                    if exited.is_some() { "exited" } else { "did not become ready in time" },
                    read(&log_path)
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether our postmaster says it is ready: `postmaster.pid` names its
    /// pid on the first line (not a killed predecessor's, whose file may be
    /// left over), and its status line, the eighth, reads `ready` once it
    /// accepts connections, after any crash recovery.
    fn accepts_connections(&self) -> bool {
        let Some(pid) = self.child.as_ref().map(Child::id) else { return false };
        let Ok(pid_file) = std::fs::read_to_string(self.data_dir().join("postmaster.pid")) else { return false };
        let lines: Vec<&str> = pid_file.lines().map(str::trim).collect();
        lines.first() == Some(&pid.to_string().as_str()) && lines.get(7) == Some(&"ready")
    }

    fn shut_down(&mut self, mode: &str) {
        let Some(mut child) = self.child.take() else { return };
        if child.try_wait().ok().flatten().is_none() {
            let timeout = SHUTDOWN_TIMEOUT.as_secs().to_string();
            let stopped = self
                .command("pg_ctl")
                .arg("stop")
                .arg("-D")
                .arg(self.data_dir())
                .args(["-m", mode, "-w", "-t", &timeout])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|status| status.success());
            if !stopped {
                // An error here means it already exited; `wait` reaps it either way.
                let _ = child.kill();
            }
        }
        let _ = child.wait();
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        self.shut_down("fast");
    }
}

/// A name no other caller in this process got: `{prefix}_{n}`, a valid
/// lowercase identifier if `prefix` is one. For giving each test its own
/// schema or table on a shared server.
pub fn unique_name(prefix: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!("{prefix}_{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// Whether PostgreSQL's server programs can be found.
pub fn postgres_installed() -> bool {
    find_binaries().is_some()
}

/// The directory holding `initdb`, `postgres` and `pg_ctl`: the first on
/// `PATH` that has all three, else Debian's `/usr/lib/postgresql/<version>/bin`
/// of the highest version.
fn find_binaries() -> Option<PathBuf> {
    let complete = |dir: &Path| ["initdb", "postgres", "pg_ctl"].iter().all(|program| dir.join(program).is_file());
    let on_path =
        std::env::var_os("PATH").into_iter().flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>());
    if let Some(dir) = on_path.into_iter().find(|dir| complete(dir)) {
        return Some(dir);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version = entry.file_name().to_str()?.parse().ok()?;
            Some((version, entry.path().join("bin")))
        })
        .filter(|(_, bin)| complete(bin))
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

/// Who runs the server: this process's user, or, as root, the unprivileged
/// [`SERVER_USER`], created if missing (`nobody` where it cannot be).
fn runner() -> Runner {
    let root = run_id(&["-u"]).is_some_and(|uid| uid == 0);
    if !root {
        return Runner::Myself;
    }
    if lookup(SERVER_USER).is_none() {
        // Two test binaries may race to create it; whoever loses finds it.
        let _ = Command::new("useradd")
            .args(["--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SERVER_USER])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
    for name in [SERVER_USER, "nobody"] {
        if let Some((uid, gid)) = lookup(name) {
            return Runner::User { name: name.to_owned(), uid, gid };
        }
    }
    panic!("running as root, and neither user {SERVER_USER} (useradd failed) nor nobody exists to run PostgreSQL");
}

/// The uid and gid of user `name`, if it exists.
fn lookup(name: &str) -> Option<(u32, u32)> {
    Some((run_id(&["-u", name])?, run_id(&["-g", name])?))
}

/// `id ARGS` as a number, if it succeeds.
fn run_id(args: &[&str]) -> Option<u32> {
    let output = Command::new("id").args(args).stderr(Stdio::null()).output().ok()?;
    if !output.status.success() {
        return None;
    }
    String::from_utf8(output.stdout).ok()?.trim().parse().ok()
}

/// The skipping rule: fail under `CI=true`, otherwise say loudly that this
/// test did not run and how to run it.
fn skip_or_fail() {
    let test = std::thread::current().name().unwrap_or("a PostgreSQL test").to_owned();
    if std::env::var("CI").is_ok_and(|ci| ci == "true") {
        panic!(
            "{test}: PostgreSQL (initdb, postgres, pg_ctl) not found, and CI=true forbids skipping; \
             scripts/install-test-deps installs it"
        );
    }
    // Straight to stderr: the test harness captures `eprintln!` of passing
    // tests, and a skip must not be silent.
    let _ = writeln!(
        std::io::stderr(),
        "*** SKIPPED {test}: PostgreSQL not found; install it with `apt-get install postgresql` or run scripts/test ***"
    );
}

fn check(output: &Output, what: &str) -> Result<(), String> {
    if output.status.success() {
        return Ok(());
    }
    Err(format!(
        "{what} exited with {}:\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    ))
}

/// A port nobody listened on a moment ago.
fn free_port() -> u16 {
    match TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).and_then(|listener| listener.local_addr()) {
        Ok(addr) => addr.port(),
        Err(err) => panic!("cannot find a free loopback port: {err}"),
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|err| format!("(cannot read {}: {err})", path.display()))
}
