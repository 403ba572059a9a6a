//! Group commit (issue 11): the statements of the same kind that are ready
//! at the same moment share one transaction (write-backs) or one statement
//! (new orders' inserts), so a busy process pays Postgres' per-commit and
//! per-statement cost once for several orders instead of once per order.
//!
//! No item waits for company. One arriving while fewer than [`PIPES`]
//! batches are running starts a batch at once (alone, when nothing else
//! is waiting); only while all of them run do others queue, and the next
//! batch takes every one queued (at most [`MOST`]). So a batch grows with
//! the load and costs nothing when there is none. A batch of one is the
//! item alone, exactly as without batching.
//!
//! A batch that fails, or is not done within [`DEADLINE`] (a connection
//! that hangs), answers none of its items: each is then done alone, so one
//! item that cannot be done costs the others only that retry. The batches
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

use crate::store::StoreResult;

/// Most batches running at once in one process, per kind.
pub const PIPES: usize = 2;
/// Most items in one batch.
pub const MOST: usize = 32;
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
}

struct State<B: Batchable> {
    queue: Vec<Waiting<B>>,
    /// Batch leaders running (at most [`PIPES`]).
    leaders: usize,
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
            })),
        }
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
            let lead = state.leaders < PIPES;
            state.leaders += usize::from(lead);
            lead
        };
        if lead {
            let leader = Leader {
                kind: self.kind.clone(),
                tasks: self.tasks.clone(),
                state: self.state.clone(),
                left: false,
            };
            self.tasks.spawn(leader.run());
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
/// that found it empty (so nothing queued is left without a leader).
/// Dropped any other way (never run, a panic), it still gives its place
/// back, and the last leader to go lets every item still queued be done
/// alone.
struct Leader<B: Batchable> {
    kind: Arc<B>,
    tasks: TaskTracker,
    state: Arc<Mutex<State<B>>>,
    left: bool,
}

impl<B: Batchable> Leader<B> {
    async fn run(mut self) {
        loop {
            let batch: Vec<Waiting<B>> = {
                let mut state = lock(&self.state);
                if state.queue.is_empty() {
                    state.leaders -= 1;
                    self.left = true;
                    return;
                }
                let n = state.queue.len().min(MOST);
                state.queue.drain(..n).collect()
            };
            // A task of its own: a panic costs that batch (its items are
            // done alone), not the leader.
            let _ = self.tasks.spawn(commit(self.kind.clone(), batch)).await;
        }
    }
}

impl<B: Batchable> Drop for Leader<B> {
    fn drop(&mut self) {
        if self.left {
            return;
        }
        let mut state = lock(&self.state);
        state.leaders -= 1;
        if state.leaders == 0 {
            // No leader is left to take them: each is done alone.
            state.queue.clear();
        }
    }
}

/// One batch. When it fails or takes longer than [`DEADLINE`], its items
/// are done alone; the answer of a batch of one (the item alone) is its
/// own, error included.
async fn commit<B: Batchable>(kind: Arc<B>, batch: Vec<Waiting<B>>) {
    let (items, replies): (Vec<_>, Vec<_>) = batch.into_iter().map(|w| (w.item, w.reply)).unzip();
    let answers: Vec<Option<B::Answer>> = if let [item] = items.as_slice() {
        match tokio::time::timeout(DEADLINE, kind.alone(item)).await {
            Ok(answer) => vec![Some(answer)],
            Err(_) => {
                warn!(
                    kind = B::KIND,
                    "took too long; doing it again on another connection"
                );
                vec![None]
            }
        }
    } else {
        match tokio::time::timeout(DEADLINE, kind.together(&items)).await {
            Ok(Ok(answers)) => answers,
            Ok(Err(e)) => {
                warn!(error = %e, kind = B::KIND, batch = items.len(), "batch failed; each alone");
                items.iter().map(|_| None).collect()
            }
            Err(_) => {
                warn!(
                    kind = B::KIND,
                    batch = items.len(),
                    "batch took too long; each alone"
                );
                items.iter().map(|_| None).collect()
            }
        }
    };
    for (reply, answer) in replies.into_iter().zip(answers) {
        let _ = reply.send(answer);
    }
}

fn lock<B: Batchable>(state: &Mutex<State<B>>) -> MutexGuard<'_, State<B>> {
    state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
