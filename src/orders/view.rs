//! An order as its owner sees it: the row plus decrypted vouchers. Only
//! caller-scoped reads build views, so vouchers reach their owner only.

use std::collections::HashMap;

use secrecy::SecretString;

use super::{OrderQueries, ServiceError, outcome::voucher_aad};
use crate::{
    crypto::Cipher,
    domain::{Order, OrderId, Voucher},
    store::{Store, StoreError, vouchers::VoucherRow},
};

/// An order with its vouchers.
#[derive(Debug, Clone)]
pub struct OrderView {
    /// The stored order.
    pub order: Order,
    /// Decrypted vouchers (empty until delivered).
    pub vouchers: Vec<Voucher>,
}

/// Reading an order view failed.
#[derive(Debug, thiserror::Error)]
pub enum ViewError {
    /// Storage failed.
    #[error(transparent)]
    Service(#[from] ServiceError),
    /// A voucher could not be decrypted (missing key or tampering).
    #[error("voucher of order {order} cannot be decrypted: {source}")]
    Crypto {
        /// Which order.
        order: OrderId,
        /// Why.
        source: crate::crypto::CryptoError,
    },
}

impl From<StoreError> for ViewError {
    fn from(e: StoreError) -> Self {
        Self::Service(e.into())
    }
}

impl OrderQueries {
    /// Views for rows, loading vouchers (one query) only for orders that
    /// Xoxoday created.
    pub async fn views(&self, orders: Vec<Order>) -> Result<Vec<OrderView>, ViewError> {
        let with_upstream: Vec<OrderId> = orders
            .iter()
            .filter(|o| o.xoxoday_order_id.is_some())
            .map(|o| o.id)
            .collect();
        let mut by_order: HashMap<uuid::Uuid, Vec<Voucher>> = HashMap::new();
        if !with_upstream.is_empty() {
            for row in self.store().vouchers_for(&with_upstream).await? {
                let order = OrderId::from_uuid(row.order_id);
                let v = self
                    .open_voucher(&row)
                    .map_err(|source| ViewError::Crypto { order, source })?;
                by_order.entry(row.order_id).or_default().push(v);
            }
        }
        Ok(orders
            .into_iter()
            .map(|order| OrderView {
                vouchers: by_order.remove(&order.id.as_uuid()).unwrap_or_default(),
                order,
            })
            .collect())
    }

    /// One view.
    pub async fn view(&self, order: Order) -> Result<OrderView, ViewError> {
        let mut views = self.views(vec![order]).await?;
        Ok(views.remove(0))
    }

    fn open_voucher(&self, row: &VoucherRow) -> Result<Voucher, crate::crypto::CryptoError> {
        open_voucher(self.cipher(), row)
    }
}

/// One order's view for an operator (`orders show`), whoever owns it.
pub async fn operator_view(
    store: &Store,
    cipher: &Cipher,
    order: Order,
) -> Result<OrderView, ViewError> {
    let mut vouchers = Vec::new();
    if order.xoxoday_order_id.is_some() {
        for v in store.vouchers_for(&[order.id]).await? {
            let opened = open_voucher(cipher, &v).map_err(|source| ViewError::Crypto {
                order: order.id,
                source,
            })?;
            vouchers.push(opened);
        }
    }
    Ok(OrderView { order, vouchers })
}

fn open_voucher(cipher: &Cipher, row: &VoucherRow) -> Result<Voucher, crate::crypto::CryptoError> {
    let order = OrderId::from_uuid(row.order_id);
    let open = |blob: &[u8], field: &str| {
        cipher
            .decrypt(
                &row.key_id,
                blob,
                voucher_aad(order, row.position, field).as_bytes(),
            )
            .map(|bytes| SecretString::from(String::from_utf8_lossy(&bytes).into_owned()))
    };
    Ok(Voucher {
        code: open(&row.code_encrypted, "code")?,
        pin: row
            .pin_encrypted
            .as_deref()
            .map(|p| open(p, "pin"))
            .transpose()?,
        validity: row.validity.clone(),
        voucher_type: row.voucher_type.clone(),
        amount: row.amount,
        currency: row.currency.clone(),
        country: row.country.clone(),
    })
}
