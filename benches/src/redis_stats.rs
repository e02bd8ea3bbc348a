//! What a Redis server did, from `INFO`: commands by name (`commandstats`)
//! and its own CPU time (`cpu`), so that a benchmark can report the server's
//! work per request next to the requests per second.
//!
//! Speaks just enough RESP over a plain loopback connection: one inline
//! command, one bulk string back.

use std::collections::BTreeMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A server's counters at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    /// Calls and microseconds spent, by command (`evalsha`, `get`, ...).
    pub commands: BTreeMap<String, (u64, u64)>,
    /// User plus system CPU seconds the server has used.
    pub cpu_secs: f64,
}

/// A server's work per request between two snapshots.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Work {
    /// Commands the clients sent, per request, by name.
    pub commands: BTreeMap<String, f64>,
    /// Microseconds of command execution per request (`INFO commandstats`;
    /// for a script, the commands it ran are inside its own time).
    pub command_us: f64,
    /// Microseconds of the server's CPU per request (`INFO cpu`): command
    /// execution plus reading, parsing and answering.
    pub cpu_us: f64,
}

impl Work {
    /// Commands per request, all names together.
    pub fn commands_per_request(&self) -> f64 {
        self.commands.values().sum()
    }
}

impl Snapshot {
    /// The work from `self` to `later`, divided by `requests`.
    pub fn work_until(&self, later: &Snapshot, requests: u64) -> Work {
        let per = |n: f64| n / requests.max(1) as f64;
        let mut work = Work { cpu_us: per((later.cpu_secs - self.cpu_secs) * 1e6), ..Work::default() };
        for (name, &(calls, usec)) in &later.commands {
            let (calls_before, usec_before) = self.commands.get(name).copied().unwrap_or_default();
            let calls = calls.saturating_sub(calls_before);
            if calls == 0 || name == "info" {
                continue;
            }
            work.commands.insert(name.clone(), per(calls as f64));
            work.command_us += per(usec.saturating_sub(usec_before) as f64);
        }
        work
    }
}

/// `host:port` from `redis://host:port/...`.
fn address(url: &str) -> Option<&str> {
    let rest = url.strip_prefix("redis://")?;
    let authority = rest.split('/').next()?;
    Some(authority.rsplit('@').next().unwrap_or(authority))
}

/// Reads the server's counters. `None` (with the reason on stderr) when the
/// server cannot be asked: a URL with TLS or a password, or no answer.
pub fn snapshot(url: &str) -> Option<Snapshot> {
    let Some(address) = address(url).filter(|_| !url.contains('@')) else {
        eprintln!("sessionkit-benches: not counting Redis commands on a server with TLS or a password");
        return None;
    };
    match info(address) {
        Ok(text) => Some(parse(&text)),
        Err(err) => {
            eprintln!("sessionkit-benches: INFO on Redis failed: {err}");
            None
        }
    }
}

fn info(address: &str) -> io::Result<String> {
    let stream = TcpStream::connect(address)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    (&stream).write_all(b"INFO commandstats\r\nINFO cpu\r\n")?;
    let mut reader = BufReader::new(stream);
    let mut text = String::new();
    for _ in 0..2 {
        let mut header = String::new();
        reader.read_line(&mut header)?;
        let len: usize = header
            .strip_prefix('$')
            .and_then(|len| len.trim().parse().ok())
            .ok_or_else(|| io::Error::other(format!("unexpected INFO reply {header:?}")))?;
        let mut body = vec![0; len + 2];
        reader.read_exact(&mut body)?;
        text.push_str(&String::from_utf8_lossy(&body));
    }
    Ok(text)
}

/// Parses `cmdstat_<name>:calls=N,usec=M,...` and `used_cpu_{sys,user}:S` lines.
fn parse(text: &str) -> Snapshot {
    let mut snapshot = Snapshot::default();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("cmdstat_") {
            let Some((name, fields)) = rest.split_once(':') else { continue };
            let field = |key: &str| {
                fields.split(',').find_map(|pair| pair.strip_prefix(key)?.strip_prefix('=')?.parse::<u64>().ok())
            };
            if let (Some(calls), Some(usec)) = (field("calls"), field("usec")) {
                snapshot.commands.insert(name.to_owned(), (calls, usec));
            }
        } else if let Some(secs) = line.strip_prefix("used_cpu_sys:").or_else(|| line.strip_prefix("used_cpu_user:")) {
            snapshot.cpu_secs += secs.trim().parse::<f64>().unwrap_or(0.0);
        }
    }
    snapshot
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_text_becomes_work_per_request() {
        let before = parse(
            "# Commandstats\r\ncmdstat_get:calls=10,usec=20,usec_per_call=2.00,rejected_calls=0,failed_calls=0\r\n\
             # CPU\r\nused_cpu_sys:1.000000\r\nused_cpu_user:2.000000\r\nused_cpu_sys_children:9.0\r\n",
        );
        assert_eq!(before.commands.get("get"), Some(&(10, 20)));
        assert!((before.cpu_secs - 3.0).abs() < 1e-9, "{before:?}");
        let after = parse(
            "cmdstat_get:calls=110,usec=220,usec_per_call=2.00\r\ncmdstat_evalsha:calls=100,usec=1000\r\n\
             cmdstat_info:calls=7,usec=70\r\nused_cpu_sys:1.5\r\nused_cpu_user:2.5\r\n",
        );
        let work = before.work_until(&after, 100);
        assert_eq!(work.commands.get("get"), Some(&1.0));
        assert_eq!(work.commands.get("evalsha"), Some(&1.0));
        assert!(!work.commands.contains_key("info"), "our own INFO calls are not the clients' work");
        assert_eq!(work.commands_per_request(), 2.0);
        assert!((work.command_us - 12.0).abs() < 1e-9, "{work:?}");
        assert!((work.cpu_us - 10_000.0).abs() < 1e-6, "{work:?}");
    }

    #[test]
    fn addresses_come_from_plain_urls_only() {
        assert_eq!(address("redis://127.0.0.1:6379/"), Some("127.0.0.1:6379"));
        assert_eq!(address("redis://127.0.0.1:6379"), Some("127.0.0.1:6379"));
        assert_eq!(address("rediss://host:6379/"), None);
    }

    #[test]
    fn a_real_server_is_counted() {
        // A missing redis-server fails under CI and is a loud skip elsewhere.
        let Ok(port) = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()) else {
            return;
        };
        let Ok(mut child) = std::process::Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string(), "--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .spawn()
        else {
            assert_ne!(
                std::env::var("CI").as_deref(),
                Ok("true"),
                "redis-server is missing under CI (scripts/install-test-deps installs it)"
            );
            eprintln!("SKIPPED: redis-server is not installed, so the live INFO check did not run");
            return;
        };
        let url = format!("redis://127.0.0.1:{port}/");
        let mut found = None;
        for _ in 0..100 {
            if let Some(snapshot) = TcpStream::connect(("127.0.0.1", port)).ok().and_then(|_| snapshot(&url)) {
                found = Some(snapshot);
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        let snapshot = found.expect("INFO from a fresh redis-server");
        assert!(snapshot.cpu_secs > 0.0, "{snapshot:?}");
    }
}
