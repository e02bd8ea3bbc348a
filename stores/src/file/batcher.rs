//! Group commit for the file store: writes queue up, and one batch at a
//! time takes every write that queued while the previous batch was being
//! written and synced, and commits them together.
//!
//! Callers await an answer that is sent only after [`Commit::commit`] has
//! returned for their batch, so nothing is acknowledged before the batch is
//! durable; a batch that fails answers every one of its writes with the
//! failure.
//!
//! There is no writer thread. The first write to find the batcher idle
//! starts a *drain* on one of tokio's blocking threads, which commits batch
//! after batch until the queue is empty, then stops; the next write starts
//! a new one. So an idle store holds no thread, and the async runtime never
//! waits on the disk. When writes are already waiting once a batch is made,
//! its final sync runs on another blocking thread while the drain makes the
//! next batch, so the two overlap (the next batch's answers still wait for a
//! sync of their own); a lone write syncs on the drain itself, without the
//! extra hop. A caller that stops waiting (its future dropped) does
//! not disturb the drain: if its batch has begun, the batch is made and the
//! answer discarded; if not, its write is dropped from the queue unmade,
//! so abandoned writes do not pile up work for later. A commit that panics
//! fails its own batch only; the drain goes on with the next.

use std::collections::VecDeque;
use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use sessionkit::StoreError;
use tokio::sync::oneshot;

/// The most writes committed together. Bounds what one batch holds open
/// (a lock file and a temporary file per session) and the latency it adds
/// for the writes at its front.
pub(super) const MAX_BATCH: usize = 128;

/// What a store does with one batch, in two steps: [`Commit::commit`]
/// makes the writes (durable but for a last sync, and visible), then
/// [`Commit::sync`] makes them durable. Both run on blocking threads.
pub(super) trait Commit: Send + Sync + 'static {
    /// One write.
    type Op: Send + 'static;
    /// What one write answers.
    type Out: Send + 'static;

    /// Makes `ops` together. Returns one answer per write, in order, which
    /// hold once [`Commit::sync`] has succeeded, or the failure of the whole
    /// batch.
    fn commit(&self, ops: Vec<Self::Op>) -> Result<Committed<Self::Out>, BatchError>;

    /// Makes durable what every [`Commit::commit`] that returned before this
    /// call began has made. May run while the next batch is being made.
    fn sync(&self) -> Result<(), BatchError>;
}

/// A batch made, waiting for its sync.
pub(super) struct Committed<Out> {
    /// One per write, in order.
    pub(super) answers: Vec<Result<Out, StoreError>>,
    /// Whether the batch changed anything that needs the sync.
    pub(super) needs_sync: bool,
}

/// Why a whole batch failed; every write of the batch is answered with it.
#[derive(Debug)]
pub(super) struct BatchError {
    context: &'static str,
    source: io::Error,
}

impl BatchError {
    /// A batch failed while doing `context`, because of `source`.
    pub(super) fn new(context: &'static str, source: io::Error) -> Self {
        Self { context, source }
    }

    /// The error one write of the failed batch is answered with.
    fn for_one(self: &Arc<Self>) -> StoreError {
        StoreError::backend(self.context, Shared(Arc::clone(self)))
    }
}

/// One batch failure, reported to each of its writes: reads as the I/O
/// error, whose causes follow.
#[derive(Debug)]
struct Shared(Arc<BatchError>);

impl std::fmt::Display for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.source.fmt(f)
    }
}

impl std::error::Error for Shared {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        std::error::Error::source(&self.0.source)
    }
}

type Reply<C> = oneshot::Sender<Result<<C as Commit>::Out, StoreError>>;

/// Queues writes for `C` and commits them in batches. Cloning shares the
/// queue.
pub(super) struct Batcher<C: Commit> {
    shared: Arc<Inner<C>>,
}

impl<C: Commit> Clone for Batcher<C> {
    fn clone(&self) -> Self {
        Self { shared: Arc::clone(&self.shared) }
    }
}

struct Inner<C: Commit> {
    committer: C,
    state: Mutex<State<C>>,
}

struct State<C: Commit> {
    queue: VecDeque<(C::Op, Reply<C>)>,
    /// A drain is running (or about to), and will take what is queued.
    draining: bool,
}

impl<C: Commit> Batcher<C> {
    /// A batcher committing through `committer`.
    pub(super) fn new(committer: C) -> Self {
        let state = Mutex::new(State { queue: VecDeque::new(), draining: false });
        Self { shared: Arc::new(Inner { committer, state }) }
    }

    /// The committer.
    #[cfg(test)]
    pub(super) fn committer(&self) -> &C {
        &self.shared.committer
    }

    /// Queues `op` and waits until the batch holding it is durable (or has
    /// failed).
    pub(super) async fn submit(&self, op: C::Op) -> Result<C::Out, StoreError> {
        let (reply, answer) = oneshot::channel();
        let start = {
            let mut state = self.shared.state();
            state.queue.push_back((op, reply));
            !std::mem::replace(&mut state.draining, true)
        };
        if start {
            let drain = Drain { shared: Arc::clone(&self.shared), finished: false };
            // Detached: the drain runs to its end whoever waits for it.
            drop(tokio::task::spawn_blocking(move || drain.run()));
        }
        answer.await.map_err(|_| {
            StoreError::backend(
                "file store: writing",
                io::Error::other("the batch writer stopped before this write was made (its runtime shut down)"),
            )
        })?
    }

    /// How many writes wait for a batch.
    #[cfg(test)]
    pub(super) fn queued(&self) -> usize {
        self.shared.state().queue.len()
    }
}

impl<C: Commit> Inner<C> {
    fn state(&self) -> MutexGuard<'_, State<C>> {
        // Nothing panics while holding the lock: the queue is consistent.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The right to take batches from the queue; there is at most one.
struct Drain<C: Commit> {
    shared: Arc<Inner<C>>,
    /// It gave the right up itself, with the queue empty.
    finished: bool,
}

impl<C: Commit> Drain<C> {
    fn run(mut self) {
        loop {
            let batch: Vec<(C::Op, Reply<C>)> = {
                let mut state = self.shared.state();
                // Nobody waits for the answer of a write whose caller gave
                // up before its batch began: it is not made, as a write that
                // gave up waiting for its lock was not.
                state.queue.retain(|(_, reply)| !reply.is_closed());
                if state.queue.is_empty() {
                    state.draining = false;
                    self.finished = true;
                    return;
                }
                let take = state.queue.len().min(MAX_BATCH);
                state.queue.drain(..take).collect()
            };
            let (ops, replies): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
            let count = ops.len();
            let committed = match panic::catch_unwind(AssertUnwindSafe(|| self.shared.committer.commit(ops))) {
                Ok(Ok(committed)) if committed.answers.len() == count => committed,
                Ok(Ok(committed)) => {
                    let what = format!("a batch of {count} writes got {} answers", committed.answers.len());
                    fail(replies, BatchError::new("file store: writing a batch of sessions", io::Error::other(what)));
                    continue;
                }
                Ok(Err(err)) => {
                    fail(replies, err);
                    continue;
                }
                Err(panicked) => {
                    fail(replies, panicked_error(&*panicked));
                    continue;
                }
            };
            let overlap = committed.needs_sync && !self.shared.state().queue.is_empty();
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) if overlap => {
                    let shared = Arc::clone(&self.shared);
                    drop(runtime.spawn_blocking(move || shared.finish(committed, replies)));
                }
                _ => self.shared.finish(committed, replies),
            }
        }
    }
}

impl<C: Commit> Inner<C> {
    /// Syncs a made batch if it needs it, then answers its writes.
    fn finish(&self, committed: Committed<C::Out>, replies: Vec<Reply<C>>) {
        if committed.needs_sync {
            match panic::catch_unwind(AssertUnwindSafe(|| self.committer.sync())) {
                Ok(Ok(())) => {}
                Ok(Err(err)) => return fail(replies, err),
                Err(panicked) => return fail(replies, panicked_error(&*panicked)),
            }
        }
        for (reply, answer) in replies.into_iter().zip(committed.answers) {
            // A caller that gave up meanwhile is not an error.
            let _ = reply.send(answer);
        }
    }
}

/// Answers every write of a failed batch with its failure.
fn fail<Out>(replies: Vec<oneshot::Sender<Result<Out, StoreError>>>, failure: BatchError) {
    let failure = Arc::new(failure);
    for reply in replies {
        let _ = reply.send(Err(failure.for_one()));
    }
}

/// The failure of a batch whose commit or sync panicked.
fn panicked_error(panicked: &(dyn std::any::Any + Send)) -> BatchError {
    let what = match panicked.downcast_ref::<&str>() {
        Some(text) => (*text).to_owned(),
        None => panicked.downcast_ref::<String>().cloned().unwrap_or_default(),
    };
    BatchError::new("file store: writing a batch of sessions", io::Error::other(format!("the batch panicked: {what}")))
}

impl<C: Commit> Drop for Drain<C> {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        // Dropped without having run (its runtime shut down before the
        // blocking task started): fail what is queued, so nobody waits for
        // it, and let the next write start a drain.
        let queued = {
            let mut state = self.shared.state();
            state.draining = false;
            std::mem::take(&mut state.queue)
        };
        drop(queued);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::mpsc;
    use std::time::Duration;

    use super::*;

    /// Records every batch; makes each wait until released; fails a batch
    /// holding `0` and panics on one holding `99`. Its syncs fail while
    /// `fail_syncs` is on, and wait for `sync_release` while `hold_syncs` is.
    struct Recorder {
        batches: Mutex<Vec<Vec<u32>>>,
        entered: Mutex<mpsc::Sender<()>>,
        release: Mutex<mpsc::Receiver<()>>,
        syncs: AtomicUsize,
        syncs_held: AtomicUsize,
        fail_syncs: AtomicBool,
        hold_syncs: AtomicBool,
        sync_release: Mutex<mpsc::Receiver<()>>,
    }

    impl Commit for Recorder {
        type Op = u32;
        type Out = u32;

        fn commit(&self, ops: Vec<u32>) -> Result<Committed<u32>, BatchError> {
            let _ = self.entered.lock().expect("lock").send(());
            let _ = self.release.lock().expect("lock").recv();
            self.batches.lock().expect("lock").push(ops.clone());
            if ops.contains(&99) {
                panic!("a write that cannot be made");
            }
            if ops.contains(&0) {
                return Err(BatchError::new("test: writing", io::Error::other("the disk is gone")));
            }
            Ok(Committed { answers: ops.into_iter().map(|op| Ok(op * 10)).collect(), needs_sync: true })
        }

        fn sync(&self) -> Result<(), BatchError> {
            if self.hold_syncs.load(Ordering::SeqCst) {
                let release = self.sync_release.lock().expect("lock");
                self.syncs_held.fetch_add(1, Ordering::SeqCst);
                let _ = release.recv();
            }
            self.syncs.fetch_add(1, Ordering::SeqCst);
            if self.fail_syncs.load(Ordering::SeqCst) {
                return Err(BatchError::new("test: syncing", io::Error::other("the sync failed")));
            }
            Ok(())
        }
    }

    /// A batcher on a [`Recorder`], the signal of a batch starting, and the
    /// switch that lets one batch through.
    fn recorder() -> (Batcher<Recorder>, mpsc::Receiver<()>, mpsc::Sender<()>) {
        let (batcher, started, release, _sync_release) = recorder_with_syncs();
        (batcher, started, release)
    }

    /// [`recorder`], and the switch that lets one held sync through.
    fn recorder_with_syncs() -> (Batcher<Recorder>, mpsc::Receiver<()>, mpsc::Sender<()>, mpsc::Sender<()>) {
        let (entered, started) = mpsc::channel();
        let (release, released) = mpsc::channel();
        let (sync_release, sync_released) = mpsc::channel();
        let recorder = Recorder {
            batches: Mutex::new(Vec::new()),
            entered: Mutex::new(entered),
            release: Mutex::new(released),
            syncs: AtomicUsize::new(0),
            syncs_held: AtomicUsize::new(0),
            fail_syncs: AtomicBool::new(false),
            hold_syncs: AtomicBool::new(false),
            sync_release: Mutex::new(sync_released),
        };
        (Batcher::new(recorder), started, release, sync_release)
    }

    fn batches(batcher: &Batcher<Recorder>) -> Vec<Vec<u32>> {
        batcher.committer().batches.lock().expect("lock").clone()
    }

    async fn until_queued(batcher: &Batcher<Recorder>, count: usize) {
        while batcher.queued() < count {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    fn wait_for_batch(started: &mpsc::Receiver<()>) {
        started.recv_timeout(Duration::from_secs(10)).expect("a batch started");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn writes_queued_during_a_batch_are_committed_together() {
        let (batcher, started, release) = recorder();
        let first = tokio::spawn({
            let batcher = batcher.clone();
            async move { batcher.submit(1).await }
        });
        tokio::task::block_in_place(|| wait_for_batch(&started));
        let rest: Vec<_> = (2..=11)
            .map(|op| {
                let batcher = batcher.clone();
                tokio::spawn(async move { batcher.submit(op).await })
            })
            .collect();
        until_queued(&batcher, 10).await;
        release.send(()).expect("release");
        release.send(()).expect("release");
        assert_eq!(first.await.expect("task").expect("answer"), 10);
        for (op, task) in (2..=11).zip(rest) {
            assert_eq!(task.await.expect("task").expect("answer"), op * 10, "every write gets its own answer");
        }
        let batches = batches(&batcher);
        assert_eq!(batches.len(), 2, "{batches:?}");
        assert_eq!(batches[1].len(), 10, "the writes queued during the first batch form one: {batches:?}");
        let mut second = batches[1].clone();
        second.sort_unstable();
        assert_eq!(second, (2..=11).collect::<Vec<_>>());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_batch_fails_every_write_in_it_and_the_next_batch_works() {
        let (batcher, started, release) = recorder();
        let blocker = tokio::spawn({
            let batcher = batcher.clone();
            async move { batcher.submit(5).await }
        });
        tokio::task::block_in_place(|| wait_for_batch(&started));
        let doomed: Vec<_> = [0, 1, 2]
            .into_iter()
            .map(|op| {
                let batcher = batcher.clone();
                tokio::spawn(async move { batcher.submit(op).await })
            })
            .collect();
        until_queued(&batcher, 3).await;
        for _ in 0..3 {
            release.send(()).expect("release");
        }
        assert_eq!(blocker.await.expect("task").expect("answer"), 50);
        for task in doomed {
            let err = task.await.expect("task").expect_err("no write of a failed batch is acknowledged");
            let chain =
                format!("{err}: {}", std::error::Error::source(&err).map(ToString::to_string).unwrap_or_default());
            assert!(chain.contains("test: writing") && chain.contains("the disk is gone"), "{chain}");
        }
        assert_eq!(batcher.submit(3).await.expect("the batcher keeps working"), 30);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_caller_that_gave_up_does_not_break_the_batch() {
        let (batcher, started, release) = recorder();
        // Gives up while its batch is being committed.
        let impatient = tokio::spawn({
            let batcher = batcher.clone();
            async move { batcher.submit(1).await }
        });
        tokio::task::block_in_place(|| wait_for_batch(&started));
        impatient.abort();
        // Gives up before its batch begins.
        let abandoned = tokio::spawn({
            let batcher = batcher.clone();
            async move { batcher.submit(2).await }
        });
        until_queued(&batcher, 1).await;
        abandoned.abort();
        let _ = abandoned.await;
        let patient = tokio::spawn({
            let batcher = batcher.clone();
            async move { batcher.submit(3).await }
        });
        until_queued(&batcher, 2).await;
        release.send(()).expect("release");
        release.send(()).expect("release");
        assert_eq!(patient.await.expect("task").expect("answer"), 30);
        assert_eq!(batches(&batcher), vec![vec![1], vec![3]], "the first batch ran to its end; 2 was never made");
        release.send(()).expect("release");
        assert_eq!(batcher.submit(4).await.expect("answer"), 40);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panicking_batch_fails_its_writes_and_the_next_batch_works() {
        let (batcher, _started, release) = recorder();
        for _ in 0..2 {
            release.send(()).expect("release");
        }
        let err = batcher.submit(99).await.expect_err("a panicking batch answers with an error");
        assert!(format!("{:?}", err).contains("panicked"), "{err:?}");
        assert_eq!(batcher.submit(7).await.expect("the batcher keeps working"), 70);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn no_write_is_answered_before_its_sync_and_a_failed_sync_fails_the_batch() {
        let (batcher, started, release, sync_release) = recorder_with_syncs();
        let recorder = batcher.committer();
        recorder.hold_syncs.store(true, Ordering::SeqCst);
        let first = tokio::spawn({
            let batcher = batcher.clone();
            async move { batcher.submit(1).await }
        });
        tokio::task::block_in_place(|| wait_for_batch(&started));
        // Queued while the first batch is made: its sync overlaps this
        // batch's making.
        let second: Vec<_> = [2, 3]
            .into_iter()
            .map(|op| {
                let batcher = batcher.clone();
                tokio::spawn(async move { batcher.submit(op).await })
            })
            .collect();
        until_queued(&batcher, 2).await;
        release.send(()).expect("release");
        // The first sync holds the switch before the second batch is made.
        while recorder.syncs_held.load(Ordering::SeqCst) < 1 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        tokio::task::block_in_place(|| wait_for_batch(&started));
        release.send(()).expect("release");
        while batches(&batcher).len() < 2 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let mut made = batches(&batcher);
        made[1].sort_unstable();
        assert_eq!(made, vec![vec![1], vec![2, 3]], "the second batch is made while the first syncs");
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!first.is_finished(), "a write was answered before its sync");
        assert!(second.iter().all(|task| !task.is_finished()), "a write was answered before its sync");

        // The first batch's sync succeeds; the second batch's fails.
        sync_release.send(()).expect("release a sync");
        assert_eq!(first.await.expect("task").expect("answer"), 10);
        recorder.fail_syncs.store(true, Ordering::SeqCst);
        sync_release.send(()).expect("release a sync");
        for task in second {
            let err = task.await.expect("task").expect_err("a write whose sync failed is not acknowledged");
            let chain =
                format!("{err}: {}", std::error::Error::source(&err).map(ToString::to_string).unwrap_or_default());
            assert!(chain.contains("test: syncing") && chain.contains("the sync failed"), "{chain}");
        }
        assert_eq!(recorder.syncs.load(Ordering::SeqCst), 2, "one sync per batch");
    }
}
