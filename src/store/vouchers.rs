//! Encrypted vouchers. This module only moves ciphertext; `crypto` seals it.
//! The plaintext fields (validity, type, currency, country) come from
//! Xoxoday and are bound through `domain::safe_text::pg_opt`; their raw
//! bytes stay in the sealed body of the exchange that brought them.

use rust_decimal::Decimal;
use uuid::Uuid;

use super::{Store, StoreResult};
use crate::domain::{OrderId, safe_text::pg_opt};

/// One voucher as stored (code and pin encrypted).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct VoucherRow {
    /// Owning order.
    pub order_id: Uuid,
    /// Index in Xoxoday's list.
    pub position: i32,
    /// Sealed code.
    pub code_encrypted: Vec<u8>,
    /// Sealed pin.
    pub pin_encrypted: Option<Vec<u8>>,
    /// Key of both ciphertexts.
    pub key_id: String,
    /// Validity text.
    pub validity: Option<String>,
    /// Voucher type.
    pub voucher_type: Option<String>,
    /// Face value.
    pub amount: Option<Decimal>,
    /// Currency.
    pub currency: Option<String>,
    /// Country text.
    pub country: Option<String>,
}

/// Inserts vouchers inside the caller's transaction; repeats are ignored.
pub(crate) async fn insert_vouchers(
    conn: &mut sqlx::PgConnection,
    vouchers: &[VoucherRow],
) -> StoreResult<()> {
    for v in vouchers {
        sqlx::query(
            "insert into vouchers (voucher_id, order_id, position, code_encrypted,
               pin_encrypted, key_id, validity, voucher_type, amount, currency, country)
             values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
             on conflict (order_id, position) do nothing",
        )
        .bind(Uuid::now_v7())
        .bind(v.order_id)
        .bind(v.position)
        .bind(&v.code_encrypted)
        .bind(&v.pin_encrypted)
        .bind(&v.key_id)
        .bind(pg_opt(v.validity.as_deref()))
        .bind(pg_opt(v.voucher_type.as_deref()))
        .bind(v.amount)
        .bind(pg_opt(v.currency.as_deref()))
        .bind(pg_opt(v.country.as_deref()))
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

impl Store {
    /// Vouchers of the given orders, in order and position.
    pub async fn vouchers_for(&self, orders: &[OrderId]) -> StoreResult<Vec<VoucherRow>> {
        let ids: Vec<Uuid> = orders.iter().map(OrderId::as_uuid).collect();
        Ok(sqlx::query_as(
            "select order_id, position, code_encrypted, pin_encrypted, key_id, validity,
               voucher_type, amount, currency, country
             from vouchers where order_id = any($1) order by order_id, position",
        )
        .bind(&ids)
        .fetch_all(&self.pool)
        .await?)
    }
}
