//! The emulator's shared state: one `std::sync::Mutex` over everything that
//! changes (ledger, faults, rate windows, tokens, webhook settings). The lock
//! is never held across an `.await`.

use std::{
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use tokio_util::sync::CancellationToken;

use super::{
    config::EmulatorConfig, faults::FaultPlan, ledger::Ledger, limits::RateLimiter,
    webhook::WebhookState,
};

/// Access-token lifetime, seconds (15 days, api-reference §2.2).
pub(crate) const ACCESS_TTL_SECS: u64 = 1_296_000;
/// Refresh-token lifetime, seconds (30 days).
pub(crate) const REFRESH_TTL_SECS: u64 = 2_592_000;

/// The one valid token pair. Rotation replaces both at once.
#[derive(Debug)]
pub(crate) struct Tokens {
    pub access: String,
    pub refresh: String,
    pub access_expired: bool,
    pub issued_at: Instant,
    pub issued_at_ms: i64,
    /// Sticky refusal: every bearer check answers `invalid_token`, even
    /// with a freshly refreshed token, until switched off.
    pub refuse_all: bool,
    /// Calls to the refresh endpoint, whatever their answer.
    pub refresh_calls: u32,
}

impl Tokens {
    fn new(access: String, refresh: String) -> Self {
        Self {
            access,
            refresh,
            access_expired: false,
            issued_at: Instant::now(),
            issued_at_ms: chrono::Utc::now().timestamp_millis(),
            refuse_all: false,
            refresh_calls: 0,
        }
    }

    /// Whether `token` is the current, unexpired access token.
    pub(crate) fn access_ok(&self, token: &str) -> bool {
        !self.refuse_all && !self.access_expired && token == self.access
    }

    /// Issues a fresh pair; the old pair stops working at once. The sticky
    /// refusal switch and the refresh counter survive the rotation.
    pub(crate) fn rotate(&mut self) {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let (refuse_all, refresh_calls) = (self.refuse_all, self.refresh_calls);
        *self = Self::new(format!("emu-at-{id}"), format!("emu-rt-{id}"));
        (self.refuse_all, self.refresh_calls) = (refuse_all, refresh_calls);
    }
}

/// Everything that changes, behind the single lock.
pub(crate) struct Inner {
    pub ledger: Ledger,
    pub faults: FaultPlan,
    pub limiter: RateLimiter,
    pub tokens: Tokens,
    pub webhook: WebhookState,
}

/// Shared by the handlers, background tasks and the handle.
pub(crate) struct Shared {
    inner: Mutex<Inner>,
    pub client_id: String,
    pub client_secret: String,
    pub delivery_delay: Duration,
    pub webhook_retry_delay: Duration,
    pub shutdown: CancellationToken,
    pub http: reqwest::Client,
}

impl Shared {
    pub(crate) fn new(cfg: EmulatorConfig) -> Arc<Self> {
        let inner = Inner {
            ledger: Ledger::new(cfg.balance),
            faults: FaultPlan::new(cfg.fault_rates),
            limiter: RateLimiter::new(cfg.rate_limits),
            tokens: Tokens::new(cfg.access_token, cfg.refresh_token),
            webhook: WebhookState::new(cfg.webhook_url, cfg.webhook_api_key),
        };
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_default();
        Arc::new(Self {
            inner: Mutex::new(inner),
            client_id: cfg.client_id,
            client_secret: cfg.client_secret,
            delivery_delay: cfg.delivery_delay,
            webhook_retry_delay: cfg.webhook_retry_delay,
            shutdown: CancellationToken::new(),
            http,
        })
    }

    /// The lock; a panic elsewhere does not poison the emulator for good.
    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}
