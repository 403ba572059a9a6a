//! Idempotent intake (contract §5, POST /v1/orders).
//!
//! One transaction decides everything (issue 11): `insert ... on conflict
//! do nothing` commits the order with its poNumber, or returns the order
//! that holds the key from the same statement (a replay writes nothing),
//! whose fingerprint is then compared. When a placement permit is free and
//! the budget not known spent, the same transaction gets a rate slot (from
//! a block taken for every new order of the moment), claims the new order
//! and writes its exchange row (`begin_granted_place`),
//! so the call goes out with nothing else to commit first. That work runs
//! in a task of its own, which also sends the call and writes its result
//! back; the request merely waits up to `Prefer: wait` for it.
//!
//! A new order with nothing to begin (the budget known spent, every
//! permit taken) is stored with the other such orders of the moment, in
//! one statement ([`NewOrders`], [`super::batches`]); one the statement
//! did not store asks the gate alone.
//!
//! A key this process has seen stored is most likely a replay
//! ([`SeenKeys`]): it is read first, one plain select (order and vouchers)
//! shared with the other replays of the moment ([`ReplayReads`]), and only
//! when that finds nothing does the request take the insert path.

use std::{sync::Arc, time::Duration};

use tokio::{
    sync::oneshot,
    task::JoinHandle,
    time::{Instant, sleep, timeout_at},
};
use tracing::{Instrument as _, info, info_span, instrument};

use super::{
    Dispatcher, OrderQueries, OrderView,
    batches::{Batchable, Batches, LOCK_WAIT},
    dispatcher::Written,
    seen_keys::SeenKeys,
    view::ViewError,
};
use crate::{
    domain::{Caller, IdempotencyKey, NewOrder, Order, OrderId, PoNumber},
    store::{
        Store, StoreError, StoreResult,
        orders::{Fresh, Gate, NewGate, Replay, ReplayAsk},
        vouchers::VoucherRow,
    },
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
    /// Keys seen stored: the replay hint.
    seen: Arc<SeenKeys>,
    /// New orders without a first send, stored in batches.
    inserts: Arc<Batches<NewOrders>>,
    /// Replay reads, in batches.
    replays: Arc<Batches<ReplayReads>>,
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
        let inserts = Batches::new(NewOrders(store.clone()), dispatcher.tasks().clone());
        let replays = Batches::new(ReplayReads(store.clone()), dispatcher.tasks().clone());
        Self {
            inserts: Arc::new(inserts),
            replays: Arc::new(replays),
            store,
            dispatcher,
            queries,
            seen: Arc::default(),
        }
    }

    /// Stores the order once per (caller, key) and waits up to `wait` for
    /// its outcome.
    ///
    /// The insert, and the first placeOrder it may begin, run in a task of
    /// their own: a client that hangs up cannot leave an order `placing`
    /// with a call that was never sent.
    #[instrument(skip_all, fields(caller = %caller.name, idempotency_key = key.as_str()))]
    pub async fn create_order(
        &self,
        caller: &Caller,
        key: &IdempotencyKey,
        new: &NewOrder,
        wait: Duration,
    ) -> Result<IntakeOutcome, IntakeError> {
        let deadline = Instant::now() + wait;
        if self.seen.recall(caller.id, key)
            && let Some((row, vouchers)) = self
                .replays
                .run(&Arc::new(ReplayAsk {
                    key_hash: caller.key_hash,
                    key: key.clone(),
                }))
                .await?
        {
            // A read only, so it may run in the request's future.
            return self.replay(row, Some(vouchers), new, deadline).await;
        }
        let (gate, placed) = self.store_and_send(caller, key, new);
        let Ok(gate) = gate.await else {
            // The task ended without an answer: it panicked (pass that on)
            // or shutdown cancelled it.
            return match placed.await {
                Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                _ => Err(StoreError::shutting_down().into()),
            };
        };
        let gate = gate?;
        if matches!(gate, Gate::Created(..) | Gate::Existing(..)) {
            self.seen.insert(caller.id, key);
        }
        let (row, vouchers) = match gate {
            Gate::Created(row, fresh) => {
                info!(order.id = %row.id, po_number = %row.po_number, "order stored");
                let sent = matches!(fresh, Fresh::Send { .. });
                let done = self.wait_for_placement(row, sent, placed, deadline).await?;
                return Ok(IntakeOutcome::Created(match done {
                    Ok(w) => self.queries.view_with(w.order, &w.vouchers)?,
                    Err(row) => self.queries.view(row).await?,
                }));
            }
            Gate::Existing(row, vouchers) => (row, Some(vouchers)),
            Gate::Neither => {
                let Some(row) = self.store.find_order_by_key(caller, key).await? else {
                    self.queries.forget_caller(caller);
                    return Err(IntakeError::Revoked);
                };
                (row, None)
            }
        };
        self.replay(row, vouchers, new, deadline).await
    }

    /// The key holds `row` (and `vouchers`, when read with it): the same
    /// request is answered with the order, once it is not moving or at
    /// `deadline`; a different one is refused.
    async fn replay(
        &self,
        row: Order,
        vouchers: Option<Vec<VoucherRow>>,
        new: &NewOrder,
        deadline: Instant,
    ) -> Result<IntakeOutcome, IntakeError> {
        if row.fingerprint != new.fingerprint() {
            return Err(IntakeError::Mismatch);
        }
        if let (false, Some(vouchers)) = (is_moving(&row), &vouchers) {
            // Nothing to wait for: answered from the one read.
            return Ok(IntakeOutcome::Replayed(
                self.queries.view_with(row, vouchers)?,
            ));
        }
        let row = self.wait_while_in_flight(row, deadline).await?;
        Ok(IntakeOutcome::Replayed(self.queries.view(row).await?))
    }

    /// Spawns the task that stores the order (one transaction, which begins
    /// its first placeOrder when a permit and a slot are free) and then
    /// sends that call. The gate's answer comes first; the task's result is
    /// the order after its write-back, when this task sent it.
    fn store_and_send(
        &self,
        caller: &Caller,
        key: &IdempotencyKey,
        new: &NewOrder,
    ) -> (
        oneshot::Receiver<Result<Gate, StoreError>>,
        JoinHandle<Option<Written>>,
    ) {
        let (tell, gate) = oneshot::channel();
        let (store, dispatcher) = (self.store.clone(), self.dispatcher.clone());
        let inserts = self.inserts.clone();
        let (caller, key, new) = (caller.clone(), key.clone(), new.clone());
        let (id, po) = (OrderId::generate(), PoNumber::generate());
        let span = info_span!("order.intake", order.id = %id, po_number = %po);
        let placed = self.dispatcher.tasks().spawn(
            async move {
                let ticket = dispatcher.fresh_ticket(&po, &new).await;
                let send = ticket.fresh_send(&dispatcher);
                let stored = match &send {
                    Some(send) => {
                        store
                            .insert_order(&caller, &key, id, &po, &new, Some(send))
                            .await
                    }
                    // Nothing to begin: stored with the other new orders
                    // of the moment, in one statement.
                    None => {
                        let gate = NewGate {
                            caller,
                            key,
                            id,
                            po,
                            new,
                        };
                        inserts.run(&Arc::new(gate)).await
                    }
                };
                drop(send);
                let created = match &stored {
                    Ok(Gate::Created(row, fresh)) => Some((row.clone(), *fresh)),
                    _ => None,
                };
                let failed = stored.is_err();
                let _ = tell.send(stored);
                match created {
                    Some((row, fresh)) => dispatcher.start_fresh(row, fresh, ticket).await,
                    None if failed => dispatcher.recover_fresh(id, ticket).await,
                    None => {
                        dispatcher.give_back(ticket);
                        None
                    }
                }
            }
            .instrument(span),
        );
        (gate, placed)
    }

    /// Waits until `deadline` for the placement of a new order: the task
    /// that stored it (when it began the call), else the background loop.
    /// `Ok`: the write-back's row and vouchers; `Err`: the row to answer with.
    async fn wait_for_placement(
        &self,
        row: Order,
        sent: bool,
        placed: JoinHandle<Option<Written>>,
        deadline: Instant,
    ) -> Result<Result<Written, Order>, StoreError> {
        if !sent {
            return Ok(Err(self.wait_while_in_flight(row, deadline).await?));
        }
        if deadline <= Instant::now() {
            return Ok(Err(row));
        }
        match timeout_at(deadline, placed).await {
            Ok(Ok(Some(done))) if !is_moving(&done.order) => Ok(Ok(done)),
            // Deferred for a retry (token refreshed), lease lost, or the
            // task failed: follow the row instead.
            Ok(_) => Ok(Err(self.wait_while_in_flight(row, deadline).await?)),
            Err(_) => Ok(Err(self.reload(row).await?)),
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

/// New orders' inserts without a first send, alone (the gate) or in one
/// statement ([`Store::insert_new_orders`]); an order a batch did not store
/// asks the gate alone, which tells a replay, a mismatch and a revoked key
/// apart.
pub struct NewOrders(pub Store);

impl Batchable for NewOrders {
    type Item = NewGate;
    type Answer = StoreResult<Gate>;
    const KIND: &'static str = "new order insert";
    /// One pipe, in batches of up to 64: Postgres' cost per row falls with
    /// the rows per statement, and one pipe measured about a fifth faster
    /// than two (docs/performance.md). A stalled batch opens another.
    const PIPES: usize = 1;
    const MOST: usize = 64;
    /// Alone, the gate waits for a key held by a same-key request for as
    /// long as that request holds it: in the one pipe, every new order
    /// would wait behind it. As a batch it gives up within the lock wait,
    /// and then waits alone on its own request's task.
    const ONE_TOGETHER: bool = true;

    async fn alone(&self, g: &NewGate) -> StoreResult<Gate> {
        let gate = self
            .0
            .insert_order(&g.caller, &g.key, g.id, &g.po, &g.new, None)
            .await?;
        Ok(match gate {
            // This very order, stored by a batch that committed after it
            // was given up: created by this request, not a replay.
            Gate::Existing(row, _) if row.id == g.id => Gate::Created(row, Fresh::NotAsked),
            other => other,
        })
    }

    async fn together(&self, gs: &[Arc<NewGate>]) -> StoreResult<Vec<Option<StoreResult<Gate>>>> {
        let stored = self.0.insert_new_orders(gs, LOCK_WAIT).await?;
        Ok(stored
            .into_iter()
            .map(|row| row.map(|row| Ok(Gate::Created(row, Fresh::NotAsked))))
            .collect())
    }
}

/// Replay reads (a key this process has seen stored), alone or several in
/// one select ([`Store::find_replays`]): a read locks nothing, so a batch
/// waits for nothing but Postgres.
pub struct ReplayReads(pub Store);

impl Batchable for ReplayReads {
    type Item = ReplayAsk;
    type Answer = StoreResult<Option<Replay>>;
    const KIND: &'static str = "replay read";
    /// One pipe of up to 64 reads: in the same minutes, 1.25× pgbench
    /// against 1.09× with two and 0.58× one read each (docs/performance.md,
    /// eighth round).
    const PIPES: usize = 1;
    const MOST: usize = 64;
    /// A healthy read batch takes a millisecond or two: one on a
    /// connection that hangs lets the replays behind it go on after
    /// 100 ms, not after the inserts' second.
    const STALLED_AFTER: Duration = Duration::from_millis(100);
    /// A read alone runs as a batch of one too, so that its failure (no
    /// connection) answers the reads queued behind it as well.
    const ONE_TOGETHER: bool = true;

    /// No connection in time (the pool's acquire timeout: the database
    /// cannot be reached, or every connection stayed busy): every ask of
    /// the batch, and every one queued, is answered unavailable (503,
    /// retry the same key) at once, instead of each waiting for a
    /// connection again alone. A batch given up at the deadline answers its
    /// own asks so. Anything else (a connection that broke) does each
    /// alone, as before.
    fn failed(error: &StoreError) -> Option<Self::Answer> {
        error.no_connection_again().map(Err)
    }

    async fn alone(&self, ask: &ReplayAsk) -> Self::Answer {
        self.0.find_replay(ask).await
    }

    async fn together(&self, asks: &[Arc<ReplayAsk>]) -> StoreResult<Vec<Option<Self::Answer>>> {
        let found = self.0.find_replays(asks).await?;
        Ok(found.into_iter().map(|f| Some(Ok(f))).collect())
    }
}
