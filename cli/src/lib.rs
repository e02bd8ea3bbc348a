//! `sessionkit`, the command line tool: look at a session store, revoke a
//! user's sessions, purge expired ones, and copy every live session from
//! one store to another, so an application can change engines (from the
//! embedded redb store to Redis or PostgreSQL, say) without logging anyone
//! out.
//!
//! Every command takes stores as URLs (`memory:`, `file:DIR`, `sqlite:PATH`,
//! `redb:PATH`, `redis://…`, `postgres://…`: see
//! [`sessionkit_stores::StoreUrl`]). Sessions are named by their handle,
//! the key the store holds them under, never by the id in the user's
//! cookie: with ids hashed at rest (sessionkit's default) a handle cannot
//! be used to log in.
//!
//! | module | command |
//! | --- | --- |
//! | [`list`] | `list`: how many sessions, or one user's |
//! | [`show`] | `show HANDLE`: one session |
//! | [`revoke`] | `revoke --user U`: end a user's sessions |
//! | [`purge`] | `purge-expired`: remove expired sessions |
//! | [`migrate`] | `migrate --from URL --to URL`: copy every live session |

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod args;
mod error;
pub mod keying;
pub mod list;
pub mod migrate;
mod progress;
pub mod purge;
pub mod revoke;
pub mod show;

use std::io::Write;

pub use args::{Args, Command};
pub use error::CliError;

/// Runs one command, writing its report to `out`.
pub async fn run(args: Args, out: &mut (dyn Write + Send)) -> Result<(), CliError> {
    match args.command {
        Command::List(list) => list::run(list, out).await,
        Command::Show(show) => show::run(show, out).await,
        Command::Revoke(revoke) => revoke::run(revoke, out).await,
        Command::PurgeExpired(purge) => purge::run(purge, out).await,
        Command::Migrate(migrate) => migrate::run(migrate, out).await,
    }
}

/// Opens the store at `url`, saying which URL failed.
async fn open(url: &str) -> Result<std::sync::Arc<dyn sessionkit::SessionStore>, CliError> {
    Ok(sessionkit_stores::open(url).await?)
}
