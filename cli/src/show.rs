//! `sessionkit show HANDLE`: one session, as JSON.

use std::io::Write;

use serde_json::{Value, json};
use sessionkit::{SessionInfo, StoreKey};

use crate::args::ShowArgs;
use crate::progress::when;
use crate::{CliError, open};

/// Runs `show`.
pub async fn run(args: ShowArgs, out: &mut (dyn Write + Send)) -> Result<(), CliError> {
    let key = parse_handle(&args.handle)?;
    let store = open(&args.store).await?;
    let record = store.get(&key).await.map_err(CliError::store("reading the session"))?;
    let Some(record) = record else {
        return Err(CliError::Invalid(format!("no live session has the handle {}", args.handle)));
    };
    let user = record.user().map(str::to_owned);
    let info = SessionInfo::new(key, record, false);
    let shown = json!({
        "handle": info.handle.to_string(),
        "user": user,
        "created_at": when(info.created_at),
        "last_active": when(info.last_active),
        "expires_at": when(info.expires_at),
        "data": Value::Object(info.data),
    });
    let text = serde_json::to_string_pretty(&shown).unwrap_or_else(|_| shown.to_string());
    writeln!(out, "{text}").map_err(CliError::io("writing the session"))
}

/// A handle as typed on the command line.
pub(crate) fn parse_handle(text: &str) -> Result<StoreKey, CliError> {
    StoreKey::parse(text.trim()).ok_or_else(|| {
        CliError::Invalid(format!("{text:?} is not a session handle (43 characters of A-Z a-z 0-9 - _)"))
    })
}
