//! The command line: which address to listen on, which store to keep
//! sessions in, and how sessions live.
//!
//! `--store` takes a short name (`memory`, `file`, `sqlite`, `redb`,
//! `redis`, with `--data` or `--redis-url` saying where) or a store URL
//! (`redb:PATH`, `redis://…`, `postgres://…`: see [`sessionkit_stores::StoreUrl`]),
//! which says where by itself; either way it ends up as one [`StoreUrl`]
//! ([`Args::store_url`]).
//!
//! Parsing is clap's; the checks that depend on more than one flag (a
//! `--data` path given to a store that has no file) are [`Args::check`]'s,
//! so they fail the same way, with clap's usage message and exit code 2.

use std::net::SocketAddr;
use std::num::NonZeroU64;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{CommandFactory as _, Parser, ValueEnum};
use sessionkit_stores::StoreUrl;

use crate::state::MAX_CART_ITEMS;

/// Where the demo keeps its data unless `--data` says otherwise: a
/// directory beside wherever it was started (`.gitignore`d in the repo).
pub const DEFAULT_DATA_DIR: &str = "sessionkit-demo-data";

/// The Redis the `redis` store connects to unless `--redis-url` says otherwise.
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379/";

/// sessionkit's demo: a small shop with typed server-side sessions.
///
/// Serves HTML pages (a visit counter, a login form, a cart, a page that
/// shows the raw session) and the same as a JSON API under /api. Sessions
/// live in an embedded redb file by default, so they survive restarts.
#[derive(Debug, Clone, Parser)]
#[command(name = "sessionkit-demo", version)]
#[command(after_help = "Examples:\n  \
    sessionkit-demo\n  \
    sessionkit-demo --store sqlite --data /tmp/sessions.sqlite3 --ttl 600 --rolling\n  \
    sessionkit-demo --store redis --redis-url redis://127.0.0.1:6379/\n  \
    sessionkit-demo --store redb:/tmp/sessions.redb\n  \
    sessionkit-demo --store postgres://app:secret@127.0.0.1:5432/app\n\n\
    Logs go to stderr; set RUST_LOG (e.g. RUST_LOG=debug) for more.")]
pub struct Args {
    /// The address to listen on (port 0 picks a free port; the URL printed
    /// at startup has the real one).
    #[arg(long, value_name = "IP:PORT", default_value = "127.0.0.1:3000")]
    pub addr: SocketAddr,

    /// Where sessions are stored: memory, file, sqlite, redb or redis (with
    /// --data or --redis-url saying where), or a store URL that says where
    /// itself: memory:, file:DIR, sqlite:PATH, redb:PATH, redis://HOST:PORT/
    /// (also rediss://, redis+cluster://, redis+sentinel://) or
    /// postgres://USER:PASSWORD@HOST:PORT/DB
    #[arg(long, value_name = "STORE", default_value = "redb", value_parser = StoreParser)]
    pub store: StoreChoice,

    /// The store's file (redb, sqlite) or directory (file), created with its
    /// parent directories if missing [default: sessions.redb, sessions.sqlite3
    /// or sessions/ in ./sessionkit-demo-data]
    #[arg(long, value_name = "PATH")]
    pub data: Option<PathBuf>,

    /// The Redis (or Valkey, 7.0 or newer) to connect to, with --store redis
    /// [default: redis://127.0.0.1:6379/]
    #[arg(long, value_name = "URL")]
    pub redis_url: Option<String>,

    /// How long a session lives, in seconds: the server-side expiry and the
    /// cookie's Max-Age.
    #[arg(long, value_name = "SECONDS", default_value = "86400", value_parser = parse_ttl)]
    pub ttl: NonZeroU64,

    /// Move a session's expiry to now + ttl on every response, instead of
    /// fixing it when the session is created.
    #[arg(long)]
    pub rolling: bool,

    /// Send the session cookie without the Secure flag. Not needed in
    /// Chrome, Firefox or curl, which accept Secure cookies from
    /// http://127.0.0.1 and http://localhost; for clients that do not
    /// (some HTTP libraries), or when serving plain http on another host.
    #[arg(long)]
    pub insecure_cookies: bool,

    /// The most items the cart (and the saved-for-later list) holds.
    #[arg(long, value_name = "ITEMS", default_value_t = MAX_CART_ITEMS, value_parser = parse_cart_limit)]
    pub cart_limit: usize,
}

/// `--ttl`: a whole number of seconds, at least 1.
fn parse_ttl(text: &str) -> Result<NonZeroU64, String> {
    text.parse::<NonZeroU64>().map_err(|_| "expected a whole number of seconds, at least 1 (86400 is a day)".to_owned())
}

/// The largest `--cart-limit`: a full cart and list of 100-character items
/// stay well under the session's size limit (1 MiB).
pub const CART_LIMIT_MAX: usize = 1000;

/// `--cart-limit`: 1 to [`CART_LIMIT_MAX`].
fn parse_cart_limit(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(limit @ 1..=CART_LIMIT_MAX) => Ok(limit),
        _ => Err(format!("expected a whole number from 1 to {CART_LIMIT_MAX}")),
    }
}

/// `--store`: a short name or a store URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreChoice {
    /// A short name; `--data` or `--redis-url` say where.
    Kind(StoreKind),
    /// A store URL, which says where itself.
    Url(StoreUrl),
}

impl StoreChoice {
    /// The store's name: `memory`, `file`, `sqlite`, `redb`, `redis` or
    /// `postgres`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Kind(kind) => kind.name(),
            Self::Url(url) => url.kind(),
        }
    }
}

/// A short name first (`redb`), then a URL (`redb:PATH`): a bare word is
/// never a URL, since every store URL has a colon.
fn parse_store(text: &str) -> Result<StoreChoice, String> {
    if let Ok(kind) = StoreKind::from_str(text, true) {
        return Ok(StoreChoice::Kind(kind));
    }
    if text.contains(':') {
        return StoreUrl::parse(text).map(StoreChoice::Url).map_err(|err| err.to_string());
    }
    Err("expected memory, file, sqlite, redb, redis, or a store URL: memory:, file:DIR, sqlite:PATH, \
         redb:PATH, redis://HOST:PORT/ or postgres://USER@HOST/DB"
        .to_owned())
}

/// `--store`'s parser: [`parse_store`], with errors that show the value
/// with its password hidden (clap's own would echo it whole, and stderr
/// ends up in logs).
#[derive(Debug, Clone, Copy)]
struct StoreParser;

impl clap::builder::TypedValueParser for StoreParser {
    type Value = StoreChoice;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        _arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<StoreChoice, clap::Error> {
        let invalid = |message: String| {
            clap::Error::raw(clap::error::ErrorKind::ValueValidation, message).format(&mut cmd.clone())
        };
        let Some(text) = value.to_str() else {
            return Err(invalid("invalid value for '--store <STORE>': not UTF-8".to_owned()));
        };
        parse_store(text).map_err(|reason| {
            invalid(format!("invalid value '{}' for '--store <STORE>': {reason}", sessionkit_stores::redact(text)))
        })
    }
}

/// The session stores the demo can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StoreKind {
    /// In the process's memory: gone when it stops.
    Memory,
    /// One JSON file per session in a directory.
    File,
    /// A SQLite database file.
    Sqlite,
    /// A redb database file (embedded, no server to run).
    Redb,
    /// A Redis or Valkey server.
    Redis,
}

impl StoreKind {
    /// The store's name, as the `--store` flag spells it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Memory => "memory",
            Self::File => "file",
            Self::Sqlite => "sqlite",
            Self::Redb => "redb",
            Self::Redis => "redis",
        }
    }

    /// Where the store keeps its data unless `--data` says otherwise;
    /// `None` for the stores that have no local data.
    pub fn default_data(self) -> Option<PathBuf> {
        let dir = Path::new(DEFAULT_DATA_DIR);
        match self {
            Self::Memory | Self::Redis => None,
            Self::File => Some(dir.join("sessions")),
            Self::Sqlite => Some(dir.join("sessions.sqlite3")),
            Self::Redb => Some(dir.join("sessions.redb")),
        }
    }
}

impl Args {
    /// Parses `args` (the program name first) and checks them; what
    /// `main` does with the process's arguments, for tests.
    ///
    /// # Errors
    ///
    /// clap's error: a usage message for an unknown or invalid flag, or the
    /// help or version text (which `clap::Error::exit_code` reports as 0).
    pub fn try_parse_checked<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let args = Self::try_parse_from(args)?;
        args.check()?;
        Ok(args)
    }

    /// The checks clap's attributes cannot express: flags that make no
    /// sense with the chosen store are refused rather than ignored, so a
    /// typo in `--store` does not silently serve from somewhere else.
    ///
    /// # Errors
    ///
    /// A clap argument-conflict error naming the flag and the store.
    pub fn check(&self) -> Result<(), clap::Error> {
        let conflict = |message: String| Err(Self::command().error(clap::error::ErrorKind::ArgumentConflict, message));
        match &self.store {
            StoreChoice::Url(url) if self.data.is_some() || self.redis_url.is_some() => {
                let flag = if self.data.is_some() { "--data" } else { "--redis-url" };
                conflict(format!(
                    "{flag} is for the short forms of --store; the store URL {url} already says where the sessions are"
                ))
            }
            StoreChoice::Kind(kind) if self.data.is_some() && kind.default_data().is_none() => conflict(format!(
                "--data is for the file, sqlite and redb stores; the {} store has no local data",
                kind.name()
            )),
            StoreChoice::Kind(kind) if self.redis_url.is_some() && *kind != StoreKind::Redis => {
                conflict(format!("--redis-url needs --store redis (the store is {})", kind.name()))
            }
            _ => Ok(()),
        }
    }

    /// The store's file or directory for a short `--store`: `--data`, or
    /// the store's default. `None` for stores without local data and for a
    /// store URL (which holds its own path).
    pub fn data_path(&self) -> Option<PathBuf> {
        match &self.store {
            StoreChoice::Kind(kind) => self.data.clone().or_else(|| kind.default_data()),
            StoreChoice::Url(_) => None,
        }
    }

    /// The store to open, as a URL: a store URL as given, a short form with
    /// its `--data` or `--redis-url` (or their defaults).
    pub fn store_url(&self) -> StoreUrl {
        let path = || self.data_path().unwrap_or_default();
        match &self.store {
            StoreChoice::Url(url) => url.clone(),
            StoreChoice::Kind(StoreKind::Memory) => StoreUrl::Memory,
            StoreChoice::Kind(StoreKind::File) => StoreUrl::File(path()),
            StoreChoice::Kind(StoreKind::Sqlite) => StoreUrl::Sqlite(path()),
            StoreChoice::Kind(StoreKind::Redb) => StoreUrl::Redb(path()),
            // Not parsed: a URL that is not Redis's is the Redis store's to
            // refuse, with its own explanation.
            StoreChoice::Kind(StoreKind::Redis) => StoreUrl::Redis(self.redis_url().to_owned()),
        }
    }

    /// The Redis URL: `--redis-url`, or [`DEFAULT_REDIS_URL`].
    pub fn redis_url(&self) -> &str {
        self.redis_url.as_deref().unwrap_or(DEFAULT_REDIS_URL)
    }

    /// The session lifetime.
    pub fn ttl(&self) -> Duration {
        Duration::from_secs(self.ttl.get())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Args, clap::Error> {
        Args::try_parse_checked(std::iter::once("sessionkit-demo").chain(args.iter().copied()))
    }

    #[test]
    fn defaults_are_redb_on_localhost_3000_for_a_day() {
        let args = parse(&[]).expect("no flags is valid");
        assert_eq!(args.addr, "127.0.0.1:3000".parse().expect("addr"));
        assert_eq!(args.store, StoreChoice::Kind(StoreKind::Redb));
        assert_eq!(args.data_path(), Some(Path::new(DEFAULT_DATA_DIR).join("sessions.redb")));
        assert_eq!(args.store_url(), StoreUrl::Redb(Path::new(DEFAULT_DATA_DIR).join("sessions.redb")));
        assert_eq!(args.cart_limit, MAX_CART_ITEMS);
        assert_eq!(args.ttl(), Duration::from_secs(86_400));
        assert!(!args.rolling && !args.insecure_cookies);
        assert_eq!(args.redis_url(), DEFAULT_REDIS_URL);
        Args::command().debug_assert();
    }

    #[test]
    fn every_store_has_its_own_default_data() {
        let file = parse(&["--store", "file"]).expect("valid");
        assert_eq!(file.data_path(), Some(Path::new(DEFAULT_DATA_DIR).join("sessions")));
        let sqlite = parse(&["--store", "sqlite", "--data", "x.db"]).expect("valid");
        assert_eq!(sqlite.data_path(), Some(PathBuf::from("x.db")));
        assert_eq!(parse(&["--store", "memory"]).expect("valid").data_path(), None);
        let redis = parse(&["--store", "redis", "--redis-url", "redis://h:1/"]).expect("valid");
        assert_eq!((redis.data_path(), redis.redis_url()), (None, "redis://h:1/"));
        assert_eq!(redis.store_url(), StoreUrl::Redis("redis://h:1/".into()));
        assert_eq!(parse(&["--store", "memory"]).expect("valid").store_url(), StoreUrl::Memory);
    }

    #[test]
    fn store_urls_say_where_themselves() {
        let cases = [
            ("memory:", StoreUrl::Memory),
            ("file:/tmp/s", StoreUrl::File("/tmp/s".into())),
            ("sqlite:s.db", StoreUrl::Sqlite("s.db".into())),
            ("redb:data/s.redb", StoreUrl::Redb("data/s.redb".into())),
            ("redis://h:1/", StoreUrl::Redis("redis://h:1/".into())),
            ("redis+cluster://a:1,b:2/", StoreUrl::Redis("redis+cluster://a:1,b:2/".into())),
            ("postgres://app:pw@db/app", StoreUrl::Postgres("postgres://app:pw@db/app".into())),
        ];
        for (flag, expected) in cases {
            let args = parse(&["--store", flag]).unwrap_or_else(|err| panic!("{flag}: {err}"));
            assert_eq!(args.store, StoreChoice::Url(expected.clone()), "{flag}");
            assert_eq!(args.store_url(), expected, "{flag}");
            assert_eq!(args.data_path(), None, "{flag}");
        }
        assert_eq!(parse(&["--store", "REDB"]).expect("valid").store, StoreChoice::Kind(StoreKind::Redb));
    }

    #[test]
    fn bad_values_are_usage_errors() {
        for bad in [
            &["--ttl", "0"][..],
            &["--ttl", "-5"],
            &["--ttl", "soon"],
            &["--store", "postgres"],
            &["--addr", "localhost"],
            &["--bogus"],
            &["--store", "memory", "--data", "x"],
            &["--store", "redis", "--data", "x"],
            &["--redis-url", "redis://h/"],
            &["--store", "mongodb://h/"],
            &["--store", "sqlite:"],
            &["--store", "redb:x.redb", "--data", "y.redb"],
            &["--store", "redis://h/", "--redis-url", "redis://h/"],
            &["--cart-limit", "0"],
            &["--cart-limit", "1001"],
        ] {
            let err = parse(bad).expect_err("invalid");
            assert_eq!(err.exit_code(), 2, "{bad:?}: {err}");
        }
    }

    #[test]
    fn help_and_version_exit_zero() {
        assert_eq!(parse(&["--help"]).expect_err("help is not a run").exit_code(), 0);
        assert_eq!(parse(&["--version"]).expect_err("version is not a run").exit_code(), 0);
    }
}
