//! The one classification of every Xoxoday answer: placeOrder into
//! `PlaceOutcome` ([`place`]), getOrderDetails and other reads into
//! `LookupOutcome` / [`ReadError`] ([`lookup`], [`read`]), token refresh into
//! `RefreshOutcome` ([`refresh`]).
//!
//! Protects invariant 1 (no duplicate spend). The two dangerous answers are
//! "definitely no order" (`Rejected`/`Systemic`, after which a caller may try
//! again under a new key) and "not found" (after which the reconciler places
//! again). Each needs BOTH a known errorId from [`ERROR_IDS`] AND a 4xx
//! status: the errorId decides the class, the status can only downgrade it to
//! Unknown. Everything unrecognised — 5xx, transport errors, odd bodies, new
//! errorIds — is Unknown/Failed, never success and never failure.

use std::time::Duration;

use super::decode;
use super::error_body::{self, DEFAULT_PENALTY, Signal};
use super::{UpstreamError, UpstreamOrder, redact_json};

/// What came back from one HTTP exchange, as the classifier sees it.
#[derive(Debug, Clone, Copy)]
pub enum Answer<'a> {
    /// No complete answer: the error text (timeout, connect, body read).
    Transport(&'a str),
    /// A complete HTTP answer.
    Http {
        /// HTTP status.
        status: u16,
        /// `Retry-After` in seconds, if sent.
        retry_after: Option<Duration>,
        /// Raw body text.
        body: &'a str,
    },
}

/// What a known errorId means, per the action texts of reference §4.3/§9.3.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// No order, and this order is at fault (validation, product setup).
    Rejected,
    /// No order, and every order would fail the same way.
    Systemic,
    /// Bad or missing access token: refresh and retry.
    Unauthorized,
    /// No order: the wallet cannot pay for it (see [`INSUFFICIENT_BALANCE`]).
    InsufficientBalance,
    /// The order may exist, or the docs say to retry/check: reconcile.
    Unknown,
}

/// Every documented errorId and its placeOrder class, with the reason.
///
/// Ids documented only for other operations are Unknown on placeOrder: an
/// answer the docs do not predict proves nothing about the order.
pub const ERROR_IDS: &[(&str, ErrorClass, &str)] = {
    use ErrorClass::{InsufficientBalance, Rejected, Systemic, Unauthorized, Unknown};
    &[
        ("PLE10001", Rejected, "validation error in place order"),
        ("PLE10002", Unknown, "validation error of getOrderDetails"),
        ("PLE10003", Unknown, "validation error of getFilters"),
        // UNCONFIRMED duplicate-poNumber answer (reference §4.5): the order
        // most likely EXISTS. Rejected would let the caller order again.
        (
            "PLE10004",
            Unknown,
            "poNumber validation failed (duplicate?)",
        ),
        ("PLE10005", Unknown, "currency value failed: retry later"),
        ("PLE10006", Unknown, "currency API failed: retry later"),
        (
            "PLE10007",
            Unknown,
            "failed to add order: call PlaceOrder again",
        ),
        (
            "PLE10008",
            Unknown,
            "order amount details (getOrderHistory)",
        ),
        ("PLE10009", Unknown, "company points (getBalance)"),
        // See INSUFFICIENT_BALANCE: the one rule for a wallet too low.
        (
            "PLE10010",
            InsufficientBalance,
            "failed to redeem points (insufficient balance)",
        ),
        ("PLE10011", Unknown, "failed to confirm order: call again"),
        ("PLE10012", Unknown, "failed to process order: call again"),
        ("PLE10013", Unknown, "failed to confirm points redeemed"),
        ("PLE10014", Systemic, "invalid client"),
        ("PLE10015", Rejected, "Amazon KYC not approved"),
        (
            "PLE10016",
            Unknown,
            "order details not found (getOrderDetails)",
        ),
        ("PLE10017", Unknown, "product details (getVouchers)"),
        ("PLE10018", Rejected, "invalid denomination for the product"),
        ("PLE10019", Rejected, "international orders not allowed"),
        // "Retry later", and documented as 404 AND 502: an FX lookup that
        // may succeed next time; reconcile, then re-place the same poNumber.
        ("PLE10020", Unknown, "currency details failed: retry later"),
        (
            "PLE10021",
            Unknown,
            "order details while fulfilling: try again",
        ),
        ("PLE10022", Unknown, "order history (getOrderHistory)"),
        ("PLE10023", Unknown, "client balance (getBalance)"),
        // Out of stock is a 502 with "retry later", and the close cousin
        // PLE10012 ("failed due to unavailability of vouchers") says "call
        // PlaceOrder again": nothing proves no order was recorded, and the
        // docs say every 5xx must be checked with getOrderDetails (§4.4).
        ("PLE10024", Unknown, "vouchers out of stock: retry later"),
        ("PLE10025", Unknown, "failed to place order: retry later"),
        // The order existed and was cancelled: not "no order".
        ("PLE10026", Unknown, "order cancelled but refund failed"),
        ("PLE10027", Unknown, "order history (getOrderHistory)"),
        ("PLE10028", Unknown, "transaction id not found"),
        ("PLE10029", Unknown, "filters (getFilters)"),
        ("PLE10030", Unknown, "vouchers (getVouchers)"),
        ("PLE10031", Unknown, "filter value (getVouchers)"),
        (
            "PLE10032",
            Unknown,
            "order history request (getOrderHistory)",
        ),
        ("PLE10033", Unknown, "getVouchers request"),
        ("PLE10034", Unknown, "resendVoucher failed"),
        (
            "PLE10035",
            Unknown,
            "call GetOrderDetails with the same poNumber",
        ),
        // "Delivery is in cancelled state": an order exists (canceled).
        ("PLE10036", Unknown, "order delivery canceled"),
        ("PLE10041", Rejected, "quantity over the client's limit"),
        ("PLE10042", Rejected, "product not activated for the client"),
        ("PIPE10013", Unauthorized, "invalid authorization header"),
        ("PIPE10015", Systemic, "user is disabled"),
        ("PIPE10016", Systemic, "company is disabled"),
        ("PIPE10017", Systemic, "IP not allow-listed"),
    ]
};

/// The one rule for "the wallet cannot pay for this order" (contract §8):
/// a 4xx placeOrder answer whose errorId, or whose `errorInfo`/`error`/
/// `error_description` text (case-insensitive), is listed here. The errorId
/// is UNCONFIRMED (reference §4.5, §12.2): PLE10010 "Failed to redeem
/// points" is the documented one closest to it (and what the emulator
/// sends); the texts are the documented wordings ("If balance is low → the
/// order request fails", reference §4.5) and their plain variants. Such an
/// answer created no order.
pub const INSUFFICIENT_BALANCE: &[BalanceMarker] = &[
    BalanceMarker::ErrorId("PLE10010"),
    BalanceMarker::Text("failed to redeem points"),
    BalanceMarker::Text("insufficient balance"),
    BalanceMarker::Text("insufficient funds"),
    BalanceMarker::Text("insufficient points"),
    BalanceMarker::Text("low balance"),
    BalanceMarker::Text("balance is low"),
];

/// One entry of [`INSUFFICIENT_BALANCE`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BalanceMarker {
    /// An exact errorId.
    ErrorId(&'static str),
    /// Text contained in the error's info, error or description.
    Text(&'static str),
}

/// Whether a 4xx error says the wallet cannot pay (see [`INSUFFICIENT_BALANCE`]).
pub fn is_insufficient_balance(e: &UpstreamError) -> bool {
    let id = e.error_id.as_deref().unwrap_or_default();
    let text = [
        e.error_info.clone().unwrap_or_default(),
        e.error
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
    ]
    .join(" ")
    .to_lowercase();
    is_4xx(e.http_status)
        && INSUFFICIENT_BALANCE.iter().any(|m| match m {
            BalanceMarker::ErrorId(known) => known.eq_ignore_ascii_case(id),
            BalanceMarker::Text(t) => text.contains(t),
        })
}

/// The errorId that means "no order for this reference" on getOrderDetails.
const NOT_FOUND: &str = "PLE10016";

/// OAuth-style codes that mean "this access token is not accepted".
const TOKEN_CODES: [&str; 5] = [
    "invalid_token",
    "invalid_request",
    "unauthorized_client",
    "unauthorized",
    "auth.token_error",
];

/// The class of an errorId; unknown ids are Unknown.
pub fn error_class(error_id: &str) -> ErrorClass {
    ERROR_IDS
        .iter()
        .find(|(id, ..)| id.eq_ignore_ascii_case(error_id))
        .map_or(ErrorClass::Unknown, |(_, class, _)| *class)
}

fn is_4xx(status: u16) -> bool {
    (400..500).contains(&status)
}

fn is_2xx(status: u16) -> bool {
    (200..300).contains(&status)
}

fn describe(e: &UpstreamError) -> String {
    let id = e.error_id.as_deref().unwrap_or("-");
    let info = e.error_info.as_deref().unwrap_or("");
    format!("HTTP {} {id}: {info}", e.http_status)
}

/// A short, redacted excerpt of an unrecognised answer, for the reason text.
fn snippet(status: u16, body: &str) -> String {
    let shown = serde_json::from_str::<serde_json::Value>(body)
        .map_or_else(|_| body.to_owned(), |v| redact_json(&v).to_string());
    let cut: String = shown.chars().take(200).collect();
    format!("HTTP {status}: {cut}")
}

fn is_token_error(e: &UpstreamError) -> bool {
    let code = e.error_id.as_deref().unwrap_or_default();
    TOKEN_CODES.iter().any(|c| c.eq_ignore_ascii_case(code))
}

/// An [`UpstreamError`] for an answer with no recognisable error body.
fn bare(status: u16, body: &str) -> UpstreamError {
    UpstreamError {
        http_status: status,
        error_id: None,
        error_info: None,
        error: (!body.is_empty()).then(|| body.chars().take(200).collect::<String>().into()),
    }
}

fn order(body: &str, key: &str) -> Result<UpstreamOrder, String> {
    decode::success_payload(body, key).and_then(|raw| decode::order(&raw))
}

mod place;
mod read;

pub use place::place;
pub use read::{ReadError, lookup, read, refresh};

#[cfg(test)]
mod tests;
