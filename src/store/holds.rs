//! Account-wide holds (`upstream_holds`) that only Xoxoday can end: a token
//! refused even after a refresh, a wallet too low for an order (issue 9,
//! windows 4 and 11).
//!
//! A hold keeps its `upstream_pauses` row alive; the probe that may lift it
//! is claimed through `last_probe_at` in one statement, so at most one
//! replica probes per interval. Lifting deletes the hold, its pause (only
//! when the pause still carries the hold's reason) and makes the orders
//! the pause deferred due at once.

use super::status::ACCEPTED;
use const_format::formatcp;
use std::time::Duration;

use rust_decimal::Decimal;
use sqlx::PgPool;

use super::{Store, StoreResult};

/// What is held, as stored in `upstream_holds.hold`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldKind {
    /// Xoxoday refuses the access token even right after a refresh:
    /// every operation is paused.
    TokenRejected,
    /// Xoxoday refused an order for insufficient balance: placeOrder is paused.
    InsufficientBalance,
}

impl HoldKind {
    /// Both kinds.
    pub const ALL: [Self; 2] = [Self::TokenRejected, Self::InsufficientBalance];

    /// Stored name; also the `reason` label of the hold metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TokenRejected => "token_rejected",
            Self::InsufficientBalance => "insufficient_balance",
        }
    }

    /// The `upstream_pauses` operation the hold keeps paused.
    pub fn paused_operation(self) -> &'static str {
        match self {
            Self::TokenRejected => super::rate_limit::ALL_OPERATIONS,
            Self::InsufficientBalance => "place_order",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// One hold in force.
#[derive(Debug, Clone)]
pub struct Hold {
    /// What is held.
    pub kind: HoldKind,
    /// Shown in `/readyz` and logs.
    pub reason: String,
    /// `InsufficientBalance`: the balance must exceed this.
    pub needed_amount: Option<Decimal>,
}

type HoldRow = (String, String, Option<Decimal>);

fn holds(rows: Vec<HoldRow>) -> Vec<Hold> {
    rows.into_iter()
        .filter_map(|(kind, reason, needed_amount)| {
            HoldKind::parse(&kind).map(|kind| Hold {
                kind,
                reason,
                needed_amount,
            })
        })
        .collect()
}

impl Store {
    /// Starts (or keeps) a hold and its pause for `pause`. The first probe
    /// is due one probe interval later. A balance hold keeps the largest
    /// refused amount and its reason. True when the hold is new.
    pub async fn start_hold(
        &self,
        kind: HoldKind,
        reason: &str,
        needed: Option<Decimal>,
        pause: Duration,
    ) -> StoreResult<bool> {
        let (new, stored): (bool, String) = sqlx::query_as(
            "insert into upstream_holds (hold, reason, needed_amount) values ($1, $2, $3)
             on conflict (hold) do update set
               reason = case when excluded.needed_amount > upstream_holds.needed_amount
                             then excluded.reason else upstream_holds.reason end,
               needed_amount = greatest(upstream_holds.needed_amount, excluded.needed_amount)
             returning (xmax = 0), reason",
        )
        .bind(kind.as_str())
        .bind(reason)
        .bind(needed)
        .fetch_one(&self.pool)
        .await?;
        extend(&self.pool, kind, &stored, pause).await?;
        Ok(new)
    }

    /// Every hold in force.
    pub async fn active_holds(&self) -> StoreResult<Vec<Hold>> {
        // The token hold first: it stops every call, the balance hold only placeOrder.
        let rows = sqlx::query_as(
            "select hold, reason, needed_amount from upstream_holds
             order by hold = 'token_rejected' desc",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(holds(rows))
    }

    /// Claims the probe when one is due (none in the last `interval` on any
    /// replica): the holds to probe for, or an empty list.
    pub async fn claim_probe(&self, interval: Duration) -> StoreResult<Vec<Hold>> {
        let claimed: Vec<HoldRow> = sqlx::query_as(
            "update upstream_holds set last_probe_at = now()
             where last_probe_at <= now() - make_interval(secs => $1)
             returning hold, reason, needed_amount",
        )
        .bind(interval.as_secs_f64())
        .fetch_all(&self.pool)
        .await?;
        if claimed.is_empty() {
            return Ok(Vec::new());
        }
        // One probe answers for every hold: stamp them all.
        sqlx::query("update upstream_holds set last_probe_at = now()")
            .execute(&self.pool)
            .await?;
        self.active_holds().await
    }

    /// Keeps a hold's pause alive for `pause` more (a probe saw no change).
    pub async fn extend_hold(&self, hold: &Hold, pause: Duration) -> StoreResult<()> {
        extend(&self.pool, hold.kind, &hold.reason, pause).await
    }

    /// Ends a hold: deletes it and its pause, and makes the orders the pause
    /// deferred due now. True when this call ended it.
    pub async fn lift_hold(&self, hold: &Hold) -> StoreResult<bool> {
        let mut tx = self.pool.begin().await?;
        let gone = sqlx::query("delete from upstream_holds where hold = $1")
            .bind(hold.kind.as_str())
            .execute(&mut *tx)
            .await?;
        sqlx::query("delete from upstream_pauses where operation = $1 and reason = $2")
            .bind(hold.kind.paused_operation())
            .bind(&hold.reason)
            .execute(&mut *tx)
            .await?;
        sqlx::query(formatcp!(
            "update orders set next_attempt_at = now()
             where status = {ACCEPTED} and next_attempt_at > now()"
        ))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(gone.rows_affected() > 0)
    }
}

async fn extend(pool: &PgPool, kind: HoldKind, reason: &str, pause: Duration) -> StoreResult<()> {
    super::rate_limit::pause(pool, kind.paused_operation(), pause, reason).await?;
    Ok(())
}
