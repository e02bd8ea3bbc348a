//! Group commit: one writer thread that batches concurrent writes into one
//! durable commit, and keeps working (or says clearly why it cannot) when a
//! commit panics.
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
//!
//! # A bounded queue
//!
//! At most [`QUEUE_CAPACITY`] operations wait for the writer. When the disk
//! is slow and the queue is full, [`GroupCommit::submit`] waits
//! asynchronously for room (the runtime's threads are free meanwhile), so the
//! pressure reaches the callers instead of piling up in the store.
//!
//! # Callers that give up
//!
//! The writer takes operations off the queue when it builds a batch; an
//! operation whose caller stopped waiting (dropped its future) before that is
//! skipped, never applied. One that was already taken into a batch runs to
//! its end, and may commit, with nobody to hear it.
//!
//! # A commit that panics
//!
//! The panic is caught: every caller of that batch gets an error (nothing of
//! it is acknowledged), and the writer asks its [`Committer`] to
//! [`restart`](Committer::restart) before the next batch. A restart that
//! fails is retried, with a growing pause, and every operation fails at once
//! meanwhile; a committer that can never restart (its engine belongs to the
//! application) stops the writer for good, and every later operation, and
//! [`GroupCommit::health`], reports why.

use std::any::Any;
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use sessionkit::StoreError;
use tokio::sync::mpsc::error::TryRecvError;
use tokio::sync::{mpsc, oneshot};

/// The most operations committed together. Bounds the latency a batch adds
/// and the memory a transaction holds.
pub(crate) const MAX_BATCH: usize = 256;

/// The most operations waiting for the writer: one full batch. While one
/// batch commits, the next one fills up, so under load the writer never waits
/// for work; a deeper queue could not commit any faster (the writer takes at
/// most [`MAX_BATCH`] per commit), it would only hold more memory and make
/// the last caller in it wait longer.
pub(crate) const QUEUE_CAPACITY: usize = MAX_BATCH;

/// The pause before the first retry of a failed restart; it doubles with
/// each failure, up to [`MAX_RESTART_PAUSE`].
const FIRST_RESTART_PAUSE: Duration = Duration::from_millis(50);
const MAX_RESTART_PAUSE: Duration = Duration::from_secs(2);

/// What the store was doing, in the errors this module reports.
const CONTEXT: &str = "session store writer";

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

    /// Gets ready to commit again after [`commit`](Self::commit) panicked,
    /// which may have left the engine's state (an open transaction, a lock,
    /// a cache) anything: a committer that can opens its database again.
    /// Called on the writer thread before the next batch, and again after a
    /// pause for as long as it answers [`Restart::Failed`].
    fn restart(&mut self) -> Result<(), Restart>;
}

/// Why a [`Committer`] could not restart.
#[derive(Debug)]
pub(crate) enum Restart {
    /// Not now (the database cannot be opened): tried again later.
    Failed(StoreError),
    /// Never: the engine was handed over by the application, and the store
    /// cannot open it again. Says what the application must do.
    Impossible(&'static str),
}

/// The handle async code submits writes through. Dropping it drains the
/// queue, stops the writer thread and waits for it, so the engine is closed
/// (and the database can be reopened) once the drop returns.
pub(crate) struct GroupCommit<C: Committer> {
    sender: Option<mpsc::Sender<Queued<C>>>,
    health: Arc<Health>,
    thread: Option<JoinHandle<()>>,
}

impl<C: Committer> GroupCommit<C> {
    /// Starts the writer thread, which owns `committer`.
    pub(crate) fn spawn(name: &str, committer: C) -> Result<Self, StoreError> {
        let (sender, receiver) = mpsc::channel(QUEUE_CAPACITY);
        let health = Arc::new(Health::default());
        let shared = Arc::clone(&health);
        let thread = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || run(committer, receiver, &shared))
            .map_err(|err| StoreError::backend("starting the store's writer thread", err))?;
        Ok(Self { sender: Some(sender), health, thread: Some(thread) })
    }

    /// `Ok` while the writer takes operations; otherwise the error every
    /// operation gets at once: the writer stopped for good after a panic, or
    /// is failing to restart after one. Touches neither the queue nor the
    /// disk.
    pub(crate) fn health(&self) -> Result<(), StoreError> {
        if let Some(down) = self.health.get() {
            return Err(down.report());
        }
        match &self.sender {
            Some(sender) if !sender.is_closed() => Ok(()),
            _ => Err(stopped()),
        }
    }

    /// Queues `op`, waiting for room while the queue is full, and waits until
    /// the commit that holds it has returned. Dropping the future before the
    /// writer took `op` into a batch means `op` is never applied.
    pub(crate) async fn submit(&self, op: C::Op) -> Result<C::Out, StoreError> {
        self.health()?;
        let sender = self.sender.as_ref().ok_or_else(stopped)?;
        let (reply, answer) = oneshot::channel();
        sender.send((op, reply)).await.map_err(|_| self.gone())?;
        answer.await.map_err(|_| self.gone())?
    }

    /// The error for an operation the writer will never answer.
    fn gone(&self) -> StoreError {
        self.health.get().map_or_else(stopped, |down| down.report())
    }

    /// How many operations wait in the queue now.
    #[cfg(test)]
    pub(crate) fn queued(&self) -> usize {
        self.sender.as_ref().map_or(0, |sender| sender.max_capacity() - sender.capacity())
    }
}

impl<C: Committer> Drop for GroupCommit<C> {
    fn drop(&mut self) {
        // Closing the channel ends the writer's loop after it has committed
        // what is queued.
        self.sender.take();
        if let Some(thread) = self.thread.take() {
            // A writer pausing between restart attempts notices at once.
            thread.thread().unpark();
            if thread.join().is_err() {
                tracing::error!("a session store writer thread panicked");
            }
        }
    }
}

fn stopped() -> StoreError {
    StoreError::backend(CONTEXT, std::io::Error::other("the writer thread has stopped"))
}

fn run<C: Committer>(mut committer: C, mut receiver: mpsc::Receiver<Queued<C>>, health: &Health) {
    // Block for the first operation, then take whatever else is already
    // waiting: those callers arrived while the previous commit was syncing.
    while let Some(first) = receiver.blocking_recv() {
        let batch = take_batch::<C>(first, &mut receiver);
        if batch.is_empty() {
            continue;
        }
        let (ops, replies): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
        // Unwind safety: after a panic the committer commits nothing more
        // until `restart` has replaced whatever state the panic interrupted;
        // the operations were moved into the call and the replies stay here.
        match catch_unwind(AssertUnwindSafe(|| committer.commit(ops))) {
            Ok(Ok(results)) => {
                debug_assert_eq!(results.len(), replies.len(), "a committer must answer every operation");
                for (reply, result) in replies.into_iter().zip(results) {
                    // A caller that gave up waiting is not an error.
                    let _ = reply.send(result);
                }
            }
            Ok(Err(err)) => {
                // Every operation in the batch shares the failed commit.
                let shared = Arc::new(err);
                for reply in replies {
                    let _ =
                        reply.send(Err(StoreError::backend("committing a batch of writes", Shared(shared.clone()))));
                }
            }
            Err(payload) => {
                let panic = panic_message(payload.as_ref());
                tracing::error!(panic, "a session store writer panicked while committing a batch; restarting it");
                let failed = Arc::new(Down::new(
                    format!(
                        "the session store writer panicked while committing the batch holding this write \
                         ({panic}); nothing of that batch is acknowledged"
                    ),
                    None,
                ));
                if !restart(&mut committer, &mut receiver, health, &panic, (replies, &failed)) {
                    return;
                }
            }
        }
    }
}

/// `first` and whatever else is queued, up to [`MAX_BATCH`], without the
/// operations whose callers have given up.
fn take_batch<C: Committer>(first: Queued<C>, receiver: &mut mpsc::Receiver<Queued<C>>) -> Vec<Queued<C>> {
    let mut batch = Vec::new();
    let mut next = Some(first);
    while let Some(queued) = next {
        // Nobody will hear this operation's answer, and nobody was told it
        // happened: applying it now would be a write nobody asked for any
        // more, possibly long after its caller moved on.
        if !queued.1.is_closed() {
            batch.push(queued);
        }
        if batch.len() == MAX_BATCH {
            break;
        }
        next = receiver.try_recv().ok();
    }
    batch
}

/// Restarts the committer after `panic`, retrying with a growing pause.
/// Returns `false` when the writer must stop: the committer can never
/// restart, or the store was dropped while it could not.
///
/// The callers of the panicked batch hear `failed` once the first attempt
/// is over, so that a caller checking the store's health after its error
/// sees what became of the writer.
fn restart<C: Committer>(
    committer: &mut C,
    receiver: &mut mpsc::Receiver<Queued<C>>,
    health: &Health,
    panic: &str,
    (mut batch, failed): (Vec<Reply<C::Out>>, &Arc<Down>),
) -> bool {
    let mut answer_batch = || {
        for reply in batch.drain(..) {
            let _ = reply.send(Err(failed.report()));
        }
    };
    let mut pause = FIRST_RESTART_PAUSE;
    loop {
        let attempt = catch_unwind(AssertUnwindSafe(|| committer.restart())).unwrap_or_else(|payload| {
            let message = format!("the restart panicked too ({})", panic_message(payload.as_ref()));
            Err(Restart::Failed(StoreError::backend(CONTEXT, std::io::Error::other(message))))
        });
        match attempt {
            Ok(()) => {
                health.set(None);
                answer_batch();
                tracing::info!("the session store writer restarted after a panic");
                return true;
            }
            Err(Restart::Impossible(why)) => {
                let down = Arc::new(Down::new(
                    format!("the session store writer panicked while committing ({panic}) and cannot restart: {why}"),
                    None,
                ));
                tracing::error!(error = &*down as &dyn std::error::Error, "the session store is out of service");
                health.set(Some(Arc::clone(&down)));
                answer_batch();
                // Nothing more gets in; what got in before hears why.
                receiver.close();
                while let Ok((_, reply)) = receiver.try_recv() {
                    let _ = reply.send(Err(down.report()));
                }
                return false;
            }
            Err(Restart::Failed(err)) => {
                let down = Arc::new(Down::new(
                    format!(
                        "the session store writer panicked while committing ({panic}) and could not restart yet; \
                         it tries again every {}s at most",
                        MAX_RESTART_PAUSE.as_secs()
                    ),
                    Some(err),
                ));
                tracing::error!(error = &*down as &dyn std::error::Error, "the session store writer cannot restart");
                health.set(Some(Arc::clone(&down)));
                answer_batch();
                // Callers queued now would otherwise wait through the pause.
                loop {
                    match receiver.try_recv() {
                        Ok((_, reply)) => {
                            let _ = reply.send(Err(down.report()));
                        }
                        Err(TryRecvError::Empty) => break,
                        Err(TryRecvError::Disconnected) => return false,
                    }
                }
                std::thread::park_timeout(pause);
                pause = (pause * 2).min(MAX_RESTART_PAUSE);
            }
        }
    }
}

/// The text of a panic, as `panic!` and `expect` give it.
fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "a panic without a message".to_owned()
    }
}

/// Whether the writer is out of service, readable without a lock while it
/// is not.
#[derive(Default)]
struct Health {
    down: AtomicBool,
    why: Mutex<Option<Arc<Down>>>,
}

impl Health {
    fn set(&self, why: Option<Arc<Down>>) {
        // The slot is replaced whole, so a panic elsewhere while it was
        // locked cannot have left it half-written.
        let mut slot = self.why.lock().unwrap_or_else(PoisonError::into_inner);
        self.down.store(why.is_some(), Ordering::Release);
        *slot = why;
    }

    fn get(&self) -> Option<Arc<Down>> {
        if !self.down.load(Ordering::Acquire) {
            return None;
        }
        self.why.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

/// Why the writer cannot take operations, told to each of them.
#[derive(Debug)]
struct Down {
    message: String,
    cause: Option<StoreError>,
}

impl Down {
    fn new(message: String, cause: Option<StoreError>) -> Self {
        Self { message, cause }
    }

    /// A [`StoreError`] for one operation, sharing this cause.
    fn report(self: &Arc<Self>) -> StoreError {
        StoreError::backend(CONTEXT, Shared(Arc::clone(self)))
    }
}

impl fmt::Display for Down {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Down {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.cause.as_ref().map(|cause| cause as &dyn std::error::Error)
    }
}

/// One error reported to several callers: shows as the error itself.
#[derive(Debug)]
struct Shared<E>(Arc<E>);

impl<E: fmt::Display> fmt::Display for Shared<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl<E: std::error::Error> std::error::Error for Shared<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

/// What lets the stores' own tests make a commit panic.
#[cfg(test)]
pub(crate) mod test_hooks;

#[cfg(test)]
mod tests;
