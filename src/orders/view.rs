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
                let v = open_voucher(self.cipher(), &row)
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

    /// The view of `order` with its voucher rows already read (in position
    /// order), without another query.
    pub fn view_with(&self, order: Order, vouchers: &[VoucherRow]) -> Result<OrderView, ViewError> {
        opened(self.cipher(), order, vouchers)
    }

    /// One view.
    pub async fn view(&self, order: Order) -> Result<OrderView, ViewError> {
        let mut views = self.views(vec![order]).await?;
        Ok(views.remove(0))
    }
}

/// One order's view for an operator (`orders show`), whoever owns it.
pub async fn operator_view(
    store: &Store,
    cipher: &Cipher,
    order: Order,
) -> Result<OrderView, ViewError> {
    let rows = if order.xoxoday_order_id.is_some() {
        store.vouchers_for(&[order.id]).await?
    } else {
        Vec::new()
    };
    opened(cipher, order, &rows)
}

/// `order` with its voucher rows opened (none before Xoxoday created it).
fn opened(cipher: &Cipher, order: Order, rows: &[VoucherRow]) -> Result<OrderView, ViewError> {
    if order.xoxoday_order_id.is_none() {
        return Ok(OrderView {
            order,
            vouchers: Vec::new(),
        });
    }
    let vouchers = rows
        .iter()
        .map(|v| {
            open_voucher(cipher, v).map_err(|source| ViewError::Crypto {
                order: order.id,
                source,
            })
        })
        .collect::<Result<_, _>>()?;
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
