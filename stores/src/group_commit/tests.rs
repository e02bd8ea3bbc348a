//! The writer thread against a scripted committer: batching, failed and
//! panicking commits, restarts, the bounded queue and callers that give up.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::test_hooks::chain;
use super::*;

/// An operation whose commit fails (returns an error).
const FAIL: u32 = 0;
/// An operation whose commit panics.
const PANIC: u32 = u32::MAX;

/// What the test sees of its committer.
#[derive(Default)]
struct Probe {
    /// Every operation of every commit that returned `Ok`, in order.
    committed: Mutex<Vec<u32>>,
    /// The size of every batch the committer was given.
    batches: Mutex<Vec<usize>>,
    restarts: AtomicUsize,
}

impl Probe {
    fn committed(&self) -> Vec<u32> {
        self.committed.lock().expect("lock").clone()
    }

    fn batches(&self) -> Vec<usize> {
        self.batches.lock().expect("lock").clone()
    }
}

/// Holds every commit until the test lets it go.
struct Gate {
    /// Each batch's operations, sent when its commit begins.
    started: mpsc::UnboundedSender<Vec<u32>>,
    /// One message lets one commit go on; once the test drops its end, they
    /// all go.
    release: std::sync::mpsc::Receiver<()>,
}

/// Doubles each operation, except [`FAIL`] and [`PANIC`].
struct Scripted {
    probe: Arc<Probe>,
    pause: Duration,
    gate: Option<Gate>,
    /// The answers of successive restarts; `Ok` once they run out.
    restarts: VecDeque<Result<(), Restart>>,
}

impl Scripted {
    fn new() -> (Self, Arc<Probe>) {
        let probe = Arc::new(Probe::default());
        let committer =
            Self { probe: Arc::clone(&probe), pause: Duration::ZERO, gate: None, restarts: VecDeque::new() };
        (committer, probe)
    }

    /// Commits wait for the test: returns where they say they started and
    /// how the test lets them go.
    fn gated(&mut self) -> (mpsc::UnboundedReceiver<Vec<u32>>, std::sync::mpsc::Sender<()>) {
        let (started, started_rx) = mpsc::unbounded_channel();
        let (release_tx, release) = std::sync::mpsc::channel();
        self.gate = Some(Gate { started, release });
        (started_rx, release_tx)
    }
}

impl Committer for Scripted {
    type Op = u32;
    type Out = u32;

    fn commit(&mut self, ops: Vec<u32>) -> Result<Vec<Result<u32, StoreError>>, StoreError> {
        self.probe.batches.lock().expect("lock").push(ops.len());
        if let Some(gate) = &self.gate {
            let _ = gate.started.send(ops.clone());
            let _ = gate.release.recv();
        }
        std::thread::sleep(self.pause);
        assert!(!ops.contains(&PANIC), "test committer: a commit panics");
        if ops.contains(&FAIL) {
            return Err(StoreError::backend("test commit", std::io::Error::other("disk full")));
        }
        self.probe.committed.lock().expect("lock").extend(&ops);
        Ok(ops.into_iter().map(|op| Ok(op * 2)).collect())
    }

    fn restart(&mut self) -> Result<(), Restart> {
        self.probe.restarts.fetch_add(1, Ordering::SeqCst);
        self.restarts.pop_front().unwrap_or(Ok(()))
    }
}

/// Waits until `done` holds, for at most ten seconds.
async fn until(what: &str, done: impl Fn() -> bool) {
    for _ in 0..10_000 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    panic!("timed out waiting until {what}");
}

fn spawn_submit(writer: &Arc<GroupCommit<Scripted>>, op: u32) -> tokio::task::JoinHandle<Result<u32, StoreError>> {
    let writer = Arc::clone(writer);
    tokio::spawn(async move { writer.submit(op).await })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writes_share_commits_and_each_gets_its_answer() {
    let (mut committer, probe) = Scripted::new();
    // Slow enough that concurrent callers queue up behind a commit.
    committer.pause = Duration::from_millis(2);
    let writer = Arc::new(GroupCommit::spawn("test-writer", committer).expect("spawn"));
    let tasks: Vec<_> = (1..=200u32).map(|i| (i, spawn_submit(&writer, i))).collect();
    for (i, task) in tasks {
        assert_eq!(task.await.expect("task").expect("commit"), i * 2);
    }
    let batches = probe.batches();
    assert_eq!(batches.iter().sum::<usize>(), 200);
    assert!(batches.len() < 200, "200 concurrent writes took {} commits: nothing was grouped", batches.len());
}

#[tokio::test]
async fn a_failed_commit_fails_every_write_in_it_with_its_cause() {
    let (committer, _probe) = Scripted::new();
    let writer = GroupCommit::spawn("test-writer", committer).expect("spawn");
    let err = writer.submit(FAIL).await.expect_err("commit fails");
    assert!(chain(&err).contains("disk full"), "{}", chain(&err));
    assert_eq!(writer.submit(3).await.expect("later commits work"), 6);
    writer.health().expect("a failed commit is not a failed writer");
}

#[tokio::test]
async fn dropping_the_handle_stops_and_joins_the_thread() {
    let (committer, probe) = Scripted::new();
    let writer = GroupCommit::spawn("test-writer", committer).expect("spawn");
    assert_eq!(writer.submit(1).await.expect("commit"), 2);
    drop(writer);
    // The thread owned the committer, which held the other Arc.
    assert_eq!(Arc::strong_count(&probe), 1);
}

#[tokio::test]
async fn a_panicking_commit_fails_its_whole_batch_and_the_writer_restarts() {
    let (mut committer, probe) = Scripted::new();
    let (mut started, release) = committer.gated();
    let writer = Arc::new(GroupCommit::spawn("test-writer", committer).expect("spawn"));
    let first = spawn_submit(&writer, 1);
    assert_eq!(started.recv().await.expect("started"), [1]);
    // Queued behind the first commit, so they make up the next batch.
    let batch: Vec<_> = [2, PANIC, 3].into_iter().map(|op| spawn_submit(&writer, op)).collect();
    until("three writes are queued", || writer.queued() == 3).await;
    release.send(()).expect("release");
    assert_eq!(first.await.expect("task").expect("the first batch commits"), 2);

    let mut second = started.recv().await.expect("started");
    second.sort_unstable();
    assert_eq!(second, [2, 3, PANIC]);
    release.send(()).expect("release");
    for task in batch {
        let err = task.await.expect("task").expect_err("every write of the panicked batch fails");
        let text = chain(&err);
        assert!(text.contains("panicked") && text.contains("nothing of that batch is acknowledged"), "{text}");
        assert!(text.contains("a commit panics"), "the error must carry the panic's message: {text}");
    }
    assert_eq!(probe.committed(), [1], "nothing of the panicked batch was committed");

    drop(release);
    assert_eq!(writer.submit(4).await.expect("the restarted writer commits"), 8);
    assert_eq!(probe.restarts.load(Ordering::SeqCst), 1);
    writer.health().expect("healthy after the restart");
    assert_eq!(probe.committed(), [1, 4]);
}

#[tokio::test]
async fn a_writer_that_cannot_restart_fails_everything_from_then_on_and_says_why() {
    let (mut committer, probe) = Scripted::new();
    committer.restarts.push_back(Err(Restart::Impossible("the application must build a new store")));
    let (mut started, release) = committer.gated();
    let writer = Arc::new(GroupCommit::spawn("test-writer", committer).expect("spawn"));
    let panicking = spawn_submit(&writer, PANIC);
    assert_eq!(started.recv().await.expect("started"), [PANIC]);
    let queued: Vec<_> = [7, 8].into_iter().map(|op| spawn_submit(&writer, op)).collect();
    until("two writes are queued", || writer.queued() == 2).await;
    drop(release);

    let err = panicking.await.expect("task").expect_err("the panicked batch fails");
    assert!(chain(&err).contains("panicked"), "{}", chain(&err));
    for task in queued {
        let err = task.await.expect("task").expect_err("writes queued behind the panic fail");
        assert!(chain(&err).contains("cannot restart"), "{}", chain(&err));
    }
    for _ in 0..3 {
        let health = writer.health().expect_err("unhealthy for good");
        let text = chain(&health);
        assert!(text.contains("cannot restart") && text.contains("the application must build a new store"), "{text}");
        let refused = writer.submit(5).await.expect_err("every later write fails at once");
        assert_eq!(chain(&refused), text, "every operation reports the same lasting error");
    }
    assert!(probe.committed().is_empty());
    assert_eq!(probe.batches(), [1], "no operation reached the committer after the panic");
    // The thread is gone and let go of its engine.
    until("the writer lets go of its committer", || Arc::strong_count(&probe) == 1).await;
}

#[tokio::test]
async fn a_restart_that_fails_is_retried_and_operations_fail_at_once_meanwhile() {
    let (mut committer, probe) = Scripted::new();
    for _ in 0..3 {
        let gone = StoreError::backend("test restart", std::io::Error::other("the disk is gone"));
        committer.restarts.push_back(Err(Restart::Failed(gone)));
    }
    let writer = GroupCommit::spawn("test-writer", committer).expect("spawn");
    writer.submit(PANIC).await.expect_err("the panicked batch fails");

    // The batch heard of the panic once the first restart had failed.
    let health = chain(&writer.health().expect_err("restarting"));
    assert!(health.contains("could not restart yet") && health.contains("the disk is gone"), "{health}");
    let refused = writer.submit(3).await.expect_err("writes fail while the writer cannot restart");
    assert!(chain(&refused).contains("could not restart yet"), "{}", chain(&refused));

    until("the writer restarts", || writer.health().is_ok()).await;
    assert_eq!(probe.restarts.load(Ordering::SeqCst), 4);
    assert_eq!(writer.submit(3).await.expect("the writer works again"), 6);
    assert_eq!(probe.committed(), [3], "the write refused meanwhile was not applied later");
}

// On a current-thread runtime: a submit that blocked its thread while the
// queue is full would stop the whole test, the writer's release included.
#[tokio::test(flavor = "current_thread")]
async fn a_full_queue_makes_submitters_wait_and_holds_no_more_than_its_capacity() {
    let (mut committer, probe) = Scripted::new();
    let (mut started, release) = committer.gated();
    let writer = Arc::new(GroupCommit::spawn("test-writer", committer).expect("spawn"));
    let first = spawn_submit(&writer, 1);
    assert_eq!(started.recv().await.expect("started"), [1]);

    let extra = 100;
    let waiting: Vec<_> = (2..).take(QUEUE_CAPACITY + extra).map(|op| (op, spawn_submit(&writer, op))).collect();
    until("the queue is full", || writer.queued() == QUEUE_CAPACITY).await;
    // The runtime keeps running (this sleep ends) while submitters wait.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(writer.queued(), QUEUE_CAPACITY, "the queue must not grow past its capacity");
    assert!(waiting.iter().all(|(_, task)| !task.is_finished()), "a submitter did not wait for the slow commit");
    assert_eq!(probe.batches(), [1], "the writer was given nothing while its commit was stuck");

    drop(release);
    assert_eq!(first.await.expect("task").expect("commit"), 2);
    for (op, task) in waiting {
        assert_eq!(task.await.expect("task").expect("every waiting write commits"), op * 2);
    }
    let batches = probe.batches();
    assert_eq!(batches.iter().sum::<usize>(), 1 + QUEUE_CAPACITY + extra);
    assert!(batches.iter().all(|&size| size <= MAX_BATCH), "{batches:?}");
}

#[tokio::test(flavor = "current_thread")]
async fn callers_that_give_up_before_their_write_is_taken_leave_nothing_behind() {
    let (mut committer, probe) = Scripted::new();
    let (mut started, release) = committer.gated();
    let writer = Arc::new(GroupCommit::spawn("test-writer", committer).expect("spawn"));
    // This caller gives up after the writer took its write into a batch.
    let taken = spawn_submit(&writer, 1);
    assert_eq!(started.recv().await.expect("started"), [1]);

    // A thousand callers time out while the commit is stuck: some after
    // their write was queued, most while waiting for room.
    for wave in 0..10u32 {
        let mut callers = tokio::task::JoinSet::new();
        for i in 0..100 {
            let writer = Arc::clone(&writer);
            callers.spawn(async move {
                tokio::time::timeout(Duration::from_millis(1), writer.submit(1_000 + wave * 100 + i)).await
            });
        }
        for result in callers.join_all().await {
            assert!(result.is_err(), "a write was answered while the commit was stuck");
        }
        assert!(writer.queued() <= QUEUE_CAPACITY);
    }
    let patient = spawn_submit(&writer, 5);
    taken.abort();
    assert!(taken.await.is_err_and(|err| err.is_cancelled()));

    drop(release);
    assert_eq!(patient.await.expect("task").expect("commit"), 10);
    assert_eq!(
        probe.committed(),
        [1, 5],
        "a write already taken into a batch commits; the thousand given up before are never applied"
    );
}
