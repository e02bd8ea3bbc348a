//! `sessionkit purge-expired`: remove expired sessions now, rather than
//! waiting for the application's sweeper.

use std::io::Write;

use crate::args::PurgeArgs;
use crate::{CliError, open};

/// Runs `purge-expired`.
pub async fn run(args: PurgeArgs, out: &mut (dyn Write + Send)) -> Result<(), CliError> {
    let store = open(&args.store).await?;
    let removed = store.delete_expired().await.map_err(CliError::store("removing expired sessions"))?;
    writeln!(out, "removed {removed} expired sessions").map_err(CliError::io("writing the report"))
}
