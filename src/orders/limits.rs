//! Upstream budgets and pauses as the use cases see them (invariant 5):
//! a slot is taken through Postgres before EVERY placeOrder and
//! getOrderDetails (as the last step before the send, committed with the
//! exchange row), and Xoxoday's throttling or account-wide refusals pause
//! the affected operations on every replica.

use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

use tracing::{error, warn};

use super::Dispatcher;
use crate::{
    store::rate_limit::{ALL_OPERATIONS, SlotAsk},
    xoxoday::{Operation, UpstreamError},
};

/// Per-minute budgets, pauses and the placeOrder timeout, as the place path
/// uses them (from `XoxodayConfig` and `Tuning`; their defaults are in
/// [`crate::settings`]).
#[derive(Debug, Clone)]
pub struct UpstreamLimits {
    /// placeOrder calls per minute, all replicas together.
    pub place_order_rate: u32,
    /// getOrderDetails calls per minute, all replicas together.
    pub order_details_rate: u32,
    /// `XOXODAY_RATE_WINDOW`: the window both budgets are counted over.
    pub rate_window: Duration,
    /// The placeOrder client timeout: the latest end of a call whose worker
    /// vanished mid-call.
    pub place_timeout: Duration,
    /// `SYSTEMIC_PAUSE`: how long an account-wide refusal pauses every call.
    pub systemic_pause: Duration,
    /// `XOXODAY_PROBE_INTERVAL`: paces the balance hold a refusal starts.
    pub probe_interval: Duration,
}

/// Until when this replica knows the shared placeOrder budget is spent
/// (learned from Postgres: a slot refused, or `upstream_slots_free`), so it
/// claims nothing it could not send. Only ever a reason to wait, never
/// permission: every send still takes its slot in Postgres. Kept at most one
/// poll interval, so a pause lifted or a slot freed elsewhere is seen soon.
#[derive(Debug, Default)]
pub(crate) struct SpentBudget(Mutex<Option<Instant>>);

impl SpentBudget {
    /// Spent for `wait` from now.
    pub(crate) fn spent_for(&self, wait: Duration) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now() + wait);
    }

    /// Whether the budget is known spent now.
    pub(crate) fn is_spent(&self) -> bool {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some_and(|until| Instant::now() < until)
    }
}

/// A rate slot older than the send margin when its call was due to go out.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SlotTooOld {
    age: Duration,
    margin: Duration,
}

impl SlotTooOld {
    /// Whether a slot of a `window` budget, stamped no earlier than
    /// `stamped_after`, is older than the window's send margin now.
    pub(crate) fn check(window: Duration, stamped_after: tokio::time::Instant) -> Option<Self> {
        let margin = crate::tuning::send_margin(window)?;
        let age = stamped_after.elapsed();
        (age > margin).then_some(Self { age, margin })
    }

    /// What the audit row and the log say.
    pub(crate) fn why(&self) -> String {
        format!(
            "not sent: its rate slot was {} ms old, more than the {} ms a call may wait",
            self.age.as_millis(),
            self.margin.as_millis()
        )
    }

    /// When to ask again: about as long as the stall lasted, from 250 ms to
    /// 5 s, so a stall that goes on does not waste a slot per round.
    pub(crate) fn retry_in(&self) -> Duration {
        self.age
            .clamp(Duration::from_millis(250), Duration::from_secs(5))
    }

    /// Logged once, with the call's `not_sent` audit end
    /// ([`super::audit::not_sent`]).
    pub(crate) fn warn(&self, operation: Operation) {
        warn!(
            operation = operation.as_str(),
            slot_age_ms = self.age.as_millis() as u64,
            margin_ms = self.margin.as_millis() as u64,
            "call not sent: its rate slot is older than the send margin"
        );
    }
}

impl Dispatcher {
    /// `op`'s shared budget, for the store to take one slot of it in the
    /// same transaction as the exchange row (`begin_place_attempt`,
    /// `begin_lookup`).
    pub(crate) fn slot_ask(&self, op: Operation) -> SlotAsk {
        let per_minute = match op {
            Operation::PlaceOrder => self.upstream().place_order_rate,
            _ => self.upstream().order_details_rate,
        };
        SlotAsk {
            operation: op.as_str(),
            per_minute,
            window: self.upstream().rate_window,
        }
    }

    /// Whether a call whose slot was stamped no earlier than `stamped_after`
    /// may no longer be sent: it is older than the window's send margin
    /// ([`crate::tuning::send_margin`]). Such a call is recorded `not_sent`
    /// and asked again with a new slot.
    pub(crate) fn slot_too_old(&self, stamped_after: tokio::time::Instant) -> Option<SlotTooOld> {
        SlotTooOld::check(self.upstream().rate_window, stamped_after)
    }

    /// A call that found no slot: counted in the metrics.
    pub(crate) fn note_no_slot(op: Operation, wait: Duration) {
        crate::metrics::record_rate_limit_wait(op.as_str(), wait);
    }

    /// `auth.request_limit_exceeded`: pause `op` for the penalty on every replica.
    pub(crate) async fn pause_throttled(&self, op: Operation, penalty: Duration) {
        // Slots taken ahead are not sent into a penalty (other replicas
        // hand theirs out at most 250 ms more).
        self.drop_stocked_slots();
        warn!(
            operation = op.as_str(),
            penalty_s = penalty.as_secs(),
            "Xoxoday rate limit hit; operation paused on every replica"
        );
        let reason = format!(
            "Xoxoday answered auth.request_limit_exceeded (penalty {}s)",
            penalty.as_secs()
        );
        if let Err(e) = self
            .store()
            .pause_operation(op.as_str(), penalty, &reason)
            .await
        {
            warn!(error = %e, "could not record the rate-limit pause");
        }
    }

    /// An error that hits every order: pause every operation, say what to do.
    pub(crate) async fn pause_systemic(&self, e: &UpstreamError) {
        self.drop_stocked_slots();
        let id = e
            .error_id
            .clone()
            .unwrap_or_else(|| format!("HTTP {}", e.http_status));
        let info = e.error_info.clone().unwrap_or_default();
        let reason = format!(
            "Xoxoday refuses every call ({id}: {info}): check the client credentials, the \
             allow-listed IP and that the user and company are enabled in the Xoxoday dashboard"
        );
        error!(xoxoday.error_id = %id, "{reason}; dispatch paused, orders stay queued");
        let pause = self.upstream().systemic_pause;
        if let Err(e) = self
            .store()
            .pause_operation(ALL_OPERATIONS, pause, &reason)
            .await
        {
            warn!(error = %e, "could not record the account-wide pause");
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::time::Instant;

    use super::*;

    const WINDOW: Duration = Duration::from_secs(65);

    #[test]
    fn a_slot_is_too_old_only_past_the_margin_and_a_test_window_keeps_none() {
        let now = Instant::now();
        assert!(SlotTooOld::check(WINDOW, now).is_none());
        assert!(SlotTooOld::check(WINDOW, now - Duration::from_millis(500)).is_none());
        let old = SlotTooOld::check(WINDOW, now - Duration::from_millis(900)).unwrap();
        assert!(old.why().contains("more than the 750 ms"), "{}", old.why());
        // A window the test switch admits models no minute: no margin.
        assert!(SlotTooOld::check(Duration::from_secs(8), now - Duration::from_secs(5)).is_none());
        // A floor in the future (a slot taken ahead) is not old.
        assert!(SlotTooOld::check(WINDOW, now + Duration::from_millis(200)).is_none());
    }

    #[test]
    fn the_retry_follows_the_stall_within_a_quarter_second_and_five_seconds() {
        let now = Instant::now();
        let retry = |age_ms: u64| {
            SlotTooOld::check(WINDOW, now - Duration::from_millis(age_ms))
                .unwrap()
                .retry_in()
        };
        assert!(retry(800) >= Duration::from_millis(800));
        assert!(retry(800) < Duration::from_secs(2));
        let aged = |age: Duration| SlotTooOld {
            age,
            margin: Duration::ZERO,
        };
        assert_eq!(
            aged(Duration::from_secs(60)).retry_in(),
            Duration::from_secs(5)
        );
        assert_eq!(
            aged(Duration::from_millis(10)).retry_in(),
            Duration::from_millis(250)
        );
    }
}
