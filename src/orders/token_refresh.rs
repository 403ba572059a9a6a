//! One token refresh across all replicas, under a committed lease (issue 9,
//! windows 4 and 5).
//!
//! Take the lease in one short statement, re-read the generation (a replica
//! that waited adopts the pair another one just stored), call Xoxoday with
//! no transaction open, commit the rotated pair on its own, and only then
//! write the audit row: a failing audit write, or a crash after the commit,
//! cannot lose the only working pair.
//!
//! A refresh triggered by a refused access token happens at most once per
//! [`REJECTION_REFRESH_COOLDOWN`] over all replicas (stamped under the lease
//! before the call). A token refused again within it is an account-wide
//! problem: every call is paused by a hold that a probe lifts (`holds.rs`).
//!
//! Protects invariant 4: the refresh exchange is stored with its request
//! and response redacted in the clear and sealed raw; nothing secret is
//! logged.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{TimeDelta, Utc};
use secrecy::{ExposeSecret as _, SecretString};
use tracing::{error, info, warn};
use uuid::Uuid;

use super::{
    AccessTokens, audit, holds,
    token_store::{Current, RotatingTokens, TokenError, open, refresh_due_at, seal},
};
use crate::{
    domain::TokenState,
    store::{
        holds::HoldKind,
        tokens::{SealedPair, TokenRow},
    },
    xoxoday::{Call, RefreshOutcome, TokenPair},
};

/// The one line an operator sees when Xoxoday refuses the refresh token.
pub const OPERATOR_ACTION: &str = "Xoxoday refused the refresh token: generate a new token pair \
    in the Xoxoday dashboard, set XOXODAY_ACCESS_TOKEN and XOXODAY_REFRESH_TOKEN, then run \
    `order-gateway tokens reset`";

/// Least time between two refreshes triggered by a refused access token,
/// over all replicas (Xoxoday may invalidate a pair refreshed unusually often).
pub const REJECTION_REFRESH_COOLDOWN: Duration = Duration::from_secs(300);

/// Why the pause of every call began; shown in `/readyz`.
pub const TOKEN_HOLD_REASON: &str = "Xoxoday refuses the access token even right after a \
    refresh (account-wide): every call is paused and orders wait; the gateway probes getBalance \
    once a minute and resumes by itself as soon as Xoxoday accepts the token again";

/// Retry delay after a passing refresh failure.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(60);

/// How often a replica that waits for another one's lease looks again.
const LEASE_POLL: Duration = Duration::from_millis(100);

/// What asked for the refresh.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trigger {
    /// The pair is due (proactive rotation).
    Due,
    /// Xoxoday refused the access token.
    Rejected,
}

impl RotatingTokens {
    /// [`Self::refresh`] for a pair that is due (proactive rotation).
    pub(super) async fn refresh_due(&self, seen: i64) -> Result<bool, TokenError> {
        self.refresh(seen, Trigger::Due).await
    }

    /// Refreshes unless the stored generation moved past `seen` (then adopts
    /// it). True when a newer pair than `seen` is now current.
    async fn refresh(&self, seen: i64, why: Trigger) -> Result<bool, TokenError> {
        let _one_here = self.gate.lock().await;
        let lease = Uuid::now_v7();
        let Some(row) = self.take_lease(lease, seen).await? else {
            return self.adopt_newer(seen).await;
        };
        let result = self.refresh_leased(&row, seen, why, lease).await;
        // Storing a pair or a failure ends the lease; this covers the rest.
        if let Err(e) = self.store.release_refresh_lease(lease).await {
            warn!(error = %e, "could not release the token refresh lease; it expires by itself");
        }
        result
    }

    /// The row under our lease, or `None` when another replica stored a newer
    /// pair meanwhile (or its lease outlived our patience).
    async fn take_lease(&self, lease: Uuid, seen: i64) -> Result<Option<TokenRow>, TokenError> {
        let deadline = tokio::time::Instant::now() + self.refresh_lease;
        loop {
            if let Some(row) = self
                .store
                .take_refresh_lease(lease, self.refresh_lease)
                .await?
            {
                return Ok(Some(row));
            }
            let moved = self
                .store
                .load_tokens()
                .await?
                .is_none_or(|r| r.generation != seen);
            if moved || tokio::time::Instant::now() >= deadline {
                return Ok(None);
            }
            tokio::time::sleep(LEASE_POLL).await;
        }
    }

    async fn adopt_newer(&self, seen: i64) -> Result<bool, TokenError> {
        match self.store.load_tokens().await? {
            Some(row) if row.generation != seen => self.adopt(&row).map(|_| true),
            _ => Ok(false),
        }
    }

    async fn refresh_leased(
        &self,
        row: &TokenRow,
        seen: i64,
        why: Trigger,
        lease: Uuid,
    ) -> Result<bool, TokenError> {
        if row.generation != seen {
            return self.adopt(row).map(|_| true);
        }
        if row.operator_action_required {
            return Ok(false);
        }
        if why == Trigger::Rejected {
            if in_cooldown(row) {
                self.hold_every_call().await;
                return Ok(false);
            }
            if !self.store.stamp_rejection_refresh(lease).await? {
                return Ok(false);
            }
        }
        let refresh_token = open(&self.cipher, row, "refresh")?;
        let call = self.xoxoday.refresh_token(&refresh_token).await;
        let stored = match &call.outcome {
            RefreshOutcome::Refreshed(pair) => self
                .store_rotated(row.generation + 1, pair)
                .await
                .map(|()| true),
            // The lease was taken from us (a `tokens reset`, or another
            // replica): the failure was about a replaced pair; adopt the new one.
            other => match self.store_failed(other, lease).await {
                Ok(true) => Ok(false),
                Ok(false) => self.adopt_newer(seen).await,
                Err(e) => Err(e),
            },
        };
        self.record(&call).await;
        stored
    }

    /// A freshly refreshed token was refused again: pause every call.
    async fn hold_every_call(&self) {
        let kind = HoldKind::TokenRejected;
        holds::start_hold(&self.store, kind, TOKEN_HOLD_REASON, None, self.hold_pause).await;
    }

    /// Audits the exchange after its result is stored; a failure here is
    /// logged and costs nothing else.
    async fn record(&self, call: &Call<RefreshOutcome>) {
        let id = Uuid::now_v7();
        let request = &call.exchange.request;
        let sealed = audit::seal_request(&self.cipher, id, request);
        let end = audit::end_of(&self.cipher, id, &call.exchange, label(&call.outcome));
        let start = audit::start_of(id, request);
        let sealed = sealed.map(|s| (s, self.cipher.key_id()));
        if let Err(e) = self.store.record_exchange(start, sealed, &end).await {
            error!(error = %e, "the token refresh exchange could not be audited (its result is stored)");
        }
    }

    async fn store_rotated(&self, generation: i64, pair: &TokenPair) -> Result<(), TokenError> {
        let sealed = self.sealed_pair(generation, pair);
        if !self.store_with_retries(&sealed).await? {
            error!(
                token.generation = generation,
                "a refreshed token pair arrived after a newer pair was stored (tokens reset or a \
                 later refresh); keeping the newer one"
            );
            if let Some(row) = self.store.load_tokens().await? {
                self.adopt(&row)?;
            }
            return Ok(());
        }
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

    /// Xoxoday already killed the old pair: this process holds the only
    /// copy of the new one. Keep trying until it is stored, whatever the
    /// error (an outage longer than a few seconds, a lock wait past
    /// `statement_timeout`, which is not a connection error): giving up
    /// would lose the pair for good. Errors are logged, backoff capped.
    /// False when a newer pair was stored meanwhile (nothing written).
    async fn store_with_retries(&self, sealed: &SealedPair) -> Result<bool, TokenError> {
        let mut delay = Duration::from_millis(200);
        let mut tries = 0u32;
        loop {
            match self.store.store_rotated_pair(sealed).await {
                Ok(stored) => return Ok(stored),
                Err(e) => {
                    tries += 1;
                    if tries >= 8 {
                        error!(error = %e, tries, "the rotated Xoxoday token pair is not stored yet; retrying (it is the only copy)");
                    } else {
                        warn!(error = %e, "could not store the rotated token pair; retrying");
                    }
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(8));
                }
            }
        }
    }

    fn sealed_pair(&self, generation: i64, pair: &TokenPair) -> SealedPair {
        let now = Utc::now();
        let access_expires = pair.access_expires_at.or_else(|| {
            pair.expires_in
                .and_then(|d| TimeDelta::from_std(d).ok())
                .map(|d| now + d)
        });
        let (access, refresh) = seal(
            &self.cipher,
            generation,
            &pair.access_token,
            &pair.refresh_token,
        );
        SealedPair {
            generation,
            access,
            refresh,
            key_id: self.cipher.key_id().to_owned(),
            source: "refresh",
            issued_at: now,
            access_expires_at: access_expires,
            refresh_expires_at: pair.refresh_expires_at,
            refresh_due_at: refresh_due_at(now, access_expires, pair.refresh_expires_at),
        }
    }

    /// False when the lease was no longer ours: nothing recorded.
    async fn store_failed(
        &self,
        outcome: &RefreshOutcome,
        lease: Uuid,
    ) -> Result<bool, TokenError> {
        let (message, operator, retry) = failure_of(outcome);
        if !self
            .store
            .store_refresh_failure(lease, &message, operator, retry.as_secs_f64())
            .await?
        {
            warn!(reason = %message, "a token refresh failed after its lease was taken over; the pair it was about is replaced");
            return Ok(false);
        }
        let mut h = self.health.lock().unwrap_or_else(|p| p.into_inner());
        h.refresh_failures += 1;
        if operator {
            h.state = TokenState::OperatorActionRequired;
            error!(reason = %message, "{OPERATOR_ACTION}");
        } else {
            h.state = TokenState::Failing;
            warn!(reason = %message, retry_in_s = retry.as_secs(), "Xoxoday token refresh failed; retrying");
        }
        Ok(true)
    }
}

/// Whether a rejection-triggered refresh ran within the cooldown, on the
/// database clock.
fn in_cooldown(row: &TokenRow) -> bool {
    let cooldown = TimeDelta::from_std(REJECTION_REFRESH_COOLDOWN).unwrap_or(TimeDelta::MAX);
    row.last_rejection_refresh_at
        .is_some_and(|at| row.db_now - at < cooldown)
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
        self.refresh(seen, Trigger::Rejected)
            .await
            .unwrap_or_else(|e| {
                warn!(error = %e, "Xoxoday token refresh could not run");
                false
            })
    }

    fn health(&self) -> Option<super::TokenHealth> {
        Some(RotatingTokens::health(self))
    }
}
