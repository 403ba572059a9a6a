//! Age limits (issue 9, invariant 3: nothing stuck, nothing reviewed blind).
//!
//! Reconciliation age counts from the FIRST send (`first_sent_at`), never
//! from `created_at`: time spent waiting in `accepted` is not time spent
//! reconciling. An aged order always gets one final lookup before review,
//! and a Found answer still adopts the order. A `pending_delivery` order past
//! `PENDING_DELIVERY_MAX_AGE` goes to review as `delivery_overdue`; an
//! `accepted` order never sent past `ACCEPTED_MAX_AGE` fails as
//! `expired_unsent` (see `store::aging`).

use tracing::warn;

use super::ReconcileSettings;
use crate::{
    domain::OrderStatus,
    store::reconcile::{CheckEnd, CheckRow},
    xoxoday::LookupOutcome,
};

/// `status_reason` of a delivery pending for longer than the limit.
pub const DELIVERY_OVERDUE: &str = "delivery_overdue";

/// Logs `accepted` orders that were never sent and failed as too old (the
/// reconciler's pass fails them, `Store::reconcile_pass`).
pub(crate) fn note_expired_unsent(expired: u64) {
    if expired > 0 {
        warn!(
            expired,
            "accepted orders never sent expired as failed (expired_unsent)"
        );
    }
}

/// Why the claimed order is past its age limit, if it is.
pub(crate) fn aged(s: &ReconcileSettings, c: &CheckRow) -> Option<String> {
    let order = &c.order;
    let since = c.first_sent_at.unwrap_or(order.created_at);
    let age = (c.claimed_at - since).to_std().unwrap_or_default();
    match order.status {
        OrderStatus::Reconciling if age > s.max_age => Some(format!(
            "outcome still unknown {}s after the first placeOrder; \
                 automatic resolution exhausted",
            age.as_secs()
        )),
        OrderStatus::PendingDelivery if age > s.pending_delivery_max_age => {
            Some(DELIVERY_OVERDUE.to_owned())
        }
        _ => None,
    }
}

/// The end of the final lookup of an aged order: Found adopts (unless
/// the delivery is still pending), an answer without the order goes to
/// review; no answer at all (throttle, token, pause) is retried.
pub(crate) fn age_out(
    c: &CheckRow,
    reason: String,
    outcome: &LookupOutcome,
    end: CheckEnd,
) -> CheckEnd {
    let still_pending = matches!(&end, CheckEnd::Adopt(f, _)
            if f.status == Some(OrderStatus::PendingDelivery));
    match outcome {
        LookupOutcome::Found(_) if still_pending && is_pending(c) => CheckEnd::Review(reason),
        LookupOutcome::Found(_) => end,
        LookupOutcome::NotFound(_) | LookupOutcome::Failed { .. } => CheckEnd::Review(reason),
        _ => end,
    }
}

fn is_pending(c: &CheckRow) -> bool {
    c.order.status == OrderStatus::PendingDelivery
}
