//! A separate process writing to a `FileStore`, for the file store's tests:
//! another process taking the same locks, and a writer to kill mid-write.
//!
//! ```text
//! file-store-writer <dir> update <id> <key-prefix> <count>
//!     applies <count> updates to session <id>, each setting its own key
//! file-store-writer <dir> churn <id>...
//!     forever: sets each <id> in turn to {"n": <counter>, "pad": …}, and
//!     prints "<index> <counter>" once each write is acknowledged
//! ```

use std::io::Write as _;
use std::process::ExitCode;

use serde_json::json;
use sessionkit::{Changes, SessionId, SessionMap, SessionStore, UpdateOutcome};
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

fn parse_id(text: &str) -> Result<SessionId, String> {
    SessionId::parse(text).ok_or_else(|| format!("not a session id: {text:?}"))
}

async fn run(args: &[String]) -> Result<(), String> {
    let [dir, mode, rest @ ..] = args else {
        return Err("usage: file-store-writer <dir> update|churn ...".into());
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
        ("churn", ids) if !ids.is_empty() => {
            let ids = ids.iter().map(|id| parse_id(id)).collect::<Result<Vec<_>, _>>()?;
            // Big enough that a write spans several disk blocks.
            let pad = "p".repeat(20_000);
            let mut stdout = std::io::stdout().lock();
            for n in 0u64.. {
                for (index, id) in ids.iter().enumerate() {
                    let mut data = SessionMap::new();
                    data.insert("n".into(), json!(n));
                    data.insert("pad".into(), json!(pad));
                    store.set(id, &data, None).await.map_err(|err| err.to_string())?;
                    writeln!(stdout, "{index} {n}").and_then(|()| stdout.flush()).map_err(|err| err.to_string())?;
                }
            }
            Ok(())
        }
        _ => Err(format!("unknown mode or arguments: {mode} {rest:?}")),
    }
}
