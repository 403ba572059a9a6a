//! Read-only counts for `/metrics`, run on each scrape: O(orders in flight),
//! not O(all orders). Nothing here is written.

use const_format::formatcp;

use super::{
    Store, StoreResult,
    status::{ACCEPTED, NEEDS_REVIEW, PENDING_DELIVERY, PLACING, RECONCILING},
};
use crate::domain::OrderStatus;

/// Orders in one status and the age of the oldest of them.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusCount {
    /// The order status.
    pub status: OrderStatus,
    /// How many orders are in it.
    pub count: i64,
    /// Seconds since the oldest of them was created.
    pub oldest_age_seconds: f64,
}

/// The statement behind [`Store::order_status_counts`]: the statuses orders
/// only leave through an operator (completed, failed, canceled) come from
/// `order_status_totals` plus the deltas not folded into it yet, kept by
/// triggers (migrations 0041, 0046), with age 0;
/// every other status is counted live through its partial index, one
/// branch each so that each matches its index's predicate.
pub const STATUS_COUNTS: &str = formatcp!(
    "select status, n, age from (
          select {ACCEPTED} as status, count(*)::bigint as n,
                 coalesce(extract(epoch from now() - min(created_at)), 0)::float8 as age
            from orders where status = {ACCEPTED}
          union all
          select {PLACING}, count(*)::bigint,
                 coalesce(extract(epoch from now() - min(created_at)), 0)::float8
            from orders where status = {PLACING}
          union all
          select {RECONCILING}, count(*)::bigint,
                 coalesce(extract(epoch from now() - min(created_at)), 0)::float8
            from orders where status = {RECONCILING}
          union all
          select {PENDING_DELIVERY}, count(*)::bigint,
                 coalesce(extract(epoch from now() - min(created_at)), 0)::float8
            from orders where status = {PENDING_DELIVERY}
          union all
          select {NEEDS_REVIEW}, count(*)::bigint,
                 coalesce(extract(epoch from now() - min(created_at)), 0)::float8
            from orders where status = {NEEDS_REVIEW}
          union all
          select status, sum(orders)::bigint, 0::float8
            from (select status, orders from order_status_totals
                  union all
                  select status, orders::bigint from order_status_deltas) counted
           group by status) counts
        where n > 0"
);

impl Store {
    /// Orders per status, with the age of the oldest in each (0 for the
    /// counted statuses, see [`STATUS_COUNTS`]).
    pub async fn order_status_counts(&self) -> StoreResult<Vec<StatusCount>> {
        let rows: Vec<(String, i64, f64)> =
            sqlx::query_as(STATUS_COUNTS).fetch_all(&self.pool).await?;
        // The CHECK constraint on `orders.status` admits only known names.
        Ok(rows
            .into_iter()
            .filter_map(|(status, count, oldest_age_seconds)| {
                Some(StatusCount {
                    status: OrderStatus::parse(&status)?,
                    count,
                    oldest_age_seconds,
                })
            })
            .collect())
    }
}
