//! The checker child of the power-cut tests: reopens a store after a cut,
//! prints what every session of the crash workload holds, then writes and
//! reads back the parent's probe session. The parent judges the output
//! (`integration_tests::power_cut`).
//!
//! A child, not the test process itself, because the test process serves
//! the filesystem: a store that maps a file of the mount (SQLite's `-shm`)
//! would deadlock it (see the `sessionkit-powerloss-fs` docs).
//!
//! Usage: `power-cut-checker <kind> <path> <probe-seq>`; output lines:
//!
//! ```text
//! OPENED                          or  E <error>       (the reopen)
//! S <sid> null                    a session that is absent
//! S <sid> <expires-ms|-> <json>   a session's expiry and data
//! R <sid> <error>                 a read that failed
//! P ok | P E <error> | P <json>   the probe: written and read back, failed, or read back as something else
//! ```

use std::io::Write;
use std::path::Path;

use sessionkit_integration_tests::crash_workload;
use sessionkit_integration_tests::power_cut::PROBE;

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    // Nobody is left to tell if the parent is gone.
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn one_line(text: &str) -> String {
    text.replace('\n', " ")
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, kind, path, probe_seq] = args.as_slice() else {
        panic!("usage: power-cut-checker <kind> <path> <probe-seq>");
    };
    let probe_seq: u64 = probe_seq.parse().expect("probe sequence number");
    let store = match crash_workload::open_store(kind, Path::new(path)).await {
        Ok(store) => store,
        Err(err) => {
            say(&format!("E {}", one_line(&format!("{err:?}"))));
            return;
        }
    };
    say("OPENED");
    // The probe too: its state before this run's write is judged like the others.
    for sid in 0..=PROBE {
        match store.get(&crash_workload::session_id(sid)).await {
            Ok(None) => say(&format!("S {sid} null")),
            Ok(Some(record)) => {
                let expires = record
                    .expires_at
                    .map_or_else(|| "-".to_owned(), |at| sessionkit::expiry::to_unix_ms(at).to_string());
                let data = serde_json::Value::Object(record.data);
                say(&format!("S {sid} {expires} {data}"));
            }
            Err(err) => say(&format!("R {sid} {}", one_line(&err.to_string()))),
        }
    }
    if let Err(err) = crash_workload::perform(&*store, PROBE, probe_seq).await {
        say(&format!("P E {}", one_line(&err.to_string())));
        return;
    }
    let expected = crash_workload::state_after(PROBE, probe_seq);
    match store.get(&crash_workload::session_id(PROBE)).await {
        Ok(found) if found.as_ref().map(|record| &record.data) == expected.as_ref() => say("P ok"),
        Ok(found) => {
            say(&format!("P {}", found.map_or(serde_json::Value::Null, |r| serde_json::Value::Object(r.data))))
        }
        Err(err) => say(&format!("P E {}", one_line(&err.to_string()))),
    }
}
