//! What the HTTP layer asks of the orders, as use cases: the caller behind a
//! key, one order or a page of a caller's orders as views, and whether a
//! caller's key is still live. Reads are caller-scoped in the store, so a
//! view only ever reaches the order's owner; an empty read by a revoked key
//! is told apart from "nothing there" by asking the database, not the cache.

use super::{
    OrderService,
    callers::hash_key,
    view::{OrderView, ViewError},
};
use crate::{
    domain::{Caller, CallerId, OrderFilter, OrderId},
    store::StoreResult,
};

/// A page of a caller's orders, newest first.
#[derive(Debug)]
pub struct OrderPage {
    /// At most the filter's `limit` orders.
    pub orders: Vec<OrderView>,
    /// More orders follow the last one.
    pub more: bool,
}

impl OrderService {
    /// The caller owning the presented API key, if it is live.
    pub async fn authenticate(&self, presented: &str) -> StoreResult<Option<Caller>> {
        self.callers.authenticate(&self.store, presented).await
    }

    /// Whether `caller`'s key is still live, asked of the database.
    pub async fn caller_still_live(&self, caller: &Caller) -> StoreResult<bool> {
        self.callers.still_live(&self.store, caller).await
    }

    /// Stores a new API key (plain text `key`, stored hashed) for `caller`.
    pub async fn add_api_key(&self, caller: &str, key: &str) -> StoreResult<CallerId> {
        self.store.insert_api_key(caller, &hash_key(key)).await
    }

    /// One of `caller`'s orders with its vouchers; `None` when it has no
    /// such order (or its key was revoked).
    pub async fn find_order_view(
        &self,
        caller: &Caller,
        id: OrderId,
    ) -> Result<Option<OrderView>, ViewError> {
        match self.store.find_order(caller, id).await? {
            Some(row) => Ok(Some(self.view(row).await?)),
            None => Ok(None),
        }
    }

    /// A page of `caller`'s orders matching `filter` (one row more is read
    /// to learn whether more follow).
    pub async fn list_order_views(
        &self,
        caller: &Caller,
        filter: &OrderFilter,
    ) -> Result<OrderPage, ViewError> {
        let limit = filter.limit;
        let probe = OrderFilter {
            limit: limit + 1,
            ..filter.clone()
        };
        let mut rows = self.store.list_orders(caller, &probe).await?;
        if rows.is_empty() {
            return Ok(OrderPage {
                orders: Vec::new(),
                more: false,
            });
        }
        let more = rows.len() as i64 > limit;
        rows.truncate(limit as usize);
        Ok(OrderPage {
            orders: self.views(rows).await?,
            more,
        })
    }
}
