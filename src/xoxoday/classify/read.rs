//! Reads (getOrderDetails, getVouchers, getBalance) and token refresh.
//!
//! Protects: a lookup only says `NotFound` on PLE10016 with a 4xx status,
//! because `NotFound` is what lets the reconciler place again.

use serde_json::value::RawValue;

use super::{
    Answer, DEFAULT_PENALTY, ErrorClass, NOT_FOUND, Signal, bare, describe, error_body,
    error_class, is_2xx, is_4xx, is_token_error, snippet,
};
use crate::xoxoday::{LookupOutcome, RefreshOutcome, UpstreamError, decode};

/// Why a read (getVouchers, getBalance, …) gave no data.
#[derive(Debug, Clone)]
pub enum ReadError {
    /// Throttled; wait `penalty`.
    RateLimited {
        /// `penaltySeconds`, `Retry-After`, or the default.
        penalty: std::time::Duration,
    },
    /// Token invalid or expired.
    Unauthorized(UpstreamError),
    /// Account-wide problem (invalid client, disabled, IP).
    Systemic(UpstreamError),
    /// Xoxoday answered with an application error (e.g. PLE10030, PLE10016).
    Upstream(UpstreamError),
    /// Transport error, 5xx, or an answer we cannot read.
    Failed {
        /// Why.
        reason: String,
    },
}

/// Classifies a read answer; `Ok` holds the payload under `data.<key>.data`.
pub fn read(answer: Answer<'_>, key: &str) -> Result<Box<RawValue>, ReadError> {
    let (status, retry_after, body) = match answer {
        Answer::Transport(err) => return Err(ReadError::Failed { reason: err.into() }),
        Answer::Http {
            status,
            retry_after,
            body,
        } => (status, retry_after, body),
    };
    let failed = |reason: String| Err(ReadError::Failed { reason });
    match error_body::signal(status, body) {
        Signal::RateLimited(p) => Err(ReadError::RateLimited {
            penalty: p.or(retry_after).unwrap_or(DEFAULT_PENALTY),
        }),
        _ if is_2xx(status) => decode::success_payload(body, key)
            .or_else(|e| failed(format!("HTTP {status} not a success: {e}"))),
        Signal::ErrorId(e) if !is_4xx(status) => failed(describe(&e)),
        Signal::ErrorId(e) => Err(
            match error_class(e.error_id.as_deref().unwrap_or_default()) {
                ErrorClass::Systemic => ReadError::Systemic(e),
                ErrorClass::Unauthorized => ReadError::Unauthorized(e),
                ErrorClass::Rejected | ErrorClass::InsufficientBalance | ErrorClass::Unknown => {
                    ReadError::Upstream(e)
                }
            },
        ),
        Signal::OAuth(e) if is_4xx(status) && (status == 401 || is_token_error(&e)) => {
            Err(ReadError::Unauthorized(e))
        }
        Signal::Unrecognised | Signal::OAuth(_) => match status {
            401 => Err(ReadError::Unauthorized(bare(status, body))),
            429 => Err(ReadError::RateLimited {
                penalty: retry_after.unwrap_or(DEFAULT_PENALTY),
            }),
            _ => failed(snippet(status, body)),
        },
    }
}

/// Classifies a getOrderDetails answer.
pub fn lookup(answer: Answer<'_>) -> LookupOutcome {
    match read(answer, "getOrderDetails") {
        Ok(raw) => match decode::order(&raw) {
            Ok(order) => LookupOutcome::Found(order),
            Err(e) => LookupOutcome::Failed {
                reason: format!("undecodable order: {e}"),
            },
        },
        Err(ReadError::Upstream(e)) if e.error_id.as_deref() == Some(NOT_FOUND) => {
            LookupOutcome::NotFound(e)
        }
        Err(ReadError::Upstream(e)) => LookupOutcome::Failed {
            reason: describe(&e),
        },
        Err(ReadError::RateLimited { penalty }) => LookupOutcome::RateLimited { penalty },
        Err(ReadError::Unauthorized(e)) => LookupOutcome::Unauthorized(e),
        Err(ReadError::Systemic(e)) => LookupOutcome::Systemic(e),
        Err(ReadError::Failed { reason }) => LookupOutcome::Failed { reason },
    }
}

/// Classifies a token-refresh answer. `Refused` (an operator must act) needs
/// a 4xx with a recognisable error body; anything else unreadable is
/// `Failed` (try again later).
pub fn refresh(answer: Answer<'_>) -> RefreshOutcome {
    let (status, retry_after, body) = match answer {
        Answer::Transport(err) => return RefreshOutcome::Failed { reason: err.into() },
        Answer::Http {
            status,
            retry_after,
            body,
        } => (status, retry_after, body),
    };
    let failed = |reason: String| RefreshOutcome::Failed { reason };
    match error_body::signal(status, body) {
        Signal::RateLimited(p) => RefreshOutcome::RateLimited {
            penalty: p.or(retry_after).unwrap_or(DEFAULT_PENALTY),
        },
        _ if is_2xx(status) => match decode::token_pair(body) {
            Ok(pair) => RefreshOutcome::Refreshed(pair),
            Err(e) => failed(format!("HTTP {status} without a token pair: {e}")),
        },
        Signal::ErrorId(e) if is_4xx(status) && refuses(&e) => RefreshOutcome::Refused(e),
        Signal::OAuth(e) if is_4xx(status) => RefreshOutcome::Refused(e),
        Signal::ErrorId(e) => failed(describe(&e)),
        _ => failed(snippet(status, body)),
    }
}

/// errorIds that no retry of the same refresh can fix.
fn refuses(e: &UpstreamError) -> bool {
    matches!(
        error_class(e.error_id.as_deref().unwrap_or_default()),
        ErrorClass::Systemic | ErrorClass::Unauthorized
    )
}
