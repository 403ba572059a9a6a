//! A stored order as the rest of the service sees it, and its statuses
//! (contract §5). Settled statuses never change back to in-flight ones.

use std::fmt;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use secrecy::SecretString;

use super::{Amount, CallerId, IdempotencyKey, OrderId, PoNumber};

/// Lifecycle of an order; the strings are the database and API values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OrderStatus {
    /// Stored, not sent yet.
    Accepted,
    /// A placeOrder is in flight under a lease.
    Placing,
    /// Delivered.
    Completed,
    /// Xoxoday accepted; delivery pending.
    PendingDelivery,
    /// Xoxoday refused; no order exists upstream.
    Failed,
    /// Outcome unknown; being resolved through getOrderDetails.
    Reconciling,
    /// Delivery canceled upstream.
    Canceled,
    /// Automatic resolution exhausted; an operator decides.
    NeedsReview,
}

impl OrderStatus {
    /// Every status, in lifecycle order.
    pub const ALL: [Self; 8] = [
        Self::Accepted,
        Self::Placing,
        Self::Completed,
        Self::PendingDelivery,
        Self::Failed,
        Self::Reconciling,
        Self::Canceled,
        Self::NeedsReview,
    ];

    /// The stored and serialised name (`const`: the store builds its SQL
    /// literals from it at compile time, `store::status`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Placing => "placing",
            Self::Completed => "completed",
            Self::PendingDelivery => "pending_delivery",
            Self::Failed => "failed",
            Self::Reconciling => "reconciling",
            Self::Canceled => "canceled",
            Self::NeedsReview => "needs_review",
        }
    }

    /// Parses a stored or query-string name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Xoxoday's answer is known (contract §2.3 "settled").
    pub fn is_settled(self) -> bool {
        matches!(
            self,
            Self::Completed | Self::PendingDelivery | Self::Failed | Self::Canceled
        )
    }

    /// Still moving without an operator: answered with 202.
    pub fn is_in_flight(self) -> bool {
        matches!(self, Self::Accepted | Self::Placing | Self::Reconciling)
    }
}

impl fmt::Display for OrderStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// Stored id.
    pub id: CallerId,
    /// Name given at `api-key create`.
    pub name: String,
    /// SHA-256 of the presented key; every query re-checks it is not revoked.
    pub key_hash: [u8; 32],
}

/// A decrypted voucher; `Debug` never shows code or pin.
#[derive(Debug, Clone)]
pub struct Voucher {
    /// Code (or URL).
    pub code: SecretString,
    /// PIN, when there is one.
    pub pin: Option<SecretString>,
    /// Validity text as Xoxoday sent it.
    pub validity: Option<String>,
    /// `code`, `codePin`, `url`, `urlPin`.
    pub voucher_type: Option<String>,
    /// Face value.
    pub amount: Option<Decimal>,
    /// Currency of `amount`.
    pub currency: Option<String>,
    /// Country text.
    pub country: Option<String>,
}

/// An order as stored (vouchers are loaded separately, only for the owner).
#[derive(Debug, Clone)]
pub struct Order {
    /// Our id.
    pub id: OrderId,
    /// Owner.
    pub caller_id: CallerId,
    /// The caller's key.
    pub idempotency_key: IdempotencyKey,
    /// SHA-256 of the canonical request.
    pub fingerprint: Vec<u8>,
    /// Our upstream reference.
    pub po_number: PoNumber,
    /// Where it is in its lifecycle.
    pub status: OrderStatus,
    /// Why it is in that status, when there is more to say.
    pub status_reason: Option<String>,
    /// Xoxoday product id.
    pub product_id: i64,
    /// Face value per unit.
    pub denomination: Amount,
    /// Units.
    pub quantity: i32,
    /// Recipient email.
    pub email: Option<String>,
    /// Recipient phone.
    pub contact: Option<String>,
    /// Free text.
    pub tag: Option<String>,
    /// Send-time flag: Xoxoday emails the recipient.
    pub notify_receiver_email: bool,
    /// Send-time flag: Xoxoday emails the account admin.
    pub notify_admin_email: bool,
    /// Category extras, passed through to placeOrder.
    pub user_meta: Option<serde_json::Value>,
    /// Top-up operator validation, passed through to placeOrder.
    pub perform_operator_validation: Option<bool>,
    /// The current claim's lease token, while a worker holds the order.
    pub lease_token: Option<uuid::Uuid>,
    /// Xoxoday's order id, once known.
    pub xoxoday_order_id: Option<i64>,
    /// Currency of the upstream amounts.
    pub currency_code: Option<String>,
    /// Upstream total before discount.
    pub order_total: Option<Decimal>,
    /// Upstream discount.
    pub order_discount: Option<Decimal>,
    /// Upstream final charge.
    pub amount_charged: Option<Decimal>,
    /// Upstream delivery status text.
    pub delivery_status: Option<String>,
    /// `{httpStatus, errorId, errorInfo, error}` when Xoxoday refused.
    pub failure: Option<serde_json::Value>,
    /// placeOrder attempts that reached the wire.
    pub attempts: i32,
    /// When stored.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// When it first settled.
    pub settled_at: Option<DateTime<Utc>>,
}

/// What to list: at most one of the filters, newest first.
#[derive(Debug, Clone, Default)]
pub struct OrderFilter {
    /// Exact idempotency key.
    pub idempotency_key: Option<String>,
    /// Exact poNumber.
    pub po_number: Option<String>,
    /// Status.
    pub status: Option<OrderStatus>,
    /// Keyset cursor: only orders older than this id.
    pub before: Option<OrderId>,
    /// Page size.
    pub limit: i64,
}
