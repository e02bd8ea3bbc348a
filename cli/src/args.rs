//! The command line, parsed by clap.

use std::num::NonZeroUsize;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

const STORE_URLS: &str = "\
Store URLs:
  memory:                   a fresh in-memory store (only useful for trying the tool)
  file:DIR                  the FileStore in directory DIR
  sqlite:PATH               the SqliteStore in database file PATH (table http_sessions)
  redb:PATH                 the RedbStore in database file PATH
  redis://[user:pass@]host:port[/db]          a standalone Redis (rediss:// for TLS)
  redis+cluster://host1:port1,host2:port2/     a Redis Cluster, from seed nodes
  redis+sentinel://s1:26379,s2:26379/service   the primary Sentinel names `service`
  postgres://[user:pass@]host[:port]/db        a PostgreSQL database (table http_sessions)
A TLS URL takes ?ca=PATH (and &cert=PATH&key=PATH for client certificates).
Passwords in URLs are never printed.

Sessions are named by their handle, the key the store holds them under (what an
application's \"your sessions\" page shows), never by the id in a user's cookie.";

/// sessionkit's command line tool: look at a session store, revoke a
/// user's sessions, purge expired ones, and move every live session to
/// another store without logging anyone out.
#[derive(Debug, Parser)]
#[command(name = "sessionkit", version, after_long_help = STORE_URLS, after_help = STORE_URLS)]
pub struct Args {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Count the live sessions, or list one user's.
    #[command(after_help = STORE_URLS)]
    List(ListArgs),
    /// Show one session by its handle.
    #[command(after_help = STORE_URLS)]
    Show(ShowArgs),
    /// End a user's sessions (all of them, or one, or all but one).
    #[command(after_help = STORE_URLS)]
    Revoke(RevokeArgs),
    /// Remove expired sessions (and their index entries) now.
    #[command(after_help = STORE_URLS)]
    PurgeExpired(PurgeArgs),
    /// Copy every live session from one store to another, with its data,
    /// expiry and user; idempotent and resumable.
    #[command(after_help = STORE_URLS)]
    Migrate(MigrateArgs),
}

/// `list`.
#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// The store, as a URL (see below).
    #[arg(long, value_name = "URL")]
    pub store: String,
    /// List this user's sessions instead of counting them all.
    #[arg(long, value_name = "USER")]
    pub user: Option<String>,
}

/// `show`.
#[derive(Debug, clap::Args)]
pub struct ShowArgs {
    /// The store, as a URL (see below).
    #[arg(long, value_name = "URL")]
    pub store: String,
    /// The session's handle (43 characters).
    #[arg(value_name = "HANDLE")]
    pub handle: String,
}

/// `revoke`.
#[derive(Debug, clap::Args)]
pub struct RevokeArgs {
    /// The store, as a URL (see below).
    #[arg(long, value_name = "URL")]
    pub store: String,
    /// The user whose sessions end.
    #[arg(long, value_name = "USER")]
    pub user: String,
    /// End only this session (it must be the user's).
    #[arg(long, value_name = "HANDLE", conflicts_with = "except")]
    pub handle: Option<String>,
    /// End every session of the user but this one.
    #[arg(long, value_name = "HANDLE")]
    pub except: Option<String>,
}

/// `purge-expired`.
#[derive(Debug, clap::Args)]
pub struct PurgeArgs {
    /// The store, as a URL (see below).
    #[arg(long, value_name = "URL")]
    pub store: String,
}

/// `migrate`.
#[derive(Debug, clap::Args)]
pub struct MigrateArgs {
    /// The store to copy from, as a URL (see below). It is only read.
    #[arg(long, value_name = "URL")]
    pub from: String,
    /// The store to copy to, as a URL. Sessions it already holds under the
    /// same handle are replaced; others are left alone.
    #[arg(long, value_name = "URL")]
    pub to: String,
    /// Sessions read per batch.
    #[arg(long, value_name = "N", default_value = "1000")]
    pub batch: NonZeroUsize,
    /// Sessions written at once within a batch.
    #[arg(long, value_name = "N", default_value = "32")]
    pub parallel: NonZeroUsize,
    /// Where to keep the position of an interrupted run, so that the next
    /// run with the same file carries on from there (and removes the file
    /// when done). Without it, a second run starts over, which is safe too.
    #[arg(long, value_name = "FILE")]
    pub resume: Option<PathBuf>,
    /// Copy even if the two stores' sessions were keyed differently
    /// (ids hashed at rest in one, not in the other): the copies would not
    /// be found by the application. Only for stores known to be empty of
    /// real sessions.
    #[arg(long)]
    pub ignore_keying: bool,
}
