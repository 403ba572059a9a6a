//! What the HTTP layer asks of the orders, as use cases: the caller behind a
//! key, one order or a page of a caller's orders as views, and whether a
//! caller's key is still live. Reads are caller-scoped in the store, so a
//! view only ever reaches the order's owner; an empty read by a revoked key
//! is told apart from "nothing there" by asking the database, not the cache.

use std::sync::Arc;

use super::{
    AccessTokens, CallerCache, ServiceResult,
    callers::hash_key,
    view::{OrderView, ViewError},
};
use crate::{
    crypto::Cipher,
    domain::{Caller, CallerId, OrderFilter, OrderId},
    store::{Store, StoreResult},
};

/// Caller-scoped reads, order views with decrypted vouchers, and what
/// `/readyz` and `/metrics` report. Cheap to clone.
#[derive(Clone)]
pub struct OrderQueries {
    store: Store,
    /// Caller-key cache.
    callers: Arc<CallerCache>,
    /// Opens vouchers.
    cipher: Arc<Cipher>,
    /// The token pair's health, for `/metrics`.
    tokens: Arc<dyn AccessTokens>,
    /// `XOXODAY_LOW_BALANCE`: a balance under it is a `/readyz` warning.
    low_balance: Option<rust_decimal::Decimal>,
}

/// A page of a caller's orders, newest first.
#[derive(Debug)]
pub struct OrderPage {
    /// At most the filter's `limit` orders.
    pub orders: Vec<OrderView>,
    /// More orders follow the last one.
    pub more: bool,
}

impl OrderQueries {
    /// Reads over `store`; `cipher` opens vouchers.
    pub fn new(store: Store, cipher: Arc<Cipher>, tokens: Arc<dyn AccessTokens>) -> Self {
        Self {
            store,
            callers: Arc::new(CallerCache::default()),
            cipher,
            tokens,
            low_balance: None,
        }
    }

    /// Warns (in `/readyz` and `/metrics`) under this wallet balance.
    pub fn with_low_balance(mut self, low: Option<rust_decimal::Decimal>) -> Self {
        self.low_balance = low;
        self
    }

    /// `XOXODAY_LOW_BALANCE`, if set.
    pub(super) fn low_balance(&self) -> Option<rust_decimal::Decimal> {
        self.low_balance
    }

    /// Persistence, for the view and health reads of this role.
    pub(super) fn store(&self) -> &Store {
        &self.store
    }

    /// Encryption at rest, for opening vouchers.
    pub(super) fn cipher(&self) -> &Cipher {
        &self.cipher
    }

    /// The token pair, for `/metrics`.
    pub(super) fn tokens(&self) -> &Arc<dyn AccessTokens> {
        &self.tokens
    }

    /// Drops a cached caller whose key turned out revoked.
    pub(super) fn forget_caller(&self, caller: &Caller) {
        self.callers.forget(&caller.key_hash);
    }

    /// The caller owning the presented API key, if it is live.
    pub async fn authenticate(&self, presented: &str) -> ServiceResult<Option<Caller>> {
        Ok(self.callers.authenticate(&self.store, presented).await?)
    }

    /// Whether `caller`'s key is still live, asked of the database.
    pub async fn caller_still_live(&self, caller: &Caller) -> ServiceResult<bool> {
        Ok(self.callers.still_live(&self.store, caller).await?)
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
