//! The router and `POST /chef/v1/oauth/api`, dispatched on the envelope's
//! `query` (api-reference §1), with the order of checks every call goes
//! through: count placeOrder calls → bearer → query → rate limit → fault.
//! The hostile-text switch, when on, rewrites whatever answer results.

use std::{sync::Arc, time::Instant};

use axum::{
    Extension, Router,
    body::Bytes,
    extract::State,
    http::HeaderMap,
    response::{IntoResponse as _, Response},
    routing::{get, post},
};
use serde_json::Value;

use super::{
    admin, early_webhook,
    faults::{Fault, FaultOp},
    history, hostile, late, orders,
    place::{self, PlaceOptions},
    server::{self, ConnKill},
    state::Shared,
    tokens,
    wire::{self, ApiError},
};

/// Every emulated route plus the `/_emulator` admin surface.
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/chef/v1/oauth/api", post(oauth_api))
        .route("/chef/v1/oauth/token/user", post(tokens::refresh))
        .route("/chef/v1/oauth/token", get(tokens::validate))
        .nest("/_emulator", admin::router())
        .with_state(shared)
}

/// What a `/v1/oauth/api` body asks for, read leniently.
struct Call {
    query: Option<String>,
    op: Option<FaultOp>,
    data: Value,
    po: Option<String>,
}

impl Call {
    fn read(body: &[u8]) -> Self {
        let envelope: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let query = envelope
            .get("query")
            .and_then(Value::as_str)
            .map(String::from);
        let data = envelope
            .pointer("/variables/data")
            .cloned()
            .unwrap_or(Value::Null);
        Self {
            op: query.as_deref().and_then(FaultOp::from_query),
            po: place::po_number_of(&data),
            query,
            data,
        }
    }

    fn unsupported(&self) -> Response {
        let what = self
            .query
            .as_ref()
            .map_or("a missing or unreadable query".into(), |q| {
                format!("query {q}")
            });
        ApiError::new(
            400,
            "PLE10001",
            "Validation error",
            format!("unsupported {what}"),
        )
        .into_response()
    }
}

async fn oauth_api(
    State(shared): State<Arc<Shared>>,
    kill: Option<Extension<ConnKill>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let switch = shared.lock().hostile.clone();
    let answer = admitted(shared, kill.map(|Extension(k)| k), &headers, &body).await;
    match switch {
        Some(h) => hostile::answer(answer, &h).await,
        None => answer,
    }
}

async fn admitted(
    shared: Arc<Shared>,
    kill: Option<ConnKill>,
    headers: &HeaderMap,
    body: &[u8],
) -> Response {
    let call = Call::read(body);
    if call.op == Some(FaultOp::PlaceOrder) {
        let po = call.po.as_deref().unwrap_or("");
        shared.lock().ledger.count_place_call(po);
    }
    if let Some(refusal) = tokens::bearer_refusal(&shared, headers) {
        return refusal;
    }
    let Some(op) = call.op else {
        return call.unsupported();
    };
    let fault = {
        let mut g = shared.lock();
        if let Err(penalty) = g.limiter.admit(op, Instant::now()) {
            return wire::rate_limited(penalty);
        }
        g.faults.take(op, call.po.as_deref())
    };
    run(op, fault, shared, call.data, kill).await
}

/// Runs an admitted call under its fault.
async fn run(
    op: FaultOp,
    fault: Option<Fault>,
    shared: Arc<Shared>,
    data: Value,
    kill: Option<ConnKill>,
) -> Response {
    let place = op == FaultOp::PlaceOrder;
    let mut opts = PlaceOptions::default();
    match fault {
        Some(Fault::LateCreate { after, answer }) if place => {
            late::place_late(&shared, &data, after, answer, kill).await
        }
        Some(Fault::WebhookFirst { then }) if place => {
            early_webhook::place_webhook_first(&shared, &data, then, kill).await
        }
        Some(Fault::Hostile(h)) => {
            opts.hostile = Some(h.clone());
            let answer = server::apply(None, kill, work(op, shared, data, opts)).await;
            hostile::answer(answer, &h).await
        }
        other => {
            if let Some(Fault::HiddenFromDetails(d)) = &other {
                opts.hidden = Some(*d);
            }
            server::apply(other, kill, work(op, shared, data, opts)).await
        }
    }
}

/// The operation itself, as a synchronous step (see [`apply`]).
fn work(
    op: FaultOp,
    shared: Arc<Shared>,
    data: Value,
    opts: PlaceOptions,
) -> impl FnOnce() -> Response + Send + 'static {
    move || match op {
        FaultOp::PlaceOrder => place::place_order(&shared, &data, &opts),
        FaultOp::GetOrderDetails => orders::order_details(&shared, &data),
        FaultOp::GetVouchers => orders::vouchers(&data),
        FaultOp::GetBalance => orders::balance(&shared),
        FaultOp::GetOrderHistory => history::order_history(&shared, &data),
        FaultOp::RefreshToken => ApiError::place_validation("not an API query").into_response(),
    }
}
