//! Use cases of the order path, combining the store and the Xoxoday client,
//! as one type per role, each built in `startup.rs` from only what it uses:
//! [`Intake`] (the POST path), [`Dispatcher`] (the place path),
//! [`Reconciler`] (unknown outcomes, pending deliveries, age limits; holds a
//! `Dispatcher`), [`Prober`] (lifts account-wide holds), [`WebhookIngest`]
//! (delivery webhooks), [`OrderQueries`] (caller-scoped reads, views,
//! health) and [`RotatingTokens`] (the Xoxoday token pair).

use std::time::Duration;

use crate::{settings::fixed, store::StoreError, tuning::Tuning};

/// Age limits of accepted, reconciling and pending orders.
pub mod aging;
/// Exchange → audit row conversion (encrypt raw, redact copy).
pub mod audit;
/// The wallet balance, read once a minute over all replicas.
pub mod balance;
/// Group commit: work of one kind ready at the same moment, done together.
pub mod batches;
/// The books audit against getOrderHistory.
pub mod books;
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
/// Operator actions: recheck and resolve one order.
pub mod review;
/// The scheduled books audit of `serve`.
pub mod schedule;
/// Keys this process has seen stored: the replay hint of intake.
mod seen_keys;
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
/// Group commit of placeOrder write-backs.
pub mod write_backs;

pub use crate::domain::TokenState;
pub use callers::CallerCache;
pub use dispatcher::Dispatcher;
pub use holds::Prober;
pub use intake::Intake;
pub use limits::UpstreamLimits;
pub use queries::OrderQueries;
pub use reconciler::{ReconcileSettings, Reconciler};
pub use token_refresh::{OPERATOR_ACTION, REJECTION_REFRESH_COOLDOWN, TOKEN_HOLD_REASON};
pub use token_store::{RotatingTokens, TokenHealth};
pub use tokens::{AccessTokens, StaticAccessToken};
pub use view::OrderView;
pub use webhooks::WebhookIngest;
pub use worker::Wakes;

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
    /// Settings from the worker tunables and the fixed constants of
    /// [`crate::settings::fixed`].
    pub fn from_tuning(t: &Tuning) -> Self {
        Self {
            lease: t.order_lease,
            batch: fixed::DISPATCH_BATCH,
            max_in_flight: fixed::DISPATCH_MAX_IN_FLIGHT,
            poll_interval: fixed::DISPATCH_POLL_INTERVAL,
            unknown_check_in: t.retry_base,
            pending_check_in: t.pending_poll,
            defer_floor: t.retry_floor,
        }
    }
}

/// A use case failed in its own machinery (the database), not because of
/// the request. Callers ask only whether retrying later may help (503
/// versus 500); the store's error stays its source.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct ServiceError(#[from] StoreError);

impl ServiceError {
    /// The database is unavailable now; the same request may succeed later.
    pub fn is_unavailable(&self) -> bool {
        matches!(self.0, StoreError::Unavailable(_))
    }
}

/// The result of a use case the HTTP layer calls.
pub type ServiceResult<T> = Result<T, ServiceError>;
