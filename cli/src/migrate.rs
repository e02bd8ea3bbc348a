//! `sessionkit migrate --from URL --to URL`: copy every live session, with
//! its data, expiry and user, so that an application can switch stores
//! without logging anyone out.
//!
//! The source is read page by page with [`SessionStore::scan`]; each page's
//! sessions are written to the destination with `set` (an upsert), several
//! at a time. Writing a session that is already there writes the same
//! record again, so a second run, or a run after an interruption, ends in
//! the same state: the migration is idempotent. With `--resume FILE` the
//! position after each page is saved, and the next run with that file
//! carries on from it instead of starting over.
//!
//! A session that expires during the copy is not copied (it would be dead
//! on arrival), and the destination's user index follows the copied data,
//! as every store's does. Sessions written to the source after their page
//! was copied are not in the destination: stop the application (or run the
//! migration a second time after switching it) for a copy of every write.
//!
//! Before copying anything, both stores' keying is compared (see
//! [`crate::keying`]): copying sessions keyed by hashed ids into a store
//! whose sessions are keyed by raw ids, or the other way round, is refused.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use serde_json::{Value, json};
use sessionkit::{ScanCursor, SessionRecord, SessionStore, StoreKey, expiry};
use sessionkit_stores::StoreUrl;
use tokio::task::JoinSet;

use crate::args::MigrateArgs;
use crate::keying::{self, Keying};
use crate::progress::Progress;
use crate::{CliError, open};

/// Sessions read from each store to tell how it is keyed.
const KEYING_SAMPLE: usize = 1_000;

/// What a finished (or resumed) migration has done.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// Sessions written to the destination.
    pub copied: u64,
    /// Sessions that expired between being read and being written.
    pub expired: u64,
    /// Copied sessions bound to a user.
    pub with_user: u64,
    /// Copied sessions without expiry.
    pub without_expiry: u64,
    /// Pages read.
    pub pages: u64,
}

/// Runs `migrate`.
pub async fn run(args: MigrateArgs, out: &mut (dyn Write + Send)) -> Result<(), CliError> {
    let (from_url, to_url) = (StoreUrl::parse(&args.from)?, StoreUrl::parse(&args.to)?);
    if from_url == to_url {
        return Err(CliError::Invalid(format!("--from and --to are the same store ({from_url})")));
    }
    let from = open(&args.from).await?;
    let to = open(&args.to).await?;
    let (mut cursor, mut tally) = match &args.resume {
        Some(path) => resume_point(path, &from_url, &to_url).await?,
        None => (ScanCursor::start(), Tally::default()),
    };
    let resumed = !cursor.is_start();
    let target = if args.ignore_keying { None } else { check_keying(&*from, &*to, &from_url, &to_url).await? };
    let mut progress = Progress::new();
    loop {
        let page =
            from.scan(&cursor, args.batch.get()).await.map_err(CliError::store(format!("reading {from_url}")))?;
        if let Some(hashed) = target {
            for (_, record) in &page.records {
                refuse_other_keying(record, hashed, &from_url, &to_url)?;
            }
        }
        copy(&to, page.records, args.parallel.get(), &mut tally, &to_url).await?;
        tally.pages += 1;
        progress.show(tally.copied, &format!("copied {} sessions", tally.copied));
        match page.next {
            Some(next) => {
                cursor = next;
                if let Some(path) = &args.resume {
                    save_resume_point(path, &from_url, &to_url, &cursor, &tally).await?;
                }
            }
            None => break,
        }
    }
    let elapsed = progress.finish();
    if let Some(path) = &args.resume {
        match tokio::fs::remove_file(path).await {
            Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
                return Err(CliError::io(format!("removing the resume file {}", path.display()))(err));
            }
            _ => {}
        }
    }
    let rate = tally.copied as f64 / elapsed.as_secs_f64().max(1e-9);
    writeln!(
        out,
        "copied {} sessions from {from_url} to {to_url}{} ({} bound to a user, {} without expiry); \
         {} expired during the copy and were left out; {} pages in {:.1} s ({rate:.0} sessions/s)",
        tally.copied,
        if resumed { ", resuming an interrupted run" } else { "" },
        tally.with_user,
        tally.without_expiry,
        tally.expired,
        tally.pages,
        elapsed.as_secs_f64(),
    )
    .map_err(CliError::io("writing the report"))
}

/// Writes `records` to `to`, `parallel` at a time, skipping the expired.
async fn copy(
    to: &Arc<dyn SessionStore>,
    records: Vec<(StoreKey, SessionRecord)>,
    parallel: usize,
    tally: &mut Tally,
    to_url: &StoreUrl,
) -> Result<(), CliError> {
    let mut writes = JoinSet::new();
    for (key, record) in records {
        if record.is_expired_at(expiry::now()) {
            tally.expired += 1;
            continue;
        }
        tally.with_user += u64::from(record.user().is_some());
        tally.without_expiry += u64::from(record.expires_at.is_none());
        while writes.len() >= parallel {
            finish_one(&mut writes, to_url).await?;
        }
        let to = Arc::clone(to);
        writes.spawn(async move { to.set(&key, &record.data, record.expires_at).await });
        tally.copied += 1;
    }
    while !writes.is_empty() {
        finish_one(&mut writes, to_url).await?;
    }
    Ok(())
}

async fn finish_one(
    writes: &mut JoinSet<Result<(), sessionkit::StoreError>>,
    to_url: &StoreUrl,
) -> Result<(), CliError> {
    match writes.join_next().await {
        Some(Ok(written)) => written.map_err(CliError::store(format!("writing a session to {to_url}"))),
        Some(Err(panicked)) => Err(CliError::Invalid(format!("a write to {to_url} panicked: {panicked}"))),
        None => Ok(()),
    }
}

/// The keying the copies must have: the destination's, or failing that
/// the source's; refuses stores keyed differently.
async fn check_keying(
    from: &dyn SessionStore,
    to: &dyn SessionStore,
    from_url: &StoreUrl,
    to_url: &StoreUrl,
) -> Result<Option<bool>, CliError> {
    let sample = |store, url: &StoreUrl| {
        let context = format!("reading {url} to see how its sessions are keyed");
        async move { keying::sample(store, KEYING_SAMPLE).await.map_err(CliError::store(context)) }
    };
    let (source, target): (Keying, Keying) = (sample(from, from_url).await?, sample(to, to_url).await?);
    let source = source.consensus().map_err(|mixed| CliError::Keying(format!("in {from_url}, {mixed}")))?;
    let target = target.consensus().map_err(|mixed| CliError::Keying(format!("in {to_url}, {mixed}")))?;
    match (source, target) {
        (Some(source), Some(target)) if source != target => Err(CliError::Keying(format!(
            "the sessions of {from_url} are keyed {}, those of {to_url} {}: an application on {to_url} would not \
             find the copies (--ignore-keying to copy anyway)",
            keying::describe(source),
            keying::describe(target)
        ))),
        (_, Some(target)) => Ok(Some(target)),
        (source, None) => Ok(source),
    }
}

fn refuse_other_keying(
    record: &SessionRecord,
    hashed: bool,
    from_url: &StoreUrl,
    to_url: &StoreUrl,
) -> Result<(), CliError> {
    let mut keying = Keying::default();
    keying.count(&record.data);
    match keying.consensus() {
        Ok(Some(this)) if this != hashed => Err(CliError::Keying(format!(
            "a session of {from_url} is keyed {}, unlike the sessions of {to_url} ({}); nothing more is copied",
            keying::describe(this),
            keying::describe(hashed)
        ))),
        _ => Ok(()),
    }
}

/// Where an interrupted run stopped, if its resume file is there.
async fn resume_point(path: &Path, from: &StoreUrl, to: &StoreUrl) -> Result<(ScanCursor, Tally), CliError> {
    let text = match tokio::fs::read_to_string(path).await {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok((ScanCursor::start(), Tally::default())),
        Err(err) => return Err(CliError::io(format!("reading the resume file {}", path.display()))(err)),
    };
    let bad = || CliError::Invalid(format!("{} is not a resume file of `sessionkit migrate`", path.display()));
    let saved: Value = serde_json::from_str(&text).map_err(|_| bad())?;
    if saved["from"] != from.to_string() || saved["to"] != to.to_string() {
        return Err(CliError::Invalid(format!(
            "the resume file {} belongs to a migration from {} to {}",
            path.display(),
            saved["from"].as_str().unwrap_or("?"),
            saved["to"].as_str().unwrap_or("?")
        )));
    }
    let number = |name: &str| saved[name].as_u64().unwrap_or(0);
    let cursor = ScanCursor::from_text(saved["cursor"].as_str().ok_or_else(bad)?);
    let tally = Tally {
        copied: number("copied"),
        expired: number("expired"),
        with_user: number("with_user"),
        without_expiry: number("without_expiry"),
        pages: number("pages"),
    };
    Ok((cursor, tally))
}

/// Saves the position after a page: a temporary file, then a rename, so an
/// interruption leaves the old position or the new one.
async fn save_resume_point(
    path: &Path,
    from: &StoreUrl,
    to: &StoreUrl,
    cursor: &ScanCursor,
    tally: &Tally,
) -> Result<(), CliError> {
    let saved = json!({
        "from": from.to_string(),
        "to": to.to_string(),
        "cursor": cursor.as_str(),
        "copied": tally.copied,
        "expired": tally.expired,
        "with_user": tally.with_user,
        "without_expiry": tally.without_expiry,
        "pages": tally.pages,
    });
    let temporary = path.with_extension("tmp");
    let failed = || CliError::io(format!("saving the resume file {}", path.display()));
    tokio::fs::write(&temporary, saved.to_string()).await.map_err(failed())?;
    tokio::fs::rename(&temporary, path).await.map_err(failed())
}
