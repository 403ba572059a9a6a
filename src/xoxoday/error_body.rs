//! Reads Xoxoday's non-success bodies (reference §9.1, §2.2, §9.4) into one
//! [`Signal`]: a rate limit, an application error (`errorId`), an OAuth-style
//! error, or nothing recognisable.
//!
//! Protects: the classifier sees Xoxoday's own words, whatever the HTTP status,
//! so it can key on `errorId` first.

use std::time::Duration;

use serde_json::Value;

use super::UpstreamError;

/// Penalty when a rate-limit answer names none (the documented value).
pub const DEFAULT_PENALTY: Duration = Duration::from_secs(60);

/// The message Xoxoday uses for every rate limit.
const RATE_LIMIT_MESSAGE: &str = "auth.request_limit_exceeded";

/// What an answer body says, before any decision.
#[derive(Debug, Clone, PartialEq)]
pub enum Signal {
    /// `auth.request_limit_exceeded`, with `penaltySeconds` when given.
    RateLimited(Option<Duration>),
    /// `{code, errorId, errorInfo, error}`.
    ErrorId(UpstreamError),
    /// `{"error": "...", "error_description": ...}` or
    /// `{"success": 0, "error_message_id": ...}`; `error_id` holds the code.
    OAuth(UpstreamError),
    /// Not JSON, or JSON in no documented error shape.
    Unrecognised,
}

/// Reads a body; `http_status` is copied into any [`UpstreamError`].
pub fn signal(http_status: u16, body: &str) -> Signal {
    let Ok(doc) = serde_json::from_str::<Value>(body) else {
        return Signal::Unrecognised;
    };
    if let Some(penalty) = rate_limit(&doc) {
        return Signal::RateLimited(penalty);
    }
    if let Some(id) = text(&doc, "errorId") {
        return Signal::ErrorId(UpstreamError {
            http_status,
            error_id: Some(id),
            error_info: text(&doc, "errorInfo"),
            error: doc.get("error").cloned(),
        });
    }
    oauth(http_status, &doc).map_or(Signal::Unrecognised, Signal::OAuth)
}

/// `Some(penalty)` when the body is a rate-limit answer, in either shape:
/// `{"errors":[{"message","penaltySeconds"}]}` or `{"message"}`.
fn rate_limit(doc: &Value) -> Option<Option<Duration>> {
    let listed = doc
        .get("errors")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|e| text(e, "message").as_deref() == Some(RATE_LIMIT_MESSAGE));
    if let Some(entry) = listed {
        return Some(seconds(entry.get("penaltySeconds")));
    }
    let top = text(doc, "message").or_else(|| text(doc, "error_message_id"));
    (top.as_deref() == Some(RATE_LIMIT_MESSAGE)).then(|| seconds(doc.get("penaltySeconds")))
}

fn oauth(http_status: u16, doc: &Value) -> Option<UpstreamError> {
    if let Some(code) = text(doc, "error") {
        return Some(UpstreamError {
            http_status,
            error_id: Some(code),
            error_info: text(doc, "error_description"),
            error: doc.get("error").cloned(),
        });
    }
    let code = text(doc, "error_message_id")?;
    Some(UpstreamError {
        http_status,
        error_id: Some(code),
        error_info: None,
        error: Some(doc.clone()),
    })
}

/// A non-empty string field, trimmed.
fn text(doc: &Value, key: &str) -> Option<String> {
    let s = doc.get(key)?.as_str()?.trim();
    (!s.is_empty()).then(|| s.to_owned())
}

/// Whole seconds from a number or numeric string.
fn seconds(v: Option<&Value>) -> Option<Duration> {
    let v = v?;
    let n = v
        .as_u64()
        .or_else(|| v.as_f64().filter(|f| *f >= 0.0).map(|f| f.ceil() as u64))
        .or_else(|| v.as_str()?.trim().parse().ok())?;
    Some(Duration::from_secs(n))
}

/// `Retry-After` as delta-seconds (HTTP-dates are ignored: the body's
/// `penaltySeconds` is the documented signal).
pub fn retry_after(header: Option<&str>) -> Option<Duration> {
    header?.trim().parse().ok().map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_rate_limit_shapes_are_recognised() {
        let listed =
            r#"{"errors":[{"message":"auth.request_limit_exceeded","penaltySeconds":42}]}"#;
        assert_eq!(
            signal(429, listed),
            Signal::RateLimited(Some(Duration::from_secs(42)))
        );
        let as_text =
            r#"{"errors":[{"message":"auth.request_limit_exceeded","penaltySeconds":"7"}]}"#;
        assert_eq!(
            signal(200, as_text),
            Signal::RateLimited(Some(Duration::from_secs(7)))
        );
        let bare = r#"{"message":"auth.request_limit_exceeded"}"#;
        assert_eq!(signal(400, bare), Signal::RateLimited(None));
    }

    #[test]
    fn application_errors_keep_code_info_and_any_error_value() {
        let body = r#"{"code":404,"errorId":"PLE10030","errorInfo":"Failed to find vouchers.","error":{"x":1}}"#;
        let Signal::ErrorId(e) = signal(404, body) else {
            panic!("not an errorId body")
        };
        assert_eq!(e.error_id.as_deref(), Some("PLE10030"));
        assert_eq!(e.error_info.as_deref(), Some("Failed to find vouchers."));
        assert_eq!(e.error, Some(serde_json::json!({"x": 1})));
        assert_eq!(e.http_status, 404);
    }

    #[test]
    fn oauth_bodies_carry_their_code_as_error_id() {
        let body = r#"{"error":"invalid_token","error_description":"invalid/expired token"}"#;
        let Signal::OAuth(e) = signal(401, body) else {
            panic!("not oauth")
        };
        assert_eq!(e.error_id.as_deref(), Some("invalid_token"));
        assert_eq!(e.error_info.as_deref(), Some("invalid/expired token"));
        let reset = r#"{"success":0,"error_message_id":"auth.token_error"}"#;
        let Signal::OAuth(e) = signal(401, reset) else {
            panic!("not oauth")
        };
        assert_eq!(e.error_id.as_deref(), Some("auth.token_error"));
    }

    #[test]
    fn other_bodies_are_unrecognised() {
        for body in ["", "<html>502</html>", "{}", "[]", r#"{"errorId":""}"#] {
            assert_eq!(signal(502, body), Signal::Unrecognised, "{body}");
        }
        assert_eq!(retry_after(Some(" 30 ")), Some(Duration::from_secs(30)));
        assert_eq!(retry_after(Some("Wed, 21 Oct 2015 07:28:00 GMT")), None);
    }
}
