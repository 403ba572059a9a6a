//! Idempotent intake (contract §5, POST /v1/orders).
//!
//! One round trip decides everything: `insert ... on conflict do nothing`
//! commits the order with its poNumber, or returns the order that holds the
//! key from the same statement (a replay writes nothing), whose fingerprint
//! is then compared.
//! Placement then runs in a spawned task; the request merely waits up to
//! `Prefer: wait` for it. No transaction or lock outlives a statement.

use std::time::Duration;

use tokio::time::{Instant, sleep, timeout_at};
use tracing::{info, instrument};

use super::{OrderService, OrderView, view::ViewError};
use crate::{
    domain::{Caller, IdempotencyKey, NewOrder, OrderId, PoNumber},
    store::{
        StoreError,
        orders::{Gate, OrderRow},
    },
};

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
        Self::View(ViewError::Store(e))
    }
}

impl OrderService {
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
        let (row, vouchers) = match self.store.insert_order(caller, key, id, &po, new).await? {
            Gate::Created(row) => {
                info!(order.id = %id, po_number = %po, "order stored");
                let row = self.dispatch_and_wait(row, deadline).await?;
                return Ok(IntakeOutcome::Created(self.view(row).await?));
            }
            Gate::Existing(row, vouchers) => (row, Some(vouchers)),
            Gate::Neither => {
                let Some(row) = self.store.find_order_by_key(caller, key.as_str()).await? else {
                    self.callers.forget(&caller.key_hash);
                    return Err(IntakeError::Revoked);
                };
                (row, None)
            }
        };
        if row.to_order().fingerprint != new.fingerprint() {
            return Err(IntakeError::Mismatch);
        }
        if let (false, Some(vouchers)) = (is_moving(&row), &vouchers) {
            // Nothing to wait for: answered from the gate's one read.
            return Ok(IntakeOutcome::Replayed(self.view_with(row, vouchers)?));
        }
        let row = self.wait_while_in_flight(row, deadline).await?;
        Ok(IntakeOutcome::Replayed(self.view(row).await?))
    }

    async fn dispatch_and_wait(
        &self,
        row: OrderRow,
        deadline: Instant,
    ) -> Result<OrderRow, StoreError> {
        let order = row.to_order();
        let Some(handle) = self.dispatch_now(order.id, &order.po_number) else {
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
        mut row: OrderRow,
        deadline: Instant,
    ) -> Result<OrderRow, StoreError> {
        let mut pause = Duration::from_millis(50);
        while is_moving(&row) && Instant::now() + pause < deadline {
            sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(500));
            row = self.reload(row).await?;
        }
        Ok(row)
    }

    async fn reload(&self, row: OrderRow) -> Result<OrderRow, StoreError> {
        let id = row.to_order().id;
        Ok(self.store.load_order(id).await?.unwrap_or(row))
    }
}

/// Accepted or placing: an answer may come soon. `reconciling` waits on the
/// reconciler and is answered at once.
fn is_moving(row: &OrderRow) -> bool {
    use crate::domain::OrderStatus::{Accepted, Placing};
    matches!(row.to_order().status, Accepted | Placing)
}
