//! Store URLs: one syntax for an application's configuration, the demo and
//! the `sessionkit` command line tool.
//!
//! | URL | store | feature |
//! | --- | --- | --- |
//! | `memory:` | a fresh [`MemoryStore`](crate::MemoryStore) | `memory` |
//! | `file:DIR` | a [`FileStore`](crate::FileStore) in the directory `DIR` | `file` |
//! | `sqlite:PATH` | a [`SqliteStore`](crate::SqliteStore) on the database file `PATH` | `sqlite` |
//! | `redb:PATH` | a [`RedbStore`](crate::RedbStore) on the database file `PATH` | `redb` |
//! | `redis://…`, `rediss://…`, `redis+cluster://…`, `redis+sentinel://…` | a [`RedisStore`](crate::RedisStore); see its docs for every form | `redis` |
//! | `postgres://…`, `postgresql://…` | a [`PostgresStore`](crate::PostgresStore) | `postgres` |
//!
//! Paths are taken as written after the colon (`file:sessions`,
//! `sqlite:/var/lib/app/sessions.db`); `file://`, `sqlite://` and `redb://`
//! followed by a path are accepted too. A scheme this build does not know,
//! or one whose cargo feature is off, is a clear [`OpenError`] before
//! anything is opened. URLs in errors and in [`StoreUrl`]'s `Display` have
//! their password replaced by `***`.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use sessionkit::{SessionStore, StoreError};

/// A parsed store URL: which store, and where.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreUrl {
    /// `memory:`.
    Memory,
    /// `file:DIR`.
    File(PathBuf),
    /// `sqlite:PATH`.
    Sqlite(PathBuf),
    /// `redb:PATH`.
    Redb(PathBuf),
    /// A Redis URL, in any of [`RedisStore`](crate::RedisStore)'s forms.
    Redis(String),
    /// A PostgreSQL connection URL.
    Postgres(String),
}

/// Why a store URL could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The URL does not start with a scheme this library knows.
    #[error(
        "unknown session store URL {url:?}: expected memory:, file:DIR, sqlite:PATH, redb:PATH, redis://…, \
         rediss://…, redis+cluster://…, redis+sentinel://… or postgres://…"
    )]
    UnknownScheme {
        /// The URL, its password hidden.
        url: String,
    },
    /// The scheme is known, but its store was not compiled in.
    #[error("session store URL {url:?} needs sessionkit-stores' `{feature}` feature, which this build lacks")]
    FeatureDisabled {
        /// The URL, its password hidden.
        url: String,
        /// The cargo feature to enable.
        feature: &'static str,
    },
    /// The scheme is right, the rest is not (an empty path).
    #[error("invalid session store URL {url:?}: {reason}")]
    Invalid {
        /// The URL, its password hidden.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The store itself could not be opened (a file that is not a
    /// database, a server that does not answer).
    #[error("cannot open the session store at {url}")]
    Store {
        /// The URL, its password hidden.
        url: String,
        /// The store's error.
        #[source]
        source: StoreError,
    },
}

impl StoreUrl {
    /// Parses `url`; opens nothing.
    pub fn parse(url: &str) -> Result<Self, OpenError> {
        let path = |rest: &str, scheme: &str| -> Result<PathBuf, OpenError> {
            let rest = rest.strip_prefix("//").unwrap_or(rest);
            if rest.is_empty() {
                let reason = match scheme {
                    "file" => "file: needs a directory, as in file:sessions",
                    _ => "the URL needs a file path after the colon, as in sqlite:sessions.db",
                };
                return Err(OpenError::Invalid { url: redact(url), reason });
            }
            Ok(PathBuf::from(rest))
        };
        let (scheme, rest) = url.split_once(':').ok_or_else(|| OpenError::UnknownScheme { url: redact(url) })?;
        let parsed = match scheme.to_ascii_lowercase().as_str() {
            "memory" => {
                if !rest.trim_start_matches("//").is_empty() {
                    return Err(OpenError::Invalid {
                        url: redact(url),
                        reason: "memory: takes nothing after the colon",
                    });
                }
                StoreUrl::Memory
            }
            "file" => StoreUrl::File(path(rest, "file")?),
            "sqlite" => StoreUrl::Sqlite(path(rest, "sqlite")?),
            "redb" => StoreUrl::Redb(path(rest, "redb")?),
            "redis" | "rediss" | "redis+cluster" | "rediss+cluster" | "redis+sentinel" | "rediss+sentinel" => {
                StoreUrl::Redis(url.to_owned())
            }
            "postgres" | "postgresql" => StoreUrl::Postgres(url.to_owned()),
            _ => return Err(OpenError::UnknownScheme { url: redact(url) }),
        };
        Ok(parsed)
    }

    /// The cargo feature of `sessionkit-stores` this store needs.
    pub fn feature(&self) -> &'static str {
        match self {
            StoreUrl::Memory => "memory",
            StoreUrl::File(_) => "file",
            StoreUrl::Sqlite(_) => "sqlite",
            StoreUrl::Redb(_) => "redb",
            StoreUrl::Redis(_) => "redis",
            StoreUrl::Postgres(_) => "postgres",
        }
    }

    /// The store's name: `memory`, `file`, `sqlite`, `redb`, `redis`,
    /// `postgres`.
    pub fn kind(&self) -> &'static str {
        self.feature()
    }

    /// Opens the store, with that store's defaults. Files and directories
    /// are created if missing (not their parent directories, except for
    /// the file store, which creates its whole path).
    pub async fn open(&self) -> Result<Arc<dyn SessionStore>, OpenError> {
        let failed = |source| OpenError::Store { url: self.to_string(), source };
        let disabled = || OpenError::FeatureDisabled { url: self.to_string(), feature: self.feature() };
        match self {
            #[cfg(feature = "memory")]
            StoreUrl::Memory => Ok(Arc::new(crate::MemoryStore::new())),
            #[cfg(feature = "file")]
            StoreUrl::File(dir) => Ok(Arc::new(crate::FileStore::open(dir).await.map_err(failed)?)),
            #[cfg(feature = "sqlite")]
            StoreUrl::Sqlite(path) => Ok(Arc::new(crate::SqliteStore::open(path).await.map_err(failed)?)),
            #[cfg(feature = "redb")]
            StoreUrl::Redb(path) => Ok(Arc::new(crate::RedbStore::open(path).await.map_err(failed)?)),
            #[cfg(feature = "redis")]
            StoreUrl::Redis(url) => Ok(Arc::new(crate::RedisStore::open(url).await.map_err(failed)?)),
            #[cfg(feature = "postgres")]
            StoreUrl::Postgres(url) => Ok(Arc::new(crate::PostgresStore::open(url).await.map_err(failed)?)),
            #[allow(unreachable_patterns)]
            _ => {
                let _ = failed;
                Err(disabled())
            }
        }
    }
}

/// A store from its URL: [`StoreUrl::parse`], then [`StoreUrl::open`].
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let store = sessionkit_stores::open("memory:").await?;
/// # let _ = store;
/// assert!(sessionkit_stores::open("mongodb://localhost").await.is_err());
/// # Ok(()) }
/// ```
pub async fn open(url: &str) -> Result<Arc<dyn SessionStore>, OpenError> {
    StoreUrl::parse(url)?.open().await
}

/// The URL as written, its password (if any) as `***`.
impl fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreUrl::Memory => f.write_str("memory:"),
            StoreUrl::File(path) => write!(f, "file:{}", path.display()),
            StoreUrl::Sqlite(path) => write!(f, "sqlite:{}", path.display()),
            StoreUrl::Redb(path) => write!(f, "redb:{}", path.display()),
            StoreUrl::Redis(url) | StoreUrl::Postgres(url) => f.write_str(&redact(url)),
        }
    }
}

/// Like `Display`: a store URL may hold a password.
impl fmt::Debug for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StoreUrl({self})")
    }
}

/// `scheme://user:secret@host/…` as `scheme://user:***@host/…`, for
/// messages and logs. A URL without a password is returned unchanged.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    // The authority ends at the first `/`, `?` or `#`; the userinfo at its
    // last `@` (a password may contain `@`).
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let Some((userinfo, host)) = authority.rsplit_once('@') else {
        return url.to_owned();
    };
    match userinfo.split_once(':') {
        Some((user, _password)) => format!("{scheme}://{user}:***@{host}{tail}"),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_scheme_parses_to_its_store() {
        let cases = [
            ("memory:", StoreUrl::Memory),
            ("file:sessions", StoreUrl::File("sessions".into())),
            ("file:///var/lib/app/sessions", StoreUrl::File("/var/lib/app/sessions".into())),
            ("sqlite:app.db", StoreUrl::Sqlite("app.db".into())),
            ("sqlite:///tmp/app.db", StoreUrl::Sqlite("/tmp/app.db".into())),
            ("redb:sessions.redb", StoreUrl::Redb("sessions.redb".into())),
            ("redis://127.0.0.1:6379/", StoreUrl::Redis("redis://127.0.0.1:6379/".into())),
            ("rediss://host/", StoreUrl::Redis("rediss://host/".into())),
            ("redis+cluster://a:1,b:2/", StoreUrl::Redis("redis+cluster://a:1,b:2/".into())),
            ("redis+sentinel://s:26379/main", StoreUrl::Redis("redis+sentinel://s:26379/main".into())),
            ("postgres://app@db/sessions", StoreUrl::Postgres("postgres://app@db/sessions".into())),
            ("postgresql://db/", StoreUrl::Postgres("postgresql://db/".into())),
        ];
        for (url, expected) in cases {
            assert_eq!(StoreUrl::parse(url).expect(url), expected, "{url}");
        }
    }

    #[test]
    fn bad_urls_are_clear_errors_that_hide_passwords() {
        for url in ["mongodb://localhost", "sessions.db", "", "http://x"] {
            assert!(matches!(StoreUrl::parse(url), Err(OpenError::UnknownScheme { .. })), "{url}");
        }
        for url in ["file:", "sqlite:", "redb://", "memory:x"] {
            assert!(matches!(StoreUrl::parse(url), Err(OpenError::Invalid { .. })), "{url}");
        }
        let err = StoreUrl::parse("mongo://ada:s3cret@db/").expect_err("unknown").to_string();
        assert!(!err.contains("s3cret") && err.contains("ada:***@db"), "{err}");
    }

    #[test]
    fn passwords_are_hidden() {
        assert_eq!(redact("redis://127.0.0.1:6379/"), "redis://127.0.0.1:6379/");
        assert_eq!(redact("redis://:s3cret@host:1/0"), "redis://:***@host:1/0");
        assert_eq!(redact("rediss://ada:p@ss@host/"), "rediss://ada:***@host/");
        assert_eq!(redact("redis://ada@host/"), "redis://ada@host/");
        assert_eq!(redact("postgres://app:pw@db/x?sslmode=require"), "postgres://app:***@db/x?sslmode=require");
        assert_eq!(redact("unix:///tmp/redis.sock"), "unix:///tmp/redis.sock");
        let shown = StoreUrl::parse("postgres://app:pw@db/x").expect("url").to_string();
        assert_eq!(shown, "postgres://app:***@db/x");
        assert!(!format!("{:?}", StoreUrl::parse("redis://:pw@h/").expect("url")).contains("pw"));
    }

    #[cfg(feature = "memory")]
    #[tokio::test]
    async fn memory_opens() {
        let store = open("memory:").await.expect("open");
        let key = sessionkit::testing::checks::key();
        store.set(&key, &sessionkit::SessionMap::new(), None).await.expect("set");
        assert!(store.get(&key).await.expect("get").is_some());
    }

    #[cfg(all(feature = "file", feature = "sqlite", feature = "redb"))]
    #[tokio::test]
    async fn file_sqlite_and_redb_open_at_their_paths() {
        let dir = tempfile::tempdir().expect("tempdir");
        for url in [
            format!("file:{}", dir.path().join("files").display()),
            format!("sqlite:{}", dir.path().join("s.db").display()),
            format!("redb:{}", dir.path().join("s.redb").display()),
        ] {
            let store = open(&url).await.unwrap_or_else(|err| panic!("{url}: {err}"));
            let key = sessionkit::testing::checks::key();
            store.set(&key, &sessionkit::SessionMap::new(), None).await.expect("set");
            assert!(store.get(&key).await.expect("get").is_some(), "{url}");
        }
        assert!(dir.path().join("s.db").exists() && dir.path().join("s.redb").exists());
        let missing = format!("sqlite:{}", dir.path().join("no/such/dir/s.db").display());
        assert!(matches!(open(&missing).await, Err(OpenError::Store { .. })));
    }
}
