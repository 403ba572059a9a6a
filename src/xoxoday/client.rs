//! [`XoxodayClient`]: the reqwest implementation of [`XoxodayApi`], plus the
//! catalog and balance reads.
//!
//! Protects invariant 1 on the transport side: placeOrder has its own long
//! timeout (docs: realtime products take up to 120 s), redirects are never
//! followed (a redirected POST could place twice, elsewhere), and nothing is
//! retried here — retries belong to the dispatcher, which knows the poNumber.

use std::time::Duration;

use async_trait::async_trait;
use secrecy::SecretString;
use serde_json::json;
use url::Url;

use super::classify::{self, ReadError};
use super::decode::{self, Balance, CatalogProduct, HistoryOrder};
use super::transport::{self, mark_undecodable};
use super::wire::{self, VoucherQuery};
use super::{
    Call, HistoryPage, LookupOutcome, Operation, PlaceOrderRequest, PlaceOutcome, PreparedCall,
    RefreshOutcome, XoxodayApi,
};
use crate::config::XoxodayConfig;
use crate::domain::PoNumber;

/// What the client needs to know; built from [`XoxodayConfig`] or by hand in tests.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `{base}`, e.g. `https://stagingstores.xoxoday.com/chef` (a trailing `/` is fine).
    pub base_url: Url,
    /// OAuth client id, sent on token refresh.
    pub client_id: SecretString,
    /// OAuth client secret, sent on token refresh.
    pub client_secret: SecretString,
    /// Timeout for placeOrder.
    pub place_order_timeout: Duration,
    /// Timeout for every other call.
    pub request_timeout: Duration,
}

impl From<&XoxodayConfig> for ClientConfig {
    fn from(cfg: &XoxodayConfig) -> Self {
        Self {
            base_url: cfg.base_url.clone(),
            client_id: cfg.client_id.clone(),
            client_secret: cfg.client_secret.clone(),
            place_order_timeout: cfg.place_order_timeout,
            request_timeout: cfg.request_timeout,
        }
    }
}

/// Longest connect (TCP and TLS) before a call fails. The rate slot is
/// stamped before the connect, so the default of
/// [`crate::settings::XOXODAY_RATE_WINDOW`] is
/// Xoxoday's minute plus this plus 1 s: keep them in step.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(4);

/// Talks to Xoxoday over HTTPS (rustls); cheap to clone.
#[derive(Debug, Clone)]
pub struct XoxodayClient {
    http: reqwest::Client,
    cfg: ClientConfig,
    api_url: String,
    token_url: String,
}

impl XoxodayClient {
    /// A client for the configured Xoxoday account.
    pub fn new(cfg: &XoxodayConfig) -> Result<Self, reqwest::Error> {
        Self::with_config(ClientConfig::from(cfg))
    }

    /// A client from explicit settings.
    pub fn with_config(cfg: ClientConfig) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .use_rustls_tls()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(cfg.request_timeout.min(CONNECT_TIMEOUT))
            .user_agent(concat!("order-gateway/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let base = cfg.base_url.as_str().trim_end_matches('/').to_owned();
        Ok(Self {
            http,
            api_url: format!("{base}/v1/oauth/api"),
            token_url: format!("{base}/v1/oauth/token/user"),
            cfg,
        })
    }

    /// `{base}/v1/oauth/api`.
    pub fn api_url(&self) -> &str {
        &self.api_url
    }

    /// `{base}/v1/oauth/token/user`.
    pub fn token_url(&self) -> &str {
        &self.token_url
    }

    fn prepare(&self, operation: Operation, data: serde_json::Value) -> PreparedCall {
        PreparedCall {
            operation,
            method: "POST",
            url: self.api_url.clone(),
            body: wire::envelope(operation, data),
        }
    }

    /// Builds a getVouchers call.
    pub fn prepare_vouchers(&self, query: &VoucherQuery) -> PreparedCall {
        self.prepare(Operation::GetVouchers, wire::vouchers_data(query))
    }

    /// Builds a getBalance call.
    pub fn prepare_balance(&self) -> PreparedCall {
        self.prepare(Operation::GetBalance, json!({}))
    }

    /// Builds the token refresh call. Its body holds secrets: store it
    /// encrypted, show it through [`super::redact_json`].
    pub fn prepare_refresh(&self, refresh_token: &SecretString) -> PreparedCall {
        PreparedCall {
            operation: Operation::RefreshToken,
            method: "POST",
            url: self.token_url.clone(),
            body: wire::refresh_body(refresh_token, &self.cfg.client_id, &self.cfg.client_secret),
        }
    }

    fn timeout_for(&self, operation: Operation) -> Duration {
        match operation {
            Operation::PlaceOrder => self.cfg.place_order_timeout,
            _ => self.cfg.request_timeout,
        }
    }

    async fn send(&self, call: PreparedCall, token: Option<&SecretString>) -> super::Exchange {
        let timeout = self.timeout_for(call.operation);
        transport::send(&self.http, call, token, timeout).await
    }

    /// Sends a prepared read and decodes its payload with `decode`.
    async fn read<T>(
        &self,
        call: PreparedCall,
        token: &SecretString,
        decode: fn(&serde_json::value::RawValue) -> Result<T, String>,
    ) -> Call<Result<T, ReadError>> {
        let key = wire::response_key(call.operation);
        let mut exchange = self.send(call, Some(token)).await;
        let outcome = classify::read(transport::view(&exchange), key).and_then(|raw| {
            decode(&raw).map_err(|e| ReadError::Failed {
                reason: format!("undecodable payload: {e}"),
            })
        });
        if let Err(ReadError::Failed { reason }) = &outcome {
            mark_undecodable(&mut exchange, reason);
        }
        Call { outcome, exchange }
    }

    /// The account balance (getBalance; limited to 10 calls a minute).
    pub async fn get_balance(&self, token: &SecretString) -> Call<Result<Balance, ReadError>> {
        self.read(self.prepare_balance(), token, decode::balance)
            .await
    }

    /// One page of the catalog (getVouchers; limited to 50 calls a minute).
    pub async fn get_vouchers(
        &self,
        query: &VoucherQuery,
        token: &SecretString,
    ) -> Call<Result<Vec<CatalogProduct>, ReadError>> {
        self.read(self.prepare_vouchers(query), token, decode::products)
            .await
    }
}

#[async_trait]
impl XoxodayApi for XoxodayClient {
    fn prepare_place_order(&self, req: &PlaceOrderRequest) -> PreparedCall {
        self.prepare(Operation::PlaceOrder, wire::place_order_data(req))
    }

    async fn place_order(&self, call: PreparedCall, token: &SecretString) -> Call<PlaceOutcome> {
        debug_assert_eq!(call.operation, Operation::PlaceOrder);
        let mut exchange = self.send(call, Some(token)).await;
        let outcome = classify::place(transport::view(&exchange));
        if let PlaceOutcome::Unknown { reason } = &outcome {
            mark_undecodable(&mut exchange, reason);
        }
        Call { outcome, exchange }
    }

    fn prepare_order_details(&self, po_number: &PoNumber) -> PreparedCall {
        self.prepare(
            Operation::GetOrderDetails,
            wire::order_details_data(po_number.as_str()),
        )
    }

    async fn get_order_details(
        &self,
        call: PreparedCall,
        token: &SecretString,
    ) -> Call<LookupOutcome> {
        debug_assert_eq!(call.operation, Operation::GetOrderDetails);
        let mut exchange = self.send(call, Some(token)).await;
        let outcome = classify::lookup(transport::view(&exchange));
        if let LookupOutcome::Failed { reason } = &outcome {
            mark_undecodable(&mut exchange, reason);
        }
        Call { outcome, exchange }
    }

    async fn refresh_token(&self, refresh_token: &SecretString) -> Call<RefreshOutcome> {
        let mut exchange = self.send(self.prepare_refresh(refresh_token), None).await;
        let outcome = classify::refresh(transport::view(&exchange));
        if let RefreshOutcome::Failed { reason } = &outcome {
            mark_undecodable(&mut exchange, reason);
        }
        Call { outcome, exchange }
    }

    async fn read_balance(&self, token: &SecretString) -> Call<Result<Balance, ReadError>> {
        self.get_balance(token).await
    }

    fn prepare_order_history(&self, page: &HistoryPage) -> PreparedCall {
        self.prepare(
            Operation::GetOrderHistory,
            decode::history_data(page.from, page.to, page.limit, page.page),
        )
    }

    async fn get_order_history(
        &self,
        call: PreparedCall,
        token: &SecretString,
    ) -> Call<Result<Vec<HistoryOrder>, ReadError>> {
        debug_assert_eq!(call.operation, Operation::GetOrderHistory);
        self.read(call, token, decode::history).await
    }
}
