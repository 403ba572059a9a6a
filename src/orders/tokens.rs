//! The Xoxoday access token, behind a trait so dispatch does not care where
//! it comes from: `token_store::RotatingTokens` in the service (Postgres,
//! rotating), [`StaticAccessToken`] in tests.

use async_trait::async_trait;
use secrecy::SecretString;

/// Supplies the current access token.
#[async_trait]
pub trait AccessTokens: Send + Sync + 'static {
    /// The token to send now.
    async fn access_token(&self) -> SecretString;

    /// Xoxoday answered `invalid_token` to `rejected`: refresh (unless
    /// another worker or replica already did). True when a different,
    /// freshly stored token is now current, so the call may be retried.
    async fn token_rejected(&self, _rejected: &SecretString) -> bool {
        false
    }

    /// State of the pair for metrics and `/readyz`; `None` when not tracked.
    fn health(&self) -> Option<super::TokenHealth> {
        None
    }
}

/// The token from `XOXODAY_ACCESS_TOKEN`, as is.
pub struct StaticAccessToken(SecretString);

impl StaticAccessToken {
    /// Wraps the configured token.
    pub fn new(token: SecretString) -> Self {
        Self(token)
    }
}

#[async_trait]
impl AccessTokens for StaticAccessToken {
    async fn access_token(&self) -> SecretString {
        self.0.clone()
    }
}
