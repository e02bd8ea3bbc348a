//! Shared directory fsyncs: many renames, one `fsync` of the directory.
//!
//! A rename (or an unlink) is durable only once the directory holding it is
//! synced. Each write must wait for a directory sync that *started after*
//! its rename, but need not run one of its own: when writers arrive while a
//! sync is in flight, the next sync covers all of them. This is group
//! commit for the directory; the files' own fsyncs run in parallel on their
//! writers' threads.
//!
//! Callers block (they run on blocking threads): each takes a ticket after
//! its rename; the first caller to find no sync in flight runs one covering
//! every ticket issued so far, the others wait for a sync that covers
//! theirs.

use std::fs::File;
use std::io;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

/// Syncs one directory on behalf of many writers.
pub(super) struct DirSync {
    /// The directory, opened for `fsync`; `None` where directories cannot
    /// be opened as files (Windows), whose renames need no directory sync.
    dir: Option<File>,
    state: Mutex<State>,
    done: Condvar,
}

#[derive(Default)]
struct State {
    /// The last ticket handed out.
    issued: u64,
    /// Every ticket up to this one is durable.
    synced: u64,
    /// A sync is running.
    running: bool,
    /// The latest failed sync: the tickets it was meant to cover (after the
    /// first, up to the second) and why it failed.
    failed: Option<(u64, u64, Arc<io::Error>)>,
}

impl DirSync {
    /// Opens `dir` for syncing.
    pub(super) fn open(dir: &Path) -> io::Result<Self> {
        #[cfg(unix)]
        let dir = Some(File::open(dir)?);
        #[cfg(not(unix))]
        let dir = {
            let _ = dir;
            None
        };
        Ok(Self { dir, state: Mutex::new(State::default()), done: Condvar::new() })
    }

    /// Returns once a directory sync that started after this call began has
    /// completed, so every rename or unlink made before the call is durable.
    pub(super) fn sync(&self) -> io::Result<()> {
        let Some(dir) = &self.dir else {
            return Ok(());
        };
        let mut state = self.state();
        state.issued += 1;
        let ticket = state.issued;
        loop {
            if let Some((after, upto, err)) = &state.failed
                && (*after + 1..=*upto).contains(&ticket)
            {
                return Err(io::Error::new(err.kind(), SharedError(Arc::clone(err))));
            }
            if state.synced >= ticket {
                return Ok(());
            }
            if !state.running {
                // Run one sync for every ticket issued so far: all those
                // renames happened before this point.
                state.running = true;
                let (from, upto) = (state.synced, state.issued);
                drop(state);
                let result = dir.sync_all();
                state = self.state();
                state.running = false;
                match result {
                    Ok(()) => state.synced = state.synced.max(upto),
                    Err(err) => state.failed = Some((from, upto, Arc::new(err))),
                }
                self.done.notify_all();
                continue;
            }
            state = self.done.wait(state).unwrap_or_else(PoisonError::into_inner);
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding the lock; a poisoned one still holds
        // consistent counters.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One failed directory sync, reported to every writer it was meant to cover.
#[derive(Debug)]
struct SharedError(Arc<io::Error>);

impl std::fmt::Display for SharedError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "syncing the session directory failed: {}", self.0)
    }
}

impl std::error::Error for SharedError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.0)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[test]
    fn concurrent_callers_all_return_after_a_covering_sync() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sync = Arc::new(DirSync::open(dir.path()).expect("open"));
        let returned = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..32)
            .map(|_| {
                let (sync, returned) = (Arc::clone(&sync), Arc::clone(&returned));
                std::thread::spawn(move || {
                    for _ in 0..10 {
                        sync.sync().expect("sync");
                        returned.fetch_add(1, Ordering::SeqCst);
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().expect("thread");
        }
        assert_eq!(returned.load(Ordering::SeqCst), 320);
        let state = sync.state();
        assert_eq!(state.synced, state.issued, "every ticket is covered");
        assert!(!state.running);
    }
}
