//! A separate process updating a `FileStore`, for the file store's tests:
//! another process taking the same locks. (Killing writers mid-write is
//! `crash-writer`'s job, in `tests/crash_safety.rs`.)
//!
//! ```text
//! file-store-writer <dir> update <id> <key-prefix> <count>
//!     applies <count> updates to session <id>, each setting its own key
//! ```

use std::process::ExitCode;

use serde_json::json;
use sessionkit::{Changes, SessionStore, StoreKey, UpdateOutcome};
use sessionkit_stores::FileStore;

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("file-store-writer: {err}");
            ExitCode::FAILURE
        }
    }
}

fn parse_id(text: &str) -> Result<StoreKey, String> {
    StoreKey::parse(text).ok_or_else(|| format!("not a session id: {text:?}"))
}

async fn run(args: &[String]) -> Result<(), String> {
    let [dir, mode, rest @ ..] = args else {
        return Err("usage: file-store-writer <dir> update <id> <key-prefix> <count>".into());
    };
    let store = FileStore::open(dir).await.map_err(|err| err.to_string())?;
    match (mode.as_str(), rest) {
        ("update", [id, prefix, count]) => {
            let id = parse_id(id)?;
            let count: usize = count.parse().map_err(|_| format!("not a count: {count:?}"))?;
            for i in 0..count {
                let mut changes = Changes::new();
                changes.set(format!("{prefix}{i}"), json!(i));
                match store.update(&id, &changes, None).await.map_err(|err| err.to_string())? {
                    UpdateOutcome::Applied => {}
                    UpdateOutcome::Missing => return Err("the session is missing".into()),
                }
            }
            Ok(())
        }
        _ => Err(format!("unknown mode or arguments: {mode} {rest:?}")),
    }
}
