//! One batch of writes, made durable together.
//!
//! 1. Group the batch's writes by session, each session's in queue order.
//! 2. Lock every stripe the batch touches: one, as the store queues writes
//!    by stripe; in ascending order if there were several, so that lockers
//!    in several processes could never deadlock.
//! 3. Per session: read the stored record if a write needs it, check the
//!    fence of fenced patches against the session's lease file, apply the
//!    writes in memory ([`coalesce`]), and keep what is left to do: write
//!    one new file, remove the file, or nothing. A new file whose user has
//!    no index entry for the session gets one (`users`).
//! 4. Sync the new index entries, write every new file to a temporary
//!    file, then `fdatasync` each.
//! 5. Rename each over its session file, remove the removed ones, drop
//!    the index entries of owners the batch knows to be gone, and unlock:
//!    other writers (in other processes too) may go on.
//! 6. A directory sync makes the renames and removals durable (shared with
//!    the batches of other stripes, see `dir_sync`); only then are the
//!    writes answered.
//!
//! A crash at any point leaves each session file old or new, never torn: a
//! file is renamed into place only after its data is synced. Any I/O
//! failure in steps 4 to 6 fails every write of the batch, and nothing of
//! it is acknowledged; temporary files not yet renamed are removed. (Some
//! renames of a batch failing in step 5 or 6 may have happened: like any
//! failed write, a failed batch's outcome is unknown, never reported as
//! done.) A failure to read one session (step 3) fails that session's
//! writes only.

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::Arc;

use sessionkit::StoreError;

use super::batcher::{BatchError, Commit, Committed};
use super::coalesce::{Action, Op, Out, coalesce};
use super::format::StoredRecord;
use super::locks::stripe_of;
use super::{Inner, Key, format, is_live, now_ms};

/// The user a record belongs to.
pub(super) fn owner(record: &StoredRecord) -> Option<String> {
    sessionkit::reserved::user_of(&record.data).map(str::to_owned)
}

/// The file store's [`Commit`].
pub(super) struct FileCommit(pub(super) Arc<Inner>);

/// The writes of one session in the batch.
struct Session {
    key: Key,
    /// Where each write's answer goes in the batch's answers.
    slots: Vec<usize>,
    ops: Vec<Op>,
}

impl Commit for FileCommit {
    type Op = (Key, Op);
    type Out = Out;

    fn commit(&self, ops: Vec<(Key, Op)>) -> Result<Committed<Out>, BatchError> {
        let inner = &*self.0;
        #[cfg(test)]
        inner.faults.batches.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let mut answers: Vec<Option<Result<Out, StoreError>>> = Vec::new();
        answers.resize_with(ops.len(), || None);
        let sessions = group(ops);

        let mut guards = Vec::new();
        let stripes: BTreeSet<usize> = sessions.iter().map(|session| stripe_of(&session.key)).collect();
        for stripe in stripes {
            let local = inner.locks.blocking_lock_local(stripe);
            let guard = inner
                .locks
                .lock_file(stripe, local)
                .map_err(|err| BatchError::new("file store: locking a session for writing", err))?;
            guards.push(guard);
        }

        let now = now_ms();
        let mut writes: Vec<(Key, Vec<u8>)> = Vec::new();
        let mut removals: Vec<Key> = Vec::new();
        // Users given a new index entry (synced before any session file is
        // written), and entries to drop once the files are in place.
        // Entries this batch created: the users to sync, and the entries to
        // take back if that sync fails.
        let mut listed: BTreeSet<String> = BTreeSet::new();
        let mut created: Vec<(String, Key)> = Vec::new();
        let mut unlisted: Vec<(String, Key)> = Vec::new();
        for Session { key, slots, ops } in sessions {
            // The owner of the stored record, when a write needed to read it.
            let stored_user: RefCell<Option<Option<String>>> = RefCell::new(None);
            let read = || {
                let found = inner.read_any(&key)?;
                *stored_user.borrow_mut() = Some(found.as_ref().and_then(owner));
                Ok(found.filter(|record| is_live(record.expires_at, now)))
            };
            let holds = |token| {
                inner
                    .leases
                    .holds(&key, token, now)
                    .map_err(|err| StoreError::backend("file store: reading a lease", err))
            };
            let (action, session_answers) = match coalesce(ops, now, read, holds) {
                Ok(coalesced) => (coalesced.action, coalesced.answers),
                Err(err) => (Action::Keep, shared(err, slots.len())),
            };
            let stored_user = stored_user.into_inner().flatten();
            let session_answers = match action {
                Action::Write(record) => {
                    let user = owner(&record);
                    let added = match &user {
                        Some(user) => inner.users.add(user, &key).map(|added| added.then(|| user.clone())),
                        None => Ok(None),
                    };
                    match (added, format::encode(&record.data, record.expires_at)) {
                        (Ok(added), Ok(bytes)) => {
                            if let Some(user) = added {
                                created.push((user.clone(), key.clone()));
                                listed.insert(user);
                            }
                            if let Some(old) = stored_user.filter(|old| Some(old) != user.as_ref()) {
                                unlisted.push((old, key.clone()));
                            }
                            writes.push((key, bytes));
                            session_answers
                        }
                        (Err(err), _) => {
                            shared(StoreError::backend("file store: indexing a user's session", err), slots.len())
                        }
                        (_, Err(err)) => shared(err, slots.len()),
                    }
                }
                Action::Remove => {
                    if let Some(old) = stored_user {
                        unlisted.push((old, key.clone()));
                    }
                    removals.push(key);
                    session_answers
                }
                Action::Keep => session_answers,
            };
            for (slot, answer) in slots.into_iter().zip(session_answers) {
                answers[slot] = Some(answer);
            }
        }

        // An entry is durable before the session it lists: the index never
        // misses a session, whenever the power goes.
        if let Err(err) = sync_index(inner, listed) {
            // An entry that exists is taken as durable by the next write:
            // one whose sync failed must not stay behind, or a power cut
            // could lose it under a session that survives.
            for (user, key) in created {
                if let Err(err) = inner.users.remove(&user, &key) {
                    tracing::warn!(
                        error = &err as &dyn std::error::Error,
                        "could not take back a user index entry whose sync failed"
                    );
                }
            }
            return Err(BatchError::new("file store: syncing the user index", err));
        }
        let changed_dir = make_durable_until_renamed(inner, &writes, &removals)?;
        for (user, key) in unlisted {
            // Left over if this fails: reads skip it, the sweeper retries.
            if let Err(err) = inner.users.remove(&user, &key) {
                tracing::warn!(error = &err as &dyn std::error::Error, "could not drop a user index entry");
            }
        }
        // Renamed: readers and other writers see the new files. Unlock
        // before the directory sync, which other writers need not wait for.
        drop(guards);
        let answers = answers
            .into_iter()
            .map(|answer| {
                // Invariant: every slot belongs to exactly one session, which
                // answered it above; an empty one would be a bug here, and
                // is answered with an error rather than a panic.
                answer.unwrap_or_else(|| {
                    Err(StoreError::backend("file store: writing", io::Error::other("a write got no answer")))
                })
            })
            .collect();
        Ok(Committed { answers, needs_sync: changed_dir })
    }

    /// Step 6.
    fn sync(&self) -> Result<(), BatchError> {
        sync_dir(&self.0).map_err(|err| BatchError::new("file store: syncing the session directory", err))
    }
}

/// Splits a batch by session, in the order sessions first appear, keeping
/// each session's writes in queue order.
fn group(ops: Vec<(Key, Op)>) -> Vec<Session> {
    let mut sessions: Vec<Session> = Vec::new();
    let mut index: HashMap<Key, usize> = HashMap::new();
    for (slot, (key, op)) in ops.into_iter().enumerate() {
        let at = match index.get(&key) {
            Some(&at) => at,
            None => {
                index.insert(key.clone(), sessions.len());
                sessions.push(Session { key, slots: Vec::new(), ops: Vec::new() });
                sessions.len() - 1
            }
        };
        sessions[at].slots.push(slot);
        sessions[at].ops.push(op);
    }
    sessions
}

/// Steps 4 and 5: temporary files written and synced, then renamed into
/// place; removed sessions removed. Returns whether the directory changed.
fn make_durable_until_renamed(inner: &Inner, writes: &[(Key, Vec<u8>)], removals: &[Key]) -> Result<bool, BatchError> {
    let mut temps = Temps(Vec::with_capacity(writes.len()));
    let mut files = Vec::with_capacity(writes.len());
    for (key, bytes) in writes {
        let (path, mut file) = inner
            .create_temp(key)
            .map_err(|err| BatchError::new("file store: creating a temporary session file", err))?;
        temps.0.push((path, inner.path(key)));
        file.write_all(bytes).map_err(|err| BatchError::new("file store: writing a session file", err))?;
        files.push(file);
    }
    // Data and size only: the files' names become durable through the
    // renames and the directory sync.
    for file in &files {
        sync_file(inner, file).map_err(|err| BatchError::new("file store: syncing a session file", err))?;
    }
    drop(files);
    #[cfg(test)]
    inner.faults.files_written.fetch_add(writes.len(), std::sync::atomic::Ordering::SeqCst);
    let mut changed = temps.rename_all().map_err(|err| BatchError::new("file store: renaming a session file", err))?;
    for key in removals {
        match fs::remove_file(inner.path(key)) {
            Ok(()) => changed = true,
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(err) => return Err(BatchError::new("file store: removing a session file", err)),
        }
    }
    Ok(changed)
}

/// The batch's temporary files and where each goes; whatever was not
/// renamed is removed when this is dropped (best effort: the sweeper
/// removes what cannot be removed now).
struct Temps(Vec<(PathBuf, PathBuf)>);

impl Temps {
    /// Renames every temporary file over its session file (in any order:
    /// one directory sync covers them all). Returns whether anything was
    /// renamed.
    fn rename_all(&mut self) -> io::Result<bool> {
        let renamed = !self.0.is_empty();
        while let Some((temp, target)) = self.0.last() {
            fs::rename(temp, target)?;
            self.0.pop();
        }
        Ok(renamed)
    }
}

impl Drop for Temps {
    fn drop(&mut self) {
        for (temp, _) in &self.0 {
            let _ = fs::remove_file(temp);
        }
    }
}

pub(super) fn sync_file(inner: &Inner, file: &File) -> io::Result<()> {
    #[cfg(test)]
    if inner.faults.fail_file_sync.load(std::sync::atomic::Ordering::SeqCst) {
        return Err(io::Error::other("injected: the file sync failed"));
    }
    let _ = inner;
    file.sync_data()
}

/// Syncs the index directories of the users who got new entries.
fn sync_index(inner: &Inner, listed: BTreeSet<String>) -> io::Result<()> {
    #[cfg(test)]
    if inner.faults.fail_index_sync.load(std::sync::atomic::Ordering::SeqCst) && !listed.is_empty() {
        return Err(io::Error::other("injected: the index sync failed"));
    }
    inner.users.sync(listed)
}

fn sync_dir(inner: &Inner) -> io::Result<()> {
    #[cfg(test)]
    if inner.faults.fail_dir_sync.load(std::sync::atomic::Ordering::SeqCst) {
        return Err(io::Error::other("injected: the directory sync failed"));
    }
    inner.dir_sync.sync()
}

/// `err` as the answer of each of `count` writes.
fn shared(err: StoreError, count: usize) -> Vec<Result<Out, StoreError>> {
    if count == 1 {
        return vec![Err(err)];
    }
    let err = Arc::new(err);
    (0..count)
        .map(|_| Err(StoreError::backend("file store: writing a session", SharedError(Arc::clone(&err)))))
        .collect()
}

/// One error answering several writes of a session.
#[derive(Debug)]
struct SharedError(Arc<StoreError>);

impl std::fmt::Display for SharedError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for SharedError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        std::error::Error::source(&*self.0)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    use serde_json::json;
    use sessionkit::{Changes, SessionMap, SessionStore, StoreKey, UpdateOutcome};
    use tokio::task::JoinHandle;

    use super::super::FileStore;
    use super::super::locks::LocalGuard;
    use super::*;

    fn data(value: serde_json::Value) -> SessionMap {
        value.as_object().cloned().expect("object")
    }

    fn setting(key: &str, value: serde_json::Value) -> Changes {
        let mut changes = Changes::new();
        changes.set(key, value);
        changes
    }

    async fn open() -> (tempfile::TempDir, FileStore) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = FileStore::open(dir.path()).await.expect("open");
        (dir, store)
    }

    /// Holds up a stripe's next batch: a write of a session whose stripe the
    /// test has locked waits for that lock inside its batch, and every write
    /// of the stripe submitted meanwhile queues for the batch after it.
    struct Held {
        local: LocalGuard,
        write: JoinHandle<Result<(), StoreError>>,
    }

    /// A new session id in the stripe of `id`: its writes share `id`'s
    /// queue.
    fn in_stripe_of(id: &StoreKey) -> StoreKey {
        loop {
            let other = sessionkit::testing::checks::key();
            if stripe_of(&other) == stripe_of(id) {
                return other;
            }
        }
    }

    /// Holds up the next batch of `id`'s stripe.
    async fn hold(store: &FileStore, id: &StoreKey) -> Held {
        let blocker = in_stripe_of(id);
        let local = store.inner.locks.lock_local(stripe_of(&blocker)).await;
        let started = store.inner.faults.batches.load(Ordering::SeqCst);
        let write = tokio::spawn({
            let store = store.clone();
            async move { store.set(&blocker, &data(json!({ "blocker": true })), None).await }
        });
        until(|| store.inner.faults.batches.load(Ordering::SeqCst) > started).await;
        Held { local, write }
    }

    impl Held {
        /// Lets the held batch go, and with it the queued ones.
        async fn release(self) -> Result<(), StoreError> {
            drop(self.local);
            self.write.await.expect("task")
        }
    }

    async fn until(done: impl Fn() -> bool) {
        for _ in 0..10_000 {
            if done() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        panic!("waited ten seconds in vain");
    }

    async fn until_queued(store: &FileStore, count: usize) {
        until(|| store.writes.iter().map(|q| q.queued()).sum::<usize>() == count).await;
    }

    fn update(store: &FileStore, id: &StoreKey, changes: Changes) -> JoinHandle<Result<UpdateOutcome, StoreError>> {
        let (store, id) = (store.clone(), id.clone());
        tokio::spawn(async move { store.update(&id, &changes, None).await })
    }

    fn files_written(store: &FileStore) -> usize {
        store.inner.faults.files_written.load(Ordering::SeqCst)
    }

    /// No file of the directory is a leftover temporary file.
    fn no_temporary_files(dir: &std::path::Path) -> bool {
        fs::read_dir(dir)
            .expect("read_dir")
            .all(|entry| !entry.expect("entry").file_name().to_string_lossy().starts_with(super::super::TEMP_PREFIX))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_updates_of_one_session_become_one_file_write() {
        let (_dir, store) = open().await;
        let id = sessionkit::testing::checks::key();
        store.set(&id, &data(json!({ "base": true })), None).await.expect("set");
        let held = hold(&store, &id).await;
        let updates: Vec<_> = (0..32).map(|i| update(&store, &id, setting(&format!("k{i}"), json!(i)))).collect();
        until_queued(&store, 32).await;
        let before = files_written(&store);
        held.release().await.expect("the blocking write");
        for task in updates {
            assert_eq!(task.await.expect("task").expect("update"), UpdateOutcome::Applied);
        }
        assert_eq!(files_written(&store) - before, 2, "the blocker's file, then one file for all 32 updates");
        let got = store.get(&id).await.expect("get").expect("the session");
        assert_eq!(got.data.len(), 33, "no update lost another's key: {:?}", got.data.keys().collect::<Vec<_>>());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn writes_of_one_session_in_one_batch_keep_their_order() {
        let (_dir, store) = open().await;
        let counted = sessionkit::testing::checks::key();
        let deleted = in_stripe_of(&counted);
        for id in [&counted, &deleted] {
            store.set(id, &data(json!({ "n": 0 })), None).await.expect("set");
        }
        let held = hold(&store, &counted).await;
        // Queued one at a time, so the queue's order is the order here; the
        // two sessions' writes interleave.
        let mut updates = Vec::new();
        for n in 1..=5 {
            updates.push(update(&store, &counted, setting("n", json!(n))));
            until_queued(&store, updates.len()).await;
            updates.push(update(&store, &deleted, setting("n", json!(n))));
            until_queued(&store, updates.len()).await;
        }
        let delete = tokio::spawn({
            let (store, deleted) = (store.clone(), deleted.clone());
            async move { store.delete(&deleted).await }
        });
        until_queued(&store, 11).await;
        let late = update(&store, &deleted, setting("n", json!(6)));
        until_queued(&store, 12).await;
        held.release().await.expect("the blocking write");
        for task in updates {
            assert_eq!(task.await.expect("task").expect("update"), UpdateOutcome::Applied);
        }
        delete.await.expect("task").expect("delete");
        assert_eq!(late.await.expect("task").expect("update"), UpdateOutcome::Missing, "queued after the delete");
        let got = store.get(&counted).await.expect("get").expect("the session");
        assert_eq!(got.data, data(json!({ "n": 5 })), "the last update queued is the one that stays");
        assert_eq!(store.get(&deleted).await.expect("get"), None, "the update after the delete did not bring it back");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_sync_fails_the_whole_batch_and_acknowledges_nothing() {
        for failing in ["file", "directory"] {
            let (dir, store) = open().await;
            let first = sessionkit::testing::checks::key();
            let ids: Vec<StoreKey> = [first.clone()].into_iter().chain((1..4).map(|_| in_stripe_of(&first))).collect();
            for id in &ids {
                store.set(id, &data(json!({ "v": "old" })), None).await.expect("set");
            }
            let held = hold(&store, &first).await;
            let writes: Vec<_> = ids.iter().map(|id| update(&store, id, setting("v", json!("new")))).collect();
            until_queued(&store, ids.len()).await;
            let switch = match failing {
                "file" => &store.inner.faults.fail_file_sync,
                _ => &store.inner.faults.fail_dir_sync,
            };
            switch.store(true, Ordering::SeqCst);
            // The blocker's batch fails too: it syncs after the switch.
            held.release().await.expect_err("the blocker's batch syncs with the fault on");
            for task in writes {
                let err = task.await.expect("task").expect_err("no write of a failed batch is acknowledged");
                let chain =
                    format!("{err}: {}", std::error::Error::source(&err).map(ToString::to_string).unwrap_or_default());
                assert!(chain.contains(&format!("the {failing} sync failed")), "{chain}");
            }
            switch.store(false, Ordering::SeqCst);
            if failing == "file" {
                for id in &ids {
                    let got = store.get(id).await.expect("get").expect("the session");
                    assert_eq!(got.data, data(json!({ "v": "old" })), "a file whose batch failed its sync was renamed");
                }
            }
            assert!(no_temporary_files(dir.path()), "a failed batch leaves no temporary file");
            assert_eq!(
                store.update(&ids[0], &setting("v", json!("again")), None).await.expect("the next batch works"),
                UpdateOutcome::Applied
            );
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_caller_that_gave_up_leaves_the_rest_of_its_batch_intact() {
        let (_dir, store) = open().await;
        let gone = sessionkit::testing::checks::key();
        let kept = in_stripe_of(&gone);
        let held = hold(&store, &gone).await;
        let abandoned = tokio::spawn({
            let (store, gone) = (store.clone(), gone.clone());
            async move { store.set(&gone, &data(json!({ "a": 1 })), None).await }
        });
        until_queued(&store, 1).await;
        abandoned.abort();
        let _ = abandoned.await;
        let set = tokio::spawn({
            let (store, kept) = (store.clone(), kept.clone());
            async move { store.set(&kept, &data(json!({ "b": 2 })), None).await }
        });
        until_queued(&store, 2).await;
        held.release().await.expect("the blocking write");
        set.await.expect("task").expect("the write that was waited for");
        assert!(store.get(&kept).await.expect("get").is_some());
        assert_eq!(store.get(&gone).await.expect("get"), None, "a write given up before its batch is not made");
    }
}
