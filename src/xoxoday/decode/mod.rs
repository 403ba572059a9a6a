//! Reads Xoxoday's success bodies into our types: the `{"data":{"<op>":
//! {"status","data"}}}` envelope, orders, vouchers and token pairs.
//!
//! Protects: "only a readable `status: 1` is success". Every documented type
//! drift is tolerated (see [`super::flex`]); anything else is a decode error,
//! which the classifier turns into Unknown/Failed, never into success.

use std::{collections::BTreeMap, time::Duration};

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use secrecy::SecretString;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;

use super::flex::{self, Flex};
use crate::xoxoday::{DeliveryStatus, TokenPair, UpstreamOrder, Voucher};

#[derive(Deserialize)]
struct Envelope {
    data: BTreeMap<String, Box<RawValue>>,
}

#[derive(Deserialize)]
struct OpResult {
    status: Option<Flex>,
    data: Option<Box<RawValue>>,
}

/// The payload under `data.<key>.data` when `status` is 1.
///
/// `Err` says why the body is not a success: not JSON, no envelope, a missing
/// key, or a `status` other than 1 (reference §12.8: failures may arrive as
/// 200 with `status: 0`). Sibling keys under `data` are ignored.
pub fn success_payload(body: &str, key: &str) -> Result<Box<RawValue>, String> {
    let env: Envelope = serde_json::from_str(body).map_err(|e| format!("no envelope: {e}"))?;
    let raw = env
        .data
        .get(key)
        .ok_or_else(|| format!("no data.{key} in the answer"))?;
    let op: OpResult = serde_json::from_str(raw.get()).map_err(|e| format!("data.{key}: {e}"))?;
    let status = op
        .status
        .ok_or_else(|| format!("data.{key}.status is missing"))?;
    if status.integer().ok().flatten() != Some(1) {
        return Err(format!("data.{key}.status is {}, not 1", status.raw()));
    }
    op.data.ok_or_else(|| format!("data.{key}.data is missing"))
}

/// Decodes a payload into `T`, naming the failing field path.
pub fn payload<T: DeserializeOwned>(raw: &RawValue) -> Result<T, String> {
    let de = &mut serde_json::Deserializer::from_str(raw.get());
    serde_path_to_error::deserialize(de).map_err(|e| format!("{}: {}", e.path(), e.inner()))
}

/// Reads a delivery status case-insensitively (`Delivered`, `delivered`,
/// `Canceled`, `cancelled`, …); unknown or missing values stay `Other`.
pub fn delivery_status(raw: Option<&str>) -> DeliveryStatus {
    let text = raw.unwrap_or_default().trim();
    match text.to_ascii_lowercase().as_str() {
        "delivered" => DeliveryStatus::Delivered,
        "pending" => DeliveryStatus::Pending,
        "canceled" | "cancelled" => DeliveryStatus::Canceled,
        _ => DeliveryStatus::Other(text.to_owned()),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct OrderWire {
    #[serde(default, deserialize_with = "flex::integer")]
    order_id: Option<i64>,
    #[serde(default, deserialize_with = "flex::decimal")]
    order_total: Option<Decimal>,
    #[serde(default, deserialize_with = "flex::decimal")]
    order_discount: Option<Decimal>,
    #[serde(default, deserialize_with = "flex::decimal")]
    amount_charged: Option<Decimal>,
    #[serde(default, deserialize_with = "flex::text")]
    currency_code: Option<String>,
    #[serde(default, deserialize_with = "flex::text")]
    order_status: Option<String>,
    #[serde(default, deserialize_with = "flex::text")]
    delivery_status: Option<String>,
    #[serde(default)]
    vouchers: Option<Vec<VoucherWire>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct VoucherWire {
    #[serde(default, deserialize_with = "flex::text")]
    voucher_code: Option<String>,
    #[serde(default, deserialize_with = "flex::text")]
    pin: Option<String>,
    #[serde(default, deserialize_with = "flex::text")]
    validity: Option<String>,
    #[serde(default, rename = "type", deserialize_with = "flex::text")]
    voucher_type: Option<String>,
    #[serde(default, deserialize_with = "flex::decimal")]
    amount: Option<Decimal>,
    #[serde(default, deserialize_with = "flex::text")]
    currency: Option<String>,
    #[serde(default, deserialize_with = "flex::text")]
    country: Option<String>,
}

/// An order from a placeOrder or getOrderDetails payload.
///
/// `orderId` is required: without it the order cannot be told apart from
/// another. A voucher without a code is an error rather than dropped, so a
/// delivered order can never lose a voucher silently.
pub fn order(raw: &RawValue) -> Result<UpstreamOrder, String> {
    let w: OrderWire = payload(raw)?;
    let order_id = w.order_id.ok_or("orderId is missing")?;
    let vouchers = w
        .vouchers
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        .map(|(i, v)| voucher(v).map_err(|e| format!("vouchers[{i}]: {e}")))
        .collect::<Result<_, _>>()?;
    Ok(UpstreamOrder {
        order_id,
        order_total: w.order_total,
        order_discount: w.order_discount,
        amount_charged: w.amount_charged,
        currency_code: w.currency_code,
        order_status: w.order_status,
        delivery_status: delivery_status(w.delivery_status.as_deref()),
        vouchers,
    })
}

fn voucher(v: VoucherWire) -> Result<Voucher, String> {
    let code = v.voucher_code.ok_or("voucherCode is missing")?;
    Ok(Voucher {
        code: SecretString::from(code),
        pin: v.pin.filter(|p| !p.is_empty()).map(SecretString::from),
        validity: v.validity,
        voucher_type: v.voucher_type,
        amount: v.amount,
        currency: v.currency,
        country: v.country,
    })
}

#[derive(Deserialize)]
struct TokenWire {
    #[serde(default, deserialize_with = "flex::text")]
    access_token: Option<String>,
    #[serde(default, deserialize_with = "flex::text")]
    refresh_token: Option<String>,
    #[serde(default, deserialize_with = "flex::integer")]
    expires_in: Option<i64>,
    #[serde(default, deserialize_with = "flex::epoch_millis")]
    access_token_expiry: Option<DateTime<Utc>>,
    #[serde(default, deserialize_with = "flex::epoch_millis")]
    refresh_token_expiry: Option<DateTime<Utc>>,
}

/// A token pair from a refresh answer (reference §2.2): `expires_in` as a
/// number or a string, `*_expiry` as ms-epoch strings or numbers.
pub fn token_pair(body: &str) -> Result<TokenPair, String> {
    let raw: Box<RawValue> = serde_json::from_str(body).map_err(|e| format!("not JSON: {e}"))?;
    let w: TokenWire = payload(&raw)?;
    let access = w.access_token.filter(|t| !t.is_empty());
    let refresh = w.refresh_token.filter(|t| !t.is_empty());
    Ok(TokenPair {
        access_token: access.ok_or("access_token is missing")?.into(),
        refresh_token: refresh.ok_or("refresh_token is missing")?.into(),
        expires_in: w
            .expires_in
            .and_then(|s| u64::try_from(s).ok())
            .map(Duration::from_secs),
        access_expires_at: w.access_token_expiry,
        refresh_expires_at: w.refresh_token_expiry,
    })
}

mod catalog;
mod history;

pub use catalog::{Balance, CatalogProduct, balance, products};
pub use history::{HistoryOrder, history, history_data};

#[cfg(test)]
mod tests;
