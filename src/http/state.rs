//! Shared state of the HTTP layer.

use std::sync::Arc;

use secrecy::SecretString;

use crate::orders::OrderService;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    /// The order use cases.
    pub orders: OrderService,
    /// `WEBHOOK_API_KEY`; webhooks are refused when unset.
    pub webhook_key: Option<Arc<SecretString>>,
    /// The caller-notification part of `/metrics`.
    pub notify_metrics: crate::notify::metrics::NotifyMetrics,
}
