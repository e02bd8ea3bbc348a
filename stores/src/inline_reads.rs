//! When a durable store's `get` (redb, SQLite) may run on the caller's
//! task instead of hopping to tokio's blocking pool.
//!
//! A `get` is one B-tree lookup. Answered from the engine's page cache (or
//! the kernel's) it takes a few microseconds, several times
//! less than the hop to a blocking thread and back; only a page that must
//! come from disk takes long. So a `get` runs inline, timed, and one that
//! took longer than [`SLOW`] (the disk answered) sends the next reads of
//! the store to the blocking pool for [`COOL_DOWN`], after which inline
//! reads are tried again. The runtime is blocked for at most one slow read
//! per store per cool-down, and a store whose file no longer fits in memory
//! reads almost only on the blocking pool.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// An inline read slower than this was served by the disk.
pub(crate) const SLOW: Duration = Duration::from_micros(500);

/// How long reads stay on the blocking pool after a slow inline one.
pub(crate) const COOL_DOWN: Duration = Duration::from_secs(1);

/// The store's choice, shared by its callers.
#[derive(Debug)]
pub(crate) struct InlineReads {
    /// The clock's origin.
    origin: Instant,
    /// Nanoseconds after `origin` until which reads go to the blocking
    /// pool; 0 when inline reads are allowed.
    off_until: AtomicU64,
}

impl InlineReads {
    pub(crate) fn new() -> Self {
        Self { origin: Instant::now(), off_until: AtomicU64::new(0) }
    }

    fn nanos(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.origin).as_nanos()).unwrap_or(u64::MAX)
    }

    /// Whether the next read may run inline.
    pub(crate) fn allowed(&self) -> bool {
        let off_until = self.off_until.load(Ordering::Relaxed);
        off_until == 0 || self.nanos(Instant::now()) >= off_until
    }

    /// Runs `read` inline and takes note of how long it took.
    pub(crate) fn run<T>(&self, read: impl FnOnce() -> T) -> T {
        let started = Instant::now();
        let out = read();
        let done = Instant::now();
        if done.saturating_duration_since(started) > SLOW {
            self.off_until.store(self.nanos(done + COOL_DOWN).max(1), Ordering::Relaxed);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slow_read_sends_the_next_ones_to_the_pool_for_a_while() {
        let reads = InlineReads::new();
        assert!(reads.allowed());
        reads.run(|| ());
        assert!(reads.allowed(), "a fast read keeps reads inline");
        reads.run(|| std::thread::sleep(SLOW * 4));
        assert!(!reads.allowed(), "a read the disk answered moves the next ones off the runtime");
        // Pretend the cool-down has passed.
        reads.off_until.store(1, Ordering::Relaxed);
        assert!(reads.allowed(), "after the cool-down reads are tried inline again");
    }
}
