//! Webhook before the answer (`Fault::WebhookFirst`): placeOrder creates the
//! order, settles a delayed product at once, sends the order's delivery
//! webhook (the usual one: same payload, same `x-api-key`) and waits for it
//! to be delivered or given up, and only then ends the call: the normal
//! answer, a 5xx, or a dropped connection.
//!
//! Invariant: the webhook never reports an order the ledger does not hold;
//! the order is committed before the first webhook byte is sent.

use std::sync::Arc;

use axum::response::{IntoResponse as _, Response};
use serde_json::Value;

use super::{
    faults::AfterWebhook,
    place::{self, PlaceOptions},
    render,
    server::{ConnKill, drop_or_502},
    state::Shared,
    webhook,
    wire::{self, ApiError},
};

/// Handles an admitted placeOrder call under `Fault::WebhookFirst`.
pub(crate) async fn place_webhook_first(
    shared: &Arc<Shared>,
    data: &Value,
    then: AfterWebhook,
    kill: Option<ConnKill>,
) -> Response {
    let order = match place::create(shared, data, &PlaceOptions::default()) {
        Ok(order) => order,
        Err(e) => return e.into_response(),
    };
    let settled = place::delayed_outcome(&order)
        .and_then(|delivered| shared.lock().ledger.settle(order.order_id, delivered));
    let order = settled.unwrap_or(order);
    webhook::send(shared, &order).await;
    match then {
        AfterWebhook::Answer => wire::success("placeOrder", render::order(&order, true)),
        AfterWebhook::Error { status } => ApiError::upstream(status).into_response(),
        AfterWebhook::Drop => drop_or_502(kill).await,
    }
}
