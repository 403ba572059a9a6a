//! Emulator settings: [`EmulatorConfig`] with documented defaults, read from
//! the `EMULATOR_*` variables (docs/emulator.md; the README table lists them all).

use std::{net::SocketAddr, time::Duration};

use rust_decimal::Decimal;

use super::{faults::FaultRates, limits::RateLimits};
use crate::env::{ConfigError, Env};

/// Everything the emulator needs to start.
#[derive(Debug, Clone)]
pub struct EmulatorConfig {
    /// Listen address (`EMULATOR_ADDR`, default `127.0.0.1:9090`).
    pub addr: SocketAddr,
    /// OAuth client id accepted by the refresh endpoint.
    pub client_id: String,
    /// OAuth client secret accepted by the refresh endpoint.
    pub client_secret: String,
    /// The first valid access token.
    pub access_token: String,
    /// The first valid refresh token.
    pub refresh_token: String,
    /// Where delivery-status webhooks go (none when unset).
    pub webhook_url: Option<String>,
    /// The `x-api-key` header sent with webhooks (none when unset).
    pub webhook_api_key: Option<String>,
    /// How long a delayed product stays `pending`.
    pub delivery_delay: Duration,
    /// Opening wallet balance (USD, the account base currency).
    pub balance: Decimal,
    /// Per-operation rate limits.
    pub rate_limits: RateLimits,
    /// Random placeOrder faults.
    pub fault_rates: FaultRates,
    /// Pause between webhook attempts (1 try + up to 3 retries).
    pub webhook_retry_delay: Duration,
    /// getOrderHistory's answer for an empty window or page.
    pub empty_history: EmptyHistory,
}

/// What getOrderHistory answers when the window (or page) has no orders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmptyHistory {
    /// 404 PLE10027 "Failed to find order history" (the default).
    NotFound,
    /// 200 with `data: []`.
    EmptyList,
}

impl EmptyHistory {
    /// The value `EMULATOR_EMPTY_HISTORY` names it by.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotFound => "404",
            Self::EmptyList => "empty",
        }
    }

    /// `404`/`notFound` or `empty`/`emptyList`.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "404" | "notFound" => Some(Self::NotFound),
            "empty" | "emptyList" | "[]" => Some(Self::EmptyList),
            _ => None,
        }
    }
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 9090)),
            client_id: "emulator-client".into(),
            client_secret: "emulator-secret".into(),
            access_token: "emulator-access-token".into(),
            refresh_token: "emulator-refresh-token".into(),
            webhook_url: None,
            webhook_api_key: None,
            delivery_delay: Duration::from_secs(10),
            balance: Decimal::from(100_000),
            rate_limits: RateLimits::default(),
            fault_rates: FaultRates {
                sleep: Duration::from_secs(160),
                hidden_for: Duration::from_secs(30),
                late_after: Duration::from_secs(20),
                ..FaultRates::default()
            },
            webhook_retry_delay: Duration::from_secs(2),
            empty_history: EmptyHistory::NotFound,
        }
    }
}

impl EmulatorConfig {
    /// Port 0 on loopback, default credentials, limits that never trigger,
    /// no random faults, a 2 s delivery delay and fast webhook retries.
    pub fn for_tests() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            delivery_delay: Duration::from_secs(2),
            rate_limits: RateLimits::unlimited(),
            webhook_retry_delay: Duration::from_millis(100),
            ..Self::default()
        }
    }

    /// Every `EMULATOR_*` variable, its default (from [`Default`], written
    /// out) and its meaning, for `order-gateway emulator --help`.
    pub fn variables() -> Vec<(&'static str, Option<String>, &'static str)> {
        let d = Self::default();
        let r = &d.rate_limits;
        let f = &d.fault_rates;
        let secs = |t: Duration| match t.subsec_nanos() {
            0 => Some(format!("{}s", t.as_secs())),
            _ => Some(humantime::format_duration(t).to_string()),
        };
        let p = |x: f64| Some(x.to_string());
        vec![
            ("EMULATOR_ADDR", Some(d.addr.to_string()), "Listen address"),
            (
                "EMULATOR_CLIENT_ID",
                Some(d.client_id.clone()),
                "OAuth client id accepted by refresh",
            ),
            (
                "EMULATOR_CLIENT_SECRET",
                Some(d.client_secret.clone()),
                "OAuth client secret accepted by refresh",
            ),
            (
                "EMULATOR_ACCESS_TOKEN",
                Some(d.access_token.clone()),
                "The first valid access token",
            ),
            (
                "EMULATOR_REFRESH_TOKEN",
                Some(d.refresh_token.clone()),
                "The first valid refresh token",
            ),
            (
                "EMULATOR_WEBHOOK_URL",
                None,
                "Target of the delivery-status webhook, http or https (unset: no webhooks)",
            ),
            (
                "EMULATOR_WEBHOOK_API_KEY",
                None,
                "x-api-key header sent with webhooks (unset: no header)",
            ),
            (
                "EMULATOR_DELIVERY_DELAY",
                secs(d.delivery_delay),
                "How long delayed products stay pending",
            ),
            (
                "EMULATOR_WEBHOOK_RETRY_DELAY",
                secs(d.webhook_retry_delay),
                "Pause between webhook attempts",
            ),
            (
                "EMULATOR_BALANCE",
                Some(d.balance.to_string()),
                "Opening wallet balance, USD",
            ),
            (
                "EMULATOR_RATE_PLACE_ORDER",
                Some(r.place_order.to_string()),
                "placeOrder calls per 60s",
            ),
            (
                "EMULATOR_RATE_ORDER_DETAILS",
                Some(r.get_order_details.to_string()),
                "getOrderDetails calls per 60s",
            ),
            (
                "EMULATOR_RATE_VOUCHERS",
                Some(r.get_vouchers.to_string()),
                "getVouchers calls per 60s",
            ),
            (
                "EMULATOR_RATE_BALANCE",
                Some(r.get_balance.to_string()),
                "getBalance calls per 60s",
            ),
            (
                "EMULATOR_RATE_ORDER_HISTORY",
                Some(r.get_order_history.to_string()),
                "getOrderHistory calls per 60s",
            ),
            (
                "EMULATOR_EMPTY_HISTORY",
                Some(d.empty_history.as_str().into()),
                "Answer for an empty history window: 404 (PLE10027) or empty (data: [])",
            ),
            (
                "EMULATOR_FAULT_ERROR_BEFORE",
                p(f.error_before),
                "Probability: placeOrder answers 502, no order",
            ),
            (
                "EMULATOR_FAULT_ERROR_AFTER",
                p(f.error_after),
                "Probability: order created and charged, then 502",
            ),
            (
                "EMULATOR_FAULT_SLEEP_AFTER",
                p(f.sleep_after),
                "Probability: order created, answer after EMULATOR_FAULT_SLEEP",
            ),
            (
                "EMULATOR_FAULT_DROP_AFTER",
                p(f.drop_after),
                "Probability: order created, connection closed without an answer",
            ),
            (
                "EMULATOR_FAULT_SLOW",
                p(f.slow),
                "Probability: the call starts only after EMULATOR_FAULT_SLEEP",
            ),
            (
                "EMULATOR_FAULT_HIDDEN",
                p(f.hidden),
                "Probability: order created, getOrderDetails says 404 for EMULATOR_FAULT_HIDDEN_FOR",
            ),
            (
                "EMULATOR_FAULT_LATE_ERROR",
                p(f.late_error),
                "Probability: 502, no order; the order is created EMULATOR_FAULT_LATE_AFTER later",
            ),
            (
                "EMULATOR_FAULT_LATE_DROP",
                p(f.late_drop),
                "Probability: connection closed, no order; it is created EMULATOR_FAULT_LATE_AFTER later",
            ),
            (
                "EMULATOR_FAULT_WEBHOOK_FIRST",
                p(f.webhook_first),
                "Probability: created, webhook sent, then the normal answer",
            ),
            (
                "EMULATOR_FAULT_WEBHOOK_INSTEAD",
                p(f.webhook_instead),
                "Probability: created, webhook sent, then 502",
            ),
            (
                "EMULATOR_FAULT_SLEEP",
                secs(f.sleep),
                "Duration for sleep-after and slow",
            ),
            (
                "EMULATOR_FAULT_HIDDEN_FOR",
                secs(f.hidden_for),
                "Duration for hidden",
            ),
            (
                "EMULATOR_FAULT_LATE_AFTER",
                secs(f.late_after),
                "Delay for the late faults",
            ),
        ]
    }

    /// Reads the `EMULATOR_*` variables over [`Default`]; a bad value is a
    /// [`ConfigError`] naming its variable.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let d = Self::default();
        let cfg = Self {
            addr: env.parse_or("EMULATOR_ADDR", d.addr)?,
            client_id: env.get("EMULATOR_CLIENT_ID").unwrap_or(d.client_id),
            client_secret: env.get("EMULATOR_CLIENT_SECRET").unwrap_or(d.client_secret),
            access_token: env.get("EMULATOR_ACCESS_TOKEN").unwrap_or(d.access_token),
            refresh_token: env.get("EMULATOR_REFRESH_TOKEN").unwrap_or(d.refresh_token),
            webhook_url: webhook_url(env)?,
            webhook_api_key: env.get("EMULATOR_WEBHOOK_API_KEY"),
            delivery_delay: env.duration_or("EMULATOR_DELIVERY_DELAY", d.delivery_delay)?,
            balance: non_negative(env, "EMULATOR_BALANCE", d.balance)?,
            rate_limits: rate_limits(env)?,
            fault_rates: fault_rates(env, &d.fault_rates)?,
            webhook_retry_delay: env
                .duration_or("EMULATOR_WEBHOOK_RETRY_DELAY", d.webhook_retry_delay)?,
            empty_history: empty_history(env, d.empty_history)?,
        };
        Ok(cfg)
    }
}

fn webhook_url(env: &Env) -> Result<Option<String>, ConfigError> {
    match env.get("EMULATOR_WEBHOOK_URL") {
        None => Ok(None),
        Some(_) => env.url("EMULATOR_WEBHOOK_URL").map(|u| Some(u.to_string())),
    }
}

fn non_negative(env: &Env, var: &'static str, default: Decimal) -> Result<Decimal, ConfigError> {
    let v: Decimal = env.parse_or(var, default)?;
    if v.is_sign_negative() {
        return Err(ConfigError {
            var,
            problem: "must not be negative".into(),
        });
    }
    Ok(v)
}

fn rate(env: &Env, var: &'static str, default: u32) -> Result<u32, ConfigError> {
    let v = env.parse_or(var, default)?;
    if v == 0 {
        return Err(ConfigError {
            var,
            problem: "must be at least 1 (calls per minute)".into(),
        });
    }
    Ok(v)
}

fn rate_limits(env: &Env) -> Result<RateLimits, ConfigError> {
    let d = RateLimits::default();
    Ok(RateLimits {
        place_order: rate(env, "EMULATOR_RATE_PLACE_ORDER", d.place_order)?,
        get_order_details: rate(env, "EMULATOR_RATE_ORDER_DETAILS", d.get_order_details)?,
        get_vouchers: rate(env, "EMULATOR_RATE_VOUCHERS", d.get_vouchers)?,
        get_balance: rate(env, "EMULATOR_RATE_BALANCE", d.get_balance)?,
        get_order_history: rate(env, "EMULATOR_RATE_ORDER_HISTORY", d.get_order_history)?,
    })
}

fn probability(env: &Env, var: &'static str, default: f64) -> Result<f64, ConfigError> {
    let p: f64 = env.parse_or(var, default)?;
    if !(0.0..=1.0).contains(&p) {
        return Err(ConfigError {
            var,
            problem: format!("must be a probability between 0 and 1, got {p}"),
        });
    }
    Ok(p)
}

fn fault_rates(env: &Env, d: &FaultRates) -> Result<FaultRates, ConfigError> {
    let rates = FaultRates {
        error_before: probability(env, "EMULATOR_FAULT_ERROR_BEFORE", d.error_before)?,
        error_after: probability(env, "EMULATOR_FAULT_ERROR_AFTER", d.error_after)?,
        sleep_after: probability(env, "EMULATOR_FAULT_SLEEP_AFTER", d.sleep_after)?,
        drop_after: probability(env, "EMULATOR_FAULT_DROP_AFTER", d.drop_after)?,
        slow: probability(env, "EMULATOR_FAULT_SLOW", d.slow)?,
        hidden: probability(env, "EMULATOR_FAULT_HIDDEN", d.hidden)?,
        late_error: probability(env, "EMULATOR_FAULT_LATE_ERROR", d.late_error)?,
        late_drop: probability(env, "EMULATOR_FAULT_LATE_DROP", d.late_drop)?,
        webhook_first: probability(env, "EMULATOR_FAULT_WEBHOOK_FIRST", d.webhook_first)?,
        webhook_instead: probability(env, "EMULATOR_FAULT_WEBHOOK_INSTEAD", d.webhook_instead)?,
        sleep: env.duration_or("EMULATOR_FAULT_SLEEP", d.sleep)?,
        hidden_for: env.duration_or("EMULATOR_FAULT_HIDDEN_FOR", d.hidden_for)?,
        late_after: env.duration_or("EMULATOR_FAULT_LATE_AFTER", d.late_after)?,
    };
    if rates.total() > 1.0 {
        return Err(ConfigError {
            var: "EMULATOR_FAULT_ERROR_BEFORE",
            problem: "and the other EMULATOR_FAULT_* rates must add up to at most 1".into(),
        });
    }
    Ok(rates)
}

fn empty_history(env: &Env, default: EmptyHistory) -> Result<EmptyHistory, ConfigError> {
    let var = "EMULATOR_EMPTY_HISTORY";
    match env.get(var) {
        None => Ok(default),
        Some(v) => EmptyHistory::parse(&v).ok_or_else(|| ConfigError {
            var,
            problem: format!("must be `404` or `empty`, got {v:?}"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Env {
        Env::from_map(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn an_empty_environment_gives_the_documented_defaults() {
        let cfg = EmulatorConfig::from_env(&env(&[])).unwrap();
        assert_eq!(cfg.addr.to_string(), "127.0.0.1:9090");
        assert_eq!(cfg.client_id, "emulator-client");
        assert_eq!(cfg.access_token, "emulator-access-token");
        assert_eq!(cfg.rate_limits, RateLimits::default());
        assert_eq!(cfg.fault_rates.total(), 0.0);
    }

    #[test]
    fn the_defaults_help_shows_read_back_as_the_defaults() {
        let shown: Vec<(String, String)> = EmulatorConfig::variables()
            .into_iter()
            .filter_map(|(name, default, _)| default.map(|d| (name.to_string(), d)))
            .collect();
        let cfg = EmulatorConfig::from_env(&Env::from_map(shown.into_iter().collect())).unwrap();
        let d = EmulatorConfig::default();
        assert_eq!(cfg.addr, d.addr);
        assert_eq!(cfg.client_secret, d.client_secret);
        assert_eq!(cfg.refresh_token, d.refresh_token);
        assert_eq!(cfg.delivery_delay, d.delivery_delay);
        assert_eq!(cfg.webhook_retry_delay, d.webhook_retry_delay);
        assert_eq!(cfg.balance, d.balance);
        assert_eq!(cfg.rate_limits, d.rate_limits);
        assert_eq!(cfg.fault_rates, d.fault_rates);
        assert_eq!(cfg.empty_history, d.empty_history);
    }

    #[test]
    fn values_are_read_and_bad_ones_name_their_variable() {
        let cfg = EmulatorConfig::from_env(&env(&[
            ("EMULATOR_BALANCE", "250.50"),
            ("EMULATOR_FAULT_DROP_AFTER", "0.25"),
            (
                "EMULATOR_WEBHOOK_URL",
                "http://127.0.0.1:8080/v1/webhooks/xoxoday",
            ),
        ]))
        .unwrap();
        assert_eq!(cfg.balance, Decimal::new(25050, 2));
        assert_eq!(cfg.fault_rates.drop_after, 0.25);
        for (var, bad) in [
            ("EMULATOR_ADDR", "nowhere"),
            ("EMULATOR_BALANCE", "-1"),
            ("EMULATOR_RATE_PLACE_ORDER", "0"),
            ("EMULATOR_RATE_BALANCE", "x"),
            ("EMULATOR_FAULT_SLOW", "1.5"),
            ("EMULATOR_DELIVERY_DELAY", "soon"),
            ("EMULATOR_WEBHOOK_URL", "ftp://x"),
            ("EMULATOR_EMPTY_HISTORY", "maybe"),
            ("EMULATOR_FAULT_LATE_DROP", "2"),
            ("EMULATOR_RATE_ORDER_HISTORY", "0"),
        ] {
            let err = EmulatorConfig::from_env(&env(&[(var, bad)])).unwrap_err();
            assert_eq!(err.var, var, "{err}");
        }
    }
}
