//! `sessionkit list`: how many live sessions a store holds, or one user's
//! sessions with their handles.

use std::io::Write;

use sessionkit::{ScanCursor, SessionInfo};

use crate::args::ListArgs;
use crate::progress::when;
use crate::{CliError, open};

/// Sessions read per page when counting.
const PAGE: usize = 1_000;

/// Runs `list`.
pub async fn run(args: ListArgs, out: &mut (dyn Write + Send)) -> Result<(), CliError> {
    let store = open(&args.store).await?;
    let write = |out: &mut (dyn Write + Send), line: String| {
        writeln!(out, "{line}").map_err(CliError::io("writing the listing"))
    };
    let Some(user) = args.user else {
        let mut cursor = ScanCursor::start();
        let (mut live, mut users) = (0u64, std::collections::BTreeSet::new());
        loop {
            let page = store.scan(&cursor, PAGE).await.map_err(CliError::store("scanning the store"))?;
            live += page.records.len() as u64;
            users.extend(page.records.iter().filter_map(|(_, r)| r.user().map(str::to_owned)));
            match page.next {
                Some(next) => cursor = next,
                None => break,
            }
        }
        return write(out, format!("{live} live sessions, of {} users", users.len()));
    };
    let mut sessions: Vec<SessionInfo> = store
        .sessions_of(&user)
        .await
        .map_err(CliError::store(format!("listing the sessions of {user:?}")))?
        .into_iter()
        .map(|(key, record)| SessionInfo::new(key, record, false))
        .collect();
    sessions.sort_by_key(|info| std::cmp::Reverse(info.last_active));
    write(out, format!("{} live sessions of {user:?}", sessions.len()))?;
    if !sessions.is_empty() {
        write(out, format!("{:<43}  {:<24}  {:<24}  {:<24}", "handle", "created", "last active", "expires"))?;
    }
    for info in sessions {
        write(
            out,
            format!(
                "{:<43}  {:<24}  {:<24}  {:<24}",
                info.handle,
                when(info.created_at),
                when(info.last_active),
                when(info.expires_at)
            ),
        )?;
    }
    Ok(())
}
