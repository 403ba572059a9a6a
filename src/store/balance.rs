//! The last wallet balance read (contract §8): one row, claimed through
//! `last_read_at` in one statement so at most one replica reads getBalance
//! per interval, and kept so every replica reports the same balance.

use std::time::Duration;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

use super::{Store, StoreResult};

/// The last balance read.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct BalanceReading {
    /// Available balance.
    pub balance: Decimal,
    /// Its currency, when Xoxoday said.
    pub currency: Option<String>,
    /// When it was read.
    pub read_ok_at: DateTime<Utc>,
}

impl Store {
    /// Claims the next balance read: true when no replica read within
    /// `interval` and no hold is in force (a hold's own probe reads then).
    pub async fn claim_balance_read(&self, interval: Duration) -> StoreResult<bool> {
        let done = sqlx::query(
            "update xoxoday_balance set last_read_at = now()
             where balance_id = 1
               and (last_read_at is null or last_read_at <= now() - make_interval(secs => $1))
               and not exists (select 1 from upstream_holds)",
        )
        .bind(interval.as_secs_f64())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Keeps a balance just read (by the monitor or a hold's probe).
    pub async fn save_balance(&self, balance: Decimal, currency: Option<&str>) -> StoreResult<()> {
        sqlx::query(
            "update xoxoday_balance set balance = $1, currency = $2, read_ok_at = now(),
               last_read_at = now()
             where balance_id = 1",
        )
        .bind(balance)
        .bind(currency)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The last balance read, if any.
    pub async fn last_balance(&self) -> StoreResult<Option<BalanceReading>> {
        Ok(sqlx::query_as(
            "select balance, currency, read_ok_at from xoxoday_balance
             where balance_id = 1 and read_ok_at is not null",
        )
        .fetch_optional(&self.pool)
        .await?)
    }
}
