//! The emulator's shared state: one `std::sync::Mutex` over everything that
//! changes (ledger, faults, rate windows, tokens, webhook settings, output
//! switches). The lock is never held across an `.await`.

use std::{
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use tokio_util::sync::CancellationToken;

use super::{
    config::{EmptyHistory, EmulatorConfig},
    faults::FaultPlan,
    hostile::HostileText,
    ledger::Ledger,
    limits::RateLimiter,
};

/// One webhook POST attempt, as the emulator saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookAttempt {
    /// The webhook `id`.
    pub id: i64,
    /// The order it reports.
    pub order_id: i64,
    /// `delivered` or `canceled`.
    pub delivery_status: String,
    /// 1 for the first try, up to 4.
    pub attempt: u32,
    /// HTTP status received, if any.
    pub status: Option<u16>,
    /// Transport error, if any.
    pub error: Option<String>,
}

/// Webhook settings and history.
#[derive(Debug)]
pub(crate) struct WebhookState {
    pub url: Option<String>,
    pub api_key: Option<String>,
    pub disabled: bool,
    pub next_id: i64,
    pub attempts: Vec<WebhookAttempt>,
}

impl WebhookState {
    pub(crate) fn new(url: Option<String>, api_key: Option<String>) -> Self {
        Self {
            url,
            api_key,
            disabled: false,
            next_id: 9_000_000_001,
            attempts: Vec::new(),
        }
    }
}

/// Access-token lifetime, seconds (15 days, api-reference §2.2).
pub(crate) const ACCESS_TTL_SECS: u64 = 1_296_000;
/// Refresh-token lifetime, seconds (30 days).
pub(crate) const REFRESH_TTL_SECS: u64 = 2_592_000;

/// The one valid token pair. Rotation replaces both at once; the sticky
/// refusal switch and the refresh-call count survive rotation.
#[derive(Debug)]
pub(crate) struct Tokens {
    pub access: String,
    pub refresh: String,
    pub access_expired: bool,
    pub issued_at: Instant,
    pub issued_at_ms: i64,
    /// While set, every access token is refused, even a fresh one.
    pub refuse_all: bool,
    /// Calls that reached the refresh endpoint, whatever their outcome.
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
        !self.access_expired && !self.refuse_all && token == self.access
    }

    /// Issues a fresh pair; the old pair stops working at once.
    pub(crate) fn rotate(&mut self) {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let fresh = Self::new(format!("emu-at-{id}"), format!("emu-rt-{id}"));
        *self = Self {
            refuse_all: self.refuse_all,
            refresh_calls: self.refresh_calls,
            ..fresh
        };
    }
}

/// Everything that changes, behind the single lock.
pub(crate) struct Inner {
    pub ledger: Ledger,
    pub faults: FaultPlan,
    pub limiter: RateLimiter,
    pub tokens: Tokens,
    pub webhook: WebhookState,
    /// While set, every API answer and webhook carries this hostile text.
    pub hostile: Option<HostileText>,
    pub empty_history: EmptyHistory,
    /// Late creations whose order is not in the ledger yet.
    pub late_pending: usize,
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
            hostile: None,
            empty_history: cfg.empty_history,
            late_pending: 0,
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
