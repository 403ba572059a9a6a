//! Idempotent intake (contract §5, POST /v1/orders).
//!
//! One round trip decides everything: `insert ... on conflict do nothing`
//! commits the order with its poNumber (or finds the key taken); only on
//! conflict is the existing order read back and its fingerprint compared.
//! Placement then runs in a spawned task; the request merely waits up to
//! `Prefer: wait` for it. No transaction or lock outlives a statement.

use std::time::Duration;

use tokio::time::{Instant, sleep, timeout_at};
use tracing::{info, instrument};

use super::{Dispatcher, OrderQueries, OrderView, view::ViewError};
use crate::{
    domain::{Caller, IdempotencyKey, NewOrder, Order, OrderId, PoNumber},
    store::{Store, StoreError},
};

/// The POST path: a validated request → one idempotent insert → placement
/// now when a slot is free. Cheap to clone.
#[derive(Clone)]
pub struct Intake {
    store: Store,
    /// Starts the placement of a fresh order.
    dispatcher: Dispatcher,
    /// Builds the answer's view (and forgets a revoked caller).
    queries: OrderQueries,
}

/// What intake did.
#[derive(Debug)]
pub enum IntakeOutcome {
    /// This request stored the order.
    Created(OrderView),
    /// The key was used before with the same request.
    Replayed(OrderView),
}

/// Why intake refused.
#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    /// The key was used before with a different request.
    #[error("idempotency key reused with a different request")]
    Mismatch,
    /// The caller's key was revoked since it was cached.
    #[error("API key revoked")]
    Revoked,
    /// Reading the result failed.
    #[error(transparent)]
    View(#[from] ViewError),
}

impl From<StoreError> for IntakeError {
    fn from(e: StoreError) -> Self {
        Self::View(e.into())
    }
}

impl Intake {
    /// Intake over `store`, placing through `dispatcher`, answering through
    /// `queries`.
    pub fn new(store: Store, dispatcher: Dispatcher, queries: OrderQueries) -> Self {
        Self {
            store,
            dispatcher,
            queries,
        }
    }

    /// Stores the order once per (caller, key) and waits up to `wait` for
    /// its outcome.
    #[instrument(skip_all, fields(caller = %caller.name, idempotency_key = key.as_str()))]
    pub async fn create_order(
        &self,
        caller: &Caller,
        key: &IdempotencyKey,
        new: &NewOrder,
        wait: Duration,
    ) -> Result<IntakeOutcome, IntakeError> {
        let deadline = Instant::now() + wait;
        let (id, po) = (OrderId::generate(), PoNumber::generate());
        if let Some(row) = self.store.insert_order(caller, key, id, &po, new).await? {
            info!(order.id = %id, po_number = %po, "order stored");
            let row = self.dispatch_and_wait(row, deadline).await?;
            return Ok(IntakeOutcome::Created(self.queries.view(row).await?));
        }
        let Some(row) = self.store.find_order_by_key(caller, key).await? else {
            self.queries.forget_caller(caller);
            return Err(IntakeError::Revoked);
        };
        if row.fingerprint != new.fingerprint() {
            return Err(IntakeError::Mismatch);
        }
        let row = self.wait_while_in_flight(row, deadline).await?;
        Ok(IntakeOutcome::Replayed(self.queries.view(row).await?))
    }

    async fn dispatch_and_wait(&self, row: Order, deadline: Instant) -> Result<Order, StoreError> {
        let Some(handle) = self.dispatcher.dispatch_now(row.id, &row.po_number) else {
            return self.wait_while_in_flight(row, deadline).await;
        };
        if deadline <= Instant::now() {
            return Ok(row);
        }
        match timeout_at(deadline, handle).await {
            Ok(Ok(Some(done))) if !is_moving(&done) => Ok(done),
            // Claimed elsewhere, deferred for a retry (token refreshed), or
            // the task failed: follow the row instead.
            Ok(_) => self.wait_while_in_flight(row, deadline).await,
            Err(_) => self.reload(row).await,
        }
    }

    /// Polls the order while it is accepted/placing, until `deadline`.
    async fn wait_while_in_flight(
        &self,
        mut row: Order,
        deadline: Instant,
    ) -> Result<Order, StoreError> {
        let mut pause = Duration::from_millis(50);
        while is_moving(&row) && Instant::now() + pause < deadline {
            sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(500));
            row = self.reload(row).await?;
        }
        Ok(row)
    }

    async fn reload(&self, row: Order) -> Result<Order, StoreError> {
        Ok(self.store.load_order(row.id).await?.unwrap_or(row))
    }
}

/// Accepted or placing: an answer may come soon. `reconciling` waits on the
/// reconciler and is answered at once.
fn is_moving(row: &Order) -> bool {
    use crate::domain::OrderStatus::{Accepted, Placing};
    matches!(row.status, Accepted | Placing)
}
