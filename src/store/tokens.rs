//! The stored Xoxoday token pair (one row, `xoxoday_tokens`): seeding,
//! reads, and the row lock under which exactly one replica refreshes.
//!
//! Only ciphertexts cross this module; sealing and opening is the caller's
//! job (`orders::token_store`), which knows the cipher.

use std::fmt;

use chrono::{DateTime, Utc};
use sqlx::{Postgres, Transaction};
use uuid::Uuid;

use super::{
    Store, StoreResult,
    exchanges::{ExchangeEnd, ExchangeStart, complete_exchange},
};

/// The stored row. `Debug` omits the ciphertexts.
#[derive(Clone, sqlx::FromRow)]
pub struct TokenRow {
    /// Bumped by every rotation or reset.
    pub generation: i64,
    /// Sealed access token.
    pub access_token_encrypted: Vec<u8>,
    /// Sealed refresh token.
    pub refresh_token_encrypted: Vec<u8>,
    /// Key of both ciphertexts.
    pub key_id: String,
    /// When the next proactive refresh is due.
    pub refresh_due_at: DateTime<Utc>,
    /// Access token expiry, when known.
    pub access_expires_at: Option<DateTime<Utc>>,
    /// Last successful refresh.
    pub last_refresh_at: Option<DateTime<Utc>>,
    /// Last failed refresh.
    pub last_refresh_failed_at: Option<DateTime<Utc>>,
    /// Why it failed (no secrets).
    pub last_refresh_error: Option<String>,
    /// Xoxoday refused the refresh token: only a new pair helps.
    pub operator_action_required: bool,
}

impl fmt::Debug for TokenRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenRow")
            .field("generation", &self.generation)
            .field("key_id", &self.key_id)
            .field("refresh_due_at", &self.refresh_due_at)
            .field("operator_action_required", &self.operator_action_required)
            .finish_non_exhaustive()
    }
}

/// A sealed pair to write.
pub struct SealedPair {
    /// Generation the ciphertexts are bound to.
    pub generation: i64,
    /// Sealed access token.
    pub access: Vec<u8>,
    /// Sealed refresh token.
    pub refresh: Vec<u8>,
    /// Key of both.
    pub key_id: String,
    /// `environment` (first start, reset) or `refresh`.
    pub source: &'static str,
    /// When Xoxoday issued it (or when we first saw it).
    pub issued_at: DateTime<Utc>,
    /// Access token expiry, when known.
    pub access_expires_at: Option<DateTime<Utc>>,
    /// Refresh token expiry, when known.
    pub refresh_expires_at: Option<DateTime<Utc>>,
    /// Next proactive refresh.
    pub refresh_due_at: DateTime<Utc>,
}

const COLUMNS: &str = "generation, access_token_encrypted, refresh_token_encrypted, key_id,
    refresh_due_at, access_expires_at, last_refresh_at, last_refresh_failed_at,
    last_refresh_error, operator_action_required";

impl Store {
    /// Stores the first pair unless one exists; true when it was stored.
    pub async fn seed_tokens(&self, pair: &SealedPair) -> StoreResult<bool> {
        let mut tx = self.pool.begin().await?;
        let done = write_pair(&mut tx, pair, "on conflict (token_set_id) do nothing").await?;
        tx.commit().await?;
        Ok(done)
    }

    /// The stored pair, without locking.
    pub async fn load_tokens(&self) -> StoreResult<Option<TokenRow>> {
        Ok(
            sqlx::query_as(&format!("select {COLUMNS} from xoxoday_tokens"))
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// Opens a transaction holding the row lock (waits for a replica that
    /// is refreshing), with the row as it is after that wait.
    pub async fn lock_tokens(&self) -> StoreResult<TokenLock> {
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query_as(&format!(
            "select {COLUMNS} from xoxoday_tokens where token_set_id = 1 for update"
        ))
        .fetch_optional(&mut *tx)
        .await?;
        Ok(TokenLock { tx, row })
    }
}

/// The token row, locked until [`TokenLock::commit`] (or drop: rollback).
pub struct TokenLock {
    tx: Transaction<'static, Postgres>,
    /// The row as read under the lock.
    pub row: Option<TokenRow>,
}

impl TokenLock {
    /// Replaces the pair (a rotation or a reset) and clears any failure.
    pub async fn store_pair(&mut self, pair: &SealedPair) -> StoreResult<()> {
        let upsert = "on conflict (token_set_id) do update set
            generation = excluded.generation, access_token_encrypted = excluded.access_token_encrypted,
            refresh_token_encrypted = excluded.refresh_token_encrypted, key_id = excluded.key_id,
            source = excluded.source, issued_at = excluded.issued_at,
            access_expires_at = excluded.access_expires_at,
            refresh_expires_at = excluded.refresh_expires_at,
            refresh_due_at = excluded.refresh_due_at,
            last_refresh_at = case when excluded.source = 'refresh' then now()
                                   else xoxoday_tokens.last_refresh_at end,
            last_refresh_error = null, last_refresh_failed_at = null,
            operator_action_required = false";
        write_pair(&mut self.tx, pair, upsert).await?;
        Ok(())
    }

    /// Records a failed refresh; the next try is due in `retry_in_secs`.
    pub async fn store_failure(
        &mut self,
        error: &str,
        operator_action_required: bool,
        retry_in_secs: f64,
    ) -> StoreResult<()> {
        sqlx::query(
            "update xoxoday_tokens set last_refresh_error = $1, last_refresh_failed_at = now(),
               operator_action_required = $2,
               refresh_due_at = least(refresh_due_at, now() + make_interval(secs => $3))
             where token_set_id = 1",
        )
        .bind(crate::domain::safe_text::pg_text(error).into_owned())
        .bind(operator_action_required)
        .bind(retry_in_secs)
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    /// Records the refresh exchange in full, in the same transaction as its
    /// result. `request_sealed` is the raw request (it holds secrets).
    pub async fn record_exchange(
        &mut self,
        start: ExchangeStart<'_>,
        request_sealed: (Vec<u8>, &str),
        end: &ExchangeEnd,
    ) -> StoreResult<()> {
        insert_exchange(&mut self.tx, start.exchange_id, &start, request_sealed).await?;
        complete_exchange(&mut self.tx, start.exchange_id, end).await
    }

    /// Commits: the new pair is durable before anyone uses it.
    pub async fn commit(self) -> StoreResult<()> {
        Ok(self.tx.commit().await?)
    }
}

async fn insert_exchange(
    tx: &mut Transaction<'static, Postgres>,
    exchange_id: Uuid,
    start: &ExchangeStart<'_>,
    (sealed, key_id): (Vec<u8>, &str),
) -> StoreResult<()> {
    sqlx::query(
        "insert into upstream_exchanges (exchange_id, operation, method, url, request_body,
           request_body_encrypted, request_key_id)
         values ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(exchange_id)
    .bind(start.operation)
    .bind(start.method)
    .bind(start.url)
    .bind(&start.request_body)
    .bind(sealed)
    .bind(key_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn write_pair(
    tx: &mut Transaction<'static, Postgres>,
    p: &SealedPair,
    on_conflict: &str,
) -> StoreResult<bool> {
    let done = sqlx::query(&format!(
        "insert into xoxoday_tokens (token_set_id, generation, access_token_encrypted,
           refresh_token_encrypted, key_id, source, issued_at, access_expires_at,
           refresh_expires_at, refresh_due_at)
         values (1, $1, $2, $3, $4, $5, $6, $7, $8, $9) {on_conflict}"
    ))
    .bind(p.generation)
    .bind(&p.access)
    .bind(&p.refresh)
    .bind(&p.key_id)
    .bind(p.source)
    .bind(p.issued_at)
    .bind(p.access_expires_at)
    .bind(p.refresh_expires_at)
    .bind(p.refresh_due_at)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() > 0)
}
