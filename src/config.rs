//! Typed configuration from the environment (contract §4).
//!
//! Every setting is read and validated once at start-up. A missing or
//! malformed value becomes a [`ConfigError`] whose `Display` is one line naming
//! the variable, so an operator sees exactly what to fix. Secrets are wrapped
//! in [`SecretString`] so they never reach a log or a `Debug` print.

use std::{fmt, net::SocketAddr, str::FromStr, time::Duration};

use base64::Engine as _;
use secrecy::{ExposeSecret, SecretBox, SecretString};
use url::Url;

pub use crate::env::{ConfigError, Env};
use crate::settings::{
    DATABASE_MAX_CONNECTIONS, DATABASE_URL, ENCRYPTION_KEY, ENCRYPTION_KEY_PREVIOUS, LISTEN_ADDR,
    WEBHOOK_API_KEY, XOXODAY_ACCESS_TOKEN, XOXODAY_BASE_URL, XOXODAY_CLIENT_ID,
    XOXODAY_CLIENT_SECRET, XOXODAY_ORDER_DETAILS_RATE, XOXODAY_ORDER_HISTORY_RATE,
    XOXODAY_PLACE_ORDER_RATE, XOXODAY_PLACE_ORDER_TIMEOUT, XOXODAY_REFRESH_TOKEN,
    XOXODAY_REQUEST_TIMEOUT, XOXODAY_SETTLE_WINDOW,
};

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line (the production default, `LOG_FORMAT`).
    Json,
    /// Human-readable, coloured lines.
    Pretty,
}

impl FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "json" => Ok(Self::Json),
            "pretty" => Ok(Self::Pretty),
            other => Err(format!("expected `json` or `pretty`, not `{other}`")),
        }
    }
}

/// The 32-byte key that encrypts vouchers and tokens at rest.
pub struct EncryptionKey(SecretBox<[u8; 32]>);

impl EncryptionKey {
    /// Parses base64 of exactly 32 bytes.
    pub fn from_base64(raw: &str) -> Result<Self, String> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(raw.trim())
            .map_err(|_| "is not valid base64".to_string())?;
        let arr: [u8; 32] = bytes
            .try_into()
            .map_err(|b: Vec<u8>| format!("must decode to 32 bytes, got {}", b.len()))?;
        Ok(Self(SecretBox::new(Box::new(arr))))
    }

    /// The key bytes, for the AEAD only.
    pub fn expose(&self) -> &[u8; 32] {
        self.0.expose_secret()
    }
}

impl fmt::Debug for EncryptionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EncryptionKey([REDACTED])")
    }
}

/// How the gateway reaches Xoxoday.
#[derive(Debug)]
pub struct XoxodayConfig {
    /// `{base}`: the service calls `{base}/v1/oauth/api` and `{base}/v1/oauth/token/user`.
    pub base_url: Url,
    /// OAuth client id (not secret, but kept out of logs anyway).
    pub client_id: SecretString,
    /// OAuth client secret.
    pub client_secret: SecretString,
    /// First access token; the stored, rotated one wins after first start.
    pub access_token: Option<SecretString>,
    /// First refresh token; likewise.
    pub refresh_token: Option<SecretString>,
    /// Client timeout for placeOrder (docs: realtime products can take 120 s).
    pub place_order_timeout: Duration,
    /// Client timeout for every other operation.
    pub request_timeout: Duration,
    /// A "not found" is trusted only this long after the last placeOrder ENDED.
    pub settle_window: Duration,
    /// placeOrder calls per minute, all replicas together.
    pub place_order_rate: u32,
    /// getOrderDetails calls per minute, all replicas together.
    pub order_details_rate: u32,
    /// getOrderHistory calls per minute, all replicas together (books audit).
    pub order_history_rate: u32,
}

impl XoxodayConfig {
    /// Reads the `XOXODAY_*` variables.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let client_id = env.required(XOXODAY_CLIENT_ID.name)?;
        let client_secret = env.required(XOXODAY_CLIENT_SECRET.name)?;
        let place_order_rate = env.parse(&XOXODAY_PLACE_ORDER_RATE)?;
        let order_details_rate = env.parse(&XOXODAY_ORDER_DETAILS_RATE)?;
        let order_history_rate = env.parse(&XOXODAY_ORDER_HISTORY_RATE)?;
        for (var, rate) in [
            (XOXODAY_PLACE_ORDER_RATE.name, place_order_rate),
            (XOXODAY_ORDER_DETAILS_RATE.name, order_details_rate),
            (XOXODAY_ORDER_HISTORY_RATE.name, order_history_rate),
        ] {
            if rate == 0u32 {
                return Err(ConfigError {
                    var,
                    problem: "must be at least 1 (calls per minute)".into(),
                });
            }
        }
        Ok(Self {
            base_url: env.url(XOXODAY_BASE_URL.name)?,
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            access_token: env.secret(XOXODAY_ACCESS_TOKEN.name),
            refresh_token: env.secret(XOXODAY_REFRESH_TOKEN.name),
            place_order_timeout: env.duration(&XOXODAY_PLACE_ORDER_TIMEOUT)?,
            request_timeout: env.duration(&XOXODAY_REQUEST_TIMEOUT)?,
            settle_window: env.duration(&XOXODAY_SETTLE_WINDOW)?,
            place_order_rate,
            order_details_rate,
            order_history_rate,
        })
    }
}

/// Everything `serve` needs.
#[derive(Debug)]
pub struct ServeConfig {
    /// Postgres URL (may hold a password).
    pub database_url: SecretString,
    /// HTTP listen address.
    pub listen_addr: SocketAddr,
    /// Upstream settings.
    pub xoxoday: XoxodayConfig,
    /// Expected `x-api-key` on Xoxoday webhooks; webhooks refused when unset.
    pub webhook_api_key: Option<SecretString>,
    /// Key for encryption at rest.
    pub encryption_key: EncryptionKey,
    /// `ENCRYPTION_KEY_PREVIOUS`: the key being rotated out, for decryption only.
    pub encryption_key_previous: Option<EncryptionKey>,
    /// Largest Postgres pool (`DATABASE_MAX_CONNECTIONS`).
    pub database_max_connections: u32,
    /// Worker tunables (leases, reconciliation schedule and budget).
    pub tuning: crate::tuning::Tuning,
    /// The caller notification sender's tunables.
    pub notify: crate::notify::NotifyConfig,
}

impl ServeConfig {
    /// Reads and validates every setting `serve` uses.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let database_url = database_url(env)?;
        let listen_addr = env.parse(&LISTEN_ADDR)?;
        let xoxoday = XoxodayConfig::from_env(env)?;
        let encryption_key = encryption_key(env)?;
        let tuning = crate::tuning::Tuning::from_env(env)?;
        Ok(Self {
            tuning,
            database_url,
            listen_addr,
            xoxoday,
            webhook_api_key: env.secret(WEBHOOK_API_KEY.name),
            encryption_key,
            encryption_key_previous: encryption_key_previous(env)?,
            database_max_connections: database_max_connections(env)?,
            notify: crate::notify::NotifyConfig::from_env(env)?,
        })
    }
}

/// `ENCRYPTION_KEY`: required, base64 of 32 bytes.
pub fn encryption_key(env: &Env) -> Result<EncryptionKey, ConfigError> {
    EncryptionKey::from_base64(&env.required(ENCRYPTION_KEY.name)?).map_err(|problem| ConfigError {
        var: ENCRYPTION_KEY.name,
        problem,
    })
}

/// `ENCRYPTION_KEY_PREVIOUS`: optional, same format as `ENCRYPTION_KEY`.
pub fn encryption_key_previous(env: &Env) -> Result<Option<EncryptionKey>, ConfigError> {
    env.get(ENCRYPTION_KEY_PREVIOUS.name)
        .map(|raw| EncryptionKey::from_base64(&raw))
        .transpose()
        .map_err(|problem| ConfigError {
            var: ENCRYPTION_KEY_PREVIOUS.name,
            problem,
        })
}

/// `DATABASE_MAX_CONNECTIONS`: 1–1000.
pub fn database_max_connections(env: &Env) -> Result<u32, ConfigError> {
    let n: u32 = env.parse(&DATABASE_MAX_CONNECTIONS)?;
    if !(1..=1000).contains(&n) {
        return Err(ConfigError {
            var: DATABASE_MAX_CONNECTIONS.name,
            problem: format!("must be from 1 to 1000, got {n}"),
        });
    }
    Ok(n)
}

/// `DATABASE_URL`, checked to be a Postgres URL.
pub fn database_url(env: &Env) -> Result<SecretString, ConfigError> {
    let raw = env.required(DATABASE_URL.name)?;
    if !(raw.starts_with("postgres://") || raw.starts_with("postgresql://")) {
        return Err(ConfigError {
            var: DATABASE_URL.name,
            problem: "must start with postgres:// or postgresql://".into(),
        });
    }
    Ok(raw.into())
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

    const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

    fn full() -> Vec<(&'static str, &'static str)> {
        vec![
            ("DATABASE_URL", "postgres://u:pw@localhost/db"),
            ("XOXODAY_BASE_URL", "http://127.0.0.1:9090/chef"),
            ("XOXODAY_CLIENT_ID", "id"),
            ("XOXODAY_CLIENT_SECRET", "client-secret-value-9"),
            ("ENCRYPTION_KEY", KEY),
        ]
    }

    #[test]
    fn a_complete_environment_parses_with_contract_defaults() {
        let cfg = ServeConfig::from_env(&env(&full())).unwrap();
        assert_eq!(cfg.listen_addr.to_string(), "0.0.0.0:8080");
        assert_eq!(cfg.xoxoday.place_order_timeout, Duration::from_secs(150));
        assert_eq!(cfg.xoxoday.settle_window, Duration::from_secs(150));
        assert_eq!(cfg.xoxoday.place_order_rate, 100);
        assert_eq!(cfg.xoxoday.order_details_rate, 200);
        assert!(cfg.webhook_api_key.is_none());
    }

    #[test]
    fn each_missing_required_variable_is_named() {
        for var in [
            "DATABASE_URL",
            "XOXODAY_BASE_URL",
            "XOXODAY_CLIENT_ID",
            "XOXODAY_CLIENT_SECRET",
            "ENCRYPTION_KEY",
        ] {
            let pairs: Vec<_> = full().into_iter().filter(|(k, _)| *k != var).collect();
            let err = ServeConfig::from_env(&env(&pairs)).unwrap_err();
            assert_eq!(err.var, var);
            assert!(!err.to_string().contains('\n'));
        }
    }

    #[test]
    fn malformed_values_name_their_variable() {
        let cases = [
            ("XOXODAY_PLACE_ORDER_TIMEOUT", "soon"),
            ("XOXODAY_SETTLE_WINDOW", "-3"),
            ("XOXODAY_PLACE_ORDER_RATE", "many"),
            ("XOXODAY_ORDER_DETAILS_RATE", "0"),
            ("LISTEN_ADDR", "nowhere"),
            ("ENCRYPTION_KEY", "c2hvcnQ="),
            ("ENCRYPTION_KEY_PREVIOUS", "c2hvcnQ="),
            ("XOXODAY_BASE_URL", "ftp://x"),
            ("DATABASE_URL", "mysql://x"),
        ];
        for (var, bad) in cases {
            let mut pairs = full();
            pairs.retain(|(k, _)| *k != var);
            pairs.push((var, bad));
            let err = ServeConfig::from_env(&env(&pairs)).unwrap_err();
            assert_eq!(err.var, var, "{err}");
        }
    }

    #[test]
    fn secrets_do_not_print_in_debug() {
        let mut pairs = full();
        pairs.push(("XOXODAY_ACCESS_TOKEN", "tok-visible-123"));
        let cfg = ServeConfig::from_env(&env(&pairs)).unwrap();
        let dbg = format!("{cfg:?}");
        for secret in ["client-secret-value-9", "tok-visible-123", "pw@", KEY] {
            assert!(!dbg.contains(secret), "{secret} leaked in {dbg}");
        }
    }
}
