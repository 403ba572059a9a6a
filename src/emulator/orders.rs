//! The read operations: getOrderDetails (api-reference §3), getVouchers
//! (§5) and getBalance (§6).

use std::{sync::Arc, time::Instant};

use axum::response::{IntoResponse as _, Response};
use serde_json::{Value, json};

use super::{
    catalog::{self, Product},
    render,
    state::Shared,
    wire::{self, ApiError},
};

fn details_validation(error: &str) -> ApiError {
    ApiError::new(
        400,
        "PLE10002",
        "Validation error in get order details",
        error,
    )
}

/// Looks an order up by poNumber, else by orderId. Accepts `null`/`0`/`"0"`
/// orderId beside a poNumber, and `""`/`null` poNumber beside an orderId.
pub(crate) fn order_details(shared: &Arc<Shared>, data: &Value) -> Response {
    if !data.is_object() {
        return details_validation("variables.data must be an object").into_response();
    }
    let po = match data.get("poNumber") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.trim().to_string(),
        Some(Value::Number(n)) => n.to_string(),
        Some(_) => return details_validation("poNumber has an invalid value").into_response(),
    };
    let order_id = match data.get("orderId") {
        None | Some(Value::Null) => 0,
        Some(v) => match wire::read_int(v) {
            Some(id) => id,
            None => return details_validation("orderId has an invalid value").into_response(),
        },
    };
    if po.is_empty() && order_id == 0 {
        return details_validation("poNumber or orderId is required").into_response();
    }
    let found = shared.lock().ledger.visible(&po, order_id, Instant::now());
    match found {
        Some(order) => wire::success("getOrderDetails", render::order(&order, false)),
        None => ApiError::new(
            404,
            "PLE10016",
            "Failed to get Order details",
            "Order Details Not Found",
        )
        .into_response(),
    }
}

/// The catalog, with `limit`/`page`, `includeProducts`/`excludeProducts` and
/// the `deliveryType`, `currencyCode` and `productName` filters.
pub(crate) fn vouchers(data: &Value) -> Response {
    let matching = select(data);
    let limit = data
        .get("limit")
        .and_then(wire::read_int)
        .filter(|l| *l > 0)
        .unwrap_or(100);
    let page = data
        .get("page")
        .and_then(wire::read_int)
        .filter(|p| *p > 0)
        .unwrap_or(1);
    let skip = usize::try_from((page - 1).saturating_mul(limit)).unwrap_or(usize::MAX);
    let take = usize::try_from(limit).unwrap_or(usize::MAX);
    let items: Vec<Value> = matching
        .iter()
        .skip(skip)
        .take(take)
        .map(|p| p.to_json())
        .collect();
    if items.is_empty() {
        return ApiError::new(
            404,
            "PLE10030",
            "Failed to find vouchers.",
            "No Vouchers Found",
        )
        .into_response();
    }
    wire::success("getVouchers", Value::Array(items))
}

fn select(data: &Value) -> Vec<&'static Product> {
    let ids = |field: &str| -> Option<Vec<i64>> {
        let raw = data.get(field)?.as_str()?;
        let ids: Vec<i64> = raw
            .split(',')
            .filter_map(|s| s.trim().parse().ok())
            .collect();
        (!ids.is_empty()).then_some(ids)
    };
    let include = ids("includeProducts");
    let exclude = ids("excludeProducts").unwrap_or_default();
    let filters = data
        .get("filters")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    catalog::products()
        .iter()
        .filter(|p| p.active)
        .filter(|p| include.as_ref().is_none_or(|ids| ids.contains(&p.id)))
        .filter(|p| !exclude.contains(&p.id))
        .filter(|p| filters.iter().all(|f| passes(p, f)))
        .collect()
}

fn passes(p: &Product, filter: &Value) -> bool {
    let key = filter.get("key").and_then(Value::as_str).unwrap_or("");
    let value = filter
        .get("value")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_lowercase();
    match key {
        "deliveryType" => {
            value
                == if p.is_delayed() {
                    "delayed"
                } else {
                    "realtime"
                }
        }
        "currencyCode" => value == "usd",
        "productName" => p.name.to_lowercase().contains(&value),
        _ => true,
    }
}

/// The wallet balance in the base currency (USD).
pub(crate) fn balance(shared: &Arc<Shared>) -> Response {
    let value = shared.lock().ledger.balance;
    wire::success(
        "getBalance",
        json!({"value": wire::number(value), "currency": "USD"}),
    )
}
