//! Account-wide holds and the probe that lifts them (issue 9, windows 4
//! and 11): a token Xoxoday refuses even right after a refresh pauses every
//! call; a placeOrder refused for insufficient balance pauses sending.
//!
//! Protects invariant 3 (nothing stuck, nothing failed for it): orders wait
//! (`accepted`, `reconciling`) and no attempt is counted. One getBalance,
//! at most once per `XOXODAY_PROBE_INTERVAL` over all replicas, decides: an
//! accepted token lifts the token hold, a balance above the refused amount
//! lifts the balance hold, and the orders the pause deferred are due at
//! once. No operator action; only a refused refresh needs `tokens reset`.

use std::{sync::Arc, time::Duration};

use rust_decimal::Decimal;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};
use uuid::Uuid;

use super::{AccessTokens, Wakes, audit};
use crate::{
    crypto::Cipher,
    domain::Order,
    store::{
        Store, StoreResult,
        holds::{Hold, HoldKind},
    },
    xoxoday::{Balance, Call, ReadError, UpstreamError, XoxodayApi},
};

/// How long a hold pauses calls before the next probe must extend it: one
/// and a half probe intervals, so a live prober keeps it without a gap and
/// a dead one lets it lapse.
pub(crate) fn pause_for(probe_interval: Duration) -> Duration {
    probe_interval.mul_f64(1.5).max(Duration::from_secs(1))
}

/// Starts (or keeps) a hold; a new one is logged at error level and counted.
pub(crate) async fn start_hold(
    store: &Store,
    kind: HoldKind,
    reason: &str,
    needed: Option<Decimal>,
    pause: Duration,
) {
    match store.start_hold(kind, reason, needed, pause).await {
        Ok(true) => {
            crate::metrics::count_hold(kind.as_str());
            error!(hold = kind.as_str(), "{reason}");
        }
        Ok(false) => {}
        Err(e) => warn!(error = %e, hold = kind.as_str(), "could not record the upstream hold"),
    }
}

/// placeOrder was refused for insufficient balance: hold sending (for
/// `pause`) until the balance exceeds this order's amount.
pub(crate) async fn hold_for_balance(
    store: &Store,
    order: &Order,
    e: &UpstreamError,
    pause: Duration,
) {
    let needed = order.denomination.value() * Decimal::from(order.quantity);
    let id = e.error_id.as_deref().unwrap_or("no errorId");
    let reason = format!(
        "Xoxoday refused an order for insufficient balance ({id}): sending is paused and \
             orders wait in accepted until getBalance shows more than {needed}; top up the \
             Xoxoday wallet (sending resumes by itself)"
    );
    let kind = HoldKind::InsufficientBalance;
    start_hold(store, kind, &reason, Some(needed), pause).await;
}

/// Probes Xoxoday while a hold is in force and lifts it when the account
/// accepts calls again. Cheap to clone.
#[derive(Clone)]
pub struct Prober {
    store: Store,
    xoxoday: Arc<dyn XoxodayApi>,
    tokens: Arc<dyn AccessTokens>,
    cipher: Arc<Cipher>,
    /// `XOXODAY_PROBE_INTERVAL`.
    probe_interval: Duration,
    /// Both loops are woken when a hold is lifted.
    wakes: Wakes,
}

impl Prober {
    /// The prober; `wakes` are woken when a hold is lifted.
    pub fn new(
        store: Store,
        xoxoday: Arc<dyn XoxodayApi>,
        tokens: Arc<dyn AccessTokens>,
        cipher: Arc<Cipher>,
        probe_interval: Duration,
        wakes: Wakes,
    ) -> Self {
        Self {
            store,
            xoxoday,
            tokens,
            cipher,
            probe_interval,
            wakes,
        }
    }

    /// One probe when a hold exists and none ran within the probe interval
    /// on any replica. True when this call probed.
    pub async fn probe_once(&self) -> StoreResult<bool> {
        let holds = self.store.claim_probe(self.probe_interval).await?;
        if holds.is_empty() {
            return Ok(false);
        }
        let token = self.tokens.access_token().await;
        let call = self.xoxoday.read_balance(&token).await;
        self.record_probe(&call).await;
        match &call.outcome {
            Ok(balance) => {
                let currency = balance.currency.as_deref();
                if let Err(e) = self.store.save_balance(balance.value, currency).await {
                    warn!(error = %e, "could not keep the balance read");
                }
                crate::metrics::set_balance(
                    balance.currency.as_deref().unwrap_or("other"),
                    balance.value,
                );
                for hold in &holds {
                    self.judge(hold, balance).await?;
                }
            }
            Err(e) => {
                if matches!(e, ReadError::Unauthorized(_)) {
                    // Refreshes at most once per cooldown; else keeps the token hold.
                    self.tokens.token_rejected(&token).await;
                }
                warn!(error = ?e, "the getBalance probe gave no balance; holds stay");
                self.extend_all(&holds).await?;
            }
        }
        Ok(true)
    }

    /// An accepted token lifts the token hold; a high enough balance the
    /// balance hold. Anything else keeps the hold's pause alive.
    async fn judge(&self, hold: &Hold, balance: &Balance) -> StoreResult<()> {
        let lifted = match hold.kind {
            HoldKind::TokenRejected => true,
            HoldKind::InsufficientBalance => {
                hold.needed_amount.is_none_or(|need| balance.value > need)
            }
        };
        if !lifted {
            return self.extend_all(std::slice::from_ref(hold)).await;
        }
        if self.store.lift_hold(hold).await? {
            info!(
                hold = hold.kind.as_str(),
                "Xoxoday accepts calls again (getBalance probe); the hold is lifted and sending resumes"
            );
            self.wakes.dispatcher().notify_one();
            self.wakes.reconciler().notify_one();
        }
        Ok(())
    }

    async fn extend_all(&self, holds: &[Hold]) -> StoreResult<()> {
        let pause = pause_for(self.probe_interval);
        for hold in holds {
            self.store.extend_hold(hold, pause).await?;
        }
        Ok(())
    }

    async fn record_probe(&self, call: &Call<Result<Balance, ReadError>>) {
        let id = Uuid::now_v7();
        let label = match &call.outcome {
            Ok(_) => "balance",
            Err(ReadError::Unauthorized(_)) => "unauthorized",
            Err(_) => "failed",
        };
        let end = audit::end_of(&self.cipher, id, &call.exchange, label);
        let start = audit::start_of(id, &call.exchange.request);
        if let Err(e) = self.store.record_exchange(start, None, &end).await {
            warn!(error = %e, "could not audit the getBalance probe");
        }
    }

    /// The probe loop, until `shutdown`: looks four times per interval, so a
    /// hold is probed about once per interval by some replica.
    pub async fn run_prober(self, shutdown: CancellationToken) {
        let tick =
            (self.probe_interval / 4).clamp(Duration::from_millis(100), Duration::from_secs(5));
        while !shutdown.is_cancelled() {
            if let Err(e) = self.probe_once().await {
                warn!(error = %e, "upstream hold probe failed; retrying");
            }
            tokio::select! {
                () = shutdown.cancelled() => {}
                () = tokio::time::sleep(tick) => {}
            }
        }
    }
}
