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
    notify_metrics: Option<crate::notify::metrics::NotifyMetrics>,
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
            notify_metrics: None,
        }
    }

    /// Adds the caller-notification part of `/metrics`.
    pub fn with_notify_metrics(mut self, m: crate::notify::metrics::NotifyMetrics) -> Self {
        self.notify_metrics = Some(m);
        self
    }

    /// The caller-notification part of `/metrics` (empty without it).
    pub async fn notify_metrics_text(&self) -> String {
        match &self.notify_metrics {
            Some(m) => m.text().await,
            None => String::new(),
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
