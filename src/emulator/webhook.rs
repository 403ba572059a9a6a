//! Delayed delivery and the delivery-status webhook (api-reference §8).
//!
//! A delayed order settles after the delivery delay (or when forced), then a
//! webhook is POSTed with `x-api-key`. A failed POST (error or non-2xx) is
//! retried up to three times; when all four attempts fail the webhook is
//! disabled, as the docs say, until it is set again.

use std::sync::Arc;

use chrono::Utc;
use serde_json::{Value, json};

use super::{
    hostile::{HostileText, to_json_text},
    ledger::{LedgerOrder, plum_date},
    state::{Shared, WebhookAttempt},
};

const RETRIES: u32 = 3;

/// Settles a pending order after the delivery delay (unless shut down or
/// already settled), then sends its webhook.
pub(crate) fn schedule(shared: Arc<Shared>, order_id: i64, delivered: bool) {
    tokio::spawn(async move {
        tokio::select! {
            () = shared.shutdown.cancelled() => {}
            () = tokio::time::sleep(shared.delivery_delay) => {
                settle(&shared, order_id, delivered);
            }
        }
    });
}

/// Settles now; sends the webhook in the background. False when the order
/// is unknown or not pending.
pub(crate) fn settle(shared: &Arc<Shared>, order_id: i64, delivered: bool) -> bool {
    let Some(order) = shared.lock().ledger.settle(order_id, delivered) else {
        return false;
    };
    if let Ok(rt) = tokio::runtime::Handle::try_current() {
        let shared = Arc::clone(shared);
        rt.spawn(async move { send(&shared, &order).await });
    }
    true
}

/// Sends the order's webhook (one try and up to three retries) and returns
/// when it succeeded or was given up; nothing when no webhook is set.
pub(crate) async fn send(shared: &Shared, order: &LedgerOrder) {
    let (url, key, id, hostile) = {
        let mut g = shared.lock();
        let hostile = order.hostile.clone().or_else(|| g.hostile.clone());
        let w = &mut g.webhook;
        let Some(url) = w.url.clone().filter(|_| !w.disabled) else {
            return;
        };
        w.next_id += 1;
        (url, w.api_key.clone(), w.next_id - 1, hostile)
    };
    let body = to_json_text(&payload(id, order, hostile.as_ref()));
    for attempt in 1..=RETRIES + 1 {
        if attempt > 1 {
            tokio::select! {
                () = shared.shutdown.cancelled() => return,
                () = tokio::time::sleep(shared.webhook_retry_delay) => {}
            }
        }
        let mut req = shared
            .http
            .post(&url)
            .header("content-type", "application/json")
            .body(body.clone());
        if let Some(k) = &key {
            req = req.header("x-api-key", k);
        }
        let result = req.send().await;
        let ok = matches!(&result, Ok(r) if r.status().is_success());
        record(shared, id, order, attempt, result);
        if ok {
            return;
        }
    }
    tracing::warn!(webhook.id = id, "webhook failed 4 times; disabling it");
    shared.lock().webhook.disabled = true;
}

fn record(
    shared: &Shared,
    id: i64,
    order: &LedgerOrder,
    attempt: u32,
    result: reqwest::Result<reqwest::Response>,
) {
    let (status, error) = match result {
        Ok(r) => (Some(r.status().as_u16()), None),
        Err(e) => (None, Some(e.to_string())),
    };
    shared.lock().webhook.attempts.push(WebhookAttempt {
        id,
        order_id: order.order_id,
        delivery_status: order.delivery_status.clone(),
        attempt,
        status,
        error,
    });
}

/// The documented payload. Hostile text is appended to `deliveryStatus`
/// and sent as an extra `emulatorNote` field in `data`.
fn payload(id: i64, order: &LedgerOrder, hostile: Option<&HostileText>) -> Value {
    let mut body = json!({
        "id": id,
        "data": {
            "orderId": order.order_id,
            "poNumber": order.po_number,
            "orderDate": order.order_date,
            "deliveryStatus": order.delivery_status,
        },
        "createdAt": plum_date(Utc::now()),
    });
    if let Some(h) = hostile {
        let text = h.text();
        body["data"]["deliveryStatus"] = json!(format!("{}{text}", order.delivery_status));
        body["data"]["emulatorNote"] = json!(text);
    }
    body
}
