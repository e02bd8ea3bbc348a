//! tower-sessions 0.14 with tower-sessions-sqlx-store 0.15 on SQLite, serving
//! the middleware benchmark's counter route on a free port of 127.0.0.1.
//!
//! `sessionkit-bench-peers sqlite <database file>`: creates the database
//! (WAL, `synchronous = FULL`, as sessionkit's `SqliteStore` opens its own,
//! so that both make every acknowledged write durable), prints
//! `listening <port>` on stdout once it accepts connections, and serves
//! until its standard input closes (the benchmark holding it ends).

#![forbid(unsafe_code)]

use std::io::{BufRead, Write};
use std::str::FromStr;

use axum::Router;
use axum::routing::get;
use tower_sessions::{Session, SessionManagerLayer};
use tower_sessions_sqlx_store::SqliteStore;
use tower_sessions_sqlx_store::sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqliteSynchronous};

/// The benchmark's handler: read a counter, write it back incremented.
async fn counter(session: Session) -> Result<String, axum::http::StatusCode> {
    let failed = |_| axum::http::StatusCode::INTERNAL_SERVER_ERROR;
    let visits = session.get::<u64>("counter").await.map_err(failed)?.unwrap_or(0) + 1;
    session.insert("counter", visits).await.map_err(failed)?;
    Ok(visits.to_string())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let (Some("sqlite"), Some(path)) = (args.get(1).map(String::as_str), args.get(2)) else {
        return Err("usage: sessionkit-bench-peers sqlite <database file>".into());
    };
    // One worker per core, as the benchmark's own server.
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(serve(path))
}

async fn serve(path: &str) -> Result<(), Box<dyn std::error::Error>> {
    let options = SqliteConnectOptions::from_str(&format!("sqlite://{path}"))?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full);
    let pool = SqlitePool::connect_with(options).await?;
    let store = SqliteStore::new(pool);
    store.migrate().await?;
    let router = Router::new().route("/", get(counter)).layer(SessionManagerLayer::new(store));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let listener = axum::serve::ListenerExt::tap_io(listener, |stream| {
        // As the benchmark's own server: small responses must not wait for delayed ACKs.
        let _ = stream.set_nodelay(true);
    });
    let server = tokio::spawn(async move { axum::serve(listener, router).await });
    println!("listening {port}");
    std::io::stdout().flush()?;
    // Serve until the benchmark closes our standard input (or dies).
    tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        while std::io::stdin().lock().read_line(&mut line).is_ok_and(|read| read > 0) {
            line.clear();
        }
    })
    .await?;
    server.abort();
    Ok(())
}
