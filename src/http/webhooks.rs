//! `POST /v1/webhooks/xoxoday` (contract §5): the `x-api-key` header is
//! compared in constant time with `WEBHOOK_API_KEY` (unset: every webhook is
//! refused), the raw event is stored once per webhook id, and 200 answers as
//! soon as it is stored; the reconciler does the upstream work afterwards.
//!
//! No content Xoxoday can send costs a 5xx (issue 9): the body is repaired
//! before parsing (lone surrogates, raw control bytes, invalid UTF-8), the
//! stored copies are sanitised and the raw bytes kept beside them.

use axum::{
    Json,
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
    response::IntoResponse,
};
use secrecy::ExposeSecret as _;
use serde_json::{Value, json};
use subtle::ConstantTimeEq as _;

use super::{problem::ApiError, state::AppState};
use crate::domain::{FieldError, safe_text};

/// Largest webhook body accepted: far above any real event, so a very long
/// field is stored (cut in the jsonb copy, whole in the raw one), not refused.
pub const MAX_WEBHOOK_BYTES: usize = 1024 * 1024;

/// Receives one delivery-status webhook.
pub async fn receive_xoxoday_webhook(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<impl IntoResponse, ApiError> {
    if !key_matches(&state, &headers) {
        return Err(ApiError::Unauthorized);
    }
    let payload: Value = serde_json::from_str(&safe_text::repair_json(&body))
        .map_err(|e| invalid("body", e.to_string()))?;
    let stored = state
        .webhooks()
        .receive_webhook(&payload, &body)
        .await
        .map_err(|e| invalid("id", e.to_string()))??;
    Ok((
        StatusCode::OK,
        Json(json!({"received": true, "result": format!("{stored:?}").to_lowercase()})),
    ))
}

fn key_matches(state: &AppState, headers: &HeaderMap) -> bool {
    let (Some(expected), Some(got)) = (state.webhook_key(), headers.get("x-api-key")) else {
        return false;
    };
    let expected = expected.expose_secret().as_bytes();
    // ct_eq on slices of different lengths is false without comparing bytes;
    // the length of the key is not the secret.
    bool::from(expected.ct_eq(got.as_bytes()))
}

fn invalid(field: &str, message: String) -> ApiError {
    ApiError::Validation(vec![FieldError {
        field: field.to_owned(),
        message,
    }])
}
