//! The emulator's own wire shapes, written from api-reference.md (§1, §9.1,
//! §9.4), independently of `crate::xoxoday`: envelopes, the three error body
//! formats, and tolerant readers for numbers sent as numbers or strings.

use std::str::FromStr as _;

use axum::{
    http::{StatusCode, header::CONTENT_TYPE},
    response::{IntoResponse, Response},
};
use rust_decimal::Decimal;
use serde_json::{Value, json};

/// The application error body `{"code","errorId","errorInfo","error"}`.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// HTTP status, repeated as `code`.
    pub status: u16,
    /// `errorId` (`PLE…`); omitted when `None` (the plain 500 body).
    pub error_id: Option<&'static str>,
    /// `errorInfo`.
    pub info: String,
    /// `error`.
    pub error: String,
}

impl ApiError {
    /// An error with an id.
    pub fn new(status: u16, error_id: &'static str, info: &str, error: impl Into<String>) -> Self {
        Self {
            status,
            error_id: Some(error_id),
            info: info.to_string(),
            error: error.into(),
        }
    }

    /// A placeOrder validation error (400 PLE10001).
    pub fn place_validation(error: impl Into<String>) -> Self {
        Self::new(400, "PLE10001", "Validation error in place order", error)
    }

    /// An emulated upstream failure with this 5xx status.
    pub fn upstream(status: u16) -> Self {
        match status {
            500 => Self {
                status,
                error_id: None,
                info: "Internal server error".into(),
                error: "Internal server error".into(),
            },
            503 => Self::new(
                status,
                "PLE10013",
                "Failed to confirm points redeemed",
                "Service unavailable",
            ),
            _ => Self::new(
                status,
                "PLE10025",
                "Failed to place order for the client",
                "Bad Gateway",
            ),
        }
    }

    /// The JSON body.
    pub fn body(&self) -> Value {
        let mut body = json!({"code": self.status, "errorInfo": self.info, "error": self.error});
        if let Some(id) = self.error_id {
            body["errorId"] = json!(id);
        }
        body
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        json_response(self.status, self.body())
    }
}

/// Any status with a JSON body (an unknown status becomes 500). The text
/// goes through `hostile::to_json_text`, like every body the emulator sends.
pub fn json_response(status: u16, body: Value) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let text = super::hostile::to_json_text(&body);
    (status, [(CONTENT_TYPE, "application/json")], text).into_response()
}

/// The success envelope `{"data":{"<op>":{"status":1,"data":…}}}`.
pub fn success(op_key: &str, data: Value) -> Response {
    json_response(200, json!({"data": {op_key: {"status": 1, "data": data}}}))
}

/// An OAuth error `{"error","error_description"}` (401 unless said).
pub fn oauth_error(status: u16, error: &str, description: &str) -> Response {
    json_response(
        status,
        json!({"error": error, "error_description": description}),
    )
}

/// 401 `invalid_token` (an expired, rotated or unknown access token).
pub fn invalid_token() -> Response {
    oauth_error(401, "invalid_token", "invalid/expired token")
}

/// The documented rate-limit body; HTTP 429 (status UNCONFIRMED upstream).
pub fn rate_limited(penalty_seconds: u64) -> Response {
    let body = json!({"errors": [{"message": "auth.request_limit_exceeded",
        "penaltySeconds": penalty_seconds}]});
    json_response(429, body)
}

/// A money or percentage value as a JSON number, as Xoxoday sends them.
///
/// Goes through the decimal's own text, so the printed digits are exactly
/// the decimal's (the f64 is only the carrier serde_json needs for a number
/// and round-trips any value with ≤ 15 significant digits).
pub fn number(d: Decimal) -> Value {
    let d = d.normalize();
    if d.scale() == 0 {
        if let Ok(i) = i64::try_from(d.mantissa()) {
            return json!(i);
        }
    }
    d.to_string()
        .parse::<f64>()
        .map_or(Value::Null, |f| json!(f))
}

/// A decimal sent as a JSON number or a numeric string.
pub fn read_decimal(v: &Value) -> Option<Decimal> {
    let text = match v {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.trim().to_string(),
        _ => return None,
    };
    Decimal::from_str(&text)
        .or_else(|_| Decimal::from_scientific(&text))
        .ok()
}

/// An integer sent as a JSON number or a numeric string.
pub fn read_int(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A 0/1 flag sent as a number, numeric string or boolean.
pub fn read_flag(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        other => read_int(other).and_then(|i| match i {
            0 => Some(false),
            1 => Some(true),
            _ => None,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_print_exact_decimal_digits() {
        assert_eq!(number(Decimal::new(1000, 1)).to_string(), "100");
        assert_eq!(number(Decimal::new(4935, 2)).to_string(), "49.35");
        assert_eq!(number(Decimal::new(1, 1)).to_string(), "0.1");
    }

    #[test]
    fn readers_accept_numbers_and_numeric_strings() {
        assert_eq!(read_int(&json!("42")), Some(42));
        assert_eq!(read_int(&json!(42)), Some(42));
        assert_eq!(read_int(&json!(4.2)), None);
        assert_eq!(read_decimal(&json!("12.50")), Some(Decimal::new(1250, 2)));
        assert_eq!(read_decimal(&json!(12.5)), Some(Decimal::new(125, 1)));
        assert_eq!(read_decimal(&json!(true)), None);
        assert_eq!(read_flag(&json!("1")), Some(true));
    }
}
