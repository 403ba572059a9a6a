//! The order timeline (issue 12): every status change with when, from, to,
//! why and who. The rows are written by a trigger on `orders` (migration
//! 0033) in the transaction of the change itself, so no statement can change
//! a status without its row. Writers name themselves with [`act_as`] before
//! their statements; unnamed changes are `system`'s.

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::{Store, StoreResult, orders::ORDER_COLUMNS, orders::OrderRow};
use crate::domain::{Order, OrderId, safe_text::pg_text};

/// The actor of delivery webhooks.
pub const WEBHOOK: &str = "webhook";
/// The actor of the reconciler's write-backs.
pub const RECONCILER: &str = "reconciler";

/// Names the actor (and, for operators, the reason) of every status change
/// made later in this transaction; both reset at commit or rollback.
pub(crate) async fn act_as(
    conn: &mut sqlx::PgConnection,
    actor: &str,
    reason: Option<&str>,
) -> StoreResult<()> {
    sqlx::query(
        "select set_config('order_gateway.actor', $1, true),
                set_config('order_gateway.reason', $2, true)",
    )
    .bind(pg_text(actor).into_owned())
    .bind(reason.map(|r| pg_text(r).into_owned()).unwrap_or_default())
    .execute(conn)
    .await?;
    Ok(())
}

/// A row of the timeline where the status stayed (a recheck): the trigger
/// writes only changes, so this says the action happened.
pub(crate) async fn note_unchanged(
    conn: &mut sqlx::PgConnection,
    order: OrderId,
    status: &str,
    actor: &str,
    reason: &str,
) -> StoreResult<()> {
    sqlx::query(
        "insert into order_timeline (order_id, from_status, to_status, reason, actor)
         values ($1, $2, $2, $3, $4)",
    )
    .bind(order.as_uuid())
    .bind(status)
    .bind(pg_text(reason).into_owned())
    .bind(pg_text(actor).into_owned())
    .execute(conn)
    .await?;
    Ok(())
}

/// One status change.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TimelineEntry {
    /// When (database clock).
    pub at: DateTime<Utc>,
    /// The status before; `None` for the order's creation.
    pub from_status: Option<String>,
    /// The status after.
    pub to_status: String,
    /// Why.
    pub reason: Option<String>,
    /// `system`, `webhook`, `reconciler` or an operator's name.
    pub actor: String,
}

/// One upstream exchange of an order, without bodies.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ExchangeSummary {
    /// When sending began.
    pub started_at: DateTime<Utc>,
    /// `place_order`, `get_order_details`, …
    pub operation: String,
    /// HTTP status, when an answer came.
    pub response_status: Option<i32>,
    /// Wall time.
    pub duration_ms: Option<i32>,
    /// Our classification.
    pub outcome: Option<String>,
    /// Transport error.
    pub error: Option<String>,
    /// The redacted answer (voucher codes masked), for its errorId.
    pub response_body_redacted: Option<String>,
}

impl ExchangeSummary {
    /// Xoxoday's `errorId`, when the (redacted) answer carries one.
    pub fn error_id(&self) -> Option<String> {
        let body: Value = serde_json::from_str(self.response_body_redacted.as_deref()?).ok()?;
        body.get("errorId")?.as_str().map(str::to_owned)
    }
}

impl Store {
    /// An order by its id (a UUID) or its poNumber, whoever owns it (operators).
    pub async fn find_order_by_ref(&self, reference: &str) -> StoreResult<Option<Order>> {
        let id = uuid::Uuid::parse_str(reference.trim()).ok();
        let sql = format!(
            "select {ORDER_COLUMNS} from orders o
             where ($1::uuid is not null and o.order_id = $1) or o.po_number = $2"
        );
        let row: Option<OrderRow> = sqlx::query_as(&sql)
            .bind(id)
            .bind(pg_text(reference.trim()).into_owned())
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(OrderRow::into_order))
    }

    /// The order's timeline, oldest first.
    pub async fn timeline(&self, order: OrderId) -> StoreResult<Vec<TimelineEntry>> {
        Ok(sqlx::query_as(
            "select at, from_status, to_status, reason, actor from order_timeline
             where order_id = $1 order by timeline_id",
        )
        .bind(order.as_uuid())
        .fetch_all(&self.pool)
        .await?)
    }

    /// The order's upstream exchanges, oldest first.
    pub async fn exchange_summaries(&self, order: OrderId) -> StoreResult<Vec<ExchangeSummary>> {
        Ok(sqlx::query_as(
            "select started_at, operation, response_status, duration_ms, outcome, error,
                    response_body_redacted
             from upstream_exchanges where order_id = $1 order by started_at, created_at",
        )
        .bind(order.as_uuid())
        .fetch_all(&self.pool)
        .await?)
    }
}
