//! The reconciler (issue 4): settles every order whose outcome is unknown —
//! `reconciling` ones, and `placing` ones whose lease expired because the
//! worker died mid-call — and the pending deliveries a webhook (or the slow
//! safety poll) made due. Protects invariants 1 and 3.
//!
//! A check asks getOrderDetails(poNumber) under a renewed lease, within the
//! shared budget. Found → adopt Xoxoday's state. Not found → trusted only once
//! the settle window since the last placeOrder ENDED has passed (never while
//! an attempt may still be in flight); then the
//! order is placed again with the same poNumber through the dispatcher's path
//! (a "poNumber already used" answer is Unknown, so it is looked up again).
//! A stored delivery webhook proves the order exists: such an order is never
//! placed again, only looked up, then sent to review with that reason.
//! Anything else changes nothing and is retried with capped exponential
//! backoff and jitter. Attempts and age are budgeted: then `needs_review`,
//! always after one final lookup (see `aging`).
//! An error in the reconciler itself reschedules the order; a lost lease or
//! a crash only delays it until the lease expires.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument as _, info, info_span, warn};
use uuid::Uuid;

use super::{
    Dispatcher, aging, audit, outcome,
    worker::{Pace, jitter, run_worker},
};
use crate::{
    domain::OrderStatus,
    settings::fixed,
    store::{
        StoreResult,
        exchanges::Begin,
        reconcile::{CheckEnd, CheckRow},
    },
    tuning::Tuning,
    xoxoday::{LookupOutcome, Operation},
};

/// The reconciler's schedule and budgets.
#[derive(Debug, Clone)]
pub struct ReconcileSettings {
    /// Most checks claimed per pass.
    pub batch: i64,
    /// `RECONCILE_POLL_INTERVAL`: idle pause of the loop.
    pub poll_interval: Duration,
    /// `RECONCILE_MAX_ATTEMPTS`: placeOrder attempts (or lookups despite a
    /// webhook) before `needs_review`.
    pub max_attempts: u32,
    /// `RECONCILE_MAX_AGE`: from the first send, then review.
    pub max_age: Duration,
    /// `ACCEPTED_MAX_AGE`: an order never sent fails after this.
    pub accepted_max_age: Duration,
    /// `PENDING_DELIVERY_MAX_AGE`: a pending delivery is reviewed after this.
    pub pending_delivery_max_age: Duration,
    /// `RECONCILE_RETRY_BASE`: first retry delay of a failed check.
    pub retry_base: Duration,
    /// `RECONCILE_RETRY_MAX`: cap of the backoff.
    pub retry_max: Duration,
    /// `RECONCILE_RETRY_FLOOR`: least delay after a timeout or rate limit.
    pub retry_floor: Duration,
    /// `PENDING_POLL_INTERVAL`: safety poll of a pending delivery.
    pub pending_poll: Duration,
    /// `SYSTEMIC_PAUSE`: retry delay after an account-wide refusal.
    pub systemic_pause: Duration,
    /// `XOXODAY_SETTLE_WINDOW`: a "not found" is trusted only this long
    /// after the last placeOrder ENDED.
    pub settle_window: Duration,
}

impl ReconcileSettings {
    /// The reconciler's part of the worker tunables, with the settle window.
    pub fn new(t: &Tuning, settle_window: Duration) -> Self {
        Self {
            batch: fixed::RECONCILE_BATCH,
            poll_interval: t.poll_interval,
            max_attempts: t.max_attempts,
            max_age: t.max_age,
            accepted_max_age: t.accepted_max_age,
            pending_delivery_max_age: t.pending_delivery_max_age,
            retry_base: t.retry_base,
            retry_max: t.retry_max,
            retry_floor: t.retry_floor,
            pending_poll: t.pending_poll,
            systemic_pause: t.systemic_pause,
            settle_window,
        }
    }
}

/// Settles unknown outcomes and pending deliveries; places again through
/// the [`Dispatcher`] it holds. Cheap to clone.
#[derive(Clone)]
pub struct Reconciler {
    dispatcher: Dispatcher,
    settings: Arc<ReconcileSettings>,
    /// When the status counters' deltas are next folded.
    next_fold: Arc<std::sync::Mutex<Instant>>,
}

impl Reconciler {
    /// The reconciler over the place path it re-places through (and whose
    /// wake-ups it shares).
    pub fn new(dispatcher: Dispatcher, settings: ReconcileSettings) -> Self {
        Self {
            dispatcher,
            settings: Arc::new(settings),
            next_fold: Arc::new(std::sync::Mutex::new(Instant::now() + fixed::FOLD_EVERY)),
        }
    }

    /// One pass: expire dead `placing` leases, fail unsent orders too old,
    /// claim due checks (one transaction), run them concurrently. Returns
    /// the handles so tests can wait for them.
    pub async fn reconcile_due(&self) -> StoreResult<Vec<JoinHandle<()>>> {
        let pass = self
            .dispatcher
            .store()
            .reconcile_pass(
                self.dispatcher.upstream().place_timeout,
                self.settings.accepted_max_age,
                self.settings.batch,
                self.dispatcher.settings().lease,
            )
            .await;
        self.fold_if_due().await;
        let pass = pass?;
        if pass.expired_leases > 0 {
            warn!(
                expired = pass.expired_leases,
                "placeOrder leases expired; orders moved to reconciling"
            );
        }
        aging::note_expired_unsent(pass.expired_unsent);
        let claimed = pass.claimed;
        let mut handles = Vec::with_capacity(claimed.len());
        for c in claimed {
            let svc = self.clone();
            let o = &c.order;
            let span = info_span!("order.reconcile", order.id = %o.id, po_number = %o.po_number);
            handles.push(
                self.dispatcher
                    .tasks()
                    .spawn(async move { svc.reconcile_claimed(c).await }.instrument(span)),
            );
        }
        Ok(handles)
    }

    /// About every [`fixed::FOLD_EVERY`], whatever the pass did: folds the
    /// status counters' deltas into their totals, after the pass committed
    /// and apart from it, so a slow fold never holds up another replica's
    /// lease expiry or checks. Errors are logged; the deltas wait for the
    /// next round.
    async fn fold_if_due(&self) {
        {
            let mut next = self.next_fold.lock().unwrap_or_else(|p| p.into_inner());
            if Instant::now() < *next {
                return;
            }
            *next = Instant::now() + fixed::FOLD_EVERY;
        }
        if let Err(e) = self.fold_deltas().await {
            warn!(error = %e, "could not fold the status counters; next round retries");
        }
    }

    /// One round of folding: statements of [`fixed::FOLD_BATCH`] deltas
    /// while they come back full, at most [`fixed::FOLD_ROUNDS`]. Returns
    /// the deltas folded (0 while another replica folds).
    pub async fn fold_deltas(&self) -> StoreResult<i64> {
        let mut total = 0;
        for _ in 0..fixed::FOLD_ROUNDS {
            let n = self
                .dispatcher
                .store()
                .fold_status_deltas(fixed::FOLD_BATCH)
                .await?;
            total += n;
            if n < i64::from(fixed::FOLD_BATCH) {
                break;
            }
        }
        Ok(total)
    }

    /// One pass, waiting for its checks (tests; `run_once` of habit 10).
    pub async fn reconcile_once(&self) -> StoreResult<usize> {
        let handles = self.reconcile_due().await?;
        let n = handles.len();
        futures::future::join_all(handles).await;
        Ok(n)
    }

    /// The background loop, until `shutdown`.
    pub async fn run_reconciler(self, shutdown: CancellationToken) {
        let pace = Pace {
            name: "reconciler",
            batch: self.settings.batch,
            poll_interval: self.settings.poll_interval,
            wake: self.dispatcher.wakes().reconciler(),
        };
        run_worker(pace, shutdown, || self.reconcile_due()).await;
    }

    /// Runs one check under its lease; an error reschedules, never drops.
    async fn reconcile_claimed(&self, c: CheckRow) {
        let Some(token) = c.order.lease_token else {
            return;
        };
        let id = c.order.id;
        if let Err(e) = self
            .dispatcher
            .with_heartbeat(id, token, self.check(&c, token))
            .await
        {
            warn!(error = %e, "reconciliation check failed; rescheduled");
            let end = CheckEnd::Retry {
                delay: self.backoff(&c),
                reason: format!("reconciler error: {e}"),
                counted: true,
            };
            if let Err(e) = self.dispatcher.store().finish_check(&c, None, &end).await {
                warn!(error = %e, "could not reschedule; the lease expiry will");
            }
        }
    }

    async fn check(&self, c: &CheckRow, token: Uuid) -> StoreResult<()> {
        let order = &c.order;
        let call = self
            .dispatcher
            .xoxoday()
            .prepare_order_details(&order.po_number);
        let exchange_id = Uuid::now_v7();
        let tok = self.dispatcher.tokens().access_token().await;
        let slot = self.dispatcher.slot_ask(Operation::GetOrderDetails);
        let start = audit::start_of(exchange_id, &call);
        let stamped_after = match self
            .dispatcher
            .store()
            .begin_lookup(order.id, token, start, slot)
            .await?
        {
            Begin::Send { stamped_after, .. } => stamped_after,
            Begin::NoSlot(wait) => {
                Dispatcher::note_no_slot(Operation::GetOrderDetails, wait);
                let reason = "waiting for the shared getOrderDetails rate budget".to_owned();
                let end = CheckEnd::Retry {
                    delay: wait,
                    reason,
                    counted: false,
                };
                return self.finish(c, end).await;
            }
            Begin::LeaseLost | Begin::Hooked => return Ok(()),
        };
        if let Some(old) = self.dispatcher.slot_too_old(stamped_after) {
            // Never sent: look again soon, with a new slot. Counted, as a
            // reconciler error is, so a stall that goes on backs off and
            // the order's check budget still runs out.
            let audit_end = audit::not_sent(Operation::GetOrderDetails, &old);
            let end = CheckEnd::Retry {
                delay: old.retry_in().max(self.backoff(c)),
                reason: old.why(),
                counted: true,
            };
            self.dispatcher
                .with_retries(|| {
                    self.dispatcher
                        .store()
                        .finish_check(c, Some((exchange_id, &audit_end)), &end)
                })
                .await?;
            return Ok(());
        }
        let result = self
            .dispatcher
            .xoxoday()
            .get_order_details(call, &tok)
            .await;
        let label = result.outcome.label();
        info!(outcome = label, "getOrderDetails answered");
        let audit_end = audit::end_of(
            self.dispatcher.cipher(),
            exchange_id,
            &result.exchange,
            label,
        );
        let mut end = self.decide(c, &result.outcome).await;
        if let Some(reason) = aging::aged(&self.settings, c) {
            end = aging::age_out(c, reason, &result.outcome, end);
        }
        // A refused token created nothing: after a good refresh, check again at once.
        if matches!(result.outcome, LookupOutcome::Unauthorized(_))
            && self.dispatcher.tokens().token_rejected(&tok).await
            && let CheckEnd::Retry { delay, counted, .. } = &mut end
        {
            *delay = Duration::ZERO;
            *counted = false;
        }
        let replace = matches!(end, CheckEnd::Replace);
        let row = self
            .dispatcher
            .with_retries(|| {
                self.dispatcher
                    .store()
                    .finish_check(c, Some((exchange_id, &audit_end)), &end)
            })
            .await?;
        match row {
            Some(row) if replace && row.status == OrderStatus::Placing => {
                self.place_leased_after_check(row).await?;
            }
            Some(_) => {}
            None => warn!(
                outcome = label,
                "lease lost during the check; result kept only in the audit"
            ),
        }
        Ok(())
    }

    async fn finish(&self, c: &CheckRow, end: CheckEnd) -> StoreResult<()> {
        self.dispatcher
            .store()
            .finish_check(c, None, &end)
            .await
            .map(|_| ())
    }

    /// What a lookup answer means for the claimed order.
    async fn decide(&self, c: &CheckRow, outcome: &LookupOutcome) -> CheckEnd {
        let retry = |delay, reason: String| CheckEnd::Retry {
            delay,
            reason,
            counted: true,
        };
        match outcome {
            LookupOutcome::Found(up) => {
                let facts = outcome::placed_facts(
                    self.dispatcher.settings(),
                    self.dispatcher.cipher(),
                    c.order.id,
                    up,
                );
                CheckEnd::Adopt(facts, self.settings.pending_poll)
            }
            LookupOutcome::NotFound(_) => self.not_found(c),
            LookupOutcome::RateLimited { penalty } => {
                self.dispatcher
                    .pause_throttled(Operation::GetOrderDetails, *penalty)
                    .await;
                let delay = jitter((*penalty).max(self.settings.retry_floor));
                retry(delay, "getOrderDetails rate-limited".into())
            }
            LookupOutcome::Systemic(e) => {
                self.dispatcher.pause_systemic(e).await;
                retry(
                    self.settings.systemic_pause,
                    "Xoxoday refuses every call (account-wide)".into(),
                )
            }
            LookupOutcome::Unauthorized(_) => retry(
                self.backoff(c),
                "getOrderDetails: access token refused".into(),
            ),
            LookupOutcome::Failed { reason } => {
                let mut delay = self.backoff(c);
                if reason.contains("timeout") || reason.contains("timed out") {
                    delay = delay.max(jitter(self.settings.retry_floor));
                }
                retry(delay, format!("getOrderDetails gave no answer: {reason}"))
            }
        }
    }

    /// PLE10016: trusted only after the settle window, then placed again
    /// (within the attempts budget). A pending delivery is never re-placed.
    fn not_found(&self, c: &CheckRow) -> CheckEnd {
        let order = &c.order;
        if order.status != OrderStatus::Reconciling {
            let reason = "getOrderDetails does not find an order Xoxoday accepted".into();
            return CheckEnd::Retry {
                delay: self.backoff(c),
                reason,
                counted: true,
            };
        }
        if c.webhook_seen {
            return self.not_found_despite_webhook(c);
        }
        if c.last_place_started_at.is_some() && c.last_place_ended_at.is_none() {
            let reason = "not found, but a placeOrder attempt may still be in flight".into();
            return CheckEnd::Retry {
                delay: self.backoff(c),
                reason,
                counted: false,
            };
        }
        let settle = chrono::Duration::from_std(self.settings.settle_window).unwrap_or_default();
        if let Some(ended) = c.last_place_ended_at {
            let trusted_at = ended + settle;
            // The lookup began after the claim, so judging by the claim's
            // database time errs on the side of waiting longer.
            let now = c.claimed_at;
            if now < trusted_at {
                let wait =
                    (trusted_at - now).to_std().unwrap_or_default() + Duration::from_millis(200);
                let reason =
                    "not found yet; within the settle window of the last placeOrder".into();
                return CheckEnd::Retry {
                    delay: wait,
                    reason,
                    counted: false,
                };
            }
        }
        if order.attempts >= i32::try_from(self.settings.max_attempts).unwrap_or(i32::MAX) {
            return CheckEnd::Review(format!(
                "Xoxoday has no order for this poNumber after {} placeOrder attempts",
                order.attempts
            ));
        }
        CheckEnd::Replace
    }

    /// A stored webhook proves Xoxoday has the order: look again (counted),
    /// and after the attempts budget of lookups hand it to an operator.
    fn not_found_despite_webhook(&self, c: &CheckRow) -> CheckEnd {
        let budget = i32::try_from(self.settings.max_attempts).unwrap_or(i32::MAX);
        if c.checks >= budget {
            return CheckEnd::Review(format!(
                "a stored Xoxoday delivery webhook proves this order exists, but getOrderDetails \
                 still says not found after {} lookups; never placed again",
                c.checks + 1
            ));
        }
        CheckEnd::Retry {
            delay: self.backoff(c),
            reason: "not found, but a stored delivery webhook proves the order exists; \
                     looking again, never placing again"
                .into(),
            counted: true,
        }
    }

    /// Capped exponential backoff with ±20 % jitter.
    fn backoff(&self, c: &CheckRow) -> Duration {
        let exp = u32::try_from(c.checks.clamp(0, 20)).unwrap_or(20);
        let base = self
            .settings
            .retry_base
            .saturating_mul(2u32.saturating_pow(exp));
        jitter(base.min(self.settings.retry_max))
    }

    /// The order is `placing` again under the check's lease: place it through
    /// the dispatcher's path (slot first, attempt counted, same poNumber).
    async fn place_leased_after_check(&self, row: crate::domain::Order) -> StoreResult<()> {
        info!("Xoxoday has no order for this poNumber after the settle window; placing again");
        self.dispatcher.place_claimed(row).await.map(|_| ())
    }
}
