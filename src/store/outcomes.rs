//! Write-backs after a placeOrder. Each runs in one short transaction that
//! completes the audit row unconditionally and then updates the order only
//! under the lease that sent the call (`status = 'placing' and lease_token`),
//! so a stale worker changes nothing once a newer claim exists. Every
//! write-back stamps `last_place_ended_at`: the settle window starts there.
//! Text from Xoxoday (facts, failure, reasons) is bound through
//! `domain::safe_text`.
//!
//! A delivery webhook may land while the order is `placing` (it is stored,
//! but nothing is due then). The write-back looks for one in the same
//! statement: a pending or unknown order with a stored webhook is due for a
//! check now, and an answer given back (deferred) becomes `reconciling`
//! rather than `accepted`, since the webhook proves the order exists.

use super::status::{ACCEPTED, FAILED, PLACING, RECONCILING};
use const_format::formatcp;
use std::time::Duration;

use rust_decimal::Decimal;
use uuid::Uuid;

use super::{
    Store, StoreResult,
    exchanges::{ExchangeEnd, complete_exchange},
    orders::{ORDER_COLUMNS, OrderRow},
    proof::{HOOKED, ONLY_REFUSED},
    vouchers::{VoucherRow, insert_vouchers},
};
use crate::domain::{
    Order, OrderId, OrderStatus,
    safe_text::{pg_json, pg_opt, pg_text},
};

/// Upstream facts of an order Xoxoday created.
#[derive(Debug, Default)]
pub struct PlacedFacts {
    /// `completed`, `pending_delivery` or `canceled`.
    pub status: Option<OrderStatus>,
    /// Xoxoday's order id.
    pub xoxoday_order_id: i64,
    /// Currency of the amounts.
    pub currency_code: Option<String>,
    /// Total before discount.
    pub order_total: Option<Decimal>,
    /// Discount.
    pub order_discount: Option<Decimal>,
    /// Final charge.
    pub amount_charged: Option<Decimal>,
    /// Delivery status text.
    pub delivery_status: String,
    /// `orderStatus` text.
    pub order_status: Option<String>,
    /// Sealed vouchers.
    pub vouchers: Vec<VoucherRow>,
    /// When the reconciler should look again (pending delivery).
    pub next_check_in: Option<Duration>,
}

/// What a placeOrder led to.
#[derive(Debug)]
pub enum PlaceResult {
    /// The order exists upstream.
    Placed(PlacedFacts),
    /// Xoxoday refused; `failure` is `{httpStatus, errorId, errorInfo, error}`.
    /// `failed` only when no earlier attempt may have created the order,
    /// else `reconciling` (decided in the write-back, from the audit).
    Failed {
        /// The refusal as sent.
        failure: serde_json::Value,
        /// First check when the order stays reconciling.
        check_in: Duration,
    },
    /// Unknown outcome: reconcile by poNumber.
    Reconciling {
        /// Why unknown.
        reason: String,
        /// First check delay.
        check_in: Duration,
    },
    /// No order was created (throttled, token, account-wide): back to
    /// `accepted` later; the attempt is not counted.
    Deferred {
        /// Why.
        reason: String,
        /// Delay before the next attempt.
        retry_in: Duration,
    },
}

const GUARD: &str =
    formatcp!("where o.order_id = $1 and o.status = {PLACING} and o.lease_token = $2");

/// The stored history of the order `o` shows that no placeOrder of its
/// poNumber can have created an order ([`ONLY_REFUSED`]) and no delivery
/// webhook is stored ([`HOOKED`]). Only then may a refusal make the order
/// `failed`; this holds by construction, whatever `attempts` says (deferred
/// answers decrement it).
const CLEAN: &str = formatcp!("({ONLY_REFUSED} and not {HOOKED})");

/// One placeOrder write-back: the exchange's answer and what it led to,
/// applied under the lease that sent the call.
#[derive(Debug)]
pub struct WriteBack {
    /// The order.
    pub order: OrderId,
    /// The lease that sent the call: the order is updated only under it.
    pub lease: Uuid,
    /// The call's exchange row, completed unconditionally.
    pub exchange_id: Uuid,
    /// The call's answer half.
    pub end: ExchangeEnd,
    /// What the answer led to.
    pub result: PlaceResult,
}

impl Store {
    /// Completes the exchange and applies the result under the lease, in
    /// a transaction of its own; `None` when the lease was lost (the audit
    /// row is still completed).
    pub async fn record_place_result(&self, wb: &WriteBack) -> StoreResult<Option<Order>> {
        let mut tx = self.pool.begin().await?;
        let row = write_back(&mut tx, wb).await?;
        tx.commit().await?;
        Ok(row)
    }

    /// The write-backs `wbs` in one transaction (group commit, issue 11),
    /// one answer each in the same order. Each is fenced by its own lease
    /// exactly as alone; they are applied in order id order, so two
    /// batches never lock the same orders in opposite orders. A row lock
    /// held by someone else fails the batch within `lock_timeout` rather
    /// than keep the others waiting with it, and the server ends a batch
    /// left idle for `idle_limit` (its client gone). One error rolls all
    /// of them back: the caller then writes each alone.
    pub async fn record_place_results<W>(
        &self,
        wbs: &[W],
        lock_timeout: Duration,
        idle_limit: Duration,
    ) -> StoreResult<Vec<Option<Order>>>
    where
        W: std::ops::Deref<Target = WriteBack>,
    {
        let mut by_order: Vec<usize> = (0..wbs.len()).collect();
        by_order.sort_by_key(|&i| (wbs[i].order.as_uuid(), wbs[i].exchange_id));
        let mut rows: Vec<Option<Order>> = (0..wbs.len()).map(|_| None).collect();
        let mut tx = self.pool.begin().await?;
        // A batch on a connection that dies mid-way would keep its
        // members' rows locked until the server noticed: the server ends
        // it once it has waited that long for the next statement.
        sqlx::query(
            "select set_config('lock_timeout', $1, true),
                    set_config('idle_in_transaction_session_timeout', $2, true)",
        )
        .bind(super::setting_ms(lock_timeout))
        .bind(super::setting_ms(idle_limit))
        .execute(&mut *tx)
        .await?;
        for i in by_order {
            rows[i] = write_back(&mut tx, &wbs[i]).await?;
        }
        tx.commit().await?;
        Ok(rows)
    }
}

/// One write-back on `conn`, inside the caller's transaction.
async fn write_back(conn: &mut sqlx::PgConnection, wb: &WriteBack) -> StoreResult<Option<Order>> {
    complete_exchange(conn, wb.exchange_id, &wb.end).await?;
    let result = &wb.result;
    let sql = result_sql(result);
    let q = sqlx::query_as::<_, OrderRow>(&sql)
        .bind(wb.order.as_uuid())
        .bind(wb.lease);
    let q = match result {
        PlaceResult::Placed(f) => f.bind(q).bind(f.next_check_in.map(|d| d.as_secs_f64())),
        PlaceResult::Failed { failure, check_in } => {
            q.bind(pg_json(failure)).bind(check_in.as_secs_f64())
        }
        PlaceResult::Reconciling {
            reason,
            check_in: d,
        }
        | PlaceResult::Deferred {
            reason,
            retry_in: d,
        } => q.bind(pg_text(reason).into_owned()).bind(d.as_secs_f64()),
    };
    let row = q.fetch_optional(&mut *conn).await?;
    if let (Some(_), PlaceResult::Placed(f)) = (&row, result) {
        insert_vouchers(conn, &f.vouchers).await?;
    }
    Ok(row.map(OrderRow::into_order))
}

/// A guarded `update … returning` order query under construction.
pub(super) type OrderQuery<'q> =
    sqlx::query::QueryAs<'q, sqlx::Postgres, OrderRow, sqlx::postgres::PgArguments>;

impl PlacedFacts {
    /// Binds the facts as the next eight parameters, in the order of the
    /// `set status = …, upstream_order_status = …` lists that adopt them.
    pub(super) fn bind<'q>(&'q self, q: OrderQuery<'q>) -> OrderQuery<'q> {
        q.bind(self.status.unwrap_or(OrderStatus::PendingDelivery).as_str())
            .bind(self.xoxoday_order_id)
            .bind(pg_opt(self.currency_code.as_deref()))
            .bind(self.order_total)
            .bind(self.order_discount)
            .bind(self.amount_charged)
            .bind(pg_text(&self.delivery_status).into_owned())
            .bind(pg_opt(self.order_status.as_deref()))
    }
}

/// The guarded UPDATE for each result; `$1` order, `$2` lease token.
fn result_sql(result: &PlaceResult) -> String {
    let set = match result {
        PlaceResult::Placed(_) => format!(
            "status = $3, xoxoday_order_id = $4, currency_code = $5, order_total = $6,
             order_discount = $7, amount_charged = $8, delivery_status = $9,
             upstream_order_status = $10, status_reason = null, failure = null,
             next_check_at = case when $11::float8 is not null and {HOOKED} then now()
                                  else now() + make_interval(secs => $11) end,
             settled_at = coalesce(o.settled_at, now())"
        ),
        PlaceResult::Failed { .. } => format!(
            "status = case when {CLEAN} then {FAILED} else {RECONCILING} end,
             failure = case when {CLEAN} then $3 else null end,
             status_reason = case when {CLEAN} then null
               else 'placeOrder refused (' || coalesce($3->>'errorId', 'HTTP ' || ($3->>'httpStatus'))
                    || ') but an earlier attempt may have created the order' end,
             next_check_at = case when {CLEAN} then o.next_check_at
                                  else now() + make_interval(secs => $4) end,
             settled_at = case when {CLEAN} then coalesce(o.settled_at, now())
                               else o.settled_at end"
        ),
        PlaceResult::Reconciling { .. } => format!(
            "status = {RECONCILING}, status_reason = $3,
             next_check_at = case when {HOOKED} then now()
                                  else now() + make_interval(secs => $4) end"
        ),
        PlaceResult::Deferred { .. } => format!(
            "status = case when {HOOKED} then {RECONCILING} else {ACCEPTED} end,
             status_reason = case when {HOOKED}
               then 'answer gave no order, but a stored delivery webhook proves one exists'
               else $3 end,
             next_check_at = case when {HOOKED} then now() else o.next_check_at end,
             attempts = greatest(o.attempts - 1, 0),
             next_attempt_at = now() + make_interval(secs => $4)"
        ),
    };
    format!(
        "update orders o set {set}, lease_token = null, lease_until = null, lease_sent = false,
           last_place_ended_at = now()
         {GUARD} returning {ORDER_COLUMNS}"
    )
}
