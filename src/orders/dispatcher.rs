//! Dispatch: claim `accepted` orders under a lease and place them.
//!
//! The order and its poNumber are already committed when this runs. Each
//! attempt records its exchange row *before* sending (and only while the lease
//! is still ours), sends outside any transaction, then writes back under the
//! lease. Placements run in spawned tasks, so a client hanging up cannot
//! cancel a call in flight. The background loop picks up what no handler
//! dispatched (restart, crash, burst) and moves expired `placing` leases to
//! `reconciling`.

use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument as _, info, info_span, warn};
use uuid::Uuid;

use super::{
    OrderService, audit, outcome,
    worker::{Pace, run_worker},
};
use crate::{
    domain::{OrderId, OrderStatus, PoNumber},
    store::{
        StoreError, StoreResult, exchanges::Begin, orders::OrderRow, outcomes::PlaceResult,
        rate_limit::Slot,
    },
    xoxoday::{Operation, PlaceOrderRequest, PlaceOutcome},
};

impl OrderService {
    /// Places one claimed order; returns the row after the write-back, or
    /// `None` when the lease was lost (another worker owns the order now).
    ///
    /// The token is read, then the exchange row is written and a slot of
    /// the shared placeOrder budget taken in one transaction, right before
    /// the send; without a slot the order goes back to `accepted`, due when
    /// a slot frees, and no attempt is counted. The lease is renewed while
    /// the call runs.
    pub async fn place_claimed(&self, row: OrderRow) -> StoreResult<Option<OrderRow>> {
        let order = row.to_order();
        let Some(lease) = row.lease_token else {
            return Ok(None);
        };
        self.with_heartbeat(order.id, lease, self.place_leased(row, lease))
            .await
    }

    async fn place_leased(&self, row: OrderRow, lease: Uuid) -> StoreResult<Option<OrderRow>> {
        let order = row.to_order();
        let call = self.xoxoday.prepare_place_order(&place_request(&row));
        let exchange_id = Uuid::now_v7();
        let start = audit::start_of(exchange_id, &call);
        let token = self.tokens.access_token().await;
        let slot = self.slot_ask(Operation::PlaceOrder);
        let begun = self
            .store
            .begin_place_attempt(order.id, lease, self.settings.lease, start, slot)
            .await?;
        let attempt = match begun {
            Begin::Send(attempt) => attempt,
            Begin::NoSlot(wait) => {
                Self::note_no_slot(Operation::PlaceOrder, wait);
                self.place_spent
                    .spent_for(wait.min(self.settings.poll_interval));
                let reason = "waiting for the shared placeOrder rate budget";
                self.store
                    .release_to_accepted(order.id, lease, wait, reason)
                    .await?;
                return Ok(None);
            }
            Begin::LeaseLost => {
                warn!("lease lost before sending placeOrder; not sending");
                return Ok(None);
            }
            Begin::Hooked => {
                warn!("a stored delivery webhook proves the order exists; not placing again");
                self.recon_wake.notify_one();
                return Ok(None);
            }
        };
        // The caller (`place_claimed`) renews the lease while this runs.
        let result = self.xoxoday.place_order(call, &token).await;
        let label = outcome::label(&result.outcome);
        info!(
            attempt,
            outcome = label,
            duration_ms = result.exchange.duration.as_millis() as u64,
            "placeOrder answered"
        );
        match &result.outcome {
            PlaceOutcome::RateLimited { penalty } => {
                self.pause_throttled(Operation::PlaceOrder, *penalty).await;
            }
            PlaceOutcome::Systemic(e) => self.pause_systemic(e).await,
            PlaceOutcome::InsufficientBalance(e) => self.hold_for_balance(&row, e).await,
            _ => {}
        }
        let end = audit::end_of(&self.cipher, exchange_id, &result.exchange, label);
        let status = result.exchange.response.as_ref().map(|r| r.status);
        let mut next = outcome::place_result(
            &self.settings,
            &self.cipher,
            order.id,
            &result.outcome,
            status,
        );
        // invalid_token created no order: retry at once after a good refresh.
        let retry_now = matches!(result.outcome, PlaceOutcome::Unauthorized(_))
            && self.tokens.token_rejected(&token).await;
        if let (true, PlaceResult::Deferred { retry_in, .. }) = (retry_now, &mut next) {
            *retry_in = Duration::ZERO;
        }
        let written = self
            .with_retries(|| {
                self.store
                    .record_place_result(order.id, lease, exchange_id, &end, &next)
            })
            .await?;
        match &written {
            None => warn!(
                outcome = label,
                "lease lost during placeOrder; result kept only in the audit"
            ),
            // A webhook stored while placing may have made it due now.
            Some(row) if awaits_check(row) => self.recon_wake.notify_one(),
            Some(_) if retry_now => self.wake.notify_one(),
            Some(_) => {}
        }
        Ok(written)
    }

    /// Spawns the placement of one freshly stored order, if a slot is free.
    /// The task claims the order itself, so it races safely with the
    /// background dispatcher. `None`: no slot, or the shared budget is known
    /// spent (nothing is claimed then); the background loop will do it.
    pub fn dispatch_now(&self, id: OrderId, po: &PoNumber) -> Option<JoinHandle<Option<OrderRow>>> {
        if self.place_spent.is_spent() {
            return None;
        }
        let Ok(permit) = self.in_flight.clone().try_acquire_owned() else {
            self.wake.notify_one();
            return None;
        };
        let svc = self.clone();
        let span = info_span!("order.dispatch", order.id = %id, po_number = %po);
        Some(self.tasks.spawn(
            async move {
                let _permit = permit;
                let ask = svc.slot_ask(Operation::PlaceOrder);
                let claimed = svc
                    .store
                    .claim_order_within_budget(id, svc.settings.lease, ask)
                    .await;
                match claimed {
                    Ok(Some(row)) => svc.place_claimed(row).await.unwrap_or_else(|e| {
                        warn!(error = %e, "placement write-back failed; lease expiry will reconcile");
                        None
                    }),
                    // Claimed elsewhere, or no slot free: then later orders
                    // skip the claim until one frees (at most a poll interval).
                    Ok(None) => {
                        if let Ok(Slot::Wait(wait)) = svc.store.slots_free(ask).await {
                            svc.place_spent
                                .spent_for(wait.min(svc.settings.poll_interval));
                        }
                        None
                    }
                    Err(e) => {
                        warn!(error = %e, "claim failed; the background dispatcher will retry");
                        None
                    }
                }
            }
            .instrument(span),
        ))
    }

    /// One background pass: expire dead leases, claim due orders, place them
    /// concurrently. Returns the handles so tests can wait for them.
    pub async fn dispatch_due(&self) -> StoreResult<Vec<JoinHandle<()>>> {
        let expired = self.expire_placing_leases().await?;
        if expired > 0 {
            warn!(
                expired,
                "placeOrder leases expired; orders moved to reconciling"
            );
        }
        // Slots first, then claims: a claimed order never waits for a slot
        // while its short lease runs out.
        let mut permits = Vec::new();
        while (permits.len() as i64) < self.settings.batch {
            match self.in_flight.clone().try_acquire_owned() {
                Ok(p) => permits.push(p),
                Err(_) => break,
            }
        }
        if permits.is_empty() {
            return Ok(Vec::new());
        }
        let rows = self
            .store
            .claim_due_orders(
                permits.len() as i64,
                self.settings.lease,
                self.slot_ask(Operation::PlaceOrder),
            )
            .await?;
        let mut handles = Vec::with_capacity(rows.len());
        for (row, permit) in rows.into_iter().zip(permits) {
            let svc = self.clone();
            let order = row.to_order();
            let span =
                info_span!("order.dispatch", order.id = %order.id, po_number = %order.po_number);
            handles.push(self.tasks.spawn(
                async move {
                    let _permit = permit;
                    if let Err(e) = svc.place_claimed(row).await {
                        warn!(error = %e, "placement write-back failed; lease expiry will reconcile");
                    }
                }
                .instrument(span),
            ));
        }
        Ok(handles)
    }

    /// One pass, waiting for its placements (tests; `run_once` of habit 10).
    pub async fn dispatch_once(&self) -> StoreResult<usize> {
        let handles = self.dispatch_due().await?;
        let n = handles.len();
        futures::future::join_all(handles).await;
        Ok(n)
    }

    /// The background loop, until `shutdown`.
    pub async fn run_dispatcher(self, shutdown: CancellationToken) {
        let pace = Pace {
            name: "dispatcher",
            batch: self.settings.batch,
            poll_interval: self.settings.poll_interval,
            wake: &self.wake,
        };
        run_worker(pace, shutdown, || self.dispatch_due()).await;
    }

    /// Retries a write-back while the database is unavailable (≈ 15 s), so a
    /// short outage does not leave an answered call unrecorded.
    pub(crate) async fn with_retries<T, F, Fut>(&self, mut f: F) -> StoreResult<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = StoreResult<T>>,
    {
        let mut delay = Duration::from_millis(100);
        for _ in 0..8 {
            match f().await {
                Err(StoreError::Unavailable(e)) => {
                    warn!(error = %e, "database unavailable during write-back; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(4));
                }
                other => return other,
            }
        }
        f().await
    }
}

fn awaits_check(row: &OrderRow) -> bool {
    matches!(
        row.to_order().status,
        OrderStatus::PendingDelivery | OrderStatus::Reconciling
    )
}

fn place_request(row: &OrderRow) -> PlaceOrderRequest {
    let o = row.to_order();
    PlaceOrderRequest {
        po_number: o.po_number.clone(),
        product_id: o.product_id,
        quantity: u32::try_from(o.quantity).unwrap_or(1),
        denomination: o.denomination.value(),
        email: o.email,
        contact: o.contact,
        tag: o.tag,
        notify_receiver_email: row.notify_receiver_email,
        notify_admin_email: row.notify_admin_email,
        user_meta: row.user_meta.clone(),
        perform_operator_validation: row.perform_operator_validation,
    }
}
