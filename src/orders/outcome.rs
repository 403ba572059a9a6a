//! One mapping from a placeOrder outcome to what happens to the order
//! (issue 3): placed → completed / pending_delivery, refused → failed (only
//! when the stored history shows no earlier attempt could have created the
//! order; the write-back decides that in SQL, see `store::outcomes`),
//! unknown → reconciling, no-order-created (throttle, token, account,
//! insufficient balance) → back to accepted later, not counted as an attempt.

use std::time::Duration;

use secrecy::ExposeSecret as _;

use super::{DispatchSettings, worker::jitter};
use crate::{
    crypto::Cipher,
    domain::{OrderId, OrderStatus},
    store::{
        outcomes::{PlaceResult, PlacedFacts},
        vouchers::VoucherRow,
    },
    xoxoday::{DeliveryStatus, PlaceOutcome, UpstreamError, UpstreamOrder},
};

/// Short name of an outcome, for the audit row and logs.
pub(crate) fn label(outcome: &PlaceOutcome) -> &'static str {
    match outcome {
        PlaceOutcome::Placed(_) => "placed",
        PlaceOutcome::Rejected(_) => "rejected",
        PlaceOutcome::Systemic(_) => "systemic",
        PlaceOutcome::Unknown { .. } => "unknown",
        PlaceOutcome::RateLimited { .. } => "rate_limited",
        PlaceOutcome::Unauthorized(_) => "unauthorized",
        PlaceOutcome::InsufficientBalance(_) => "insufficient_balance",
    }
}

/// What the order becomes after `outcome`.
/// `http_status` is the answer's status, when one came: a rate-limit body on
/// anything but a 4xx (a proxy in front of a call still being worked on)
/// proves nothing about the order, so it is reconciled under the settle
/// window instead of being placed again blind.
pub(crate) fn place_result(
    s: &DispatchSettings,
    cipher: &Cipher,
    order: OrderId,
    outcome: &PlaceOutcome,
    http_status: Option<u16>,
) -> PlaceResult {
    let clean_4xx = http_status.is_some_and(|st| (400..500).contains(&st));
    match outcome {
        PlaceOutcome::RateLimited { penalty } if !clean_4xx => PlaceResult::Reconciling {
            reason: format!(
                "placeOrder answered HTTP {} with a rate-limit body; it may have created \
                 the order",
                http_status.unwrap_or_default()
            ),
            check_in: (*penalty).max(s.defer_floor),
        },
        PlaceOutcome::Placed(up) => PlaceResult::Placed(placed_facts(s, cipher, order, up)),
        // A refusal says nothing about earlier attempts: `failed` would invite
        // the caller to order again under a new key. The write-back keeps the
        // order reconciling when any earlier attempt may have created it.
        PlaceOutcome::Rejected(e) => PlaceResult::Failed {
            failure: failure_json(e),
            check_in: s.unknown_check_in,
        },
        PlaceOutcome::Unknown { reason } => PlaceResult::Reconciling {
            reason: format!("placeOrder outcome unknown: {reason}"),
            check_in: unknown_check_in(s, reason),
        },
        PlaceOutcome::RateLimited { penalty } => deferred(
            s,
            *penalty,
            "Xoxoday rate limit reached; no order was created".into(),
        ),
        PlaceOutcome::Unauthorized(e) => deferred(
            s,
            Duration::ZERO,
            format!(
                "Xoxoday refused the access token ({}); no order was created",
                id_of(e)
            ),
        ),
        PlaceOutcome::Systemic(e) => deferred(
            s,
            Duration::ZERO,
            format!(
                "Xoxoday refused every order ({}); no order was created",
                id_of(e)
            ),
        ),
        // Never `failed` nor `needs_review` (contract §8): the order waits
        // in `accepted` while the balance hold pauses sending.
        PlaceOutcome::InsufficientBalance(e) => deferred(
            s,
            Duration::ZERO,
            format!(
                "Xoxoday refused the order for insufficient balance ({}); no order was created",
                id_of(e)
            ),
        ),
    }
}

/// First check after an unknown outcome; after a timeout at least the retry
/// floor, since Xoxoday may still be working on the call we gave up on.
fn unknown_check_in(s: &DispatchSettings, reason: &str) -> Duration {
    if reason.contains("timeout") || reason.contains("timed out") {
        s.unknown_check_in.max(s.defer_floor)
    } else {
        s.unknown_check_in
    }
}

/// `{httpStatus, errorId, errorInfo, error}` as Xoxoday sent it.
pub(crate) fn failure_json(e: &UpstreamError) -> serde_json::Value {
    serde_json::json!({
        "httpStatus": e.http_status,
        "errorId": e.error_id,
        "errorInfo": e.error_info,
        "error": e.error,
    })
}

fn id_of(e: &UpstreamError) -> String {
    e.error_id
        .clone()
        .unwrap_or_else(|| format!("HTTP {}", e.http_status))
}

/// Waits at least the floor, ±20 % jitter so replicas do not retry in step.
fn deferred(s: &DispatchSettings, penalty: Duration, reason: String) -> PlaceResult {
    PlaceResult::Deferred {
        reason,
        retry_in: jitter(penalty.max(s.defer_floor)),
    }
}

pub(crate) fn placed_facts(
    s: &DispatchSettings,
    cipher: &Cipher,
    order: OrderId,
    up: &UpstreamOrder,
) -> PlacedFacts {
    let (status, delivery) = match &up.delivery_status {
        DeliveryStatus::Delivered => (OrderStatus::Completed, "delivered".to_owned()),
        DeliveryStatus::Pending => (OrderStatus::PendingDelivery, "pending".to_owned()),
        DeliveryStatus::Canceled => (OrderStatus::Canceled, "canceled".to_owned()),
        DeliveryStatus::Other(text) => (OrderStatus::PendingDelivery, text.clone()),
    };
    PlacedFacts {
        status: Some(status),
        xoxoday_order_id: up.order_id,
        currency_code: up.currency_code.clone(),
        order_total: up.order_total,
        order_discount: up.order_discount,
        amount_charged: up.amount_charged,
        delivery_status: delivery,
        order_status: up.order_status.clone(),
        vouchers: seal_vouchers(cipher, order, up),
        next_check_in: (status == OrderStatus::PendingDelivery).then_some(s.pending_check_in),
    }
}

/// Associated data of a sealed voucher field.
pub(crate) fn voucher_aad(order: OrderId, position: i32, field: &str) -> String {
    format!("voucher:{order}:{position}:{field}")
}

fn seal_vouchers(cipher: &Cipher, order: OrderId, up: &UpstreamOrder) -> Vec<VoucherRow> {
    (0i32..)
        .zip(&up.vouchers)
        .map(|(pos, v)| VoucherRow {
            order_id: order.as_uuid(),
            position: pos,
            code_encrypted: cipher.encrypt(
                v.code.expose_secret().as_bytes(),
                voucher_aad(order, pos, "code").as_bytes(),
            ),
            pin_encrypted: v.pin.as_ref().map(|p| {
                cipher.encrypt(
                    p.expose_secret().as_bytes(),
                    voucher_aad(order, pos, "pin").as_bytes(),
                )
            }),
            key_id: cipher.key_id().to_owned(),
            validity: v.validity.clone(),
            voucher_type: v.voucher_type.clone(),
            amount: v.amount,
            currency: v.currency.clone(),
            country: v.country.clone(),
        })
        .collect()
}
