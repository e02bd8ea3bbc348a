//! The server child of the HTTP power-cut test: opens a store, serves the
//! test application ([`sessionkit_integration_tests::app`]) behind the
//! session layer on a loopback port, and prints that port, until killed.
//!
//! Usage: `power-cut-server <kind> <path>`; prints `LISTENING <addr>`, or
//! `E <error>` when the store does not open.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use sessionkit::{SessionConfig, SessionLayer};
use sessionkit_integration_tests::app::{self, Gates};
use sessionkit_integration_tests::crash_workload;

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    // Nobody is left to tell if the parent is gone.
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, kind, path] = args.as_slice() else {
        panic!("usage: power-cut-server <kind> <path>");
    };
    let store = match crash_workload::open_store(kind, Path::new(path)).await {
        Ok(store) => store,
        Err(err) => {
            say(&format!("E {}", format!("{err:?}").replace('\n', " ")));
            return;
        }
    };
    // Plain HTTP on loopback: the cookie must not require TLS.
    let layer = SessionLayer::new(SessionConfig::shared_builder(store).secure(false));
    let router = app::router(layer, Arc::new(Gates::default()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind a loopback port");
    say(&format!("LISTENING {}", listener.local_addr().expect("local address")));
    if let Err(err) = axum::serve(listener, router).await {
        say(&format!("E serving: {err}"));
    }
}
