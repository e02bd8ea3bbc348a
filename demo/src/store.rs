//! Opening the store the flags ask for, and naming it for people.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sessionkit::SessionStore;
use sessionkit_stores::{OpenError, StoreUrl, redact};

use crate::{Args, StartError};

/// A store, opened, with a label for people: `redb at /path/sessions.redb`.
#[derive(Clone)]
pub struct OpenedStore {
    /// The store.
    pub store: Arc<dyn SessionStore>,
    /// What it is and where, for the startup line and the session page;
    /// a password in a URL is shown as `***`.
    pub label: String,
}

impl std::fmt::Debug for OpenedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenedStore").field("label", &self.label).finish_non_exhaustive()
    }
}

/// Opens the store the flags ask for (a short form or a store URL alike,
/// see [`Args::store_url`]), creating the data file's parent directory if
/// needed.
///
/// # Errors
///
/// A [`StartError`] saying which store and which path or URL failed, and why.
pub async fn build_store(args: &Args) -> Result<OpenedStore, StartError> {
    let url = absolute(args.store_url());
    if let StoreUrl::Sqlite(file) | StoreUrl::Redb(file) = &url {
        create_parent(file).await?;
    }
    let store = url.open().await.map_err(|err| open_failed(&url, err))?;
    Ok(OpenedStore { store, label: label(&url) })
}

/// Paths made absolute, so the startup line says exactly where the data is.
fn absolute(url: StoreUrl) -> StoreUrl {
    let absolute = |path: PathBuf| std::path::absolute(&path).unwrap_or(path);
    match url {
        StoreUrl::File(dir) => StoreUrl::File(absolute(dir)),
        StoreUrl::Sqlite(file) => StoreUrl::Sqlite(absolute(file)),
        StoreUrl::Redb(file) => StoreUrl::Redb(absolute(file)),
        other => other,
    }
}

/// `redb at /path`, `redis at redis://:***@host/`: what the startup line
/// and the session page show.
pub fn label(url: &StoreUrl) -> String {
    match url {
        StoreUrl::Memory => "memory (sessions end when the demo stops)".to_owned(),
        StoreUrl::File(path) | StoreUrl::Sqlite(path) | StoreUrl::Redb(path) => {
            format!("{} at {}", url.kind(), path.display())
        }
        StoreUrl::Redis(raw) | StoreUrl::Postgres(raw) => format!("{} at {}", url.kind(), redact(raw)),
        // `StoreUrl`'s `Display` hides passwords too.
        other => format!("{} at {other}", other.kind()),
    }
}

/// The demo's error for a store that would not open: by path for the
/// stores on disk, by URL (password hidden) for the servers.
fn open_failed(url: &StoreUrl, err: OpenError) -> StartError {
    let OpenError::Store { source, .. } = err else {
        return StartError::StoreUrl(err);
    };
    match url {
        StoreUrl::File(path) | StoreUrl::Sqlite(path) | StoreUrl::Redb(path) => {
            StartError::OpenStore { kind: url.kind(), path: path.clone(), source }
        }
        StoreUrl::Redis(raw) => StartError::Redis { url: redact(raw), source },
        StoreUrl::Postgres(raw) => StartError::Postgres { url: redact(raw), source },
        _ => StartError::OpenStore { kind: url.kind(), path: PathBuf::new(), source },
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_name_the_store_and_hide_passwords() {
        assert_eq!(label(&StoreUrl::Redb("/d/s.redb".into())), "redb at /d/s.redb");
        assert_eq!(label(&StoreUrl::File("/d/s".into())), "file at /d/s");
        assert_eq!(label(&StoreUrl::Redis("redis://127.0.0.1:6379/".into())), "redis at redis://127.0.0.1:6379/");
        assert_eq!(label(&StoreUrl::Redis("redis://:s3cret@host:1/0".into())), "redis at redis://:***@host:1/0");
        assert_eq!(
            label(&StoreUrl::Postgres("postgres://app:pw@db/x?sslmode=require".into())),
            "postgres at postgres://app:***@db/x?sslmode=require"
        );
        assert!(label(&StoreUrl::Memory).starts_with("memory"));
    }

    #[test]
    fn relative_paths_become_absolute() {
        let StoreUrl::Sqlite(path) = absolute(StoreUrl::Sqlite("s.db".into())) else { panic!("still sqlite") };
        assert!(path.is_absolute() && path.ends_with("s.db"), "{}", path.display());
        assert_eq!(absolute(StoreUrl::Memory), StoreUrl::Memory);
    }
}
