//! The HTTP admin surface under `/_emulator` (no auth; a test and developer
//! tool): the ledger, fault switches, settling, tokens and webhooks. Every
//! route does what the matching [`super::EmulatorHandle`] method does.

use std::sync::Arc;

use axum::{
    Json, Router,
    extract::{Path, Query, State},
    response::{IntoResponse as _, Response},
    routing::{get, post},
};
use serde::Deserialize;
use serde_json::{Value, json};

mod switches;

use super::{
    EmulatorHandle, LedgerOrder,
    faults::{Fault, FaultOp},
    state::Shared,
    wire::json_response,
};

pub(crate) fn router() -> Router<Arc<Shared>> {
    Router::new()
        .route("/ledger", get(ledger))
        .route("/ledger/{po}", get(ledger_po))
        .route("/faults", post(push_fault))
        .route("/settle/{po}", post(settle))
        .route("/expire-token", post(expire_token))
        .route("/tokens", get(tokens))
        .route("/webhooks", get(webhooks))
        .route("/webhook", post(switches::set_webhook))
        .route("/fault-rates", post(switches::set_fault_rates))
        .route("/rate-limits", post(switches::set_rate_limits))
        .route("/balance", post(switches::set_balance))
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
    let (orders, calls, balance) = {
        let g = shared.lock();
        (g.ledger.all(), g.ledger.all_place_calls(), g.ledger.balance)
    };
    let orders: Vec<Value> = orders.iter().map(order_json).collect();
    Json(json!({"orders": orders, "placeCalls": calls, "balance": balance.to_string()}))
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
    Json(json!({"poNumber": po, "placeCalls": calls, "order": order})).into_response()
}

/// `{"op": "placeOrder", "fault": {…}}` or `{"poNumber": "PO-1", "fault": {…}}`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct FaultRequest {
    op: Option<String>,
    po_number: Option<String>,
    fault: FaultIn,
}

/// A fault as JSON; durations are humantime text (`"3s"`, `"500ms"`).
#[derive(Debug, Deserialize)]
#[serde(
    tag = "kind",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
enum FaultIn {
    ErrorBeforeCreate { status: u16 },
    ErrorAfterCreate { status: u16 },
    SleepAfterCreate { duration: String },
    DropAfterCreate,
    Slow { duration: String },
    HiddenFromDetails { duration: String },
    RateLimited { penalty_seconds: u64 },
    InvalidToken,
    Respond { status: u16, body: Value },
}

fn parse_op(op: &str) -> Option<FaultOp> {
    Some(match op {
        "placeOrder" => FaultOp::PlaceOrder,
        "getOrderDetails" => FaultOp::GetOrderDetails,
        "getVouchers" => FaultOp::GetVouchers,
        "getBalance" => FaultOp::GetBalance,
        "refreshToken" => FaultOp::RefreshToken,
        _ => return None,
    })
}

fn to_fault(f: FaultIn) -> Result<Fault, String> {
    let dur = |s: &str| humantime::parse_duration(s).map_err(|e| format!("duration {s:?}: {e}"));
    Ok(match f {
        FaultIn::ErrorBeforeCreate { status } => Fault::ErrorBeforeCreate { status },
        FaultIn::ErrorAfterCreate { status } => Fault::ErrorAfterCreate { status },
        FaultIn::SleepAfterCreate { duration } => Fault::SleepAfterCreate(dur(&duration)?),
        FaultIn::DropAfterCreate => Fault::DropAfterCreate,
        FaultIn::Slow { duration } => Fault::Slow(dur(&duration)?),
        FaultIn::HiddenFromDetails { duration } => Fault::HiddenFromDetails(dur(&duration)?),
        FaultIn::RateLimited { penalty_seconds } => Fault::RateLimited { penalty_seconds },
        FaultIn::InvalidToken => Fault::InvalidToken,
        FaultIn::Respond { status, body } => Fault::Respond { status, body },
    })
}

async fn push_fault(State(shared): State<Arc<Shared>>, body: axum::body::Bytes) -> Response {
    let bad = |msg: String| json_response(400, json!({"error": msg}));
    let req: FaultRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return bad(e.to_string()),
    };
    let fault = match to_fault(req.fault) {
        Ok(f) => f,
        Err(e) => return bad(e),
    };
    let h = handle(shared);
    match (req.po_number, req.op.as_deref().map(parse_op)) {
        (Some(po), None) => h.fault_for_po(&po, fault),
        (None, Some(Some(op))) => h.push_fault(op, fault),
        _ => return bad("give exactly one of `poNumber` or a known `op`".into()),
    }
    json_response(202, json!({"queued": true}))
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
    let (access, refresh) = handle(shared).current_tokens();
    json_response(200, json!({"accessToken": access, "refreshToken": refresh}))
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
