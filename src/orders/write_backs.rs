//! Group commit of placeOrder write-backs (issue 11): the write-backs that
//! are ready at the same moment share one transaction ([`super::batches`]).
//!
//! Each write-back in a batch is fenced by its own lease exactly as alone
//! ([`Store::record_place_results`]). A batch does not make its members
//! wait for what only one of them needs: a row lock held elsewhere fails it
//! after [`LOCK_WAIT`], and then each member is written alone. A batch
//! whose connection dies mid-way is ended by the server after
//! [`DEADLINE`] idle, so its members' rows do not stay locked.

use std::{sync::Arc, time::Duration};

use tokio_util::task::TaskTracker;

use super::batches::{Batchable, Batches, DEADLINE, LOCK_WAIT};
use crate::{
    domain::Order,
    store::{Store, StoreResult, outcomes::WriteBack},
};

type Answer = StoreResult<Option<Order>>;

/// Write-backs on one store, alone or in batches.
struct Kind(Store);

impl Batchable for Kind {
    type Item = WriteBack;
    type Answer = Answer;
    const KIND: &'static str = "write-back";
    const PIPES: usize = WriteBacks::PIPES;
    const MOST: usize = 32;

    async fn alone(&self, wb: &WriteBack) -> Answer {
        self.0.record_place_result(wb).await
    }

    async fn together(&self, wbs: &[Arc<WriteBack>]) -> StoreResult<Vec<Option<Answer>>> {
        let rows = self
            .0
            .record_place_results(wbs, LOCK_WAIT, DEADLINE)
            .await?;
        Ok(rows.into_iter().map(|row| Some(Ok(row))).collect())
    }
}

/// The queue of write-backs waiting for a batch.
pub struct WriteBacks(Batches<Kind>);

impl WriteBacks {
    /// Batches running at once (not stalled): two, measured against one
    /// (docs/performance.md).
    pub const PIPES: usize = 2;

    /// Batches committed on `store`'s pool, in tasks of `tasks`.
    pub fn new(store: Store, tasks: TaskTracker) -> Self {
        Self(Batches::new(Kind(store), tasks))
    }

    /// The same, with `after` as the stall time (tests that keep the
    /// pipes busy on purpose).
    #[must_use]
    pub fn stalled_after(self, after: Duration) -> Self {
        Self(self.0.stalled_after(after))
    }

    /// Writes `wb` back, in a batch with the write-backs ready at the same
    /// moment; the order after it, `None` when the lease was lost.
    pub async fn record(&self, wb: &Arc<WriteBack>) -> Answer {
        self.0.run(wb).await
    }

    /// Writes `wb` back alone (a retry: it does not join a batch again).
    pub async fn record_alone(&self, wb: &WriteBack) -> Answer {
        self.0.run_alone(wb).await
    }
}
