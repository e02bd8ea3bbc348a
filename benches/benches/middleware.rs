//! Requests per second through a real axum server on `127.0.0.1`, for:
//!
//! - `bare`: a handler without sessions;
//! - `sessionkit-<store>`: [`SessionLayer`] on every store of the registry,
//!   the handler reading a counter from the session and writing it back
//!   incremented (so every request is a store `get` and an `update`), each
//!   connection with its own session;
//! - `sessionkit-<store>-one-session`: the same, with every connection
//!   sending the same session cookie (one user's many tabs, or a script):
//!   every request updates one record, which the store must serialise;
//! - `sessionkit-<store>-increment`: the counter as `session.increment`,
//!   which the store applies in its atomic step, each connection its own
//!   session (against `sessionkit-<store>`: what the operation costs);
//! - `sessionkit-<store>-exclusive` and `…-exclusive-one-session`: the
//!   get-and-set counter on a route under [`ExclusiveLayer`], so requests
//!   of one session run one at a time (a lease taken and released per
//!   request), on many sessions and on one;
//! - `sessionkit-memory-read-only`: a handler that only reads its session
//!   (written once, by the connection's first request);
//! - `tower-sessions-<store>`: the same handlers on tower-sessions, with its
//!   `MemoryStore` (0.15), its Redis store (tower-sessions-redis-store 0.16
//!   on tower-sessions 0.14, on the same `redis-server` as ours) and its
//!   SQLite store (tower-sessions-sqlx-store 0.15 on tower-sessions 0.14,
//!   served by `benches/peers` in a process of its own: see [`peer`]).
//!
//! The load generator (`sessionkit_benches::load`) runs in this process on
//! its own thread, with keep-alive connections that each carry one
//! client's cookie; the server runs on a multi-thread runtime with one
//! worker per core. Variants are driven in several rounds, in a rotating
//! order, so that a noisy machine slows them alike; the report uses each
//! variant's median round. After the rounds, each variant on Redis is driven
//! once more between two `INFO` snapshots of the server, for its work per
//! request. Results go to `target/sessionkit-bench/middleware.json`.
//! `SESSIONKIT_BENCH_VARIANTS` (comma-separated ids) keeps only some
//! variants, for profiling them; such a run is not for the report.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use sessionkit::exclusive::ExclusiveLayer;
use sessionkit::{Session, SessionConfig, SessionError, SessionLayer};
use sessionkit_benches::load::{self, Check};
use sessionkit_benches::redis_stats::{self, Work};
use sessionkit_benches::registry::{self, OpenStore};
use sessionkit_benches::results::{self, Middleware, RunStart, Variant};
use sessionkit_benches::settings;

/// Keep-alive connections, one browser session each.
const CONNECTIONS: usize = 32;

/// Connections to Redis in tower-sessions-redis-store's pool: the size its
/// own example uses.
const PEER_REDIS_POOL: usize = 6;

async fn bare() -> &'static str {
    "hello"
}

async fn counter(session: Session) -> Result<String, SessionError> {
    let visits = session.get::<u64>("counter")?.unwrap_or(0) + 1;
    session.set("counter", visits)?;
    Ok(visits.to_string())
}

/// The counter as an increment, which the store applies in its atomic
/// step: no request's count is lost, even on one session.
async fn incrementer(session: Session) -> Result<String, SessionError> {
    Ok(session.increment("counter", 1)?.to_string())
}

/// Reads the counter; writes it only when the session has none (the
/// connection's first request).
async fn reader(session: Session) -> Result<String, SessionError> {
    if let Some(visits) = session.get::<u64>("counter")? {
        return Ok(visits.to_string());
    }
    session.set("counter", 1)?;
    Ok("1".to_owned())
}

async fn tower_counter(session: tower_sessions::Session) -> Result<String, http::StatusCode> {
    let failed = |_| http::StatusCode::INTERNAL_SERVER_ERROR;
    let visits = session.get::<u64>("counter").await.map_err(failed)?.unwrap_or(0) + 1;
    session.insert("counter", visits).await.map_err(failed)?;
    Ok(visits.to_string())
}

async fn tower_reader(session: tower_sessions::Session) -> Result<String, http::StatusCode> {
    let failed = |_| http::StatusCode::INTERNAL_SERVER_ERROR;
    if let Some(visits) = session.get::<u64>("counter").await.map_err(failed)? {
        return Ok(visits.to_string());
    }
    session.insert("counter", 1).await.map_err(failed)?;
    Ok("1".to_owned())
}

/// The same handler on tower-sessions 0.14, which the peers' stores need.
async fn tower_014_counter(session: tower_sessions_014::Session) -> Result<String, http::StatusCode> {
    let failed = |_| http::StatusCode::INTERNAL_SERVER_ERROR;
    let visits = session.get::<u64>("counter").await.map_err(failed)?.unwrap_or(0) + 1;
    session.insert("counter", visits).await.map_err(failed)?;
    Ok(visits.to_string())
}

/// How a target's connections use sessions.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// Each connection its own session, checked with this.
    Own(Check),
    /// All connections on one session.
    OneSession,
}

impl Shape {
    fn name(self) -> &'static str {
        match self {
            Shape::Own(Check::ReadOnly) => "read-only",
            Shape::Own(_) => "per-connection",
            Shape::OneSession => "one-session",
        }
    }
}

struct Target {
    id: String,
    label: String,
    stack: String,
    addr: SocketAddr,
    shape: Shape,
    /// The Redis server the stack's sessions live on, to count its work.
    redis: Option<String>,
    rounds: Vec<f64>,
    errors: u64,
    work: Option<Work>,
}

/// The variants being assembled, and the server they run on.
struct Targets<'r> {
    server: &'r tokio::runtime::Runtime,
    list: Vec<Target>,
}

impl Targets<'_> {
    /// Serves `router` and adds it as `stack` under `shape`.
    fn add(&mut self, stack: &str, label: &str, router: Router, shape: Shape, redis: Option<&String>) {
        let addr = self.server.block_on(load::serve(router)).expect("binding 127.0.0.1");
        self.add_at(stack, label, addr, shape, redis);
    }

    /// Adds a server already listening at `addr`.
    fn add_at(&mut self, stack: &str, label: &str, addr: SocketAddr, shape: Shape, redis: Option<&String>) {
        let (id, label) = match shape {
            Shape::Own(Check::ReadOnly) => (format!("{stack}-read-only"), format!("{label}, read only")),
            Shape::Own(_) => (stack.to_owned(), label.to_owned()),
            Shape::OneSession => (format!("{stack}-one-session"), format!("{label}, all connections on one session")),
        };
        self.list.push(Target {
            id,
            label,
            stack: stack.to_owned(),
            addr,
            shape,
            redis: redis.cloned(),
            rounds: Vec::new(),
            errors: 0,
            work: None,
        });
    }
}

fn main() {
    // `cargo bench` passes `--bench`; a filter or criterion flag means
    // nothing here.
    RunStart::record("middleware");
    let quick = settings::quick();
    let (rounds, round) = if quick { (1, Duration::from_millis(500)) } else { (5, Duration::from_secs(3)) };
    let server_threads = std::thread::available_parallelism().map_or(2, usize::from);
    let server = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(server_threads)
        .enable_all()
        .build()
        .expect("the server's runtime");
    let client = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("the client's runtime");

    // Stores stay open (and their files in place) until the end.
    let mut stores: Vec<OpenStore> = Vec::new();
    let mut targets = Targets { server: &server, list: Vec::new() };
    targets.add("bare", "axum handler, no sessions", Router::new().route("/", get(bare)), Shape::Own(Check::Ok), None);
    // Listed after the per-connection variants, so the table keeps its order.
    let mut one_session = Vec::new();
    let mut one_session_exclusive = Vec::new();
    let mut redis_url = None;
    for spec in registry::selected() {
        let Some(open) = server.block_on(spec.open()).expect("opening a store") else {
            continue;
        };
        let stack = format!("sessionkit-{}", spec.name);
        let label = format!("sessionkit, {} store", spec.name);
        let redis = (spec.name == "redis").then(|| open.url.clone()).flatten();
        let layer = SessionLayer::new(SessionConfig::shared_builder(open.store.clone()));
        let router = Router::new().route("/", get(counter)).layer(layer.clone());
        targets.add(&stack, &label, router, Shape::Own(Check::Counter), redis.as_ref());
        if spec.name == "memory" {
            let router = Router::new().route("/", get(reader)).layer(layer.clone());
            targets.add(&stack, &label, router, Shape::Own(Check::ReadOnly), None);
        }
        // The same count as an increment, and as a read-modify-write under
        // an exclusive lease (one request of a session at a time).
        let router = Router::new().route("/", get(incrementer)).layer(layer.clone());
        targets.add(
            &format!("{stack}-increment"),
            &format!("{label}, increment"),
            router,
            Shape::Own(Check::Counter),
            None,
        );
        let exclusive = |layer: SessionLayer| {
            Router::new().route("/", get(counter)).route_layer(ExclusiveLayer::new()).layer(layer)
        };
        let (exclusive_stack, exclusive_label) = (format!("{stack}-exclusive"), format!("{label}, exclusive route"));
        targets.add(&exclusive_stack, &exclusive_label, exclusive(layer.clone()), Shape::Own(Check::Counter), None);
        one_session_exclusive.push((exclusive_stack, exclusive_label, exclusive(layer.clone())));
        one_session.push((stack, label, Router::new().route("/", get(counter)).layer(layer), redis.clone()));
        if redis.is_some() {
            redis_url = redis;
        }
        stores.push(open);
    }
    for (stack, label, router, redis) in one_session {
        targets.add(&stack, &label, router, Shape::OneSession, redis.as_ref());
    }
    for (stack, label, router) in one_session_exclusive {
        targets.add(&stack, &label, router, Shape::OneSession, None);
    }

    let tower = tower_sessions::SessionManagerLayer::new(tower_sessions::MemoryStore::default());
    let (stack, label) = ("tower-sessions-memory", "tower-sessions 0.15, its MemoryStore");
    for shape in [Shape::Own(Check::Counter), Shape::Own(Check::ReadOnly), Shape::OneSession] {
        let route = if shape == Shape::Own(Check::ReadOnly) { get(tower_reader) } else { get(tower_counter) };
        targets.add(stack, label, Router::new().route("/", route).layer(tower.clone()), shape, None);
    }
    if let Some(url) = &redis_url {
        let store = server.block_on(peer::redis_store(url)).expect("tower-sessions-redis-store on our redis-server");
        let tower = tower_sessions_014::SessionManagerLayer::new(store);
        let (stack, label) = ("tower-sessions-redis", "tower-sessions 0.14, tower-sessions-redis-store 0.16");
        for shape in [Shape::Own(Check::Counter), Shape::OneSession] {
            let router = Router::new().route("/", get(tower_014_counter)).layer(tower.clone());
            targets.add(stack, label, router, shape, Some(url));
        }
    }
    let sqlite_peer = registry::selected().iter().any(|spec| spec.name == "sqlite").then(peer::Sqlite::start).flatten();
    if let Some(peer) = &sqlite_peer {
        let (stack, label) = ("tower-sessions-sqlite", "tower-sessions 0.14, tower-sessions-sqlx-store 0.15 (SQLite)");
        for shape in [Shape::Own(Check::Counter), Shape::OneSession] {
            targets.add_at(stack, label, peer.addr, shape, None);
        }
    }
    let mut targets = targets.list;
    // `SESSIONKIT_BENCH_VARIANTS=bare,sessionkit-redis` keeps only those
    // variants, to profile a few (the report then holds only them).
    if let Ok(wanted) = std::env::var("SESSIONKIT_BENCH_VARIANTS") {
        let wanted: Vec<&str> = wanted.split(',').map(str::trim).filter(|id| !id.is_empty()).collect();
        if !wanted.is_empty() {
            targets.retain(|target| wanted.contains(&target.id.as_str()));
        }
    }

    // Warm up: connection setup, first allocations, page cache.
    for target in &targets {
        drive(&client, target, Duration::from_millis(if quick { 100 } else { 500 }));
    }
    for round_index in 0..rounds {
        let count = targets.len();
        for offset in 0..count {
            let target = &mut targets[(round_index + offset) % count];
            let report = drive(&client, target, round);
            target.rounds.push(report.rate());
            target.errors += report.errors;
            eprintln!(
                "sessionkit-benches: round {}/{rounds} {:<40} {:>9.0} req/s{}",
                round_index + 1,
                target.id,
                report.rate(),
                if report.errors > 0 { format!(" ({} errors)", report.errors) } else { String::new() }
            );
        }
    }
    // The Redis server's work per request, one variant at a time.
    for target in targets.iter_mut() {
        let Some(url) = target.redis.clone() else { continue };
        let Some(before) = redis_stats::snapshot(&url) else { continue };
        let report = drive(&client, target, if quick { Duration::from_millis(300) } else { Duration::from_secs(2) });
        target.errors += report.errors;
        if let Some(after) = redis_stats::snapshot(&url) {
            let work = before.work_until(&after, report.requests);
            eprintln!(
                "sessionkit-benches: Redis work per request, {}: {:.2} commands {:?}, {:.1} µs in commands, {:.1} µs of CPU",
                target.id,
                work.commands_per_request(),
                work.commands,
                work.command_us,
                work.cpu_us
            );
            target.work = Some(work);
        }
    }

    let variants: Vec<Variant> = targets
        .into_iter()
        .map(|target| Variant {
            median: median(&target.rounds),
            id: target.id,
            label: target.label,
            stack: target.stack,
            shape: target.shape.name().to_owned(),
            redis: target.work,
            rounds: target.rounds,
            errors: target.errors,
        })
        .collect();
    let bare = variants.first().map_or(f64::NAN, |variant| variant.median);
    println!("{:<40} {:>10} {:>8}", "variant", "req/s", "vs bare");
    for variant in &variants {
        println!("{:<40} {:>10.0} {:>7.1}%", variant.id, variant.median, 100.0 * variant.median / bare);
    }
    let failed: Vec<String> = variants.iter().filter(|v| v.errors > 0).map(|v| v.id.clone()).collect();
    results::write(
        "middleware",
        &Middleware { connections: CONNECTIONS, round_secs: round.as_secs_f64(), server_threads, variants },
    );
    drop(sqlite_peer);
    drop(stores);
    assert!(failed.is_empty(), "wrong responses from {failed:?}: the numbers do not count");
}

fn drive(client: &tokio::runtime::Runtime, target: &Target, duration: Duration) -> load::LoadReport {
    let report = match target.shape {
        Shape::Own(check) => client.block_on(load::drive(target.addr, CONNECTIONS, duration, check)),
        Shape::OneSession => client.block_on(load::drive_one_session(target.addr, CONNECTIONS, duration)),
    };
    report.expect("driving the server")
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// The peers' stores that need more than a line: tower-sessions-redis-store
/// on our Redis, and tower-sessions-sqlx-store in a process of its own.
mod peer {
    use std::io::{BufRead, BufReader};
    use std::net::SocketAddr;
    use std::path::PathBuf;
    use std::process::{Child, Command, Stdio};

    use sessionkit_benches::settings;
    use tower_sessions_redis_store::fred::prelude::{ClientLike, Config, Pool};

    /// tower-sessions-redis-store on the Redis at `url`, through a fred
    /// pool of [`super::PEER_REDIS_POOL`] connections. Runs on the server's
    /// runtime, which drives the pool's connections.
    pub(super) async fn redis_store(
        url: &str,
    ) -> Result<tower_sessions_redis_store::RedisStore<Pool>, Box<dyn std::error::Error>> {
        let pool = Pool::new(Config::from_url(url)?, None, None, None, super::PEER_REDIS_POOL)?;
        // The connection tasks run until the pool is dropped with the process.
        let _connections = pool.connect();
        pool.wait_for_connect().await?;
        Ok(tower_sessions_redis_store::RedisStore::new(pool))
    }

    /// tower-sessions-sqlx-store's SQLite store, served by the
    /// `sessionkit-bench-peers` binary (`benches/peers`, its own workspace:
    /// sqlx's SQLite and ours cannot link into one program). Stopped when
    /// dropped: closing its standard input ends it, and it is killed too.
    pub(super) struct Sqlite {
        child: Child,
        pub(super) addr: SocketAddr,
        _dir: tempfile::TempDir,
    }

    impl Sqlite {
        /// Starts the peer on a database in a fresh directory, or says why
        /// not (it was not built: `scripts/bench` builds it).
        pub(super) fn start() -> Option<Self> {
            let program = std::env::var_os("SESSIONKIT_BENCH_PEERS")
                .map(PathBuf::from)
                .unwrap_or_else(|| settings::target_dir().join("peers/release/sessionkit-bench-peers"));
            if !program.exists() {
                eprintln!(
                    "sessionkit-benches: skipping tower-sessions on SQLite: {} is not built \
                     (cargo build --release --manifest-path benches/peers/Cargo.toml --target-dir target/peers)",
                    program.display()
                );
                return None;
            }
            let dir = match std::env::var_os("SESSIONKIT_BENCH_DIR") {
                Some(base) => tempfile::tempdir_in(base),
                None => tempfile::tempdir(),
            }
            .ok()?;
            let mut child = Command::new(&program)
                .arg("sqlite")
                .arg(dir.path().join("sessions.db"))
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .map_err(|err| eprintln!("sessionkit-benches: cannot start {}: {err}", program.display()))
                .ok()?;
            let stdout = child.stdout.take()?;
            let mut line = String::new();
            let read = BufReader::new(stdout).read_line(&mut line);
            let port = line.strip_prefix("listening ").and_then(|port| port.trim().parse::<u16>().ok());
            let peer = Self { child, addr: SocketAddr::from(([127, 0, 0, 1], port.unwrap_or(0))), _dir: dir };
            match (read, port) {
                (Ok(_), Some(_)) => Some(peer),
                _ => {
                    eprintln!("sessionkit-benches: the SQLite peer did not start (it said {line:?})");
                    None
                }
            }
        }
    }

    impl Drop for Sqlite {
        fn drop(&mut self) {
            drop(self.child.stdin.take());
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
