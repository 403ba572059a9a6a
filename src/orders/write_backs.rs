//! Group commit of placeOrder write-backs (issue 11): the write-backs that
//! are ready at the same moment share one transaction, so a busy process
//! commits once for several orders instead of once per order.
//!
//! No write-back waits for company. One arriving while fewer than
//! [`PIPES`] batches are running starts a batch at once (alone, when
//! nothing else is waiting); only while all of them run do others queue,
//! and the next batch takes every one queued (at most [`MOST`]). So a
//! batch grows with the load and costs nothing when there is none.
//!
//! Each write-back in a batch is fenced by its own lease exactly as alone
//! ([`Store::record_place_results`]). A batch that fails rolls all of them
//! back, and each is then written alone, so one bad write-back never costs
//! another its answer. The batches run in tasks of their own: a caller that
//! stops waiting does not cancel the commit.

use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::oneshot;
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

type Answer = StoreResult<Option<Order>>;

/// The queue of write-backs waiting for a batch; cheap to share.
pub struct WriteBacks {
    store: Store,
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
    /// Batches committed on `store`'s pool.
    pub fn new(store: Store) -> Self {
        Self {
            store,
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
            tokio::spawn(lead_batches(self.store.clone(), self.state.clone()));
        }
        match answer.await {
            Ok(Some(answer)) => answer,
            // The batch failed (or its task died): alone, as before batching.
            Ok(None) | Err(_) => self.store.record_place_result(wb).await,
        }
    }
}

/// Commits batches until the queue is empty, then leaves. Each batch runs
/// in a task of its own, so a panic costs that batch (its callers write
/// alone) and not the leader.
async fn lead_batches(store: Store, state: Arc<Mutex<State>>) {
    loop {
        let batch: Vec<Waiting> = {
            let mut state = lock(&state);
            if state.queue.is_empty() {
                state.leaders -= 1;
                return;
            }
            let n = state.queue.len().min(MOST);
            state.queue.drain(..n).collect()
        };
        let store = store.clone();
        let _ = tokio::spawn(commit(store, batch)).await;
    }
}

/// One batch: all in one transaction; on an error, each caller is told to
/// write alone (an error of a batch of one is that write-back's own).
async fn commit(store: Store, batch: Vec<Waiting>) {
    let (wbs, replies): (Vec<_>, Vec<_>) = batch.into_iter().map(|w| (w.wb, w.reply)).unzip();
    let answers: Vec<Option<Answer>> = match store.record_place_results(&wbs).await {
        Ok(rows) => rows.into_iter().map(|row| Some(Ok(row))).collect(),
        Err(e) if wbs.len() == 1 => vec![Some(Err(e))],
        Err(e) => {
            warn!(error = %e, batch = wbs.len(), "write-back batch failed; writing each alone");
            wbs.iter().map(|_| None).collect()
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
