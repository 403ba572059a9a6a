//! Worker tunables read from the environment (issue 4): leases, the
//! reconciler's retry schedule and budget, the age limits of `accepted`,
//! `reconciling` and `pending_delivery` orders, the pending-delivery safety poll,
//! the shared rate-limit window and the account-wide pause. Each has a
//! production default in [`crate::settings`]; tests shorten them. Protects invariant 3 (nothing
//! stuck: every uncertain order is retried on a schedule, then reviewed).

use std::time::Duration;

use crate::{
    env::{ConfigError, Env},
    settings::{
        ACCEPTED_MAX_AGE, BOOKS_AUDIT_INTERVAL, ORDER_LEASE, PENDING_DELIVERY_MAX_AGE,
        PENDING_POLL_INTERVAL, RECONCILE_MAX_AGE, RECONCILE_MAX_ATTEMPTS, RECONCILE_POLL_INTERVAL,
        RECONCILE_RETRY_BASE, RECONCILE_RETRY_FLOOR, RECONCILE_RETRY_MAX, SYSTEMIC_PAUSE,
        XOXODAY_ALLOW_SHORT_RATE_WINDOW, XOXODAY_LOW_BALANCE, XOXODAY_PROBE_INTERVAL,
        XOXODAY_RATE_WINDOW,
    },
};

/// Xoxoday's own window: it counts calls per minute.
pub const UPSTREAM_MINUTE: Duration = Duration::from_secs(60);

/// The shortest `XOXODAY_RATE_WINDOW` outside tests: Xoxoday's minute, the
/// connect ([`crate::xoxoday::CONNECT_TIMEOUT`], 4 s), [`ARRIVAL_JITTER`]
/// and 0.75 s from the slot's stamp to the send ([`send_margin`]).
pub const MIN_RATE_WINDOW: Duration = Duration::from_secs(65);

/// What a call may take to reach Xoxoday beyond its connect: writing the
/// request, half a round trip, clock slew between Postgres and Xoxoday.
pub const ARRIVAL_JITTER: Duration = Duration::from_millis(250);

/// How long after its slot's stamp a call may still be sent: what a window
/// leaves beyond Xoxoday's minute, the connect and [`ARRIVAL_JITTER`]
/// (0.75 s at the default 65 s). Two calls stamped a window apart then
/// never reach Xoxoday within one minute of each other (the proof is in
/// migration 0044). A call found older than this when it is due to go out
/// is not sent (its order waits for another slot).
///
/// `None` for a window under [`MIN_RATE_WINDOW`], which only the test switch
/// admits: such a window does not model Xoxoday's minute, so there is no
/// margin to keep.
pub fn send_margin(window: Duration) -> Option<Duration> {
    if window < MIN_RATE_WINDOW {
        return None;
    }
    window.checked_sub(UPSTREAM_MINUTE + crate::xoxoday::CONNECT_TIMEOUT + ARRIVAL_JITTER)
}

/// `XOXODAY_ALLOW_SHORT_RATE_WINDOW=1` (or `true`): the test-only switch.
fn allows_short_window(env: &Env) -> bool {
    env.get(XOXODAY_ALLOW_SHORT_RATE_WINDOW.name)
        .is_some_and(|v| v.trim() == "1" || v.trim().eq_ignore_ascii_case("true"))
}

/// Tunables of the background workers; each default is in [`crate::settings`].
#[derive(Debug, Clone)]
pub struct Tuning {
    /// `ORDER_LEASE`: how long a claim (dispatch or reconciliation) holds
    /// without renewal; renewed every third of it while work runs, so a
    /// crashed gateway's orders are picked up within about one lease.
    pub order_lease: Duration,
    /// `RECONCILE_MAX_ATTEMPTS`: placeOrder attempts before `needs_review`.
    pub max_attempts: u32,
    /// `RECONCILE_MAX_AGE`: age, counted from the first send, after which a
    /// `reconciling` order goes to `needs_review` after one final lookup.
    pub max_age: Duration,
    /// `ACCEPTED_MAX_AGE`: an `accepted` order never sent and older than this
    /// becomes `failed` with the reason `expired_unsent`.
    pub accepted_max_age: Duration,
    /// `PENDING_DELIVERY_MAX_AGE`: a `pending_delivery` order older than this
    /// (from its first send) goes to `needs_review` with the reason
    /// `delivery_overdue` after one final lookup.
    pub pending_delivery_max_age: Duration,
    /// `RECONCILE_RETRY_BASE`: first retry delay of a failed check.
    pub retry_base: Duration,
    /// `RECONCILE_RETRY_MAX`: cap of the exponential backoff.
    pub retry_max: Duration,
    /// `RECONCILE_RETRY_FLOOR`: least delay after a timeout or rate limit.
    pub retry_floor: Duration,
    /// `PENDING_POLL_INTERVAL`: safety poll of `pending_delivery` orders whose
    /// webhook never came (Xoxoday asks not to poll).
    pub pending_poll: Duration,
    /// `SYSTEMIC_PAUSE`: how long an account-wide refusal pauses every call.
    pub systemic_pause: Duration,
    /// `XOXODAY_RATE_WINDOW`: the rate-limit window (by default a minute,
    /// the connect after the stamp, and jitter). Under 60 s is refused unless
    /// `XOXODAY_ALLOW_SHORT_RATE_WINDOW=1` (tests only): Xoxoday counts per minute.
    pub rate_window: Duration,
    /// `RECONCILE_POLL_INTERVAL`: idle pause of the reconciler loop.
    pub poll_interval: Duration,
    /// `XOXODAY_PROBE_INTERVAL`: least time between two getBalance probes of
    /// an account-wide hold, over all replicas (shorter only in tests).
    pub probe_interval: Duration,
    /// `XOXODAY_LOW_BALANCE`: warn when the wallet is under this (unset: never).
    pub low_balance: Option<rust_decimal::Decimal>,
    /// `BOOKS_AUDIT_INTERVAL`: how often `serve` audits the books (zero: never).
    pub books_audit_interval: Duration,
}

impl Tuning {
    /// Reads the variables over their defaults.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let t = Self {
            order_lease: env.duration(&ORDER_LEASE)?,
            max_attempts: env.parse(&RECONCILE_MAX_ATTEMPTS)?,
            max_age: env.duration(&RECONCILE_MAX_AGE)?,
            accepted_max_age: env.duration(&ACCEPTED_MAX_AGE)?,
            pending_delivery_max_age: env.duration(&PENDING_DELIVERY_MAX_AGE)?,
            retry_base: env.duration(&RECONCILE_RETRY_BASE)?,
            retry_max: env.duration(&RECONCILE_RETRY_MAX)?,
            retry_floor: env.duration(&RECONCILE_RETRY_FLOOR)?,
            pending_poll: env.duration(&PENDING_POLL_INTERVAL)?,
            systemic_pause: env.duration(&SYSTEMIC_PAUSE)?,
            rate_window: env.duration(&XOXODAY_RATE_WINDOW)?,
            poll_interval: env.duration(&RECONCILE_POLL_INTERVAL)?,
            probe_interval: env.duration(&XOXODAY_PROBE_INTERVAL)?,
            low_balance: env
                .get(XOXODAY_LOW_BALANCE.name)
                .map(|_| env.parse(&XOXODAY_LOW_BALANCE))
                .transpose()?,
            books_audit_interval: env.duration(&BOOKS_AUDIT_INTERVAL)?,
        };
        t.validate(allows_short_window(env))
    }

    fn validate(self, allow_short_window: bool) -> Result<Self, ConfigError> {
        let (least_window, window_rule) = if allow_short_window {
            (Duration::from_secs(1), "at least 1s")
        } else {
            (
                MIN_RATE_WINDOW,
                "at least 65s: Xoxoday counts calls per minute, and a call may take 4s \
                 to connect and 1s more from its slot to its arrival \
                 (XOXODAY_ALLOW_SHORT_RATE_WINDOW=1 allows less, for tests only)",
            )
        };
        let checks: [(&'static str, bool, &str); 5] = [
            (
                ORDER_LEASE.name,
                self.order_lease >= Duration::from_secs(1),
                "at least 1s",
            ),
            (
                RECONCILE_MAX_ATTEMPTS.name,
                self.max_attempts >= 1,
                "at least 1",
            ),
            (
                XOXODAY_RATE_WINDOW.name,
                self.rate_window >= least_window,
                window_rule,
            ),
            (
                RECONCILE_RETRY_BASE.name,
                !self.retry_base.is_zero(),
                "more than 0s",
            ),
            (
                XOXODAY_PROBE_INTERVAL.name,
                self.probe_interval >= Duration::from_secs(1),
                "at least 1s",
            ),
        ];
        for (var, ok, want) in checks {
            if !ok {
                return Err(ConfigError {
                    var,
                    problem: format!("must be {want}"),
                });
            }
        }
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    /// Time allowed from a slot's stamp to its send at the default window.
    const SEND: Duration = Duration::from_millis(750);

    #[test]
    fn every_default_parses_and_passes_validation() {
        let t = Tuning::from_env(&Env::from_map(HashMap::new())).unwrap();
        assert_eq!(t.order_lease, Duration::from_secs(15));
        assert_eq!(
            t.pending_delivery_max_age,
            Duration::from_secs(21 * 24 * 3600)
        );
    }

    #[test]
    fn the_default_window_covers_a_minute_the_connect_and_the_send() {
        let t = Tuning::from_env(&Env::from_map(HashMap::new())).unwrap();
        assert!(
            t.rate_window
                >= UPSTREAM_MINUTE + crate::xoxoday::CONNECT_TIMEOUT + ARRIVAL_JITTER + SEND
        );
        assert_eq!(send_margin(t.rate_window), Some(SEND));
    }

    #[test]
    fn the_send_margin_is_what_the_window_leaves_beyond_the_minute_and_the_connect() {
        assert_eq!(
            send_margin(Duration::from_secs(90)),
            Some(Duration::from_millis(25_750))
        );
        assert_eq!(
            send_margin(Duration::from_millis(65_500)),
            Some(Duration::from_millis(1_250))
        );
        // Test windows (the switch) keep no margin: they model no minute.
        assert_eq!(send_margin(Duration::from_secs(8)), None);
        assert_eq!(send_margin(Duration::from_millis(64_999)), None);
    }
}
