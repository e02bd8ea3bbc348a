//! A separate process taking exclusive leases in a `SqliteStore`, for the
//! SQLite store's tests: leases must exclude across processes that share
//! one database file.
//!
//! ```text
//! sqlite-lease-worker <db> increments <id> <count>
//!     <count> times: waits for the lease on session <id>, reads "n", writes
//!     n + 1 with a plain set fenced by the lease, releases the lease (see
//!     `sessionkit_integration_tests::exclusive_counter`)
//! sqlite-lease-worker <db> hold <id> <ttl-ms>
//!     takes the lease on <id>, prints "held <expiry in Unix ms>" and
//!     sleeps until killed
//! ```

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use sessionkit::{SessionStore, StoreKey, expiry};
use sessionkit_integration_tests::exclusive_counter;
use sessionkit_stores::SqliteStore;

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("sqlite-lease-worker: {err}");
            ExitCode::FAILURE
        }
    }
}

fn parse_id(text: &str) -> Result<StoreKey, String> {
    StoreKey::parse(text).ok_or_else(|| format!("not a session key: {text:?}"))
}

fn number(text: &str) -> Result<u64, String> {
    text.parse().map_err(|_| format!("not a number: {text:?}"))
}

async fn run(args: &[String]) -> Result<(), String> {
    let [db, mode, rest @ ..] = args else {
        return Err("usage: sqlite-lease-worker <db> (increments <id> <count> | hold <id> <ttl-ms>)".into());
    };
    let store = SqliteStore::open(db).await.map_err(|err| err.to_string())?;
    match (mode.as_str(), rest) {
        ("increments", [id, count]) => {
            let id = parse_id(id)?;
            for _ in 0..number(count)? {
                exclusive_counter::increment(&store, &id).await?;
            }
            Ok(())
        }
        ("hold", [id, ttl]) => {
            let id = parse_id(id)?;
            let lease = store
                .try_lease(&id, Duration::from_millis(number(ttl)?))
                .await
                .map_err(|err| err.to_string())?
                .ok_or("the lease is held by someone else")?;
            let mut out = std::io::stdout();
            writeln!(out, "held {}", expiry::to_unix_ms(lease.expires_at)).map_err(|err| err.to_string())?;
            out.flush().map_err(|err| err.to_string())?;
            tokio::time::sleep(Duration::from_secs(600)).await;
            Err("was not killed".into())
        }
        _ => Err(format!("unknown mode or arguments: {mode} {rest:?}")),
    }
}
