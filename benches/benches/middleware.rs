//! Requests per second through a real axum server on `127.0.0.1`, for:
//!
//! - `bare`: a handler without sessions;
//! - `sessionkit-<store>`: [`SessionLayer`] on every store of the registry,
//!   the handler reading a counter from the session and writing it back
//!   incremented (so every request is a store `get` and an `update`);
//! - `sessionkit-<store>-one-session`: the same, with every connection
//!   sending the same session cookie (one user's many tabs, or a script):
//!   every request updates one record, which the store must serialise;
//! - `tower-sessions-memory`: the same handler on tower-sessions with its
//!   `MemoryStore`.
//!
//! The load generator (`sessionkit_benches::load`) runs in this process on
//! its own thread, with keep-alive connections that each carry one
//! client's cookie; the server runs on a multi-thread runtime with one
//! worker per core. Variants are driven in several rounds, in a rotating
//! order, so that a noisy machine slows them alike; the report uses each
//! variant's median round. Results go to `target/sessionkit-bench/middleware.json`.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use sessionkit::{Session, SessionConfig, SessionError, SessionLayer};
use sessionkit_benches::load::{self, Check};
use sessionkit_benches::registry::{self, OpenStore};
use sessionkit_benches::results::{self, Middleware, RunStart, Variant};
use sessionkit_benches::settings;

/// Keep-alive connections, one browser session each.
const CONNECTIONS: usize = 32;

async fn bare() -> &'static str {
    "hello"
}

async fn counter(session: Session) -> Result<String, SessionError> {
    let visits = session.get::<u64>("counter")?.unwrap_or(0) + 1;
    session.set("counter", visits)?;
    Ok(visits.to_string())
}

async fn tower_counter(session: tower_sessions::Session) -> Result<String, http::StatusCode> {
    let failed = |_| http::StatusCode::INTERNAL_SERVER_ERROR;
    let visits = session.get::<u64>("counter").await.map_err(failed)?.unwrap_or(0) + 1;
    session.insert("counter", visits).await.map_err(failed)?;
    Ok(visits.to_string())
}

/// How a target's connections use sessions.
#[derive(Clone, Copy)]
enum Load {
    /// Each connection its own cookie, checked with this.
    Own(Check),
    /// All connections on one session.
    OneSession,
}

struct Target {
    id: String,
    label: String,
    addr: SocketAddr,
    load: Load,
    rounds: Vec<f64>,
    errors: u64,
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
    let mut targets = Vec::new();
    let mut add = |id: String, label: String, router: Router, load: Load| {
        let addr = server.block_on(load::serve(router)).expect("binding 127.0.0.1");
        targets.push(Target { id, label, addr, load, rounds: Vec::new(), errors: 0 });
    };
    add("bare".into(), "axum handler, no sessions".into(), Router::new().route("/", get(bare)), Load::Own(Check::Ok));
    // Listed after the per-connection variants, so the table keeps its order.
    let mut one_session = Vec::new();
    for spec in registry::selected() {
        let Some(open) = server.block_on(spec.open()).expect("opening a store") else {
            continue;
        };
        let layer = SessionLayer::new(SessionConfig::with_shared_store(open.store.clone()));
        add(
            format!("sessionkit-{}", spec.name),
            format!("sessionkit, {} store", spec.name),
            Router::new().route("/", get(counter)).layer(layer.clone()),
            Load::Own(Check::Counter),
        );
        one_session.push((spec.name, Router::new().route("/", get(counter)).layer(layer)));
        stores.push(open);
    }
    for (name, router) in one_session {
        add(
            format!("sessionkit-{name}-one-session"),
            format!("sessionkit, {name} store, all connections on one session"),
            router,
            Load::OneSession,
        );
    }
    let tower = tower_sessions::SessionManagerLayer::new(tower_sessions::MemoryStore::default());
    add(
        "tower-sessions-memory".into(),
        "tower-sessions 0.15, its MemoryStore".into(),
        Router::new().route("/", get(tower_counter)).layer(tower),
        Load::Own(Check::Counter),
    );

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
                "sessionkit-benches: round {}/{rounds} {:<24} {:>9.0} req/s{}",
                round_index + 1,
                target.id,
                report.rate(),
                if report.errors > 0 { format!(" ({} errors)", report.errors) } else { String::new() }
            );
        }
    }

    let variants: Vec<Variant> = targets
        .into_iter()
        .map(|target| Variant {
            median: median(&target.rounds),
            id: target.id,
            label: target.label,
            rounds: target.rounds,
            errors: target.errors,
        })
        .collect();
    let bare = variants.first().map_or(f64::NAN, |variant| variant.median);
    println!("{:<24} {:>10} {:>8}", "variant", "req/s", "vs bare");
    for variant in &variants {
        println!("{:<24} {:>10.0} {:>7.1}%", variant.id, variant.median, 100.0 * variant.median / bare);
    }
    let failed: Vec<String> = variants.iter().filter(|v| v.errors > 0).map(|v| v.id.clone()).collect();
    results::write(
        "middleware",
        &Middleware { connections: CONNECTIONS, round_secs: round.as_secs_f64(), server_threads, variants },
    );
    drop(stores);
    assert!(failed.is_empty(), "wrong responses from {failed:?}: the numbers do not count");
}

fn drive(client: &tokio::runtime::Runtime, target: &Target, duration: Duration) -> load::LoadReport {
    let report = match target.load {
        Load::Own(check) => client.block_on(load::drive(target.addr, CONNECTIONS, duration, check)),
        Load::OneSession => client.block_on(load::drive_one_session(target.addr, CONNECTIONS, duration)),
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
