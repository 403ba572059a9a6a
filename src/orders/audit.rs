//! Turns an [`Exchange`] into its audit row: the raw response bytes sealed,
//! a redacted plaintext copy beside it. Nothing secret leaves this function
//! in the clear; `store::exchanges` makes the plaintext copies storable.

use uuid::Uuid;

use super::limits::SlotTooOld;
use crate::{
    crypto::Cipher,
    store::exchanges::{ExchangeEnd, ExchangeStart},
    xoxoday::{Exchange, Operation, PreparedCall, redact_json},
};

/// The request half of the audit row, built before sending.
pub fn start_of(exchange_id: Uuid, call: &PreparedCall) -> ExchangeStart<'_> {
    ExchangeStart {
        exchange_id,
        operation: call.operation.as_str(),
        method: call.method,
        url: &call.url,
        request_body: redact_json(&call.body),
    }
}

/// The raw request sealed, when redaction hid anything (a token refresh
/// carries `refresh_token` and `client_secret`); `None` when the redacted
/// copy already is the whole request.
pub fn seal_request(cipher: &Cipher, exchange_id: Uuid, call: &PreparedCall) -> Option<Vec<u8>> {
    (redact_json(&call.body) != call.body).then(|| {
        let raw = call.body.to_string();
        cipher.encrypt(raw.as_bytes(), request_aad(exchange_id).as_bytes())
    })
}

/// Associated data of a sealed request body.
pub fn request_aad(exchange_id: Uuid) -> String {
    format!("exchange:{exchange_id}:request_body")
}

/// The answer half of the audit row.
pub fn end_of(cipher: &Cipher, exchange_id: Uuid, ex: &Exchange, outcome: &str) -> ExchangeEnd {
    // Every audited exchange passes here, so this is the one metrics hook.
    crate::metrics::observe_upstream(ex.request.operation.as_str(), outcome, ex.duration);
    let response = ex.response.as_ref();
    // The raw bytes, not the repaired text: the sealed copy is the lossless one.
    let body_encrypted = response.map(|r| cipher.encrypt(&r.raw, aad(exchange_id).as_bytes()));
    ExchangeEnd {
        request_headers: ex.request_headers.clone(),
        started_at: Some(ex.started_at),
        duration_ms: i32::try_from(ex.duration.as_millis()).unwrap_or(i32::MAX),
        response_status: response.map(|r| i32::from(r.status)),
        response_headers: response.map(|r| r.headers.clone()),
        body_redacted: response.map(|r| redacted_body(&r.body)),
        key_id: body_encrypted.as_ref().map(|_| cipher.key_id().to_owned()),
        body_encrypted,
        error: ex.error.clone(),
        outcome: outcome.to_owned(),
    }
}

/// The audit row's end for a call of `operation` that was never sent (its
/// rate slot grew too old first, [`crate::tuning::send_margin`]): no
/// headers, no answer, outcome `not_sent`, which [`crate::store::proof`]
/// counts as a call that cannot have created an order. Logged and counted.
pub(crate) fn not_sent(operation: Operation, old: &SlotTooOld) -> ExchangeEnd {
    old.warn(operation);
    crate::metrics::count_upstream(operation.as_str(), NOT_SENT);
    ExchangeEnd {
        request_headers: serde_json::Value::Null,
        started_at: None,
        duration_ms: 0,
        response_status: None,
        response_headers: None,
        body_redacted: None,
        body_encrypted: None,
        key_id: None,
        error: Some(old.why()),
        outcome: NOT_SENT.to_owned(),
    }
}

/// The outcome of a call that was never sent.
pub const NOT_SENT: &str = "not_sent";

/// Associated data of a sealed response body.
pub fn aad(exchange_id: Uuid) -> String {
    format!("exchange:{exchange_id}:response_body")
}

/// JSON bodies are redacted field by field; anything else cannot be checked
/// for secrets, so only its size is kept in the clear.
fn redacted_body(body: &str) -> String {
    match serde_json::from_str::<serde_json::Value>(body) {
        Ok(v) => redact_json(&v).to_string(),
        Err(_) if body.len() <= 512 && !body.contains("oucher") => body.to_owned(),
        Err(_) => format!("[non-JSON body, {} bytes; raw copy encrypted]", body.len()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacted_bodies_hide_voucher_codes() {
        let raw = r#"{"data":{"vouchers":[{"voucherCode":"SECRET-1","pin":"9"}]}}"#;
        let red = redacted_body(raw);
        assert!(!red.contains("SECRET-1"), "{red}");
        assert_eq!(redacted_body("Bad Gateway"), "Bad Gateway");
    }
}
