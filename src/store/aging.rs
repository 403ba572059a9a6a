//! Aging of orders that never left `accepted` (issue 9): one that was never
//! sent (no placeOrder exchange exists for it but those completed as
//! `not_sent`, so no order can exist upstream) and is older than
//! `ACCEPTED_MAX_AGE` becomes `failed` with the reason `expired_unsent`. The "never sent" test reads the audit in the
//! same statement that fails the order, and a claim (`placing`) or any
//! attempt excludes it, so a sent order can never be failed this way.

use super::status::{ACCEPTED, FAILED};
use const_format::formatcp;
use std::time::Duration;

use sqlx::PgExecutor;

use super::StoreResult;

/// `status_reason` of an order that expired before it was ever sent.
pub const EXPIRED_UNSENT: &str = "expired_unsent";

/// Fails every `accepted` order older than `max_age` that was never sent.
pub(super) async fn expire_unsent_orders<'e>(
    db: impl PgExecutor<'e>,
    max_age: Duration,
) -> StoreResult<u64> {
    let done = sqlx::query(formatcp!(
        "update orders o set status = {FAILED}, status_reason = $2,
           settled_at = coalesce(o.settled_at, now())
         where o.order_id in (select order_id from orders
                              where status = {ACCEPTED}
                                and created_at < now() - make_interval(secs => $1)
                              for update skip locked)
           and o.status = {ACCEPTED}
           and not exists (select 1 from upstream_exchanges x
                           where x.order_id = o.order_id and x.operation = 'place_order'
                             and not coalesce(x.outcome = 'not_sent'
                                              and x.response_status is null, false))"
    ))
    .bind(max_age.as_secs_f64())
    .bind(EXPIRED_UNSENT)
    .execute(db)
    .await?;
    Ok(done.rows_affected())
}
