//! Group commit of placeOrder write-backs (issue 11): the write-backs that
//! are ready at the same moment share one transaction, so a busy process
//! commits once for several orders instead of once per order.
//!
//! No write-back waits for company. One arriving while fewer than
//! [`PIPES`] batches are running starts a batch at once (alone, when
//! nothing else is waiting); only while all of them run do others queue,
//! and the next batch takes every one queued (at most [`MOST`]). So a
//! batch grows with the load and costs nothing when there is none. A batch
//! of one is the write-back alone, exactly as without batching.
//!
//! Each write-back in a batch is fenced by its own lease exactly as alone
//! ([`Store::record_place_results`]). A batch never waits long for company
//! it does not need: a row lock held elsewhere fails it after
//! [`LOCK_WAIT`], and a batch not done within [`DEADLINE`] (a connection
//! that hangs) is given up. A batch that fails or is given up is rolled
//! back, and each of its write-backs is written alone, so one that cannot
//! be written costs the others only that retry. The batches run in tasks
//! of their own, tracked with the placements drained at shutdown: a
//! caller that stops waiting does not cancel the commit.

use std::{
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use tokio::sync::oneshot;
use tokio_util::task::TaskTracker;
use tracing::warn;

use crate::{
    domain::Order,
    store::{Store, StoreResult, outcomes::WriteBack},
};

/// Most batches committing at once in one process.
pub const PIPES: usize = 2;
/// Most write-backs in one batch: each holds its order's row lock until
/// the batch commits.
pub const MOST: usize = 32;
/// Longest a batch waits for a row lock held elsewhere (`lock_timeout`):
/// then it rolls back and each of its write-backs waits alone.
pub const LOCK_WAIT: Duration = Duration::from_millis(200);
/// Longest a batch may take (about 1 ms per write-back when healthy): a
/// batch on a connection that hangs is given up, and its write-backs are
/// written alone on others.
pub const DEADLINE: Duration = Duration::from_secs(5);

type Answer = StoreResult<Option<Order>>;

/// The queue of write-backs waiting for a batch.
pub struct WriteBacks {
    store: Store,
    tasks: TaskTracker,
    state: Arc<Mutex<State>>,
}

#[derive(Default)]
struct State {
    queue: Vec<Waiting>,
    /// Batch leaders running (at most [`PIPES`]).
    leaders: usize,
}

struct Waiting {
    wb: Arc<WriteBack>,
    /// `Some` answer from the batch; `None`: the batch failed, write alone.
    reply: oneshot::Sender<Option<Answer>>,
}

impl WriteBacks {
    /// Batches committed on `store`'s pool, in tasks of `tasks`.
    pub fn new(store: Store, tasks: TaskTracker) -> Self {
        Self {
            store,
            tasks,
            state: Arc::default(),
        }
    }

    /// Writes `wb` back, in a batch with the write-backs ready at the same
    /// moment; the order after it, `None` when the lease was lost.
    pub async fn record(&self, wb: &Arc<WriteBack>) -> Answer {
        let (reply, answer) = oneshot::channel();
        let lead = {
            let mut state = lock(&self.state);
            state.queue.push(Waiting {
                wb: wb.clone(),
                reply,
            });
            let lead = state.leaders < PIPES;
            state.leaders += usize::from(lead);
            lead
        };
        if lead {
            let leader = Leader {
                store: self.store.clone(),
                tasks: self.tasks.clone(),
                state: self.state.clone(),
                left: false,
            };
            self.tasks.spawn(leader.run());
        }
        match answer.await {
            Ok(Some(answer)) => answer,
            // The batch failed, or was given up: alone, as without batching.
            Ok(None) | Err(_) => self.store.record_place_result(wb).await,
        }
    }

    /// Writes `wb` back alone (a retry: it does not join a batch again).
    pub async fn record_alone(&self, wb: &WriteBack) -> Answer {
        self.store.record_place_result(wb).await
    }
}

/// Takes batches until the queue is empty, and leaves under the same lock
/// that found it empty (so nothing queued is left without a leader).
/// Dropped any other way (never run, a panic), it still gives its place
/// back, and the last leader to go lets every write-back still queued be
/// written alone.
struct Leader {
    store: Store,
    tasks: TaskTracker,
    state: Arc<Mutex<State>>,
    left: bool,
}

impl Leader {
    async fn run(mut self) {
        loop {
            let batch: Vec<Waiting> = {
                let mut state = lock(&self.state);
                if state.queue.is_empty() {
                    state.leaders -= 1;
                    self.left = true;
                    return;
                }
                let n = state.queue.len().min(MOST);
                state.queue.drain(..n).collect()
            };
            // A task of its own: a panic costs that batch (its callers
            // write alone), not the leader.
            let _ = self.tasks.spawn(commit(self.store.clone(), batch)).await;
        }
    }
}

impl Drop for Leader {
    fn drop(&mut self) {
        if self.left {
            return;
        }
        let mut state = lock(&self.state);
        state.leaders -= 1;
        if state.leaders == 0 {
            // No leader is left to take them: each writes alone.
            state.queue.clear();
        }
    }
}

/// One batch in one transaction. When it fails or takes longer than
/// [`DEADLINE`], each caller is told to write alone; the error of a batch
/// of one (the write-back alone) is its own.
async fn commit(store: Store, batch: Vec<Waiting>) {
    let (wbs, replies): (Vec<_>, Vec<_>) = batch.into_iter().map(|w| (w.wb, w.reply)).unzip();
    let answers: Vec<Option<Answer>> = if let [wb] = wbs.as_slice() {
        match tokio::time::timeout(DEADLINE, store.record_place_result(wb)).await {
            Ok(answer) => vec![Some(answer)],
            Err(_) => {
                warn!("write-back took too long; writing it again on another connection");
                vec![None]
            }
        }
    } else {
        let batch = store.record_place_results(&wbs, LOCK_WAIT);
        match tokio::time::timeout(DEADLINE, batch).await {
            Ok(Ok(rows)) => rows.into_iter().map(|row| Some(Ok(row))).collect(),
            Ok(Err(e)) => {
                warn!(error = %e, batch = wbs.len(), "write-back batch failed; writing each alone");
                wbs.iter().map(|_| None).collect()
            }
            Err(_) => {
                warn!(
                    batch = wbs.len(),
                    "write-back batch took too long; writing each alone"
                );
                wbs.iter().map(|_| None).collect()
            }
        }
    };
    for (reply, answer) in replies.into_iter().zip(answers) {
        let _ = reply.send(answer);
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
