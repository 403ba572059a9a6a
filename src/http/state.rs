//! Shared state of the HTTP layer: the roles the handlers call, and nothing
//! else (the workers are `startup`'s).

use std::sync::Arc;

use secrecy::SecretString;

use crate::orders::{Intake, OrderQueries, WebhookIngest};

/// What every handler can reach. Every extractor clones it, so it is one
/// `Arc` (issue 11: a request cloned every role's handles several times).
#[derive(Clone)]
pub struct AppState(Arc<Roles>);

#[derive(Clone)]
struct Roles {
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
        Self(Arc::new(Roles {
            intake,
            queries,
            webhooks,
            webhook_key,
            notify_metrics: None,
        }))
    }

    /// Adds the caller-notification part of `/metrics`.
    pub fn with_notify_metrics(mut self, m: crate::notify::metrics::NotifyMetrics) -> Self {
        Arc::make_mut(&mut self.0).notify_metrics = Some(m);
        self
    }

    /// The caller-notification part of `/metrics` (empty without it).
    pub async fn notify_metrics_text(&self) -> String {
        match &self.0.notify_metrics {
            Some(m) => m.text().await,
            None => String::new(),
        }
    }

    /// `POST /v1/orders`.
    pub fn intake(&self) -> &Intake {
        &self.0.intake
    }

    /// Caller-scoped reads, readiness and metrics.
    pub fn queries(&self) -> &OrderQueries {
        &self.0.queries
    }

    /// Delivery webhooks.
    pub fn webhooks(&self) -> &WebhookIngest {
        &self.0.webhooks
    }

    /// `WEBHOOK_API_KEY`, if set.
    pub fn webhook_key(&self) -> Option<&SecretString> {
        self.0.webhook_key.as_deref()
    }
}
