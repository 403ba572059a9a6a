//! getOrderHistory items (reference §7.1), read with the documented drift:
//! `deliveryStatus` in any case, `poNumber` `""` or missing, amounts as
//! numbers or strings, nullable raw totals (not read). Only what the books
//! audit compares is kept; an item without `orderId` is an error, so an
//! upstream order can never be dropped silently.

use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::{delivery_status, payload};
use crate::xoxoday::{DeliveryStatus, flex};

/// One order of Xoxoday's order history.
#[derive(Debug, Clone)]
pub struct HistoryOrder {
    /// Xoxoday's order id.
    pub order_id: i64,
    /// Our poNumber; `None` when Xoxoday sent `""`, `null` or nothing.
    pub po_number: Option<String>,
    /// Final amount charged.
    pub amount_charged: Option<Decimal>,
    /// Currency of the amounts.
    pub currency_code: Option<String>,
    /// Order-level delivery state.
    pub delivery_status: DeliveryStatus,
    /// `orderDate` as sent (zone unstated).
    pub order_date: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct HistoryWire {
    #[serde(default, deserialize_with = "flex::integer")]
    order_id: Option<i64>,
    #[serde(default, deserialize_with = "flex::text")]
    po_number: Option<String>,
    #[serde(default, deserialize_with = "flex::decimal")]
    amount_charged: Option<Decimal>,
    #[serde(default, deserialize_with = "flex::text")]
    currency_code: Option<String>,
    #[serde(default, deserialize_with = "flex::text")]
    delivery_status: Option<String>,
    #[serde(default, deserialize_with = "flex::text")]
    order_date: Option<String>,
}

/// One page of getOrderHistory (`data` is a list, possibly empty).
pub fn history(raw: &RawValue) -> Result<Vec<HistoryOrder>, String> {
    let items: Vec<HistoryWire> = payload(raw)?;
    items
        .into_iter()
        .enumerate()
        .map(|(i, w)| {
            let order_id = w.order_id.ok_or(format!("[{i}].orderId is missing"))?;
            Ok(HistoryOrder {
                order_id,
                po_number: w.po_number.filter(|p| !p.trim().is_empty()),
                amount_charged: w.amount_charged,
                currency_code: w.currency_code,
                delivery_status: delivery_status(w.delivery_status.as_deref()),
                order_date: w.order_date,
            })
        })
        .collect()
}

/// `variables.data` of one getOrderHistory page.
pub fn history_data(from: NaiveDate, to: NaiveDate, limit: u32, page: u32) -> serde_json::Value {
    serde_json::json!({
        "startDate": from.format("%Y-%m-%d").to_string(),
        "endDate": to.format("%Y-%m-%d").to_string(),
        "limit": limit,
        "page": page,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(text: &str) -> Box<RawValue> {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn the_documented_drift_reads_and_an_empty_po_number_is_none() {
        let page = history(&raw(
            r#"[{"orderId":1316578,"orderDate":"2019-12-27 16:41:33","deliveryStatus":"Pending",
                "poNumber":"","amountCharged":"221.50","currencyCode":"INR","rawOrderTotal":null},
               {"orderId":"7","poNumber":"PO-1","amountCharged":9,"deliveryStatus":"delivered"}]"#,
        ))
        .unwrap();
        assert_eq!(page.len(), 2);
        assert_eq!(page[0].po_number, None);
        assert_eq!(page[0].delivery_status, DeliveryStatus::Pending);
        assert_eq!(page[0].amount_charged.unwrap().to_string(), "221.50");
        assert_eq!(page[1].order_id, 7);
        assert_eq!(page[1].po_number.as_deref(), Some("PO-1"));
    }

    #[test]
    fn an_item_without_order_id_is_an_error_not_dropped() {
        assert!(history(&raw(r#"[{"poNumber":"PO-1"}]"#)).is_err());
    }
}
