//! Dispatch: claim `accepted` orders under a lease and place them.
//!
//! The order and its poNumber are already committed when this runs. Each
//! attempt records its exchange row *before* sending (and only while the lease
//! is still ours), sends outside any transaction, then writes back under the
//! lease. Placements run in spawned tasks, so a client hanging up cannot
//! cancel a call in flight. The background loop picks up what no handler
//! dispatched (restart, crash, burst) and moves expired `placing` leases to
//! `reconciling`.

use std::{sync::Arc, time::Duration};

use tokio::{sync::Semaphore, task::JoinHandle};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::{Instrument as _, info, info_span, warn};
use uuid::Uuid;

use super::{
    AccessTokens, DispatchSettings, UpstreamLimits, audit, holds, outcome,
    worker::{Pace, Wakes, run_worker},
};
use crate::{
    crypto::Cipher,
    domain::{Order, OrderId, OrderStatus, PoNumber},
    store::{Store, StoreError, StoreResult, exchanges::Begin, outcomes::PlaceResult},
    xoxoday::{Operation, PlaceOrderRequest, PlaceOutcome, XoxodayApi},
};

/// The place path: claims `accepted` orders under a lease and sends them,
/// at most `max_in_flight` at a time; cheap to clone.
#[derive(Clone)]
pub struct Dispatcher {
    store: Store,
    xoxoday: Arc<dyn XoxodayApi>,
    tokens: Arc<dyn AccessTokens>,
    cipher: Arc<Cipher>,
    settings: Arc<DispatchSettings>,
    upstream: Arc<UpstreamLimits>,
    /// Bounds placeOrder calls in flight.
    in_flight: Arc<Semaphore>,
    /// Wakes this loop, and the reconciler (a placement made a check due).
    wakes: Wakes,
    /// Spawned placements and checks, awaited at shutdown.
    tasks: TaskTracker,
}

impl Dispatcher {
    /// The place path; `wakes` are shared with the roles that make work due.
    pub fn new(
        store: Store,
        xoxoday: Arc<dyn XoxodayApi>,
        tokens: Arc<dyn AccessTokens>,
        cipher: Arc<Cipher>,
        settings: DispatchSettings,
        upstream: UpstreamLimits,
        wakes: Wakes,
    ) -> Self {
        Self {
            in_flight: Arc::new(Semaphore::new(settings.max_in_flight)),
            store,
            xoxoday,
            tokens,
            cipher,
            settings: Arc::new(settings),
            upstream: Arc::new(upstream),
            wakes,
            tasks: TaskTracker::new(),
        }
    }

    /// Persistence, for the reconciler that shares this path.
    pub(crate) fn store(&self) -> &Store {
        &self.store
    }

    /// Upstream, for the reconciler's lookups.
    pub(crate) fn xoxoday(&self) -> &Arc<dyn XoxodayApi> {
        &self.xoxoday
    }

    /// Upstream credentials, for the reconciler's lookups.
    pub(crate) fn tokens(&self) -> &Arc<dyn AccessTokens> {
        &self.tokens
    }

    /// Encryption at rest, for the reconciler's audit rows.
    pub(crate) fn cipher(&self) -> &Cipher {
        &self.cipher
    }

    /// Dispatch tunables (lease, first check-ins).
    pub(crate) fn settings(&self) -> &DispatchSettings {
        &self.settings
    }

    /// Rate budgets, pauses, the placeOrder timeout.
    pub(crate) fn upstream(&self) -> &UpstreamLimits {
        &self.upstream
    }

    /// The loops' wake-ups.
    pub(crate) fn wakes(&self) -> &Wakes {
        &self.wakes
    }

    /// Spawned placements and checks.
    pub(crate) fn tasks(&self) -> &TaskTracker {
        &self.tasks
    }

    /// Stops taking placements and waits up to `limit` for those in flight;
    /// false when some were still running.
    pub async fn drain(&self, limit: Duration) -> bool {
        self.tasks.close();
        tokio::time::timeout(limit, self.tasks.wait()).await.is_ok()
    }

    /// Places one claimed order; returns the row after the write-back, or
    /// `None` when the lease was lost (another worker owns the order now).
    ///
    /// The token is read, then the exchange row is written and a slot of
    /// the shared placeOrder budget taken in one transaction, right before
    /// the send; without a slot the order goes back to `accepted`, due when
    /// a slot frees, and no attempt is counted. The lease is renewed while
    /// the call runs.
    pub async fn place_claimed(&self, order: Order) -> StoreResult<Option<Order>> {
        let Some(lease) = order.lease_token else {
            return Ok(None);
        };
        self.with_heartbeat(order.id, lease, self.place_leased(&order, lease))
            .await
    }

    async fn place_leased(&self, order: &Order, lease: Uuid) -> StoreResult<Option<Order>> {
        let call = self.xoxoday.prepare_place_order(&place_request(order));
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
                self.wakes.reconciler().notify_one();
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
            PlaceOutcome::InsufficientBalance(e) => {
                let pause = holds::pause_for(self.upstream.probe_interval);
                holds::hold_for_balance(&self.store, order, e, pause).await;
            }
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
            Some(row) if awaits_check(row) => self.wakes.reconciler().notify_one(),
            Some(_) if retry_now => self.wakes.dispatcher().notify_one(),
            Some(_) => {}
        }
        Ok(written)
    }

    /// Spawns the placement of one freshly stored order, if a slot is free.
    /// The task claims the order itself, so it races safely with the
    /// background dispatcher. `None`: no slot; the background loop will do it.
    pub fn dispatch_now(&self, id: OrderId, po: &PoNumber) -> Option<JoinHandle<Option<Order>>> {
        let Ok(permit) = self.in_flight.clone().try_acquire_owned() else {
            self.wakes.dispatcher().notify_one();
            return None;
        };
        let svc = self.clone();
        let span = info_span!("order.dispatch", order.id = %id, po_number = %po);
        Some(self.tasks.spawn(
            async move {
                let _permit = permit;
                let claimed = svc.store.claim_order(id, svc.settings.lease).await;
                match claimed {
                    Ok(Some(row)) => svc.place_claimed(row).await.unwrap_or_else(|e| {
                        warn!(error = %e, "placement write-back failed; lease expiry will reconcile");
                        None
                    }),
                    Ok(None) => None,
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
            .claim_due_orders(permits.len() as i64, self.settings.lease)
            .await?;
        let mut handles = Vec::with_capacity(rows.len());
        for (row, permit) in rows.into_iter().zip(permits) {
            let svc = self.clone();
            let span = info_span!("order.dispatch", order.id = %row.id, po_number = %row.po_number);
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
            wake: self.wakes.dispatcher(),
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

fn awaits_check(order: &Order) -> bool {
    matches!(
        order.status,
        OrderStatus::PendingDelivery | OrderStatus::Reconciling
    )
}

fn place_request(o: &Order) -> PlaceOrderRequest {
    PlaceOrderRequest {
        po_number: o.po_number.clone(),
        product_id: o.product_id,
        quantity: u32::try_from(o.quantity).unwrap_or(1),
        denomination: o.denomination.value(),
        email: o.email.clone(),
        contact: o.contact.clone(),
        tag: o.tag.clone(),
        notify_receiver_email: o.notify_receiver_email,
        notify_admin_email: o.notify_admin_email,
        user_meta: o.user_meta.clone(),
        perform_operator_validation: o.perform_operator_validation,
    }
}
