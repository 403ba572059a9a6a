//! Notifications to callers (contract §9, issue 13): signed, durable,
//! at-least-once webhooks following the Standard Webhooks specification.
//!
//! The outbox is written by a Postgres trigger on `orders` status changes
//! (migration 0036), in the same transaction as the change; this module
//! registers endpoints ([`cli`]), renders and signs events ([`body`],
//! [`sign`]), checks where they may go ([`address`]) and delivers them with
//! leases from every replica ([`sender`]).

use std::time::Duration;

use crate::{
    env::{ConfigError, Env},
    settings::{
        NOTIFY_CONCURRENCY, NOTIFY_ENDPOINT_CONCURRENCY, NOTIFY_LEASE, NOTIFY_POLL_INTERVAL,
        NOTIFY_RETRY_FIRST, NOTIFY_RETRY_FOR, NOTIFY_RETRY_MAX,
    },
};

/// URL rules at registration and address rules at send time.
pub mod address;
/// The event body, rendered once from the order snapshot.
pub mod body;
/// `order-gateway callers webhook set|remove|replay`.
pub mod cli;
/// Counters and scrape gauges for `/metrics`.
pub mod metrics;
/// The background sender.
pub mod sender;
/// Secrets and Standard Webhooks signatures.
pub mod sign;

/// Each attempt's timeout (contract §9: 5 s).
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);

/// The shortest `NOTIFY_LEASE`: an attempt (5 s) with room to record it.
pub const MIN_LEASE: Duration = Duration::from_secs(10);

/// Tunables of the sender; each default is in [`crate::settings`].
#[derive(Debug, Clone)]
pub struct NotifyConfig {
    /// `NOTIFY_CONCURRENCY`: deliveries in flight per replica.
    pub concurrency: usize,
    /// `NOTIFY_ENDPOINT_CONCURRENCY`: deliveries in flight to one endpoint,
    /// all replicas together (claims are serialized in Postgres).
    pub endpoint_concurrency: i64,
    /// `NOTIFY_POLL_INTERVAL`: idle pause (a trigger notification wakes earlier).
    pub poll_interval: Duration,
    /// `NOTIFY_LEASE`: how long a claim holds; a crashed sender's claims
    /// return after it.
    pub lease: Duration,
    /// `NOTIFY_RETRY_FIRST`: first retry delay.
    pub retry_first: Duration,
    /// `NOTIFY_RETRY_MAX`: cap of the doubling delay.
    pub retry_max: Duration,
    /// `NOTIFY_RETRY_FOR`: retried this long, then marked failed.
    pub retry_for: Duration,
}

impl NotifyConfig {
    /// Reads the variables over their defaults.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let concurrency: usize = env.parse(&NOTIFY_CONCURRENCY)?;
        if !(1..=1000).contains(&concurrency) {
            return Err(ConfigError {
                var: NOTIFY_CONCURRENCY.name,
                problem: format!("must be from 1 to 1000, got {concurrency}"),
            });
        }
        let endpoint_concurrency: i64 = env.parse(&NOTIFY_ENDPOINT_CONCURRENCY)?;
        if !(1..=100).contains(&endpoint_concurrency) {
            return Err(ConfigError {
                var: NOTIFY_ENDPOINT_CONCURRENCY.name,
                problem: format!("must be from 1 to 100, got {endpoint_concurrency}"),
            });
        }
        let lease = env.duration(&NOTIFY_LEASE)?;
        if lease < MIN_LEASE {
            return Err(ConfigError {
                var: NOTIFY_LEASE.name,
                problem: format!(
                    "must be at least {} (an attempt takes up to 5s)",
                    humantime::format_duration(MIN_LEASE)
                ),
            });
        }
        let cfg = Self {
            concurrency,
            endpoint_concurrency,
            poll_interval: env.duration(&NOTIFY_POLL_INTERVAL)?,
            lease,
            retry_first: env.duration(&NOTIFY_RETRY_FIRST)?,
            retry_max: env.duration(&NOTIFY_RETRY_MAX)?,
            retry_for: env.duration(&NOTIFY_RETRY_FOR)?,
        };
        for (var, d) in [
            (NOTIFY_POLL_INTERVAL.name, cfg.poll_interval),
            (NOTIFY_RETRY_FIRST.name, cfg.retry_first),
            (NOTIFY_RETRY_MAX.name, cfg.retry_max),
        ] {
            if d.is_zero() {
                return Err(ConfigError {
                    var,
                    problem: "must be more than 0".into(),
                });
            }
        }
        Ok(cfg)
    }

    /// The delay before retry number `failed` (1 after the first failed
    /// attempt): `retry_first` doubled per failure, capped at `retry_max`,
    /// with ±20 % jitter (never above the cap).
    pub fn retry_delay(&self, failed: u32) -> Duration {
        let doubled = self
            .retry_first
            .saturating_mul(1u32 << failed.saturating_sub(1).min(20));
        jitter(doubled.min(self.retry_max)).min(self.retry_max)
    }
}

/// `d` scaled by a random factor in 0.8..1.2 (±20 %).
fn jitter(d: Duration) -> Duration {
    use rand::Rng as _;
    d.mul_f64(rand::thread_rng().gen_range(0.8..1.2))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> NotifyConfig {
        NotifyConfig::from_env(&Env::from_map(Default::default())).unwrap()
    }

    #[test]
    fn defaults_follow_the_contract_schedule() {
        let c = cfg();
        assert_eq!(c.retry_for, Duration::from_secs(72 * 3600));
        let first = c.retry_delay(1);
        assert!(first <= Duration::from_secs(10), "{first:?}");
        assert!(first >= Duration::from_secs(4), "{first:?}");
        let second = c.retry_delay(2);
        assert!((Duration::from_secs(8)..=Duration::from_secs(12)).contains(&second));
        for n in 8..40 {
            let d = c.retry_delay(n);
            assert!(d <= Duration::from_secs(600), "{n}: {d:?}");
            assert!(d >= Duration::from_secs(480), "{n}: {d:?}");
        }
    }

    #[test]
    fn a_short_lease_and_zero_concurrency_are_named() {
        let env =
            |k: &str, v: &str| Env::from_map([(k.to_owned(), v.to_owned())].into_iter().collect());
        let e = NotifyConfig::from_env(&env("NOTIFY_LEASE", "2s")).unwrap_err();
        assert_eq!(e.var, "NOTIFY_LEASE");
        let e = NotifyConfig::from_env(&env("NOTIFY_CONCURRENCY", "0")).unwrap_err();
        assert_eq!(e.var, "NOTIFY_CONCURRENCY");
    }
}
