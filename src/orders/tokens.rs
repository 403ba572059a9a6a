//! The Xoxoday access token, behind a trait so a later issue can swap in a
//! Postgres-backed, rotating store without touching dispatch.

use async_trait::async_trait;
use secrecy::SecretString;

/// Supplies the current access token.
#[async_trait]
pub trait AccessTokens: Send + Sync + 'static {
    /// The token to send now.
    async fn access_token(&self) -> SecretString;
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
