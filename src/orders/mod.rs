//! Use cases of the order path, combining the store and the Xoxoday client:
//! idempotent intake, dispatch under leases, and order views.

use std::{sync::Arc, time::Duration};

use tokio::sync::{Notify, Semaphore};
use tokio_util::task::TaskTracker;

use crate::{crypto::Cipher, store::Store, tuning::Tuning, xoxoday::XoxodayApi};

/// Age limits of accepted, reconciling and pending orders.
pub mod aging;
/// Exchange → audit row conversion (encrypt raw, redact copy).
pub mod audit;
/// API key hashing, generation, and the in-memory caller cache.
pub mod callers;
/// Claim accepted orders and place them upstream.
pub mod dispatcher;
/// What `/readyz` and `/metrics` report.
pub mod health;
/// Account-wide holds (refused token, low balance) and the probe that lifts them.
pub mod holds;
/// `POST /v1/orders`: the idempotency gate.
pub mod intake;
/// Lease renewal while work runs.
mod lease;
/// Shared upstream budgets and pauses.
pub mod limits;
/// Mapping of placeOrder outcomes to order states.
mod outcome;
/// Caller-scoped reads and key checks, for the HTTP layer.
pub mod queries;
/// Settles unknown outcomes and pending deliveries through getOrderDetails.
pub mod reconciler;
/// One token refresh across replicas.
mod token_refresh;
/// The Postgres-backed, rotating Xoxoday token pair.
pub mod token_store;
/// Access tokens for Xoxoday.
pub mod tokens;
/// Orders with their decrypted vouchers.
pub mod view;
/// Xoxoday delivery webhooks.
pub mod webhooks;
/// The background worker loop and retry jitter.
mod worker;

pub use crate::domain::TokenState;
/// Persistence failures, as the use cases report them (503 versus 500).
pub use crate::store::{StoreError, StoreResult};
pub use callers::CallerCache;
pub use token_refresh::{OPERATOR_ACTION, REJECTION_REFRESH_COOLDOWN, TOKEN_HOLD_REASON};
pub use token_store::{RotatingTokens, TokenHealth};
pub use tokens::{AccessTokens, StaticAccessToken};
pub use view::OrderView;

/// Tunables of dispatch.
#[derive(Debug, Clone)]
pub struct DispatchSettings {
    /// How long a claim is valid without a heartbeat. A live call renews it
    /// every third of this, so a crashed worker's orders are recovered within
    /// about one lease.
    pub lease: Duration,
    /// Most orders claimed per background pass.
    pub batch: i64,
    /// Most placeOrder calls in flight in this process.
    pub max_in_flight: usize,
    /// Background pass interval when idle.
    pub poll_interval: Duration,
    /// First reconciliation check after an unknown outcome.
    pub unknown_check_in: Duration,
    /// First check of a pending delivery.
    pub pending_check_in: Duration,
    /// Least delay after a throttle, token or account-wide refusal, and
    /// before the first lookup after a timeout (`RECONCILE_RETRY_FLOOR`).
    pub defer_floor: Duration,
}

impl DispatchSettings {
    /// Settings from the worker tunables; the rest are fixed here.
    pub fn from_tuning(t: &Tuning) -> Self {
        Self {
            lease: t.order_lease,
            batch: 32,
            max_in_flight: 64,
            poll_interval: Duration::from_secs(1),
            unknown_check_in: t.retry_base,
            pending_check_in: t.pending_poll,
            defer_floor: t.retry_floor,
        }
    }
}

/// Everything the use cases need; cheap to clone.
#[derive(Clone)]
pub struct OrderService {
    /// Persistence; reached only through the use-case methods.
    store: Store,
    /// Upstream.
    pub xoxoday: Arc<dyn XoxodayApi>,
    /// Upstream credentials.
    pub tokens: Arc<dyn AccessTokens>,
    /// Encryption at rest.
    pub cipher: Arc<Cipher>,
    /// Caller-key cache.
    pub callers: Arc<CallerCache>,
    /// Tunables.
    pub settings: Arc<DispatchSettings>,
    /// Bounds placeOrder calls in flight.
    pub(crate) in_flight: Arc<Semaphore>,
    /// Wakes the background dispatcher.
    pub(crate) wake: Arc<Notify>,
    /// Spawned placements, awaited at shutdown.
    pub tasks: TaskTracker,
    /// Reconciler, rate-limit and review tunables.
    pub tuning: Arc<Tuning>,
    /// Wakes the reconciler (a webhook made an order due).
    pub(crate) recon_wake: Arc<Notify>,
    /// Upstream rate budgets and the settle window.
    pub upstream: Arc<limits::UpstreamLimits>,
    /// placeOrder's shared budget, known spent until (a hint, issue 11).
    pub(crate) place_spent: Arc<limits::SpentBudget>,
}

impl OrderService {
    /// Wires the service. Every setting comes from `tuning` (the worker
    /// variables) and `upstream` (the `XOXODAY_*` budgets and timeouts),
    /// both read once from the environment over the defaults of
    /// [`crate::settings`].
    pub fn new(
        store: Store,
        xoxoday: Arc<dyn XoxodayApi>,
        tokens: Arc<dyn AccessTokens>,
        cipher: Cipher,
        tuning: Tuning,
        upstream: limits::UpstreamLimits,
    ) -> Self {
        let settings = DispatchSettings::from_tuning(&tuning);
        Self {
            store,
            xoxoday,
            tokens,
            cipher: Arc::new(cipher),
            callers: Arc::new(CallerCache::default()),
            in_flight: Arc::new(Semaphore::new(settings.max_in_flight)),
            settings: Arc::new(settings),
            wake: Arc::new(Notify::new()),
            tasks: TaskTracker::new(),
            tuning: Arc::new(tuning),
            recon_wake: Arc::new(Notify::new()),
            upstream: Arc::new(upstream),
            place_spent: Arc::default(),
        }
    }
}
