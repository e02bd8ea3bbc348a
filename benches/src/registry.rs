//! The stores under test. Every benchmark runs against every store listed in
//! [`STORES`]: adding a store to the benchmarks is one line there.
//!
//! `SESSIONKIT_BENCH_STORES=memory,redb` restricts a run to some stores.
//!
//! Redis runs when a server is reachable: the one at
//! `SESSIONKIT_BENCH_REDIS_URL` if set, else a private `redis-server`
//! started on a free loopback port (no persistence) if that program is
//! installed; otherwise the Redis store is skipped, and says so.
//!
//! PostgreSQL likewise: the database at `SESSIONKIT_BENCH_POSTGRES_URL` if
//! set (the store's table there, `sessionkit_bench.http_sessions`, is
//! emptied at each open), else a private server (fsync on) started with the
//! integration tests' harness if PostgreSQL is installed; otherwise skipped.

use std::future::Future;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sessionkit::{SessionStore, StoreError};
use sessionkit_stores::{FileStore, MemoryStore, PostgresStore, RedbStore, RedisStore, SqliteStore};
use tempfile::TempDir;

/// An opened store, whatever must live as long as it (a server), and the
/// server's URL (for a peer's store on the same server).
pub type Opened = (Arc<dyn SessionStore>, Option<Guard>, Option<String>);

/// Something a store needs alive beside it: a server process.
pub type Guard = Box<dyn std::any::Any + Send + Sync>;

// The tests' PostgreSQL harness (initdb, an unprivileged user under root,
// stop on drop), shared rather than copied. Benchmarks use only part of it.
#[allow(dead_code)]
#[path = "../../integration-tests/src/postgres_server.rs"]
mod postgres_server;

/// A store being opened: `Ok(None)` when it cannot run on this machine (a
/// server that is not reachable), which skips it.
pub type Opening = Pin<Box<dyn Future<Output = Result<Option<Opened>, StoreError>> + Send>>;

/// One store the benchmarks know how to open.
#[derive(Debug)]
pub struct StoreSpec {
    /// Its name in benchmark ids and in the report.
    pub name: &'static str,
    /// Whether it acknowledges writes only once they are on disk.
    pub durable: bool,
    /// Whether its operations wait on I/O (a disk or a server): such stores
    /// are filled with many writes in flight, and sampled flat.
    pub waits: bool,
    /// Whether the engine drops expired records by itself (Redis), leaving
    /// `delete_expired` nothing to remove.
    pub expires_itself: bool,
    /// Opens a fresh, empty store whose files go under the given directory.
    open: fn(PathBuf) -> Opening,
}

/// Every store in the repository, in the order the report lists them.
pub const STORES: &[StoreSpec] = &[
    spec("memory", IN_PROCESS, |_| Box::pin(async { own(MemoryStore::new()) })),
    spec("file", ON_DISK, |dir| Box::pin(async move { own(FileStore::open(dir.join("sessions")).await?) })),
    spec("sqlite", ON_DISK, |dir| Box::pin(async move { own(SqliteStore::open(dir.join("sessions.db")).await?) })),
    spec("redb", ON_DISK, |dir| Box::pin(async move { own(RedbStore::open(dir.join("sessions.redb")).await?) })),
    spec("redis", ON_SERVER, |dir| Box::pin(redis(dir))),
    spec("postgres", ON_DATABASE, |_| Box::pin(postgres())),
];

/// What kind of store a spec is: `(durable, waits, expires_itself)`.
type Kind = (bool, bool, bool);
/// In this process's memory.
const IN_PROCESS: Kind = (false, false, false);
/// On the local disk, every write durable before it is acknowledged.
const ON_DISK: Kind = (true, true, false);
/// On a server that expires records itself (durability is its setting).
const ON_SERVER: Kind = (false, true, true);
/// On a database server, every write committed (WAL fsynced) before it is acknowledged.
const ON_DATABASE: Kind = (true, true, false);

const fn spec(name: &'static str, (durable, waits, expires_itself): Kind, open: fn(PathBuf) -> Opening) -> StoreSpec {
    StoreSpec { name, durable, waits, expires_itself, open }
}

fn own(store: impl SessionStore) -> Result<Option<Opened>, StoreError> {
    Ok(Some((Arc::new(store), None, None)))
}

async fn redis(dir: PathBuf) -> Result<Option<Opened>, StoreError> {
    if let Ok(url) = std::env::var("SESSIONKIT_BENCH_REDIS_URL") {
        return Ok(Some((Arc::new(RedisStore::open(&url).await?), None, Some(url))));
    }
    let Some(server) = Server::start(&dir) else {
        eprintln!(
            "sessionkit-benches: no Redis: set SESSIONKIT_BENCH_REDIS_URL or install redis-server (scripts/install-test-deps)"
        );
        return Ok(None);
    };
    let url = format!("redis://127.0.0.1:{}/", server.port);
    Ok(Some((Arc::new(RedisStore::open(&url).await?), Some(Box::new(server)), Some(url))))
}

async fn postgres() -> Result<Option<Opened>, StoreError> {
    const TABLE: &str = "sessionkit_bench.http_sessions";
    let (url, server) = match std::env::var("SESSIONKIT_BENCH_POSTGRES_URL") {
        Ok(url) => (url, None),
        Err(_) if !postgres_server::postgres_installed() => {
            eprintln!(
                "sessionkit-benches: no PostgreSQL: set SESSIONKIT_BENCH_POSTGRES_URL or install postgresql (scripts/install-test-deps)"
            );
            return Ok(None);
        }
        Err(_) => match postgres_server::PostgresServer::start_or_skip() {
            Some(server) => (server.url(), Some(server)),
            None => return Ok(None),
        },
    };
    let store = PostgresStore::builder().table(TABLE).open(&url).await?;
    // A fresh, empty store (sessions and leases), also on a database that
    // outlives the run.
    sessionkit_stores::sqlx::raw_sql(&format!("TRUNCATE {TABLE}, {TABLE}_leases"))
        .execute(store.pool())
        .await
        .map_err(|err| StoreError::backend("emptying the benchmark's PostgreSQL table", err))?;
    Ok(Some((Arc::new(store), server.map(|server| Box::new(server) as Guard), Some(url))))
}

/// A private `redis-server` on a free loopback port, without persistence,
/// stopped when dropped.
#[derive(Debug)]
pub struct Server {
    child: Child,
    port: u16,
}

impl Server {
    fn start(dir: &Path) -> Option<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0").ok()?.local_addr().ok()?.port();
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string(), "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let server = Self { child, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Some(server);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A store opened for one benchmark, with the directory holding its files.
pub struct OpenStore {
    /// The spec it was opened from.
    pub spec: &'static StoreSpec,
    /// The store. Declared first so that it closes before its server stops
    /// and its files go.
    pub store: Arc<dyn SessionStore>,
    /// The server's URL, for a store on a server (Redis, PostgreSQL).
    pub url: Option<String>,
    _server: Option<Guard>,
    /// Removed when the store is dropped.
    _dir: TempDir,
}

impl OpenStore {
    /// The directory the store's files go under (for the file store, its
    /// session directory is `sessions` in it).
    pub fn dir(&self) -> &std::path::Path {
        self._dir.path()
    }
}

impl StoreSpec {
    /// Opens a fresh, empty instance, or `None` when it cannot run here (the
    /// reason is printed).
    ///
    /// Files go to a new directory under `SESSIONKIT_BENCH_DIR`, or the
    /// system's temporary directory.
    pub async fn open(&'static self) -> Result<Option<OpenStore>, StoreError> {
        let dir = match std::env::var_os("SESSIONKIT_BENCH_DIR") {
            Some(base) => tempfile::tempdir_in(base),
            None => tempfile::tempdir(),
        }
        .map_err(|err| StoreError::backend("creating a directory for a benchmark store", err))?;
        match (self.open)(dir.path().to_owned()).await? {
            Some((store, server, url)) => Ok(Some(OpenStore { spec: self, store, url, _server: server, _dir: dir })),
            None => {
                eprintln!("sessionkit-benches: skipping the {} store: it cannot run on this machine", self.name);
                Ok(None)
            }
        }
    }
}

/// The stores this run measures: [`STORES`], narrowed by
/// `SESSIONKIT_BENCH_STORES` (a comma-separated list of names) if set.
pub fn selected() -> Vec<&'static StoreSpec> {
    let wanted = std::env::var("SESSIONKIT_BENCH_STORES").unwrap_or_default();
    let wanted: Vec<&str> = wanted.split(',').map(str::trim).filter(|name| !name.is_empty()).collect();
    STORES.iter().filter(|spec| wanted.is_empty() || wanted.contains(&spec.name)).collect()
}
