//! Xoxoday delivery webhooks (issue 4, contract §5): the event is stored raw
//! once per webhook id and applied in the same transaction; the reconciler
//! is woken to fetch the vouchers of a delivered order. Unknown poNumbers are
//! kept and reported, never errors (Xoxoday would retry, then disable the hook).
//! A webhook that contradicts a final status is counted
//! (`order_gateway_webhook_contradictions_total`) and logged at error level;
//! the store has moved the order to `needs_review`. It still gets its 200.

use serde_json::Value;
use tracing::{error, info, warn};

use super::{ServiceResult, Wakes};
use crate::domain::safe_text;
use crate::store::{
    Store,
    webhooks::{WebhookIn, WebhookStored},
};

/// A webhook body we cannot use at all.
#[derive(Debug, thiserror::Error)]
#[error("webhook payload has no usable `id`")]
pub struct MissingWebhookId;

/// Stores and applies delivery webhooks, and wakes the reconciler.
#[derive(Clone)]
pub struct WebhookIngest {
    store: Store,
    /// The reconciler's is woken on a match.
    wakes: Wakes,
}

impl WebhookIngest {
    /// Webhook intake over `store`, waking the reconciler on a match.
    pub fn new(store: Store, wakes: Wakes) -> Self {
        Self { store, wakes }
    }

    /// Stores and applies one webhook payload (`raw`: the bytes as received).
    pub async fn receive_webhook(
        &self,
        payload: &Value,
        raw: &[u8],
    ) -> Result<ServiceResult<WebhookStored>, MissingWebhookId> {
        let id = match &payload["id"] {
            Value::Number(n) => n.to_string(),
            Value::String(s) if !s.trim().is_empty() => safe_text::pg_key(s.trim()),
            _ => return Err(MissingWebhookId),
        };
        let data = &payload["data"];
        let event = WebhookIn {
            webhook_id: &id,
            po_number: data["poNumber"].as_str().filter(|s| !s.is_empty()),
            xoxoday_order_id: data["orderId"]
                .as_i64()
                .or_else(|| data["orderId"].as_str().and_then(|s| s.trim().parse().ok())),
            delivery_status: data["deliveryStatus"]
                .as_str()
                .map(|s| safe_text::pg_key(&s.trim().to_lowercase())),
            payload,
            raw,
        };
        let stored = self.store.record_webhook(&event).await;
        match &stored {
            Ok(WebhookStored::Applied) => {
                info!(webhook.id = %id, po_number = ?event.po_number, delivery_status = ?event.delivery_status, "Xoxoday webhook applied");
                self.wakes.reconciler().notify_one();
            }
            Ok(WebhookStored::Unmatched) => {
                warn!(webhook.id = %id, po_number = ?event.po_number, "Xoxoday webhook for an unknown poNumber; stored for review");
            }
            Ok(WebhookStored::Contradicted { was }) => {
                crate::metrics::record_webhook_contradiction();
                error!(
                    webhook.id = %id,
                    po_number = ?event.po_number,
                    delivery_status = ?event.delivery_status,
                    order.status_was = was.as_str(),
                    "Xoxoday webhook contradicts our final status; order moved to needs_review"
                );
            }
            Ok(WebhookStored::Repeat) => {
                info!(webhook.id = %id, "repeated Xoxoday webhook ignored")
            }
            Err(_) => {}
        }
        Ok(stored.map_err(Into::into))
    }
}
