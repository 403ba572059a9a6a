//! placeOrder answers into [`PlaceOutcome`]: the single source of truth for
//! "did money leave?".

use super::{
    Answer, DEFAULT_PENALTY, ErrorClass, Signal, bare, describe, error_body, error_class, is_2xx,
    is_4xx, is_insufficient_balance, is_token_error, order, snippet,
};
use crate::xoxoday::PlaceOutcome;

/// Classifies a placeOrder answer. The single source of truth for "did money
/// leave?": only `Placed`, `Rejected`, `Systemic`, `RateLimited` and
/// `Unauthorized` and `InsufficientBalance` are definite; every other answer
/// is `Unknown`.
pub fn place(answer: Answer<'_>) -> PlaceOutcome {
    let (status, retry_after, body) = match answer {
        // Any transport failure, connect errors included, is Unknown: being
        // wrong costs one getOrderDetails, never a second order.
        Answer::Transport(err) => return PlaceOutcome::Unknown { reason: err.into() },
        Answer::Http {
            status,
            retry_after,
            body,
        } => (status, retry_after, body),
    };
    let unknown = |reason: String| PlaceOutcome::Unknown { reason };
    match error_body::signal(status, body) {
        Signal::RateLimited(p) => PlaceOutcome::RateLimited {
            penalty: p.or(retry_after).unwrap_or(DEFAULT_PENALTY),
        },
        _ if is_2xx(status) => match order(body, "placeOrder") {
            Ok(order) => PlaceOutcome::Placed(order),
            Err(e) => unknown(format!("HTTP {status} not a placed order: {e}")),
        },
        Signal::ErrorId(e) if !is_4xx(status) => unknown(describe(&e)),
        Signal::ErrorId(e) | Signal::OAuth(e) if is_insufficient_balance(&e) => {
            PlaceOutcome::InsufficientBalance(e)
        }
        Signal::ErrorId(e) => match error_class(e.error_id.as_deref().unwrap_or_default()) {
            ErrorClass::Rejected => PlaceOutcome::Rejected(e),
            ErrorClass::Systemic => PlaceOutcome::Systemic(e),
            ErrorClass::Unauthorized => PlaceOutcome::Unauthorized(e),
            // Only reached for a 4xx whose errorId is listed but not matched
            // above, which cannot happen; Unknown is the safe reading anyway.
            ErrorClass::InsufficientBalance | ErrorClass::Unknown => unknown(describe(&e)),
        },
        Signal::OAuth(e) if is_4xx(status) && (status == 401 || is_token_error(&e)) => {
            PlaceOutcome::Unauthorized(e)
        }
        Signal::Unrecognised if is_4xx(status) && is_insufficient_balance(&bare(status, body)) => {
            PlaceOutcome::InsufficientBalance(bare(status, body))
        }
        Signal::Unrecognised | Signal::OAuth(_) => match status {
            401 => PlaceOutcome::Unauthorized(bare(status, body)),
            429 => PlaceOutcome::RateLimited {
                penalty: retry_after.unwrap_or(DEFAULT_PENALTY),
            },
            _ => unknown(snippet(status, body)),
        },
    }
}
