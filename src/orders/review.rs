//! Operator actions on one order (issue 12, contract §8): `orders recheck`
//! and `orders resolve`. Each asks Xoxoday afresh (getOrderDetails, one slot
//! of the shared budget, audited like every call) and applies the answer
//! under the reconciler's rules ([`super::outcome::placed_facts`] and the
//! reconciler's guarded statements), recorded in the timeline with the
//! operator's name and reason. `resolve` is only for `needs_review`:
//! `completed` adopts the order a fresh lookup finds and is refused when
//! none is found; `failed` is refused while a fresh lookup finds one.
//! The order is claimed first (see `store::review`), so two operators, or an
//! operator and the reconciler, can never both act on it.

use std::{sync::Arc, time::Duration};

use tracing::info;
use uuid::Uuid;

use super::{AccessTokens, DispatchSettings, audit, limits::SlotTooOld, outcome};
use crate::{
    crypto::Cipher,
    domain::{Order, OrderStatus},
    store::{
        Store, StoreError,
        exchanges::Begin,
        rate_limit::SlotAsk,
        reconcile::{CheckEnd, CheckRow},
        review::{Claim, OperatorEnd},
    },
    xoxoday::{LookupOutcome, Operation, XoxodayApi},
};

/// Longest an operator action waits for a getOrderDetails slot.
const MOST_WAIT: Duration = Duration::from_secs(180);

/// What the operator asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Look up now, apply the answer.
    Recheck,
    /// `resolve --as completed`.
    ResolveCompleted,
    /// `resolve --as failed`.
    ResolveFailed,
}

impl Action {
    fn statuses(self) -> &'static [OrderStatus] {
        use OrderStatus::{Canceled, Completed, Failed, NeedsReview, PendingDelivery, Reconciling};
        match self {
            // Not `accepted` or `placing`: the dispatcher owns those, and a
            // "not found" while a call may be in flight proves nothing.
            Self::Recheck => &[
                Reconciling,
                PendingDelivery,
                NeedsReview,
                Completed,
                Failed,
                Canceled,
            ],
            Self::ResolveCompleted | Self::ResolveFailed => &[NeedsReview],
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Recheck => "recheck",
            Self::ResolveCompleted => "resolve --as completed",
            Self::ResolveFailed => "resolve --as failed",
        }
    }
}

/// How an action ended.
#[derive(Debug)]
pub enum Outcome {
    /// Done: the order as it is now (its status may be unchanged).
    Done(Box<Order>),
    /// Refused, with the reason; nothing changed.
    Refused(String),
    /// Xoxoday could not be asked (or answered nothing usable); nothing changed.
    Unreachable(String),
}

/// An action could not run at all.
#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    /// No order has this id or poNumber.
    #[error("no order has the id or poNumber {0}")]
    NoSuchOrder(String),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What operator actions need, and nothing else.
pub struct Operator {
    store: Store,
    xoxoday: Arc<dyn XoxodayApi>,
    tokens: Arc<dyn AccessTokens>,
    cipher: Arc<Cipher>,
    settings: DispatchSettings,
    details: SlotAsk,
    /// `XOXODAY_SETTLE_WINDOW`: a "not found" fails an order only this long
    /// after its last placeOrder attempt ended.
    settle_window: Duration,
}

impl Operator {
    /// `settings` carries the pending-delivery poll; `details` is the shared
    /// getOrderDetails budget.
    pub fn new(
        store: Store,
        xoxoday: Arc<dyn XoxodayApi>,
        tokens: Arc<dyn AccessTokens>,
        cipher: Arc<Cipher>,
        settings: DispatchSettings,
        details: SlotAsk,
        settle_window: Duration,
    ) -> Self {
        Self {
            store,
            xoxoday,
            tokens,
            cipher,
            settings,
            details,
            settle_window,
        }
    }

    /// Runs `action` on the order `reference` (id or poNumber) as `actor`.
    pub async fn act(
        &self,
        reference: &str,
        action: Action,
        actor: &str,
        reason: Option<&str>,
    ) -> Result<Outcome, OperatorError> {
        let order = self
            .store
            .find_order_by_ref(reference)
            .await?
            .ok_or_else(|| OperatorError::NoSuchOrder(reference.to_owned()))?;
        let lease = MOST_WAIT + Duration::from_secs(60);
        let c = match self
            .store
            .claim_for_operator(order.id, action.statuses(), lease)
            .await?
        {
            Claim::Claimed(c) => c,
            Claim::WrongStatus(status) => {
                return Ok(Outcome::Refused(format!(
                    "order {} is {status}; {} is only for {}",
                    order.po_number,
                    action.name(),
                    action
                        .statuses()
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
            Claim::Busy => {
                return Ok(Outcome::Refused(format!(
                    "order {} is being worked on right now (dispatcher, reconciler or another \
                     operator); nothing changed, try again in a minute",
                    order.po_number
                )));
            }
        };
        let result = self.lookup_and_apply(&c, action, actor, reason).await;
        if result.is_err() {
            // best effort: the lease expires anyway
            let _ = self.store.release_operator_claim(&c).await;
        }
        result
    }

    async fn lookup_and_apply(
        &self,
        c: &CheckRow,
        action: Action,
        actor: &str,
        reason: Option<&str>,
    ) -> Result<Outcome, OperatorError> {
        let order = c.order.clone();
        let token = c.order.lease_token.unwrap_or_default();
        if action == Action::ResolveFailed
            && let Some(why) = self
                .store
                .fail_refusal(order.id, self.settle_window)
                .await?
        {
            let note = format!("{}: refused: {why}", action.name());
            self.store
                .finish_operator_action(c, None, &OperatorEnd::Keep, actor, &note)
                .await?;
            return Ok(Outcome::Refused(why));
        }
        let call = self.xoxoday.prepare_order_details(&order.po_number);
        let exchange_id = Uuid::now_v7();
        let mut waited = Duration::ZERO;
        // Read before the slot is taken: its send margin runs from then.
        let tok = self.tokens.access_token().await;
        let stamped_after = loop {
            let start = audit::start_of(exchange_id, &call);
            match self
                .store
                .begin_lookup(order.id, token, start, self.details)
                .await?
            {
                Begin::Send { stamped_after, .. } => break stamped_after,
                Begin::NoSlot(wait) if waited + wait <= MOST_WAIT => {
                    eprintln!(
                        "waiting {}s for the shared getOrderDetails budget",
                        wait.as_secs().max(1)
                    );
                    tokio::time::sleep(wait).await;
                    waited += wait;
                }
                Begin::NoSlot(_) => {
                    self.store.release_operator_claim(c).await?;
                    return Ok(Outcome::Unreachable(
                        "no getOrderDetails budget left within 3 minutes".into(),
                    ));
                }
                Begin::LeaseLost | Begin::Hooked => {
                    return Ok(Outcome::Refused("the order was claimed meanwhile".into()));
                }
            }
        };
        if let Some(old) = SlotTooOld::check(self.details.window, stamped_after) {
            let end = audit::not_sent(Operation::GetOrderDetails, &old);
            let note = format!("{}: getOrderDetails {}", action.name(), old.why());
            self.store
                .finish_operator_action(
                    c,
                    Some((exchange_id, &end)),
                    &OperatorEnd::Keep,
                    actor,
                    &note,
                )
                .await?;
            return Ok(Outcome::Unreachable(format!(
                "getOrderDetails was {}; run the action again",
                old.why()
            )));
        }
        let result = self.xoxoday.get_order_details(call, &tok).await;
        let label = result.outcome.label();
        info!(
            outcome = label,
            action = action.name(),
            "getOrderDetails answered an operator"
        );
        let audit_end = audit::end_of(&self.cipher, exchange_id, &result.exchange, label);
        let (end, outcome, note) = self.decide(&order, action, &result.outcome, reason).await;
        let row = self
            .store
            .finish_operator_action(c, Some((exchange_id, &audit_end)), &end, actor, &note)
            .await?;
        Ok(match (outcome, row) {
            (Some(refusal), _) => refusal,
            (None, Some(row)) => Outcome::Done(Box::new(row)),
            (None, None) => Outcome::Refused("the order was claimed meanwhile".into()),
        })
    }

    /// What the answer means for this action: the write-back, a refusal (or
    /// `None` for done), and the timeline's reason.
    async fn decide(
        &self,
        order: &Order,
        action: Action,
        answer: &LookupOutcome,
        reason: Option<&str>,
    ) -> (OperatorEnd, Option<Outcome>, String) {
        let said = |what: &str| match reason {
            Some(r) => format!("{}: {r} ({what})", action.name()),
            None => format!("{}: {what}", action.name()),
        };
        match (answer, action) {
            (LookupOutcome::Found(up), Action::ResolveFailed) => {
                let why = format!(
                    "Xoxoday has order {} for poNumber {}: it cannot be failed (use --as completed)",
                    up.order_id, order.po_number
                );
                (
                    OperatorEnd::Keep,
                    Some(Outcome::Refused(why.clone())),
                    said(&format!("refused: {why}")),
                )
            }
            (LookupOutcome::Found(up), Action::Recheck) if is_final(order.status) => {
                let facts = outcome::placed_facts(&self.settings, &self.cipher, order.id, up);
                if facts.status.is_none_or(|s| s == order.status) {
                    let note = said(&format!("Xoxoday agrees (order {})", up.order_id));
                    return (OperatorEnd::Keep, None, note);
                }
                let why = format!(
                    "recheck: Xoxoday has order {} ({}) for an order we call {}; an operator decides",
                    up.order_id,
                    facts.status.map_or("unknown", OrderStatus::as_str),
                    order.status.as_str()
                );
                (
                    OperatorEnd::Check(CheckEnd::Review(why.clone())),
                    None,
                    said(&why),
                )
            }
            (LookupOutcome::Found(up), _) => {
                let facts = outcome::placed_facts(&self.settings, &self.cipher, order.id, up);
                let end = CheckEnd::Adopt(facts, self.settings.pending_check_in);
                let note = said(&format!("Xoxoday has order {}", up.order_id));
                (OperatorEnd::Check(end), None, note)
            }
            (LookupOutcome::NotFound(_), Action::ResolveFailed) => {
                let note = said("Xoxoday has no order for this poNumber");
                (
                    OperatorEnd::Fail(note.clone(), self.settle_window),
                    None,
                    note,
                )
            }
            (LookupOutcome::NotFound(_), Action::ResolveCompleted) => {
                let why = format!(
                    "Xoxoday has no order for poNumber {}: nothing to adopt",
                    order.po_number
                );
                (
                    OperatorEnd::Keep,
                    Some(Outcome::Refused(why.clone())),
                    said(&format!("refused: {why}")),
                )
            }
            (LookupOutcome::NotFound(_), Action::Recheck) => (
                OperatorEnd::Keep,
                None,
                said("Xoxoday has no order for this poNumber yet; status kept"),
            ),
            (other, _) => {
                if let LookupOutcome::RateLimited { penalty } = other {
                    let why = "Xoxoday answered auth.request_limit_exceeded to an operator lookup";
                    let _ = self
                        .store
                        .pause_operation("get_order_details", *penalty, why)
                        .await;
                }
                let why = format!("Xoxoday could not be asked ({})", other.label());
                (
                    OperatorEnd::Keep,
                    Some(Outcome::Unreachable(why.clone())),
                    said(&why),
                )
            }
        }
    }
}

/// Settled for good: a recheck never adopts into or out of these; a
/// disagreement goes to an operator.
fn is_final(status: OrderStatus) -> bool {
    matches!(
        status,
        OrderStatus::Completed | OrderStatus::Failed | OrderStatus::Canceled
    )
}
