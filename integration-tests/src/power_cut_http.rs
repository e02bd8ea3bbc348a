//! Power-cut rounds through the HTTP layer: a child process
//! (`power-cut-server`) serves the test application behind the session
//! layer on a store whose files are on the power-loss filesystem; the test
//! process drives requests from several clients, each with its own session
//! cookie, and counts as acknowledged only the responses it received. At a
//! random moment the server is killed and the power cut; the next server
//! (the reopen) must show every client its last acknowledged write (or the
//! one in flight), judged as in [`crate::power_cut`].
//!
//! Each client writes the crash workload's records (`PUT /json/rec`, the
//! record of `(client, seq)` from [`crash_workload::state_after`]) and reads
//! them back with `GET /get/rec`.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::cookie::Jar;
use serde_json::Value;
use sessionkit::SessionMap;
use sessionkit_powerloss_fs::Mounted;

use crate::crash_workload;
use crate::power_cut::{Rng, Tally, Verdict, judge_data};

/// Concurrent clients, each with its own session.
pub const CLIENTS: usize = 8;

/// A running server child, killed (SIGKILL) and reaped when dropped.
struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Server {
    /// Starts `bin` on the store and waits until it listens; `Err` with the
    /// store's error when it does not open.
    fn start(bin: &Path, kind: &str, path: &Path) -> Result<Self, String> {
        let mut child = Command::new(bin)
            .args([kind, &path.display().to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|err| format!("cannot start the server: {err}"))?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let (said, heard) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = said.send(line);
            }
        });
        let mut server = Self { child, addr: SocketAddr::from(([127, 0, 0, 1], 0)) };
        match heard.recv_timeout(Duration::from_secs(30)) {
            Ok(line) => match line.strip_prefix("LISTENING ").map(str::parse) {
                Some(Ok(addr)) => {
                    server.addr = addr;
                    Ok(server)
                }
                _ => Err(line),
            },
            Err(_) => Err("the server did not start listening within 30 s".into()),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // An error means it already exited; `wait` reaps it either way.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One client's progress in the current round.
#[derive(Debug, Default, Clone, Copy)]
struct Progress {
    acked: Option<u64>,
    begun: Option<u64>,
    acks: u64,
}

/// The next sequence number after `seq` whose state is a record (the
/// workload's deletes are skipped: over HTTP every write is a `PUT`).
fn next_record_seq(client: usize, mut seq: u64) -> u64 {
    loop {
        seq += 1;
        if crash_workload::state_after(client, seq).is_some() {
            return seq;
        }
    }
}

fn client(jar: &Arc<Jar>) -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_provider(Arc::clone(jar))
        .timeout(Duration::from_secs(10))
        .build()
        .expect("an HTTP client")
}

/// `PUT /json/rec` with the record of `(client, seq)`; whether the server
/// acknowledged it.
async fn put(http: &reqwest::Client, server_url: &str, client: usize, seq: u64) -> bool {
    let Some(record) = crash_workload::state_after(client, seq) else { return false };
    let response = http.put(format!("{server_url}/json/rec")).json(&Value::Object(record)).send().await;
    match response {
        Ok(response) if response.status().is_success() => response.text().await.is_ok_and(|body| body == "stored"),
        _ => false,
    }
}

/// `GET /get/rec`: the record, `None` when absent, `Err` when the answer is
/// no record at all.
async fn get(http: &reqwest::Client, server_url: &str) -> Result<Option<SessionMap>, String> {
    let response =
        http.get(format!("{server_url}/get/rec")).send().await.map_err(|err| format!("GET failed: {err}"))?;
    if !response.status().is_success() {
        return Err(format!("GET answered {}", response.status()));
    }
    let body = response.text().await.map_err(|err| format!("GET body: {err}"))?;
    match serde_json::from_str(&body) {
        Ok(Value::Null) => Ok(None),
        Ok(Value::Object(record)) => Ok(Some(record)),
        _ => Err(format!("GET returned no record: {:.80}", body)),
    }
}

/// Rounds of requests, kill, cut, restart, check, through HTTP.
pub struct HttpPowerCutRun {
    server: PathBuf,
    kind: String,
    path: PathBuf,
    fs: Mounted,
    rng: Rng,
    jars: Vec<Arc<Jar>>,
    /// Per client: its state after the last check.
    known: Vec<Option<SessionMap>>,
    /// Per client: what the last round acknowledged and began.
    pending: Vec<Progress>,
    /// Per client: the last sequence number used.
    seqs: Vec<u64>,
    round: u64,
    started: Instant,
    tally: Tally,
}

impl HttpPowerCutRun {
    /// A run of `server` children on a store of `kind` at `file` on the
    /// mount. A first server creates the store (durably: no sync of the
    /// mount's root follows).
    ///
    /// # Panics
    ///
    /// If the store cannot be created.
    pub fn start(server: &Path, kind: &str, fs: Mounted, file: &str, rng: Rng) -> Self {
        let path = fs.path().join(file);
        drop(Server::start(server, kind, &path).unwrap_or_else(|err| panic!("creating the {kind} store: {err}")));
        Self {
            server: server.to_owned(),
            kind: kind.to_owned(),
            path,
            fs,
            rng,
            jars: (0..CLIENTS).map(|_| Arc::new(Jar::default())).collect(),
            known: vec![None; CLIENTS],
            pending: vec![Progress::default(); CLIENTS],
            seqs: vec![0; CLIENTS],
            round: 0,
            started: Instant::now(),
            tally: Tally::default(),
        }
    }

    /// The mount, to turn faults on.
    pub fn fs(&self) -> &Mounted {
        &self.fs
    }

    /// What the rounds found so far.
    pub fn tally(&self) -> &Tally {
        &self.tally
    }

    /// Time since [`start`](Self::start).
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// One round: start a server (the reopen after the previous cut), check
    /// every client's record, write and read back one more, then let all
    /// clients write until the server is killed, and cut the power.
    ///
    /// # Panics
    ///
    /// If the filesystem cannot be cut and remounted, or a client does not
    /// stop once the server is dead.
    pub async fn round(&mut self) {
        self.round += 1;
        let round = self.round;
        let server = match self.check(round).await {
            Some(server) => server,
            None => return,
        };
        let url = server.url("");
        let progress: Vec<Arc<Mutex<Progress>>> =
            (0..CLIENTS).map(|_| Arc::new(Mutex::new(Progress::default()))).collect();
        let writers: Vec<_> = (0..CLIENTS)
            .map(|c| {
                let (http, url, progress, mut seq) =
                    (client(&self.jars[c]), url.clone(), Arc::clone(&progress[c]), self.seqs[c]);
                tokio::spawn(async move {
                    loop {
                        seq = next_record_seq(c, seq);
                        progress.lock().expect("lock").begun = Some(seq);
                        if !put(&http, &url, c, seq).await {
                            return seq;
                        }
                        let mut progress = progress.lock().expect("lock");
                        progress.acked = Some(seq);
                        progress.acks += 1;
                    }
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(20 + self.rng.below(250))).await;
        drop(server);
        for (c, writer) in writers.into_iter().enumerate() {
            // The server is dead: every request fails at once.
            let last = tokio::time::timeout(Duration::from_secs(20), writer).await;
            self.seqs[c] = match last {
                Ok(Ok(seq)) => seq,
                _ => panic!("client {c} did not stop after the server was killed"),
            };
            let done = *progress[c].lock().expect("lock");
            self.tally.acked += done.acks;
            // What was acknowledged before this round stays the reference.
            self.pending[c] = Progress { acked: done.acked.or(self.pending[c].acked), ..done };
        }
        let cut = self.fs.cut().expect("cut the power and remount");
        self.tally.cuts += 1;
        self.tally.files_torn += cut.files_torn as u64;
    }

    /// Starts a server on what the last cut left, judges every client's
    /// record, and writes and reads back one more for the first client.
    /// `None` (counted) when the server or the store fails.
    async fn check(&mut self, round: u64) -> Option<Server> {
        let server = match Server::start(&self.server, &self.kind, &self.path) {
            Ok(server) => server,
            Err(err) => {
                self.tally.reopen_failures += 1;
                self.tally.fail(format!("round {round}: the server did not start on the reopened store: {err}"));
                return None;
            }
        };
        let url = server.url("");
        for c in 0..CLIENTS {
            let http = client(&self.jars[c]);
            let Progress { acked, begun, .. } = self.pending[c];
            let verdict = match get(&http, &url).await {
                Ok(data) => {
                    let verdict = judge_data(c, data.clone(), &self.known[c], acked, begun);
                    self.known[c] = data;
                    verdict
                }
                Err(err) => Verdict::Torn(format!("client {c}: {err}")),
            };
            self.pending[c] = Progress::default();
            match verdict {
                Verdict::Intact => {}
                Verdict::InFlight => self.tally.in_flight_committed += 1,
                Verdict::Lost(what) => {
                    self.tally.lost += 1;
                    self.tally.fail(format!("round {round}: {what}"));
                }
                Verdict::Torn(what) => {
                    self.tally.torn += 1;
                    self.tally.fail(format!("round {round}: {what}"));
                }
            }
        }
        // The reopened store keeps working: one more write, read back.
        let http = client(&self.jars[0]);
        let seq = next_record_seq(0, self.seqs[0]);
        self.seqs[0] = seq;
        if put(&http, &url, 0, seq).await {
            self.tally.acked += 1;
            self.known[0] = crash_workload::state_after(0, seq);
            self.pending[0] = Progress { acked: Some(seq), begun: Some(seq), acks: 0 };
            let read = get(&http, &url).await;
            if read.as_ref().ok() != Some(&self.known[0]) {
                self.tally.write_failures += 1;
                self.tally.fail(format!("round {round}: a write after the reopen did not read back: {read:?}"));
            }
        } else {
            self.tally.write_failures += 1;
            self.tally.fail(format!("round {round}: a write after the reopen failed"));
        }
        Some(server)
    }

    /// Checks what the last cut left, without writing more. Call after the
    /// last round.
    pub async fn finish(&mut self) {
        self.round += 1;
        drop(self.check(self.round).await);
    }
}
