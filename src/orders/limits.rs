//! Upstream budgets and pauses as the use cases see them (invariant 5):
//! a slot is taken through Postgres before EVERY placeOrder and
//! getOrderDetails, and Xoxoday's throttling or account-wide refusals pause
//! the affected operations on every replica.

use std::time::Duration;

use tracing::{error, warn};

use super::OrderService;
use crate::{
    store::{
        StoreResult,
        rate_limit::{self, ALL_OPERATIONS, Slot},
    },
    xoxoday::{Operation, UpstreamError},
};

/// Per-minute budgets and the settle window.
#[derive(Debug, Clone)]
pub struct UpstreamLimits {
    /// placeOrder calls per minute, all replicas together.
    pub place_order_rate: u32,
    /// getOrderDetails calls per minute, all replicas together.
    pub order_details_rate: u32,
    /// How long after a placeOrder ENDED a "not found" is not trusted.
    pub settle_window: Duration,
    /// The placeOrder client timeout: the latest end of a call whose worker
    /// vanished mid-call.
    pub place_timeout: Duration,
}

impl Default for UpstreamLimits {
    fn default() -> Self {
        Self {
            place_order_rate: 100,
            order_details_rate: 200,
            settle_window: Duration::from_secs(150),
            place_timeout: Duration::from_secs(150),
        }
    }
}

impl OrderService {
    /// Takes one slot of `op`'s shared budget, or says how long to wait.
    pub async fn take_slot(&self, op: Operation) -> StoreResult<Slot> {
        let rate = match op {
            Operation::PlaceOrder => self.upstream.place_order_rate,
            _ => self.upstream.order_details_rate,
        };
        let window = self.tuning.rate_window;
        let slot = rate_limit::try_take_slot(self.store.pool(), op.as_str(), rate, window).await?;
        if let Slot::Wait(wait) = slot {
            crate::metrics::record_rate_limit_wait(op.as_str(), wait);
        }
        Ok(slot)
    }

    /// `auth.request_limit_exceeded`: pause `op` for the penalty on every replica.
    pub(crate) async fn pause_throttled(&self, op: Operation, penalty: Duration) {
        warn!(
            operation = op.as_str(),
            penalty_s = penalty.as_secs(),
            "Xoxoday rate limit hit; operation paused on every replica"
        );
        let reason = format!(
            "Xoxoday answered auth.request_limit_exceeded (penalty {}s)",
            penalty.as_secs()
        );
        if let Err(e) = rate_limit::pause(self.store.pool(), op.as_str(), penalty, &reason).await {
            warn!(error = %e, "could not record the rate-limit pause");
        }
    }

    /// An error that hits every order: pause every operation, say what to do.
    pub(crate) async fn pause_systemic(&self, e: &UpstreamError) {
        let id = e
            .error_id
            .clone()
            .unwrap_or_else(|| format!("HTTP {}", e.http_status));
        let info = e.error_info.clone().unwrap_or_default();
        let reason = format!(
            "Xoxoday refuses every call ({id}: {info}): check the client credentials, the \
             allow-listed IP and that the user and company are enabled in the Xoxoday dashboard"
        );
        error!(xoxoday.error_id = %id, "{reason}; dispatch paused, orders stay queued");
        let pause = self.tuning.systemic_pause;
        if let Err(e) = rate_limit::pause(self.store.pool(), ALL_OPERATIONS, pause, &reason).await {
            warn!(error = %e, "could not record the account-wide pause");
        }
    }

    /// The account-wide pause in force, if any (for `/readyz`).
    pub async fn account_pause(&self) -> StoreResult<Option<String>> {
        let pauses = rate_limit::active_pauses(self.store.pool()).await?;
        Ok(pauses
            .into_iter()
            .find(|p| p.operation == ALL_OPERATIONS)
            .map(|p| format!("{} (until {})", p.reason, p.paused_until.to_rfc3339())))
    }
}

/// `d` scaled by a random factor in 0.8..1.2, so replicas do not retry in step.
pub(crate) fn jitter(d: Duration) -> Duration {
    use rand::Rng as _;
    d.mul_f64(rand::thread_rng().gen_range(0.8..1.2))
}
