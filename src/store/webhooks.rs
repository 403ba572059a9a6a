//! The webhook inbox (issue 4): each Xoxoday delivery webhook is stored raw,
//! once per webhook id, and applied to its order in the same transaction, so
//! a repeated delivery changes nothing (invariant 3 without double effects).
//!
//! `delivered` only marks the order due for a check now: the reconciler
//! fetches the vouchers with getOrderDetails and adopts them under its lease.
//! `canceled` settles a `pending_delivery` order at once; any other in-flight
//! order is checked now instead. A webhook proves that Xoxoday has the order,
//! so an `accepted` one (sent before, answer given back) becomes
//! `reconciling` and never placed again.
//!
//! A webhook that contradicts a final status (contract §8: delivered or
//! pending for an order we call `failed`, `needs_review` or `canceled`;
//! canceled for one we call `completed` or `failed`) proves our record wrong:
//! the order moves to `needs_review` with the reason, in the same transaction.
//!
//! Every text and jsonb column gets a sanitised copy (`domain::safe_text`),
//! `payload_raw` the bytes as received: no content makes the insert fail.

use super::status::{ACCEPTED, CANCELED, NEEDS_REVIEW, PENDING_DELIVERY, RECONCILING};
use const_format::formatcp;
use uuid::Uuid;

use super::{Store, StoreResult};
use crate::domain::OrderStatus;
use crate::domain::safe_text::{pg_json, pg_key};

/// A webhook as received.
#[derive(Debug)]
pub struct WebhookIn<'a> {
    /// Xoxoday's webhook id (text: documented as a 20-digit number).
    pub webhook_id: &'a str,
    /// Our poNumber, when present.
    pub po_number: Option<&'a str>,
    /// Xoxoday's order id, when present.
    pub xoxoday_order_id: Option<i64>,
    /// Delivery status, lower-cased.
    pub delivery_status: Option<String>,
    /// The parsed event (sanitised here before it is stored).
    pub payload: &'a serde_json::Value,
    /// The bytes exactly as received.
    pub raw: &'a [u8],
}

/// What storing a webhook did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookStored {
    /// Seen before: nothing changed.
    Repeat,
    /// New, for an order of ours.
    Applied,
    /// New, but no order has this poNumber (kept and reported).
    Unmatched,
    /// New, and it contradicts the order's final status `was`: the order is
    /// now `needs_review` with the reason.
    Contradicted {
        /// The status we had.
        was: OrderStatus,
    },
}

impl Store {
    /// Stores the event and applies it, in one transaction.
    pub async fn record_webhook(&self, w: &WebhookIn<'_>) -> StoreResult<WebhookStored> {
        let mut tx = self.pool.begin().await?;
        super::timeline::act_as(&mut tx, super::timeline::WEBHOOK, None).await?;
        // Our poNumbers are short and clean: a hostile one matches nothing.
        let po_number = w.po_number.map(pg_key);
        let order: Option<Uuid> = match &po_number {
            Some(po) => {
                sqlx::query_scalar("select order_id from orders where po_number = $1")
                    .bind(po)
                    .fetch_optional(&mut *tx)
                    .await?
            }
            None => None,
        };
        let inserted = sqlx::query(
            "insert into webhook_events (webhook_id, po_number, xoxoday_order_id,
               delivery_status, order_id, matched, payload, payload_raw)
             values ($1, $2, $3, $4, $5, $6, $7, $8) on conflict (webhook_id) do nothing",
        )
        .bind(pg_key(w.webhook_id))
        .bind(&po_number)
        .bind(w.xoxoday_order_id)
        .bind(w.delivery_status.as_deref().map(pg_key))
        .bind(order)
        .bind(order.is_some())
        .bind(pg_json(w.payload))
        .bind(w.raw)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let stored = match (inserted, order) {
            (0, _) => WebhookStored::Repeat,
            (_, None) => WebhookStored::Unmatched,
            (_, Some(id)) => apply(&mut tx, id, w.delivery_status.as_deref()).await?,
        };
        tx.commit().await?;
        Ok(stored)
    }
}

async fn apply(
    tx: &mut sqlx::PgConnection,
    order: Uuid,
    status: Option<&str>,
) -> StoreResult<WebhookStored> {
    let ours: String =
        sqlx::query_scalar("select status from orders where order_id = $1 for update")
            .bind(order)
            .fetch_one(&mut *tx)
            .await?;
    let was = OrderStatus::parse(&ours).unwrap_or(OrderStatus::NeedsReview);
    if let Some(reason) = status.and_then(|s| contradiction(was, s)) {
        sqlx::query(formatcp!(
            "update orders set status = {NEEDS_REVIEW},
               status_reason = $2 || coalesce(' (was: ' || status_reason || ')', ''),
               lease_token = null, lease_until = null, next_check_at = null
             where order_id = $1"
        ))
        .bind(order)
        .bind(reason)
        .execute(&mut *tx)
        .await?;
        return Ok(WebhookStored::Contradicted { was });
    }
    schedule(tx, order, status).await?;
    Ok(WebhookStored::Applied)
}

fn is_canceled(status: &str) -> bool {
    status == "canceled" || status == "cancelled"
}

/// Why Xoxoday's `theirs` contradicts our final status `ours`, if it does.
pub fn contradiction(ours: OrderStatus, theirs: &str) -> Option<String> {
    use OrderStatus::{Canceled, Completed, Failed, NeedsReview};
    let clash = if is_canceled(theirs) {
        matches!(ours, Completed | Failed)
    } else {
        matches!(ours, Failed | NeedsReview | Canceled)
    };
    let theirs: String = theirs.chars().take(40).collect();
    clash.then(|| {
        let meaning = if is_canceled(&theirs) {
            "our record is wrong"
        } else {
            "money was spent"
        };
        format!(
            "webhook contradiction: Xoxoday reports delivery '{theirs}' for an order we \
             marked {}; {meaning}",
            ours.as_str()
        )
    })
}

/// Makes an in-flight order due for a check, or settles a cancellation.
async fn schedule(
    tx: &mut sqlx::PgConnection,
    order: Uuid,
    status: Option<&str>,
) -> StoreResult<()> {
    if status.is_some_and(is_canceled) {
        let done = sqlx::query(formatcp!(
            "update orders set status = {CANCELED}, delivery_status = 'canceled',
               lease_token = null, lease_until = null, next_check_at = null,
               settled_at = coalesce(settled_at, now())
             where order_id = $1 and status = {PENDING_DELIVERY}"
        ))
        .bind(order)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 1 {
            return Ok(());
        }
    }
    sqlx::query(formatcp!(
        "update orders set next_check_at = now(),
           status_reason = case when status = {ACCEPTED}
             then 'a delivery webhook shows Xoxoday has this order; never placed again'
             else status_reason end,
           status = case when status = {ACCEPTED} then {RECONCILING} else status end
         where order_id = $1 and status in ({PENDING_DELIVERY}, {RECONCILING}, {ACCEPTED})"
    ))
    .bind(order)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_webhooks_that_contradict_a_final_status_are_contradictions() {
        use OrderStatus::*;
        let clash = |ours, theirs| contradiction(ours, theirs).is_some();
        for ours in [Failed, NeedsReview, Canceled] {
            assert!(clash(ours, "delivered"), "{ours:?}");
            assert!(clash(ours, "pending"), "{ours:?}");
        }
        assert!(clash(Completed, "canceled") && clash(Completed, "cancelled"));
        assert!(clash(Failed, "canceled"));
        for ours in [Accepted, Placing, Reconciling, PendingDelivery, Completed] {
            assert!(!clash(ours, "delivered"), "{ours:?}");
        }
        for ours in [PendingDelivery, Reconciling, Canceled, NeedsReview] {
            assert!(!clash(ours, "canceled"), "{ours:?}");
        }
        let why = contradiction(Failed, "delivered").unwrap();
        assert!(why.contains("'delivered'") && why.contains("failed") && why.contains("spent"));
    }
}
