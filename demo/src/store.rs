//! Opening the store the flags ask for, and naming it for people.

use std::io;
use std::path::Path;
use std::sync::Arc;

use sessionkit::SessionStore;
use sessionkit_stores::{FileStore, MemoryStore, RedbStore, RedisStore, SqliteStore};

use crate::{Args, StartError, StoreKind};

/// A store, opened, with a label for people: `redb at /path/sessions.redb`.
#[derive(Clone)]
pub struct OpenedStore {
    /// The store.
    pub store: Arc<dyn SessionStore>,
    /// What it is and where, for the startup line and the session page.
    pub label: String,
}

impl std::fmt::Debug for OpenedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenedStore").field("label", &self.label).finish_non_exhaustive()
    }
}

/// Opens the store the flags ask for, creating the data file's parent
/// directory if needed.
///
/// # Errors
///
/// A [`StartError`] saying which store and which path or URL failed, and why.
pub async fn build_store(args: &Args) -> Result<OpenedStore, StartError> {
    // Absolute, so the startup line says exactly where the data is. (Only
    // memory and redis have no path, and they do not read it.)
    let path = args.data_path().unwrap_or_default();
    let path = std::path::absolute(&path).unwrap_or(path);
    let open_failed = |source| StartError::OpenStore { kind: args.store.name(), path: path.clone(), source };
    let (store, label): (Arc<dyn SessionStore>, String) = match args.store {
        StoreKind::Memory => (Arc::new(MemoryStore::new()), "memory (sessions end when the demo stops)".into()),
        StoreKind::Redis => {
            let url = args.redis_url();
            let store = RedisStore::open(url)
                .await
                .map_err(|source| StartError::Redis { url: redact_password(url), source })?;
            (Arc::new(store), format!("redis at {}", redact_password(url)))
        }
        StoreKind::File => {
            // The store creates its directory, parents included.
            let store = FileStore::open(&path).await.map_err(open_failed)?;
            (Arc::new(store), format!("file at {}", path.display()))
        }
        StoreKind::Sqlite => {
            create_parent(&path).await?;
            let store = SqliteStore::open(&path).await.map_err(open_failed)?;
            (Arc::new(store), format!("sqlite at {}", path.display()))
        }
        StoreKind::Redb => {
            create_parent(&path).await?;
            let store = RedbStore::open(&path).await.map_err(open_failed)?;
            (Arc::new(store), format!("redb at {}", path.display()))
        }
    };
    Ok(OpenedStore { store, label })
}

async fn create_parent(file: &Path) -> Result<(), StartError> {
    let Some(dir) = file.parent().filter(|dir| !dir.as_os_str().is_empty()) else {
        return Ok(());
    };
    let failed = |source| StartError::DataDir { path: dir.to_owned(), source };
    // `create_dir_all` on a regular file says only "File exists".
    if tokio::fs::metadata(dir).await.is_ok_and(|meta| !meta.is_dir()) {
        return Err(failed(io::Error::new(io::ErrorKind::NotADirectory, "it exists and is not a directory")));
    }
    tokio::fs::create_dir_all(dir).await.map_err(failed)
}

/// `redis://user:secret@host/` as `redis://user:***@host/`, for messages.
pub fn redact_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((userinfo, host)) = rest.rsplit_once('@') else {
        return url.to_owned();
    };
    match userinfo.split_once(':') {
        Some((user, _password)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_hidden_in_redis_urls() {
        assert_eq!(redact_password("redis://127.0.0.1:6379/"), "redis://127.0.0.1:6379/");
        assert_eq!(redact_password("redis://:s3cret@host:1/0"), "redis://:***@host:1/0");
        assert_eq!(redact_password("rediss://ada:p@ss@host/"), "rediss://ada:***@host/");
        assert_eq!(redact_password("redis://ada@host/"), "redis://ada@host/");
        assert_eq!(redact_password("unix:///tmp/redis.sock"), "unix:///tmp/redis.sock");
    }
}
