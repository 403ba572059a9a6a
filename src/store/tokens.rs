//! The stored Xoxoday token pair (one row, `xoxoday_tokens`): seeding,
//! reads, and the refresh lease under which exactly one replica refreshes.
//!
//! Protects the only copy of the pair (issue 9, window 5): no statement here
//! keeps a transaction open across an HTTP call. The lease is taken and
//! released in short committed statements, a rotated pair is committed on
//! its own before anything else, and the audit row comes after it. The row
//! lock of [`TokenLock`] is only for `tokens reset`, which calls nobody.
//! Only ciphertexts cross this module; sealing and opening is the caller's
//! job (`orders::token_store`), which knows the cipher.

use std::{fmt, time::Duration};

use chrono::{DateTime, Utc};
use sqlx::{Postgres, Transaction};
use uuid::Uuid;

use super::{Store, StoreResult};

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
    /// Last refresh triggered by a refused access token (all replicas).
    pub last_rejection_refresh_at: Option<DateTime<Utc>>,
    /// The database clock when the row was read (cooldowns are measured on
    /// it, never on a replica's clock).
    pub db_now: DateTime<Utc>,
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
    last_refresh_error, operator_action_required, last_rejection_refresh_at, now() as db_now";

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

    /// Takes the refresh lease for `lease` (one short committed statement)
    /// unless another replica holds a live one. `None`: no row, or leased.
    pub async fn take_refresh_lease(
        &self,
        token: Uuid,
        lease: Duration,
    ) -> StoreResult<Option<TokenRow>> {
        Ok(sqlx::query_as(&format!(
            "update xoxoday_tokens set refresh_lease_token = $1,
               refresh_lease_until = now() + make_interval(secs => $2)
             where token_set_id = 1
               and (refresh_lease_until is null or refresh_lease_until < now())
             returning {COLUMNS}"
        ))
        .bind(token)
        .bind(lease.as_secs_f64())
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Gives the lease back (a no-op when it is no longer ours).
    pub async fn release_refresh_lease(&self, token: Uuid) -> StoreResult<()> {
        sqlx::query(
            "update xoxoday_tokens set refresh_lease_token = null, refresh_lease_until = null
             where token_set_id = 1 and refresh_lease_token = $1",
        )
        .bind(token)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Stamps a rejection-triggered refresh under the lease, before the call,
    /// so a crash mid-call still counts against the cooldown. False when the
    /// lease is no longer ours (then the call must not be made).
    pub async fn stamp_rejection_refresh(&self, token: Uuid) -> StoreResult<bool> {
        let done = sqlx::query(
            "update xoxoday_tokens set last_rejection_refresh_at = now()
             where token_set_id = 1 and refresh_lease_token = $1",
        )
        .bind(token)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Commits a rotated pair on its own and ends the lease. Written whoever
    /// holds the lease now: once Xoxoday rotated, this pair is the only one
    /// that works, so it must never be dropped, unless a newer pair was
    /// stored since the refresh began (`generation` moved past the one it
    /// rotated): a `tokens reset`, or a refresh that started after ours and
    /// so was issued later. Overwriting that would store a pair Xoxoday may
    /// already have killed. False then (nothing written).
    pub async fn store_rotated_pair(&self, pair: &SealedPair) -> StoreResult<bool> {
        let mut tx = self.pool.begin().await?;
        let fenced = format!(
            "{UPSERT} where xoxoday_tokens.generation = {}",
            pair.generation - 1
        );
        let stored = write_pair(&mut tx, pair, &fenced).await?;
        tx.commit().await?;
        Ok(stored)
    }

    /// Records a failed refresh and ends the lease; the next try is due in
    /// `retry_in_secs`. Only while `lease` is still ours: a `tokens reset`
    /// (or another replica's refresh) that came meanwhile replaced the pair
    /// this failure was about, and must not be flagged by it. False then.
    pub async fn store_refresh_failure(
        &self,
        lease: Uuid,
        error: &str,
        operator_action_required: bool,
        retry_in_secs: f64,
    ) -> StoreResult<bool> {
        let done = sqlx::query(
            "update xoxoday_tokens set last_refresh_error = $1, last_refresh_failed_at = now(),
               operator_action_required = $2,
               refresh_due_at = least(refresh_due_at, now() + make_interval(secs => $3)),
               refresh_lease_token = null, refresh_lease_until = null
             where token_set_id = 1 and refresh_lease_token = $4",
        )
        .bind(crate::domain::safe_text::pg_text(error).into_owned())
        .bind(operator_action_required)
        .bind(retry_in_secs)
        .bind(lease)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }
}

/// Replaces the pair (a rotation or a reset): clears any failure and the
/// lease; a reset (`environment`) also clears the rejection cooldown.
const UPSERT: &str = "on conflict (token_set_id) do update set
    generation = excluded.generation, access_token_encrypted = excluded.access_token_encrypted,
    refresh_token_encrypted = excluded.refresh_token_encrypted, key_id = excluded.key_id,
    source = excluded.source, issued_at = excluded.issued_at,
    access_expires_at = excluded.access_expires_at,
    refresh_expires_at = excluded.refresh_expires_at,
    refresh_due_at = excluded.refresh_due_at,
    last_refresh_at = case when excluded.source = 'refresh' then now()
                           else xoxoday_tokens.last_refresh_at end,
    last_rejection_refresh_at = case when excluded.source = 'refresh'
                           then xoxoday_tokens.last_rejection_refresh_at end,
    last_refresh_error = null, last_refresh_failed_at = null,
    operator_action_required = false,
    refresh_lease_token = null, refresh_lease_until = null";

/// The token row, locked until [`TokenLock::commit`] (or drop: rollback).
/// Never held across an HTTP call.
pub struct TokenLock {
    tx: Transaction<'static, Postgres>,
    /// The row as read under the lock.
    pub row: Option<TokenRow>,
}

impl TokenLock {
    /// Replaces the pair (`tokens reset`) and clears any failure.
    pub async fn store_pair(&mut self, pair: &SealedPair) -> StoreResult<()> {
        write_pair(&mut self.tx, pair, UPSERT).await?;
        Ok(())
    }

    /// Commits.
    pub async fn commit(self) -> StoreResult<()> {
        Ok(self.tx.commit().await?)
    }
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
