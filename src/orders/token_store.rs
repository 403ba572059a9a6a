//! [`RotatingTokens`]: the Xoxoday token pair kept encrypted in Postgres and
//! rotated before it expires (issue 5, reference §2).
//!
//! The environment pair is stored on first start; after that the stored pair
//! wins, because every refresh rotates it and kills the old refresh token.
//! Protects invariant 4 (tokens are sealed at rest and never logged) and
//! keeps dispatch alive: a refresh is committed before its pair is used, and
//! only one replica refreshes at a time, under a lease (see `token_refresh.rs`).

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use chrono::{DateTime, TimeDelta, Utc};
use secrecy::{ExposeSecret as _, SecretString};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::{
    crypto::{Cipher, CryptoError},
    domain::TokenState,
    store::{
        Store, StoreError,
        tokens::{SealedPair, TokenRow},
    },
    xoxoday::XoxodayApi,
};

/// How often the background loop looks at the stored pair.
pub const CHECK_INTERVAL: Duration = Duration::from_secs(60);

/// Why the token pair cannot be used or stored.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// Nothing stored and the environment lacks this variable.
    #[error("configuration error: {0} is required (no Xoxoday token pair is stored yet)")]
    Missing(&'static str),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The stored pair was sealed under a key that is not loaded.
    #[error(
        "the stored Xoxoday token pair cannot be decrypted ({0}): set ENCRYPTION_KEY_PREVIOUS \
         to the old key, or store a new pair with `order-gateway tokens reset`"
    )]
    Crypto(#[from] CryptoError),
}

/// What this process knows about the pair; read by the metrics endpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenHealth {
    /// Current state.
    pub state: TokenState,
    /// Generation of the pair in use.
    pub generation: i64,
    /// Successful refreshes by this process.
    pub refreshes: u64,
    /// Failed refreshes by this process.
    pub refresh_failures: u64,
}

#[derive(Clone)]
pub(super) struct Current {
    pub(super) generation: i64,
    pub(super) access: SecretString,
}

/// The Postgres-backed, rotating token pair.
pub struct RotatingTokens {
    pub(super) store: Store,
    pub(super) xoxoday: Arc<dyn XoxodayApi>,
    pub(super) cipher: Arc<Cipher>,
    pub(super) current: Mutex<Option<Current>>,
    pub(super) gate: tokio::sync::Mutex<()>,
    pub(super) health: Mutex<TokenHealth>,
    /// How long a refresh lease holds; longer than the refresh call's timeout.
    pub(super) refresh_lease: Duration,
    /// How long a token hold pauses every call before a probe extends it.
    pub(super) hold_pause: Duration,
}

impl RotatingTokens {
    /// A store of the pair; call [`RotatingTokens::seed`] before use.
    pub fn new(store: Store, xoxoday: Arc<dyn XoxodayApi>, cipher: Arc<Cipher>) -> Self {
        Self {
            store,
            xoxoday,
            cipher,
            current: Mutex::new(None),
            gate: tokio::sync::Mutex::new(()),
            health: Mutex::new(TokenHealth::default()),
            refresh_lease: Duration::from_secs(60),
            hold_pause: super::holds::pause_for(Duration::from_secs(60)),
        }
    }

    /// Sizes the refresh lease after the refresh call's timeout
    /// (`XOXODAY_REQUEST_TIMEOUT`) and the token hold after the probe
    /// interval (`XOXODAY_PROBE_INTERVAL`).
    pub fn with_timing(mut self, request_timeout: Duration, probe_interval: Duration) -> Self {
        self.refresh_lease = request_timeout + Duration::from_secs(30);
        self.hold_pause = super::holds::pause_for(probe_interval);
        self
    }

    /// Loads the stored pair, or stores the environment pair when none is.
    pub async fn seed(
        &self,
        access: Option<&SecretString>,
        refresh: Option<&SecretString>,
    ) -> Result<(), TokenError> {
        if let Some(row) = self.store.load_tokens().await? {
            self.adopt(&row)?;
            info!(
                token.generation = row.generation,
                "using the stored Xoxoday token pair; XOXODAY_ACCESS_TOKEN/XOXODAY_REFRESH_TOKEN \
                 are read only on first start (replace the pair with `order-gateway tokens reset`)"
            );
            return Ok(());
        }
        let access = access.ok_or(TokenError::Missing("XOXODAY_ACCESS_TOKEN"))?;
        let refresh = refresh.ok_or(TokenError::Missing("XOXODAY_REFRESH_TOKEN"))?;
        let pair = seal_env_pair(&self.cipher, 1, access, refresh);
        if self.store.seed_tokens(&pair).await? {
            info!("stored the Xoxoday token pair from the environment (first start)");
        }
        let row = self.store.load_tokens().await?;
        row.map_or(Ok(()), |row| self.adopt(&row).map(drop))
    }

    /// The access token in use: cached, else read from Postgres. Empty when
    /// nothing can be read (the upstream then refuses it and no order is made).
    pub async fn current_access(&self) -> SecretString {
        if let Some(c) = self.cached() {
            return c.access;
        }
        match self.store.load_tokens().await {
            Ok(Some(row)) => self.adopt(&row).unwrap_or_else(|e| {
                warn!(error = %e, "cannot read the stored Xoxoday token pair");
                SecretString::from(String::new())
            }),
            Ok(None) => SecretString::from(String::new()),
            Err(e) => {
                warn!(error = %e, "cannot load the Xoxoday token pair");
                SecretString::from(String::new())
            }
        }
    }

    /// One pass of the background loop: adopts a pair another replica (or
    /// `tokens reset`) stored, and refreshes when due. True when rotated.
    pub async fn refresh_if_due(&self) -> Result<bool, TokenError> {
        let Some(row) = self.store.load_tokens().await? else {
            return Ok(false);
        };
        if self.cached().is_none_or(|c| c.generation != row.generation) {
            self.adopt(&row)?;
        }
        if let Some(at) = row.access_expires_at {
            crate::metrics::set_token_expiry(at);
        }
        if row.operator_action_required || row.refresh_due_at > Utc::now() {
            return Ok(false);
        }
        self.refresh_due(row.generation).await
    }

    /// Runs [`RotatingTokens::refresh_if_due`] every [`CHECK_INTERVAL`] until `shutdown`.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        while !shutdown.is_cancelled() {
            if let Err(e) = self.refresh_if_due().await {
                warn!(error = %e, "Xoxoday token check failed; retrying");
            }
            tokio::select! {
                () = shutdown.cancelled() => {}
                () = tokio::time::sleep(CHECK_INTERVAL) => {}
            }
        }
    }

    /// A snapshot for metrics (no secrets).
    pub fn health(&self) -> TokenHealth {
        self.health
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub(super) fn cached(&self) -> Option<Current> {
        self.current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Opens the row's access token and makes it current.
    pub(super) fn adopt(&self, row: &TokenRow) -> Result<SecretString, TokenError> {
        let access = open(&self.cipher, row, "access")?;
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = Some(Current {
            generation: row.generation,
            access: access.clone(),
        });
        let mut h = self.health.lock().unwrap_or_else(|p| p.into_inner());
        h.generation = row.generation;
        h.state = state_of(row);
        Ok(access)
    }
}

fn state_of(row: &TokenRow) -> TokenState {
    let failed_last = match (row.last_refresh_failed_at, row.last_refresh_at) {
        (Some(failed), Some(ok)) => failed > ok,
        (Some(_), None) => true,
        _ => false,
    };
    if row.operator_action_required {
        TokenState::OperatorActionRequired
    } else if failed_last {
        TokenState::Failing
    } else {
        TokenState::Ok
    }
}

/// Associated data of a sealed token: bound to its generation and field.
fn aad(generation: i64, field: &str) -> String {
    format!("xoxoday_tokens:{generation}:{field}")
}

/// Opens one token of a stored row.
pub(super) fn open(
    cipher: &Cipher,
    row: &TokenRow,
    field: &str,
) -> Result<SecretString, TokenError> {
    let blob = match field {
        "access" => &row.access_token_encrypted,
        _ => &row.refresh_token_encrypted,
    };
    let plain = cipher.decrypt(&row.key_id, blob, aad(row.generation, field).as_bytes())?;
    Ok(String::from_utf8(plain)
        .map_err(|_| CryptoError::Invalid)?
        .into())
}

/// Seals a pair under the current key for `generation`.
pub(super) fn seal(
    cipher: &Cipher,
    generation: i64,
    access: &SecretString,
    refresh: &SecretString,
) -> (Vec<u8>, Vec<u8>) {
    let seal_one = |s: &SecretString, field| {
        cipher.encrypt(
            s.expose_secret().as_bytes(),
            aad(generation, field).as_bytes(),
        )
    };
    (seal_one(access, "access"), seal_one(refresh, "refresh"))
}

fn seal_env_pair(
    cipher: &Cipher,
    generation: i64,
    access: &SecretString,
    refresh: &SecretString,
) -> SealedPair {
    // A dashboard pair is shown once, at issue: assume it was issued now.
    let now = Utc::now();
    let (access, refresh) = seal(cipher, generation, access, refresh);
    SealedPair {
        generation,
        access,
        refresh,
        key_id: cipher.key_id().to_owned(),
        source: "environment",
        issued_at: now,
        access_expires_at: None,
        refresh_expires_at: None,
        refresh_due_at: refresh_due_at(now, None, None),
    }
}

/// `order-gateway tokens reset`: stores a new pair over whatever is stored
/// (generation + 1), clearing any refresh failure. Running replicas adopt it
/// on their next check or on their next refused call. Returns the generation.
pub async fn reset_tokens(
    store: &Store,
    cipher: &Cipher,
    access: &SecretString,
    refresh: &SecretString,
) -> Result<i64, TokenError> {
    let mut lock = store.lock_tokens().await?;
    let generation = lock.row.as_ref().map_or(1, |r| r.generation + 1);
    lock.store_pair(&seal_env_pair(cipher, generation, access, refresh))
        .await?;
    lock.commit().await?;
    Ok(generation)
}

/// When to refresh a pair issued at `issued`: after 7 days (the docs'
/// advice) or once half of either remaining lifetime is gone, whichever
/// comes first.
pub fn refresh_due_at(
    issued: DateTime<Utc>,
    access_expires: Option<DateTime<Utc>>,
    refresh_expires: Option<DateTime<Utc>>,
) -> DateTime<Utc> {
    let half = |end: DateTime<Utc>| issued + (end - issued) / 2;
    [access_expires.map(half), refresh_expires.map(half)]
        .into_iter()
        .flatten()
        .fold(issued + TimeDelta::days(7), DateTime::min)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_is_due_after_seven_days_or_half_a_lifetime() {
        let t0 = Utc::now();
        assert_eq!(refresh_due_at(t0, None, None), t0 + TimeDelta::days(7));
        let fifteen = t0 + TimeDelta::days(15);
        let thirty = t0 + TimeDelta::days(30);
        assert_eq!(
            refresh_due_at(t0, Some(fifteen), Some(thirty)),
            t0 + TimeDelta::days(7)
        );
        let short = t0 + TimeDelta::hours(10);
        assert_eq!(
            refresh_due_at(t0, Some(short), Some(thirty)),
            t0 + TimeDelta::hours(5)
        );
    }
}
