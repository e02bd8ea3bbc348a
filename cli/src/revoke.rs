//! `sessionkit revoke --user U`: end a user's sessions, as when an account
//! is disabled; or one of them (`--handle`), or all but one (`--except`).

use std::io::Write;

use crate::args::RevokeArgs;
use crate::show::parse_handle;
use crate::{CliError, open};

/// Runs `revoke`.
pub async fn run(args: RevokeArgs, out: &mut (dyn Write + Send)) -> Result<(), CliError> {
    let handle = args.handle.as_deref().map(parse_handle).transpose()?;
    let except = args.except.as_deref().map(parse_handle).transpose()?;
    let store = open(&args.store).await?;
    let user = &args.user;
    let revoked = match handle {
        Some(handle) => {
            let revoked = store.revoke(user, &handle).await.map_err(CliError::store("revoking the session"))?;
            if !revoked {
                return Err(CliError::Invalid(format!("{user:?} has no live session with that handle")));
            }
            1
        }
        None => store
            .revoke_all(user, except.as_ref())
            .await
            .map_err(CliError::store(format!("revoking the sessions of {user:?}")))?,
    };
    writeln!(out, "revoked {revoked} sessions of {user:?}").map_err(CliError::io("writing the report"))
}
