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

use secrecy::SecretString;
use tokio::{
    sync::{OwnedSemaphorePermit, Semaphore},
    task::JoinHandle,
    time::Instant,
};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::{Instrument as _, info, info_span, warn};
use uuid::Uuid;

use super::{
    AccessTokens, DispatchSettings, UpstreamLimits, audit, holds,
    limits::{SlotTooOld, SpentBudget},
    outcome,
    worker::{Pace, Wakes, run_worker},
    write_backs::WriteBacks,
};
use crate::{
    crypto::Cipher,
    domain::{NewOrder, Order, OrderId, OrderStatus, PoNumber},
    settings::fixed,
    store::{
        Store, StoreError, StoreResult,
        exchanges::Begin,
        orders::{Fresh, FreshSend},
        outcomes::{PlaceResult, WriteBack},
        rate_limit::{BLOCK_LOCK_WAIT, SlotBlocks, Stocked},
        vouchers::VoucherRow,
    },
    xoxoday::{Operation, PlaceOrderRequest, PlaceOutcome, PreparedCall, XoxodayApi},
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
    /// placeOrder's shared budget, known spent until (a hint, issue 11).
    place_spent: Arc<SpentBudget>,
    /// Connections of this process that may wait for the placeOrder slot
    /// lock at once, in a background attempt or in an intake transaction
    /// waiting for a block ([`crate::settings::fixed::SLOT_LOCK_WAITERS`]).
    slot_waiters: Arc<Semaphore>,
    /// New orders' placeOrder slots, taken in blocks.
    fresh_slots: Arc<SlotBlocks>,
    /// placeOrder write-backs, committed in batches.
    write_backs: Arc<WriteBacks>,
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
        let tasks = TaskTracker::new();
        Self {
            in_flight: Arc::new(Semaphore::new(settings.max_in_flight)),
            xoxoday,
            tokens,
            cipher,
            settings: Arc::new(settings),
            upstream: Arc::new(upstream),
            wakes,
            tasks: tasks.clone(),
            place_spent: Arc::default(),
            slot_waiters: Arc::new(Semaphore::new(fixed::SLOT_LOCK_WAITERS)),
            fresh_slots: Arc::new(SlotBlocks::new(&store)),
            write_backs: Arc::new(WriteBacks::new(store.clone(), tasks.clone())),
            store,
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
    pub async fn place_claimed(&self, order: Order) -> StoreResult<Option<Written>> {
        let Some(lease) = order.lease_token else {
            return Ok(None);
        };
        self.with_heartbeat(order.id, lease, self.place_leased(&order, lease))
            .await
    }

    async fn place_leased(&self, order: &Order, lease: Uuid) -> StoreResult<Option<Written>> {
        let call = self.xoxoday.prepare_place_order(&place_request(order));
        let exchange_id = Uuid::now_v7();
        let start = audit::start_of(exchange_id, &call);
        let token = self.tokens.access_token().await;
        let slot = self.slot_ask(Operation::PlaceOrder);
        // Wait here, not on a pooled connection, while the lock is busy.
        let waiting = self.slot_waiters.acquire().await;
        let begun = self
            .store
            .begin_place_attempt(order.id, lease, self.settings.lease, start, slot)
            .await?;
        drop(waiting);
        let (attempt, stamped_after) = match begun {
            Begin::Send {
                attempt,
                stamped_after,
            } => (attempt, stamped_after),
            Begin::NoSlot(wait) => {
                self.no_slot(wait);
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
        let begun = Begun {
            lease,
            call,
            exchange_id,
            token,
            attempt,
            stamped_after,
        };
        self.send_begun(order, begun).await
    }

    /// Sends an attempt whose exchange row, slot and lease are committed,
    /// and writes its result back under the lease. The caller renews the
    /// lease while this runs. An attempt whose slot is older than the send
    /// margin is not sent ([`Self::not_sent`]).
    async fn send_begun(&self, order: &Order, begun: Begun) -> StoreResult<Option<Written>> {
        let Begun {
            lease,
            call,
            exchange_id,
            token,
            attempt,
            stamped_after,
        } = begun;
        if let Some(old) = self.slot_too_old(stamped_after) {
            return self.not_sent(order.id, lease, exchange_id, old).await;
        }
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
        let wb = Arc::new(WriteBack {
            order: order.id,
            lease,
            exchange_id,
            end,
            result: next,
        });
        let written = self.write_back(&wb).await?;
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
        // The vouchers just stored answer the caller without reading them back.
        let vouchers = match &wb.result {
            PlaceResult::Placed(facts) => facts.vouchers.clone(),
            _ => Vec::new(),
        };
        Ok(written.map(|order| Written { order, vouchers }))
    }

    /// The attempt's slot is older than the send margin (a stall between the
    /// stamp and the send: a slow commit, a paused process): sent now, the
    /// call might reach Xoxoday in a minute that is already full. So it is
    /// not sent: its exchange row is completed as `not_sent`, and the order
    /// goes back to `accepted`, due at once, the attempt not counted (the
    /// write-back of a deferred answer). The slot is wasted, never overspent.
    async fn not_sent(
        &self,
        id: OrderId,
        lease: Uuid,
        exchange_id: Uuid,
        old: SlotTooOld,
    ) -> StoreResult<Option<Written>> {
        let end = audit::not_sent(Operation::PlaceOrder, &old);
        // Again after about as long as the stall lasted (at most 5 s): a
        // stall that goes on does not waste a slot per round.
        let next = PlaceResult::Deferred {
            reason: "placeOrder was not sent (its rate slot grew too old); no order was created"
                .into(),
            retry_in: old.retry_in(),
        };
        let wb = Arc::new(WriteBack {
            order: id,
            lease,
            exchange_id,
            end,
            result: next,
        });
        let written = self.write_back(&wb).await?;
        self.wakes.dispatcher().notify_one();
        Ok(written.map(|order| Written {
            order,
            vouchers: Vec::new(),
        }))
    }

    /// A placeOrder found no slot: counted, and this replica claims nothing
    /// more until one may be free (at most a poll interval).
    fn no_slot(&self, wait: Duration) {
        Self::note_no_slot(Operation::PlaceOrder, wait);
        self.place_spent
            .spent_for(wait.min(self.settings.poll_interval));
    }

    /// What a new order's insert may begin (issue 11: one transaction
    /// before the call): a placement permit, the prepared first call and
    /// its lease token, when the budget is not known spent and a permit is
    /// free. The transaction that stores the order takes the slot, in a
    /// block with the other new orders of the moment ([`SlotBlocks`]).
    pub(crate) async fn fresh_ticket(&self, po: &PoNumber, new: &NewOrder) -> Ticket {
        if self.place_spent.is_spent() {
            return Ticket::Spent;
        }
        let Ok(permit) = self.in_flight.clone().try_acquire_owned() else {
            return Ticket::Busy;
        };
        // Before a stocked slot is handed out: its send margin runs from then.
        let token = self.tokens.access_token().await;
        let (block_waiter, stocked) = match self
            .fresh_slots
            .take_stocked(self.slot_ask(Operation::PlaceOrder))
        {
            // A slot taken ahead: no block to wait for, so no lock waiter.
            Some(stocked) => (None, Some(stocked)),
            None => {
                // Wait for a lock-waiter permit in memory (holding no
                // connection), as long as a block waits for the slot lock;
                // when none frees by then the lock is busy: leave the order
                // to the loop. With one, the intake transaction may wait for
                // a block holding its connection.
                let waiter = self.slot_waiters.clone().acquire_owned();
                let Ok(Ok(waiter)) = tokio::time::timeout(BLOCK_LOCK_WAIT, waiter).await else {
                    return Ticket::Busy;
                };
                // The wait may have been for the very block that found the
                // budget spent: a burst queued behind it must not ask again
                // one by one.
                if self.place_spent.is_spent() {
                    return Ticket::Spent;
                }
                (Some(waiter), None)
            }
        };
        let call = self.xoxoday.prepare_place_order(&fresh_request(po, new));
        Ticket::Ready(Box::new(FreshTicket {
            permit,
            block_waiter,
            stocked,
            lease: Uuid::new_v4(),
            exchange_id: Uuid::now_v7(),
            token,
            call,
            ready_at: Instant::now(),
        }))
    }

    /// Forgets the slots taken ahead (a pause begins: none is sent into it).
    pub(crate) fn drop_stocked_slots(&self) {
        self.fresh_slots.drop_stock();
    }

    /// The key of a new order was taken (a replay): a slot taken ahead for
    /// it goes back to the stock.
    pub(crate) fn give_back(&self, ticket: Ticket) {
        if let Ticket::Ready(t) = ticket
            && let Some(slot) = t.stocked
        {
            self.fresh_slots.give_back(slot);
        }
    }

    /// Sends a new order's first placeOrder when its insert began it, and
    /// returns the row after the write-back; otherwise hands the order to
    /// the background loop (woken when it is only a matter of permits).
    /// Runs in the task that stored the order, not in a request's future.
    pub(crate) async fn start_fresh(
        &self,
        order: Order,
        fresh: Fresh,
        mut ticket: Ticket,
    ) -> Option<Written> {
        ticket.insert_done();
        match (fresh, ticket) {
            (
                Fresh::Send {
                    attempt,
                    stamped_after,
                },
                Ticket::Ready(t),
            ) => {
                let _permit = t.permit;
                let begun = Begun {
                    lease: t.lease,
                    call: t.call,
                    exchange_id: t.exchange_id,
                    token: t.token,
                    attempt,
                    stamped_after,
                };
                let sent = self.send_begun(&order, begun);
                self.with_heartbeat(order.id, t.lease, sent)
                    .await
                    .unwrap_or_else(|e| {
                        warn!(error = %e, "placement write-back failed; lease expiry will reconcile");
                        None
                    })
            }
            (Fresh::NoSlot(wait), _) => {
                self.no_slot(wait);
                None
            }
            (_, Ticket::Spent) => None,
            // No permit, or the slot lock was busy: the background loop
            // sends it (the ticket, and its permit, are dropped first).
            (_, ticket) => {
                drop(ticket);
                self.wakes.dispatcher().notify_one();
                None
            }
        }
    }

    /// The intake transaction failed: when its commit went through all the
    /// same (a reply lost after COMMIT), the order is `placing` under this
    /// ticket's lease with attempt 1 begun, and nobody else will send it
    /// before the lease expires: send it now. Otherwise nothing was stored
    /// or begun.
    pub(crate) async fn recover_fresh(&self, id: OrderId, ticket: Ticket) -> Option<Written> {
        let Ticket::Ready(t) = &ticket else {
            return None;
        };
        let row = self.store.load_order(id).await.ok().flatten()?;
        if row.status != OrderStatus::Placing || row.lease_token != Some(t.lease) {
            return None;
        }
        warn!("the intake commit went through although its reply was lost; sending now");
        let fresh = Fresh::Send {
            attempt: row.attempts,
            // Both come no later than any slot the insert may have been granted.
            stamped_after: t.stocked.as_ref().map_or(t.ready_at, Stocked::stamp_floor),
        };
        self.start_fresh(row, fresh, ticket).await
    }

    /// One background pass: expire dead leases, claim due orders, place them
    /// concurrently. Returns the handles so tests can wait for them. The
    /// expiry and the claim are one transaction; while the shared budget is
    /// known spent nothing is claimed.
    pub async fn dispatch_due(&self) -> StoreResult<Vec<JoinHandle<()>>> {
        // Slots first, then claims: a claimed order never waits for a slot
        // while its short lease runs out.
        let mut permits = Vec::new();
        while (permits.len() as i64) < self.settings.batch && !self.place_spent.is_spent() {
            match self.in_flight.clone().try_acquire_owned() {
                Ok(p) => permits.push(p),
                Err(_) => break,
            }
        }
        let (expired, rows) = self
            .store
            .dispatch_pass(
                self.upstream.place_timeout,
                permits.len() as i64,
                self.settings.lease,
                self.slot_ask(Operation::PlaceOrder),
            )
            .await?;
        if expired > 0 {
            warn!(
                expired,
                "placeOrder leases expired; orders moved to reconciling"
            );
        }
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

    /// Writes `wb` back in a batch ([`WriteBacks`]), then, while the
    /// database is unavailable, alone ([`Self::with_retries`]): a retry
    /// never joins a batch again, so a write-back that keeps failing costs
    /// no other its batch.
    async fn write_back(&self, wb: &Arc<WriteBack>) -> StoreResult<Option<Order>> {
        let mut batched = false;
        self.with_retries(|| {
            let first = !std::mem::replace(&mut batched, true);
            async move {
                if first {
                    self.write_backs.record(wb).await
                } else {
                    self.write_backs.record_alone(wb).await
                }
            }
        })
        .await
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

/// An order after its placeOrder write-back, with the vouchers that
/// write-back stored (sealed), so an answer needs no second read.
#[derive(Debug)]
pub struct Written {
    /// The row as written back.
    pub order: Order,
    /// Its vouchers, when this write-back stored them.
    pub vouchers: Vec<VoucherRow>,
}

/// What a new order's insert may begin ([`Dispatcher::fresh_ticket`]).
pub(crate) enum Ticket {
    /// A permit held and the first call prepared.
    Ready(Box<FreshTicket>),
    /// The shared budget is known spent: nothing is asked.
    Spent,
    /// Every placement permit is taken.
    Busy,
}

impl Ticket {
    /// The insert is over: it no longer waits for a block.
    fn insert_done(&mut self) {
        if let Self::Ready(t) = self {
            t.block_waiter = None;
        }
    }

    /// The first send the insert is to begin, if any.
    pub(crate) fn fresh_send<'a>(&'a self, d: &'a Dispatcher) -> Option<FreshSend<'a>> {
        let Self::Ready(t) = self else {
            return None;
        };
        Some(FreshSend {
            lease_token: t.lease,
            lease: d.settings.lease,
            start: audit::start_of(t.exchange_id, &t.call),
            slot: d.slot_ask(Operation::PlaceOrder),
            slots: &d.fresh_slots,
            stocked: t.stocked.as_ref().map(Stocked::stamp_floor),
        })
    }
}

/// A permit and a prepared first placeOrder for an order not stored yet.
pub(crate) struct FreshTicket {
    permit: OwnedSemaphorePermit,
    /// Held while the insert may wait for a block of slots.
    block_waiter: Option<OwnedSemaphorePermit>,
    /// A slot already taken from the stock (then no block, no waiter).
    stocked: Option<Stocked>,
    lease: Uuid,
    exchange_id: Uuid,
    token: SecretString,
    call: PreparedCall,
    /// Made ready, before the insert: earlier than any block it is granted.
    ready_at: Instant,
}

/// An attempt ready to send: exchange row, slot and lease committed.
struct Begun {
    lease: Uuid,
    call: PreparedCall,
    exchange_id: Uuid,
    token: SecretString,
    attempt: i32,
    /// No later than the slot's stamp.
    stamped_after: Instant,
}

fn awaits_check(order: &Order) -> bool {
    matches!(
        order.status,
        OrderStatus::PendingDelivery | OrderStatus::Reconciling
    )
}

/// The request of a new order's first placeOrder, from the request as
/// validated: the same fields [`place_request`] reads back from the stored
/// row (a test compares the two).
fn fresh_request(po: &PoNumber, new: &NewOrder) -> PlaceOrderRequest {
    let NewOrder {
        product_id,
        denomination,
        quantity,
        email,
        contact,
        tag,
        notify_receiver_email,
        notify_admin_email,
        user_meta,
        perform_operator_validation,
    } = new;
    PlaceOrderRequest {
        po_number: po.clone(),
        product_id: *product_id,
        quantity: u32::try_from(*quantity).unwrap_or(1),
        denomination: denomination.value(),
        email: email.clone(),
        contact: contact.clone(),
        tag: tag.clone(),
        notify_receiver_email: *notify_receiver_email,
        notify_admin_email: *notify_admin_email,
        user_meta: user_meta.clone().map(serde_json::Value::Object),
        perform_operator_validation: *perform_operator_validation,
    }
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
