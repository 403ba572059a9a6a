//! Keeps voucher codes, pins, tokens and client secrets out of every display:
//! [`redact_json`] for stored plaintext copies and logs, and the `Debug` of
//! the types that carry raw bodies ([`PreparedCall`], [`ExchangeResponse`]).
//!
//! Protects invariant 4: secrets never appear in logs.

use std::fmt;

use super::{ExchangeResponse, PreparedCall};

/// Replaces every secret-bearing field of a JSON document with `"[REDACTED]"`:
/// voucher codes, pins and tokens. Used for the plaintext audit copy.
pub fn redact_json(value: &serde_json::Value) -> serde_json::Value {
    const SECRET_KEYS: [&str; 6] = [
        "voucherCode",
        "pin",
        "access_token",
        "refresh_token",
        "client_secret",
        "code_verifier",
    ];
    match value {
        serde_json::Value::Object(map) => serde_json::Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let v = if SECRET_KEYS.contains(&k.as_str()) && !v.is_null() {
                        serde_json::Value::String("[REDACTED]".into())
                    } else {
                        redact_json(v)
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        serde_json::Value::Array(items) => {
            serde_json::Value::Array(items.iter().map(redact_json).collect())
        }
        other => other.clone(),
    }
}

impl fmt::Debug for PreparedCall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PreparedCall")
            .field("operation", &self.operation)
            .field("method", &self.method)
            .field("url", &self.url)
            .field("body", &redact_json(&self.body))
            .finish()
    }
}

impl fmt::Debug for ExchangeResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let body = serde_json::from_str::<serde_json::Value>(&self.body).map_or_else(
            |_| format!("[{} bytes, not JSON]", self.body.len()),
            |v| redact_json(&v).to_string(),
        );
        f.debug_struct("ExchangeResponse")
            .field("status", &self.status)
            .field("headers", &self.headers)
            .field("body", &body)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn redaction_masks_vouchers_and_tokens_at_any_depth() {
        let doc = json!({"data": {"placeOrder": {"data": {"vouchers": [
            {"voucherCode": "ABCD-1234", "pin": "9876", "amount": 10}
        ]}}}, "refresh_token": "rt", "code": 404});
        let red = redact_json(&doc).to_string();
        for secret in ["ABCD-1234", "9876", "\"rt\""] {
            assert!(!red.contains(secret), "{secret} in {red}");
        }
        assert!(red.contains("\"amount\":10"));
        assert!(red.contains("\"code\":404"));
    }

    #[test]
    fn debug_of_raw_bodies_hides_secrets() {
        let response = ExchangeResponse {
            status: 200,
            headers: json!({}),
            body: r#"{"vouchers":[{"voucherCode":"ABCD-1234","pin":"9876"}]}"#.into(),
            raw: Vec::new(),
        };
        let call = PreparedCall {
            operation: crate::xoxoday::Operation::RefreshToken,
            method: "POST",
            url: "http://x/chef/v1/oauth/token/user".into(),
            body: json!({"refresh_token": "rt-secret", "client_secret": "cs-secret"}),
        };
        let shown = format!("{response:?} {call:?}");
        for secret in ["ABCD-1234", "9876", "rt-secret", "cs-secret"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        let opaque = ExchangeResponse {
            body: "pin=9876".into(),
            raw: b"pin=9876".to_vec(),
            ..response
        };
        assert!(!format!("{opaque:?}").contains("9876"));
    }
}
