//! Persistence: every SQL statement of the service lives under this module.
//!
//! One [`Store`] wraps a bounded pool whose acquire gives up after a few
//! seconds, so a database outage becomes [`StoreError::Unavailable`] (HTTP 503)
//! instead of a hung request. Errors are classified here, once: connection
//! and availability failures versus bugs.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use sqlx::{
    PgPool,
    postgres::{PgConnectOptions, PgPoolOptions},
};

/// Aging of orders never sent.
pub mod aging;
/// The last wallet balance read, shared by every replica.
pub mod balance;
/// Books audit runs, findings and the scheduled audit's lease.
pub mod books;
/// Callers and their hashed API keys.
pub mod callers;
/// Upstream exchange audit rows.
pub mod exchanges;
/// Account-wide holds (refused token, low balance) and their probe.
pub mod holds;
/// Caller notifications: endpoints, outbox claims, attempts.
pub mod notify;
/// Order rows: intake, reads, claims.
pub mod orders;
/// Guarded write-backs after an upstream call.
pub mod outcomes;
/// What proves an order exists upstream (SQL fragments).
mod proof;
/// Upstream rate limits and pauses shared by every replica.
pub mod rate_limit;
/// Reconciler claims and fenced write-backs.
pub mod reconcile;
/// Operator claims and write-backs (orders recheck / resolve).
pub mod review;
/// Read-only counts for `/metrics`.
pub mod stats;
/// The status names as SQL literals, from the domain enum.
mod status;
/// Order timelines: who changed what, when and why.
pub mod timeline;
/// The encrypted Xoxoday token pair and its refresh lease.
pub mod tokens;
/// Encrypted vouchers.
pub mod vouchers;
/// The inbox of Xoxoday delivery webhooks.
pub mod webhooks;

/// The embedded migrations (`migrations/`).
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!();

/// How long a request waits for a pooled connection before answering 503.
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);

/// A storage failure, classified for the API.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached or refuses work now; retrying is safe.
    #[error("database unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    /// Anything else: a bug or a broken invariant.
    #[error("database error: {0}")]
    Other(#[source] sqlx::Error),
}

impl StoreError {
    /// The work was cut short by shutdown (its task cancelled, the pool
    /// closing): retrying against another replica is safe.
    pub fn shutting_down() -> Self {
        Self::Unavailable(sqlx::Error::PoolClosed)
    }

    /// A batch of statements not done within its deadline (a connection
    /// that hangs): retrying is safe.
    pub fn took_too_long() -> Self {
        Self::Unavailable(sqlx::Error::Io(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            BatchDeadline,
        )))
    }

    /// For a failure that met no connection in time (the pool's acquire
    /// timeout, a closed pool) or was given up ([`Self::took_too_long`]),
    /// `Some` copy for another waiter (errors are not `Clone`). `None` for
    /// any other error.
    pub fn no_connection_again(&self) -> Option<Self> {
        match self {
            Self::Unavailable(sqlx::Error::PoolTimedOut) => {
                Some(Self::Unavailable(sqlx::Error::PoolTimedOut))
            }
            Self::Unavailable(sqlx::Error::PoolClosed) => Some(Self::shutting_down()),
            Self::Unavailable(sqlx::Error::Io(e))
                if e.get_ref().is_some_and(|inner| inner.is::<BatchDeadline>()) =>
            {
                Some(Self::took_too_long())
            }
            _ => None,
        }
    }
}

/// The cause of [`StoreError::took_too_long`], told apart from a socket's
/// own timeout.
#[derive(Debug)]
struct BatchDeadline;

impl std::fmt::Display for BatchDeadline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("not done within the batch deadline")
    }
}

impl std::error::Error for BatchDeadline {}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        if is_unavailable(&e) {
            Self::Unavailable(e)
        } else {
            Self::Other(e)
        }
    }
}

/// `d` as a Postgres time setting (`set_config('lock_timeout', …)`):
/// whole milliseconds, at least 1 (0 would turn the limit off).
fn setting_ms(d: std::time::Duration) -> String {
    format!("{}ms", d.as_millis().max(1))
}

fn is_unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|c| {
            // 08: connection exception; 53: insufficient resources;
            // 57P0x: admin/crash shutdown, cannot connect now; 3D000: no such database;
            // 57014: statement cancelled (`statement_timeout`, an operator's cancel);
            // 55P03: `lock_timeout`; 40001, 40P01: serialization failure, deadlock.
            // Each rolled its transaction back: the same work may be retried.
            c.starts_with("08")
                || c.starts_with("53")
                || c.starts_with("57P")
                || matches!(c.as_ref(), "3D000" | "57014" | "55P03" | "40001" | "40P01")
        }),
        _ => false,
    }
}

/// Result alias for store calls.
pub type StoreResult<T> = Result<T, StoreError>;

/// The database handle shared by handlers and workers.
#[derive(Debug, Clone)]
pub struct Store {
    pool: PgPool,
}

impl Store {
    /// Builds a lazily connecting, bounded pool. Nothing is contacted yet.
    pub fn connect_lazy(url: &SecretString, max_connections: u32) -> anyhow::Result<Self> {
        let opts: PgConnectOptions = url
            .expose_secret()
            .parse()
            .map_err(|e| anyhow::anyhow!("DATABASE_URL is not a valid Postgres URL: {e}"))?;
        let opts = opts
            .application_name("order-gateway")
            .options([("statement_timeout", "10s")]);
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            // A dead connection fails its query (→ 503, safe to retry);
            // pinging on every acquire would double the intake round trips.
            .test_before_acquire(false)
            .connect_lazy_with(opts);
        Ok(Self { pool })
    }

    /// Wraps an existing pool (tests).
    pub fn from_pool(pool: PgPool) -> Self {
        Self { pool }
    }

    /// Applies pending migrations.
    pub async fn migrate(&self) -> anyhow::Result<()> {
        MIGRATOR
            .run(&self.pool)
            .await
            .map_err(|e| anyhow::anyhow!("applying migrations failed: {e}"))
    }

    /// True when the database answers and every embedded migration is applied.
    pub async fn is_ready(&self) -> StoreResult<bool> {
        let latest = MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0);
        let applied: Option<i64> =
            sqlx::query_scalar("select max(version) from _sqlx_migrations where success")
                .fetch_one(&self.pool)
                .await?;
        Ok(applied.unwrap_or(0) >= latest)
    }
}
