//! Group commit (issue 11): the statements of the same kind that are ready
//! at the same moment share one transaction (write-backs) or one statement
//! (new orders' inserts), so a busy process pays Postgres' per-commit and
//! per-statement cost once for several orders instead of once per order.
//!
//! No item waits for company. One arriving while fewer than
//! [`Batchable::PIPES`] batches of its kind are running starts a batch at
//! once (alone, when nothing else is waiting); only while all of them run
//! do others queue, and the next batch takes every one queued (at most
//! [`Batchable::MOST`]). So a batch grows with the load and costs nothing
//! when there is none. A batch of one is the item alone, exactly as without
//! batching, unless its kind runs it as a batch (below).
//!
//! A batch still running after [`STALLED`] (a connection that hangs, an
//! item alone waiting for a row another transaction holds) gives up its
//! pipe: the items queued behind it start another batch at once, up to
//! [`MOST_PIPES`] batches of a kind in all. So one stuck batch does not
//! hold the others for long, even where a kind runs one pipe. A kind may
//! also run a batch of one as a batch ([`Batchable::ONE_TOGETHER`]), so
//! that it gives up on a held key or row within the batch's lock wait
//! instead of waiting in the pipe.
//!
//! A batch that fails, or is not done within [`DEADLINE`] (a connection
//! that hangs), answers none of its items: each is then done alone, so one
//! item that cannot be done costs the others only that retry. A kind whose
//! items cannot fail one by one may instead answer them all with the
//! failure ([`Batchable::failed`]: reads that met no connection), and then
//! the items queued meanwhile too. The batches
//! run in tasks of their own, tracked with the placements drained at
//! shutdown: a caller that stops waiting does not cancel the commit.

use std::{
    future::Future,
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use tokio::sync::oneshot;
use tokio_util::task::TaskTracker;
use tracing::warn;

use crate::store::{StoreError, StoreResult};

/// How long a batch may run before the items queued behind it start
/// another one: far beyond a healthy batch (about 10 ms under the
/// benchmark's load) and beyond [`LOCK_WAIT`], so a slow but working
/// database does not multiply its batches.
pub const STALLED: Duration = Duration::from_secs(1);
/// Most batches of one kind running at once in one process, stalled ones
/// included (each holds a connection).
pub const MOST_PIPES: usize = 4;
/// Longest a batch waits for a row or key held by another transaction
/// (`lock_timeout`): then it fails, and each of its items waits alone.
pub const LOCK_WAIT: Duration = Duration::from_millis(200);
/// Longest a batch may take, pool wait included (about a millisecond per
/// item when healthy; the pool gives up after 3 s): a batch on a
/// connection that hangs is given up, and its items are done alone on
/// others.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// One kind of work that can be done alone or in a batch.
pub trait Batchable: Send + Sync + 'static {
    /// What is asked.
    type Item: Send + Sync + 'static;
    /// What one item comes to.
    type Answer: Send + 'static;
    /// Its name in the log.
    const KIND: &'static str;
    /// Most batches running at once that have not stalled.
    const PIPES: usize;
    /// Most items in one batch.
    const MOST: usize;
    /// Whether a batch of one runs [`Self::together`] (bounded by its lock
    /// wait; an item it does not answer is then done alone by its caller)
    /// rather than [`Self::alone`] in the pipe.
    const ONE_TOGETHER: bool = false;
    /// How long a batch may run before the items queued behind it start
    /// another one.
    const STALLED_AFTER: Duration = STALLED;

    /// What each item of a batch that failed with `error` (or was given
    /// up, [`StoreError::took_too_long`]) gets: `None`, the default, does
    /// each alone. A kind whose items cannot fail one by one may answer
    /// them all at once, and then, unless the batch was given up, also the
    /// items queued when it failed: a database that cannot be reached is
    /// not asked again per item.
    fn failed(error: &StoreError) -> Option<Self::Answer> {
        let _ = error;
        None
    }

    /// One item on its own: without batching, a batch of one, or a member
    /// of a batch that did not answer it.
    fn alone(&self, item: &Self::Item) -> impl Future<Output = Self::Answer> + Send;

    /// Several items together, one answer each in the same order; `None`
    /// leaves that item to be done alone. An error answers none of them.
    fn together(
        &self,
        items: &[Arc<Self::Item>],
    ) -> impl Future<Output = StoreResult<Vec<Option<Self::Answer>>>> + Send;
}

/// The queue of items of kind `B` waiting for a batch.
pub struct Batches<B: Batchable> {
    kind: Arc<B>,
    tasks: TaskTracker,
    state: Arc<Mutex<State<B>>>,
    stalled_after: Duration,
}

struct State<B: Batchable> {
    queue: Vec<Waiting<B>>,
    /// Batch leaders running (at most [`MOST_PIPES`]).
    leaders: usize,
    /// Of those, the ones whose batch has run longer than the stall time.
    stalled: usize,
}

impl<B: Batchable> State<B> {
    /// Whether another leader may start: fewer than [`Batchable::PIPES`]
    /// run without having stalled, and fewer than [`MOST_PIPES`] in all.
    fn may_lead(&self) -> bool {
        self.leaders - self.stalled < B::PIPES && self.leaders < MOST_PIPES
    }
}

struct Waiting<B: Batchable> {
    item: Arc<B::Item>,
    /// `Some` answer from the batch; `None`: do it alone.
    reply: oneshot::Sender<Option<B::Answer>>,
}

impl<B: Batchable> Batches<B> {
    /// Batches of `kind`, run in tasks of `tasks`.
    pub fn new(kind: B, tasks: TaskTracker) -> Self {
        Self {
            kind: Arc::new(kind),
            tasks,
            state: Arc::new(Mutex::new(State {
                queue: Vec::new(),
                leaders: 0,
                stalled: 0,
            })),
            stalled_after: B::STALLED_AFTER,
        }
    }

    /// The same, with `after` as the stall time instead of its kind's
    /// (tests that keep pipes busy on purpose).
    #[must_use]
    pub fn stalled_after(mut self, after: Duration) -> Self {
        self.stalled_after = after;
        self
    }

    /// Does `item`, in a batch with the items ready at the same moment.
    pub async fn run(&self, item: &Arc<B::Item>) -> B::Answer {
        let (reply, answer) = oneshot::channel();
        let lead = {
            let mut state = lock(&self.state);
            state.queue.push(Waiting {
                item: item.clone(),
                reply,
            });
            let lead = state.may_lead();
            state.leaders += usize::from(lead);
            lead
        };
        if lead {
            Leader::start(&self.kind, &self.tasks, &self.state, self.stalled_after);
        }
        match answer.await {
            Ok(Some(answer)) => answer,
            // The batch failed, was given up, or left it: alone.
            Ok(None) | Err(_) => self.kind.alone(item).await,
        }
    }

    /// Does `item` alone (a retry: it does not join a batch again).
    pub async fn run_alone(&self, item: &B::Item) -> B::Answer {
        self.kind.alone(item).await
    }
}

/// Takes batches until the queue is empty, and leaves under the same lock
/// that found it empty (so nothing queued is left without a leader). A
/// leader whose batch stalls counts as stalled until it is done, and hands
/// the queue to a new leader when one may start; back, it leaves if that
/// makes more than [`Batchable::PIPES`] running. Dropped any other way
/// (never run, a panic), it still gives its place back, and the last
/// leader to go lets every item still queued be done alone.
struct Leader<B: Batchable> {
    kind: Arc<B>,
    tasks: TaskTracker,
    state: Arc<Mutex<State<B>>>,
    stalled_after: Duration,
    left: bool,
    /// Counted in `State::stalled`.
    stalled: bool,
}

impl<B: Batchable> Leader<B> {
    /// Starts a leader whose place is already counted in `State::leaders`.
    fn start(
        kind: &Arc<B>,
        tasks: &TaskTracker,
        state: &Arc<Mutex<State<B>>>,
        stalled_after: Duration,
    ) {
        let leader = Self {
            kind: kind.clone(),
            tasks: tasks.clone(),
            state: state.clone(),
            stalled_after,
            left: false,
            stalled: false,
        };
        tasks.spawn(leader.run());
    }

    async fn run(mut self) {
        loop {
            let batch: Vec<Waiting<B>> = {
                let mut state = lock(&self.state);
                if state.queue.is_empty() || state.leaders - state.stalled > B::PIPES {
                    state.leaders -= 1;
                    self.left = true;
                    return;
                }
                let n = state.queue.len().min(B::MOST);
                state.queue.drain(..n).collect()
            };
            // A task of its own: a panic costs that batch (its items are
            // done alone), not the leader.
            let mut batch = self.tasks.spawn(commit(self.kind.clone(), batch));
            let failed = match tokio::time::timeout(self.stalled_after, &mut batch).await {
                Ok(failed) => failed,
                Err(_) => {
                    self.stall();
                    let failed = batch.await;
                    lock(&self.state).stalled -= 1;
                    self.stalled = false;
                    failed
                }
            };
            if let Ok(Some(e)) = failed {
                self.fail_queued(&e);
            }
        }
    }

    /// The batch failed with `e`, and its kind answered each of its items
    /// with that: the items queued meanwhile get the same answer now,
    /// instead of a batch of their own that would meet the same wall.
    fn fail_queued(&self, e: &StoreError) {
        let queued: Vec<Waiting<B>> = lock(&self.state).queue.drain(..).collect();
        if queued.is_empty() {
            return;
        }
        warn!(
            error = %e,
            kind = B::KIND,
            queued = queued.len(),
            "the ones queued behind a failed batch get its error"
        );
        for waiting in queued {
            let _ = waiting.reply.send(B::failed(e));
        }
    }

    /// Counts this leader as stalled, and starts another for the items
    /// queued behind it when one may start.
    fn stall(&mut self) {
        let mut state = lock(&self.state);
        state.stalled += 1;
        self.stalled = true;
        if state.queue.is_empty() || !state.may_lead() {
            return;
        }
        state.leaders += 1;
        warn!(
            kind = B::KIND,
            after = ?self.stalled_after,
            queued = state.queue.len(),
            "a batch is slow; starting another for the ones queued behind it"
        );
        Leader::start(&self.kind, &self.tasks, &self.state, self.stalled_after);
    }
}

impl<B: Batchable> Drop for Leader<B> {
    fn drop(&mut self) {
        if self.left {
            return;
        }
        let mut state = lock(&self.state);
        state.leaders -= 1;
        state.stalled -= usize::from(self.stalled);
        if state.leaders == 0 {
            // No leader is left to take them: each is done alone.
            state.queue.clear();
        }
    }
}

/// One batch. When it fails or takes longer than [`DEADLINE`], its items
/// get what [`Batchable::failed`] gives (by default: done alone); the
/// answer of a batch of one run alone is its own, error included. `Some`
/// failure when the batch failed (not given up) and the kind answered
/// every item with it: the queue then gets it too.
async fn commit<B: Batchable>(kind: Arc<B>, batch: Vec<Waiting<B>>) -> Option<StoreError> {
    let (items, replies): (Vec<_>, Vec<_>) = batch.into_iter().map(|w| (w.item, w.reply)).unzip();
    let mut answered_all = None;
    let answers: Vec<Option<B::Answer>> = if let ([item], false) =
        (items.as_slice(), B::ONE_TOGETHER)
    {
        match tokio::time::timeout(DEADLINE, kind.alone(item)).await {
            Ok(answer) => vec![Some(answer)],
            Err(_) => {
                // Given up: answered, but the queue is left to the other
                // leaders, which may be on healthy connections.
                let answer = B::failed(&StoreError::took_too_long());
                if answer.is_some() {
                    warn!(kind = B::KIND, "took too long; answered unavailable");
                } else {
                    warn!(
                        kind = B::KIND,
                        "took too long; doing it again on another connection"
                    );
                }
                vec![answer]
            }
        }
    } else {
        // `Err` with whether the batch was given up (`late`).
        let done = match tokio::time::timeout(DEADLINE, kind.together(&items)).await {
            Ok(Ok(answers)) => Ok(answers),
            Ok(Err(e)) => Err((e, false)),
            Err(_) => Err((StoreError::took_too_long(), true)),
        };
        match done {
            Ok(answers) => answers,
            Err((e, late)) => {
                let answers: Vec<_> = items.iter().map(|_| B::failed(&e)).collect();
                let batch = items.len();
                if answers.iter().all(Option::is_some) {
                    warn!(error = %e, kind = B::KIND, batch, "batch failed; each gets the error");
                    // Given up: the queue is left to the other leaders.
                    answered_all = (!late).then_some(e);
                } else if late {
                    warn!(kind = B::KIND, batch, "batch took too long; each alone");
                } else {
                    warn!(error = %e, kind = B::KIND, batch, "batch failed; each alone");
                }
                answers
            }
        }
    };
    for (reply, answer) in replies.into_iter().zip(answers) {
        let _ = reply.send(answer);
    }
    answered_all
}

fn lock<B: Batchable>(state: &Mutex<State<B>>) -> MutexGuard<'_, State<B>> {
    state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio::sync::watch;

    use super::*;

    /// Items that wait, alone or together, counting how many batches wait
    /// at once.
    struct Probe {
        wait: Wait,
        running: AtomicUsize,
        peak: AtomicUsize,
        batches: AtomicUsize,
    }

    enum Wait {
        /// Until the gate opens: a batch stuck as long as the test wants.
        Gate(watch::Receiver<bool>),
        /// This long, every batch: a database slow but working.
        For(Duration),
    }

    impl Probe {
        fn new(wait: Wait) -> Self {
            Self {
                wait,
                running: AtomicUsize::new(0),
                peak: AtomicUsize::new(0),
                batches: AtomicUsize::new(0),
            }
        }

        async fn pass(&self) {
            let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
            self.peak.fetch_max(now, Ordering::SeqCst);
            self.batches.fetch_add(1, Ordering::SeqCst);
            match &self.wait {
                Wait::Gate(open) => {
                    let _ = open.clone().wait_for(|open| *open).await;
                }
                Wait::For(took) => tokio::time::sleep(*took).await,
            }
            self.running.fetch_sub(1, Ordering::SeqCst);
        }
    }

    impl Batchable for Probe {
        type Item = usize;
        type Answer = usize;
        const KIND: &'static str = "test";
        const PIPES: usize = 1;
        const MOST: usize = 64;

        async fn alone(&self, item: &usize) -> usize {
            self.pass().await;
            *item
        }

        async fn together(&self, items: &[Arc<usize>]) -> StoreResult<Vec<Option<usize>>> {
            self.pass().await;
            Ok(items.iter().map(|i| Some(**i)).collect())
        }
    }

    /// A gate shut, its tracker, and batches behind it that count as
    /// stalled after `stall`.
    fn gated(stall: Duration) -> (watch::Sender<bool>, TaskTracker, Arc<Batches<Probe>>) {
        let (open, gate) = watch::channel(false);
        let tasks = TaskTracker::new();
        let batches =
            Batches::new(Probe::new(Wait::Gate(gate)), tasks.clone()).stalled_after(stall);
        (open, tasks, Arc::new(batches))
    }

    /// Items `0..n`, one every `gap`, each in a task of its own.
    async fn submit(
        batches: &Arc<Batches<Probe>>,
        n: usize,
        gap: Duration,
    ) -> Vec<tokio::task::JoinHandle<usize>> {
        let mut items = Vec::new();
        for i in 0..n {
            let b = batches.clone();
            items.push(tokio::spawn(async move { b.run(&Arc::new(i)).await }));
            tokio::time::sleep(gap).await;
        }
        items
    }

    #[tokio::test]
    async fn stalled_batches_hand_the_queue_on_up_to_the_most_pipes_and_answer_every_item() {
        let stall = Duration::from_millis(10);
        let (open, tasks, batches) = gated(stall);
        // Each batch stalls before the next item comes.
        let items = submit(&batches, 10, stall * 3).await;
        assert_eq!(
            batches.kind.running.load(Ordering::SeqCst),
            MOST_PIPES,
            "a stalled batch lets the next start, up to the most pipes"
        );
        assert_eq!(lock(&batches.state).queue.len(), 10 - MOST_PIPES);
        open.send(true).unwrap();
        for (i, item) in items.into_iter().enumerate() {
            assert_eq!(item.await.unwrap(), i);
        }
        assert_eq!(batches.kind.peak.load(Ordering::SeqCst), MOST_PIPES);
        // The queued six went in one batch once a pipe was free.
        assert_eq!(batches.kind.batches.load(Ordering::SeqCst), MOST_PIPES + 1);
        tasks.close();
        tasks.wait().await;
        let state = lock(&batches.state);
        assert_eq!((state.leaders, state.stalled), (0, 0), "every leader left");
    }

    #[tokio::test]
    async fn a_batch_that_does_not_stall_keeps_the_others_queued_behind_its_one_pipe() {
        let (open, _tasks, batches) = gated(Duration::from_secs(3600));
        let items = submit(&batches, 5, Duration::from_millis(20)).await;
        assert_eq!(batches.kind.running.load(Ordering::SeqCst), 1);
        open.send(true).unwrap();
        for (i, item) in items.into_iter().enumerate() {
            assert_eq!(item.await.unwrap(), i);
        }
        assert_eq!(
            batches.kind.batches.load(Ordering::SeqCst),
            2,
            "the first alone, the four queued behind it together"
        );
    }

    #[tokio::test]
    async fn a_slow_but_working_database_keeps_one_pipe_of_large_batches() {
        let slow = Probe::new(Wait::For(Duration::from_millis(300)));
        let batches = Arc::new(Batches::new(slow, TaskTracker::new()));
        // An item every 10 ms for a second.
        let items = submit(&batches, 100, Duration::from_millis(10)).await;
        for (i, item) in items.into_iter().enumerate() {
            assert_eq!(item.await.unwrap(), i);
        }
        assert_eq!(
            batches.kind.peak.load(Ordering::SeqCst),
            1,
            "a batch slower than usual but under the stall time keeps its pipe"
        );
        // About four; ten would take three seconds of arrivals.
        assert!(
            batches.kind.batches.load(Ordering::SeqCst) <= 10,
            "large batches, not one per item"
        );
    }

    /// Batches that wait for a gate and then fail for want of a
    /// connection; the kind answers every item with that failure.
    struct NoConnection {
        gate: watch::Receiver<bool>,
        batches: AtomicUsize,
    }

    /// What an item answered with the failure gets.
    const FAILED: usize = usize::MAX;

    impl Batchable for NoConnection {
        type Item = usize;
        type Answer = usize;
        const KIND: &'static str = "test reads";
        const PIPES: usize = 1;
        const MOST: usize = 64;
        const ONE_TOGETHER: bool = true;

        fn failed(error: &StoreError) -> Option<usize> {
            error.no_connection_again().map(|_| FAILED)
        }

        async fn alone(&self, item: &usize) -> usize {
            *item
        }

        async fn together(&self, _items: &[Arc<usize>]) -> StoreResult<Vec<Option<usize>>> {
            self.batches.fetch_add(1, Ordering::SeqCst);
            let _ = self.gate.clone().wait_for(|open| *open).await;
            Err(StoreError::Unavailable(sqlx::Error::PoolTimedOut))
        }
    }

    #[tokio::test]
    async fn a_failure_the_kind_answers_for_all_answers_the_ones_queued_too() {
        let (open, gate) = watch::channel(false);
        let kind = NoConnection {
            gate,
            batches: AtomicUsize::new(0),
        };
        let tasks = TaskTracker::new();
        let batches =
            Arc::new(Batches::new(kind, tasks.clone()).stalled_after(Duration::from_secs(3600)));
        let mut items = Vec::new();
        for i in 0..4 {
            let b = batches.clone();
            items.push(tokio::spawn(async move { b.run(&Arc::new(i)).await }));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(
            lock(&batches.state).queue.len(),
            3,
            "three behind the first"
        );
        open.send(true).unwrap();
        for item in items {
            assert_eq!(
                item.await.unwrap(),
                FAILED,
                "answered with the failure, not alone"
            );
        }
        assert_eq!(
            batches.kind.batches.load(Ordering::SeqCst),
            1,
            "the queued ones met the first batch's failure, not a batch of their own"
        );
        tasks.close();
        tasks.wait().await;
        let state = lock(&batches.state);
        assert_eq!((state.leaders, state.stalled), (0, 0), "every leader left");
    }
}
