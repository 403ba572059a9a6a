//! Operator actions on one order (issue 12): `orders recheck` and `orders
//! resolve`. The order is claimed like a reconciler check (a fresh
//! `lease_token`, only when no live lease exists and its status is one the
//! action allows), and every write-back is guarded by that claim and the
//! claimed status, so two operators, or an operator and the reconciler,
//! can never both act on it. An adopted answer goes through the
//! reconciler's own statements ([`super::reconcile::apply_check_end`]).

use std::time::Duration;

use const_format::formatcp;

use uuid::Uuid;

use super::{
    Store, StoreResult,
    exchanges::{ExchangeEnd, complete_exchange},
    orders::{ORDER_COLUMNS, OrderRow},
    proof::{HOOKED, ONLY_REFUSED},
    reconcile::{CheckEnd, CheckRecord, CheckRow, apply_check_end},
    status::{FAILED, NEEDS_REVIEW},
    timeline::{act_as, note_unchanged},
};
use crate::domain::{Order, OrderId, OrderStatus, safe_text::pg_text};

/// Why an order could not be claimed for an operator action.
#[derive(Debug)]
pub enum Claim {
    /// Claimed: act, then finish with [`Store::finish_operator_action`].
    Claimed(Box<CheckRow>),
    /// Its status does not allow the action (the status it has).
    WrongStatus(String),
    /// Someone (the dispatcher, the reconciler, another operator) holds it now.
    Busy,
}

/// When the operator's word "no upstream order exists" may be taken
/// (`resolve --as failed`) for the order `o`, with a settle window of `$5`
/// seconds: every placeOrder attempt was a clean refusal (none can have
/// created an order; a stored webhook is then the contradiction under
/// review), or else no stored delivery webhook proves an order, no attempt
/// is in flight, and the last one ended at least a settle window ago
/// (Xoxoday may create an order late).
const MAY_FAIL: &str = formatcp!(
    "({ONLY_REFUSED}
      or (not {HOOKED}
          and (o.last_place_started_at is null
               or (o.last_place_ended_at is not null
                   and o.last_place_ended_at + make_interval(secs => $5) <= now()))))"
);

/// How an operator action ends.
#[derive(Debug)]
pub enum OperatorEnd {
    /// Apply a lookup's conclusion under the reconciler's rules.
    Check(CheckEnd),
    /// `resolve --as failed`: the operator's word that no upstream order
    /// exists, taken only under [`MAY_FAIL`] with this settle window.
    Fail(String, Duration),
    /// Nothing changes; the claim is released.
    Keep,
}

impl Store {
    /// Claims `order` for an operator when its status is one of `statuses`
    /// and no live lease holds it.
    pub async fn claim_for_operator(
        &self,
        order: OrderId,
        statuses: &[OrderStatus],
        lease: Duration,
    ) -> StoreResult<Claim> {
        let sql = format!(
            "update orders o set lease_token = gen_random_uuid(),
               lease_until = now() + make_interval(secs => $3)
             where o.order_id = $1 and o.status = any($2)
               and (o.lease_until is null or o.lease_until < now())
             returning {ORDER_COLUMNS}, o.first_sent_at, o.last_place_started_at,
                       o.last_place_ended_at, o.next_check_at, o.checks, {HOOKED} as webhook_seen,
                       clock_timestamp() as claimed_at"
        );
        let statuses: Vec<String> = statuses.iter().map(|s| s.as_str().to_owned()).collect();
        let claimed: Option<CheckRecord> = sqlx::query_as(&sql)
            .bind(order.as_uuid())
            .bind(&statuses)
            .bind(lease.as_secs_f64())
            .fetch_optional(&self.pool)
            .await?;
        if let Some(c) = claimed {
            return Ok(Claim::Claimed(Box::new(c.into())));
        }
        let status: String = sqlx::query_scalar("select status from orders where order_id = $1")
            .bind(order.as_uuid())
            .fetch_one(&self.pool)
            .await?;
        Ok(if statuses.contains(&status) {
            Claim::Busy
        } else {
            Claim::WrongStatus(status)
        })
    }

    /// Why `resolve --as failed` may not be taken now for `order` (see
    /// [`MAY_FAIL`]), or `None` when it may. Asked before the lookup, so a
    /// "not found" is only ever trusted after the settle window.
    pub async fn fail_refusal(
        &self,
        order: OrderId,
        settle: Duration,
    ) -> StoreResult<Option<String>> {
        let sql = formatcp!(
            "select case
               when {ONLY_REFUSED} then null
               when {HOOKED}
                 then 'a stored delivery webhook and a placeOrder attempt that may have \
                       created the order prove Xoxoday has it; use --as completed once a \
                       lookup finds it'
               when o.last_place_started_at is not null and o.last_place_ended_at is null
                 then 'a placeOrder attempt may still be in flight'
               when o.last_place_ended_at + make_interval(secs => $2) > now()
                 then 'the last placeOrder attempt ended at '
                      || to_char(o.last_place_ended_at at time zone 'UTC', 'YYYY-MM-DD HH24:MI:SS')
                      || ' UTC and Xoxoday may still create the order; try again after '
                      || to_char((o.last_place_ended_at + make_interval(secs => $2))
                                 at time zone 'UTC', 'HH24:MI:SS')
                      || ' UTC (XOXODAY_SETTLE_WINDOW ' || $2::text || 's)'
             end
             from orders o where o.order_id = $1"
        );
        Ok(sqlx::query_scalar(sql)
            .bind(order.as_uuid())
            .bind(settle.as_secs_f64())
            .fetch_one(&self.pool)
            .await?)
    }

    /// Completes the lookup's audit row and applies `end` under the claim,
    /// recorded with `actor` and `reason`, in one transaction. When the status
    /// stays, a timeline row still says the action happened. `None` when
    /// the claim was lost (nothing changed but the audit).
    pub async fn finish_operator_action(
        &self,
        c: &CheckRow,
        exchange: Option<(Uuid, &ExchangeEnd)>,
        end: &OperatorEnd,
        actor: &str,
        reason: &str,
    ) -> StoreResult<Option<Order>> {
        let mut tx = self.pool.begin().await?;
        act_as(&mut tx, actor, Some(reason)).await?;
        if let Some((id, e)) = exchange {
            complete_exchange(&mut tx, id, e).await?;
        }
        let order = &c.order;
        let row = match end {
            OperatorEnd::Check(end) => apply_check_end(&mut tx, c, end).await?,
            OperatorEnd::Fail(why, settle) => {
                let sql = format!(
                    "update orders o set status = {FAILED}, status_reason = $3,
                       failure = jsonb_build_object('operator', $4::text, 'reason', $3::text),
                       lease_token = null, lease_until = null, next_check_at = null,
                       settled_at = coalesce(o.settled_at, now())
                     where o.order_id = $1 and o.lease_token = $2 and o.status = {NEEDS_REVIEW}
                       and {MAY_FAIL}
                     returning {ORDER_COLUMNS}"
                );
                sqlx::query_as(&sql)
                    .bind(order.id.as_uuid())
                    .bind(c.order.lease_token)
                    .bind(pg_text(why).into_owned())
                    .bind(pg_text(actor).into_owned())
                    .bind(settle.as_secs_f64())
                    .fetch_optional(&mut *tx)
                    .await?
            }
            OperatorEnd::Keep => release(&mut tx, c).await?,
        };
        let row = row.map(OrderRow::into_order);
        if let Some(r) = &row
            && r.status == order.status
        {
            note_unchanged(&mut tx, order.id, order.status.as_str(), actor, reason).await?;
        }
        tx.commit().await?;
        Ok(row)
    }

    /// Gives the claim back with nothing changed (the action could not run).
    pub async fn release_operator_claim(&self, c: &CheckRow) -> StoreResult<()> {
        let mut conn = self.pool.acquire().await?;
        release(&mut conn, c).await?;
        Ok(())
    }
}

async fn release(conn: &mut sqlx::PgConnection, c: &CheckRow) -> StoreResult<Option<OrderRow>> {
    let sql = format!(
        "update orders o set lease_token = null, lease_until = null
         where o.order_id = $1 and o.lease_token = $2 returning {ORDER_COLUMNS}"
    );
    Ok(sqlx::query_as(&sql)
        .bind(c.order.id.as_uuid())
        .bind(c.order.lease_token)
        .fetch_optional(conn)
        .await?)
}
