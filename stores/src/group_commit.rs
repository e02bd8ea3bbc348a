//! Group commit: one writer thread that batches concurrent writes into one
//! durable commit.
//!
//! A durable engine (SQLite, redb) pays one fsync per commit. Committing each
//! request's write on its own caps throughput at the disk's fsync rate;
//! committing everything that queued up while the previous commit was being
//! synced pays one fsync for the whole batch. No caller is answered before the
//! commit that holds its write has returned, so nothing is acknowledged
//! before it is durable.
//!
//! The engine lives on a dedicated thread (it is blocking), so the async
//! runtime never waits on disk I/O; callers await a oneshot answer.

use std::sync::mpsc;
use std::thread::JoinHandle;

use sessionkit::StoreError;
use tokio::sync::oneshot;

/// The most operations committed together. Bounds the latency a batch adds
/// and the memory a transaction holds.
pub(crate) const MAX_BATCH: usize = 256;

type Reply<Out> = oneshot::Sender<Result<Out, StoreError>>;
/// An operation and where its answer goes.
type Queued<C> = (<C as Committer>::Op, Reply<<C as Committer>::Out>);

/// What a store does with one batch: apply every operation inside one
/// transaction and commit it. Returns one result per operation (in order),
/// or an error for the whole batch when the commit itself failed.
pub(crate) trait Committer: Send + 'static {
    /// One write operation.
    type Op: Send + 'static;
    /// What one operation answers.
    type Out: Send + 'static;

    /// Applies `ops` in one transaction and commits it.
    fn commit(&mut self, ops: Vec<Self::Op>) -> Result<Vec<Result<Self::Out, StoreError>>, StoreError>;
}

/// The handle async code submits writes through. Dropping it drains the
/// queue, stops the writer thread and waits for it, so the engine is closed
/// (and the database can be reopened) once the drop returns.
pub(crate) struct GroupCommit<C: Committer> {
    sender: Option<mpsc::Sender<Queued<C>>>,
    thread: Option<JoinHandle<()>>,
}

impl<C: Committer> GroupCommit<C> {
    /// Starts the writer thread, which owns `committer`.
    pub(crate) fn spawn(name: &str, committer: C) -> Result<Self, StoreError> {
        let (sender, receiver) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || run(committer, receiver))
            .map_err(|err| StoreError::backend("starting the store's writer thread", err))?;
        Ok(Self { sender: Some(sender), thread: Some(thread) })
    }

    /// Queues `op` and waits until the commit that holds it has returned.
    pub(crate) async fn submit(&self, op: C::Op) -> Result<C::Out, StoreError> {
        let (reply, answer) = oneshot::channel();
        let stopped = || StoreError::backend("store writer", std::io::Error::other("the writer thread has stopped"));
        let sender = self.sender.as_ref().ok_or_else(stopped)?;
        sender.send((op, reply)).map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

impl<C: Committer> Drop for GroupCommit<C> {
    fn drop(&mut self) {
        // Closing the channel ends the writer's loop after it has committed
        // what is queued.
        self.sender.take();
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("a session store writer thread panicked");
        }
    }
}

fn run<C: Committer>(mut committer: C, receiver: mpsc::Receiver<Queued<C>>) {
    // Block for the first operation, then take whatever else is already
    // waiting: those callers arrived while the previous commit was syncing.
    while let Ok(first) = receiver.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match receiver.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let (ops, replies): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
        match committer.commit(ops) {
            Ok(results) => {
                debug_assert_eq!(results.len(), replies.len(), "a committer must answer every operation");
                for (reply, result) in replies.into_iter().zip(results) {
                    // A caller that gave up waiting is not an error.
                    let _ = reply.send(result);
                }
            }
            Err(err) => {
                // Every operation in the batch shares the failed commit.
                let shared = std::sync::Arc::new(err);
                for reply in replies {
                    let _ = reply
                        .send(Err(StoreError::backend("committing a batch of writes", SharedError(shared.clone()))));
                }
            }
        }
    }
}

/// One commit error reported to every caller of its batch.
#[derive(Debug)]
struct SharedError(std::sync::Arc<StoreError>);

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
    use std::sync::{Arc, Mutex};

    use super::*;

    /// Records the size of every batch; fails a batch containing `0`.
    struct Recorder {
        batches: Arc<Mutex<Vec<usize>>>,
    }

    impl Committer for Recorder {
        type Op = u32;
        type Out = u32;

        fn commit(&mut self, ops: Vec<u32>) -> Result<Vec<Result<u32, StoreError>>, StoreError> {
            // Slow enough that concurrent callers queue up behind a commit.
            std::thread::sleep(std::time::Duration::from_millis(2));
            self.batches.lock().expect("lock").push(ops.len());
            if ops.contains(&0) {
                return Err(StoreError::backend("test commit", std::io::Error::other("disk full")));
            }
            Ok(ops.into_iter().map(|op| Ok(op * 2)).collect())
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_writes_share_commits_and_each_gets_its_answer() {
        let batches = Arc::new(Mutex::new(Vec::new()));
        let writer = Arc::new(GroupCommit::spawn("test-writer", Recorder { batches: batches.clone() }).expect("spawn"));
        let tasks: Vec<_> = (1..=200u32)
            .map(|i| {
                let writer = writer.clone();
                tokio::spawn(async move { (i, writer.submit(i).await) })
            })
            .collect();
        for task in tasks {
            let (i, answer) = task.await.expect("task");
            assert_eq!(answer.expect("commit"), i * 2);
        }
        let batches = batches.lock().expect("lock");
        assert_eq!(batches.iter().sum::<usize>(), 200);
        assert!(batches.len() < 200, "200 concurrent writes took {} commits: nothing was grouped", batches.len());
    }

    #[tokio::test]
    async fn a_failed_commit_fails_every_write_in_it_with_its_cause() {
        let batches = Arc::new(Mutex::new(Vec::new()));
        let writer = GroupCommit::spawn("test-writer", Recorder { batches }).expect("spawn");
        let err = writer.submit(0).await.expect_err("commit fails");
        let chain = format!("{err} / {}", std::error::Error::source(&err).map(ToString::to_string).unwrap_or_default());
        assert!(chain.contains("disk full") || format!("{err:?}").contains("disk full"), "{chain}");
        assert_eq!(writer.submit(3).await.expect("later commits work"), 6);
    }

    #[tokio::test]
    async fn dropping_the_handle_stops_and_joins_the_thread() {
        let batches = Arc::new(Mutex::new(Vec::new()));
        let writer = GroupCommit::spawn("test-writer", Recorder { batches: batches.clone() }).expect("spawn");
        assert_eq!(writer.submit(1).await.expect("commit"), 2);
        drop(writer);
        // The thread owned the committer, which held the other Arc.
        assert_eq!(Arc::strong_count(&batches), 1);
    }
}
