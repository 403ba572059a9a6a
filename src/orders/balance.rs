//! The wallet balance (contract §8): getBalance once per
//! `XOXODAY_PROBE_INTERVAL` (a minute) over all replicas, the first read
//! within one interval of start, exported as
//! `order_gateway_xoxoday_balance{currency}`, with a warning (metric, log,
//! `/readyz` detail that does not fail it) under `XOXODAY_LOW_BALANCE`.
//! While a hold is in force its own probe reads the balance instead
//! (`holds`), so the two never both read in one interval.

use std::{sync::Arc, time::Duration};

use rust_decimal::Decimal;
use tokio_util::sync::CancellationToken;
use tracing::warn;
use uuid::Uuid;

use super::{AccessTokens, audit};
use crate::{
    crypto::Cipher,
    store::{Store, StoreResult, balance::BalanceReading},
    xoxoday::{ReadError, XoxodayApi},
};

/// Reads the balance on a schedule shared by every replica.
pub struct BalanceMonitor {
    store: Store,
    xoxoday: Arc<dyn XoxodayApi>,
    tokens: Arc<dyn AccessTokens>,
    cipher: Arc<Cipher>,
    interval: Duration,
    low: Option<Decimal>,
}

/// The `/readyz` detail for a balance under the threshold.
pub fn low_balance_warning(reading: &BalanceReading, low: Option<Decimal>) -> Option<String> {
    let low = low?;
    (reading.balance < low).then(|| {
        format!(
            "Xoxoday wallet balance {} {} is under XOXODAY_LOW_BALANCE {low}: top up the wallet",
            reading.balance.normalize(),
            reading.currency.as_deref().unwrap_or("")
        )
    })
}

impl BalanceMonitor {
    /// `interval` is `XOXODAY_PROBE_INTERVAL`; `low` is `XOXODAY_LOW_BALANCE`.
    pub fn new(
        store: Store,
        xoxoday: Arc<dyn XoxodayApi>,
        tokens: Arc<dyn AccessTokens>,
        cipher: Arc<Cipher>,
        interval: Duration,
        low: Option<Decimal>,
    ) -> Self {
        Self {
            store,
            xoxoday,
            tokens,
            cipher,
            interval,
            low,
        }
    }

    /// Reads the balance when due over all replicas and warns when it is
    /// low (`/metrics` exports the last reading on each scrape). True when
    /// this call read.
    pub async fn read_once(&self) -> StoreResult<bool> {
        let claimed = self.store.claim_balance_read(self.interval).await?;
        if claimed {
            self.read().await?;
        }
        if claimed
            && let Some(reading) = self.store.last_balance().await?
            && let Some(w) = low_balance_warning(&reading, self.low)
        {
            warn!(balance = %reading.balance, "{w}");
        }
        Ok(claimed)
    }

    async fn read(&self) -> StoreResult<()> {
        let token = self.tokens.access_token().await;
        let call = self.xoxoday.read_balance(&token).await;
        let id = Uuid::now_v7();
        let label = match &call.outcome {
            Ok(_) => "balance",
            Err(ReadError::Unauthorized(_)) => "unauthorized",
            Err(_) => "failed",
        };
        let end = audit::end_of(&self.cipher, id, &call.exchange, label);
        let start = audit::start_of(id, &call.exchange.request);
        self.store.record_exchange(start, None, &end).await?;
        match &call.outcome {
            Ok(b) => {
                self.store
                    .save_balance(b.value, b.currency.as_deref())
                    .await
            }
            Err(e) => {
                if matches!(e, ReadError::Unauthorized(_)) {
                    self.tokens.token_rejected(&token).await;
                }
                warn!(error = ?e, "getBalance gave no balance; next read in one interval");
                Ok(())
            }
        }
    }

    /// The loop, until `shutdown`: looks four times per interval (at most
    /// every 5 s), so the first read comes within one interval of start.
    pub async fn run(self, shutdown: CancellationToken) {
        let tick = (self.interval / 4).clamp(Duration::from_millis(100), Duration::from_secs(5));
        while !shutdown.is_cancelled() {
            if let Err(e) = self.read_once().await {
                warn!(error = %e, "balance read failed; retrying");
            }
            tokio::select! {
                () = shutdown.cancelled() => {}
                () = tokio::time::sleep(tick) => {}
            }
        }
    }
}
