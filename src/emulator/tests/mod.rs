//! Tests against a spawned emulator over real loopback HTTP (reqwest +
//! `json!`, never `crate::xoxoday`). No timing assertions: waits are polling
//! loops with generous deadlines.

mod admin;
mod delivery;
mod early_webhook;
mod faults;
mod history;
mod hostile;
mod late;
mod ledger_edits;
mod operations;
mod rejections;
mod tokens;

use std::{
    future::Future,
    time::{Duration, Instant},
};

use serde_json::{Value, json};

use super::{EmulatorConfig, EmulatorHandle, spawn};

pub(super) const PLACE: &str = "plumProAPI.mutation.placeOrder";
pub(super) const DETAILS: &str = "plumProAPI.mutation.getOrderDetails";
pub(super) const VOUCHERS: &str = "plumProAPI.mutation.getVouchers";
pub(super) const BALANCE: &str = "plumProAPI.query.getBalance";
pub(super) const HISTORY: &str = "plumProAPI.mutation.getOrderHistory";

/// A running emulator plus an HTTP client.
pub(super) struct Emu {
    pub h: EmulatorHandle,
    pub http: reqwest::Client,
}

pub(super) async fn start() -> Emu {
    start_with(EmulatorConfig::for_tests()).await
}

pub(super) async fn start_with(cfg: EmulatorConfig) -> Emu {
    let h = spawn(cfg).await.expect("emulator binds");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client");
    Emu { h, http }
}

impl Drop for Emu {
    fn drop(&mut self) {
        self.h.shutdown();
    }
}

/// `{"query", "tag", "variables": {"data": …}}`.
pub(super) fn envelope(query: &str, data: Value) -> Value {
    json!({"query": query, "tag": "plumProAPI", "variables": {"data": data}})
}

/// A valid placeOrder `data` for product 1001, denomination 10.
pub(super) fn order_data(po: &str) -> Value {
    json!({"productId": 1001, "quantity": 1, "denomination": 10, "poNumber": po,
           "email": "a@example.com", "contact": "+1-4705000000", "tag": "t",
           "notifyReceiverEmail": 0, "notifyAdminEmail": 0})
}

impl Emu {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.h.base_url())
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}/_emulator{path}", self.h.addr())
    }

    /// Calls `/v1/oauth/api` with the current access token.
    pub async fn api(&self, query: &str, data: Value) -> (u16, Value) {
        let (access, _) = self.h.current_tokens();
        self.api_as(Some(&access), query, data)
            .await
            .expect("an HTTP answer")
    }

    pub async fn api_as(
        &self,
        token: Option<&str>,
        query: &str,
        data: Value,
    ) -> reqwest::Result<(u16, Value)> {
        let mut req = self
            .http
            .post(self.url("/v1/oauth/api"))
            .json(&envelope(query, data));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        decode(req.send().await?).await
    }

    /// Calls `/v1/oauth/api` and returns the body as text, unparsed (a
    /// strict JSON parser rejects a lone surrogate escape).
    pub async fn api_raw(&self, query: &str, data: Value) -> (u16, String) {
        let (access, _) = self.h.current_tokens();
        let req = self
            .http
            .post(self.url("/v1/oauth/api"))
            .bearer_auth(access)
            .json(&envelope(query, data));
        let resp = req.send().await.expect("an HTTP answer");
        let status = resp.status().as_u16();
        (status, resp.text().await.expect("a body"))
    }

    pub async fn place(&self, data: Value) -> (u16, Value) {
        self.api(PLACE, data).await
    }

    pub async fn details(&self, data: Value) -> (u16, Value) {
        self.api(DETAILS, data).await
    }
}

pub(super) async fn decode(resp: reqwest::Response) -> reqwest::Result<(u16, Value)> {
    let status = resp.status().as_u16();
    let body = resp.json::<Value>().await.unwrap_or(Value::Null);
    Ok((status, body))
}

/// Polls `check` until it is true or 15 s pass.
pub(super) async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for: {what}");
}

/// Asserts an application error body with this status and errorId.
pub(super) fn assert_error(answer: &(u16, Value), status: u16, error_id: &str) {
    assert_eq!(answer.0, status, "{}", answer.1);
    assert_eq!(answer.1["code"], json!(status), "{}", answer.1);
    assert_eq!(answer.1["errorId"], json!(error_id), "{}", answer.1);
    assert!(answer.1["errorInfo"].is_string(), "{}", answer.1);
}
