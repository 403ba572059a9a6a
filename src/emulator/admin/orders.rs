//! Ledger edits for a books audit: `POST /_emulator/orders` creates an
//! order the gateway never sent, `DELETE /_emulator/orders/{orderId}` forgets
//! one, `PATCH /_emulator/orders/{orderId}` rewrites its `amountCharged`.

use std::sync::Arc;

use axum::{
    Json,
    extract::{Path, State},
    response::Response,
};
use serde_json::{Value, json};

use super::{handle, order_json};
use crate::emulator::{
    state::Shared,
    wire::{self, json_response},
};

fn bad_request(msg: impl std::fmt::Display) -> Response {
    json_response(400, json!({"error": msg.to_string()}))
}

fn not_found(order_id: i64) -> Response {
    json_response(404, json!({"error": format!("no order {order_id}")}))
}

/// `{"poNumber": "PO-X", "amount": "12.50", "productId": 1001}` (productId
/// optional, default 1001) → 201 with the order.
pub(super) async fn inject_order(
    State(shared): State<Arc<Shared>>,
    Json(body): Json<Value>,
) -> Response {
    let po = body.get("poNumber").and_then(Value::as_str).unwrap_or("");
    let Some(amount) = body.get("amount").and_then(wire::read_decimal) else {
        return bad_request("`amount` must be a decimal");
    };
    let product = body
        .get("productId")
        .and_then(wire::read_int)
        .unwrap_or(1001);
    match handle(shared).inject_order(po, amount, product) {
        Ok(order) => json_response(201, order_json(&order)),
        Err(e) => bad_request(e),
    }
}

pub(super) async fn delete_order(
    State(shared): State<Arc<Shared>>,
    Path(order_id): Path<i64>,
) -> Response {
    if handle(shared).delete_order(order_id) {
        json_response(200, json!({"deleted": order_id}))
    } else {
        not_found(order_id)
    }
}

/// `{"amount": "9.99"}`.
pub(super) async fn set_amount(
    State(shared): State<Arc<Shared>>,
    Path(order_id): Path<i64>,
    Json(body): Json<Value>,
) -> Response {
    let Some(amount) = body.get("amount").and_then(wire::read_decimal) else {
        return bad_request("`amount` must be a decimal");
    };
    if handle(shared).set_order_amount(order_id, amount) {
        json_response(
            200,
            json!({"orderId": order_id, "amountCharged": amount.to_string()}),
        )
    } else {
        not_found(order_id)
    }
}
