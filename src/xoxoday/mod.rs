//! The Xoxoday Plum client: the only code that knows Xoxoday's wire format.
//!
//! It knows nothing of our orders table. Callers build a [`PlaceOrderRequest`],
//! ask for a [`PreparedCall`] (so the exact request can be recorded *before*
//! it is sent), send it, and get back an outcome plus the full [`Exchange`]
//! for the audit log. Classification of every placeOrder answer happens in one
//! place (see [`PlaceOutcome`]): anything not recognised is `Unknown`, never
//! success and never failure, because only Xoxoday's own answer may decide
//! whether money left.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use secrecy::SecretString;

pub mod classify;
mod client;
mod decode;
mod error_body;
mod flex;
mod redact;
mod transport;
mod wire;

pub use classify::ReadError;
pub use client::{CONNECT_TIMEOUT, ClientConfig, XoxodayClient};
pub use decode::{Balance, CatalogProduct, HistoryOrder};
pub use redact::redact_json;
pub use wire::VoucherQuery;

/// The Xoxoday operations the gateway performs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    /// `plumProAPI.mutation.placeOrder`
    PlaceOrder,
    /// `plumProAPI.mutation.getOrderDetails`
    GetOrderDetails,
    /// `plumProAPI.mutation.getVouchers`
    GetVouchers,
    /// `plumProAPI.query.getBalance`
    GetBalance,
    /// `plumProAPI.mutation.getOrderHistory`
    GetOrderHistory,
    /// `POST {base}/v1/oauth/token/user`
    RefreshToken,
}

impl Operation {
    /// Stable snake_case name, used in the audit table, metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PlaceOrder => "place_order",
            Self::GetOrderDetails => "get_order_details",
            Self::GetVouchers => "get_vouchers",
            Self::GetBalance => "get_balance",
            Self::GetOrderHistory => "get_order_history",
            Self::RefreshToken => "refresh_token",
        }
    }
}

/// What we ask Xoxoday to place; built from a validated intake request.
#[derive(Debug, Clone, PartialEq)]
pub struct PlaceOrderRequest {
    /// Our reference, committed to Postgres before the first call; reused on every call.
    pub po_number: PoNumber,
    /// Xoxoday product id.
    pub product_id: i64,
    /// Units, 1–10.
    pub quantity: u32,
    /// Face value per unit, exact.
    pub denomination: Decimal,
    /// Recipient email.
    pub email: Option<String>,
    /// Recipient phone, e.g. `+1-4705000000`.
    pub contact: Option<String>,
    /// Free-text tag echoed back by Xoxoday.
    pub tag: Option<String>,
    /// Let Xoxoday email the voucher to the receiver.
    pub notify_receiver_email: bool,
    /// Let Xoxoday email the admin.
    pub notify_admin_email: bool,
    /// Category extras (top-up, airmiles), passed through unchanged.
    pub user_meta: Option<serde_json::Value>,
    /// Top-up operator validation.
    pub perform_operator_validation: Option<bool>,
}

/// One HTTP request, fully built but not yet sent. `Debug` shows the body
/// through [`redact_json`].
#[derive(Clone)]
pub struct PreparedCall {
    /// Which operation this is.
    pub operation: Operation,
    /// HTTP method.
    pub method: &'static str,
    /// Full URL.
    pub url: String,
    /// JSON body exactly as it will be sent (secret fields included; see [`redact_json`]).
    pub body: serde_json::Value,
}

/// The answer part of an exchange, when one came back. `Debug` shows the
/// body through [`redact_json`] (or only its length when it is not JSON).
#[derive(Clone)]
pub struct ExchangeResponse {
    /// HTTP status.
    pub status: u16,
    /// Headers that matter for the audit (content-type, retry-after, request ids).
    pub headers: serde_json::Value,
    /// Body text as read: invalid UTF-8, lone surrogates and raw control
    /// bytes repaired (`domain::safe_text::repair_json`); may hold voucher
    /// codes, so store it encrypted and show it redacted.
    pub body: String,
    /// The body bytes exactly as received (sealed into the audit row).
    pub raw: Vec<u8>,
}

/// One HTTP exchange with Xoxoday, for the audit log (contract §2.4).
#[derive(Debug, Clone)]
pub struct Exchange {
    /// What was sent (the same value the caller recorded before sending).
    pub request: PreparedCall,
    /// Request headers as sent, with `Authorization` redacted.
    pub request_headers: serde_json::Value,
    /// When sending began.
    pub started_at: DateTime<Utc>,
    /// Wall time until the answer (or the error).
    pub duration: Duration,
    /// The answer, if any arrived.
    pub response: Option<ExchangeResponse>,
    /// Transport or decoding error, when there was one (`timeout: …`, `connect: …`, `decode: …`).
    pub error: Option<String>,
}

/// An error body as Xoxoday sent it (`{code, errorId, errorInfo, error}`), plus the HTTP status.
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamError {
    /// HTTP status of the answer.
    pub http_status: u16,
    /// e.g. `PLE10018`; for OAuth-style bodies the `error` or
    /// `error_message_id` code (`invalid_token`, `auth.token_error`).
    pub error_id: Option<String>,
    /// e.g. `Invalid denomination for the product`.
    pub error_info: Option<String>,
    /// Xoxoday's `error` field; may be any JSON type.
    pub error: Option<serde_json::Value>,
}

/// Delivery state of an upstream order, compared case-insensitively.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryStatus {
    /// Vouchers issued.
    Delivered,
    /// Accepted; delivery later (delayed products).
    Pending,
    /// Delivery canceled (refund expected).
    Canceled,
    /// A value no document lists; treated as pending, never as success.
    Other(String),
}

use crate::domain::PoNumber;
/// One voucher (the same type the store decrypts into); `Debug` never shows code or pin.
pub use crate::domain::Voucher;

/// An order as Xoxoday reports it (placeOrder or getOrderDetails `data`).
#[derive(Debug, Clone)]
pub struct UpstreamOrder {
    /// Xoxoday's order id.
    pub order_id: i64,
    /// Total before discount.
    pub order_total: Option<Decimal>,
    /// Discount (`""` decodes as `None`).
    pub order_discount: Option<Decimal>,
    /// Final amount charged.
    pub amount_charged: Option<Decimal>,
    /// Currency of the amounts.
    pub currency_code: Option<String>,
    /// `orderStatus` as sent (`complete` is the only value seen).
    pub order_status: Option<String>,
    /// Order-level delivery state.
    pub delivery_status: DeliveryStatus,
    /// Issued vouchers (empty while pending).
    pub vouchers: Vec<Voucher>,
}

/// The one classification of a placeOrder answer.
#[derive(Debug, Clone)]
pub enum PlaceOutcome {
    /// `status: 1`: the order exists (delivered or pending delivery).
    Placed(UpstreamOrder),
    /// Definitely no order upstream, and the order itself is at fault
    /// (validation and configuration errorIds, reference §4.3).
    Rejected(UpstreamError),
    /// Definitely no order upstream, but the cause hits every order
    /// (invalid client, user/company disabled, IP not allow-listed):
    /// pause dispatch rather than fail orders.
    Systemic(UpstreamError),
    /// The order may or may not exist: reconcile through getOrderDetails.
    Unknown {
        /// Why the outcome is unknown, for logs and the audit.
        reason: String,
    },
    /// `auth.request_limit_exceeded`: no order; wait and retry.
    RateLimited {
        /// `penaltySeconds`, or a default when absent.
        penalty: Duration,
    },
    /// Token invalid or expired: no order; refresh and retry.
    Unauthorized(UpstreamError),
    /// Not enough money in the wallet (contract §8; see
    /// [`classify::INSUFFICIENT_BALANCE`]): no order; pause sending until
    /// the balance covers it.
    InsufficientBalance(UpstreamError),
}

/// The classification of a getOrderDetails answer.
#[derive(Debug, Clone)]
pub enum LookupOutcome {
    /// The order exists.
    Found(UpstreamOrder),
    /// `PLE10016`: Xoxoday has no order for this reference (trust only after the settle window).
    NotFound(UpstreamError),
    /// Throttled; wait `penalty`.
    RateLimited {
        /// `penaltySeconds`, or a default when absent.
        penalty: Duration,
    },
    /// Token invalid or expired.
    Unauthorized(UpstreamError),
    /// Account-wide problem (see [`PlaceOutcome::Systemic`]).
    Systemic(UpstreamError),
    /// Anything else: no conclusion may be drawn.
    Failed {
        /// Why, for logs and the audit.
        reason: String,
    },
}

impl LookupOutcome {
    /// The stored and logged name of this outcome (`upstream_exchanges.outcome`).
    pub fn label(&self) -> &'static str {
        match self {
            Self::Found(_) => "found",
            Self::NotFound(_) => "not_found",
            Self::RateLimited { .. } => "rate_limited",
            Self::Unauthorized(_) => "unauthorized",
            Self::Systemic(_) => "systemic",
            Self::Failed { .. } => "failed",
        }
    }
}

/// A fresh token pair from `POST {base}/v1/oauth/token/user`.
#[derive(Debug, Clone)]
pub struct TokenPair {
    /// New access token.
    pub access_token: SecretString,
    /// New refresh token (the old one may be dead already).
    pub refresh_token: SecretString,
    /// Access token lifetime (`expires_in`, number or string).
    pub expires_in: Option<Duration>,
    /// `access_token_expiry` (ms epoch string), when sent.
    pub access_expires_at: Option<DateTime<Utc>>,
    /// `refresh_token_expiry` (ms epoch string), when sent.
    pub refresh_expires_at: Option<DateTime<Utc>>,
}

/// Result of a token refresh.
#[derive(Debug, Clone)]
pub enum RefreshOutcome {
    /// Rotated; persist before use.
    Refreshed(TokenPair),
    /// The refresh token or client credentials were refused: an operator must act.
    Refused(UpstreamError),
    /// Throttled (`auth.request_limit_exceeded`).
    RateLimited {
        /// How long to wait.
        penalty: Duration,
    },
    /// Transport error or an answer we cannot read: try again later.
    Failed {
        /// Why.
        reason: String,
    },
}

/// An outcome together with the exchange that produced it.
#[derive(Debug, Clone)]
pub struct Call<T> {
    /// The classified result.
    pub outcome: T,
    /// Everything sent and received, for the audit log.
    pub exchange: Exchange,
}

/// The upstream as the rest of the service sees it; tests may substitute it.
#[async_trait]
pub trait XoxodayApi: Send + Sync + 'static {
    /// Builds the placeOrder request without sending it.
    fn prepare_place_order(&self, req: &PlaceOrderRequest) -> PreparedCall;
    /// Sends a prepared placeOrder with the given access token.
    async fn place_order(&self, call: PreparedCall, token: &SecretString) -> Call<PlaceOutcome>;
    /// Builds the getOrderDetails-by-poNumber request without sending it.
    fn prepare_order_details(&self, po_number: &PoNumber) -> PreparedCall;
    /// Sends a prepared getOrderDetails.
    async fn get_order_details(
        &self,
        call: PreparedCall,
        token: &SecretString,
    ) -> Call<LookupOutcome>;
    /// Rotates the token pair.
    async fn refresh_token(&self, refresh_token: &SecretString) -> Call<RefreshOutcome>;
    /// Reads the wallet balance (getBalance, 10 calls a minute): the cheap
    /// authenticated probe of account-wide holds.
    async fn read_balance(&self, token: &SecretString) -> Call<Result<Balance, ReadError>>;
    /// Builds one getOrderHistory page request without sending it.
    fn prepare_order_history(&self, page: &HistoryPage) -> PreparedCall;
    /// Sends a prepared getOrderHistory; PLE10027 arrives as
    /// `ReadError::Upstream` (an empty window, UNCONFIRMED: `[]` is possible too).
    async fn get_order_history(
        &self,
        call: PreparedCall,
        token: &SecretString,
    ) -> Call<Result<Vec<HistoryOrder>, ReadError>>;
}

/// One page of getOrderHistory: `YYYY-MM-DD` days (zone unstated), both
/// included, `limit` orders per page, pages from 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryPage {
    /// `startDate`.
    pub from: chrono::NaiveDate,
    /// `endDate`.
    pub to: chrono::NaiveDate,
    /// Orders per page.
    pub limit: u32,
    /// Page number, from 1.
    pub page: u32,
}

#[cfg(test)]
mod schema_tests;
