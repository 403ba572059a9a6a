//! Upstream rate limits shared through Postgres by every replica
//! (contract §2.5): a strict sliding window per operation, plus pauses
//! (rate-limit penalties, account-wide errors) that every replica honours.
//!
//! The guarantee lives in the database (`take_upstream_slot`: an advisory
//! lock around count-then-insert), never in process memory.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::{PgExecutor, PgPool};

use super::{Store, StoreResult};

/// One operation's budget, as [`try_take_slot`] needs it.
#[derive(Debug, Clone, Copy)]
pub struct SlotAsk {
    /// Operation name (`place_order`, `get_order_details`).
    pub operation: &'static str,
    /// Calls allowed per window, all replicas together.
    pub per_minute: u32,
    /// The window (normally [`crate::settings::XOXODAY_RATE_WINDOW`]).
    pub window: Duration,
}

/// Every operation at once (account-wide pauses).
pub const ALL_OPERATIONS: &str = "*";

/// Answer of [`try_take_slot`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// A call may be made now; it has been counted.
    Granted,
    /// No budget (or a pause); ask again after this long.
    Wait(Duration),
}

/// Takes one call slot for `operation` if at most `per_minute - 1` calls
/// were made in the last `window` (normally [`crate::settings::XOXODAY_RATE_WINDOW`]), in one round trip.
/// Inside a transaction the slot (and the advisory lock) last until its
/// end: a rollback gives the slot back.
pub async fn try_take_slot<'e>(
    db: impl PgExecutor<'e>,
    operation: &str,
    per_minute: u32,
    window: Duration,
) -> sqlx::Result<Slot> {
    let wait_ms: i64 = sqlx::query_scalar("select take_upstream_slot($1, $2, $3)")
        .bind(operation)
        .bind(i32::try_from(per_minute).unwrap_or(i32::MAX))
        .bind(i32::try_from(window.as_millis()).unwrap_or(i32::MAX))
        .fetch_one(db)
        .await?;
    Ok(if wait_ms <= 0 {
        Slot::Granted
    } else {
        Slot::Wait(Duration::from_millis(wait_ms.unsigned_abs()))
    })
}

/// Pauses `operation` (or [`ALL_OPERATIONS`]) on every replica for `duration`;
/// an existing longer pause is kept.
pub async fn pause(
    pool: &PgPool,
    operation: &str,
    duration: Duration,
    reason: &str,
) -> sqlx::Result<()> {
    sqlx::query(
        "insert into upstream_pauses (operation, paused_until, reason)
         values ($1, clock_timestamp() + make_interval(secs => $2), $3)
         on conflict (operation) do update
            set paused_until = greatest(upstream_pauses.paused_until, excluded.paused_until),
                reason = case when excluded.paused_until > upstream_pauses.paused_until
                              then excluded.reason else upstream_pauses.reason end",
    )
    .bind(operation)
    .bind(duration.as_secs_f64())
    .bind(reason)
    .execute(pool)
    .await?;
    Ok(())
}

/// Lifts a pause early (e.g. an account-wide error that an operator fixed).
pub async fn resume(pool: &PgPool, operation: &str) -> sqlx::Result<()> {
    sqlx::query("delete from upstream_pauses where operation = $1")
        .bind(operation)
        .execute(pool)
        .await?;
    Ok(())
}

/// A pause in force now.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ActivePause {
    /// Operation name, or `*`.
    pub operation: String,
    /// When it ends.
    pub paused_until: DateTime<Utc>,
    /// Why (shown in /readyz and logs).
    pub reason: String,
}

/// Pauses in force now, for `/readyz`, metrics and logs.
pub async fn active_pauses(pool: &PgPool) -> sqlx::Result<Vec<ActivePause>> {
    sqlx::query_as(
        "select operation, paused_until, reason from upstream_pauses
          where paused_until > clock_timestamp() order by operation",
    )
    .fetch_all(pool)
    .await
}

impl Store {
    /// A read-only look at `ask`'s budget (`upstream_slots_free`: no lock,
    /// no write): [`Slot::Granted`] when a slot is free now, else how long
    /// until one frees or a pause ends. Only a hint for not claiming work
    /// that cannot be sent: a call still takes its slot with [`try_take_slot`].
    pub async fn slots_free(&self, ask: SlotAsk) -> StoreResult<Slot> {
        let (free, wait_ms): (i32, i64) =
            sqlx::query_as("select free, wait_ms from upstream_slots_free($1, $2, $3)")
                .bind(ask.operation)
                .bind(i32::try_from(ask.per_minute).unwrap_or(i32::MAX))
                .bind(i32::try_from(ask.window.as_millis()).unwrap_or(i32::MAX))
                .fetch_one(&self.pool)
                .await?;
        Ok(if free > 0 {
            Slot::Granted
        } else {
            Slot::Wait(Duration::from_millis(wait_ms.unsigned_abs().max(1)))
        })
    }

    /// [`pause`] on this store's pool.
    pub async fn pause_operation(
        &self,
        operation: &str,
        duration: Duration,
        reason: &str,
    ) -> StoreResult<()> {
        Ok(pause(&self.pool, operation, duration, reason).await?)
    }

    /// [`active_pauses`] on this store's pool.
    pub async fn active_pauses(&self) -> StoreResult<Vec<ActivePause>> {
        Ok(active_pauses(&self.pool).await?)
    }
}
