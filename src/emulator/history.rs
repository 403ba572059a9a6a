//! getOrderHistory (api-reference §7.1), read from the ledger and paged by
//! `limit`/`page` (page 1 first), oldest order first.
//!
//! The documented drift is reproduced on purpose: a pending order's
//! `deliveryStatus` is capitalised `"Pending"` (older gitbook example), an
//! order placed without a poNumber shows `"poNumber": ""`, `tag` is `null`
//! when empty, and `rawOrderTotal`/`rawOrderDiscount` are `null` on odd
//! order ids ("nullable for old orders"). The answer for an empty window is
//! UNCONFIRMED upstream, so it is a setting (`config::EmptyHistory`).

use std::{sync::Arc, time::Instant};

use axum::response::{IntoResponse as _, Response};
use chrono::NaiveDate;
use serde_json::{Value, json};

use super::{
    catalog,
    config::EmptyHistory,
    ledger::LedgerOrder,
    state::Shared,
    wire::{self, ApiError, number},
};

struct Window {
    from: NaiveDate,
    to: NaiveDate,
    limit: usize,
    page: usize,
    tag: Option<String>,
}

fn invalid(error: &str) -> ApiError {
    ApiError::new(
        400,
        "PLE10032",
        "Failed to validate OrderHistory Request",
        error,
    )
}

fn date(data: &Value, field: &str) -> Result<NaiveDate, ApiError> {
    let text = data.get(field).and_then(Value::as_str).unwrap_or("");
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map_err(|_| invalid(&format!("{field} must be a YYYY-MM-DD date")))
}

fn positive(data: &Value, field: &str, default: usize) -> Result<usize, ApiError> {
    match data.get(field) {
        None | Some(Value::Null) => Ok(default),
        Some(v) => wire::read_int(v)
            .and_then(|n| usize::try_from(n).ok())
            .filter(|n| *n > 0)
            .ok_or_else(|| invalid(&format!("{field} must be a positive integer"))),
    }
}

impl Window {
    fn read(data: &Value) -> Result<Self, ApiError> {
        let (from, to) = (date(data, "startDate")?, date(data, "endDate")?);
        if from > to {
            return Err(invalid("startDate must not be after endDate"));
        }
        let tag = data
            .get("tag")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty());
        Ok(Self {
            from,
            to,
            limit: positive(data, "limit", 10)?,
            page: positive(data, "page", 1)?,
            tag: tag.map(String::from),
        })
    }
}

/// Handles one admitted getOrderHistory call.
pub(crate) fn order_history(shared: &Arc<Shared>, data: &Value) -> Response {
    let w = match Window::read(data) {
        Ok(w) => w,
        Err(e) => return e.into_response(),
    };
    let (orders, empty) = {
        let g = shared.lock();
        let orders = g
            .ledger
            .history(w.from, w.to, w.tag.as_deref(), Instant::now());
        (orders, g.empty_history)
    };
    let skip = (w.page - 1).saturating_mul(w.limit);
    let items: Vec<Value> = orders.iter().skip(skip).take(w.limit).map(item).collect();
    if items.is_empty() && empty == EmptyHistory::NotFound {
        return ApiError::new(
            404,
            "PLE10027",
            "Failed to find order history",
            "Order History Not Found",
        )
        .into_response();
    }
    wire::success("getOrderHistory", Value::Array(items))
}

fn status(o: &LedgerOrder) -> &str {
    if o.delivery_status == "pending" {
        "Pending"
    } else {
        &o.delivery_status
    }
}

/// One `OrderHistoryItem`.
fn item(o: &LedgerOrder) -> Value {
    let discount = if o.order_discount.is_zero() {
        String::new()
    } else {
        o.order_discount.to_string()
    };
    let old = o.order_id % 2 != 0;
    let product = catalog::find(o.product_id);
    let name = product.map_or("", |p| p.name);
    let percent = product.map_or(rust_decimal::Decimal::ZERO, |p| p.discount_percent());
    json!({
        "orderId": o.order_id, "orderDate": o.order_date,
        "email": o.email.clone().unwrap_or_default(),
        "deliveryStatus": status(o), "poNumber": o.po_number,
        "tag": if o.tag.is_empty() { Value::Null } else { json!(o.tag) },
        "orderTotal": number(o.order_total),
        "rawOrderTotal": if old { Value::Null } else { number(o.order_total) },
        "orderDiscount": discount,
        "rawOrderDiscount": if old { Value::Null } else { json!(discount) },
        "discountPercent": percent.normalize().to_string(),
        "amountCharged": number(o.amount_charged),
        "currencyValue": 1, "currencyCode": o.currency_code,
        "products": [{
            "productId": o.product_id, "productName": name,
            "receiverMobileNumber": o.contact.clone().unwrap_or_default(),
            "receiverEmail": o.email.clone().unwrap_or_default(),
            "price": number(o.denomination), "quantity": o.quantity,
            "orderProductStatus": o.delivery_status, "currency": o.currency_code,
            "trackingId": null, "trackingLink": null,
        }],
        "voucherDetails": [{
            "orderId": o.order_id, "productId": o.product_id, "productName": name,
            "currencyCode": o.currency_code, "productStatus": o.delivery_status,
            "denomination": number(o.denomination),
        }],
    })
}
