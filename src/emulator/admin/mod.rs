//! The HTTP admin surface under `/_emulator` (no auth; a test and developer
//! tool): the ledger and its edits, fault switches, settling, tokens and
//! webhooks. Every route does what the matching [`super::EmulatorHandle`]
//! method does.

use std::sync::Arc;

use axum::{
    Json, Router,
    extract::{Path, Query, State},
    response::{IntoResponse as _, Response},
    routing::{get, post},
};
use serde::Deserialize;
use serde_json::{Value, json};

mod faults;
mod orders;
mod switches;

use super::{EmulatorHandle, LedgerOrder, state::Shared, wire::json_response};

pub(crate) fn router() -> Router<Arc<Shared>> {
    Router::new()
        .route("/ledger", get(ledger))
        .route("/ledger/{po}", get(ledger_po))
        .route("/faults", post(faults::push_fault))
        .route("/orders", post(orders::inject_order))
        .route(
            "/orders/{order_id}",
            axum::routing::delete(orders::delete_order).patch(orders::set_amount),
        )
        .route("/settle/{po}", post(settle))
        .route("/expire-token", post(expire_token))
        .route("/tokens", get(tokens))
        .route("/refuse-tokens", post(switches::refuse_tokens))
        .route("/webhooks", get(webhooks))
        .route("/webhook", post(switches::set_webhook))
        .route("/fault-rates", post(switches::set_fault_rates))
        .route("/rate-limits", post(switches::set_rate_limits))
        .route("/balance", post(switches::set_balance))
        .route("/hostile", post(switches::set_hostile))
        .route("/empty-history", post(switches::set_empty_history))
}

pub(super) fn handle(shared: Arc<Shared>) -> EmulatorHandle {
    EmulatorHandle::from_shared(shared)
}

/// A ledger order as admin JSON (money as decimal strings).
pub(crate) fn order_json(o: &LedgerOrder) -> Value {
    json!({
        "poNumber": o.po_number, "orderId": o.order_id, "productId": o.product_id,
        "quantity": o.quantity, "denomination": o.denomination.to_string(),
        "orderTotal": o.order_total.to_string(), "amountCharged": o.amount_charged.to_string(),
        "currencyCode": o.currency_code, "deliveryStatus": o.delivery_status,
        "placeCalls": o.place_calls, "vouchers": o.vouchers.len(),
        "orderDate": o.order_date, "deliveryDate": o.delivery_date,
    })
}

async fn ledger(State(shared): State<Arc<Shared>>) -> Response {
    let (orders, calls, balance, dups) = {
        let g = shared.lock();
        let l = &g.ledger;
        (
            l.all(),
            l.all_place_calls(),
            l.balance,
            l.duplicated_po_numbers(),
        )
    };
    let orders: Vec<Value> = orders.iter().map(order_json).collect();
    Json(
        json!({"orders": orders, "placeCalls": calls, "balance": balance.to_string(),
                "duplicatePoNumbers": dups}),
    )
    .into_response()
}

async fn ledger_po(State(shared): State<Arc<Shared>>, Path(po): Path<String>) -> Response {
    let h = handle(shared);
    let (order, calls) = (h.order(&po), h.place_calls(&po));
    if order.is_none() && calls == 0 {
        return json_response(
            404,
            json!({"error": "no placeOrder call carried this poNumber"}),
        );
    }
    let order = order.as_ref().map_or(Value::Null, order_json);
    let all: Vec<Value> = h.orders_for(&po).iter().map(order_json).collect();
    Json(json!({"poNumber": po, "placeCalls": calls, "order": order, "orders": all}))
        .into_response()
}

#[derive(Debug, Deserialize)]
struct SettleQuery {
    status: Option<String>,
}

/// `?status=delivered` (default) or `?status=canceled`.
async fn settle(
    State(shared): State<Arc<Shared>>,
    Path(po): Path<String>,
    Query(q): Query<SettleQuery>,
) -> Response {
    let delivered = match q.status.as_deref() {
        None | Some("delivered") => true,
        Some("canceled") => false,
        Some(other) => {
            return json_response(400, json!({"error": format!("unknown status {other}")}));
        }
    };
    if handle(shared).settle_pending(&po, delivered) {
        json_response(200, json!({"settled": true}))
    } else {
        json_response(404, json!({"error": "no pending order with this poNumber"}))
    }
}

async fn expire_token(State(shared): State<Arc<Shared>>) -> Response {
    handle(shared).expire_access_token();
    json_response(200, json!({"expired": true}))
}

async fn tokens(State(shared): State<Arc<Shared>>) -> Response {
    let h = handle(shared);
    let (access, refresh) = h.current_tokens();
    let body = json!({"accessToken": access, "refreshToken": refresh,
        "refreshCalls": h.refresh_calls(), "refusingTokens": h.refusing_tokens()});
    json_response(200, body)
}

async fn webhooks(State(shared): State<Arc<Shared>>) -> Response {
    let attempts: Vec<Value> = handle(shared)
        .webhook_attempts()
        .iter()
        .map(|a| {
            json!({"id": a.id, "orderId": a.order_id, "deliveryStatus": a.delivery_status,
                   "attempt": a.attempt, "status": a.status, "error": a.error})
        })
        .collect();
    json_response(200, json!({"attempts": attempts}))
}
