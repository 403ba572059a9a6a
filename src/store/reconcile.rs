//! Reconciler claims and fenced write-backs (issue 4, invariants 1 and 3).
//!
//! A check claims a `reconciling` or `pending_delivery` order by giving it a
//! fresh `lease_token` and `lease_until` (status unchanged), skipping rows
//! another worker holds. Every write-back is guarded by `status` AND
//! `lease_token`, in one short transaction that also completes the audit row,
//! so a stalled worker that wakes up late changes nothing once a newer claim
//! (or a webhook) moved the order on. Reschedules keep a `next_check_at`
//! that someone else (a webhook) moved while the check ran. Text from
//! Xoxoday (facts, reasons) is bound through `domain::safe_text`.
//!
//! A stored delivery webhook for the order proves that Xoxoday has it: the
//! re-placement statement itself refuses such an order (`not exists` over
//! `webhook_events`), so the rule holds however late the webhook lands. A
//! refused review or re-placement releases the claim and checks again now.

use super::status::{ACCEPTED, NEEDS_REVIEW, PENDING_DELIVERY, PLACING, RECONCILING};
use const_format::formatcp;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;
use uuid::Uuid;

use super::{
    Store, StoreResult,
    exchanges::{Begin, ExchangeEnd, ExchangeStart, complete_exchange, take_slot_or_roll_back},
    orders::{ORDER_COLUMNS, OrderRow},
    outcomes::{OrderQuery, PlacedFacts},
    proof::HOOKED,
    rate_limit::SlotAsk,
    timeline::{RECONCILER, act_as},
    vouchers::insert_vouchers,
};
use crate::domain::{Order, OrderId, safe_text::pg_text};

/// A claimed order with what the reconciler needs beyond the order itself.
#[derive(Debug)]
pub struct CheckRow {
    /// The order (its `lease_token` is this claim's).
    pub order: Order,
    /// When the first placeOrder attempt began (aging counts from here).
    pub first_sent_at: Option<DateTime<Utc>>,
    /// When the last placeOrder attempt began.
    pub last_place_started_at: Option<DateTime<Utc>>,
    /// When it ended (answer, error, timeout or expired lease): the start of
    /// the settle window. `None` after a start: a call may be in flight.
    pub last_place_ended_at: Option<DateTime<Utc>>,
    /// `next_check_at` as claimed; a write-back keeps a value moved since.
    pub next_check_at: Option<DateTime<Utc>>,
    /// Checks since the last placeOrder attempt (backoff exponent).
    pub checks: i32,
    /// A delivery webhook for this order is stored (at claim time): proof
    /// that the order exists upstream, whatever getOrderDetails says.
    pub webhook_seen: bool,
    /// The database clock when this claim was made. The settle window is
    /// measured on the database clock, like `last_place_ended_at`, never
    /// on a replica's own clock (which may run ahead).
    pub claimed_at: DateTime<Utc>,
}

/// [`CheckRow`] as read.
#[derive(sqlx::FromRow)]
pub(super) struct CheckRecord {
    #[sqlx(flatten)]
    row: OrderRow,
    first_sent_at: Option<DateTime<Utc>>,
    last_place_started_at: Option<DateTime<Utc>>,
    last_place_ended_at: Option<DateTime<Utc>>,
    next_check_at: Option<DateTime<Utc>>,
    checks: i32,
    webhook_seen: bool,
    claimed_at: DateTime<Utc>,
}

impl From<CheckRecord> for CheckRow {
    fn from(r: CheckRecord) -> Self {
        Self {
            order: r.row.into_order(),
            first_sent_at: r.first_sent_at,
            last_place_started_at: r.last_place_started_at,
            last_place_ended_at: r.last_place_ended_at,
            next_check_at: r.next_check_at,
            checks: r.checks,
            webhook_seen: r.webhook_seen,
            claimed_at: r.claimed_at,
        }
    }
}

/// How a check ends.
#[derive(Debug)]
pub enum CheckEnd {
    /// Xoxoday has the order: adopt its state; pending ones are polled again after `poll`.
    Adopt(PlacedFacts, Duration),
    /// No conclusion: look again after `delay` (`counted`: bump the backoff exponent).
    Retry {
        /// Delay before the next check.
        delay: Duration,
        /// Why, kept in `status_reason` (reconciling orders only).
        reason: String,
        /// Whether this check counts towards the backoff.
        counted: bool,
    },
    /// Budget exhausted: `needs_review`, never retried automatically.
    Review(String),
    /// Confirmed absent: back to `placing` under this lease, to place again.
    Replace,
}

const GUARD: &str = "where o.order_id = $1 and o.lease_token = $2 and o.status = $3";

impl Store {
    /// Claims up to `limit` due checks no live lease holds.
    pub async fn claim_due_checks(
        &self,
        limit: i64,
        lease: Duration,
    ) -> StoreResult<Vec<CheckRow>> {
        claim_due_checks(&self.pool, limit, lease).await
    }

    /// One reconciler pass in one transaction (issue 11: an idle pass costs
    /// Postgres one): expires dead `placing` leases
    /// (`orders::expire_placing_leases`), fails unsent orders older than
    /// `accepted_max_age` (`aging::expire_unsent_orders`), then claims up
    /// to `limit` due checks, which see what the expiry made due.
    pub async fn reconcile_pass(
        &self,
        place_timeout: Duration,
        accepted_max_age: Duration,
        limit: i64,
        lease: Duration,
    ) -> StoreResult<ReconcilePass> {
        let mut tx = self.pool.begin().await?;
        let expired_leases = super::orders::expire_placing_leases(&mut *tx, place_timeout).await?;
        let expired_unsent = super::aging::expire_unsent_orders(&mut *tx, accepted_max_age).await?;
        let claimed = claim_due_checks(&mut *tx, limit, lease).await?;
        tx.commit().await?;
        Ok(ReconcilePass {
            expired_leases,
            expired_unsent,
            claimed,
        })
    }

    /// Folds up to `batch` of the status counters' deltas into their totals
    /// (migration 0046), in a statement of its own; 0 when another fold is
    /// running (it never waits for one).
    pub async fn fold_status_deltas(&self, batch: i32) -> StoreResult<i64> {
        Ok(sqlx::query_scalar("select fold_order_status_deltas($1)")
            .bind(batch)
            .fetch_one(&self.pool)
            .await?)
    }

    /// Extends a lease still held; false when it was lost.
    pub async fn renew_lease(
        &self,
        order: OrderId,
        token: Uuid,
        lease: Duration,
    ) -> StoreResult<bool> {
        let done = sqlx::query(
            "update orders set lease_until = now() + make_interval(secs => $3)
             where order_id = $1 and lease_token = $2",
        )
        .bind(order.as_uuid())
        .bind(token)
        .bind(lease.as_secs_f64())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Inserts the audit row of a getOrderDetails about to be sent, only
    /// while the lease is ours, then takes its rate slot, in one transaction
    /// (see `begin_place_attempt`). Only [`Begin::Send`] allows the send.
    pub async fn begin_lookup(
        &self,
        order: OrderId,
        token: Uuid,
        start: ExchangeStart<'_>,
        slot: SlotAsk,
    ) -> StoreResult<Begin> {
        let mut tx = self.pool.begin().await?;
        let attempt: Option<i32> = sqlx::query_scalar(
            "insert into upstream_exchanges
               (exchange_id, order_id, operation, attempt, method, url, request_body)
             select $3, o.order_id, $4, o.attempts, $5, $6, $7 from orders o
             where o.order_id = $1 and o.lease_token = $2
             returning coalesce(attempt, 0)",
        )
        .bind(order.as_uuid())
        .bind(token)
        .bind(start.exchange_id)
        .bind(start.operation)
        .bind(start.method)
        .bind(start.url)
        .bind(start.request_body)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(attempt) = attempt else {
            return Ok(Begin::LeaseLost);
        };
        Ok(match take_slot_or_roll_back(tx, slot).await? {
            Ok(stamped_after) => Begin::Send {
                attempt,
                stamped_after,
            },
            Err(wait) => Begin::NoSlot(wait),
        })
    }

    /// Completes the lookup's audit row (if any) and applies `end` under the
    /// claim; `None` when the claim was lost (nothing changed but the audit).
    pub async fn finish_check(
        &self,
        c: &CheckRow,
        exchange: Option<(Uuid, &ExchangeEnd)>,
        end: &CheckEnd,
    ) -> StoreResult<Option<Order>> {
        let mut tx = self.pool.begin().await?;
        act_as(&mut tx, RECONCILER, None).await?;
        if let Some((id, e)) = exchange {
            complete_exchange(&mut tx, id, e).await?;
        }
        let row = apply_check_end(&mut tx, c, end).await?;
        tx.commit().await?;
        Ok(row.map(OrderRow::into_order))
    }

    /// Puts a claimed `placing` order back in the queue without counting an
    /// attempt (no slot under the shared rate limit, or a pause).
    pub async fn release_to_accepted(
        &self,
        order: OrderId,
        token: Uuid,
        delay: Duration,
        reason: &str,
    ) -> StoreResult<bool> {
        let done = sqlx::query(formatcp!(
            "update orders set status = {ACCEPTED}, status_reason = $4, lease_token = null,
               lease_until = null, next_attempt_at = now() + make_interval(secs => $3)
             where order_id = $1 and lease_token = $2 and status = {PLACING}"
        ))
        .bind(order.as_uuid())
        .bind(token)
        .bind(delay.as_secs_f64())
        .bind(reason)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }
}

/// Applies `end` under the claim `c` inside the caller's transaction (the
/// reconciler's and an operator's lookups share these rules); `None` when
/// the claim was lost.
pub(super) async fn apply_check_end(
    tx: &mut sqlx::PgConnection,
    c: &CheckRow,
    end: &CheckEnd,
) -> StoreResult<Option<OrderRow>> {
    let row = match end {
        CheckEnd::Adopt(f, poll) => {
            let row = f
                .bind(guarded(&adopt_sql(), c))
                .bind(poll.as_secs_f64())
                .fetch_optional(&mut *tx)
                .await?;
            if row.is_some() {
                insert_vouchers(&mut *tx, &f.vouchers).await?;
            }
            row
        }
        CheckEnd::Retry {
            delay,
            reason,
            counted,
        } => {
            guarded(&retry_sql(), c)
                .bind(delay.as_secs_f64())
                .bind(pg_text(reason).into_owned())
                .bind(*counted)
                .fetch_optional(&mut *tx)
                .await?
        }
        CheckEnd::Review(reason) => {
            let row = guarded(&review_sql(), c)
                .bind(pg_text(reason).into_owned())
                .fetch_optional(&mut *tx)
                .await?;
            or_check_now(&mut *tx, c, row).await?
        }
        CheckEnd::Replace => {
            let row = guarded(&replace_sql(), c).fetch_optional(&mut *tx).await?;
            or_check_now(&mut *tx, c, row).await?
        }
    };
    Ok(row)
}

/// A webhook may have moved `next_check_at` ($4 is the claimed value) while
/// the check ran: then its value wins.
const KEEP_MOVED: &str = "case when o.next_check_at is distinct from $4 then o.next_check_at";

fn adopt_sql() -> String {
    format!(
        "update orders o set status = $5, xoxoday_order_id = $6, currency_code = $7,
           order_total = $8, order_discount = $9, amount_charged = $10, delivery_status = $11,
           upstream_order_status = $12, status_reason = null, failure = null,
           lease_token = null, lease_until = null, checks = 0,
           next_check_at = case when $5 <> {PENDING_DELIVERY} then null
                                {} else now() + make_interval(secs => $13) end,
           settled_at = coalesce(o.settled_at, now())
         {GUARD} returning {ORDER_COLUMNS}",
        KEEP_MOVED.replacen("case ", "", 1)
    )
}

fn retry_sql() -> String {
    format!(
        "update orders o set lease_token = null, lease_until = null,
           next_check_at = {KEEP_MOVED} else now() + make_interval(secs => $5) end,
           status_reason = case when o.status = {RECONCILING} then $6 else o.status_reason end,
           checks = o.checks + case when $7 then 1 else 0 end
         {GUARD} returning {ORDER_COLUMNS}"
    )
}

/// Only when no webhook moved `next_check_at` since the claim ($4).
const UNMOVED: &str = "o.next_check_at is not distinct from $4::timestamptz";

fn review_sql() -> String {
    format!(
        "update orders o set status = {NEEDS_REVIEW}, status_reason = $5,
           lease_token = null, lease_until = null, next_check_at = null
         {GUARD} and {UNMOVED} returning {ORDER_COLUMNS}"
    )
}

/// Never for an order a stored webhook proves to exist upstream.
fn replace_sql() -> String {
    format!(
        "update orders o set status = {PLACING}, checks = 0
         {GUARD} and {UNMOVED} and not {HOOKED} returning {ORDER_COLUMNS}"
    )
}

/// A review or re-placement its guard refused (a webhook came): release the
/// claim, check again now. `row` is the guarded statement's result.
async fn or_check_now(
    tx: &mut sqlx::PgConnection,
    c: &CheckRow,
    row: Option<OrderRow>,
) -> StoreResult<Option<OrderRow>> {
    if row.is_some() {
        return Ok(row);
    }
    let sql = format!(
        "update orders o set lease_token = null, lease_until = null, next_check_at = now()
         {GUARD} returning {ORDER_COLUMNS}"
    );
    Ok(sqlx::query_as(&sql)
        .bind(c.order.id.as_uuid())
        .bind(c.order.lease_token)
        .bind(c.order.status.as_str())
        .fetch_optional(&mut *tx)
        .await?)
}

/// `$1..$4`: order, lease token, status and `next_check_at` as claimed.
fn guarded<'q>(sql: &'q str, c: &CheckRow) -> OrderQuery<'q> {
    sqlx::query_as::<_, OrderRow>(sql)
        .bind(c.order.id.as_uuid())
        .bind(c.order.lease_token)
        .bind(c.order.status.as_str())
        .bind(c.next_check_at)
}

/// What one [`Store::reconcile_pass`] did.
#[derive(Debug)]
pub struct ReconcilePass {
    /// `placing` leases expired.
    pub expired_leases: u64,
    /// Unsent orders failed as too old.
    pub expired_unsent: u64,
    /// The checks claimed.
    pub claimed: Vec<CheckRow>,
}

/// [`Store::claim_due_checks`] on `db`.
async fn claim_due_checks<'e>(
    db: impl PgExecutor<'e>,
    limit: i64,
    lease: Duration,
) -> StoreResult<Vec<CheckRow>> {
    let sql = format!(
        "update orders o set lease_token = gen_random_uuid(),
           lease_until = now() + make_interval(secs => $2)
         from (select order_id from orders
               where status in ({RECONCILING}, {PENDING_DELIVERY})
                 and next_check_at <= now()
                 and (lease_until is null or lease_until < now())
               order by next_check_at
               limit $1
               for update skip locked) due
         where o.order_id = due.order_id
         returning {ORDER_COLUMNS}, o.first_sent_at, o.last_place_started_at, o.last_place_ended_at,
                   o.next_check_at, o.checks, {HOOKED} as webhook_seen,
                   clock_timestamp() as claimed_at"
    );
    let claimed: Vec<CheckRecord> = sqlx::query_as(&sql)
        .bind(limit)
        .bind(lease.as_secs_f64())
        .fetch_all(db)
        .await?;
    Ok(claimed.into_iter().map(CheckRow::from).collect())
}
