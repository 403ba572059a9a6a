//! Shared state of the HTTP layer: the roles the handlers call, and nothing
//! else (the workers are `startup`'s).

use std::sync::Arc;

use secrecy::SecretString;

use crate::orders::{Intake, OrderQueries, WebhookIngest};

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    intake: Intake,
    queries: OrderQueries,
    webhooks: WebhookIngest,
    /// `WEBHOOK_API_KEY`; webhooks are refused when unset.
    webhook_key: Option<Arc<SecretString>>,
}

impl AppState {
    /// The handlers' roles and the expected webhook key.
    pub fn new(
        intake: Intake,
        queries: OrderQueries,
        webhooks: WebhookIngest,
        webhook_key: Option<Arc<SecretString>>,
    ) -> Self {
        Self {
            intake,
            queries,
            webhooks,
            webhook_key,
        }
    }

    /// `POST /v1/orders`.
    pub fn intake(&self) -> &Intake {
        &self.intake
    }

    /// Caller-scoped reads, readiness and metrics.
    pub fn queries(&self) -> &OrderQueries {
        &self.queries
    }

    /// Delivery webhooks.
    pub fn webhooks(&self) -> &WebhookIngest {
        &self.webhooks
    }

    /// `WEBHOOK_API_KEY`, if set.
    pub fn webhook_key(&self) -> Option<&SecretString> {
        self.webhook_key.as_deref()
    }
}
