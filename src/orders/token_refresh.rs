//! One token refresh across all replicas: take the row lock, re-read the
//! generation (a replica that waited adopts the pair another one just
//! stored), call Xoxoday, and commit the new pair together with the audit
//! row of the exchange before anyone uses it.
//!
//! Protects invariant 4: the refresh exchange is stored with its request
//! and response redacted in the clear and sealed raw; nothing secret is
//! logged.

use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use secrecy::{ExposeSecret as _, SecretString};
use tracing::{error, info, warn};
use uuid::Uuid;

use super::{
    AccessTokens, audit,
    token_store::{Current, RotatingTokens, TokenError, TokenState, open, refresh_due_at, seal},
};
use crate::{
    store::tokens::{SealedPair, TokenLock},
    xoxoday::{Call, RefreshOutcome, TokenPair},
};

/// The one line an operator sees when Xoxoday refuses the refresh token.
pub const OPERATOR_ACTION: &str = "Xoxoday refused the refresh token: generate a new token pair \
    in the Xoxoday dashboard, set XOXODAY_ACCESS_TOKEN and XOXODAY_REFRESH_TOKEN, then run \
    `order-gateway tokens reset`";

/// Retry delay after a passing refresh failure.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(60);

impl RotatingTokens {
    /// Refreshes unless the stored generation moved past `seen` (then adopts
    /// it). True when a newer pair than `seen` is now current.
    pub(super) async fn refresh(&self, seen: i64) -> Result<bool, TokenError> {
        let _one_here = self.gate.lock().await;
        let mut lock = self.store.lock_tokens().await?;
        // Every early return ends the transaction explicitly: a dropped sqlx
        // transaction only rolls back when its pooled connection is next
        // used, and until then it would keep the token row locked.
        let Some(row) = lock.row.clone() else {
            lock.commit().await?;
            return Ok(false);
        };
        if row.generation != seen {
            self.adopt(&row)?;
            lock.commit().await?;
            return Ok(true);
        }
        if row.operator_action_required {
            lock.commit().await?;
            return Ok(false);
        }
        let refresh_token = match open(&self.cipher, &row, "refresh") {
            Ok(token) => token,
            Err(e) => {
                lock.commit().await?;
                return Err(e);
            }
        };
        let call = self.xoxoday.refresh_token(&refresh_token).await;
        self.record(&mut lock, &call).await?;
        match call.outcome {
            RefreshOutcome::Refreshed(pair) => {
                self.store_rotated(lock, row.generation + 1, &pair).await?;
                Ok(true)
            }
            other => {
                self.store_failed(lock, &other).await?;
                Ok(false)
            }
        }
    }

    async fn record(
        &self,
        lock: &mut TokenLock,
        call: &Call<RefreshOutcome>,
    ) -> Result<(), TokenError> {
        let id = Uuid::now_v7();
        let request = &call.exchange.request;
        let sealed = audit::seal_request(&self.cipher, id, request).unwrap_or_default();
        let label = label(&call.outcome);
        let end = audit::end_of(&self.cipher, id, &call.exchange, label);
        let start = audit::start_of(id, request);
        lock.record_exchange(start, (sealed, self.cipher.key_id()), &end)
            .await?;
        Ok(())
    }

    async fn store_rotated(
        &self,
        mut lock: TokenLock,
        generation: i64,
        pair: &TokenPair,
    ) -> Result<(), TokenError> {
        let now = Utc::now();
        let access_expires = pair.access_expires_at.or_else(|| {
            pair.expires_in
                .and_then(|d| chrono::TimeDelta::from_std(d).ok())
                .map(|d| now + d)
        });
        let (access, refresh) = seal(
            &self.cipher,
            generation,
            &pair.access_token,
            &pair.refresh_token,
        );
        let sealed = SealedPair {
            generation,
            access,
            refresh,
            key_id: self.cipher.key_id().to_owned(),
            source: "refresh",
            issued_at: now,
            access_expires_at: access_expires,
            refresh_expires_at: pair.refresh_expires_at,
            refresh_due_at: refresh_due_at(now, access_expires, pair.refresh_expires_at),
        };
        lock.store_pair(&sealed).await?;
        lock.commit().await?;
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = Some(Current {
            generation,
            access: pair.access_token.clone(),
        });
        let mut h = self.health.lock().unwrap_or_else(|p| p.into_inner());
        (h.state, h.generation, h.refreshes) = (TokenState::Ok, generation, h.refreshes + 1);
        info!(
            token.generation = generation,
            "Xoxoday token pair rotated and stored"
        );
        Ok(())
    }

    async fn store_failed(
        &self,
        mut lock: TokenLock,
        outcome: &RefreshOutcome,
    ) -> Result<(), TokenError> {
        let (message, operator, retry) = failure_of(outcome);
        lock.store_failure(&message, operator, retry.as_secs_f64())
            .await?;
        lock.commit().await?;
        let mut h = self.health.lock().unwrap_or_else(|p| p.into_inner());
        h.refresh_failures += 1;
        if operator {
            h.state = TokenState::OperatorActionRequired;
            error!(reason = %message, "{OPERATOR_ACTION}");
        } else {
            h.state = TokenState::Failing;
            warn!(reason = %message, retry_in_s = retry.as_secs(), "Xoxoday token refresh failed; retrying");
        }
        Ok(())
    }
}

/// What to store and say about a failed refresh: message, whether an
/// operator must act, and when to retry. Messages carry error ids only.
fn failure_of(outcome: &RefreshOutcome) -> (String, bool, Duration) {
    match outcome {
        RefreshOutcome::Refused(e) => {
            let id = e
                .error_id
                .clone()
                .unwrap_or_else(|| format!("HTTP {}", e.http_status));
            (
                format!("refresh token refused ({id})"),
                true,
                Duration::ZERO,
            )
        }
        RefreshOutcome::RateLimited { penalty } => (
            "refresh rate-limited by Xoxoday".into(),
            false,
            (*penalty).max(RETRY_AFTER_FAILURE),
        ),
        RefreshOutcome::Failed { reason } => {
            let short: String = reason.chars().take(200).collect();
            (
                format!("refresh failed: {short}"),
                false,
                RETRY_AFTER_FAILURE,
            )
        }
        RefreshOutcome::Refreshed(_) => (String::new(), false, Duration::ZERO),
    }
}

fn label(outcome: &RefreshOutcome) -> &'static str {
    match outcome {
        RefreshOutcome::Refreshed(_) => "refreshed",
        RefreshOutcome::Refused(_) => "refused",
        RefreshOutcome::RateLimited { .. } => "rate_limited",
        RefreshOutcome::Failed { .. } => "failed",
    }
}

#[async_trait]
impl AccessTokens for RotatingTokens {
    async fn access_token(&self) -> SecretString {
        self.current_access().await
    }

    async fn token_rejected(&self, rejected: &SecretString) -> bool {
        let current = self.cached();
        if let Some(c) = &current {
            if c.access.expose_secret() != rejected.expose_secret() {
                return true;
            }
        }
        let seen = current.map_or(0, |c| c.generation);
        self.refresh(seen).await.unwrap_or_else(|e| {
            warn!(error = %e, "Xoxoday token refresh could not run");
            false
        })
    }

    fn health(&self) -> Option<super::TokenHealth> {
        Some(RotatingTokens::health(self))
    }
}
