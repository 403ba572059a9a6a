//! Read-only counts for `/metrics`: one cheap aggregate over `orders`, run on
//! each scrape. Nothing here is written.

use super::{Store, StoreResult};
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

impl Store {
    /// Orders per status, with the age of the oldest in each.
    pub async fn order_status_counts(&self) -> StoreResult<Vec<StatusCount>> {
        let rows: Vec<(String, i64, f64)> = sqlx::query_as(
            "select status, count(*)::bigint,
                    coalesce(extract(epoch from now() - min(created_at)), 0)::float8
             from orders group by status",
        )
        .fetch_all(&self.pool)
        .await?;
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
