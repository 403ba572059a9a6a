//! getBalance and getVouchers payloads (reference §5.2, §6), with the same
//! drift tolerance as orders: `exchangeRate` as number, string or null,
//! `tatInDays` as number or text, amounts never through `f64`.

use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::payload;
use crate::xoxoday::flex;

/// The account balance (`data.getBalance.data`).
#[derive(Debug, Clone, PartialEq)]
pub struct Balance {
    /// Available balance in the account's base currency.
    pub value: Decimal,
    /// Base currency code.
    pub currency: Option<String>,
    /// Older answers also carry `points`.
    pub points: Option<Decimal>,
}

#[derive(Deserialize)]
struct BalanceWire {
    #[serde(default, deserialize_with = "flex::decimal")]
    value: Option<Decimal>,
    #[serde(default, deserialize_with = "flex::text")]
    currency: Option<String>,
    #[serde(default, deserialize_with = "flex::decimal")]
    points: Option<Decimal>,
}

/// Decodes a getBalance payload; `value` is required.
pub fn balance(raw: &RawValue) -> Result<Balance, String> {
    let w: BalanceWire = payload(raw)?;
    Ok(Balance {
        value: w.value.ok_or("value is missing")?,
        currency: w.currency,
        points: w.points,
    })
}

/// One catalog product, reduced to what ordering needs.
#[derive(Debug, Clone, PartialEq)]
pub struct CatalogProduct {
    /// Product id to order.
    pub product_id: i64,
    /// Display name.
    pub name: Option<String>,
    /// `fixed_denomination` or `open_value`.
    pub value_type: Option<String>,
    /// Allowed fixed values (`valueDenominations`, comma-separated on the wire).
    pub denominations: Vec<Decimal>,
    /// Lowest open value.
    pub min_value: Option<Decimal>,
    /// Highest open value.
    pub max_value: Option<Decimal>,
    /// Product currency.
    pub currency_code: Option<String>,
    /// `realtime` or `delayed`.
    pub delivery_type: Option<String>,
    /// Most units per order.
    pub order_quantity_limit: Option<i64>,
    /// Whether `contact` is required.
    pub phone_number_mandatory: bool,
    /// FX rate against the account base currency (number, string or null).
    pub exchange_rate: Option<Decimal>,
    /// Delivery time text (`0`, `"1 - 7"`).
    pub tat_in_days: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ProductWire {
    #[serde(default, deserialize_with = "flex::integer")]
    product_id: Option<i64>,
    #[serde(default, deserialize_with = "flex::text")]
    name: Option<String>,
    #[serde(default, deserialize_with = "flex::text")]
    value_type: Option<String>,
    #[serde(default, deserialize_with = "flex::text")]
    value_denominations: Option<String>,
    #[serde(default, deserialize_with = "flex::decimal")]
    min_value: Option<Decimal>,
    #[serde(default, deserialize_with = "flex::decimal")]
    max_value: Option<Decimal>,
    #[serde(default, deserialize_with = "flex::text")]
    currency_code: Option<String>,
    #[serde(default, deserialize_with = "flex::text")]
    delivery_type: Option<String>,
    #[serde(default, deserialize_with = "flex::integer")]
    order_quantity_limit: Option<i64>,
    #[serde(default)]
    is_phone_number_mandatory: Option<serde_json::Value>,
    #[serde(default, deserialize_with = "flex::decimal")]
    exchange_rate: Option<Decimal>,
    #[serde(default, deserialize_with = "flex::text")]
    tat_in_days: Option<String>,
}

/// Decodes a getVouchers payload (an array of products).
pub fn products(raw: &RawValue) -> Result<Vec<CatalogProduct>, String> {
    let wires: Vec<ProductWire> = payload(raw)?;
    wires
        .into_iter()
        .enumerate()
        .map(|(i, w)| product(w).map_err(|e| format!("[{i}]: {e}")))
        .collect()
}

fn product(w: ProductWire) -> Result<CatalogProduct, String> {
    let denominations = w
        .value_denominations
        .as_deref()
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<Decimal>()
                .map_err(|_| format!("bad denomination {s:?}"))
        })
        .collect::<Result<_, _>>()?;
    Ok(CatalogProduct {
        product_id: w.product_id.ok_or("productId is missing")?,
        name: w.name,
        value_type: w.value_type,
        denominations,
        min_value: w.min_value,
        max_value: w.max_value,
        currency_code: w.currency_code,
        delivery_type: w.delivery_type,
        order_quantity_limit: w.order_quantity_limit,
        phone_number_mandatory: truthy(w.is_phone_number_mandatory.as_ref()),
        exchange_rate: w.exchange_rate,
        tat_in_days: w.tat_in_days,
    })
}

/// `true`, `1`, `"1"`, `"true"` are true; anything else is false.
fn truthy(v: Option<&serde_json::Value>) -> bool {
    match v {
        Some(serde_json::Value::Bool(b)) => *b,
        Some(serde_json::Value::Number(n)) => n.as_i64() == Some(1),
        Some(serde_json::Value::String(s)) => matches!(s.trim(), "1" | "true" | "TRUE" | "True"),
        _ => false,
    }
}
