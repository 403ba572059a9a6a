//! The one list of the gateway's variables (contract §4): each [`Var`] names
//! its variable, holds its default (the ONLY place that default is written)
//! and says what it means. [`crate::env::Env`] reads values over these
//! defaults, and `--help` of `serve` and `migrate` lists the same table, with
//! a flag mirroring each variable (`--order-lease` for `ORDER_LEASE`). The
//! few worker constants that are not variables are in [`fixed`]. A leaf:
//! it knows nothing else of the crate.

/// One environment variable, its default and its meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Var {
    /// The environment variable.
    pub name: &'static str,
    /// The value used when it is unset or empty; `None`: required or optional.
    pub default: Option<&'static str>,
    /// What it means, for `--help`.
    pub help: &'static str,
}

const fn var(name: &'static str, default: &'static str, help: &'static str) -> Var {
    Var {
        name,
        default: Some(default),
        help,
    }
}

const fn no_default(name: &'static str, help: &'static str) -> Var {
    Var {
        name,
        default: None,
        help,
    }
}

/// Postgres URL.
pub const DATABASE_URL: Var = no_default("DATABASE_URL", "Postgres URL (required)");
/// Pool size per replica.
pub const DATABASE_MAX_CONNECTIONS: Var = var(
    "DATABASE_MAX_CONNECTIONS",
    "10",
    "Pool size per replica (1-1000)",
);
/// HTTP listen address.
pub const LISTEN_ADDR: Var = var("LISTEN_ADDR", "0.0.0.0:8080", "HTTP listen address");
/// The key that encrypts at rest.
pub const ENCRYPTION_KEY: Var = no_default(
    "ENCRYPTION_KEY",
    "Base64 of 32 random bytes; encrypts vouchers, tokens, raw bodies and webhook secrets (required)",
);
/// The key being rotated out.
pub const ENCRYPTION_KEY_PREVIOUS: Var = no_default(
    "ENCRYPTION_KEY_PREVIOUS",
    "The former key while rotating: read, never written (unset: none)",
);
/// Expected `x-api-key` of Xoxoday webhooks.
pub const WEBHOOK_API_KEY: Var = no_default(
    "WEBHOOK_API_KEY",
    "Expected x-api-key on Xoxoday webhooks (unset: webhooks refused)",
);
/// Xoxoday base URL.
pub const XOXODAY_BASE_URL: Var = no_default(
    "XOXODAY_BASE_URL",
    "Xoxoday base URL ending in /chef; calls go to {base}/v1/oauth/api (required)",
);
/// OAuth client id.
pub const XOXODAY_CLIENT_ID: Var = no_default(
    "XOXODAY_CLIENT_ID",
    "OAuth client id used to refresh the token pair (required)",
);
/// OAuth client secret.
pub const XOXODAY_CLIENT_SECRET: Var = no_default(
    "XOXODAY_CLIENT_SECRET",
    "OAuth client secret used to refresh the token pair (required)",
);
/// First access token.
pub const XOXODAY_ACCESS_TOKEN: Var = no_default(
    "XOXODAY_ACCESS_TOKEN",
    "First access token from the Xoxoday dashboard; after the first start the stored pair wins \
     (required on first start)",
);
/// First refresh token.
pub const XOXODAY_REFRESH_TOKEN: Var = no_default(
    "XOXODAY_REFRESH_TOKEN",
    "First refresh token from the Xoxoday dashboard; after the first start the stored pair wins \
     (required on first start)",
);
/// placeOrder client timeout.
pub const XOXODAY_PLACE_ORDER_TIMEOUT: Var = var(
    "XOXODAY_PLACE_ORDER_TIMEOUT",
    "150s",
    "Client timeout for placeOrder",
);
/// Client timeout of the other calls.
pub const XOXODAY_REQUEST_TIMEOUT: Var = var(
    "XOXODAY_REQUEST_TIMEOUT",
    "30s",
    "Client timeout for the other calls",
);
/// How long a "not found" is not trusted after a placeOrder ended.
pub const XOXODAY_SETTLE_WINDOW: Var = var(
    "XOXODAY_SETTLE_WINDOW",
    "150s",
    "A \"not found\" is trusted only this long after the last placeOrder attempt ended",
);
/// placeOrder budget.
pub const XOXODAY_PLACE_ORDER_RATE: Var = var(
    "XOXODAY_PLACE_ORDER_RATE",
    "100",
    "placeOrder calls per minute, all replicas together",
);
/// getOrderDetails budget.
pub const XOXODAY_ORDER_DETAILS_RATE: Var = var(
    "XOXODAY_ORDER_DETAILS_RATE",
    "200",
    "getOrderDetails calls per minute, all replicas together",
);
/// Window of the shared limits: Xoxoday's minute plus the longest a stamped
/// call can take to arrive. The slot is stamped after the token read, just
/// before the send (issue 9, window 10), so what is left is the connect
/// ([`crate::xoxoday::CONNECT_TIMEOUT`], 4 s), 0.25 s for the request to
/// arrive, and 0.75 s from the stamp to the send, which the sender
/// enforces: a call found older is not sent ([`crate::tuning::send_margin`]).
/// Two calls stamped 65 s apart can then never land in one upstream minute
/// (checked in `tuning`'s tests).
pub const XOXODAY_RATE_WINDOW: Var = var(
    "XOXODAY_RATE_WINDOW",
    "65s",
    "Window of the shared rate limits (start-up refuses less than 65s)",
);
/// The test-only switch for a shorter window.
pub const XOXODAY_ALLOW_SHORT_RATE_WINDOW: Var = no_default(
    "XOXODAY_ALLOW_SHORT_RATE_WINDOW",
    "`1` or `true` accepts a rate window under 65s (tests only; unset: refused)",
);
/// Least time between two getBalance reads over all replicas.
pub const XOXODAY_PROBE_INTERVAL: Var = var(
    "XOXODAY_PROBE_INTERVAL",
    "60s",
    "Least time between two getBalance reads (balance and holds), all replicas together",
);
/// getOrderHistory budget.
pub const XOXODAY_ORDER_HISTORY_RATE: Var = var(
    "XOXODAY_ORDER_HISTORY_RATE",
    "200",
    "getOrderHistory calls per minute, all replicas together (books audit)",
);
/// Wallet balance under which the gateway warns.
pub const XOXODAY_LOW_BALANCE: Var = no_default(
    "XOXODAY_LOW_BALANCE",
    "Wallet balance (account currency) under which the gateway warns: metric, log, /readyz \
     detail (unset: no warning)",
);
/// How often `serve` runs the books audit.
pub const BOOKS_AUDIT_INTERVAL: Var = var(
    "BOOKS_AUDIT_INTERVAL",
    "24h",
    "How often serve runs the books audit over the last 3 days, first one interval after \
     start (0 disables)",
);
/// Lease of a claimed order.
pub const ORDER_LEASE: Var = var(
    "ORDER_LEASE",
    "15s",
    "Lease of a claimed order; renewed every third while work runs",
);
/// placeOrder attempts before review.
pub const RECONCILE_MAX_ATTEMPTS: Var = var(
    "RECONCILE_MAX_ATTEMPTS",
    "5",
    "placeOrder attempts before needs_review",
);
/// Age of a reconciling order before review.
pub const RECONCILE_MAX_AGE: Var = var(
    "RECONCILE_MAX_AGE",
    "72h",
    "Time after the first send for a reconciling order to go to needs_review",
);
/// Age of an unsent accepted order before it fails.
pub const ACCEPTED_MAX_AGE: Var = var(
    "ACCEPTED_MAX_AGE",
    "72h",
    "An accepted order never sent and older than this becomes failed (expired_unsent)",
);
/// Age of a pending delivery before review.
pub const PENDING_DELIVERY_MAX_AGE: Var = var(
    "PENDING_DELIVERY_MAX_AGE",
    "21d",
    "Time after the first send for a pending_delivery order to go to needs_review \
     (delivery_overdue)",
);
/// First retry delay of a failed check.
pub const RECONCILE_RETRY_BASE: Var = var(
    "RECONCILE_RETRY_BASE",
    "5s",
    "First retry delay of a failed check (doubles per check)",
);
/// Cap of the backoff.
pub const RECONCILE_RETRY_MAX: Var = var(
    "RECONCILE_RETRY_MAX",
    "15m",
    "Cap of the retry backoff of failed checks",
);
/// Least delay after timeouts, rate limits and deferred placeOrders.
pub const RECONCILE_RETRY_FLOOR: Var = var(
    "RECONCILE_RETRY_FLOOR",
    "60s",
    "Least delay after timeouts, rate limits and deferred placeOrders",
);
/// Idle pause of the reconciler loop.
pub const RECONCILE_POLL_INTERVAL: Var = var(
    "RECONCILE_POLL_INTERVAL",
    "1s",
    "Idle pause of the reconciler loop",
);
/// Safety poll of pending deliveries.
pub const PENDING_POLL_INTERVAL: Var = var(
    "PENDING_POLL_INTERVAL",
    "6h",
    "Safety poll of pending_delivery orders",
);
/// Pause after an account-wide refusal.
pub const SYSTEMIC_PAUSE: Var = var(
    "SYSTEMIC_PAUSE",
    "5m",
    "Pause of every call after an account-wide refusal",
);
/// Caller notifications: deliveries in flight per replica.
pub const NOTIFY_CONCURRENCY: Var = var(
    "NOTIFY_CONCURRENCY",
    "16",
    "Caller notifications in flight per replica (1-1000)",
);
/// Caller notifications: deliveries in flight per endpoint.
pub const NOTIFY_ENDPOINT_CONCURRENCY: Var = var(
    "NOTIFY_ENDPOINT_CONCURRENCY",
    "4",
    "Caller notifications in flight to one endpoint, all replicas together (1-100)",
);
/// Idle pause of the notification sender.
pub const NOTIFY_POLL_INTERVAL: Var = var(
    "NOTIFY_POLL_INTERVAL",
    "1s",
    "Idle pause of the notification sender (new events also wake it at once)",
);
/// Lease of a claimed notification.
pub const NOTIFY_LEASE: Var = var(
    "NOTIFY_LEASE",
    "15s",
    "Lease of a claimed notification; a crashed sender's claims return after it (at least 10s)",
);
/// First retry delay of a notification.
pub const NOTIFY_RETRY_FIRST: Var = var(
    "NOTIFY_RETRY_FIRST",
    "5s",
    "First retry delay of a notification (then doubles, +/-20% jitter)",
);
/// Cap of the notification backoff.
pub const NOTIFY_RETRY_MAX: Var = var(
    "NOTIFY_RETRY_MAX",
    "10m",
    "Cap of the notification retry backoff",
);
/// How long a notification is retried.
pub const NOTIFY_RETRY_FOR: Var = var(
    "NOTIFY_RETRY_FOR",
    "72h",
    "How long a notification is retried before it is marked failed",
);
/// Log filter.
pub const RUST_LOG: Var = var("RUST_LOG", "info", "Log filter");
/// Log line format.
pub const LOG_FORMAT: Var = var("LOG_FORMAT", "json", "Log format: json or pretty");

/// Worker constants that are not variables: each written here once.
pub mod fixed {
    use std::time::Duration;

    /// How often each replica's reconciler folds the status counters'
    /// deltas into their totals (migration 0046).
    pub const FOLD_EVERY: Duration = Duration::from_secs(10);
    /// Most deltas one fold statement moves.
    pub const FOLD_BATCH: i32 = 10_000;
    /// Most fold statements in one round (a backlog catches up by
    /// `FOLD_BATCH` × this each [`FOLD_EVERY`]).
    pub const FOLD_ROUNDS: usize = 10;

    /// Most orders the background dispatcher claims per pass.
    pub const DISPATCH_BATCH: i64 = 32;
    /// Most placeOrder calls in flight in one process.
    pub const DISPATCH_MAX_IN_FLIGHT: usize = 64;
    /// Most pooled connections of one process waiting for the placeOrder
    /// slot lock at once: background attempts inside their transaction, and
    /// intake transactions waiting for a block of slots (taken on a
    /// connection of its own, so a block is at most this many). A held lock
    /// must not drain the pool; the others wait in memory.
    pub const SLOT_LOCK_WAITERS: usize = 4;
    /// Background dispatcher pass interval when idle.
    pub const DISPATCH_POLL_INTERVAL: Duration = Duration::from_secs(1);
    /// Most reconciliation checks claimed per pass.
    pub const RECONCILE_BATCH: i64 = 32;
}

/// Everything `serve` reads, in the README's order.
pub const SERVE: &[Var] = &[
    DATABASE_URL,
    DATABASE_MAX_CONNECTIONS,
    LISTEN_ADDR,
    ENCRYPTION_KEY,
    ENCRYPTION_KEY_PREVIOUS,
    WEBHOOK_API_KEY,
    XOXODAY_BASE_URL,
    XOXODAY_CLIENT_ID,
    XOXODAY_CLIENT_SECRET,
    XOXODAY_ACCESS_TOKEN,
    XOXODAY_REFRESH_TOKEN,
    XOXODAY_PLACE_ORDER_TIMEOUT,
    XOXODAY_REQUEST_TIMEOUT,
    XOXODAY_SETTLE_WINDOW,
    XOXODAY_PLACE_ORDER_RATE,
    XOXODAY_ORDER_DETAILS_RATE,
    XOXODAY_RATE_WINDOW,
    XOXODAY_ALLOW_SHORT_RATE_WINDOW,
    XOXODAY_PROBE_INTERVAL,
    XOXODAY_ORDER_HISTORY_RATE,
    XOXODAY_LOW_BALANCE,
    BOOKS_AUDIT_INTERVAL,
    ORDER_LEASE,
    RECONCILE_MAX_ATTEMPTS,
    RECONCILE_MAX_AGE,
    ACCEPTED_MAX_AGE,
    PENDING_DELIVERY_MAX_AGE,
    RECONCILE_RETRY_BASE,
    RECONCILE_RETRY_MAX,
    RECONCILE_RETRY_FLOOR,
    RECONCILE_POLL_INTERVAL,
    PENDING_POLL_INTERVAL,
    SYSTEMIC_PAUSE,
    NOTIFY_CONCURRENCY,
    NOTIFY_ENDPOINT_CONCURRENCY,
    NOTIFY_POLL_INTERVAL,
    NOTIFY_LEASE,
    NOTIFY_RETRY_FIRST,
    NOTIFY_RETRY_MAX,
    NOTIFY_RETRY_FOR,
    RUST_LOG,
    LOG_FORMAT,
];

/// Everything `migrate` reads.
pub const MIGRATE: &[Var] = &[DATABASE_URL, RUST_LOG, LOG_FORMAT];

/// Everything `api-key create` and `api-key revoke` read.
pub const API_KEY: &[Var] = &[DATABASE_URL];

/// Everything `callers webhook set` reads (the secret is stored encrypted).
pub const WEBHOOK_SET: &[Var] = &[DATABASE_URL, ENCRYPTION_KEY];

/// Everything `callers webhook remove` and `callers webhook replay` read.
pub const WEBHOOK_MANAGE: &[Var] = &[DATABASE_URL];

/// Everything `tokens reset` reads.
pub const TOKENS_RESET: &[Var] = &[
    DATABASE_URL,
    ENCRYPTION_KEY,
    XOXODAY_ACCESS_TOKEN,
    XOXODAY_REFRESH_TOKEN,
];

/// Everything `orders show` reads.
pub const ORDERS_SHOW: &[Var] = &[DATABASE_URL, ENCRYPTION_KEY, ENCRYPTION_KEY_PREVIOUS];

/// Everything `orders recheck`, `orders resolve` and `audit books` read:
/// the database, the key, and what reaching Xoxoday within the shared
/// budget takes.
pub const OPERATOR: &[Var] = &[
    DATABASE_URL,
    ENCRYPTION_KEY,
    ENCRYPTION_KEY_PREVIOUS,
    XOXODAY_BASE_URL,
    XOXODAY_CLIENT_ID,
    XOXODAY_CLIENT_SECRET,
    XOXODAY_REQUEST_TIMEOUT,
    XOXODAY_ORDER_DETAILS_RATE,
    XOXODAY_ORDER_HISTORY_RATE,
    XOXODAY_RATE_WINDOW,
    XOXODAY_ALLOW_SHORT_RATE_WINDOW,
    PENDING_POLL_INTERVAL,
];

/// Everything `healthcheck` reads (it probes loopback when the address is
/// unspecified).
pub const HEALTHCHECK: &[Var] = &[LISTEN_ADDR];
